"""The item bootstrap: resampling weights in bounded memory, sums per comparison, percentile
intervals."""

from __future__ import annotations

import math

import numpy as np

from pairwise.services.stats.encoding import (
    _A,
    _F,
    _F0,
    _FP,
    _MA,
    _NCOL,
    Cells,
    Encoded,
)

_BOOT_CHUNK_CELLS = 4_000_000  # resampled item cells held in memory at once


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


def _bootstrap(enc: Encoded, cells: Cells, n_boot: int, seed: int) -> dict[int, np.ndarray]:
    """Bootstrap sums per comparison: n_boot x (criteria x _NCOL).

    Items are resampled within each comparison (a stratified bootstrap: the comparisons are
    strata of the design), once for all criteria, so every statistic of a comparison, and every
    pooled statistic, sees the same resampled items.
    """
    n_crit = len(enc.criterion_names)
    out: dict[int, np.ndarray] = {}
    counts, maj, full = cells.counts, cells.majority, cells.full
    for ci in range(len(enc.comparison_names)):
        sel = np.flatnonzero(cells.comp == ci)
        if sel.size == 0:
            continue
        _, local = np.unique(cells.item[sel], return_inverse=True)
        mat = np.zeros((local.max() + 1, n_crit * _NCOL))
        base = cells.crit[sel] * _NCOL
        f = full[sel]
        for j in range(3):
            mat[local, base + _A + j] = counts[sel, j]
            mat[local, base + _MA + j] = maj[sel] == j
            mat[local, base + _F0 + j] = counts[sel, j] * f
        mat[local, base + _F] = f
        mat[local, base + _FP] = cells.p_i[sel]
        out[ci] = _boot_sums(mat, n_boot, [seed, ci])
    return out
