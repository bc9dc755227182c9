"""bench/strategy_probe.py: its naive Bayes learns an obvious cue, and the bench ends with its
JSON line, the accuracies in [0, 1] beside the majority label's."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from training.datasets import default_data_dir

REPO = Path(__file__).resolve().parents[2]


def _probe():
    spec = importlib.util.spec_from_file_location(
        "strategy_probe", REPO / "bench/strategy_probe.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _example(*turns):
    return SimpleNamespace(history=[SimpleNamespace(speaker=s, text=t) for s, t in turns])


def test_naive_bayes_reads_speaker_and_position_tagged_words():
    probe = _probe()
    assert probe.features(_example(("seeker", "Thank you!"))) == {"s1_thank", "s1_you", "s1_!"}
    assert probe.features(_example()) == {"<empty>"}
    rows = [({"s1_thank"}, "Others")] * 3 + [({"s1_what", "s1_?"}, "Providing Suggestions")] * 3
    rows += [({"s1_sad"}, "Question")] * 4  # the prior favours Question
    model = probe.NaiveBayes(rows)
    assert model.predict({"s1_thank"}) == "Others"
    assert model.predict({"s1_what", "s1_?"}) == "Providing Suggestions"
    assert model.predict({"s1_unseen"}) == "Question"  # nothing known: the prior decides


def test_bench_last_line_is_json():
    if not (default_data_dir() / "esconv" / "train.jsonl").is_file():
        pytest.skip("ESConv splits not found (set EVALSITE_DATA_DIR)")
    proc = subprocess.run(
        [sys.executable, "bench/strategy_probe.py", "--train-sizes", "120,600", "--contexts", "64"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["contexts"] == 64 and result["window"] == 2
    assert all(0 <= result[k] <= 1 for k in ("nb_acc_120", "nb_acc_600", "majority_acc"))
    assert result["train_turns"] > 10_000
