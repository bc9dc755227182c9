"""Direct preference optimisation from the site's human preferences, with TRL's DPOTrainer.

    python manage.py export_study STUDY --format preferences --out var/prefs
    python -m training.dpo --config training/recipes/dpo_tiny.yaml \\
        --preferences_file var/prefs/preferences.jsonl --model_name_or_path var/checkpoints/X
    python manage.py register_checkpoint var/checkpoints/dpo-tiny
    python manage.py requeue STUDY --latest SYSTEM

The input is the ``preferences.jsonl`` that ``export_study --format preferences`` writes
(``pairwise/services/preferences.py``): per item and criterion, ``prompt`` (chat messages, the
plain prompt of ``training.prompts.to_messages``), ``chosen`` and ``rejected`` (reply texts),
``margin``, ``tie``, ``study``... One criterion is trained on (``criterion``, "Overall" by
default): the rows of different criteria are the same pairs, sometimes ordered differently.
Tied rows (``--keep-ties`` exports) are never trained on.

The replies are plain text (the site keeps reasoning chains apart), so the checkpoint learns
plain replies (``care: false``). This is not part of the CARE paper; see docs/training.md.

The output folder holds the model, tokenizer and ``lineage.json`` (``training.lineage``), which
names the study (or studies) the preferences came from. The system name defaults to the
parent's, so the checkpoint registers as that system's next version and ``requeue`` brings it
into the same study.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.cli import resolved_config, run_cli
from training.lineage import (
    LineageError,
    checkpoint_generation_defaults,
    parent_info,
    read_lineage,
    sha256_examples,
    sha256_file,
    write_lineage,
)
from training.progress import progress_callbacks
from training.sft import (
    final_loss,
    generation_record,
    load_tokenizer,
    longest_completion_tokens,
    non_finite_guard,
)

logger = logging.getLogger(__name__)
REQUIRED_KEYS = ("prompt", "chosen", "rejected", "criterion", "tie", "study")


@dataclass
class DPOArguments:
    """Which preferences to train on and where the checkpoint comes from."""

    model_name_or_path: str = field(
        default="var/checkpoints/care-grpo-tiny",
        metadata={"help": "the parent checkpoint folder (also the frozen reference model)"},
    )
    preferences_file: str | None = field(
        default=None,
        metadata={"help": "preferences.jsonl from `export_study --format preferences`"},
    )
    criterion: str | None = field(
        default="Overall",
        metadata={"help": "train on this criterion's rows (None: every row)"},
    )
    min_margin: float = field(
        default=0.0,
        metadata={"help": "leave out rows whose margin (share of annotators agreeing) is lower"},
    )
    window: int | None = field(
        default=None,
        metadata={
            "help": "keep the last N history messages of each prompt, after the system prompt "
            "(None: the whole history annotators saw)"
        },
    )
    limit: int | None = field(default=None, metadata={"help": "use only the first N pairs"})
    system_name: str | None = field(
        default=None,
        metadata={"help": "name in lineage.json; default: the parent checkpoint's system"},
    )
    register: bool = field(
        default=False,
        metadata={"help": "register the checkpoint with the evaluation site when done"},
    )

    def __post_init__(self) -> None:
        if not self.preferences_file:
            raise ValueError("preferences_file is required (export_study --format preferences)")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window={self.window}: expected >= 1, or None for the whole history")
        if not 0.0 <= self.min_margin <= 1.0:
            raise ValueError(f"min_margin={self.min_margin}: expected a share in [0, 1]")


def read_preferences(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a preferences.jsonl, erroring with file:line on a bad line."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                missing = [k for k in REQUIRED_KEYS if k not in row]
            except (json.JSONDecodeError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not a preference row ({exc!r})") from exc
            if missing:
                raise ValueError(f"{path}:{lineno}: missing key(s) {missing}")
            rows.append(row)
    return rows


def cut_prompt(messages: list[dict[str, str]], window: int | None) -> list[dict[str, str]]:
    """The system message (when first) and the last ``window`` messages after it.

    >>> m = [{"role": "system"}, {"role": "user"}, {"role": "assistant"}, {"role": "user"}]
    >>> [x["role"] for x in cut_prompt(m, 2)]
    ['system', 'assistant', 'user']
    >>> cut_prompt(m, None) == m
    True
    """
    if window is None:
        return messages
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    return head + messages[len(head) :][-window:]


def build_pairs(args: DPOArguments, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conversational preference pairs for DPOTrainer: the prompt messages (cut to ``window``),
    and the chosen and rejected replies as one assistant message each. Ties, other criteria and
    rows under ``min_margin`` are left out."""
    pairs = []
    for row in rows:
        if row["tie"] or (args.criterion and row["criterion"] != args.criterion):
            continue
        if float(row.get("margin", 1.0)) < args.min_margin:
            continue
        pairs.append(
            {
                "prompt": cut_prompt(row["prompt"], args.window),
                "chosen": [{"role": "assistant", "content": row["chosen"]}],
                "rejected": [{"role": "assistant", "content": row["rejected"]}],
            }
        )
        if args.limit is not None and len(pairs) >= args.limit:
            break
    if not pairs:
        raise ValueError(
            f"{args.preferences_file}: no untied pairs for criterion={args.criterion!r} "
            f"with margin >= {args.min_margin}"
        )
    return pairs


def default_system_name(args: DPOArguments) -> str:
    """``system_name``, else the parent checkpoint's system (its next version)."""
    if args.system_name:
        return args.system_name
    try:
        return read_lineage(args.model_name_or_path)["system"]
    except LineageError as exc:
        raise ValueError(f"system_name: not given and the parent has no lineage ({exc})") from exc


def build_trainer(args: DPOArguments, training_args: Any, pairs: list[dict[str, Any]]):
    """A ``DPOTrainer`` on ``pairs``; the reference model is a frozen copy of the parent."""
    from datasets import Dataset
    from trl import DPOTrainer

    tokenizer = load_tokenizer(args.model_name_or_path)
    return DPOTrainer(
        model=args.model_name_or_path,
        args=training_args,
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
        callbacks=[non_finite_guard(), *progress_callbacks()],
    )


def train(args: DPOArguments, training_args: Any) -> Path:
    """Run DPO, save the model, tokenizer and ``lineage.json``; return the output folder."""
    system = default_system_name(args)
    rows = read_preferences(args.preferences_file)
    pairs = build_pairs(args, rows)
    studies = sorted({str(r["study"]) for r in rows})
    logger.info(
        "DPO %s: %d pairs from %s (studies %s)",
        training_args.output_dir,
        len(pairs),
        args.preferences_file,
        studies,
    )
    trainer = build_trainer(args, training_args, pairs)
    budget = longest_completion_tokens(
        trainer.processing_class, [{"completion": p["chosen"]} for p in pairs]
    )
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    out = Path(training_args.output_dir)
    trainer.save_model(str(out))
    loss = final_loss(trainer.state.log_history)
    window = args.window or checkpoint_generation_defaults(args.model_name_or_path).window
    write_lineage(
        out,
        system=system,
        stage="dpo",
        config=resolved_config(args, training_args),
        data={
            "files": {
                str(Path(args.preferences_file).resolve()): sha256_file(args.preferences_file)
            },
            "examples_sha256": sha256_examples(pairs),
            "n_examples": len(pairs),
            "studies": studies,
            "criterion": args.criterion,
        },
        study=studies[0] if len(studies) == 1 else studies,
        parent=parent_info(args.model_name_or_path),
        metrics={
            "final_loss": loss if loss is None or math.isfinite(loss) else str(loss),
            "train_loss": result.metrics.get("train_loss"),
            "global_step": trainer.state.global_step,
            "train_runtime_s": result.metrics.get("train_runtime"),
            "beta": training_args.beta,
        },
        care=False,
        backend={"backend": "vllm", "reasoning": False},
        generation=generation_record(window, budget, "the longest chosen reply, in tokens", None),
    )
    if hasattr(trainer, "end"):
        trainer.end()
    return out


def make_parser():
    """The ``TrlParser`` for (DPOArguments, DPOConfig)."""
    from trl import DPOConfig, TrlParser

    return TrlParser((DPOArguments, DPOConfig))


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point: ``--config recipe.yaml`` plus ``--flag value`` overrides."""
    return run_cli(make_parser(), train, argv)


if __name__ == "__main__":
    main()
