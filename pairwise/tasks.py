"""Celery tasks: thin wrappers that load ids and call services. Safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from models.base import TransientBackendError
from pairwise.services import generation

log = logging.getLogger(__name__)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(TransientBackendError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
)
def generate_batch(self, batch_id: int) -> str:
    try:
        return generation.run_batch(batch_id, worker=self.request.hostname or "")
    except TransientBackendError:
        raise
    except Exception as exc:  # a permanent failure: keep the error on the batch for retry
        log.exception("batch %s failed", batch_id)
        generation.mark_failed(batch_id, f"{type(exc).__name__}: {exc}")
        return "failed"


# Each task stops softly before its hard limit: Celery refuses to send a task whose soft limit
# (the global CELERY_TASK_SOFT_TIME_LIMIT, unless the task sets its own) exceeds its hard one, and
# beat then failed every reconcile it scheduled.
@shared_task(acks_late=True, time_limit=300, soft_time_limit=270)
def reconcile(worker: str = "") -> list[int]:
    return generation.reconcile(worker=worker)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=120, soft_time_limit=110)
def ping(delay: float = 0.0, marker: str = "") -> str:
    """Round-trip probe for health checks and broker tests; records `marker` when given."""
    import time

    if delay:
        time.sleep(delay)
    if marker:
        from pairwise.models import TaskProbe

        TaskProbe.objects.get_or_create(marker=marker)
    return "pong"
