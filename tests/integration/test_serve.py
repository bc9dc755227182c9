"""`manage.py serve` supervises its children: a killed worker is restarted while the web server
keeps answering; a crash loop stops everything naming the child and its log; two quick SIGTERMs
still stop every child (the embedded Redis included).

Each test runs `serve` as a subprocess on its own var dir (SQLite, the embedded broker, a free
port), as a user would, with heartbeats every second so /healthz follows within seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from evalsite.embedded import socket_answers
from tests.integration.conftest import (
    REPO,
    attach_log,
    closed_port,
    remove_unless_failed,
    short_tmpdir,
    wait_for,
)

pytestmark = pytest.mark.integration

FAST_HEALTH = {"HEARTBEAT_SECONDS": "1", "HEALTH_STALE_SECONDS": "3", "HEALTH_CACHE_SECONDS": "1"}


def _env(var_dir: Path) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    return {
        **base,
        "EVALSITE_VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
        "PYTHONUNBUFFERED": "1",
        **FAST_HEALTH,
    }


@pytest.fixture(scope="module")
def migrated_db() -> Iterator[Path]:
    """One migrated SQLite file, copied into each test's var dir."""
    var_dir = short_tmpdir("srvdb")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"],
        cwd=REPO,
        env=_env(var_dir),
        check=True,
        timeout=120,
    )
    yield var_dir / "db.sqlite3"
    shutil.rmtree(var_dir, ignore_errors=True)


def _processes_of(serve: Serve) -> set[int]:
    """Every live process `serve` started, orphans too: its descendants, and the members of each
    process group it led (every child leads one; serve prints each child's pid, which is the
    group's id). Not by environment: setproctitle (celery, gunicorn, redis) overwrites it."""
    groups = {int(pid) for pid in re.findall(r"pid (\d+)", serve.output())}
    groups.add(serve.proc.pid)
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    state, ppid, pgrp, session = f.read().rsplit(")", 1)[1].split()[:4]
            except OSError:
                continue  # it ended meanwhile
            if state != "Z":  # a zombie is dead, waiting for its parent to reap it
                stats[int(entry)] = (int(ppid), int(pgrp), int(session))
    found = {pid for pid, (_, pgrp, session) in stats.items() if {pgrp, session} & groups}
    grew = True
    while grew:  # and whatever descends from those or from serve
        more = {pid for pid, (ppid, _, _) in stats.items() if ppid in found | {serve.proc.pid}}
        grew = not more <= found
        found |= more
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class Serve:
    var_dir: Path
    port: int
    proc: subprocess.Popen
    out: Path
    polls: list[tuple[str, int | str]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def pid_of(self, name: str) -> int:
        return int(re.search(rf"^{re.escape(name)}: pid (\d+)", self.output(), re.M).group(1))

    def healthz(self) -> int:
        try:
            return httpx.get(f"{self.base}/healthz", timeout=5).status_code
        except httpx.HTTPError:
            return 0


@pytest.fixture
def serve(request, migrated_db) -> Iterator[Serve]:
    var_dir = short_tmpdir("srv")
    shutil.copy(migrated_db, var_dir / "db.sqlite3")
    port = closed_port()
    out = var_dir / "serve.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=REPO,
            env=_env(var_dir),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = Serve(var_dir, port, proc, out)
    attach_log(request, "serve", out)
    for name in ("worker-default", "worker-generation", "web"):
        attach_log(request, name, var_dir / "log" / f"{name}.log")
    try:
        wait_for(
            lambda: "ready:" in server.output() or proc.poll() is not None,
            90,
            what="serve to be ready",
        )
        assert proc.poll() is None, server.output()
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pid in _processes_of(server):  # whatever a failed test left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        remove_unless_failed(request, var_dir)


def _poll_login_page(server: Serve, stop: threading.Event) -> None:
    with httpx.Client(base_url=server.base, timeout=10) as client:
        while not stop.is_set():
            try:
                server.polls.append(("login", client.get("/accounts/login/").status_code))
            except httpx.HTTPError as exc:
                server.polls.append(("login", type(exc).__name__))
            stop.wait(0.2)


def test_a_killed_worker_is_restarted_while_the_site_stays_up(serve):
    worker = serve.pid_of("worker (default queue, beat)")
    web = serve.pid_of("web server")
    assert serve.healthz() == 200
    stop = threading.Event()
    poller = threading.Thread(target=_poll_login_page, args=(serve, stop), daemon=True)
    poller.start()

    os.kill(worker, signal.SIGKILL)  # as the OOM killer would: the worker's main process only

    restarted = wait_for(
        lambda: re.search(r"worker \(default queue, beat\) restarted: pid (\d+)", serve.output()),
        30,
        what="serve to restart the worker",
    )
    new_worker = int(restarted.group(1))
    assert new_worker != worker
    out = serve.output()
    assert (
        f"worker (default queue, beat) (pid {worker}) killed by SIGKILL; "
        f"log {serve.var_dir / 'log' / 'worker-default.log'}; restarting in 1s"
    ) in out
    # 503 while it is down (serve deleted its heartbeat), 200 once the new one beats
    statuses = [serve.healthz()]
    while statuses[-1] != 200:
        assert len(statuses) < 300, "healthz did not come back to 200 within 60 s"
        time.sleep(0.2)
        statuses.append(serve.healthz())
    assert 503 in statuses, statuses
    assert os.path.exists(f"/proc/{new_worker}")

    stop.set()
    poller.join()
    assert serve.pid_of("web server") == web and serve.proc.poll() is None
    assert serve.polls and all(status == 200 for _, status in serve.polls), serve.polls
    assert "generation queue) (pid" not in out  # the other worker was left alone


def test_a_crash_loop_stops_everything_naming_the_process_and_its_log(serve):
    name = "worker (generation queue)"
    log = serve.var_dir / "log" / "worker-generation.log"
    os.kill(serve.pid_of(name), signal.SIGKILL)
    for n in range(1, 5):  # restarts after 1, 2, 4, 8 s; each new worker is killed at once
        found = wait_for(
            lambda n=n: (
                len(re.findall(rf"{re.escape(name)} restarted: pid (\d+)", serve.output())) >= n
            ),
            30,
            what=f"restart {n}",
        )
        assert found
        pid = int(re.findall(rf"{re.escape(name)} restarted: pid (\d+)", serve.output())[-1])
        os.kill(pid, signal.SIGKILL)

    serve.proc.wait(timeout=60)

    out = serve.output()
    assert serve.proc.returncode != 0
    assert f"{name} crashed 5 times in 10 min" in out
    assert f"See its log: {log}" in out
    assert "restarting in 8s (crash 4 of 5" in out
    assert not _processes_of(serve), "a child outlived serve"


def test_two_quick_sigterms_still_stop_every_child(serve):
    children = _processes_of(serve) - {serve.proc.pid}
    commands = set()
    for pid in children:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            commands.add(f.read().replace(b"\0", b" ").decode())
    assert any("redis-server" in c for c in commands), commands
    assert len(children) >= 8  # redis, 2 workers (+2 pool, + beat), gunicorn (+2 workers)

    serve.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    serve.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    serve.proc.send_signal(signal.SIGINT)
    serve.proc.wait(timeout=60)

    assert "SIGTERM received: still stopping every child" in serve.output() or (
        "SIGINT received: still stopping every child" in serve.output()
    )
    survivors = {pid for pid in children if _alive(pid)} | _processes_of(serve)
    assert not survivors, "a child outlived serve"
    assert not socket_answers(serve.var_dir / "redis.sock")
    assert serve.healthz() == 0  # nothing listens on the port
