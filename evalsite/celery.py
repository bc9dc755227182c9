"""The Celery app, wired once. Queues: `default` and `generation` (GPU workers at scale)."""

import os

from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")

app = Celery("evalsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("generation"))
app.autodiscover_tasks()


@worker_ready.connect
def _reconcile_on_start(sender=None, **kwargs) -> None:
    """The database is the source of truth: re-enqueue work whose message may have been lost."""
    sender.app.send_task(
        "pairwise.tasks.reconcile", kwargs={"worker": sender.hostname}, queue="default"
    )


@worker_ready.connect
def _start_heartbeat(sender=None, **kwargs) -> None:
    """/healthz learns that this worker is alive from its heartbeat row, not from the broker."""
    from pairwise.services import heartbeat

    heartbeat.start(sender.hostname, list(sender.app.amqp.queues.consume_from))


@worker_shutdown.connect
def _stop_heartbeat(sender=None, **kwargs) -> None:
    from pairwise.services import heartbeat

    heartbeat.stop()
