"""Does a flood of health checks slow the site? The login page's p99 idle, then under 200
concurrent `/healthz` callers, against the real site as `python manage.py serve` runs it.

    .venv/bin/python bench/health.py [--callers 200] [--pause 1.0] [--seconds 15] [--rounds 2]

Set-up: a fresh var dir (SQLite, the embedded broker), `manage.py migrate`, then `manage.py
serve` on a free port: the embedded Redis, both Celery workers (writing heartbeats) and gunicorn
(2 processes x 4 threads), with DEBUG off.

Load: one client requests the login page (GET /accounts/login/: a rendered form with a CSRF
token) back to back, for ``--seconds`` with nothing else running (idle), then as long again
while ``--callers`` clients, each on its own keep-alive connection, call `/healthz` in a loop
and pause a random 0.5-1.5 x ``--pause`` seconds between calls, as monitors and load balancers
do (``--pause 0``: a closed loop, as many calls as the server takes: a capacity test, which
saturates the CPUs whatever the endpoint). Idle and flood phases alternate ``--rounds`` times,
so drifting load from other jobs on the machine hits both alike; the p99s are over all rounds.
The callers run in another process and speak raw HTTP/1.1 (asyncio), so their own cost stays
small and the login client's timings are not skewed by their GIL. Latency is client-side wall
time; the first second of each phase is not counted.

Target (issue 17): ``login_p99_under_health_flood_vs_idle`` <= 2.0. The last printed line is one
JSON object with it and the raw numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
LOGIN = "/accounts/login/"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", type=int, default=200, help="concurrent /healthz callers")
    parser.add_argument(
        "--pause", type=float, default=1.0, help="mean seconds between a caller's calls (0: none)"
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=2, help="idle + flood phase pairs")
    parser.add_argument("--quick", action="store_true", help="one round of 8 s phases")
    parser.add_argument("--keep", action="store_true", help="keep the var dir (logs)")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.seconds, opts.rounds = 8.0, 1
    if opts.callers < 1 or opts.seconds < 3 or opts.rounds < 1 or opts.pause < 0:
        parser.error("expected --callers >= 1, --seconds >= 3, --rounds >= 1, --pause >= 0")
    return opts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def site_env(var_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    return {
        **env,
        "EVALSITE_VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def start_site(var_dir: Path, port: int) -> tuple[subprocess.Popen, Path]:
    env = site_env(var_dir)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True
    )
    out = var_dir / "serve.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 120
    while "ready:" not in out.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_site(proc)
            sys.exit(f"serve did not start; see {out}:\n{out.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    return proc, out


def stop_site(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # serve stops every child
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def login_timings(base: str, seconds: float, warmup: float = 1.0) -> tuple[list[float], int]:
    """GET the login page back to back; (milliseconds of the calls that ended after the first
    `warmup` seconds, non-200 count). A call stuck past the end of the phase still counts."""
    ms, bad = [], 0
    with httpx.Client(base_url=base, timeout=120) as client:
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            t0 = time.perf_counter()
            status = client.get(LOGIN).status_code
            took = (time.perf_counter() - t0) * 1000
            if time.monotonic() - start >= warmup:
                ms.append(took)
                bad += status != 200
    return ms, bad


def flood(port: int, callers: int, pause: float, stop_at: float, result) -> None:
    """Process body: `callers` raw HTTP/1.1 keep-alive clients call /healthz until `stop_at`."""
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    async def call(reader, writer) -> tuple[int, bool]:
        writer.write(request)
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        length = re.search(rb"content-length: *(\d+)", head)
        if length is None:
            raise OSError("answer without Content-Length")
        await reader.readexactly(int(length.group(1)))
        return int(head.split(b" ", 2)[1]), b"connection: close" in head

    async def caller(counts: dict, ms: list) -> None:
        await asyncio.sleep(random.uniform(0, pause))  # callers do not start in step
        conn = None
        while time.time() < stop_at:
            t0 = time.perf_counter()
            try:
                conn = conn or await asyncio.open_connection("127.0.0.1", port)
                status, close = await call(*conn)
            except (OSError, asyncio.IncompleteReadError) as exc:
                status, close = type(exc).__name__, True
            ms.append((time.perf_counter() - t0) * 1000)
            counts[status] = counts.get(status, 0) + 1
            if close and conn:
                conn[1].close()
                conn = None
            if pause:
                await asyncio.sleep(random.uniform(0.5, 1.5) * pause)
        if conn:
            conn[1].close()

    async def main() -> None:
        counts: dict = {}
        ms: list[float] = []
        started = time.time()
        await asyncio.gather(*(caller(counts, ms) for _ in range(callers)))
        elapsed = time.time() - started
        result.put({"counts": {str(k): v for k, v in counts.items()}, "ms": ms, "s": elapsed})

    asyncio.run(main())


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    t_start = time.perf_counter()
    var_dir = Path(tempfile.mkdtemp(prefix="bh-", dir="/tmp"))  # unix socket paths are short
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc, out = start_site(var_dir, port)
    idle, loaded, health, bad, rounds = [], [], [], 0, []
    counts: dict[str, int] = {}
    flood_seconds = 0.0
    spawn = mp.get_context("spawn")
    try:
        print(f"serve on {base}: {', '.join(re.findall(r'^(.+?): pid', out.read_text(), re.M))}")
        health_before = httpx.get(f"{base}/healthz").status_code
        for _ in range(30):  # warm both gunicorn processes (imports, URLconf, templates)
            httpx.get(f"{base}{LOGIN}")
        load_before = os.getloadavg()[0]
        for n in range(1, opts.rounds + 1):
            quiet, quiet_bad = login_timings(base, opts.seconds)
            queue = spawn.Queue()
            stop_at = time.time() + opts.seconds + 1.0
            flooder = spawn.Process(
                target=flood, args=(port, opts.callers, opts.pause, stop_at, queue)
            )
            flooder.start()
            time.sleep(1.0)  # the callers connect
            busy, busy_bad = login_timings(base, opts.seconds)
            calls = queue.get(timeout=opts.seconds + 120)
            flooder.join()
            idle += quiet
            loaded += busy
            health += calls["ms"]
            bad += quiet_bad + busy_bad
            flood_seconds += calls["s"]
            for status, k in calls["counts"].items():
                counts[status] = counts.get(status, 0) + k
            rounds.append(round(pct(busy, 99) / pct(quiet, 99), 2))
            print(
                f"round {n}: login p99 idle {pct(quiet, 99):.1f} ms, under the flood "
                f"{pct(busy, 99):.1f} ms ({len(calls['ms']) / calls['s']:.0f} /healthz calls/s, "
                f"p99 {pct(calls['ms'], 99):.1f} ms); load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        load_after = os.getloadavg()[0]
        health_after = httpx.get(f"{base}/healthz").status_code
    finally:
        stop_site(proc)
    if not opts.keep:
        shutil.rmtree(var_dir, ignore_errors=True)

    ratio = pct(loaded, 99) / pct(idle, 99)
    result = {
        "login_idle_p50_ms": round(pct(idle, 50), 2),
        "login_idle_p99_ms": round(pct(idle, 99), 2),
        "login_flood_p50_ms": round(pct(loaded, 50), 2),
        "login_flood_p99_ms": round(pct(loaded, 99), 2),
        "login_calls": [len(idle), len(loaded)],
        "login_non_200": bad,
        "health_callers": opts.callers,
        "health_pause_s": opts.pause,
        "health_calls_per_s": round(len(health) / flood_seconds, 1),
        "health_p50_ms": round(pct(health, 50), 2),
        "health_p99_ms": round(pct(health, 99), 2),
        "health_statuses": counts,
        "healthz_before_after": [health_before, health_after],
        "ratio_per_round": rounds,
        "server": "manage.py serve: gunicorn gthread 2x4, SQLite, embedded broker",
        "seconds_per_phase": opts.seconds,
        "load_avg_1m": [round(load_before, 2), round(load_after, 2)],
        "cpus": os.cpu_count(),
        "total_s": round(time.perf_counter() - t_start, 1),
        "login_p99_under_health_flood_vs_idle": round(ratio, 2),
    }
    print(
        f"login p50 {result['login_idle_p50_ms']} ms idle, {result['login_flood_p50_ms']} ms "
        f"under {opts.callers} /healthz callers ({result['health_calls_per_s']} calls/s, "
        f"p99 {result['health_p99_ms']} ms, statuses {counts})"
    )
    print(f"login p99 under the flood / idle = {ratio:.2f} (target <= 2.0)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
