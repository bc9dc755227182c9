"""Benchmark of pairwise.services.stats.summarize on one million synthetic judgments.

    .venv/bin/python bench/stats.py [--items 22223] [--n-boot 200] [--seed 0]

Design (vectorised numpy, seeded): 3 comparisons x 5 criteria x ``--items`` items per comparison
x 3 annotators per item drawn from a pool of 60 (22,223 items give 1,000,035 judgments), 2% gold
items, 2% cannot-judge answers, left/right randomised per item, two annotators with a left bias
and two too-fast annotators.

Reported:
* ``summary_seconds``: wall time of one ``summarize(df, n_boot=N)`` call (the DataFrame is built
  beforehand and not timed); ``summary_cpu_seconds``: CPU time of this process during the call
  (all threads), useful when other jobs share the machine;
* ``peak_mb``: the process's peak resident set size (``resource.getrusage(...).ru_maxrss``),
  which includes building the synthetic DataFrame, so it bounds summarize from above;
  ``tracemalloc_peak_mb``: the peak of Python/numpy allocations traced during a second
  ``summarize`` call (pyarrow's own buffers are not traced);
* ``validate_seconds``: ``validate_long`` on the same DataFrame (not part of summary_seconds);
* ``bare_fleiss_seconds``: one statsmodels ``fleiss_kappa`` call on the items x categories table
  of all complete-overlap items (aggregation done beforehand, not timed; best of 5), and
  ``ratio_vs_bare_fleiss`` = summary_seconds / bare_fleiss_seconds.
The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa  # noqa: E402

from pairwise.services.longformat import LONG_COLUMNS, validate_long  # noqa: E402
from pairwise.services.stats import summarize  # noqa: E402

COMPARISONS = [("CARE", "ESConv-SFT"), ("CARE", "Base"), ("CARE", "CARE-noCoT")]
CRITERIA = ["Overall", "Empathy", "Fluency", "Helpfulness", "Coherence"]
N_ANNOTATORS = 60


def build(n_items: int, seed: int) -> pd.DataFrame:
    """The synthetic long-format DataFrame (all columns of LONG_COLUMNS)."""
    rng = np.random.default_rng(seed)
    n_comp, n_crit, k = len(COMPARISONS), len(CRITERIA), 3
    total_items = n_comp * n_items
    item = np.arange(total_items)
    comp = item // n_items
    gold = rng.random(total_items) < 0.02
    a_left = rng.random(total_items) < 0.5
    # Three distinct annotators per item: the first three of a random permutation of the pool.
    ann = np.argsort(rng.random((total_items, N_ANNOTATORS)), axis=1)[:, :k].astype(np.int32)

    # Rows: item x criterion x annotator.
    r_item = np.repeat(item, n_crit * k)
    r_crit = np.tile(np.repeat(np.arange(n_crit), k), total_items)
    r_ann = ann[r_item, np.tile(np.arange(k), total_items * n_crit)]
    r_comp = comp[r_item]
    n = r_item.size
    # P(A wins) rises with the comparison and criterion; the item's latent quality adds
    # correlation between the annotators of an item.
    p_win = 0.40 + 0.05 * r_comp + 0.02 * r_crit
    latent = rng.normal(0, 0.15, total_items)[r_item]
    u = rng.random(n)
    p_tie = 0.15
    outcome = np.where(u < p_tie, 2, np.where(rng.random(n) < p_win + latent, 0, 1))
    a_side_left = a_left[r_item]
    choice_code = np.where(
        outcome == 2, 2, np.where((outcome == 0) == a_side_left, 0, 1)
    )  # 0 left, 1 right, 2 tie
    # Two annotators prefer the left response.
    biased = np.isin(r_ann, [0, 1]) & (choice_code < 2) & (rng.random(n) < 0.3)
    choice_code = np.where(biased, 0, choice_code)
    choice_code = np.where(rng.random(n) < 0.02, 3, choice_code)  # cannot_judge
    is_gold = gold[r_item]
    gold_expected = np.where(a_left, "left", "right")[r_item]

    choices = np.array(["left", "right", "tie", "cannot_judge"], dtype=object)
    choice = choices[choice_code]
    a_side = np.where(a_side_left, "left", "right").astype(object)  # per row already
    out = np.array(["a", "b", "tie"], dtype=object)
    # Re-derive the outcome from the (possibly biased) choice so the table is consistent.
    o_code = np.where(choice_code == 2, 2, np.where((choice_code == 0) == a_side_left, 0, 1))
    outcome_s = np.where(choice_code == 3, None, out[o_code])
    ann_speed = rng.lognormal(np.log(40), 0.3, N_ANNOTATORS)
    ann_speed[[2, 3]] = 2.0  # too fast
    secs_item_ann = ann_speed[ann] * rng.lognormal(0, 0.4, (total_items, k))
    secs = secs_item_ann[r_item, np.tile(np.arange(k), total_items * n_crit)]

    sys_a = np.array([a for a, _ in COMPARISONS], dtype=object)
    sys_b = np.array([b for _, b in COMPARISONS], dtype=object)
    comp_names = np.array([f"{a} vs {b}" for a, b in COMPARISONS], dtype=object)
    item_names = np.array([f"item-{i:06d}" for i in range(total_items)], dtype=object)
    ann_names = np.array([f"annotator-{i:02d}" for i in range(N_ANNOTATORS)], dtype=object)
    crit_names = np.array(CRITERIA, dtype=object)
    df = pd.DataFrame(
        {
            "study": "bench",
            "item_id": item_names[r_item],
            "comparison": comp_names[r_comp],
            "system_a": sys_a[r_comp],
            "system_b": sys_b[r_comp],
            "checkpoint_a": "",
            "checkpoint_b": "",
            "a_side": a_side,
            "annotator": ann_names[r_ann],
            "criterion": crit_names[r_crit],
            "choice": choice,
            "outcome": pd.Series(outcome_s, dtype=object),
            "seconds": secs,
            "is_gold": is_gold,
            "gold_expected": pd.Series(np.where(is_gold, gold_expected, None), dtype=object),
            "simulated": True,
            "created_at": "2025-01-01T00:00:00Z",
        }
    )
    return df[LONG_COLUMNS]


def bare_fleiss_table(df: pd.DataFrame) -> np.ndarray:
    """items x categories counts of complete-overlap (3 ratings) non-gold items x criteria."""
    keep = ~df["is_gold"].to_numpy() & df["outcome"].notna().to_numpy()
    key = pd.factorize(df["item_id"])[0][keep] * 8 + pd.factorize(df["criterion"])[0][keep]
    y = df["outcome"][keep].map({"a": 0, "b": 1, "tie": 2}).to_numpy(dtype=np.int64)
    uniq, inv = np.unique(key, return_inverse=True)
    table = np.bincount(inv * 3 + y, minlength=uniq.size * 3).reshape(-1, 3)
    return table[table.sum(axis=1) == 3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=22_223, help="items per comparison")
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t0 = time.perf_counter()
    df = build(args.items, args.seed)
    build_s = time.perf_counter() - t0
    print(f"built {len(df):,} judgments in {build_s:.2f} s")
    t0 = time.perf_counter()
    df = validate_long(df)  # the synthetic table must obey the contract like any import
    validate_s = time.perf_counter() - t0
    print(f"validate_long: {validate_s:.2f} s")

    t0, c0 = time.perf_counter(), time.process_time()
    summary = summarize(df, seed=args.seed, n_boot=args.n_boot)
    summary_s = time.perf_counter() - t0
    summary_cpu = time.process_time() - c0
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        f"summarize (n_boot={args.n_boot}): {summary_s:.2f} s wall, {summary_cpu:.2f} s CPU; "
        f"peak RSS {peak_rss_mb:.0f} MB"
    )

    tracemalloc.start()
    summarize(df, seed=args.seed, n_boot=args.n_boot)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"tracemalloc peak during summarize: {traced_peak / 2**20:.0f} MB")

    table = bare_fleiss_table(df)
    bare = min(_timed(lambda: sm_fleiss_kappa(table, method="fleiss")) for _ in range(5))
    print(f"bare statsmodels fleiss_kappa on {table.shape[0]:,} x 3 table: {bare * 1e3:.2f} ms")

    overall = next(r for r in summary["agreement"] if r["criterion"] == "Overall")
    print(f"Overall Fleiss kappa {overall['fleiss_kappa']:.3f} on {overall['n_items']:,} items")
    print(
        json.dumps(
            {
                "judgments": len(df),
                "n_boot": args.n_boot,
                "summary_seconds": round(summary_s, 3),
                "summary_cpu_seconds": round(summary_cpu, 3),
                "peak_mb": round(peak_rss_mb, 1),
                "peak_mb_measure": "ru_maxrss of the whole process (includes building the data)",
                "tracemalloc_peak_mb": round(traced_peak / 2**20, 1),
                "validate_seconds": round(validate_s, 3),
                "bare_fleiss_seconds": round(bare, 6),
                "ratio_vs_bare_fleiss": round(summary_s / bare, 1),
            }
        )
    )


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
