"""Health of the three things the site needs: the database, the broker, and a live worker."""

from __future__ import annotations

from django.conf import settings
from django.db import connection


def check_database() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True, connection.vendor
    except Exception as exc:  # any failure is "unhealthy", reported as text
        return False, f"{type(exc).__name__}: {exc}"


def check_broker(url: str | None = None, timeout: float = 2.0) -> tuple[bool, str]:
    from kombu import Connection

    url = url or settings.CELERY_BROKER_URL
    try:
        with Connection(url, connect_timeout=timeout, transport_options={"max_retries": 0}) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        return True, url.split("://", 1)[0]
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def check_worker(timeout: float = 1.0) -> tuple[bool, str]:
    from evalsite.celery import app

    try:
        replies = app.control.ping(timeout=timeout)
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    names = sorted(name for reply in replies for name in reply)
    return (bool(names), ", ".join(names) if names else "no worker answered")


def health() -> dict:
    db_ok, db_detail = check_database()
    broker_ok, broker_detail = check_broker()
    if broker_ok:
        worker_ok, worker_detail = check_worker()
    else:
        worker_ok, worker_detail = False, "broker unreachable"
    return {
        "ok": db_ok and broker_ok and worker_ok,
        "database": {"ok": db_ok, "detail": db_detail},
        "broker": {"ok": broker_ok, "detail": broker_detail},
        "worker": {"ok": worker_ok, "detail": worker_detail},
    }
