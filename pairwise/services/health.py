"""Health of what the site needs: the database, the broker, and a live worker on every queue.

A call costs no broker round trip: workers write heartbeat rows (pairwise/services/heartbeat.py)
while they reach their broker, so a fresh heartbeat vouches for the worker and its broker. The
web process reads those rows with one query and keeps the report HEALTH_CACHE_SECONDS, so the
answer is at most HEARTBEAT_SECONDS + HEALTH_CACHE_SECONDS old and a flood of calls costs a
lookup each. `check_broker` (a real connection) is for start-up (`serve`) and the heartbeat.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone


def check_database() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True, connection.vendor
    except Exception as exc:  # any failure is "unhealthy", reported as text
        return False, f"{type(exc).__name__}: {exc}"


def check_broker(url: str | None = None, timeout: float = 2.0) -> tuple[bool, str]:
    """Connect to the broker now (a round trip): for start-up and the workers' heartbeat."""
    from kombu import Connection

    url = url or settings.CELERY_BROKER_URL
    try:
        with Connection(url, connect_timeout=timeout, transport_options={"max_retries": 0}) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        return True, url.split("://", 1)[0]
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def check_workers(*, since=None) -> tuple[bool, dict]:
    """Whether every queue in HEALTH_QUEUES has a worker whose heartbeat is fresh (younger than
    HEALTH_STALE_SECONDS, and started after `since` when given). Returns (ok, details)."""
    from pairwise.models import WorkerHeartbeat

    now = timezone.now()
    fresh_after = now - timedelta(seconds=settings.HEALTH_STALE_SECONDS)
    workers, live = [], {q: [] for q in settings.HEALTH_QUEUES}
    for hb in WorkerHeartbeat.objects.order_by("name"):
        alive = hb.seen_at >= fresh_after and (since is None or hb.started_at >= since)
        queues = [q for q in hb.queues.split(",") if q]
        workers.append(
            {
                "name": hb.name,
                "queues": queues,
                "pid": hb.pid,
                "alive": alive,
                "seen_seconds_ago": round((now - hb.seen_at).total_seconds(), 1),
            }
        )
        for q in queues:
            if alive and q in live:
                live[q].append(hb.name)
    missing = [q for q, names in live.items() if not names]
    detail = (
        "no live worker on queue " + ", ".join(missing)
        if missing
        else "; ".join(f"{q}: {', '.join(names)}" for q, names in live.items())
    )
    return not missing, {"detail": detail, "queues": live, "workers": workers}


def health(*, since=None) -> dict:
    """The full report, computed now (one query for the database, one for the heartbeats)."""
    db_ok, db_detail = check_database()
    worker_ok, workers = False, {"detail": "database unreachable", "queues": {}, "workers": []}
    if db_ok:
        try:
            worker_ok, workers = check_workers(since=since)
        except Exception as exc:  # e.g. not migrated: unhealthy, never a 500
            db_ok, db_detail = False, f"{type(exc).__name__}: {exc}"
            workers["detail"] = "heartbeats unreadable"
    reached = [w["name"] for w in workers["workers"] if w["alive"]]
    broker = (
        {"ok": True, "detail": f"reached by {', '.join(reached)}"}
        if reached
        else {"ok": False, "detail": "no worker reached it recently (or no worker runs)"}
    )
    return {
        "ok": db_ok and worker_ok and broker["ok"],
        "database": {"ok": db_ok, "detail": db_detail},
        "broker": broker,
        "worker": {"ok": worker_ok, **workers},
        "checked_at": timezone.now().isoformat(timespec="seconds"),
    }


_cache: tuple[float, dict] | None = None
_cache_lock = threading.Lock()


def cached_health() -> dict:
    """`health()`, recomputed at most every HEALTH_CACHE_SECONDS in this process: /healthz."""
    global _cache
    max_age = settings.HEALTH_CACHE_SECONDS
    cached = _cache
    if cached is not None and time.monotonic() - cached[0] < max_age:
        return cached[1]
    with _cache_lock:  # one thread recomputes; the others wait for it (a few milliseconds)
        cached = _cache
        if cached is None or time.monotonic() - cached[0] >= max_age:
            cached = _cache = (time.monotonic(), health())
    return cached[1]


def forget_cached() -> None:
    """Drop the cached report (tests, and `serve` after it restarts a child)."""
    global _cache
    _cache = None
