"""Benchmark: load all three ESConv splits into Dialogues vs. a bare ``json.loads`` of the lines.

    .venv/bin/python bench/datasets.py [--data-dir D] [--repeats 5]

Both are timed in the same run, best of ``--repeats``. The baseline reads the same three files
and calls ``json.loads`` on every line, nothing more; the loader does that plus building
``Dialogue``/``Turn`` objects, normalising strategies and validating speakers. Target: ratio
under 3 and under 2 s. The last line printed is one JSON object (``load_seconds``,
``ratio_vs_json``, ...).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.datasets import SPLITS, default_data_dir, load_dialogues  # noqa: E402


def _best_of(repeats: int, fn) -> float:  # noqa: ANN001
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    """Time both and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    data_dir = args.data_dir or default_data_dir()
    paths = [data_dir / "esconv" / f"{split}.jsonl" for split in SPLITS]

    def bare_json() -> list:
        # the same reading the loader does: whole file, split on "\n", one json.loads a line
        return [
            json.loads(line)
            for path in paths
            for line in path.read_text("utf-8").split("\n")
            if line
        ]

    def loader() -> list:
        return load_dialogues("esconv", data_dir=data_dir)

    n_records, dialogues = len(bare_json()), loader()  # warm-up, and a check they agree
    assert n_records == len(dialogues) == 1300, (n_records, len(dialogues))
    json_s = _best_of(args.repeats, bare_json)
    load_s = _best_of(args.repeats, loader)
    result = {
        "dialogues": len(dialogues),
        "utterances": sum(len(d.turns) for d in dialogues),
        "repeats": args.repeats,
        "json_seconds": round(json_s, 4),
        "load_seconds": round(load_s, 4),
        "ratio_vs_json": round(load_s / json_s, 2),
        "target": "ratio < 3 and load_seconds < 2",
        "ok": load_s / json_s < 3 and load_s < 2,
    }
    print(f"bare json.loads: {json_s * 1000:.1f} ms; load_dialogues: {load_s * 1000:.1f} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
