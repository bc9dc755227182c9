"""`summarize`: everything a study reports, from its long table, as one JSON-serialisable dict."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pairwise.services.stats.agreement import _agreement, _pairwise_kappa, _vs_majority
from pairwise.services.stats.bootstrap import _bootstrap
from pairwise.services.stats.common import (
    ALL,
    LOW_GOLD_MIN_N,
    LOW_GOLD_RATE,
    OVERALL,
    TOO_FAST_FLOOR_S,
    TOO_FAST_FRACTION,
    _jsonable,
    _records,
)
from pairwise.services.stats.encoding import _cells, _encode
from pairwise.services.stats.preference import _preference
from pairwise.services.stats.quality import _annotators, _position_bias
from pairwise.services.stats.ranking import _bt_from_codes


def summarize(long_df: pd.DataFrame, *, seed: int = 0, n_boot: int = 1000) -> dict:
    """Everything the study reports, as one JSON-serialisable dict (tables as lists of records).

    Keys: ``preference`` (judgment level) and ``preference_items`` (majority vote per item), two
    rows per comparison x criterion (``denominator`` "all" and "non-tied"); ``agreement`` (per
    criterion) and ``agreement_by_comparison``; ``pairwise_kappa``; ``annotator_vs_majority``;
    ``position_bias``; ``annotators``; ``ranking`` (Bradley-Terry); ``n_judgments``,
    ``n_items``, ``counts`` and ``meta`` (seed, n_boot, rules). See docs/statistics.md.
    ``long_df`` is a long-format table as returned by ``longformat.read_long``/``validate_long``.
    """
    enc = _encode(long_df)
    valid = ~enc.is_gold & (enc.outcome >= 0)
    cells = _cells(enc, valid)
    boot = _bootstrap(enc, cells, n_boot, seed)
    judg, items = _preference(enc, cells, boot)
    per_crit, per_comp = _agreement(enc, cells, boot)
    crit_names = [str(x) for x in enc.criterion_names]
    rank_crit = OVERALL if OVERALL in crit_names else ALL
    rank_mask = valid & (
        enc.criterion == crit_names.index(OVERALL) if rank_crit == OVERALL else True
    )
    ranking: list[dict] = []
    if rank_mask.any():
        pair_codes, sys_names = pd.factorize(
            pd.Series([x for pair in enc.comparison_systems for x in pair], dtype=object)
        )
        comp = enc.comparison[rank_mask]
        bt = _bt_from_codes(
            pair_codes[0::2][comp],
            pair_codes[1::2][comp],
            enc.outcome[rank_mask],
            [str(x) for x in sys_names],
            min(n_boot, 1000),
            seed,
        )
        bt = bt.reset_index()
        bt.insert(1, "criterion", rank_crit)
        bt["unit"] = "judgments"
        ranking = _records(bt)
    annotators, threshold = _annotators(enc)
    gold_items = np.unique(enc.item_id[enc.is_gold])
    summary = {
        "study": enc.study,
        "n_judgments": enc.n,
        "n_items": int(np.unique(enc.item_id[~enc.is_gold]).size),
        "counts": {
            "judgments": enc.n,
            "preference_judgments": int(valid.sum()),
            "cannot_judge": int((~enc.is_gold & (enc.outcome < 0)).sum()),
            "gold_judgments": int(enc.is_gold.sum()),
            "gold_items": int(gold_items.size),
            "annotators": len(enc.annotator_names),
            "comparisons": len(enc.comparison_names),
            "criteria": crit_names,
        },
        "preference": judg,
        "preference_items": items,
        "agreement": per_crit,
        "agreement_by_comparison": per_comp,
        "pairwise_kappa": _pairwise_kappa(enc, valid),
        "annotator_vs_majority": _vs_majority(enc, valid, cells),
        "position_bias": _position_bias(enc),
        "annotators": annotators,
        "ranking": ranking,
        "meta": {
            "seed": seed,
            "n_boot": n_boot,
            "ci_level": 0.95,
            "bootstrap_unit": "items, resampled within each comparison (ranking: judgments)",
            "ranking_criterion": rank_crit,
            "too_fast_rule": (
                f"median seconds per item < max({TOO_FAST_FLOOR_S:g} s, "
                f"{TOO_FAST_FRACTION:g} x study median)"
            ),
            "too_fast_threshold_seconds": threshold,
            "low_gold_rule": (
                f"gold pass rate < {LOW_GOLD_RATE:g} with at least {LOW_GOLD_MIN_N} gold judgments"
            ),
            "holm_family": "comparisons of the study, per criterion and unit",
        },
    }
    return _jsonable(summary)  # type: ignore[return-value]
