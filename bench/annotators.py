"""Annotator load benchmark: 50 annotators at once against the site under gunicorn on PostgreSQL.

    .venv/bin/python bench/annotators.py [--quick] [--annotators 50] [--seconds 60] [--think 1]
                                         [--history 0] [--comparisons 2]

Set-up (timed apart): a throwaway PostgreSQL database (``--db``, default ``bench_annotators``,
dropped at the end) is created and migrated; a study of ``--items`` (10,000) comparison items
(``--comparisons`` 2: A against 2 baselines on 5,000 contexts; 3: A against 3 baselines on
3,333, the paper's design, where A's reply to a context is in 3 items, so the allocator's
repeat-exposure rule keeps an annotator to one of them; overlap k=3) and ``--annotators``
accounts with DRF tokens are bulk-created; ``--history N`` gives each annotator N judgments made
before the load (items completed by k of them, stored in random order, each with the record
that it was shown), as after a long session. The
site then runs under gunicorn (gthread, ``--workers`` x ``--threads``) with production
settings (DEBUG off) and the URLconf of bench/annotators_urls.py, which adds two bench-only
baselines: a bare Django view (no database, no authentication) and a bare DRF view with the
same token authentication as the API.

Load: every annotator is a thread with its own token and keep-alive connection, looping
GET baseline -> GET next item -> think -> POST judgment -> think, where think is uniform in
[0.5, 1.5] x ``--think`` seconds. With the default 1 s an annotator judges an item about every
2 s, 15-60 times faster than a person reading a dialogue; ``--think 0`` is a closed loop at full
speed (capacity). The baseline alternates between the two bare views and is requested by the
same clients just before each next item, so both see the same load. Requests started in the
first ``--warmup`` seconds are not counted. Latency is client-side wall time.

Reported: p50/p99 of next item, submit and both baselines (ms), requests and judgments per
second, non-2xx answers, ``next_item_p50_vs_bare`` = next-item p50 / bare Django view p50 (and
the same against the bare DRF view), CPU milliseconds per request of the server, of this
database's PostgreSQL backends and of the clients (from /proc: less skewed than latency by
other jobs on the machine, whose load average is reported too), and a check of the
allocator's invariants on the final data. Targets: next-item p99 < 50 ms, ratio <= 3.
The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pairwise.bulk import CRITERIA, check_invariants, populate  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s of load (whole run < 1 min)")
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds not counted")
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=3, help="overlap: judgments per item")
    parser.add_argument(
        "--comparisons",
        type=int,
        default=2,
        choices=(2, 3),
        help="comparisons sharing system A (3: the paper's design)",
    )
    parser.add_argument(
        "--think",
        type=float,
        default=1.0,
        help="mean think time (s) after each next item and each submit",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="judgments each annotator already made before the load (long sessions)",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker")
    parser.add_argument(
        "--pg",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server (no database name)",
    )
    parser.add_argument("--db", default="bench_annotators", help="throwaway database name")
    parser.add_argument("--keep-db", action="store_true", help="do not drop it at the end")
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.seconds, opts.warmup = 10.0, 1.0
    if opts.items % opts.comparisons:
        parser.error(
            f"--items={opts.items}: expected a multiple of --comparisons={opts.comparisons}"
        )
    return opts


# --- database ------------------------------------------------------------------------------
def _admin(pg: str) -> psycopg.Connection:
    return psycopg.connect(f"{pg}/postgres", autocommit=True)


def recreate_database(pg: str, name: str) -> None:
    with _admin(pg) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(pg: str, name: str) -> None:
    with _admin(pg) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup_django(database_url: str, var_dir: Path) -> None:
    os.environ.update(
        DATABASE_URL=database_url,
        EVALSITE_VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="evalsite.settings",
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()


# --- server --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(opts, database_url: str, var_dir: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.annotators_settings",
        "DATABASE_URL": database_url,
        "EVALSITE_VAR_DIR": str(var_dir),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        # counted as deployed, never reached: a closed loop (--think 0) is far above 600/minute
        "API_THROTTLE_USER": "1000000/minute",
        "LOG_LEVEL": "INFO",  # as deployed: one log line per lease and judgment
        # keep each thread's connection for the whole run: the per-backend CPU count below
        # only sees live backends (the default, 60 s, recycles them mid-run)
        "DB_CONN_MAX_AGE": "600",
    }
    log = open(var_dir / "gunicorn.log", "ab")  # noqa: SIM115 (lives as long as the server)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "evalsite.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-k",
            "gthread",
            "-w",
            str(opts.workers),
            "--threads",
            str(opts.threads),
            "--keep-alive",
            "30",
            "--error-logfile",
            "-",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_until_up(base: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(
                f"gunicorn exited with {proc.returncode}; see {log}:\n"
                + log.read_text(errors="replace")[-3000:]
            )
        try:
            if httpx.get(f"{base}/api/bench-bare/", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"gunicorn did not answer within {timeout:.0f}s; see {log}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- load ----------------------------------------------------------------------------------
@dataclass
class Samples:
    ms: dict[str, list[float]] = field(
        default_factory=lambda: {"bare": [], "bare_api": [], "next": [], "submit": []}
    )
    bad: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def annotate(base, token, study_id, start_at, count_from, stop_at, think, seed, samples):
    """One annotator's loop; requests started before `count_from` are not recorded."""
    rng = random.Random(seed)
    mine = {"bare": [], "bare_api": [], "next": [], "submit": []}
    bad: dict[str, int] = {}

    def timed(kind, send):
        started = time.monotonic()
        t0 = time.perf_counter()
        response = send()
        ms = (time.perf_counter() - t0) * 1000
        if started >= count_from:
            mine[kind].append(ms)
            if not response.is_success:
                label = f"{kind} {response.status_code}"
                bad[label] = bad.get(label, 0) + 1
        return response

    def pause():
        if think:
            time.sleep(think * rng.uniform(0.5, 1.5))

    headers = {"Authorization": f"Token {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30.0) as client:
        time.sleep(max(0.0, start_at - time.monotonic()) + rng.uniform(0, max(think, 0.05)))
        cycle = 0
        while time.monotonic() < stop_at:
            cycle += 1
            if cycle % 2:
                timed("bare", lambda: client.get("/api/bench-bare/"))
            else:
                timed("bare_api", lambda: client.get("/api/bench-bare-api/"))
            r = timed("next", lambda: client.get(f"/api/annotator/studies/{study_id}/next/"))
            body = r.json() if r.is_success else {}
            if body.get("done", False) or "item" not in body:
                pause()
                continue
            pause()
            choices = {c: rng.choice(("left", "right", "tie")) for c in CRITERIA}
            payload = {"item": body["item"]["id"], "choices": choices}
            timed(
                "submit",
                lambda p=payload: client.post(
                    f"/api/annotator/studies/{study_id}/judgments/", json=p
                ),
            )
            pause()
    with samples.lock:
        for kind, values in mine.items():
            samples.ms[kind] += values
        for label, n in bad.items():
            samples.bad[label] = samples.bad.get(label, 0) + n


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> tuple[int, float]:
    """(parent pid, user+system CPU seconds) of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def cpu_snapshot(server_pid: int, db: str) -> dict[str, float]:
    """CPU seconds used so far by the gunicorn tree, this database's PostgreSQL backends and
    this process (the clients): unlike latency, not skewed much by other jobs on the machine."""
    server = postgres = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid, cpu = _proc_cpu(int(entry))
            if int(entry) == server_pid or ppid == server_pid:
                server += cpu
            else:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().decode(errors="replace")
                if cmdline.startswith("postgres: ") and f" {db} " in cmdline:
                    postgres += cpu
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"server": server, "postgres": postgres, "clients": usage.ru_utime + usage.ru_stime}


def pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run_load(opts, base, study_id, tokens, server_pid) -> tuple[Samples, dict[str, float]]:
    """Run the annotators; return their samples and the CPU seconds used while counting."""
    samples = Samples()
    start_at = time.monotonic() + 0.5
    count_from = start_at + opts.warmup
    stop_at = count_from + opts.seconds
    threads = [
        threading.Thread(
            target=annotate,
            args=(
                base,
                token,
                study_id,
                start_at,
                count_from,
                stop_at,
                opts.think,
                opts.seed + i,
                samples,
            ),
            daemon=True,
        )
        for i, token in enumerate(tokens)
    ]
    for t in threads:
        t.start()
    time.sleep(max(0.0, count_from - time.monotonic()))
    before = cpu_snapshot(server_pid, opts.db)
    time.sleep(max(0.0, stop_at - time.monotonic()))
    after = cpu_snapshot(server_pid, opts.db)
    for t in threads:
        t.join()
    return samples, {k: after[k] - before[k] for k in after}


# --- main ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    t_start = time.perf_counter()
    var_dir = Path(tempfile.mkdtemp(prefix="bench-annotators-"))
    database_url = f"{opts.pg}/{opts.db}"
    recreate_database(opts.pg, opts.db)
    proc = None
    try:
        setup_django(database_url, var_dir)
        t0 = time.perf_counter()
        study_id, tokens = populate(
            opts.items,
            opts.annotators,
            opts.k,
            opts.seed,
            history=opts.history,
            comparisons=opts.comparisons,
        )
        from django.db import connections

        connections.close_all()
        setup_seconds = time.perf_counter() - t0
        print(
            f"set-up: {opts.items} items, {len(tokens)} annotators in {setup_seconds:.1f}s "
            f"(database {opts.db})",
            flush=True,
        )

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(opts, database_url, var_dir, port)
        wait_until_up(base, proc, var_dir / "gunicorn.log")
        print(
            f"gunicorn gthread {opts.workers}x{opts.threads} on {base}; "
            f"{opts.annotators} annotators for {opts.seconds:.0f}s "
            f"(+{opts.warmup:.0f}s warm-up), think {opts.think}s",
            flush=True,
        )
        load_before = os.getloadavg()[0]  # other jobs on the machine skew every number
        samples, cpu = run_load(opts, base, study_id, tokens, proc.pid)
        seconds = opts.seconds
        stop_server(proc)
        proc = None
        invariants = check_invariants(study_id, opts.k)
        connections.close_all()
    finally:
        if proc is not None:
            stop_server(proc)
        if not opts.keep_db:
            drop_database(opts.pg, opts.db)

    ms = samples.ms
    n_requests = sum(len(v) for v in ms.values())
    result = {
        "annotators": opts.annotators,
        "items": opts.items,
        "history": opts.history,
        "comparisons_sharing_a": opts.comparisons,
        "seconds": seconds,
        "think_s": opts.think,
        "server": f"gunicorn gthread {opts.workers}x{opts.threads}",
        "next_item_p50_ms": round(pct(ms["next"], 50), 2),
        "next_item_p99_ms": round(pct(ms["next"], 99), 2),
        "submit_p50_ms": round(pct(ms["submit"], 50), 2),
        "submit_p99_ms": round(pct(ms["submit"], 99), 2),
        "bare_p50_ms": round(pct(ms["bare"], 50), 2),
        "bare_p99_ms": round(pct(ms["bare"], 99), 2),
        "next_item_p50_vs_bare": round(pct(ms["next"], 50) / pct(ms["bare"], 50), 2),
        "bare_api_p50_ms": round(pct(ms["bare_api"], 50), 2),
        "bare_api_p99_ms": round(pct(ms["bare_api"], 99), 2),
        "next_item_p50_vs_bare_api": round(pct(ms["next"], 50) / pct(ms["bare_api"], 50), 2),
        "requests_per_s": round(n_requests / seconds, 1),
        "judgments_per_s": round(len(ms["submit"]) / seconds, 1),
        "next_item_requests": len(ms["next"]),
        "non_2xx": samples.bad,
        # CPU per request while counting (all requests: bare, next item, submit)
        "cpu_ms_per_request": {k: round(v * 1000 / max(n_requests, 1), 2) for k, v in cpu.items()},
        "invariants_ok": invariants["items_over_k"] == 0
        and invariants["duplicate_judgments"] == 0
        and invariants["counts_match"]
        and invariants["judgments"] == invariants["judgment_count_sum"]
        and invariants["repeat_exposures"] == 0,
        "setup_s": round(setup_seconds, 1),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "total_s": round(time.perf_counter() - t_start, 1),
    }
    print(
        f"next item p50 {result['next_item_p50_ms']} ms, p99 {result['next_item_p99_ms']} ms "
        f"(target < 50); submit p50 {result['submit_p50_ms']} ms, p99 "
        f"{result['submit_p99_ms']} ms; bare view p50 {result['bare_p50_ms']} ms, p99 "
        f"{result['bare_p99_ms']} ms"
    )
    print(
        f"bare DRF view with token auth p50 {result['bare_api_p50_ms']} ms, p99 "
        f"{result['bare_api_p99_ms']} ms"
    )
    print(
        f"next item p50 / bare p50 = {result['next_item_p50_vs_bare']} (target <= 3), "
        f"/ bare DRF p50 = {result['next_item_p50_vs_bare_api']}; "
        f"{result['requests_per_s']} requests/s, {result['judgments_per_s']} judgments/s; "
        f"non-2xx {samples.bad or 'none'}; invariants {invariants}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
