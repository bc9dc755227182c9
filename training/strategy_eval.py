"""Held-out strategy accuracy of a CARE checkpoint, and the paired gain of one checkpoint over
another (GRPO over its SFT parent) on the same contexts.

    python -m training.strategy_eval --checkpoint A [--baseline B] [--n 256] [--split valid]
    python -m training.strategy_eval --checkpoint A --split test --n 200 \
        --temperature 0.7 --top-p 0.9 --max-new-tokens 320     # the demo's sampling: clean_share

A context is one ESConv supporter turn of a held-out split (``valid`` or ``test``; training
reads ``train``) that has a gold strategy. :func:`heldout_examples` draws ``n`` of them with a
seeded generator, so two checkpoints are always scored on the same contexts. Each checkpoint
writes one greedy completion per context, prompted with the history window, generation budget
and prompt convention its ``lineage.json`` records (``training.generation.evaluation_settings``).
The prediction is the ``strategy`` attribute of the plan that ``parse_care_output`` reads; it is
correct when it equals the gold label after normalisation. No plan, or a chain too broken to
read one, is wrong.

Statistics (pure functions, no model):

* :func:`accuracy_ci`: accuracy with a 95% Wilson score interval (statsmodels'
  ``proportion_confint(method="wilson")``).
* :func:`paired_gain`: the mean per-context difference ``correct_new - correct_old`` with a
  seeded paired-bootstrap percentile interval (contexts resampled with replacement, both
  checkpoints together), and the McNemar-style normal (Wald) interval for a difference of
  paired proportions (Agresti, *Categorical Data Analysis*, comparing dependent proportions)
  beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

HELDOUT_SPLITS = ("valid", "test")
Z95 = 1.959963984540054  # the 97.5% standard normal quantile


@dataclass(frozen=True)
class AccuracyCI:
    """Correct / n, the accuracy and its 95% Wilson interval."""

    correct: int
    n: int
    accuracy: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class PairedGain:
    """The mean per-context difference new - old and its 95% intervals.

    ``ci_low``/``ci_high`` are the paired-bootstrap percentile interval; ``wald_low``/
    ``wald_high`` the McNemar-style normal interval. ``new_only`` counts contexts only the new
    checkpoint got right, ``old_only`` those only the old one did (the discordant pairs).
    """

    gain: float
    ci_low: float
    ci_high: float
    wald_low: float
    wald_high: float
    new_only: int
    old_only: int
    n: int
    n_boot: int
    seed: int


def _as_bool_array(values: Sequence[Any], name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a flat sequence of 0/1 values, got shape {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1, True, False)).all():
        bad = arr[~np.isin(arr, (0, 1, True, False))][0]
        raise ValueError(f"{name}: expected 0/1 (or booleans), got {bad!r}")
    return arr.astype(bool)


def accuracy_ci(correct: Sequence[Any], alpha: float = 0.05) -> AccuracyCI:
    """Accuracy of per-context 0/1 ``correct`` flags with a Wilson score interval.

    >>> r = accuracy_ci([1, 0] * 5)
    >>> r.accuracy, round(r.ci_low, 4), round(r.ci_high, 4)
    (0.5, 0.2366, 0.7634)
    """
    from statsmodels.stats.proportion import proportion_confint

    flags = _as_bool_array(correct, "correct")
    if flags.size == 0:
        raise ValueError("correct: no contexts to score")
    k, n = int(flags.sum()), int(flags.size)
    low, high = proportion_confint(k, n, alpha=alpha, method="wilson")
    return AccuracyCI(k, n, k / n, float(low), float(high))


def paired_gain(
    correct_new: Sequence[Any],
    correct_old: Sequence[Any],
    *,
    seed: int,
    n_boot: int = 10_000,
) -> PairedGain:
    """Mean of ``correct_new - correct_old`` over the same contexts, with 95% intervals.

    The bootstrap resamples context indices (seeded by ``seed``) and takes the 2.5th and 97.5th
    percentiles of the resampled mean differences. The Wald interval is
    ``d +- z * sqrt((b + c) / n - d**2) / sqrt(n)`` with ``b``/``c`` the discordant counts and
    ``d = (b - c) / n``.

    >>> g = paired_gain([1, 1, 0, 0], [1, 0, 0, 0], seed=0, n_boot=200)
    >>> g.gain, g.new_only, g.old_only
    (0.25, 1, 0)
    """
    new = _as_bool_array(correct_new, "correct_new")
    old = _as_bool_array(correct_old, "correct_old")
    if new.size != old.size:
        raise ValueError(
            f"correct_new has {new.size} contexts but correct_old has {old.size}: "
            "a paired gain needs the same contexts"
        )
    if new.size == 0:
        raise ValueError("correct_new: no contexts to score")
    if n_boot < 100:
        raise ValueError(f"n_boot={n_boot}: expected >= 100")
    n = int(new.size)
    diff = new.astype(float) - old.astype(float)
    b, c = int((new & ~old).sum()), int((old & ~new).sum())
    d = (b - c) / n
    se = np.sqrt(max((b + c) / n - d * d, 0.0) / n)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boot = diff[idx].mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return PairedGain(
        gain=float(d),
        ci_low=float(low),
        ci_high=float(high),
        wald_low=float(d - Z95 * se),
        wald_high=float(d + Z95 * se),
        new_only=b,
        old_only=c,
        n=n,
        n_boot=n_boot,
        seed=seed,
    )


def strategy_correct(predicted: Sequence[str | None], gold: Sequence[str]) -> list[bool]:
    """Per context: the predicted plan strategy equals the gold one (case and synonyms aside).

    >>> strategy_correct(["question", None, "Others"], ["Question", "Others", "Information"])
    [True, False, False]
    """
    from models.care_format import canonical_strategy

    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predicted strategies but {len(gold)} gold ones")
    out = []
    for p, g in zip(predicted, gold, strict=True):
        want, got = canonical_strategy(g), canonical_strategy(p)
        out.append(bool(want and got and want.casefold() == got.casefold()))
    return out


# ---------------------------------------------------------------------------------------------
# Generation (needs a checkpoint)


def heldout_examples(
    n: int, *, split: str = "valid", window: int | None = None, seed: int = 0
) -> list[Any]:
    """``n`` supporter turns of ESConv ``split`` with a gold strategy, drawn with ``seed``,
    in corpus order; the same (n, split, seed) gives the same contexts whatever the window."""
    from training.datasets import load_dialogues, turn_examples

    if split not in HELDOUT_SPLITS:
        raise ValueError(f"split={split!r}: expected a held-out split, one of {HELDOUT_SPLITS}")
    pool = [
        ex
        for ex in turn_examples(load_dialogues("esconv", split), window=window)
        if ex.strategy and ex.target.strip()
    ]
    if n < 1 or n > len(pool):
        raise ValueError(f"n={n}: expected 1..{len(pool)} (turns with a strategy in {split})")
    picked = sorted(random.Random(seed).sample(range(len(pool)), n))
    return [pool[i] for i in picked]


@dataclass
class StrategyEval:
    """One checkpoint's greedy outputs on the held-out contexts, scored."""

    checkpoint: str
    context_ids: list[str]
    gold: list[str]
    predicted: list[str | None]
    statuses: list[str]
    correct: list[bool]
    accuracy: AccuracyCI
    clean_share: float  # complete four-node chain with a non-empty reply
    settings: dict[str, Any]
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The numbers, without the per-context lists."""
        return {
            "checkpoint": self.checkpoint,
            **{
                f"accuracy_{k}" if k != "accuracy" else k: v
                for k, v in asdict(self.accuracy).items()
            },
            "clean_share": self.clean_share,
            "statuses": dict(Counter(self.statuses)),
            "predicted": dict(Counter(p or "-" for p in self.predicted).most_common()),
            "settings": self.settings,
            "seconds": round(self.seconds, 1),
        }


def evaluate_strategy(
    checkpoint: str,
    *,
    n: int = 256,
    split: str = "valid",
    seed: int = 0,
    batch_size: int = 64,
    max_new_tokens: int | None = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> StrategyEval:
    """Generate for ``n`` held-out contexts with ``checkpoint`` and score its strategies.

    Greedy by default. Window, budget and prompt convention come from the checkpoint's lineage
    (unless ``max_new_tokens`` is given); the contexts depend only on (n, split, seed). With a
    ``temperature`` above 0 (a study's sampling, e.g. the demo's 0.7 and top-p 0.9) context i
    is sampled with the seed ``seed * 1_000_003 + i``, so a run is reproducible.
    """
    from models.base import GenerationRequest, SamplingParams
    from models.care_format import parse_care_output
    from models.registry import get_backend
    from training.generation import evaluation_settings
    from training.prompts import to_messages

    started = time.perf_counter()
    settings = evaluation_settings(checkpoint, max_new_tokens=max_new_tokens, care=True)
    # before the model loads: SamplingParams is where a bad temperature or top-p stops
    sampling = SamplingParams(
        temperature=temperature, top_p=top_p, max_new_tokens=settings.max_new_tokens
    )
    examples = heldout_examples(n, split=split, window=settings.window, seed=seed)
    engine = get_backend("hf", model=checkpoint, batch_size=batch_size)
    requests = [
        GenerationRequest(
            to_messages(ex.history, care=True, seeker_placeholder=settings.seeker_placeholder),
            sampling,
            seed * 1_000_003 + i if temperature > 0 else seed,
        )
        for i, ex in enumerate(examples)
    ]
    parsed = [parse_care_output(out.text) for out in engine.generate(requests)]
    gold = [ex.strategy for ex in examples]
    predicted = [p.strategy for p in parsed]
    correct = strategy_correct(predicted, gold)
    return StrategyEval(
        checkpoint=str(checkpoint),
        context_ids=[f"{ex.dialogue_id}#{ex.turn_index}" for ex in examples],
        gold=gold,
        predicted=predicted,
        statuses=[p.status for p in parsed],
        correct=correct,
        accuracy=accuracy_ci(correct),
        clean_share=sum(p.ok and bool(p.response) for p in parsed) / len(parsed),
        settings=settings.as_dict()
        | {"split": split, "n": n, "seed": seed, "temperature": temperature, "top_p": top_p},
        seconds=time.perf_counter() - started,
    )


def compare(new: StrategyEval, old: StrategyEval, *, seed: int = 0) -> PairedGain:
    """The paired gain of ``new`` over ``old``; they must cover the same contexts."""
    if new.context_ids != old.context_ids:
        raise ValueError(f"{new.checkpoint} and {old.checkpoint} were scored on different contexts")
    return paired_gain(new.correct, old.correct, seed=seed)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: score one checkpoint, or two and their paired gain; print JSON."""
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--baseline", help="the parent to compare with (e.g. the SFT model)")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--split", default="valid", choices=HELDOUT_SPLITS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument(
        "--max-new-tokens", type=int, help="chain and reply together (default: the lineage's)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    how = dict(
        n=args.n,
        split=args.split,
        seed=args.seed,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
    )
    new = evaluate_strategy(args.checkpoint, **how)
    result: dict[str, Any] = {"checkpoint": new.summary()}
    if args.baseline:
        old = evaluate_strategy(args.baseline, **how)
        result["baseline"] = old.summary()
        result["gain"] = asdict(compare(new, old, seed=args.seed))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
