"""Beat's periodic reconcile really runs: a generation batch whose message is lost while the
workers keep running is queued again within two reconcile intervals, with no worker restart."""

from __future__ import annotations

import time

import pytest
import redis

from pairwise.models import GenerationBatch, Study
from pairwise.services.studies import create_study, open_study
from tests.factories import CheckpointFactory, EvalContextFactory, SystemFactory
from tests.integration.conftest import site_app_on, wait_for

pytestmark = pytest.mark.integration

INTERVAL = 3  # RECONCILE_INTERVAL_SECONDS of the beat under test
BEAT_ENV = {
    "RECONCILE_INTERVAL_SECONDS": str(INTERVAL),
    # reconcile re-enqueues a pending batch queued longer ago than the visibility timeout (a
    # message still in the queue is redelivered by then anyway)
    "CELERY_VISIBILITY_TIMEOUT": "2",
}


def _generation_queue(broker) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(broker.socket))


def test_beat_reconcile_requeues_a_batch_whose_message_was_lost(embedded_broker, workers):
    # the default worker with beat; nothing consumes the generation queue yet
    default = workers.start(
        "beat",
        embedded_broker.url,
        queues=("default",),
        env=BEAT_ENV,
        options=("-B", "-s", str(workers.log_dir / "celerybeat-schedule")),
    )
    a, b = (SystemFactory(name=name) for name in ("CARE", "ESConv"))
    study = create_study(
        "reconcile-beat",
        contexts=EvalContextFactory.create_batch(2),
        pairs=[(CheckpointFactory(system=a), CheckpointFactory(system=b))],
        overlap_k=1,
    )
    with site_app_on(embedded_broker.url):
        assert open_study(study)["batches"] == 2
    queued = {b.pk: b.task_id for b in GenerationBatch.objects.filter(study=study)}
    assert all(queued.values())

    broker = _generation_queue(embedded_broker)
    assert broker.llen("generation") == 2
    broker.delete("generation")  # the messages are lost; every worker keeps running
    lost_at = time.monotonic()

    def requeued() -> bool:
        batches = GenerationBatch.objects.filter(study=study)
        return broker.llen("generation") >= 2 and all(b.task_id != queued[b.pk] for b in batches)

    wait_for(requeued, 4 * INTERVAL, interval=0.1, what="beat's reconcile to re-enqueue")
    took = time.monotonic() - lost_at
    assert took <= 2 * INTERVAL + 1, f"re-enqueued after {took:.1f}s"
    log = default.log_text()
    assert "Scheduler: Sending due task reconcile" in log
    assert "reconcile: re-enqueueing 2 batches" in log
    assert default.proc.poll() is None  # the same worker process, never restarted
    assert all(
        s == GenerationBatch.Status.PENDING
        for s in GenerationBatch.objects.filter(study=study).values_list("status", flat=True)
    )

    # a generation worker now finds the re-enqueued messages and the study opens
    workers.start("gen", embedded_broker.url, queues=("generation",))
    wait_for(
        lambda: Study.objects.get(pk=study.pk).status == Study.Status.OPEN,
        60,
        what="the batches to run and the study to open",
    )
    assert set(GenerationBatch.objects.filter(study=study).values_list("status", flat=True)) == {
        GenerationBatch.Status.DONE
    }
    broker.close()
