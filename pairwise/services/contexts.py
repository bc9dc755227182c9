"""Eval contexts from a dataset split: the same turn examples that training uses."""

from __future__ import annotations

import logging
import random
from pathlib import Path

from django.db import transaction

from pairwise.models import EvalContext
from pairwise.services import audit
from training.datasets import load_dialogues, turn_examples

log = logging.getLogger(__name__)


def sample_examples(
    dataset: str,
    split: str,
    *,
    n: int,
    seed: int,
    window: int | None,
    data_dir: Path | None = None,
    skip_invalid: bool = False,
):
    """n turn examples drawn without replacement by `random.Random(seed)`, in a stable order.

    At most one example per dialogue while dialogues last, so the contexts are varied.
    """
    dialogues = load_dialogues(dataset, split, data_dir=data_dir, skip_invalid=skip_invalid)
    examples = [e for e in turn_examples(dialogues, window=window) if e.target.strip()]
    if skip_invalid and getattr(dialogues, "report", None) is not None:
        log.warning("%s/%s: %s", dataset, split, dialogues.report.summary())
    rng = random.Random(seed)
    by_dialogue: dict[str, list] = {}
    for e in examples:
        by_dialogue.setdefault(e.dialogue_id, []).append(e)
    order = list(by_dialogue)
    rng.shuffle(order)
    chosen = []
    round_ = 0
    while len(chosen) < n and any(len(v) > round_ for v in by_dialogue.values()):
        for d in order:
            pool = by_dialogue[d]
            if round_ == 0:
                rng.shuffle(pool)
            if len(pool) > round_ and len(chosen) < n:
                chosen.append(pool[round_])
        round_ += 1
    return chosen, getattr(dialogues, "report", None)


def import_contexts(
    dataset: str,
    split: str,
    *,
    n: int,
    seed: int = 13,
    window: int | None = 10,
    data_dir: Path | None = None,
    skip_invalid: bool = False,
    progress=None,
    actor=None,
) -> tuple[list[EvalContext], int, object]:
    """Create (or find) n eval contexts. Idempotent.

    Returns (contexts, how many were new, the loader's report of skipped records or None).
    `actor`: who imported, for the audit log."""
    examples, report = sample_examples(
        dataset,
        split,
        n=n,
        seed=seed,
        window=window,
        data_dir=data_dir,
        skip_invalid=skip_invalid,
    )
    contexts, created = [], 0
    iterator = progress(examples) if progress else examples
    with transaction.atomic():
        for e in iterator:
            ctx, new = EvalContext.objects.get_or_create(
                source=e.source,
                dialogue_id=e.dialogue_id,
                turn_index=e.turn_index,
                window=window or 0,
                defaults={
                    "history": [t.to_dict() for t in e.history],
                    "gold_response": e.target,
                    "gold_strategy": e.strategy or "",
                    "metadata": {
                        "split": split,
                        "situation": e.situation,
                        "emotion_type": e.emotion_type,
                        "problem_type": e.problem_type,
                        # how it was chosen, for the datasheet (services/datasheet.py)
                        "selection": {
                            "source": f"{dataset}/{split}",
                            "n": n,
                            "seed": seed,
                            "window": window,
                        },
                    },
                },
            )
            contexts.append(ctx)
            created += new
    log.info("imported %d contexts from %s/%s (%d new)", len(contexts), dataset, split, created)
    audit.record(
        "import",
        EvalContext,
        actor,
        kind="contexts",
        source=f"{dataset}/{split}",
        n=n,
        seed=seed,
        contexts=len(contexts),
        new=created,
    )
    return contexts, created, report
