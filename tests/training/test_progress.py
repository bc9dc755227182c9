"""Training progress: the callback's JSON lines (fake TrainerState objects), the live line's
text and ETA (hand-computed), when it prints off a terminal, and (slow) a real SFT run."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from training.progress import (
    ENV_VAR,
    LiveLine,
    Progress,
    ProgressReader,
    clock,
    eta_seconds,
    format_line,
    progress_callback,
    progress_callbacks,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00"), (42, "0:42"), (59.6, "1:00"), (110, "1:50"), (3599, "59:59"), (3725, "1:02:05")],
)
def test_clock(seconds, text):
    assert clock(seconds) == text


def test_clock_refuses_negative_seconds():
    with pytest.raises(ValueError, match="seconds"):
        clock(-1)


def test_eta_is_the_mean_pace_times_the_steps_left():
    # 12 of 40 steps in 42 s: 3.5 s a step, 28 steps left -> 98 s
    assert eta_seconds(12, 40, 42.0) == pytest.approx(98.0)
    assert eta_seconds(40, 40, 120.0) == 0
    assert eta_seconds(0, 40, 5.0) is None  # no step yet: no pace
    assert eta_seconds(3, 0, 5.0) is None  # total unknown


def test_the_line_names_the_run_step_loss_elapsed_and_eta():
    line = format_line("sft care", Progress(step=12, max_steps=40, loss=2.3149, elapsed=42.0))
    assert line == "  sft care  step 12/40  loss 2.31  0:42 elapsed  ETA 1:38"


def test_the_line_before_the_first_log_and_at_the_end():
    assert format_line("grpo care", Progress(0, 60, None, 0.0)) == (
        "  grpo care  step 0/60  0:00 elapsed"
    )
    assert format_line("sft esconv", Progress(60, 60, 1.5, 125.0, done=True)) == (
        "  sft esconv  step 60/60  loss 1.50  2:05 elapsed  done"
    )


def test_on_a_terminal_the_line_is_rewritten_in_place():
    out = io.StringIO()
    live = LiveLine("sft care", out, tty=True)
    live.update(Progress(9, 10, 12.25, 9.0))
    live.update(Progress(10, 10, 2.5, 10.0, done=True))
    live.close()
    first = "  sft care  step 9/10  loss 12.25  0:09 elapsed  ETA 0:01"
    second = "  sft care  step 10/10  loss 2.50  0:10 elapsed  done"
    assert len(second) < len(first)  # so the rest of the first is blanked
    assert out.getvalue() == "\r" + first + "\r" + second.ljust(len(first)) + "\n"


def _replay(live: LiveLine, clock_box: list[float], steps, seconds_per_step: float, total: int):
    for step in steps:
        clock_box[0] = step * seconds_per_step
        live.update(Progress(step, total, 1.0, clock_box[0]))


def test_off_a_terminal_a_line_at_each_quarter_and_done():
    out, now = io.StringIO(), [0.0]
    live = LiveLine("sft care", out, tty=False, interval=10.0, now=lambda: now[0])
    # 8 steps of 4 s: the interval alone would print at 0, 12, 24 s; the quarters print
    _replay(live, now, range(0, 9), 4.0, 8)
    now[0] = 60.0  # long after the last line, the last step's record still waits for "done"
    live.update(Progress(8, 8, 1.0, 60.0))
    live.update(Progress(8, 8, 1.0, 61.0, done=True))
    live.close()
    lines = out.getvalue().splitlines()
    assert [line.split()[3] for line in lines] == ["0/8", "2/8", "4/8", "6/8", "8/8"]
    assert lines[-1].endswith("done") and "\r" not in out.getvalue()


def test_off_a_terminal_a_line_at_most_every_interval():
    out, now = io.StringIO(), [0.0]
    live = LiveLine("grpo care", out, tty=False, interval=10.0, now=lambda: now[0])
    _replay(live, now, range(0, 101), 1.0, 1000)  # 1 s a step, the first quarter at 250
    steps = [int(line.split()[3].split("/")[0]) for line in out.getvalue().splitlines()]
    assert steps == list(range(0, 101, 10))


def test_the_reader_waits_for_whole_lines(tmp_path):
    path = tmp_path / "run.progress.jsonl"
    reader = ProgressReader(path)
    assert reader.read() == []  # not there yet
    record = Progress(3, 10, 2.0, 4.5).to_json()
    path.write_text(record[:10])
    assert reader.read() == []
    with open(path, "a") as f:
        f.write(record[10:] + "\n" + Progress(4, 10, 1.9, 6.0).to_json() + "\n")
    assert reader.read() == [Progress(3, 10, 2.0, 4.5), Progress(4, 10, 1.9, 6.0)]
    assert reader.read() == []


def test_a_record_without_a_field_is_named(tmp_path):
    with pytest.raises(ValueError, match="'max_steps'"):
        Progress.from_json(json.dumps({"step": 1, "elapsed": 2.0}))


def _state(step: int, max_steps: int = 4, main: bool = True):
    return SimpleNamespace(global_step=step, max_steps=max_steps, is_world_process_zero=main)


def _records(path: Path) -> list[Progress]:
    return [Progress.from_json(line) for line in path.read_text().splitlines()]


def test_the_callback_writes_begin_logs_throttled_steps_and_end(tmp_path):
    path = tmp_path / "p.jsonl"
    now = [100.0]
    cb = progress_callback(path, clock_fn=lambda: now[0])
    args = control = None
    cb.on_train_begin(args, _state(0), control)
    now[0] = 100.3
    cb.on_step_end(args, _state(1), control)  # 0.3 s after the last record: not written
    now[0] = 101.5
    cb.on_step_end(args, _state(2), control)
    cb.on_log(args, _state(2), control, logs={"loss": 2.5, "grad_norm": 1.0})
    cb.on_log(args, _state(2), control, logs={"train_runtime": 1.0})  # no loss: nothing
    now[0] = 101.6
    cb.on_step_end(args, _state(4), control)  # the last step is always written
    now[0] = 102.0
    cb.on_train_end(args, _state(4), control)
    assert _records(path) == [
        Progress(0, 4, None, 0.0),
        Progress(2, 4, None, 1.5),
        Progress(2, 4, 2.5, 1.5),
        Progress(4, 4, 2.5, 1.6),
        Progress(4, 4, 2.5, 2.0, done=True),
    ]


def test_only_the_main_process_writes(tmp_path):
    path = tmp_path / "p.jsonl"
    cb = progress_callback(path)
    cb.on_train_begin(None, _state(0, main=False), None)
    cb.on_train_end(None, _state(4, main=False), None)
    assert not path.exists()


def test_the_callback_is_added_only_when_the_variable_is_set(tmp_path, monkeypatch):
    from transformers import TrainerCallback

    monkeypatch.delenv(ENV_VAR, raising=False)
    assert progress_callbacks() == []
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "p.jsonl"))
    (callback,) = progress_callbacks()
    assert isinstance(callback, TrainerCallback)


@pytest.mark.slow
def test_a_real_sft_run_reports_every_step(tmp_path, monkeypatch):
    from training import sft
    from training.tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny-xs", size="xs")
    path = tmp_path / "sft.progress.jsonl"
    monkeypatch.setenv(ENV_VAR, str(path))
    sft.main(
        ["--config", str(ROOT / "training" / "recipes" / "baseline_esconv_tiny.yaml"),
         "--model_name_or_path", str(model), "--output_dir", str(tmp_path / "sft"),
         "--max_steps", "3", "--logging_steps", "1", "--per_device_train_batch_size", "2",
         "--limit", "12", "--report_to", "none", "--save_strategy", "no"]
    )  # fmt: skip
    records = _records(path)
    assert records[0].step == 0 and records[-1].done
    assert {r.max_steps for r in records} == {3}
    assert records[-1].step == 3
    assert [r.step for r in records] == sorted(r.step for r in records)
    assert records[-1].loss is not None and math.isfinite(records[-1].loss)
    assert [r.elapsed for r in records] == sorted(r.elapsed for r in records)
