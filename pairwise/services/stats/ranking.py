"""Bradley-Terry scores of the systems, with bootstrap intervals."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from pairwise.outcomes import OUTCOMES

_RIDGE = 1e-6  # keeps Bradley-Terry finite when a system never wins or never loses


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
    a: np.ndarray,
    b: np.ndarray,
    outcome: np.ndarray,
    names: Sequence[str],
    n_boot: int,
    seed: int,
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
        {
            "score": score,
            "ci_low": low,
            "ci_high": high,
            "n_comparisons": n_per_system.astype(int),
        },
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
