"""Length-controlled ranking and the length-bias statistic (issue #18, section 5).

Chatbot Arena found that the longer answer wins more often whatever its quality and added
"style control" to its Bradley-Terry model (Li et al. 2024, "Does style matter? Disentangling
style and substance in Chatbot Arena"). This module does the same for a study's long table:

* ``length_controlled_bt``: per criterion, the Bradley-Terry model with the normalised reply-length
  difference as a covariate, beside the plain model fitted the same way, with item-bootstrap CIs;
* ``length_bias``: the share of non-tied judgments won by the longer reply, with a Wilson CI.

The first part is pure (DataFrames in, DataFrames out, no ORM); the ORM part at the bottom reads
the replies' word counts (``reply_lengths``) and adds ``summary["length"]`` (``with_length``).
The method is described in docs/statistics.md, "Length-controlled ranking".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from pairwise.services.stats import ALL, _jsonable, _records, _wilson
from pairwise.services.stats.ranking import _bt_fit

NORMALISATION = (
    "d = (w_A - w_B) / (w_A + w_B), w = words (whitespace-separated) in the reply; "
    "d = 0 when both replies are empty"
)
MODEL = (
    "P(A beats B) = sigmoid(theta_A - theta_B + beta * d), a tie counting as half a win for each "
    "side (as in the raw Bradley-Terry); fitted by Newton's method with a ridge of 1e-6"
)
BOOTSTRAP_UNIT = "items, resampled within each comparison, the same draws for every criterion"
BIAS_RULE = (
    "share of non-tied judgments won by the longer reply; judgments whose replies have equal "
    "word counts are left out; Wilson 95% interval"
)
LENGTH_COLUMNS = ("item_id", "len_a", "len_b")
_NEEDED = ("item_id", "comparison", "system_a", "system_b", "criterion", "outcome")
_RIDGE = 1e-6  # as stats.ranking: finite strengths when a system never wins, centred on 0
_BOOT_CHUNK_CELLS = 2_000_000  # bootstrap replicates x design rows held in memory at once
_Y = {"a": 1.0, "b": 0.0, "tie": 0.5}


def word_count(text: str | None) -> int:
    """Words in a reply: whitespace-separated tokens.

    >>> word_count("I hear you.  That sounds hard.")
    6
    >>> word_count("")
    0
    """
    return len((text or "").split())


def length_difference(len_a: np.ndarray, len_b: np.ndarray) -> np.ndarray:
    """The covariate d = (len_a - len_b) / (len_a + len_b), in [-1, 1]; 0 where both are 0.

    >>> length_difference(np.array([30, 10, 0]), np.array([10, 10, 0])).tolist()
    [0.5, 0.0, 0.0]
    """
    a = np.asarray(len_a, dtype=float)
    b = np.asarray(len_b, dtype=float)
    total = a + b
    return np.divide(a - b, total, out=np.zeros_like(total), where=total > 0)


@dataclass(frozen=True)
class LengthControlled:
    """Result of `length_controlled_bt`.

    ``systems``: one row per criterion x system with ``raw_score``/``raw_ci_low``/``raw_ci_high``
    (Bradley-Terry without the covariate), ``score``/``ci_low``/``ci_high`` (with it), ``shift``
    (score - raw_score) and ``n_comparisons``; log-strengths centred on 0 per criterion, as in
    ``stats.bradley_terry``. ``coefficients``: one row per criterion with the length coefficient
    ``beta`` (log-odds per unit of d), its CI, ``n_judgments``, ``n_items`` and ``identified``
    (False when d is a linear function of the system columns, so beta cannot be told apart from
    the strengths).
    """

    systems: pd.DataFrame
    coefficients: pd.DataFrame


# --------------------------------------------------------------------------------------------
# Pure statistics: no ORM below this line until the "ORM side" banner.
# --------------------------------------------------------------------------------------------


def _check_lengths(lengths: pd.DataFrame) -> pd.DataFrame:
    """The lengths table, indexed by item_id (as str), with float len_a/len_b >= 0."""
    if not isinstance(lengths, pd.DataFrame):
        raise ValueError("lengths: expected a DataFrame with columns item_id, len_a, len_b")
    table = lengths.reset_index() if "item_id" not in lengths.columns else lengths
    missing = [c for c in LENGTH_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"lengths: missing column(s) {missing}; expected {list(LENGTH_COLUMNS)}")
    out = table[list(LENGTH_COLUMNS)].copy()
    out["item_id"] = out["item_id"].astype(str)
    for col in ("len_a", "len_b"):
        values = pd.to_numeric(out[col], errors="coerce")
        bad = values.isna() | (values < 0)
        if bad.any():
            item = out.loc[bad.idxmax(), "item_id"]
            raise ValueError(f"lengths.{col}: item {item!r} needs a number >= 0")
        out[col] = values.astype(float)
    if out["item_id"].duplicated().any():
        item = out.loc[out["item_id"].duplicated().idxmax(), "item_id"]
        raise ValueError(f"lengths.item_id: item {item!r} appears more than once")
    return out.set_index("item_id")


def _judged(df: pd.DataFrame, lengths: pd.DataFrame) -> pd.DataFrame:
    """Non-gold rows with an outcome ("a", "b", "tie"), joined with their items' lengths."""
    missing = [c for c in _NEEDED if c not in df.columns]
    if missing:
        raise ValueError(
            f"df: missing column(s) {missing}; expected the long format (longformat.validate_long)"
        )
    table = _check_lengths(lengths)
    gold = df["is_gold"].astype(bool) if "is_gold" in df.columns else pd.Series(False, df.index)
    rows = df.loc[~gold & df["outcome"].isin(list(_Y)), list(_NEEDED)].copy()
    rows["item_id"] = rows["item_id"].astype(str)
    unknown = ~rows["item_id"].isin(table.index)
    if unknown.any():
        item = rows.loc[unknown, "item_id"].iloc[0]
        raise ValueError(f"lengths: no len_a/len_b for item {item!r}")
    rows["len_a"] = table.loc[rows["item_id"], "len_a"].to_numpy()
    rows["len_b"] = table.loc[rows["item_id"], "len_b"].to_numpy()
    rows["d"] = length_difference(rows["len_a"].to_numpy(), rows["len_b"].to_numpy())
    rows["y"] = rows["outcome"].map(_Y).astype(float)
    return rows.reset_index(drop=True)


def _logit_fit(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    start: np.ndarray | None = None,
    *,
    n_systems: int,
    ridge: float = _RIDGE,
    max_iter: int = 100,
    tol: float = 1e-9,
) -> np.ndarray:
    """Weighted logistic regression without intercept by Newton's method, batched over weights.

    Maximises sum_r w_r [y_r log s_r + (1 - y_r) log(1 - s_r)] - ridge/2 |beta|^2 with
    s = sigmoid(x beta), for each row of ``w`` (replicates x rows); ``y`` may be fractional (a tie
    is 0.5). The first ``n_systems`` columns are +-1 system indicators: the likelihood does not
    change when all strengths shift together, so a penalty (sum of strengths)^2 / 2 fixes them to
    sum 0 (the anchoring of ``stats.ranking._bt_fit``; without a covariate the two fits agree)
    and keeps Newton's steps off that flat direction, where rounding noise alone would move them.
    """
    w = np.atleast_2d(np.asarray(w, dtype=float))
    n_rep, p = w.shape[0], x.shape[1]
    beta = np.zeros((n_rep, p)) if start is None else np.tile(start, (n_rep, 1)).astype(float)
    xt = np.ascontiguousarray(x.T)
    xx = (x[:, :, None] * x[:, None, :]).reshape(len(x), p * p)
    gauge = np.r_[np.ones(n_systems), np.zeros(p - n_systems)]
    fixed = ridge * np.eye(p) + np.outer(gauge, gauge)
    wy = w * y
    for _ in range(max_iter):
        # In place where it can be: the replicates x rows arrays are the cost of a bootstrap.
        s = expit(beta @ xt)
        ws = w * s
        grad = (wy - ws) @ x - beta @ fixed
        np.subtract(1.0, s, out=s)
        ws *= s  # w s (1 - s)
        hess = (ws @ xx).reshape(n_rep, p, p) + fixed
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        # Damp very long steps, as _bt_fit does: degenerate resamples drift off slowly.
        big = np.abs(step).max(axis=-1, keepdims=True)
        step = np.where(big > 5.0, step * 5.0 / np.maximum(big, 1e-300), step)
        beta = beta + step
        if np.abs(step).max() < tol:
            break
    return beta


def _identified(x_sys: np.ndarray, d: np.ndarray, weight: np.ndarray) -> bool:
    """Whether d varies beyond what the system columns explain (else beta is confounded)."""
    sw = np.sqrt(weight)
    coef, *_ = np.linalg.lstsq(x_sys * sw[:, None], d * sw, rcond=None)
    resid = (d - x_sys @ coef) * sw
    return bool(np.sqrt((resid**2).sum() / max(weight.sum(), 1.0)) > 1e-6)


def _boot_item_weights(
    rng: np.random.Generator, strata: list[np.ndarray], n_items: int, n_rep: int
) -> np.ndarray:
    """n_rep x n_items draw counts: each stratum's items resampled with replacement."""
    out = np.zeros((n_rep, n_items))
    for members in strata:
        m = members.size
        idx = rng.integers(0, m, size=(n_rep, m)) + (np.arange(n_rep) * m)[:, None]
        out[:, members] = np.bincount(idx.ravel(), minlength=n_rep * m).reshape(n_rep, m)
    return out


@dataclass
class _Criterion:
    """One criterion's design: one row per item (its judgments' mean outcome, their count).

    The judgments of an item share its systems and its d, so the log-likelihood of their
    outcomes equals that of one row with the mean outcome weighted by their number.
    """

    name: str
    x: np.ndarray  # items x (systems + 1): +-1 system columns, then d
    y: np.ndarray  # mean outcome of the item's judgments (a tie is 0.5)
    count: np.ndarray  # judgments of the item
    wins: np.ndarray  # items x (systems^2): each row's contribution to the win matrix
    item: np.ndarray  # index into the study's item list
    systems: list[str]
    n_per_system: np.ndarray
    identified: bool
    raw_fit: np.ndarray
    fit: np.ndarray


def _design(rows: pd.DataFrame, name: str, item_codes: pd.Index) -> _Criterion:
    names = sorted(set(rows["system_a"]) | set(rows["system_b"]))
    k = len(names)
    grouped = rows.groupby(["item_id", "system_a", "system_b", "d"], sort=True)["y"].agg(
        ["mean", "size"]
    )
    grouped = grouped.reset_index()
    code = {s: i for i, s in enumerate(names)}
    r = len(grouped)
    ia = grouped["system_a"].map(code).to_numpy()
    ib = grouped["system_b"].map(code).to_numpy()
    x = np.zeros((r, k + 1))
    x[np.arange(r), ia] = 1.0
    x[np.arange(r), ib] = -1.0
    x[:, k] = grouped["d"].to_numpy()
    y = grouped["mean"].to_numpy(dtype=float)
    count = grouped["size"].to_numpy(dtype=float)
    wins = np.zeros((r, k * k))
    wins[np.arange(r), ia * k + ib] = y
    wins[np.arange(r), ib * k + ia] = 1.0 - y
    # The raw model is stats.ranking's Bradley-Terry on the win matrix: the same fit, one home.
    raw = _bt_fit((count @ wins).reshape(k, k))
    fit = _logit_fit(x, y, count, start=np.r_[raw, 0.0], n_systems=k)[0]
    return _Criterion(
        name=name,
        x=x,
        y=y,
        count=count,
        wins=wins,
        item=item_codes.get_indexer(grouped["item_id"]),
        systems=names,
        n_per_system=np.bincount(np.r_[ia, ib], weights=np.r_[count, count], minlength=k),
        identified=_identified(x[:, :k], x[:, k], count),
        raw_fit=raw,
        fit=fit,
    )


def _bootstrap(designs: list[_Criterion], rows: pd.DataFrame, item_codes, n_boot: int, seed: int):
    """Bootstrap (raw, controlled) parameter draws per criterion: items resampled per comparison."""
    if n_boot <= 0:
        return {c.name: (None, None) for c in designs}
    boots: dict[str, tuple[list, list]] = {c.name: ([], []) for c in designs}
    comp_of_item = rows.drop_duplicates("item_id").set_index("item_id")["comparison"]
    comp_of_item = comp_of_item.reindex(item_codes)
    strata = [np.flatnonzero(comp_of_item.to_numpy() == c) for c in comp_of_item.unique()]
    chunk = max(1, _BOOT_CHUNK_CELLS // max(len(item_codes), 1))
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        n_rep = min(chunk, n_boot - done)
        item_w = _boot_item_weights(rng, strata, len(item_codes), n_rep)
        for c in designs:
            w = item_w[:, c.item] * c.count
            k = len(c.systems)
            # max_iter: _bt_fit converges in under 10 steps here, but its stopping test can go on
            # to 200 steps of rounding noise in the direction it centres away at the end.
            boots[c.name][0].append(_bt_fit((w @ c.wins).reshape(n_rep, k, k), max_iter=50))
            # Warm start at the full-sample fit: Newton then needs about 3 steps; a last step under
            # 1e-5 leaves an error near 1e-10 (quadratic convergence), far below the CI's noise.
            boots[c.name][1].append(_logit_fit(c.x, c.y, w, c.fit, n_systems=k, tol=1e-5))
        done += n_rep
    return {name: (np.vstack(r), np.vstack(f)) for name, (r, f) in boots.items()}


def _interval(draws: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    if draws is None:
        return np.full(k, np.nan), np.full(k, np.nan)
    return np.percentile(draws, [2.5, 97.5], axis=0)


def length_controlled_bt(
    df: pd.DataFrame, lengths: pd.DataFrame, *, seed: int = 0, n_boot: int = 1000
) -> LengthControlled:
    """Bradley-Terry strengths per criterion, raw and controlled for reply length.

    ``df`` is a long table (``longformat.validate_long``); gold rows and ``cannot_judge`` rows are
    left out. ``lengths`` has one row per item: ``item_id``, ``len_a`` and ``len_b`` (words in
    system A's and system B's reply). The model is P(A beats B) = sigmoid(theta_A - theta_B +
    beta d) with d = (len_a - len_b) / (len_a + len_b); a tie is half a win for each side, as in
    ``stats.bradley_terry``, whose point estimates the raw fit reproduces. Intervals are 95%
    percentile intervals over ``n_boot`` bootstrap resamples of the items within each
    comparison (seeded by ``seed``; the same resampled items for raw and controlled fits and for
    every criterion). Raises ValueError naming the column or item that is wrong.
    """
    rows = _judged(df, lengths)
    if rows.empty:
        raise ValueError("df: no non-gold judgment with an outcome to rank")
    item_codes = pd.Index(sorted(rows["item_id"].unique()))
    designs = [
        _design(rows[rows["criterion"] == crit], str(crit), item_codes)
        for crit in pd.unique(rows["criterion"])
    ]
    boots = _bootstrap(designs, rows, item_codes, n_boot, seed)
    system_tables, coef_rows = [], []
    for c in designs:
        k = len(c.systems)
        raw_draws, draws = boots[c.name]
        raw_lo, raw_hi = _interval(raw_draws, k)
        lo, hi = _interval(draws, k + 1)
        raw = c.raw_fit - c.raw_fit.mean()
        score = c.fit[:k] - c.fit[:k].mean()
        table = pd.DataFrame(
            {
                "criterion": c.name,
                "system": c.systems,
                "raw_score": raw,
                "raw_ci_low": raw_lo,
                "raw_ci_high": raw_hi,
                "score": score,
                "ci_low": lo[:k],
                "ci_high": hi[:k],
                "shift": score - raw,
                "n_comparisons": c.n_per_system.astype(int),
            }
        )
        system_tables.append(table.sort_values("score", ascending=False, kind="stable"))
        coef_rows.append(
            {
                "criterion": c.name,
                "beta": float(c.fit[k]),
                "ci_low": float(lo[k]),
                "ci_high": float(hi[k]),
                "n_judgments": int(c.count.sum()),
                "n_items": len(c.count),
                "identified": c.identified,
            }
        )
    return LengthControlled(
        systems=pd.concat(system_tables, ignore_index=True),
        coefficients=pd.DataFrame(coef_rows),
    )


def length_bias(df: pd.DataFrame, lengths: pd.DataFrame) -> pd.DataFrame:
    """How often the longer reply wins: per criterion, and pooled over criteria (``"(all)"``).

    Counts non-gold, non-tied judgments ("a" or "b") whose two replies differ in word count;
    ``longer_wins`` of them went to the longer reply. ``share`` = longer_wins / n with a Wilson
    95% interval (statsmodels ``proportion_confint``); ``n_equal_length`` and ``n_ties`` are the
    judgments left out. The pooled row counts each judgment once per criterion, so its unit is
    "judgments x criteria". Returns a DataFrame with columns ``criterion``, ``n``,
    ``longer_wins``, ``share``, ``ci_low``, ``ci_high``, ``n_equal_length``, ``n_ties``, ``unit``.
    """
    rows = _judged(df, lengths)
    decided = rows["outcome"] != "tie"
    unequal = rows["len_a"] != rows["len_b"]
    longer_won = (rows["len_a"] > rows["len_b"]) == (rows["outcome"] == "a")
    frame = pd.DataFrame(
        {
            "criterion": rows["criterion"].astype(str),
            "counted": decided & unequal,
            "longer_won": decided & unequal & longer_won,
            "equal": decided & ~unequal,
            "tie": ~decided,
        }
    )
    groups = [(str(c), frame[frame["criterion"] == c]) for c in pd.unique(frame["criterion"])]
    out = []
    for name, part in [*groups, (ALL, frame)]:
        n, wins = int(part["counted"].sum()), int(part["longer_won"].sum())
        lo, hi = _wilson(wins, n)
        out.append(
            {
                "criterion": name,
                "n": n,
                "longer_wins": wins,
                "share": wins / n if n else np.nan,
                "ci_low": lo,
                "ci_high": hi,
                "n_equal_length": int(part["equal"].sum()),
                "n_ties": int(part["tie"].sum()),
                "unit": "judgments x criteria" if name == ALL else "judgments",
            }
        )
    return pd.DataFrame(out)


# --------------------------------------------------------------------------------------------
# ORM side: the replies' word counts, and the summary section built from them.
# --------------------------------------------------------------------------------------------


def reply_lengths(study) -> pd.DataFrame:
    """Word counts of each item's two replies, in one query: ``item_id`` (the public id, as in
    the long table), ``len_a`` (system A's reply) and ``len_b`` (system B's reply)."""
    from pairwise.models import ComparisonItem

    rows = (
        ComparisonItem.objects.filter(study=study)
        .values_list("public_id", "response_a__text", "response_b__text")
        .iterator(chunk_size=2000)
    )
    data = [(pid, word_count(a), word_count(b)) for pid, a, b in rows]
    return pd.DataFrame(data, columns=list(LENGTH_COLUMNS))


# The fit costs 7x `summarize` at 1,000 resamples (docs/statistics.md, section 10): the results
# page pays it on every view, so the summary's n_boot is capped here.
MAX_BOOT = 300


def with_length(summary: dict, study, df: pd.DataFrame, *, n_boot: int = MAX_BOOT) -> dict:
    """Add ``length`` to a study summary: ``controlled`` (raw and length-controlled strengths per
    criterion x system), ``coefficients`` (the length coefficient per criterion), ``bias`` (the
    longer reply's share of wins) and ``meta`` (the normalisation, model and rules)."""
    lengths = reply_lengths(study)
    n_boot = min(n_boot, MAX_BOOT)
    section: dict = {
        "meta": {
            "normalisation": NORMALISATION,
            "model": MODEL,
            "bootstrap_unit": BOOTSTRAP_UNIT,
            "bias_rule": BIAS_RULE,
            "n_boot": n_boot,
            "seed": study.seed,
        }
    }
    try:
        fit = length_controlled_bt(df, lengths, seed=study.seed, n_boot=n_boot)
        section["controlled"] = _records(fit.systems)
        section["coefficients"] = _records(fit.coefficients)
        section["bias"] = _records(length_bias(df, lengths))
    except ValueError as exc:  # e.g. only gold or cannot-judge rows so far
        section.update(controlled=[], coefficients=[], bias=[], note=str(exc))
    summary["length"] = _jsonable(section)
    return summary
