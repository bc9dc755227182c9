"""/healthz from real workers' heartbeats; bad configuration stops start-up in one line."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import pytest
from django.db import connection
from django.utils import timezone

from pairwise.models import WorkerHeartbeat
from pairwise.services import health
from tests.integration.conftest import REPO, closed_port, wait_for

pytestmark = pytest.mark.integration


# Workers beat every second; the web process counts a row older than 3 s as a dead worker and
# computes every report afresh (no cache), so the tests wait seconds, not the defaults' 15 s.
WORKER_ENV = {"HEARTBEAT_SECONDS": "1"}


@pytest.fixture
def fast_health(settings):
    settings.HEALTH_STALE_SECONDS = 3
    settings.HEALTH_CACHE_SECONDS = 0
    health.forget_cached()
    yield settings
    health.forget_cached()


def _staff(client):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="ops", is_staff=True))
    return client


def _healthz(client):
    started = time.monotonic()
    response = client.get("/healthz")
    return response, time.monotonic() - started


def _heartbeat(worker) -> WorkerHeartbeat | None:
    return WorkerHeartbeat.objects.filter(name=worker.nodename).first()


def test_a_live_worker_makes_healthz_ok_from_its_heartbeat(
    embedded_broker, workers, client, fast_health
):
    worker = workers.start("health", embedded_broker.url, env=WORKER_ENV)  # both queues
    row = wait_for(lambda: _heartbeat(worker), 30, what="the worker's heartbeat row")
    assert row.pid == worker.proc.pid
    assert set(row.queues.split(",")) == {"default", "generation"}

    client.get("/accounts/login/")  # this process's first request loads the URLconf
    calls = [_healthz(client) for _ in range(5)]  # each computes the report afresh (no cache)

    response = calls[0][0]
    assert response.status_code == 200, response.content
    assert response.json() == {"ok": True}  # anonymous: no host names
    seconds = statistics.median(s for _, s in calls)
    assert seconds < 0.1, f"/healthz took {seconds * 1000:.0f} ms"
    report = _staff(client).get("/healthz").json()
    assert report["database"] == {"ok": True, "detail": "postgresql"}
    assert report["broker"]["ok"] is True
    assert report["worker"]["queues"] == {
        "default": [worker.nodename],
        "generation": [worker.nodename],
    }
    # the worker keeps beating
    seen = row.seen_at
    wait_for(lambda: _heartbeat(worker).seen_at > seen, 10, what="a newer heartbeat")


def test_unhealthy_without_a_worker(db, client, fast_health):
    response, _ = _healthz(client)

    assert response.status_code == 503
    assert response.json() == {"ok": False}
    report = _staff(client).get("/healthz").json()
    assert report["database"]["ok"] is True
    assert report["worker"]["ok"] is False
    assert report["worker"]["detail"] == "no live worker on queue default, generation"


def test_a_stopped_worker_removes_its_heartbeat(embedded_broker, workers, client, fast_health):
    worker = workers.start("health", embedded_broker.url, env=WORKER_ENV)
    wait_for(lambda: _heartbeat(worker), 30, what="the worker's heartbeat row")
    assert _healthz(client)[0].status_code == 200

    worker.stop()  # SIGTERM: a warm shutdown

    assert _heartbeat(worker) is None
    assert _healthz(client)[0].status_code == 503


def test_a_killed_worker_is_dead_once_its_heartbeat_is_stale(
    embedded_broker, workers, client, fast_health
):
    worker = workers.start("health", embedded_broker.url, env=WORKER_ENV)
    wait_for(lambda: _heartbeat(worker), 30, what="the worker's heartbeat row")
    assert _healthz(client)[0].status_code == 200

    worker.kill()  # SIGKILL: it cannot delete its row
    killed = time.monotonic()

    assert _heartbeat(worker) is not None
    wait_for(lambda: _healthz(client)[0].status_code == 503, 10, what="/healthz to say 503")
    assert time.monotonic() - killed <= fast_health.HEALTH_STALE_SECONDS + 1.5


def test_a_worker_cut_off_from_its_broker_stops_beating(
    embedded_broker, workers, client, fast_health
):
    """The heartbeat checks the broker: the web process never has to."""
    worker = workers.start("health", embedded_broker.url, env=WORKER_ENV)
    wait_for(lambda: _healthz(client)[0].status_code == 200, 30, what="/healthz to say 200")

    embedded_broker.stop()

    wait_for(lambda: _healthz(client)[0].status_code == 503, 15, what="/healthz to say 503")
    report = _staff(client).get("/healthz").json()
    assert report["broker"]["ok"] is False
    wait_for(lambda: "broker unreachable" in worker.log_text(), 10, what="the worker to log it")


def test_the_heartbeat_survives_its_database_connection_dropping(
    embedded_broker, workers, fast_health
):
    worker = workers.start("health", embedded_broker.url, env=WORKER_ENV)
    wait_for(lambda: _heartbeat(worker), 30, what="the worker's heartbeat row")

    with connection.cursor() as cursor:  # every connection to this database but ours
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1
    dropped = timezone.now()

    wait_for(lambda: _heartbeat(worker).seen_at > dropped, 10, what="a heartbeat after the drop")
    assert worker.proc.poll() is None


def _manage(
    *args: str, env: dict[str, str], var_dir, timeout: float = 60
) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**base, "EVALSITE_VAR_DIR": str(var_dir), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "postgres//postgres@127.0.0.1/test"),  # no "://"
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:notaport/test"),
        ("DATABASE_URL", "mysql://root@127.0.0.1/test"),  # parses, but no driver here
        ("CELERY_BROKER_URL", "localhost:6379"),
        ("CELERY_BROKER_URL", "kafka://127.0.0.1:9092"),
    ],
)
def test_malformed_url_is_one_line_naming_the_variable(variable, value, tmp_path):
    done = _manage("check", env={variable: value}, var_dir=tmp_path)

    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert variable in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


def test_serve_with_an_unreachable_broker_exits_naming_it(tmp_path):
    url = f"redis://127.0.0.1:{closed_port()}/0"
    done = _manage(
        "serve",
        "--no-web",
        env={"CELERY_BROKER_URL": url, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
        var_dir=tmp_path,
        timeout=60,
    )

    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "CELERY_BROKER_URL" in lines[0]
    assert url in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
