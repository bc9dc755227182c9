"""Inter-annotator agreement: Fleiss' kappa, Krippendorff's alpha, Cohen's kappa, and the
summary's agreement tables."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import krippendorff
import numpy as np
import pandas as pd
from statsmodels.stats.inter_rater import fleiss_kappa as _sm_fleiss_kappa

from pairwise.services.stats.bootstrap import _pct_interval
from pairwise.services.stats.common import ALL, _ratio
from pairwise.services.stats.encoding import _F, _F2, _NCOL, Cells, Encoded, _majority


def fleiss_kappa(table: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Fleiss' kappa of a subjects x categories table of rating counts.

    Every subject must have the same number of ratings. Wraps statsmodels'
    ``fleiss_kappa(method="fleiss")``; the Fleiss (1971) example used on Wikipedia gives 0.210.
    """
    arr = np.asarray(table, dtype=float)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"table must be a non-empty subjects x categories array, got {arr.shape}")
    totals = arr.sum(axis=1)
    if not np.all(totals == totals[0]):
        raise ValueError(
            "every subject needs the same number of ratings for Fleiss' kappa; got row totals "
            f"{sorted(set(totals.tolist()))[:5]}"
        )
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN when all ratings agree on one
        return float(_sm_fleiss_kappa(arr, method="fleiss"))


def krippendorff_alpha(
    data: Sequence[Sequence[float]] | np.ndarray, level: str = "nominal"
) -> float:
    """Krippendorff's alpha of coders x units reliability data, NaN where a coder gave no value.

    Units with fewer than two values are not pairable and drop out, as in Krippendorff (2011).
    ``level`` is "nominal", "ordinal", "interval" or "ratio". Returns NaN when alpha is undefined
    (fewer than two distinct values in the data). Wraps the ``krippendorff`` package.
    """
    arr = np.asarray(data, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"data must be coders x units, got shape {arr.shape}")
    if np.unique(arr[~np.isnan(arr)]).size < 2:
        return float("nan")
    return float(krippendorff.alpha(reliability_data=arr, level_of_measurement=level))


def _kappa_from_tables(tables: np.ndarray) -> np.ndarray:
    """Cohen's kappa of a stack of square confusion tables (..., c, c), vectorised.

    kappa = (p_o - p_e) / (1 - p_e) with p_o the diagonal share and p_e the chance agreement
    from the margins (Cohen 1960). NaN where p_e = 1 or a table is empty.
    """
    t = np.asarray(tables, dtype=float)
    n = t.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        p_o = np.trace(t, axis1=-2, axis2=-1) / n
        p_e = (t.sum(axis=-1) * t.sum(axis=-2)).sum(axis=-1) / n**2
        return (p_o - p_e) / (1.0 - p_e)


def cohen_kappa(labels1: Iterable[object], labels2: Iterable[object]) -> float:
    """Cohen's (unweighted) kappa of two raters' labels for the same units, in the same order.

    Pairs where either label is missing (None or NaN) are dropped. Returns NaN when kappa is
    undefined (no pairs, or both raters always use one and the same category).
    """
    s1, s2 = (
        pd.Series(list(labels1), dtype=object),
        pd.Series(list(labels2), dtype=object),
    )
    if len(s1) != len(s2):
        raise ValueError(f"labels1 has {len(s1)} labels but labels2 has {len(s2)}")
    keep = s1.notna() & s2.notna()
    s1, s2 = s1[keep], s2[keep]
    if s1.empty:
        return float("nan")
    codes, _ = pd.factorize(pd.concat([s1, s2], ignore_index=True))
    c = int(codes.max()) + 1
    c1, c2 = codes[: len(s1)], codes[len(s1) :]
    table = np.bincount(c1 * c + c2, minlength=c * c).reshape(c, c)
    return float(_kappa_from_tables(table))


def _fleiss_from_sums(sums: np.ndarray, r: int) -> np.ndarray:
    """Fleiss' kappa of bootstrap replicates from summed (f, f*P_i, f*T_0..2) columns."""
    m = sums[:, 0]
    pbar = _ratio(sums[:, 1], m)
    pj = _ratio(sums[:, 2:5], (m * r)[:, None])
    pe = (pj**2).sum(axis=1)
    return _ratio(pbar - pe, 1.0 - pe)


def _agreement_row(counts: np.ndarray, full: np.ndarray, r: int, boot: np.ndarray) -> dict:
    """Fleiss (complete-overlap items), Krippendorff (all pairable items), percent agreement.

    ``boot`` holds bootstrap sums of the (f, f*P_i, f*T_0..2) columns of these items.
    """
    tot = counts.sum(axis=1)
    pairable = counts[tot >= 2]
    table = counts[full]
    row: dict = {
        "unit": "items",
        "n_items_rated": int(counts.shape[0]),
        "n_raters_per_item": r if r >= 2 else None,
        "n_items": int(table.shape[0]),
        "n_items_excluded": int(counts.shape[0] - table.shape[0]),
        "fleiss_kappa": fleiss_kappa(table) if table.shape[0] else math.nan,
        "fleiss_ci_low": math.nan,
        "fleiss_ci_high": math.nan,
        "krippendorff_alpha": math.nan,
        "n_items_alpha": int(pairable.shape[0]),
        "percent_agreement": math.nan,
    }
    if boot.size and table.shape[0] >= 2:
        row["fleiss_ci_low"], row["fleiss_ci_high"] = _pct_interval(_fleiss_from_sums(boot, r))
    if pairable.shape[0]:
        ptot = pairable.sum(axis=1)
        row["percent_agreement"] = float(
            ((pairable * (pairable - 1)).sum(axis=1) / (ptot * (ptot - 1))).mean()
        )
        if np.count_nonzero(pairable.sum(axis=0)) >= 2:
            row["krippendorff_alpha"] = float(
                krippendorff.alpha(value_counts=pairable, level_of_measurement="nominal")
            )
    return row


def _agreement(enc: Encoded, cells: Cells, boot: dict[int, np.ndarray]) -> tuple[list, list]:
    """Agreement per criterion (pooled over comparisons) and per comparison x criterion."""
    comp_names, crit_names = enc.comparison_names, enc.criterion_names
    counts, full = cells.counts, cells.full
    per_crit, per_comp = [], []
    for k in range(len(crit_names)):
        r = int(cells.k_of_crit[k])
        cols = slice(k * _NCOL + _F, k * _NCOL + _F2 + 1)
        pooled = [boot[ci][:, cols] for ci in boot if boot[ci].size]
        sel_k = cells.crit == k
        row = {"criterion": str(crit_names[k])}
        row.update(
            _agreement_row(
                counts[sel_k],
                full[sel_k],
                r,
                sum(pooled) if pooled else np.empty((0, 5)),
            )
        )
        per_crit.append(row)
        for ci in range(len(comp_names)):
            sel = sel_k & (cells.comp == ci)
            if not sel.any():
                continue
            b = boot[ci][:, cols] if ci in boot and boot[ci].size else np.empty((0, 5))
            row = {"comparison": str(comp_names[ci]), "criterion": str(crit_names[k])}
            row.update(_agreement_row(counts[sel], full[sel], r, b))
            per_comp.append(row)
    return per_crit, per_comp


def _pairwise_kappa(enc: Encoded, valid: np.ndarray) -> list[dict]:
    """Cohen's kappa for each pair of annotators on their common items, per criterion."""
    ann_names, crit_names = enc.annotator_names, enc.criterion_names
    n_ann, n_items = len(ann_names), len(enc.item_id_names)
    key = enc.criterion[valid].astype(np.int64) * n_items + enc.item_id[valid]
    df = pd.DataFrame({"key": key, "ann": enc.annotator[valid], "y": enc.outcome[valid]})
    pairs = df.merge(df, on="key", suffixes=("1", "2"))
    pairs = pairs[pairs["ann1"] < pairs["ann2"]]
    if pairs.empty:
        return []
    crit = pairs["key"].to_numpy() // n_items
    grp = (crit * n_ann + pairs["ann1"].to_numpy()) * n_ann + pairs["ann2"].to_numpy()
    ug, ginv = np.unique(grp, return_inverse=True)
    cell = pairs["y1"].to_numpy() * 3 + pairs["y2"].to_numpy()
    tables = np.bincount(ginv * 9 + cell, minlength=ug.size * 9).reshape(ug.size, 3, 3)
    kappas = _kappa_from_tables(tables)
    agree = np.trace(tables, axis1=1, axis2=2) / tables.sum(axis=(1, 2))
    rest, a2 = np.divmod(ug, n_ann)
    c, a1 = np.divmod(rest, n_ann)
    names = [str(x) for x in ann_names]
    return [
        {
            "criterion": str(crit_names[c[i]]),
            "annotator_1": names[a1[i]],
            "annotator_2": names[a2[i]],
            "unit": "items",
            "n_items": int(tables[i].sum()),
            "cohen_kappa": float(kappas[i]),
            "percent_agreement": float(agree[i]),
        }
        for i in range(ug.size)
    ]


def _vs_majority(enc: Encoded, valid: np.ndarray, cells: Cells) -> list[dict]:
    """Each annotator's agreement with the strict majority of the *other* annotators."""
    counts, inv = cells.counts, cells.inv
    y = enc.outcome[valid]
    others = counts[inv].copy()
    others[np.arange(y.size), y] -= 1
    maj = _majority(others)
    has = maj >= 0
    agree = (maj == y) & has
    ann = enc.annotator[valid]
    crit = enc.criterion[valid]
    n_crit = len(enc.criterion_names)
    rows = []
    for label, grp, size in (
        ("criterion", ann * n_crit + crit, len(enc.annotator_names) * n_crit),
        ("all", ann, len(enc.annotator_names)),
    ):
        n = np.bincount(grp[has], minlength=size)
        a = np.bincount(grp[agree], minlength=size)
        for gi in np.flatnonzero(n):
            if label == "criterion":
                ai, ki = divmod(int(gi), n_crit)
                crit_name = str(enc.criterion_names[ki])
            else:
                ai, crit_name = int(gi), ALL
            rows.append(
                {
                    "annotator": str(enc.annotator_names[ai]),
                    "criterion": crit_name,
                    "unit": "judgments",
                    "denominator": "judgments whose other annotators have a strict majority",
                    "n": int(n[gi]),
                    "agreement": float(a[gi] / n[gi]),
                }
            )
    return rows
