"""bench/datasets.py runs and ends with its JSON summary line (timings are not asserted here:
CI machines vary; see docs/datasets.md for measured numbers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.datasets import default_data_dir

REPO = Path(__file__).resolve().parents[2]


def test_bench_last_line_is_json():
    data = default_data_dir()
    if not (data / "esconv" / "train.jsonl").is_file():
        pytest.skip(f"ESConv splits not found under {data} (set EVALSITE_DATA_DIR)")
    proc = subprocess.run(
        [sys.executable, "bench/datasets.py", "--repeats", "1", "--data-dir", str(data)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["dialogues"] == 1300 and result["utterances"] == 38365
    assert result["load_seconds"] > 0 and result["ratio_vs_json"] > 0
