"""Win / tie / lose tables per comparison and criterion, at the judgment and the item (majority)
level, with Wilson and bootstrap intervals and Holm-corrected sign tests."""

from __future__ import annotations

import math

import numpy as np

from pairwise.services.stats.bootstrap import _pct_interval
from pairwise.services.stats.common import _holm, _ratio, _sign_test, _wilson
from pairwise.services.stats.encoding import (
    _A,
    _B,
    _MA,
    _MB,
    _MT,
    _NCOL,
    _T,
    Cells,
    Encoded,
)


def _preference_rows(
    unit: str,
    base: dict,
    w: int,
    t: int,
    l_: int,
    excluded: int,
    boot: np.ndarray | None,
) -> list[dict]:
    """The two rows (denominator all / non-tied) of one comparison x criterion x unit.

    ``boot`` holds bootstrap sums (n_boot x 3) of wins, ties, losses.
    """
    n_all, n_nt = w + t + l_, w + l_
    p = _sign_test(w, l_)
    rows = []
    for denom, n in (("all", n_all), ("non-tied", n_nt)):
        row = dict(base)
        row.update(
            unit=unit,
            denominator=denom,
            n=n,
            wins=w,
            ties=t,
            losses=l_,
            n_excluded=excluded,
            win_rate=_ratio(w, n) if n else math.nan,
            tie_rate=(_ratio(t, n) if n else math.nan) if denom == "all" else math.nan,
            lose_rate=_ratio(l_, n) if n else math.nan,
        )
        row["win_rate_wilson_low"], row["win_rate_wilson_high"] = _wilson(w, n)
        if boot is not None and boot.size:
            bw, bt, bl = boot[:, 0], boot[:, 1], boot[:, 2]
            bn = bw + bt + bl if denom == "all" else bw + bl
            row["win_rate_boot_low"], row["win_rate_boot_high"] = _pct_interval(_ratio(bw, bn))
        else:
            row["win_rate_boot_low"] = row["win_rate_boot_high"] = math.nan
        if denom == "all":
            row["win_rate_ties_half"] = _ratio(w + 0.5 * t, n) if n else math.nan
            if boot is not None and boot.size:
                lo, hi = _pct_interval(_ratio(bw + 0.5 * bt, bw + bt + bl))
            else:
                lo = hi = math.nan
            row["ties_half_boot_low"], row["ties_half_boot_high"] = lo, hi
        else:
            row["win_rate_ties_half"] = math.nan
            row["ties_half_boot_low"] = row["ties_half_boot_high"] = math.nan
        row["sign_test_p"] = p
        rows.append(row)
    return rows


def _preference(enc: Encoded, cells: Cells, boot: dict[int, np.ndarray]) -> tuple[list, list]:
    """Judgment-level and item-level (majority vote) preference tables."""
    comp_names, crit_names = enc.comparison_names, enc.criterion_names
    n_crit = len(crit_names)
    # cannot_judge per comparison x criterion (non-gold rows without an outcome).
    cj = ~enc.is_gold & (enc.outcome < 0)
    cj_counts = np.bincount(
        enc.comparison[cj] * n_crit + enc.criterion[cj],
        minlength=len(comp_names) * n_crit,
    )
    # Every comparison x criterion with a non-gold judgment gets rows, even if all of them were
    # cannot_judge (n = 0), so the dashboard can show why a cell is empty.
    ng = ~enc.is_gold
    present = np.unique(enc.comparison[ng].astype(np.int64) * n_crit + enc.criterion[ng])
    judg_rows: list[dict] = []
    item_rows: list[dict] = []
    for ci in range(len(comp_names)):
        sel = cells.comp == ci
        crits = present[present // n_crit == ci] % n_crit
        if crits.size == 0:
            continue
        sys_a, sys_b = enc.comparison_systems[ci]
        b = boot.get(ci)
        for k in crits:
            base = {
                "study": enc.study,
                "comparison": str(comp_names[ci]),
                "system_a": str(sys_a),
                "system_b": str(sys_b),
                "criterion": str(crit_names[k]),
            }
            in_k = sel & (cells.crit == k)
            w, l_, t = (int(cells.counts[in_k, j].sum()) for j in range(3))
            c0 = k * _NCOL
            # bootstrap columns reordered to (wins, ties, losses)
            bj = b[:, [c0 + _A, c0 + _T, c0 + _B]] if b is not None and b.size else None
            judg_rows += _preference_rows(
                "judgments", base, w, t, l_, int(cj_counts[ci * n_crit + k]), bj
            )
            mk = cells.majority[in_k]
            wi, li, ti = (
                int((mk == 0).sum()),
                int((mk == 1).sum()),
                int((mk == 2).sum()),
            )
            bi = b[:, [c0 + _MA, c0 + _MT, c0 + _MB]] if b is not None and b.size else None
            item_rows += _preference_rows("items", base, wi, ti, li, int((mk < 0).sum()), bi)
    for rows in (judg_rows, item_rows):
        # Holm across the comparisons of the study, separately per criterion (and unit).
        by_crit: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            if r["denominator"] == "all":
                by_crit.setdefault(r["criterion"], []).append(i)
        for idx in by_crit.values():
            adj = _holm([rows[i]["sign_test_p"] for i in idx])
            for i, p in zip(idx, adj, strict=True):
                rows[i]["sign_test_p_holm"] = p
                rows[i + 1]["sign_test_p_holm"] = p  # the non-tied row of the same cell
    return judg_rows, item_rows
