"""The process group `serve` supervises, with real (short-lived) child processes: backoff, the
crash limit, and what each message names. tests/integration/test_serve.py runs `serve` itself."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from evalsite.embedded import GaveUp, ProcessGroup

CRASH = [sys.executable, "-c", "import sys; sys.exit(3)"]


def _wait_exit(group: ProcessGroup) -> None:
    for child in group.children:
        child.proc.wait(timeout=30)


def test_a_crashing_child_is_restarted_after_1_2_4_8_s_then_given_up(tmp_path):
    said: list[str] = []
    log = tmp_path / "crasher.log"
    group = ProcessGroup(say=said.append)
    group.start("crasher", CRASH, log=log)
    t = 1000.0
    delays = []
    try:
        for _ in range(4):
            _wait_exit(group)
            group.supervise(now=t)
            delay = float(re.search(r"restarting in (\d+)s", said[-1]).group(1))
            delays.append(delay)
            group.supervise(now=t + delay - 0.1)  # not yet
            assert "restarted" not in said[-1]
            group.supervise(now=t + delay)
            assert re.fullmatch(r"crasher restarted: pid \d+", said[-1])
            t += delay
        _wait_exit(group)
        with pytest.raises(GaveUp) as gave_up:
            group.supervise(now=t)
    finally:
        group.stop()

    assert delays == [1, 2, 4, 8]
    assert re.fullmatch(
        rf"crasher \(pid \d+\) exited with status 3; log {re.escape(str(log))}; restarting in "
        r"1s \(crash 1 of 5 allowed in 10 min\)",
        said[0],
    )
    assert str(gave_up.value).startswith("crasher crashed 5 times in 10 min (last: (pid ")
    assert str(gave_up.value).endswith(f"stopping everything. See its log: {log}")


def test_crashes_older_than_the_window_are_forgotten():
    said: list[str] = []
    group = ProcessGroup(say=said.append, crash_window=60)
    group.start("crasher", CRASH)
    try:
        for t in (0.0, 100.0, 200.0, 300.0, 400.0, 500.0):  # one crash a 100 s: never 5 in 60
            _wait_exit(group)
            group.supervise(now=t)
            assert "restarting in 1s (crash 1 of 5" in said[-1]
            group.supervise(now=t + 1)
    finally:
        group.stop()


def test_a_child_that_cannot_be_restarted_stops_everything():
    group = ProcessGroup(say=lambda s: None)
    group.adopt("broker", subprocess.Popen(CRASH, start_new_session=True))
    try:
        _wait_exit(group)
        with pytest.raises(GaveUp, match=r"broker \(pid \d+\) exited with status 3; it cannot"):
            group.supervise()
    finally:
        group.stop()


def test_stop_stops_every_child():
    group = ProcessGroup(say=lambda s: None)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    broker = subprocess.Popen(sleeper, start_new_session=True)
    group.adopt("broker", broker)
    worker = group.start("worker", sleeper)

    group.stop(timeout=5)

    assert worker.returncode is not None and broker.returncode is not None
    assert group.children == []
