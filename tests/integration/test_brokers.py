"""A task round-trips through a real worker on each supported broker."""

from __future__ import annotations

import json
import uuid

import pytest
from django_celery_results.models import TaskResult

from pairwise.models import TaskProbe
from tests.integration.conftest import AMQP_URL, REDIS_URL, make_app, purge, require_service

pytestmark = pytest.mark.integration


@pytest.fixture(params=["embedded", "redis", "amqp"])
def broker_url(request):
    """The broker URL for each kind; shared servers get their queues purged before and after."""
    if request.param == "embedded":
        yield request.getfixturevalue("embedded_broker").url
        return
    url = {"redis": REDIS_URL, "amqp": AMQP_URL}[request.param]
    require_service(url)
    app = make_app(url)
    purge(app, url)
    yield url
    purge(app, url)


def test_ping_round_trips_through_a_worker(broker_url, workers):
    worker = workers.start("brokers", broker_url)
    marker = f"brokers-{uuid.uuid4().hex}"

    result = worker.app.send_task("pairwise.tasks.ping", kwargs={"marker": marker})

    assert result.get(timeout=30) == "pong"
    assert TaskProbe.objects.filter(marker=marker).count() == 1
    stored = TaskResult.objects.get(task_id=result.id)  # the django-db result backend
    assert stored.status == "SUCCESS"
    assert json.loads(stored.result) == "pong"
    assert stored.task_name == "pairwise.tasks.ping"
    assert stored.worker == worker.nodename
