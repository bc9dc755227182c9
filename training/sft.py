"""Supervised fine-tuning for CARE and the baselines, with TRL's SFTTrainer.

    python -m training.sft --config training/recipes/care_sft_tiny.yaml
    python -m training.sft --config training/recipes/baseline_esconv_tiny.yaml --max_steps 5
    accelerate launch --config_file training/recipes/accelerate/single_gpu.yaml \\
        -m training.sft --config training/recipes/care_sft_real.yaml

One script serves every system; the recipe picks the data:

``dataset: care``    the enriched JSONL (``train_file``, from ``training.enrich``): the target is
                     the CARE chain followed by the gold reply (``care: true``).
``dataset: esconv``  ESConv supporter turns, plain reply (the ESConv baseline, ``care: false``).
``dataset: augesc``  AugESC dialogues, plain reply (the AugESC baseline).
``dataset: extes``   ExTES dialogues, plain reply (the ExTES baseline).

Every example is conversational prompt-completion: the prompt is
``training.prompts.to_messages(history, care=care)`` (the same messages the site generates with)
and the completion is one assistant message. With ``completion_only_loss`` (the default for this
format) the prompt tokens are masked (label -100): only the reply, or chain and reply, is learned.

The output folder holds the model, tokenizer and ``lineage.json`` (see ``training.lineage``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.cli import resolved_config, run_cli
from training.lineage import parent_info, sha256_examples, sha256_file, write_lineage
from training.progress import progress_callbacks
from training.prompts import to_messages

logger = logging.getLogger(__name__)

DATASETS = ("care", "esconv", "augesc", "extes")
SYSTEM_NAMES = {"care": "CARE-SFT", "esconv": "ESConv", "augesc": "AugESC", "extes": "ExTES"}


@dataclass
class DataArguments:
    """Which examples to train on; shared by ``training.sft`` and ``training.grpo``."""

    model_name_or_path: str = field(
        default="var/models/tiny-xs", metadata={"help": "base model or parent checkpoint folder"}
    )
    dataset: str = field(default="care", metadata={"help": "care | esconv | augesc | extes"})
    train_file: str | None = field(
        default=None, metadata={"help": "enriched JSONL from training.enrich (dataset: care)"}
    )
    data_dir: str | None = field(default=None, metadata={"help": "shared data folder"})
    split: str | None = field(default="train", metadata={"help": "corpus split to read"})
    window: int | None = field(default=None, metadata={"help": "history turns kept per example"})
    seeker_placeholder: str | None = field(
        default=None,
        metadata={
            "help": "seeker turn inserted after a supporter turn (None: the ESConv convention, "
            "nothing inserted; '...' reproduces checkpoints trained before it)"
        },
    )
    limit: int | None = field(default=None, metadata={"help": "use only the first N examples"})
    care: bool = field(default=True, metadata={"help": "reasoning target (CARE) or plain reply"})
    system_name: str | None = field(
        default=None, metadata={"help": "name in lineage.json; default from dataset"}
    )
    register: bool = field(
        default=False,
        metadata={"help": "register the checkpoint with the evaluation site when done"},
    )

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r}: expected one of {DATASETS}")
        if self.dataset == "care" and not self.train_file:
            raise ValueError("dataset=care needs train_file (the JSONL from training.enrich)")
        if self.dataset != "care" and self.care:
            # Raw corpora carry no chains: a CARE target can only come from enrichment.
            raise ValueError(f"dataset={self.dataset!r} has no reasoning chains: set care: false")


def read_enriched(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The records of an enriched JSONL, erroring with file:line on a bad line."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                record["history"], record["target"]  # noqa: B018 - required keys
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: not an enriched record ({exc!r})") from exc
            records.append(record)
            if limit is not None and len(records) >= limit:
                break
    return records


def iter_turn_examples(args: DataArguments) -> Iterator[Any]:
    """Supporter turns of ``args.dataset`` with non-empty text (at most ``args.limit``)."""
    from training.datasets import load_dialogues, turn_examples

    split = args.split if args.split not in ("", "none", "None") else None
    dialogues = load_dialogues(args.dataset, split, data_dir=args.data_dir)
    n = 0
    for ex in turn_examples(dialogues, window=args.window):
        if not ex.target.strip():
            continue
        yield ex
        n += 1
        if args.limit is not None and n >= args.limit:
            return


def build_examples(args: DataArguments) -> list[dict[str, Any]]:
    """Prompt-completion rows: ``{"prompt": [messages], "completion": [assistant message]}``."""
    from training.datasets.types import Turn

    rows = []
    if args.dataset == "care":
        for record in read_enriched(args.train_file, args.limit):
            history = [Turn.from_dict(t) for t in record["history"]]
            if args.window is not None:
                history = history[-args.window :] if args.window > 0 else []
            target = record["target"] if args.care else record["response"]
            rows.append(
                {
                    "prompt": to_messages(
                        history, care=args.care, seeker_placeholder=args.seeker_placeholder
                    ),
                    "completion": [{"role": "assistant", "content": target}],
                }
            )
    else:
        for ex in iter_turn_examples(args):
            rows.append(
                {
                    "prompt": to_messages(
                        ex.history, care=False, seeker_placeholder=args.seeker_placeholder
                    ),
                    "completion": [{"role": "assistant", "content": ex.target.strip()}],
                }
            )
    if not rows:
        raise ValueError(f"no training examples for dataset={args.dataset!r} ({args})")
    return rows


def trained_window(args: DataArguments) -> int | None:
    """The history window the examples were cut with: ``args.window``, else, for enriched
    data, the longest history in the file (enrichment cut them; its window is not in the
    records), else None (the whole history)."""
    if args.window is not None:
        return args.window
    if args.dataset == "care":
        records = read_enriched(args.train_file, args.limit)
        return max((len(r["history"]) for r in records), default=0) or None
    return None


def longest_completion_tokens(tokenizer: Any, rows: list[dict[str, Any]]) -> int | None:
    """The longest completion among ``rows``, in tokens, plus one for the end-of-turn token:
    the generation budget that lets the model write any target it was trained on."""
    texts = [m["content"] for row in rows for m in row["completion"]]
    if not texts:
        return None
    return max(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]) + 1


def generation_record(
    window: int | None, max_new_tokens: int | None, budget_from: str, placeholder: str | None
) -> dict[str, Any]:
    """The ``generation`` entry of lineage.json (``training.lineage.generation_defaults``)."""
    return {
        "window": window,
        "max_new_tokens": max_new_tokens,
        "budget_from": budget_from,
        "seeker_placeholder": placeholder,
    }


def data_fingerprint(args: DataArguments, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``data`` entry of lineage.json: hashes of the input file(s) and of the rows used."""
    files = {}
    if args.train_file:
        files[str(Path(args.train_file).resolve())] = sha256_file(args.train_file)
    return {"files": files, "examples_sha256": sha256_examples(rows), "n_examples": len(rows)}


def final_loss(log_history: list[dict[str, Any]]) -> float | None:
    """The last logged training loss (``loss``, else the summary ``train_loss``)."""
    for entry in reversed(log_history):
        if "loss" in entry:
            return float(entry["loss"])
    for entry in reversed(log_history):
        if "train_loss" in entry:
            return float(entry["train_loss"])
    return None


class TrainingDiverged(RuntimeError):
    """The logged loss or gradient norm stopped being a finite number."""


def non_finite_guard():
    """A ``TrainerCallback`` that stops training, naming the step, as soon as a logged ``loss`` or
    ``grad_norm`` is NaN or infinite. Without it the optimizer keeps stepping on NaN weights and
    GRPO dies later inside sampling with a CUDA device-side assert (seen on an H200: the tiny GRPO
    recipe in bf16 at learning rate 5e-4 reached ``grad_norm: nan`` at step 48)."""
    from transformers import TrainerCallback

    class StopOnNonFinite(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            for key in ("loss", "grad_norm"):
                value = (logs or {}).get(key)
                if value is not None and not math.isfinite(float(value)):
                    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
                    raise TrainingDiverged(
                        f"{args.output_dir}: step {state.global_step}: {key} is {value}; "
                        f"training diverged (learning_rate {args.learning_rate}, {precision}). "
                        "Lower learning_rate, or train in fp32 (bf16: false)."
                    )

    return StopOnNonFinite()


def load_tokenizer(path: str, **kwargs: Any):
    """The model's tokenizer, padding with EOS when it has no pad token (the tiny models)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_trainer(
    args: DataArguments, training_args: Any, rows: list[dict[str, Any]] | None = None
):
    """An ``SFTTrainer`` for ``args`` (rows built from ``args`` unless given)."""
    from datasets import Dataset
    from trl import SFTTrainer

    rows = build_examples(args) if rows is None else rows
    tokenizer = load_tokenizer(args.model_name_or_path)
    return SFTTrainer(
        model=args.model_name_or_path,
        args=training_args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[non_finite_guard(), *progress_callbacks()],
    )


def train(args: DataArguments, training_args: Any) -> Path:
    """Fine-tune, save the model, tokenizer and ``lineage.json``; return the output folder."""
    rows = build_examples(args)
    logger.info(
        "SFT %s: %d examples from dataset=%s", training_args.output_dir, len(rows), args.dataset
    )
    trainer = build_trainer(args, training_args, rows)
    budget = longest_completion_tokens(trainer.processing_class, rows)
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    out = Path(training_args.output_dir)
    trainer.save_model(str(out))
    loss = final_loss(trainer.state.log_history)
    if loss is None or not math.isfinite(loss):
        logger.warning("SFT %s: final loss is %s", out, loss)
    write_lineage(
        out,
        system=args.system_name or SYSTEM_NAMES[args.dataset],
        stage="sft",
        config=resolved_config(args, training_args),
        data=data_fingerprint(args, rows),
        parent=parent_info(args.model_name_or_path),
        metrics={
            "final_loss": loss,
            "train_loss": result.metrics.get("train_loss"),
            "global_step": trainer.state.global_step,
            "train_runtime_s": result.metrics.get("train_runtime"),
        },
        care=args.care,
        backend={"backend": "vllm", "reasoning": args.care},
        generation=generation_record(
            trained_window(args),
            budget,
            "the longest training completion, in tokens",
            args.seeker_placeholder,
        ),
    )
    if hasattr(trainer, "end"):
        trainer.end()
    return out


def make_parser():
    """The ``TrlParser`` for (DataArguments, SFTConfig)."""
    from trl import SFTConfig, TrlParser

    return TrlParser((DataArguments, SFTConfig))


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point: ``--config recipe.yaml`` plus ``--flag value`` overrides."""
    return run_cli(make_parser(), train, argv)


if __name__ == "__main__":
    main()
