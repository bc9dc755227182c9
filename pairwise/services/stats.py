"""Statistics of pairwise human evaluation: pure functions, no ORM.

Input is the long format (``pairwise.services.longformat``): one row per annotator x item x
criterion. ``summarize`` computes everything the dashboard, the JSON export and the publication
table show, as one JSON-serialisable dict. The methods, rules and their sources are described in
``docs/statistics.md``; every random step takes a ``seed``.

Conventions used throughout:

* Preference statistics and agreement use non-gold judgments with an outcome ("a", "b",
  "tie"); ``cannot_judge`` answers are counted separately and otherwise treated as missing.
* A bootstrap resamples *items* (the unit that was sampled), never single judgments, except in
  ``bradley_terry`` which only sees a list of comparisons. Intervals are percentile intervals.
* Every table names its ``unit`` ("judgments" or "items") and its ``denominator``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import krippendorff
import numpy as np
import pandas as pd
from scipy.stats import binomtest
from statsmodels.stats.inter_rater import fleiss_kappa as _sm_fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

OUTCOMES = ("a", "b", "tie")
ALL = "(all)"  # wildcard value of a grouping column in a pooled row
OVERALL = "Overall"
TOO_FAST_FLOOR_S = 3.0
TOO_FAST_FRACTION = 0.25
LOW_GOLD_RATE = 0.8
LOW_GOLD_MIN_N = 5
_RIDGE = 1e-6  # keeps Bradley-Terry finite when a system never wins or never loses
_BOOT_CHUNK_CELLS = 4_000_000  # resampled item cells held in memory at once
_NEEDED = ("study", "item_id", "comparison", "system_a", "system_b", "annotator", "criterion")


# --------------------------------------------------------------------------------------------
# Public building blocks


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
    s1, s2 = pd.Series(list(labels1), dtype=object), pd.Series(list(labels2), dtype=object)
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


def _bt_fit(wins: np.ndarray, ridge: float = _RIDGE, max_iter: int = 200) -> np.ndarray:
    """Bradley-Terry log-strengths by Newton's method, batched over leading axes.

    ``wins[..., i, j]`` = (fractional) wins of i over j. Maximises
    sum W_ij log sigmoid(t_i - t_j) - ridge/2 |t|^2. The tiny ridge keeps the estimate finite
    when a system never wins; with it the optimum is automatically centred (sum t = 0).
    """
    w = np.asarray(wins, dtype=float)
    k = w.shape[-1]
    n = w + np.swapaxes(w, -1, -2)
    theta = np.zeros(w.shape[:-1])
    eye = np.eye(k)
    for _ in range(max_iter):
        s = 1.0 / (1.0 + np.exp(-(theta[..., :, None] - theta[..., None, :])))
        grad = (w - n * s).sum(axis=-1) - ridge * theta
        h = n * s * (1.0 - s)
        hess = h - eye * h.sum(axis=-1)[..., None, :] - ridge * eye
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        # Damp very long steps: degenerate resamples drift towards +-log(1/ridge).
        big = np.abs(step).max(axis=-1, keepdims=True)
        step = np.where(big > 5.0, step * 5.0 / np.maximum(big, 1e-300), step)
        theta = theta - step
        if np.abs(step).max() < 1e-10:
            break
    return theta - theta.mean(axis=-1, keepdims=True)


def _bt_from_codes(
    a: np.ndarray, b: np.ndarray, outcome: np.ndarray, names: Sequence[str], n_boot: int, seed: int
) -> pd.DataFrame:
    """Bradley-Terry with bootstrap CIs from integer codes (outcome: 0 a, 1 b, 2 tie)."""
    k = len(names)
    # Collapse to distinct (a, b, outcome) triples: the bootstrap then resamples their counts.
    key = (a.astype(np.int64) * k + b) * 3 + outcome
    uniq, counts = np.unique(key, return_counts=True)
    ua, rest = np.divmod(uniq, k * 3)
    ub, uo = np.divmod(rest, 3)
    # Each triple's contribution to the win matrix: a win is 1, a tie half a win for each side.
    contrib = np.zeros((uniq.size, k, k))
    rows = np.arange(uniq.size)
    contrib[rows, ua, ub] += np.where(uo == 0, 1.0, np.where(uo == 2, 0.5, 0.0))
    contrib[rows, ub, ua] += np.where(uo == 1, 1.0, np.where(uo == 2, 0.5, 0.0))
    flat = contrib.reshape(uniq.size, k * k)
    score = _bt_fit((counts @ flat).reshape(k, k))
    n_per_system = np.bincount(np.r_[ua, ub], weights=np.r_[counts, counts], minlength=k)
    low = high = np.full(k, np.nan)
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(int(counts.sum()), counts / counts.sum(), size=n_boot)
        boot = _bt_fit((draws @ flat).reshape(n_boot, k, k))
        low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    df = pd.DataFrame(
        {"score": score, "ci_low": low, "ci_high": high, "n_comparisons": n_per_system.astype(int)},
        index=pd.Index(list(names), name="system"),
    )
    return df.sort_values("score", ascending=False, kind="stable")


def bradley_terry(
    comparisons: Iterable[tuple[str, str, str]], *, n_boot: int = 200, seed: int = 0
) -> pd.DataFrame:
    """Bradley-Terry scores of all systems from pairwise outcomes.

    ``comparisons`` yields ``(system_a, system_b, outcome)`` with outcome "a" (A better), "b" or
    "tie"; a tie counts as half a win for each side. The maximum-likelihood log-strengths (with a
    ridge of 1e-6, negligible unless a system never wins or never loses) are centred on 0.
    ``ci_low``/``ci_high`` are 95% percentile intervals from ``n_boot`` bootstrap resamples of the
    comparisons (seeded). Returns a DataFrame indexed by system, sorted by ``score`` descending,
    with columns ``score``, ``ci_low``, ``ci_high``, ``n_comparisons``.
    """
    triples = list(comparisons)
    if not triples:
        raise ValueError("bradley_terry needs at least one comparison")
    arr = np.asarray(triples, dtype=object)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError("each comparison must be a (system_a, system_b, outcome) triple")
    bad = ~np.isin(arr[:, 2], OUTCOMES)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"comparison {i}: outcome must be 'a', 'b' or 'tie', got {arr[i, 2]!r}")
    codes, names = pd.factorize(pd.Series(np.r_[arr[:, 0], arr[:, 1]], dtype=object))
    n = len(arr)
    a, b = codes[:n], codes[n:]
    if np.any(a == b):
        i = int(np.flatnonzero(a == b)[0])
        raise ValueError(f"comparison {i}: a system cannot be compared with itself ({arr[i, 0]!r})")
    outcome = pd.Series(arr[:, 2]).map({"a": 0, "b": 1, "tie": 2}).to_numpy(dtype=np.int64)
    return _bt_from_codes(a, b, outcome, [str(x) for x in names], n_boot, seed)


# --------------------------------------------------------------------------------------------
# Helpers for summarize


def _boot_weights(rng: np.random.Generator, m: int, n_boot: int):
    """Yield bootstrap weight matrices (chunk x m): how often each of m items was drawn.

    Drawing n_boot x m item indices at once would need gigabytes for large studies, so the
    replicates come in equal chunks of at most _BOOT_CHUNK_CELLS cells.
    """
    n_chunks = -(-n_boot * m // _BOOT_CHUNK_CELLS)
    for b in np.diff(np.linspace(0, n_boot, n_chunks + 1).astype(int)):
        idx = rng.integers(0, m, size=(b, m))
        idx += (np.arange(b) * m)[:, None]
        yield np.bincount(idx.ravel(), minlength=b * m).reshape(b, m).astype(float)


def _boot_sums(values: np.ndarray, n_boot: int, seed_seq: list[int]) -> np.ndarray:
    """Bootstrap sums over items: (n_boot x columns) from a (items x columns) matrix."""
    m = values.shape[0]
    if n_boot <= 0 or m == 0:
        return np.empty((0, values.shape[1]))
    rng = np.random.default_rng(seed_seq)
    vt = np.ascontiguousarray(values.T)
    # (columns x items) @ (items x chunk): OpenBLAS was erratic (up to 1.5 s instead of 20 ms)
    # on the thin (chunk x items) @ (items x columns) product on a loaded 2-core machine.
    return np.vstack([(vt @ w.T).T for w in _boot_weights(rng, m, n_boot)])


def _pct_interval(samples: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of bootstrap samples, ignoring undefined (NaN) replicates."""
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return (float(lo), float(hi))


def _ratio(num: np.ndarray | float, den: np.ndarray | float):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.divide(num, den)


def _sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test of wins vs losses (ties left out), H0: P(win) = 0.5."""
    n = wins + losses
    return float(binomtest(wins, n, 0.5).pvalue) if n > 0 else math.nan


def _wilson(count: int, n: int) -> tuple[float, float]:
    if n <= 0:
        return (math.nan, math.nan)
    lo, hi = proportion_confint(count, n, alpha=0.05, method="wilson")
    return (float(lo), float(hi))


def _holm(pvalues: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values; NaN entries stay NaN and are not in the family.

    Same result as statsmodels ``multipletests(method="holm")``, which we do not call because
    it runs ``gc.collect()`` on every call (about 40 ms each with a million-row frame alive).
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size:
        order = ok[np.argsort(p[ok], kind="stable")]
        m = order.size
        adj = np.maximum.accumulate(p[order] * (m - np.arange(m)))
        out[order] = np.minimum(adj, 1.0)
    return out.tolist()


def _jsonable(obj: object) -> object:
    """Turn numpy scalars, NaN and infinities into plain JSON values (NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if obj is None or isinstance(obj, str):
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    return str(obj)


def _records(df: pd.DataFrame) -> list[dict]:
    return _jsonable(df.to_dict("records"))  # type: ignore[return-value]


_OUTCOME_CODES = {"a": 0, "b": 1, "tie": 2}
_CHOICE_CODES = {"left": 0, "right": 1, "tie": 2, "cannot_judge": 3}


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


def _encode(long_df: pd.DataFrame) -> dict:
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
    enc: dict = {
        "n": n,
        "study": str(studies[0]) if len(studies) else "",
        "outcome": _codes(long_df["outcome"], _OUTCOME_CODES, "outcome"),
        "is_gold": (
            long_df["is_gold"].to_numpy(dtype=bool) if "is_gold" in long_df else np.zeros(n, bool)
        ),
        "seconds": (
            long_df["seconds"].to_numpy(dtype=float) if "seconds" in long_df else np.full(n, np.nan)
        ),
        # left 0, right 1, tie 2, cannot_judge 3; -1 when the column is absent
        "choice": (
            _codes(long_df["choice"], _CHOICE_CODES, "choice")
            if "choice" in long_df
            else np.full(n, -1)
        ),
        "gold_expected": (
            _codes(long_df["gold_expected"], _CHOICE_CODES, "gold_expected")
            if "gold_expected" in long_df
            else np.full(n, -1)
        ),
    }
    for col in ("item_id", "comparison", "annotator", "criterion"):
        enc[col], enc[col + "_names"] = pd.factorize(long_df[col], sort=False)
    # The systems of each comparison (validate_long guarantees one pair per item).
    first = np.unique(enc["comparison"], return_index=True)[1]
    sys_a = long_df["system_a"].iloc[first].tolist()
    sys_b = long_df["system_b"].iloc[first].tolist()
    enc["comparison_systems"] = list(zip(sys_a, sys_b, strict=True))
    return enc


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


# Columns of the per-comparison item matrix, per criterion: judgment counts (a, b, tie), the
# majority one-hot (a, b, tie), and the Fleiss ingredients of complete-overlap items.
_NCOL = 11
_A, _B, _T, _MA, _MB, _MT, _F, _FP, _F0, _F1, _F2 = range(_NCOL)


def _cells(enc: dict, valid: np.ndarray) -> dict:
    """Per (comparison x criterion, item) outcome counts, majorities and complete-overlap flags."""
    n_crit, n_items = len(enc["criterion_names"]), len(enc["item_id_names"])
    group = enc["comparison"][valid].astype(np.int64) * n_crit + enc["criterion"][valid]
    g, it, counts, inv = _item_counts(group, enc["item_id"][valid], enc["outcome"][valid], n_items)
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
    return {
        "comp": comp,
        "crit": crit,
        "item": it,
        "counts": counts,
        "inv": inv,
        "majority": _majority(counts),
        "full": full,
        "p_i": p_i,
        "k_of_crit": k_of_crit,
    }


def _bootstrap(enc: dict, cells: dict, n_boot: int, seed: int) -> dict[int, np.ndarray]:
    """Bootstrap sums per comparison: n_boot x (criteria x _NCOL).

    Items are resampled within each comparison (a stratified bootstrap: the comparisons are
    strata of the design), once for all criteria, so every statistic of a comparison, and every
    pooled statistic, sees the same resampled items.
    """
    n_crit = len(enc["criterion_names"])
    out: dict[int, np.ndarray] = {}
    counts, maj, full = cells["counts"], cells["majority"], cells["full"]
    for ci in range(len(enc["comparison_names"])):
        sel = np.flatnonzero(cells["comp"] == ci)
        if sel.size == 0:
            continue
        _, local = np.unique(cells["item"][sel], return_inverse=True)
        mat = np.zeros((local.max() + 1, n_crit * _NCOL))
        base = cells["crit"][sel] * _NCOL
        f = full[sel]
        for j in range(3):
            mat[local, base + _A + j] = counts[sel, j]
            mat[local, base + _MA + j] = maj[sel] == j
            mat[local, base + _F0 + j] = counts[sel, j] * f
        mat[local, base + _F] = f
        mat[local, base + _FP] = cells["p_i"][sel]
        out[ci] = _boot_sums(mat, n_boot, [seed, ci])
    return out


def _preference(enc: dict, cells: dict, boot: dict[int, np.ndarray]) -> tuple[list, list]:
    """Judgment-level and item-level (majority vote) preference tables."""
    comp_names, crit_names = enc["comparison_names"], enc["criterion_names"]
    n_crit = len(crit_names)
    # cannot_judge per comparison x criterion (non-gold rows without an outcome).
    cj = ~enc["is_gold"] & (enc["outcome"] < 0)
    cj_counts = np.bincount(
        enc["comparison"][cj] * n_crit + enc["criterion"][cj], minlength=len(comp_names) * n_crit
    )
    # Every comparison x criterion with a non-gold judgment gets rows, even if all of them were
    # cannot_judge (n = 0), so the dashboard can show why a cell is empty.
    ng = ~enc["is_gold"]
    present = np.unique(enc["comparison"][ng].astype(np.int64) * n_crit + enc["criterion"][ng])
    judg_rows: list[dict] = []
    item_rows: list[dict] = []
    for ci in range(len(comp_names)):
        sel = cells["comp"] == ci
        crits = present[present // n_crit == ci] % n_crit
        if crits.size == 0:
            continue
        sys_a, sys_b = enc["comparison_systems"][ci]
        b = boot.get(ci)
        for k in crits:
            base = {
                "study": enc["study"],
                "comparison": str(comp_names[ci]),
                "system_a": str(sys_a),
                "system_b": str(sys_b),
                "criterion": str(crit_names[k]),
            }
            in_k = sel & (cells["crit"] == k)
            w, l_, t = (int(cells["counts"][in_k, j].sum()) for j in range(3))
            c0 = k * _NCOL
            # bootstrap columns reordered to (wins, ties, losses)
            bj = b[:, [c0 + _A, c0 + _T, c0 + _B]] if b is not None and b.size else None
            judg_rows += _preference_rows(
                "judgments", base, w, t, l_, int(cj_counts[ci * n_crit + k]), bj
            )
            mk = cells["majority"][in_k]
            wi, li, ti = int((mk == 0).sum()), int((mk == 1).sum()), int((mk == 2).sum())
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


def _agreement(enc: dict, cells: dict, boot: dict[int, np.ndarray]) -> tuple[list, list]:
    """Agreement per criterion (pooled over comparisons) and per comparison x criterion."""
    comp_names, crit_names = enc["comparison_names"], enc["criterion_names"]
    counts, full = cells["counts"], cells["full"]
    per_crit, per_comp = [], []
    for k in range(len(crit_names)):
        r = int(cells["k_of_crit"][k])
        cols = slice(k * _NCOL + _F, k * _NCOL + _F2 + 1)
        pooled = [boot[ci][:, cols] for ci in boot if boot[ci].size]
        sel_k = cells["crit"] == k
        row = {"criterion": str(crit_names[k])}
        row.update(
            _agreement_row(
                counts[sel_k], full[sel_k], r, sum(pooled) if pooled else np.empty((0, 5))
            )
        )
        per_crit.append(row)
        for ci in range(len(comp_names)):
            sel = sel_k & (cells["comp"] == ci)
            if not sel.any():
                continue
            b = boot[ci][:, cols] if ci in boot and boot[ci].size else np.empty((0, 5))
            row = {"comparison": str(comp_names[ci]), "criterion": str(crit_names[k])}
            row.update(_agreement_row(counts[sel], full[sel], r, b))
            per_comp.append(row)
    return per_crit, per_comp


def _pairwise_kappa(enc: dict, valid: np.ndarray) -> list[dict]:
    """Cohen's kappa for each pair of annotators on their common items, per criterion."""
    ann_names, crit_names = enc["annotator_names"], enc["criterion_names"]
    n_ann, n_items = len(ann_names), len(enc["item_id_names"])
    key = enc["criterion"][valid].astype(np.int64) * n_items + enc["item_id"][valid]
    df = pd.DataFrame({"key": key, "ann": enc["annotator"][valid], "y": enc["outcome"][valid]})
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


def _vs_majority(enc: dict, valid: np.ndarray, cells: dict) -> list[dict]:
    """Each annotator's agreement with the strict majority of the *other* annotators."""
    counts, inv = cells["counts"], cells["inv"]
    y = enc["outcome"][valid]
    others = counts[inv].copy()
    others[np.arange(y.size), y] -= 1
    maj = _majority(others)
    has = maj >= 0
    agree = (maj == y) & has
    ann = enc["annotator"][valid]
    crit = enc["criterion"][valid]
    n_crit = len(enc["criterion_names"])
    rows = []
    for label, grp, size in (
        ("criterion", ann * n_crit + crit, len(enc["annotator_names"]) * n_crit),
        ("all", ann, len(enc["annotator_names"])),
    ):
        n = np.bincount(grp[has], minlength=size)
        a = np.bincount(grp[agree], minlength=size)
        for gi in np.flatnonzero(n):
            if label == "criterion":
                ai, ki = divmod(int(gi), n_crit)
                crit_name = str(enc["criterion_names"][ki])
            else:
                ai, crit_name = int(gi), ALL
            rows.append(
                {
                    "annotator": str(enc["annotator_names"][ai]),
                    "criterion": crit_name,
                    "unit": "judgments",
                    "denominator": "judgments whose other annotators have a strict majority",
                    "n": int(n[gi]),
                    "agreement": float(a[gi] / n[gi]),
                }
            )
    return rows


def _position_bias(enc: dict) -> list[dict]:
    """Share of 'left' among left/right choices vs 0.5 (binomial test): overall, per criterion,
    per annotator; Holm across the per-annotator rows."""
    choice = enc["choice"]
    keep = ~enc["is_gold"] & ((choice == 0) | (choice == 1))
    left = choice[keep] == 0
    ann, crit = enc["annotator"][keep], enc["criterion"][keep]

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
    for k, name in enumerate(enc["criterion_names"]):
        rows.append(row(ALL, str(name), crit == k))
    ann_rows = [row(str(name), ALL, ann == a) for a, name in enumerate(enc["annotator_names"])]
    ann_rows = [r for r in ann_rows if r["n"] > 0]
    for r, p in zip(ann_rows, _holm([r["p_value"] for r in ann_rows]), strict=True):
        r["p_holm"] = p
    for r in rows:
        r["p_holm"] = math.nan
    return rows + ann_rows


def _annotators(enc: dict) -> tuple[list[dict], float]:
    """Per-annotator workload, speed and gold pass rate, with the flags' rules applied."""
    n_items, n_ann = len(enc["item_id_names"]), len(enc["annotator_names"])
    ann, item = enc["annotator"], enc["item_id"]
    # Seconds are per item: the same value on each criterion row, so take one (the max).
    key = ann.astype(np.int64) * n_items + item
    per_item = pd.Series(enc["seconds"]).groupby(key).max()
    ai = per_item.index.to_numpy() // n_items
    secs = per_item.to_numpy()
    study_median = float(np.nanmedian(secs)) if np.isfinite(secs).any() else math.nan
    threshold = max(TOO_FAST_FLOOR_S, TOO_FAST_FRACTION * study_median)
    sec_stats = pd.DataFrame({"a": ai, "s": secs}).groupby("a")["s"].agg(["median", "mean", "size"])
    n_judg = np.bincount(ann, minlength=n_ann)
    gold = enc["is_gold"]
    if gold.any():
        passed = gold & (enc["choice"] == enc["gold_expected"]) & (enc["gold_expected"] >= 0)
        n_gold = np.bincount(ann[gold], minlength=n_ann)
        n_pass = np.bincount(ann[passed], minlength=n_ann)
    else:
        n_gold = n_pass = np.zeros(n_ann, dtype=int)
    cj = ~gold & (enc["outcome"] < 0)
    n_cj = np.bincount(ann[cj], minlength=n_ann)
    rows = []
    for a, name in enumerate(enc["annotator_names"]):
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
    valid = ~enc["is_gold"] & (enc["outcome"] >= 0)
    cells = _cells(enc, valid)
    boot = _bootstrap(enc, cells, n_boot, seed)
    judg, items = _preference(enc, cells, boot)
    per_crit, per_comp = _agreement(enc, cells, boot)
    crit_names = [str(x) for x in enc["criterion_names"]]
    rank_crit = OVERALL if OVERALL in crit_names else ALL
    rank_mask = valid & (
        enc["criterion"] == crit_names.index(OVERALL) if rank_crit == OVERALL else True
    )
    ranking: list[dict] = []
    if rank_mask.any():
        pair_codes, sys_names = pd.factorize(
            pd.Series([x for pair in enc["comparison_systems"] for x in pair], dtype=object)
        )
        comp = enc["comparison"][rank_mask]
        bt = _bt_from_codes(
            pair_codes[0::2][comp],
            pair_codes[1::2][comp],
            enc["outcome"][rank_mask],
            [str(x) for x in sys_names],
            min(n_boot, 1000),
            seed,
        )
        bt = bt.reset_index()
        bt.insert(1, "criterion", rank_crit)
        bt["unit"] = "judgments"
        ranking = _records(bt)
    annotators, threshold = _annotators(enc)
    gold_items = np.unique(enc["item_id"][enc["is_gold"]])
    summary = {
        "study": enc["study"],
        "n_judgments": enc["n"],
        "n_items": int(np.unique(enc["item_id"][~enc["is_gold"]]).size),
        "counts": {
            "judgments": enc["n"],
            "preference_judgments": int(valid.sum()),
            "cannot_judge": int((~enc["is_gold"] & (enc["outcome"] < 0)).sum()),
            "gold_judgments": int(enc["is_gold"].sum()),
            "gold_items": int(gold_items.size),
            "annotators": len(enc["annotator_names"]),
            "comparisons": len(enc["comparison_names"]),
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


# --------------------------------------------------------------------------------------------
# Publication table

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _tex(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def publication_table(
    summary: dict, *, fmt: str = "markdown", criteria: Sequence[str] | None = None
) -> str:
    """The human-evaluation table of a paper: one row per comparison, and for each criterion
    the win / tie / lose percentages of system A and Fleiss' kappa.

    Percentages are judgment-level with denominator "all" (cannot-judge and gold excluded); kappa
    is Fleiss' kappa of that comparison x criterion over items with complete overlap. The first
    line (markdown) or the caption (latex) states unit and denominator. ``fmt`` is "markdown" or
    "latex"; ``criteria`` selects and orders the criteria (default: all, in summary order).
    """
    if fmt not in ("markdown", "latex"):
        raise ValueError(f"fmt must be 'markdown' or 'latex', got {fmt!r}")
    rows = [
        r for r in summary["preference"] if r["unit"] == "judgments" and r["denominator"] == "all"
    ]
    all_crits = list(dict.fromkeys(r["criterion"] for r in rows))
    crits = list(criteria) if criteria is not None else all_crits
    unknown = [c for c in crits if c not in all_crits]
    if unknown:
        raise ValueError(f"criteria {unknown} not in the summary; available: {all_crits}")
    comps = list(dict.fromkeys(r["comparison"] for r in rows))
    cell = {(r["comparison"], r["criterion"]): r for r in rows}
    kappa = {
        (r["comparison"], r["criterion"]): r["fleiss_kappa"]
        for r in summary.get("agreement_by_comparison", [])
    }
    ns = [cell[c, k]["n"] for c in comps for k in crits if (c, k) in cell]
    n_text = (f"{min(ns)}" if min(ns) == max(ns) else f"{min(ns)}-{max(ns)}") if ns else "0"
    caption = (
        "Human evaluation: win / tie / lose (%) of system A against each baseline. "
        f"Unit: judgments; denominator: all judgments of the cell excluding cannot-judge and "
        f"gold items (n = {n_text} per cell). kappa: Fleiss' kappa over items with complete "
        "overlap."
    )

    def pct(r: dict | None, key: str) -> str:
        v = r.get(key) if r else None
        return "-" if v is None else f"{100 * v:.1f}"

    def kap(c: str, k: str) -> str:
        v = kappa.get((c, k))
        return "-" if v is None else f"{v:.2f}"

    if fmt == "markdown":
        head = ["Comparison"]
        for k in crits:
            head += [f"{k} Win", f"{k} Tie", f"{k} Lose", f"{k} κ"]
        lines = [caption, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for c in comps:
            vals = [c]
            for k in crits:
                r = cell.get((c, k))
                vals += [pct(r, "win_rate"), pct(r, "tie_rate"), pct(r, "lose_rate"), kap(c, k)]
            lines.append("| " + " | ".join(vals) + " |")
        return "\n".join(lines) + "\n"

    spec = "l" + "cccc" * len(crits)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{" + _tex(caption).replace("kappa", r"$\kappa$") + "}",
        r"\begin{tabular}{" + spec + "}",
        r"\toprule",
        " & ".join([""] + [r"\multicolumn{4}{c}{" + _tex(k) + "}" for k in crits]) + r" \\",
        " ".join(rf"\cmidrule(lr){{{2 + 4 * i}-{5 + 4 * i}}}" for i in range(len(crits))),
        " & ".join(["Comparison"] + ["Win", "Tie", "Lose", r"$\kappa$"] * len(crits)) + r" \\",
        r"\midrule",
    ]
    for c in comps:
        vals = [_tex(c)]
        for k in crits:
            r = cell.get((c, k))
            vals += [pct(r, "win_rate"), pct(r, "tie_rate"), pct(r, "lose_rate"), kap(c, k)]
        lines.append(" & ".join(vals) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


__all__ = [
    "bradley_terry",
    "cohen_kappa",
    "fleiss_kappa",
    "krippendorff_alpha",
    "publication_table",
    "summarize",
]
