"""``python -m training.datasets stats``: one JSON object, or one error line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.datasets import default_data_dir
from training.datasets.__main__ import main

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
DATA = default_data_dir()
needs_data = pytest.mark.skipif(
    not (DATA / "esconv" / "train.jsonl").is_file(),
    reason=f"ESConv splits not found under {DATA} (set EVALSITE_DATA_DIR to the shared data dir)",
)


def _run(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    out = json.loads(captured.out) if captured.out.strip() else None
    return code, out, captured.err


@needs_data
def test_stats_esconv_prints_published_numbers():
    # through a real subprocess, as a user would run it
    proc = subprocess.run(
        [sys.executable, "-m", "training.datasets", "stats", "esconv", "--data-dir", str(DATA)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(proc.stdout.strip().splitlines()) == 1
    stats = json.loads(proc.stdout)
    assert (stats["dialogues"], stats["utterances"]) == (1300, 38365)
    assert stats["strategies"] == {
        "Question": 3801,
        "Others": 3341,
        "Providing Suggestions": 2954,
        "Affirmation and Reassurance": 2827,
        "Self-disclosure": 1713,
        "Reflection of feelings": 1436,
        "Information": 1215,
        "Restatement or Paraphrasing": 1089,
    }


@needs_data
def test_stats_one_split(capsys):
    code, out, _ = _run(capsys, "stats", "esconv", "--split", "test", "--data-dir", str(DATA))
    assert code == 0
    assert (out["split"], out["dialogues"], out["utterances"]) == ("test", 195, 6039)


def test_stats_other_datasets(capsys):
    code, out, _ = _run(capsys, "stats", "extes", "--data-dir", str(FIXTURES / "extes"))
    assert code == 0 and out["dialogues"] == 8 and out["unknown_strategies"] == {"Humor": 1}
    code, out, _ = _run(capsys, "stats", "augesc", "--data-dir", str(FIXTURES / "augesc"))
    assert code == 0 and (out["dialogues"], out["strategies"]) == (8, {})


def test_missing_data_exits_2_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "training.datasets", "stats", "augesc", "--data-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: augesc data not found")
    assert "Traceback" not in proc.stderr
    assert "EVALSITE_DATA_DIR" in proc.stderr and "thu-coai/augesc" in proc.stderr


def test_bad_record_exits_2(tmp_path, capsys):
    path = tmp_path / "augesc" / "augesc.txt"
    path.parent.mkdir()
    path.write_text('[["usr", "hi"]]\n[["bot", "hello"]]\n')
    code, out, err = _run(capsys, "stats", "augesc", "--data-dir", str(tmp_path))
    assert code == 2 and out is None
    assert err == f"error: {path}, line 2, [0]: unknown speaker 'bot'; expected 'usr' or 'sys'\n"


def test_skip_invalid_reports_in_the_json(tmp_path, capsys):
    path = tmp_path / "augesc" / "augesc.txt"
    path.parent.mkdir()
    path.write_text('[["usr", "hi"]]\n[["bot", "hello"]]\n[]\n{oops\n[["sys", "hello"]]\n')
    code, out, err = _run(capsys, "stats", "augesc", "--data-dir", str(tmp_path), "--skip-invalid")
    assert code == 0
    assert out["dialogues"] == 2 and out["skipped"] == 3
    assert out["skip_reasons"] == {"unknown speaker": 1, "empty dialogue": 1, "invalid JSON": 1}
    assert len(out["skipped_records"]) == 3 and str(path) in out["skipped_records"][0]
    assert "skipped 3 invalid records" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["stats", "nosuchcorpus"])
    assert excinfo.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
