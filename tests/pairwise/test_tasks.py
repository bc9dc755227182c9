"""Celery tasks as beat and the workers see them."""

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


def _our_tasks():
    from evalsite.celery import app

    app.loader.import_default_modules()
    return app, {name: t for name, t in app.tasks.items() if name.startswith("pairwise.")}


def test_every_task_stops_softly_before_its_hard_limit():
    app, tasks = _our_tasks()
    assert {
        "pairwise.tasks.generate_batch",
        "pairwise.tasks.reconcile",
        "pairwise.tasks.ping",
    } <= set(tasks)
    for name, task in tasks.items():
        hard = task.time_limit or app.conf.task_time_limit
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        assert hard and soft and 0 < soft < hard, (name, soft, hard)


def test_beat_can_send_every_scheduled_task():
    """Beat calls apply_async with the entry's options; Celery checks the limits there (it
    raised 'soft_time_limit must be less than or equal to time_limit' for reconcile)."""
    app, tasks = _our_tasks()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        task = tasks[entry["task"]]
        task.apply_async(entry.get("args", ()), entry.get("kwargs", {}), **entry.get("options", {}))
