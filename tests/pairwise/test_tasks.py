"""Celery tasks as beat and the workers see them."""

import pytest
from celery.utils.imports import symbol_by_name
from django.conf import settings

pytestmark = pytest.mark.django_db


def _app():
    from evalsite.celery import app

    app.loader.import_default_modules()
    return app


def test_every_registered_task_stops_softly_before_its_hard_limit():
    """Ours and Celery's own (beat sends celery.backend_cleanup daily), with the global
    defaults filled in as the worker and `apply_async` do."""
    app = _app()
    tasks = dict(app.tasks)
    assert {
        "pairwise.tasks.generate_batch",
        "pairwise.tasks.reconcile",
        "pairwise.tasks.ping",
        "celery.backend_cleanup",
        "celery.chord_unlock",
    } <= set(tasks)
    assert 0 < app.conf.task_soft_time_limit < app.conf.task_time_limit
    for name, task in tasks.items():
        hard = task.time_limit if task.time_limit is not None else app.conf.task_time_limit
        soft = (
            task.soft_time_limit
            if task.soft_time_limit is not None
            else app.conf.task_soft_time_limit
        )
        if hard and soft:
            assert soft < hard, (name, soft, hard)


def test_beat_can_send_every_scheduled_task(tmp_path):
    """Beat's own scheduler (the one `worker -B` runs), with its default entries
    (celery.backend_cleanup, as the django-db result backend does not expire results itself)
    and ours, sends each entry as beat does; Celery checks the limits there (it raised
    'soft_time_limit must be less than or equal to time_limit' for reconcile, every minute)."""
    app = _app()
    scheduler_class = symbol_by_name(app.conf.beat_scheduler)
    scheduler = scheduler_class(app, schedule_filename=str(tmp_path / "schedule"), lazy=True)
    scheduler.setup_schedule()
    entries = dict(scheduler.schedule)
    assert {"reconcile", "celery.backend_cleanup"} <= set(entries)
    assert entries["reconcile"].schedule.run_every.total_seconds() == (
        settings.RECONCILE_INTERVAL_SECONDS
    )
    for name, entry in entries.items():
        result = scheduler.apply_async(entry, advance=False)  # eager here: runs in-process
        assert result.successful(), (name, result.result)
    scheduler.close()
