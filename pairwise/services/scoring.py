"""Automatic metrics for the responses a study already generated (no generation again).

The numbers are stored on each checkpoint under metrics["auto"][<study name>] and shown on the
study page. Definitions: training/metrics.py and docs/metrics.md.
"""

from __future__ import annotations

import logging

from pairwise.models import Checkpoint, Response, Study
from pairwise.services.generation import study_checkpoints
from pairwise.services.sampling import sampling_key
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
        stored = dict(checkpoint.metrics or {})
        stored.setdefault("auto", {})[study.name] = metrics
        Checkpoint.objects.filter(pk=checkpoint.pk).update(metrics=stored)
        results[checkpoint.label] = metrics
        log.info("scored %s on %d responses of study %s", checkpoint.label, len(rows), study.pk)
    return results


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
