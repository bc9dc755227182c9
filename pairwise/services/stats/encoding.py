"""The long table as integer codes (`Encoded`), and its per-item outcome counts (`Cells`): the
shared input of the preference, agreement and quality statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

_NEEDED = (
    "study",
    "item_id",
    "comparison",
    "system_a",
    "system_b",
    "annotator",
    "criterion",
)
_OUTCOME_CODES = {"a": 0, "b": 1, "tie": 2}
_CHOICE_CODES = {"left": 0, "right": 1, "tie": 2, "cannot_judge": 3}


@dataclass(frozen=True)
class Encoded:
    """A long table as integer codes: one entry per row, -1 where a value is empty.

    ``outcome``: a 0, b 1, tie 2. ``choice`` and ``gold_expected``: left 0, right 1, tie 2,
    cannot_judge 3 (all -1 when the column is absent). ``item_id``, ``comparison``,
    ``annotator`` and ``criterion`` index into the matching ``*_names``; ``comparison_systems``
    holds (system_a, system_b) of each comparison."""

    n: int
    study: str
    outcome: np.ndarray
    is_gold: np.ndarray
    seconds: np.ndarray
    choice: np.ndarray
    gold_expected: np.ndarray
    item_id: np.ndarray
    item_id_names: pd.Index
    comparison: np.ndarray
    comparison_names: pd.Index
    annotator: np.ndarray
    annotator_names: pd.Index
    criterion: np.ndarray
    criterion_names: pd.Index
    comparison_systems: list[tuple[str, str]]


def _codes(s: pd.Series, mapping: dict[str, int], field: str) -> np.ndarray:
    """Map a text column to integer codes, -1 where empty; unknown values are an error."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    lut = np.array([-1 if u == "" else mapping.get(u, -2) for u in uniques] + [-1], dtype=np.int64)
    out = lut[codes]  # code -1 (missing) picks the trailing -1
    if (out == -2).any():
        i = int(np.flatnonzero(out == -2)[0])
        raise ValueError(
            f"row {i}: {field} must be one of {'|'.join(mapping)} or empty, got {s.iloc[i]!r}"
        )
    return out


def _encode(long_df: pd.DataFrame) -> Encoded:
    """Integer codes of the columns the statistics need (one factorize per column)."""
    if "outcome" not in long_df.columns:
        from pairwise.services.longformat import validate_long  # derives outcome

        long_df = validate_long(long_df)
    missing = [c for c in _NEEDED if c not in long_df.columns]
    if missing:
        raise ValueError(f"long DataFrame lacks columns {missing}; see longformat.LONG_COLUMNS")
    studies = pd.unique(long_df["study"])
    if len(studies) > 1:
        raise ValueError(f"summarize takes one study at a time; got {list(studies)[:5]}")
    n = len(long_df)
    codes = {}
    for col in ("item_id", "comparison", "annotator", "criterion"):
        codes[col], codes[col + "_names"] = pd.factorize(long_df[col], sort=False)
    # The systems of each comparison (validate_long guarantees one pair per item).
    first = np.unique(codes["comparison"], return_index=True)[1]
    sys_a = long_df["system_a"].iloc[first].tolist()
    sys_b = long_df["system_b"].iloc[first].tolist()
    return Encoded(
        n=n,
        study=str(studies[0]) if len(studies) else "",
        outcome=_codes(long_df["outcome"], _OUTCOME_CODES, "outcome"),
        is_gold=(
            long_df["is_gold"].to_numpy(dtype=bool) if "is_gold" in long_df else np.zeros(n, bool)
        ),
        seconds=(
            long_df["seconds"].to_numpy(dtype=float) if "seconds" in long_df else np.full(n, np.nan)
        ),
        choice=(
            _codes(long_df["choice"], _CHOICE_CODES, "choice")
            if "choice" in long_df
            else np.full(n, -1)
        ),
        gold_expected=(
            _codes(long_df["gold_expected"], _CHOICE_CODES, "gold_expected")
            if "gold_expected" in long_df
            else np.full(n, -1)
        ),
        comparison_systems=list(zip(sys_a, sys_b, strict=True)),
        **codes,
    )


def _item_counts(group: np.ndarray, item: np.ndarray, outcome: np.ndarray, n_items: int):
    """Per (group, item) counts of a/b/tie: returns (group, item, counts[m, 3]) for pairs seen."""
    key = group.astype(np.int64) * n_items + item
    uniq, inv = np.unique(key, return_inverse=True)
    counts = np.bincount(inv * 3 + outcome, minlength=uniq.size * 3).reshape(uniq.size, 3)
    g, it = np.divmod(uniq, n_items)
    return g, it, counts, inv


def _majority(counts: np.ndarray) -> np.ndarray:
    """Column of the strict plurality in each row of counts, -1 where the top count is shared."""
    top = counts.max(axis=1)
    arg = counts.argmax(axis=1)
    unique_top = (counts == top[:, None]).sum(axis=1) == 1
    return np.where(unique_top & (top > 0), arg, -1)


# Columns of the per-comparison item matrix, per criterion: judgment counts (a, b, tie), the
# majority one-hot (a, b, tie), and the Fleiss ingredients of complete-overlap items.
_NCOL = 11


_A, _B, _T, _MA, _MB, _MT, _F, _FP, _F0, _F1, _F2 = range(_NCOL)


@dataclass(frozen=True)
class Cells:
    """Per (comparison x criterion, item) outcome counts of the valid rows (`_cells`).

    Row i is one cell: ``comp``, ``crit`` and ``item`` codes, ``counts[i]`` of (a, b, tie),
    its strict ``majority`` (-1 if none), ``full``: the item has the design's complete overlap
    of raters, ``p_i``: its Fleiss agreement term; ``inv`` maps each valid row to its cell and
    ``k_of_crit`` is the complete overlap per criterion."""

    comp: np.ndarray
    crit: np.ndarray
    item: np.ndarray
    counts: np.ndarray
    inv: np.ndarray
    majority: np.ndarray
    full: np.ndarray
    p_i: np.ndarray
    k_of_crit: np.ndarray


def _cells(enc: Encoded, valid: np.ndarray) -> Cells:
    """Per (comparison x criterion, item) outcome counts, majorities and complete-overlap flags."""
    n_crit, n_items = len(enc.criterion_names), len(enc.item_id_names)
    group = enc.comparison[valid].astype(np.int64) * n_crit + enc.criterion[valid]
    g, it, counts, inv = _item_counts(group, enc.item_id[valid], enc.outcome[valid], n_items)
    comp, crit = np.divmod(g, n_crit)
    tot = counts.sum(axis=1)
    # Complete overlap = the design's number of raters per item: the most common total among
    # items with at least two ratings, per criterion.
    k_of_crit = np.zeros(n_crit, dtype=np.int64)
    for k in range(n_crit):
        t = tot[(crit == k) & (tot >= 2)]
        k_of_crit[k] = np.bincount(t).argmax() if t.size else 0
    r = k_of_crit[crit]
    full = (tot == r) & (r >= 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_i = np.where(full, ((counts**2).sum(axis=1) - r) / (r * (r - 1.0)), 0.0)
    return Cells(
        comp=comp,
        crit=crit,
        item=it,
        counts=counts,
        inv=inv,
        majority=_majority(counts),
        full=full,
        p_i=p_i,
        k_of_crit=k_of_crit,
    )
