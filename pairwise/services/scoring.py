"""Automatic metrics for the responses a study already generated (no generation again).

The numbers are stored on each checkpoint under metrics["auto"][<study name>] and shown on the
study page. Definitions: training/metrics.py and docs/metrics.md. Beside them, `generated_with`
records how the responses were generated (history windows, token budgets, prompt convention,
from their provenance) and `differs_from_training` names each way that differs from what the
checkpoint was trained with (its lineage), so a number never hides its setting.
"""

from __future__ import annotations

import logging

from pairwise.models import Checkpoint, Response, Study
from pairwise.services.generation import study_checkpoints
from pairwise.services.sampling import sampling_key
from training.lineage import generation_defaults
from training.metrics import METRIC_KEYS, compute_metrics

log = logging.getLogger(__name__)


def score_study(study: Study, *, bertscore: bool = True) -> dict[str, dict]:
    """Score every model checkpoint of the study on its responses; returns label -> metrics."""
    key = sampling_key(study.sampling)
    results: dict[str, dict] = {}
    for checkpoint in study_checkpoints(study):
        if checkpoint.backend == "static":
            continue
        rows = list(
            Response.objects.filter(checkpoint=checkpoint, sampling_key=key, context__studies=study)
            .select_related("context")
            .order_by("context_id")
        )
        if not rows:
            continue
        states = checkpoint.reasoning
        metrics = compute_metrics(
            [r.text for r in rows],
            [r.context.gold_response for r in rows],
            pred_strategies=[r.strategy or None for r in rows] if states else None,
            gold_strategies=[r.context.gold_strategy or None for r in rows] if states else None,
            bertscore=bertscore,
        )
        metrics["n"] = len(rows)
        metrics.update(generation_report(checkpoint, rows))
        stored = dict(checkpoint.metrics or {})
        stored.setdefault("auto", {})[study.name] = metrics
        Checkpoint.objects.filter(pk=checkpoint.pk).update(metrics=stored)
        results[checkpoint.label] = metrics
        log.info("scored %s on %d responses of study %s", checkpoint.label, len(rows), study.pk)
    return results


_UNRECORDED = "not recorded"  # responses generated before provenance carried the field


def generation_report(checkpoint: Checkpoint, rows: list[Response]) -> dict:
    """How the responses were generated, and where that differs from the checkpoint's training.

    `generated_with`: the distinct values of each setting over the responses' provenance.
    `differs_from_training`: one sentence per setting that differs; empty when all match."""
    trained = generation_defaults(checkpoint.lineage)
    used: dict[str, list] = {}
    for key in ("window", "max_new_tokens", "seeker_placeholder"):
        values = {(r.provenance or {}).get(key, _UNRECORDED) for r in rows}
        used[key] = sorted(values, key=lambda v: (v is None, str(v)))
    differs = []
    if trained.source != "none":
        windows = [w for w in used["window"] if w != _UNRECORDED]
        if any(w != trained.window for w in windows):
            differs.append(f"history window {windows}, trained with {trained.window}")
        budgets = [b for b in used["max_new_tokens"] if b != _UNRECORDED]
        if trained.max_new_tokens and any(b < trained.max_new_tokens for b in budgets):
            differs.append(
                f"max_new_tokens {budgets}, below the {trained.max_new_tokens} it trained with"
            )
        placeholders = [p for p in used["seeker_placeholder"] if p != _UNRECORDED]
        if any(p != trained.seeker_placeholder for p in placeholders):
            differs.append(
                f"seeker placeholder {placeholders}, trained with {trained.seeker_placeholder!r}"
            )
    return {
        "generated_with": used,
        "trained_with": {
            "window": trained.window,
            "max_new_tokens": trained.max_new_tokens,
            "seeker_placeholder": trained.seeker_placeholder,
            "source": trained.source,
        },
        "differs_from_training": differs,
    }


def study_metrics(study: Study) -> list[dict]:
    """Rows for the study page: one per checkpoint that has been scored on this study."""
    rows = []
    for checkpoint in study_checkpoints(study):
        metrics = (checkpoint.metrics or {}).get("auto", {}).get(study.name)
        if metrics:
            rows.append(
                {
                    "checkpoint": checkpoint.label,
                    "values": [metrics.get(k) for k in METRIC_KEYS],
                    "n": metrics.get("n"),
                }
            )
    return rows
