"""Constants and small helpers shared by the statistics modules: ratios, exact and Wilson
intervals, the Holm correction, and JSON-safe records."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from statsmodels.stats.proportion import proportion_confint

ALL = "(all)"  # wildcard value of a grouping column in a pooled row
OVERALL = "Overall"
TOO_FAST_FLOOR_S = 3.0
TOO_FAST_FRACTION = 0.25
LOW_GOLD_RATE = 0.8
LOW_GOLD_MIN_N = 5


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
