"""Enrich ESConv supporter turns with CARE reasoning chains (the SFT targets).

    python -m training.enrich --config training/recipes/enrich_offline.yaml
    python -m training.enrich --config training/recipes/enrich_teacher.yaml --limit 100

For every supporter turn of a split (``turn_examples``), a chain of the four nodes is built whose
plan names the gold strategy, and one JSON line is written per example::

    {"id": "esconv/train/17#5", "dialogue_id": "esconv/train/17", "turn_index": 5,
     "source": "esconv", "history": [{"speaker": ..., "text": ..., "strategy": ...}, ...],
     "strategy": "Question", "response": "<gold supporter text>",
     "chain": {"context": ..., "cognition": ..., "emotion": ..., "plan": ...},
     "target": "<think>...</think>\\n<gold supporter text>",
     "provenance": {"teacher": "offline" | "<teacher model>", "template": "offline_v2" |
                    "care_chain_v1", "seed": 0, "attempts": 1}}

Two modes:

``offline``
    Deterministic: the chain is written from the annotations (problem type, emotion type, gold
    strategy, the first 12 words of the seeker's last turn) with short templated sentences. The
    wording is drawn per example from a generator seeded by (seed, dialogue id, turn index), so a
    run is reproducible and different seeds give different wordings. Tests, the demo and users
    without a teacher use it.
``teacher``
    A teacher model behind a ``models`` backend writes the chain from the versioned prompt in
    ``training/templates/<template>.txt``. The model name depends on the endpoint: the DeepSeek
    API calls R1 ``deepseek-reasoner`` (the default), a local vLLM server its hub id
    ``deepseek-ai/DeepSeek-R1``; a hub id sent to the DeepSeek API is refused before any
    request. An output that stopped at the length limit (``finish_reason`` "length") is
    rejected as ``truncated``; a chain that misses a node, is out of order, or whose plan names
    another strategy is rejected too. Rejected examples are regenerated (new seed) up to
    ``max_retries`` times, then dropped.

Files beside ``out``:

``<out>.stats.json``    counts summed over every run (``generated``, ``retried``, ``dropped``,
                        ``rejections`` by reason, ``corrupt_lines``) and one entry per run
                        (``runs``: its config, counts and times)
``<out>.dropped.jsonl`` one line per dropped example (id, rejection reasons, attempts, teacher,
                        template, seed); a resume skips them unless ``--retry_dropped``
``<out>.corrupt``       lines of ``out`` that were not a record (a crash mid-write, an edit),
                        moved here on resume with their line number, so they are not lost

Resume: on start, every valid record of ``out`` is kept and its id skipped; a line that is not
a record, anywhere in the file, is moved to ``<out>.corrupt`` and reported, and the lines after
it are kept. A resume whose template, teacher or seed differ from those of the records already
in ``out`` stops with an error naming them, unless ``--force`` is given. Each line is flushed
as soon as it is written.

This module is the command and its loop; the offline chains are ``training.offline_chains``,
the teacher's prompt and checks ``training.teacher``, and the resume bookkeeping (``out``,
``.dropped.jsonl``, ``.stats.json``) ``training.enrich_resume``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.care_format import canonical_strategy, format_care_output
from training.enrich_resume import (
    RUN_COUNTS,
    accumulate_stats,
    check_resume,
    example_id,
    read_dropped,
    scan_output,
)
from training.offline_chains import OFFLINE_TEMPLATE, offline_chain
from training.teacher import (
    check_teacher_chain,
    check_teacher_endpoint,
    load_template,
    teacher_prompt,
)

logger = logging.getLogger(__name__)


@dataclass
class EnrichConfig:
    """Options of ``python -m training.enrich`` (YAML keys and ``--flags`` alike)."""

    mode: str = field(default="offline", metadata={"help": "offline | teacher"})
    out: str = field(default="var/enriched/care_offline.jsonl", metadata={"help": "JSONL output"})
    dataset: str = field(default="esconv", metadata={"help": "corpus to enrich (esconv)"})
    split: str = field(default="train", metadata={"help": "train | valid | test"})
    data_dir: str | None = field(default=None, metadata={"help": "shared data folder"})
    limit: int | None = field(default=None, metadata={"help": "enrich only the first N examples"})
    window: int | None = field(default=None, metadata={"help": "history turns kept per example"})
    seed: int = field(default=0, metadata={"help": "wording (offline) / sampling (teacher) seed"})
    # Teacher mode
    template: str = field(default="care_chain_v1", metadata={"help": "training/templates/NAME.txt"})
    backend: str = field(default="http", metadata={"help": "models backend name"})
    teacher_model: str = field(
        default="deepseek-reasoner",
        metadata={
            "help": "the endpoint's model name: deepseek-reasoner on the DeepSeek API, the hub "
            "id (deepseek-ai/DeepSeek-R1) on a local vLLM server"
        },
    )
    backend_settings: str = field(
        default="{}",
        metadata={"help": "JSON object (or YAML mapping) of extra backend settings"},
    )
    api_key_env: str | None = field(
        default=None,
        metadata={"help": "environment variable holding the API key (never put it in a recipe)"},
    )
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 2048
    max_retries: int = 3
    batch_size: int = 16
    # Resume
    force: bool = field(
        default=False,
        metadata={"help": "resume even if template, teacher or seed differ from out's records"},
    )
    retry_dropped: bool = field(
        default=False, metadata={"help": "retry the examples earlier runs dropped"}
    )

    def __post_init__(self) -> None:
        if self.mode not in ("offline", "teacher"):
            raise ValueError(f"mode={self.mode!r}: expected 'offline' or 'teacher'")
        if self.max_retries < 0 or self.batch_size < 1:
            raise ValueError("max_retries must be >= 0 and batch_size >= 1")
        if self.mode == "teacher":
            check_teacher_endpoint(self.teacher_model, self.settings().get("base_url"))

    def provenance(self) -> dict[str, Any]:
        """What every record of this run says made it (``attempts`` is added per record)."""
        if self.mode == "offline":
            return {"teacher": "offline", "template": OFFLINE_TEMPLATE, "seed": self.seed}
        return {"teacher": self.teacher_model, "template": self.template, "seed": self.seed}

    def backend_options(self) -> dict[str, Any]:
        """Settings for ``get_backend``: the model, ``backend_settings`` and the API key."""
        options = {"model": self.teacher_model, **self.settings()}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(f"api_key_env: ${self.api_key_env} is not set")
            options.setdefault("api_key", key)
        return options

    def settings(self) -> dict[str, Any]:
        """The backend settings as a dict (YAML gives a mapping, the command line a JSON string)."""
        value = self.backend_settings
        if isinstance(value, dict):
            return dict(value)
        try:
            parsed = json.loads(value or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"backend_settings: expected a JSON object, got {value!r}") from exc
        if not isinstance(parsed, dict):
            raise ValueError(f"backend_settings: expected a JSON object, got {value!r}")
        return parsed


def _recorded_config(cfg: EnrichConfig) -> dict[str, Any]:
    """The config as written to the stats: an API key in ``backend_settings`` is masked."""
    config = asdict(cfg)
    settings = cfg.settings()
    if "api_key" in settings:
        config["backend_settings"] = {**settings, "api_key": "***"}
    return config


def make_record(example: Any, nodes: dict[str, str], provenance: dict[str, Any]) -> dict:
    """One output line: ids, history, gold strategy and text, the chain and the CARE target."""
    strategy = canonical_strategy(example.strategy) or example.strategy
    target = format_care_output(
        context=nodes["context"],
        cognition=nodes["cognition"],
        emotion=nodes["emotion"],
        strategy=strategy,
        plan=nodes["plan"],
        response=example.target,
    )
    return {
        "id": example_id(example),
        "dialogue_id": example.dialogue_id,
        "turn_index": example.turn_index,
        "source": example.source,
        "history": [t.to_dict() for t in example.history],
        "strategy": strategy,
        "response": example.target.strip(),
        "situation": example.situation,
        "emotion_type": example.emotion_type,
        "problem_type": example.problem_type,
        "chain": nodes,
        "target": target,
        "provenance": provenance,
    }


def load_examples(cfg: EnrichConfig) -> list[Any]:
    """The turn examples of ``cfg.dataset``/``cfg.split`` that have text and a gold strategy."""
    from training.datasets import load_dialogues, turn_examples

    dialogues = load_dialogues(cfg.dataset, cfg.split, data_dir=cfg.data_dir)
    examples = []
    for ex in turn_examples(dialogues, window=cfg.window):
        if ex.strategy and ex.target.strip():
            examples.append(ex)
            if cfg.limit is not None and len(examples) >= cfg.limit:
                break
    return examples


def enrich(
    cfg: EnrichConfig, *, backend: Any = None, examples: Iterable[Any] | None = None
) -> dict[str, Any]:
    """Write the enriched JSONL for ``cfg`` and return this run's counts (and the totals).

    ``backend`` (teacher mode) is any object with ``generate(list[GenerationRequest])``; by
    default ``models.registry.get_backend(cfg.backend, **cfg.backend_options())``.
    ``examples`` overrides the loaded turn examples (tests).
    """
    from tqdm.auto import tqdm

    started = time.time()
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    todo_all = list(examples) if examples is not None else load_examples(cfg)
    scan = scan_output(out)
    check_resume(cfg, out, scan)
    dropped_before = {k: v for k, v in read_dropped(out).items() if k not in scan.done}
    skip = scan.done if cfg.retry_dropped else scan.done | set(dropped_before)
    todo = [ex for ex in todo_all if example_id(ex) not in skip]
    counts: Counter[str] = Counter(
        skipped_done=sum(example_id(ex) in scan.done for ex in todo_all),
        corrupt_lines=len(scan.corrupt),
    )
    counts["skipped_dropped"] = len(todo_all) - len(todo) - counts["skipped_done"]
    reasons: Counter[str] = Counter()
    logger.info(
        "%s: %d examples, %d already written, %d dropped before (%s)",
        out,
        len(todo_all),
        counts["skipped_done"],
        len(dropped_before),
        "retrying them" if cfg.retry_dropped else "skipped; --retry_dropped retries them",
    )
    provenance = cfg.provenance()
    dropped_now: set[str] = set()

    with (
        out.open("a", encoding="utf-8") as fh,
        open(f"{out}.dropped.jsonl", "a", encoding="utf-8") as dropped_fh,
        tqdm(total=len(todo), desc="enrich") as bar,
    ):

        def write(example: Any, nodes: dict[str, str], attempts: int) -> None:
            record = make_record(example, nodes, {**provenance, "attempts": attempts})
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            counts["generated"] += 1

        def drop(example: Any, why: Counter[str], attempts: int) -> None:
            entry = {"id": example_id(example), "reasons": dict(why), "attempts": attempts}
            dropped_fh.write(json.dumps({**entry, **provenance}) + "\n")
            dropped_fh.flush()
            dropped_now.add(entry["id"])
            counts["dropped"] += 1
            logger.warning("%s: dropped after %d attempts (%s)", entry["id"], attempts, dict(why))

        if cfg.mode == "offline":
            for ex in todo:
                write(ex, offline_chain(ex, seed=cfg.seed), 1)
                bar.update(1)
        else:
            from models.base import GenerationRequest, SamplingParams

            if backend is None:
                from models.registry import get_backend

                backend = get_backend(cfg.backend, **cfg.backend_options())
            template, _ = load_template(cfg.template)
            sampling = SamplingParams(
                temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens
            )
            for start in range(0, len(todo), cfg.batch_size):
                pending = list(todo[start : start + cfg.batch_size])
                why: dict[str, Counter[str]] = {example_id(ex): Counter() for ex in pending}
                for attempt in range(cfg.max_retries + 1):
                    requests = [
                        GenerationRequest(
                            messages=[{"role": "user", "content": teacher_prompt(template, ex)}],
                            sampling=sampling,
                            seed=cfg.seed + 1_000_003 * attempt + ex.turn_index,
                        )
                        for ex in pending
                    ]
                    generations = backend.generate(requests)
                    failed = []
                    for ex, gen in zip(pending, generations, strict=True):
                        if getattr(gen, "finish_reason", None) == "length":
                            nodes, reason = None, "truncated"  # stopped at max_new_tokens
                        else:
                            nodes, reason = check_teacher_chain(gen.text, ex.strategy)
                        if nodes is None:
                            reasons[reason] += 1
                            why[example_id(ex)][reason] += 1
                            failed.append(ex)
                            continue
                        write(ex, nodes, attempt + 1)
                        bar.update(1)
                    pending = failed
                    if not pending:
                        break
                    if attempt < cfg.max_retries:
                        counts["retried"] += len(pending)
                for ex in pending:
                    drop(ex, why[example_id(ex)], attempt + 1)
                bar.update(len(pending))

    still_dropped = (set(dropped_before) - scan.done - {example_id(ex) for ex in todo}) | (
        dropped_now
    )
    run = {
        "out": str(out),
        "mode": cfg.mode,
        "started_at": started,
        "seconds": round(time.time() - started, 3),
        "generated": counts["generated"],
        "retried": counts["retried"],
        "dropped": counts["dropped"],
        "skipped_done": counts["skipped_done"],
        "skipped_dropped": counts["skipped_dropped"],
        "corrupt_lines": counts["corrupt_lines"],
        "rejections": dict(reasons),
        "config": _recorded_config(cfg),
    }
    totals = accumulate_stats(
        Path(f"{out}.stats.json"),
        run,
        records=len(scan.done) + counts["generated"],
        dropped_ids=len(still_dropped),
    )
    logger.info(
        "%s: generated %d, retried %d, dropped %d, already done %d, skipped as dropped %d, "
        "corrupt lines %d; %d records in all",
        out,
        run["generated"],
        run["retried"],
        run["dropped"],
        run["skipped_done"],
        run["skipped_dropped"],
        run["corrupt_lines"],
        totals["records"],
    )
    return {**run, "totals": {k: totals[k] for k in (*RUN_COUNTS, "rejections", "records")}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point (``--config recipe.yaml`` plus ``--flag value`` overrides)."""
    from trl import TrlParser

    logging.basicConfig(
        level=os.environ.get("LOGLEVEL", "INFO"), format="%(levelname)s %(message)s"
    )
    (cfg,) = TrlParser((EnrichConfig,)).parse_args_and_config(args=argv)
    stats = enrich(cfg)
    print(json.dumps({k: v for k, v in stats.items() if k != "config"}, default=str))
    return stats


if __name__ == "__main__":
    main()
