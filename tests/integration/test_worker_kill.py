"""SIGKILL a worker mid-task on the embedded broker: nothing is lost, nothing is done twice."""

from __future__ import annotations

import re
import time

import pytest

from pairwise.models import ComparisonItem, GenerationBatch, Response, Study, TaskProbe
from pairwise.services.sampling import sampling_key
from pairwise.services.studies import create_study, open_study
from tests.factories import CheckpointFactory, EvalContextFactory, SystemFactory
from tests.integration.conftest import site_app_on, wait_for

pytestmark = pytest.mark.integration

# The broker hands an unacknowledged task to another worker after this many seconds.
KILL_ENV = {"CELERY_VISIBILITY_TIMEOUT": "5"}


def _task_ids(log: str, state: str) -> set[str]:
    return set(re.findall(rf"Task pairwise\.tasks\.ping\[([0-9a-f-]+)\] {state}", log))


def test_tasks_of_a_killed_worker_all_run_exactly_once(embedded_broker, workers):
    first = workers.start("kill", embedded_broker.url, env=KILL_ENV)
    markers = [f"kill-{i}" for i in range(10)]
    for marker in markers:
        first.app.send_task("pairwise.tasks.ping", kwargs={"delay": 1.0, "marker": marker})

    wait_for(lambda: TaskProbe.objects.count() >= 3, 60, what="3 tasks to finish")

    def cut_off() -> set[str]:
        log = first.log_text()
        return _task_ids(log, "received") - _task_ids(log, "succeeded")

    # Kill while a task is in its 1 s sleep: received, never acknowledged. A task merely seen in
    # flight may be at its tail (marker written, "succeeded" not logged yet: the third task is,
    # right when the wait above ends), so wait for one that has been in flight 0.2-0.5 s.
    first_seen: dict[str, float] = {}

    def mid_sleep() -> bool:
        now = time.monotonic()
        for task_id in cut_off():
            first_seen.setdefault(task_id, now)
            if 0.2 <= now - first_seen[task_id] <= 0.5:
                return True
        return False

    wait_for(mid_sleep, 30, interval=0.02, what="a task in the middle of its sleep")
    first.kill()
    done_before = set(TaskProbe.objects.values_list("marker", flat=True))
    in_flight = cut_off()
    assert 3 <= len(done_before) < len(markers)
    assert len(in_flight) == 1, f"expected one task cut off by the kill, got {in_flight}"

    second = workers.start("kill", embedded_broker.url, env=KILL_ENV)
    wait_for(lambda: TaskProbe.objects.count() >= len(markers), 60, what="every marker")
    time.sleep(1.5)  # would a duplicate still arrive?

    counts = {m: TaskProbe.objects.filter(marker=m).count() for m in markers}
    assert counts == {m: 1 for m in markers}
    assert TaskProbe.objects.count() == len(markers)
    # the task the kill cut off was redelivered to the new worker and ran to the end there
    assert in_flight <= _task_ids(second.log_text(), "succeeded")


def _slow_fake_study(n_contexts: int) -> Study:
    """A draft study of two fake checkpoints that take 0.5 s per response."""
    a, b = (
        CheckpointFactory(system=SystemFactory(name=name), backend_config={"delay": 0.5})
        for name in ("CARE", "ESConv")
    )
    contexts = EvalContextFactory.create_batch(n_contexts)
    return create_study("kill-generation", contexts=contexts, pairs=[(a, b)], overlap_k=1)


def test_generation_batch_of_a_killed_worker_is_rerun(embedded_broker, workers):
    study = _slow_fake_study(n_contexts=6)
    first = workers.start("gen", embedded_broker.url, env=KILL_ENV)
    with site_app_on(embedded_broker.url):
        opened = open_study(study)
    assert opened["batches"] == 2

    running = wait_for(
        lambda: GenerationBatch.objects.filter(status=GenerationBatch.Status.RUNNING).first(),
        60,
        what="a batch to start",
    )
    time.sleep(1.0)  # 1 s into a 3 s batch
    first.kill()
    running.refresh_from_db()
    assert running.status == GenerationBatch.Status.RUNNING
    assert running.worker == first.nodename
    assert not Response.objects.filter(checkpoint=running.checkpoint).exists()

    # Same node name: its start-up reconcile re-enqueues the batch it had claimed.
    workers.start("gen", embedded_broker.url, env=KILL_ENV)
    wait_for(
        lambda: Study.objects.get(pk=study.pk).status == Study.Status.OPEN,
        90,
        what="all batches to finish and the study to open",
    )

    batches = GenerationBatch.objects.filter(study=study)
    assert set(batches.values_list("status", flat=True)) == {GenerationBatch.Status.DONE}
    assert batches.get(pk=running.pk).attempts >= 2
    key = sampling_key(study.sampling)
    pairs = {}
    for response in Response.objects.filter(sampling_key=key):
        pairs.setdefault((response.checkpoint_id, response.context_id), []).append(response)
    comparison = study.comparisons.get()
    expected = {
        (ck, ctx)
        for ck in (comparison.checkpoint_a_id, comparison.checkpoint_b_id)
        for ctx in study.contexts.values_list("pk", flat=True)
    }
    assert set(pairs) == expected
    assert all(len(rs) == 1 for rs in pairs.values())
    items = ComparisonItem.objects.filter(study=study)
    assert items.count() == 6
    left = items.filter(a_on_left=True).count()
    assert abs(left - (6 - left)) <= 1
