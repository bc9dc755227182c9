"""Workers' heartbeats: each Celery worker writes its own `WorkerHeartbeat` row every
HEARTBEAT_SECONDS, so `/healthz` reads a few rows instead of asking the broker.

The row is refreshed only while the worker reaches its broker (a worker that cannot take work
is not alive for the site), so a fresh row vouches for both. A worker stopped cleanly deletes its
row; a killed one cannot, and its row goes stale after HEALTH_STALE_SECONDS (`serve` also deletes
the row of a child it sees die). Wired to Celery's `worker_ready` and `worker_shutdown` signals in
evalsite/celery.py.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, close_old_connections, connections
from django.utils import timezone

from pairwise.models import WorkerHeartbeat
from pairwise.services import health

log = logging.getLogger(__name__)

# rows of workers gone for this long are deleted when a worker starts
FORGET_AFTER = timedelta(days=1)


class Heartbeat:
    """A daemon thread that upserts this worker's row until `stop()`."""

    def __init__(self, name: str, queues: list[str], interval: float | None = None):
        self.name = name
        self.queues = ",".join(sorted(queues))
        self.interval = interval or settings.HEARTBEAT_SECONDS
        self.pid = os.getpid()
        self.started_at = timezone.now()
        self._stop = threading.Event()
        self._failing: str | None = None  # the last failure, logged once until it clears
        self._thread = threading.Thread(target=self._run, name=f"heartbeat {name}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def beat(self) -> bool:
        """Check the broker, then write the row; True when written. Never raises: a database or
        broker hiccup is logged (once until it clears) and the next beat tries again."""
        close_old_connections()  # drop a connection that broke or outlived CONN_MAX_AGE
        try:
            broker_ok, detail = health.check_broker(timeout=min(2.0, self.interval))
            if not broker_ok:
                self._failed(f"broker unreachable ({detail}); not refreshing the heartbeat")
                return False
            self._write(timezone.now())
        except Exception as exc:  # any failure: keep beating, on a fresh connection
            connections.close_all()  # this thread's connections only
            self._failed(f"cannot write the heartbeat ({type(exc).__name__}: {exc})")
            return False
        if self._failing:
            log.warning("heartbeat %s: written again after: %s", self.name, self._failing)
            self._failing = None
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop beating and delete this worker's row (not a newer worker's of the same name)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        try:
            WorkerHeartbeat.objects.filter(name=self.name, pid=self.pid).delete()
        except Exception as exc:
            log.warning("heartbeat %s: row not deleted (%s); it goes stale", self.name, exc)

    def _write(self, now) -> None:
        fields = {
            "queues": self.queues,
            "pid": self.pid,
            "started_at": self.started_at,
            "seen_at": now,
        }
        # one UPDATE per beat; the INSERT happens once per worker start
        if WorkerHeartbeat.objects.filter(name=self.name).update(**fields):
            return
        try:
            WorkerHeartbeat.objects.create(name=self.name, **fields)
        except IntegrityError:  # a worker of the same name inserted it meanwhile
            WorkerHeartbeat.objects.filter(name=self.name).update(**fields)

    def _failed(self, why: str) -> None:
        if why != self._failing:
            log.warning("heartbeat %s: %s", self.name, why)
        self._failing = why

    def _run(self) -> None:
        try:
            WorkerHeartbeat.objects.filter(seen_at__lt=timezone.now() - FORGET_AFTER).delete()
        except Exception as exc:
            log.warning("heartbeat %s: old rows not pruned (%s)", self.name, exc)
        while True:
            self.beat()
            if self._stop.wait(self.interval):
                break
        connections.close_all()


_current: Heartbeat | None = None


def start(name: str, queues: list[str]) -> Heartbeat:
    """Start this process's heartbeat (once); called on `worker_ready`."""
    global _current
    if _current is None:
        _current = Heartbeat(name, queues).start()
        log.info("heartbeat %s: every %.0fs, queues %s", name, _current.interval, _current.queues)
    return _current


def stop() -> None:
    """Stop this process's heartbeat and delete its row; called on `worker_shutdown`."""
    global _current
    if _current is not None:
        _current.stop()
        _current = None
