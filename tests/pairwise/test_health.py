"""/healthz from the workers' heartbeat rows: anonymous callers get only ok, staff the details;
the report is cached; a worker's heartbeat is written only while it reaches its broker."""

from __future__ import annotations

import logging
import socket
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from pairwise.models import WorkerHeartbeat
from pairwise.services import health
from pairwise.services.heartbeat import Heartbeat
from tests.factories import UserFactory, annotator, researcher

pytestmark = pytest.mark.django_db


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _fresh_cache(settings):
    settings.HEALTH_STALE_SECONDS = 15
    health.forget_cached()
    yield
    health.forget_cached()


def _beat(name: str, queues: str, seconds_ago: float = 0.0, pid: int = 4242) -> WorkerHeartbeat:
    now = timezone.now()
    return WorkerHeartbeat.objects.create(
        name=name,
        queues=queues,
        pid=pid,
        started_at=now - timedelta(minutes=5),
        seen_at=now - timedelta(seconds=seconds_ago),
    )


def _live_workers() -> None:
    _beat("default@web1", "default")
    _beat("generation@gpu1", "generation")


def _staff_client() -> Client:
    client = Client()
    client.force_login(UserFactory(username="ops", is_staff=True))
    return client


def test_anonymous_caller_gets_only_ok_when_every_queue_has_a_live_worker():
    _live_workers()

    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert b"web1" not in response.content and b"gpu1" not in response.content
    assert "no-cache" in response["Cache-Control"]


def test_anonymous_caller_gets_503_and_nothing_else_without_workers():
    response = Client().get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"ok": False}


def test_staff_see_the_details_without_secrets(settings):
    settings.CELERY_BROKER_URL = "redis://:s3cret-password@broker.internal:6379/0"
    _live_workers()

    response = _staff_client().get("/healthz")

    assert response.status_code == 200
    report = response.json()
    assert report["ok"] is True
    assert report["database"]["ok"] is True
    assert report["broker"]["ok"] is True
    assert report["worker"]["queues"] == {
        "default": ["default@web1"],
        "generation": ["generation@gpu1"],
    }
    assert {w["name"] for w in report["worker"]["workers"]} == {"default@web1", "generation@gpu1"}
    assert b"s3cret" not in response.content


def test_admins_see_the_details_annotators_and_researchers_do_not():
    _live_workers()
    admin = UserFactory(username="boss")
    admin.groups.add(Group.objects.get_or_create(name="admin")[0])
    for user, detailed in [
        (admin, True),
        (UserFactory(username="root", is_superuser=True), True),
        (annotator(username="h-ann"), False),
        (researcher(username="h-res"), False),
    ]:
        client = Client()
        client.force_login(user)
        body = client.get("/healthz").json()
        assert ("worker" in body) is detailed, user.username
        assert body["ok"] is True


def test_a_stale_heartbeat_is_a_dead_worker(settings):
    _beat("default@web1", "default")
    _beat("generation@gpu1", "generation", seconds_ago=settings.HEALTH_STALE_SECONDS + 1)

    response = _staff_client().get("/healthz")

    assert response.status_code == 503
    report = response.json()
    assert report["worker"]["ok"] is False
    assert report["worker"]["detail"] == "no live worker on queue generation"
    stale = {w["name"]: w["alive"] for w in report["worker"]["workers"]}
    assert stale == {"default@web1": True, "generation@gpu1": False}


def test_one_worker_may_serve_both_queues():
    _beat("both@host", "default,generation")

    assert Client().get("/healthz").status_code == 200


def test_a_flood_of_calls_is_answered_from_the_cache(settings, django_assert_num_queries):
    settings.HEALTH_CACHE_SECONDS = 60
    _live_workers()
    client = Client()
    assert client.get("/healthz").status_code == 200

    WorkerHeartbeat.objects.all().delete()  # both workers gone: the cache does not know yet
    with django_assert_num_queries(0):
        for _ in range(50):
            assert client.get("/healthz").status_code == 200

    settings.HEALTH_CACHE_SECONDS = 0  # expired: the next call looks again
    assert client.get("/healthz").status_code == 503


def test_heartbeat_writes_its_row_while_the_broker_answers(settings):
    settings.CELERY_BROKER_URL = "memory://"
    default = Heartbeat("default@here", ["default"])
    generation = Heartbeat("generation@here", ["generation"])

    assert default.beat() and generation.beat()

    row = WorkerHeartbeat.objects.get(name="default@here")
    assert row.queues == "default" and row.pid == default.pid
    first_seen = row.seen_at
    assert default.beat()
    assert WorkerHeartbeat.objects.get(name="default@here").seen_at > first_seen
    assert WorkerHeartbeat.objects.count() == 2
    assert Client().get("/healthz").status_code == 200


def test_heartbeat_is_not_refreshed_while_the_broker_is_unreachable(settings, caplog):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port()}/0"
    beat = Heartbeat("default@here", ["default"], interval=0.5)

    with caplog.at_level(logging.WARNING, logger="pairwise.services.heartbeat"):
        assert beat.beat() is False
        assert beat.beat() is False  # logged once until it clears

    assert not WorkerHeartbeat.objects.exists()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "broker unreachable" in warnings[0], warnings
    assert Client().get("/healthz").status_code == 503

    settings.CELERY_BROKER_URL = "memory://"
    with caplog.at_level(logging.WARNING, logger="pairwise.services.heartbeat"):
        assert beat.beat() is True
    assert "written again" in caplog.records[-1].getMessage()


def test_a_stopped_worker_deletes_only_its_own_row(settings):
    settings.CELERY_BROKER_URL = "memory://"
    beat = Heartbeat("default@here", ["default"])
    beat.beat()
    _beat("generation@here", "generation")

    beat.stop()

    assert list(WorkerHeartbeat.objects.values_list("name", flat=True)) == ["generation@here"]
    assert Client().get("/healthz").status_code == 503


def test_health_since_ignores_rows_of_workers_started_before():
    """`serve` waits for its own workers, not rows an earlier run left behind."""
    _live_workers()

    assert health.health()["ok"] is True
    assert health.health(since=timezone.now())["ok"] is False


def test_a_probe_skips_the_middleware_stack(settings):
    """No session, no CSRF cookie, no host check: load balancers probe by IP address."""
    _live_workers()

    response = Client().get("/healthz", HTTP_HOST="10.1.2.3:8000")

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert not response.cookies
    assert response["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware still ran


def test_a_503_is_an_answer_not_a_logged_server_error(caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert Client().get("/healthz").status_code == 503
        assert _staff_client().get("/healthz").status_code == 503

    assert not [r for r in caplog.records if r.name == "django.request"]
