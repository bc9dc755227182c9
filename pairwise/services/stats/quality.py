"""Annotator quality: position bias, speed (too fast) and gold pass rates."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from pairwise.services.stats.common import (
    ALL,
    LOW_GOLD_MIN_N,
    LOW_GOLD_RATE,
    TOO_FAST_FLOOR_S,
    TOO_FAST_FRACTION,
    _holm,
    _wilson,
)
from pairwise.services.stats.encoding import Encoded


def _position_bias(enc: Encoded) -> list[dict]:
    """Share of 'left' among left/right choices vs 0.5 (binomial test): overall, per criterion,
    per annotator; Holm across the per-annotator rows."""
    choice = enc.choice
    keep = ~enc.is_gold & ((choice == 0) | (choice == 1))
    left = choice[keep] == 0
    ann, crit = enc.annotator[keep], enc.criterion[keep]

    def row(annotator: str, criterion: str, mask: np.ndarray) -> dict:
        n, k = int(mask.sum()), int(left[mask].sum())
        lo, hi = _wilson(k, n)
        return {
            "annotator": annotator,
            "criterion": criterion,
            "unit": "judgments",
            "denominator": "non-tied",
            "n": n,
            "n_left": k,
            "left_share": k / n if n else math.nan,
            "ci_low": lo,
            "ci_high": hi,
            "p_value": float(binomtest(k, n, 0.5).pvalue) if n else math.nan,
        }

    rows = [row(ALL, ALL, np.ones(left.size, bool))]
    for k, name in enumerate(enc.criterion_names):
        rows.append(row(ALL, str(name), crit == k))
    ann_rows = [row(str(name), ALL, ann == a) for a, name in enumerate(enc.annotator_names)]
    ann_rows = [r for r in ann_rows if r["n"] > 0]
    for r, p in zip(ann_rows, _holm([r["p_value"] for r in ann_rows]), strict=True):
        r["p_holm"] = p
    for r in rows:
        r["p_holm"] = math.nan
    return rows + ann_rows


def _annotators(enc: Encoded) -> tuple[list[dict], float]:
    """Per-annotator workload, speed and gold pass rate, with the flags' rules applied."""
    n_items, n_ann = len(enc.item_id_names), len(enc.annotator_names)
    ann, item = enc.annotator, enc.item_id
    # Seconds are per item: the same value on each criterion row, so take one (the max).
    key = ann.astype(np.int64) * n_items + item
    per_item = pd.Series(enc.seconds).groupby(key).max()
    ai = per_item.index.to_numpy() // n_items
    secs = per_item.to_numpy()
    study_median = float(np.nanmedian(secs)) if np.isfinite(secs).any() else math.nan
    threshold = max(TOO_FAST_FLOOR_S, TOO_FAST_FRACTION * study_median)
    sec_stats = pd.DataFrame({"a": ai, "s": secs}).groupby("a")["s"].agg(["median", "mean", "size"])
    n_judg = np.bincount(ann, minlength=n_ann)
    gold = enc.is_gold
    if gold.any():
        passed = gold & (enc.choice == enc.gold_expected) & (enc.gold_expected >= 0)
        n_gold = np.bincount(ann[gold], minlength=n_ann)
        n_pass = np.bincount(ann[passed], minlength=n_ann)
    else:
        n_gold = n_pass = np.zeros(n_ann, dtype=int)
    cj = ~gold & (enc.outcome < 0)
    n_cj = np.bincount(ann[cj], minlength=n_ann)
    rows = []
    for a, name in enumerate(enc.annotator_names):
        med = float(sec_stats.at[a, "median"]) if a in sec_stats.index else math.nan
        rate = n_pass[a] / n_gold[a] if n_gold[a] else math.nan
        rows.append(
            {
                "annotator": str(name),
                "n_judgments": int(n_judg[a]),
                "n_items": int(sec_stats.at[a, "size"]) if a in sec_stats.index else 0,
                "n_cannot_judge": int(n_cj[a]),
                "median_seconds_per_item": med,
                "mean_seconds_per_item": (
                    float(sec_stats.at[a, "mean"]) if a in sec_stats.index else math.nan
                ),
                "too_fast": bool(np.isfinite(med) and med < threshold),
                "n_gold": int(n_gold[a]),
                "gold_pass_rate": rate,
                "low_gold": bool(n_gold[a] >= LOW_GOLD_MIN_N and rate < LOW_GOLD_RATE),
            }
        )
    return rows, threshold
