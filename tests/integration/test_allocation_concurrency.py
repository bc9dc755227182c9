"""30 annotators at once on PostgreSQL: the allocator's invariants hold under real contention.

Each annotator is a thread with its own database connection, looping next item -> submit.
A monitor thread checks, in single-snapshot queries while they run, that no item ever has
more judgments plus live leases than k.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone

from pairwise.models import ComparisonItem, Judgment, Lease, Study
from pairwise.services import allocation
from tests.factories import annotator, make_study

pytestmark = pytest.mark.integration

K = 3
N_ANNOTATORS = 30
SYSTEMS = ("CARE", "ESConv", "MISC", "Plain")  # 3 comparisons
N_CONTEXTS = 14  # 42 items, 126 judgments
DEADLINE = 90.0

OVERFULL_SQL = """
    WITH now AS (SELECT clock_timestamp() AS t)
    SELECT i.id,
           (SELECT count(*) FROM pairwise_judgment j WHERE j.item_id = i.id)
         + (SELECT count(*) FROM pairwise_lease l, now
            WHERE l.item_id = i.id AND l.expires_at > now.t) AS taken
    FROM pairwise_comparisonitem i
    WHERE i.study_id = %s AND NOT i.is_gold
"""


def _choices(study: Study, rng: random.Random) -> dict[str, str]:
    return {c: rng.choice(("left", "right", "tie")) for c in study.criteria}


def _finished(study: Study) -> bool:
    open_items = ComparisonItem.objects.filter(study=study, judgment_count__lt=study.overlap_k)
    return not open_items.exists()


class Run:
    """Shared state of one concurrent run: errors and events from every thread."""

    def __init__(self, study: Study):
        self.study_pk = study.pk
        self.errors: list[str] = []
        self.events: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.overfull: list[tuple[int, int]] = []

    def note(self, event: str) -> None:
        with self.lock:
            self.events[event] += 1

    def thread(self, target, *args) -> threading.Thread:
        def body():
            try:
                target(*args)
            except Exception as exc:  # reported by the test, with the thread's name
                with self.lock:
                    self.errors.append(f"{threading.current_thread().name}: {exc!r}")
            finally:
                connections.close_all()  # this thread's own connection

        return threading.Thread(target=body, name=f"{target.__name__}{args[-1:]}")

    def annotate(self, user_pk: int, behaviour: str, seed: int) -> None:
        """Loop next -> submit until the study has nothing left for this annotator.

        "quit": take one item and walk away (its lease must expire and be reclaimed).
        "slow": sit on the first item past the lease time; the late submit must be refused.
        """
        rng = random.Random(seed)
        study = Study.objects.get(pk=self.study_pk)
        user = get_user_model().objects.get(pk=user_pk)
        deadline = time.monotonic() + DEADLINE
        first = True
        while time.monotonic() < deadline:
            item = allocation.next_item(study, user)
            if item is None:
                if _finished(study):
                    return
                time.sleep(0.2)  # items are leased to others; they may come back
                continue
            self.note("leased")
            if first and behaviour == "quit":
                return
            if first and behaviour == "slow":
                time.sleep(study.lease_ttl_seconds + 0.3)
                try:
                    allocation.submit(study, user, item.public_id, _choices(study, rng))
                except allocation.LeaseExpired:
                    self.note("late submit refused")
                else:
                    raise AssertionError("a submit after the lease ran out was accepted")
                first = False
                continue
            first = False
            try:
                _, created = allocation.submit(study, user, item.public_id, _choices(study, rng))
            except allocation.LeaseExpired:
                self.note("lease ran out under load")
                continue
            assert created, f"item {item.public_id} was handed out after it was judged"
            self.note("judged")
        raise AssertionError(f"annotator {user.username} still busy after {DEADLINE:.0f}s")

    def monitor(self, _tag: int) -> None:
        with connection.cursor() as cursor:
            while not self.stop.is_set():
                cursor.execute(OVERFULL_SQL, [self.study_pk])
                bad = [(pk, n) for pk, n in cursor.fetchall() if n > K]
                if bad:
                    with self.lock:
                        self.overfull.extend(bad)
                time.sleep(0.02)


def _run(study: Study, behaviours: list[str]) -> Run:
    users = [annotator(username=f"conc{i}") for i in range(len(behaviours))]
    run = Run(study)
    monitor = run.thread(run.monitor, 0)
    threads = [
        run.thread(run.annotate, user.pk, behaviour, i)
        for i, (user, behaviour) in enumerate(zip(users, behaviours, strict=True))
    ]
    monitor.start()
    # Quitters first, and alone until they have walked off with their item: started among the
    # others, a quitter that the scheduler starves may find the study finished (or all its
    # capacity leased) before it ever takes an item, and then abandons nothing.
    quitters = [t for t, b in zip(threads, behaviours, strict=True) if b == "quit"]
    for t in quitters:
        t.start()
    for t in quitters:
        t.join(DEADLINE)
    for t in threads:
        if t not in quitters:
            t.start()
    for t in threads:
        t.join(DEADLINE + 30)
    run.stop.set()
    monitor.join(10)
    assert not any(t.is_alive() for t in threads), "an annotator thread hung"
    assert run.errors == []
    assert run.overfull == [], "an item had more judgments + live leases than k"
    return run


def _assert_invariants(study: Study) -> None:
    items = ComparisonItem.objects.filter(study=study)
    assert items.count() == N_CONTEXTS * (len(SYSTEMS) - 1)
    judgments = Judgment.objects.filter(item__study=study)
    per_item = Counter(judgments.values_list("item_id", flat=True))
    distinct = {
        pk: len(set(judgments.filter(item_id=pk).values_list("annotator_id", flat=True)))
        for pk in items.values_list("pk", flat=True)
    }
    for item in items:
        assert per_item[item.pk] == K, f"item {item.pk}: {per_item[item.pk]} judgments"
        assert distinct[item.pk] == K, f"item {item.pk}: {distinct[item.pk]} annotators"
        assert item.judgment_count == per_item[item.pk]
    # the open-item count the allocator keeps for progress survived the concurrent submits
    kept = Study.objects.get(pk=study.pk).open_items
    assert kept == items.filter(judgment_count__lt=K).count()
    pairs = Counter(judgments.values_list("item_id", "annotator_id"))
    assert max(pairs.values()) == 1, "an annotator judged an item twice"
    assert not Lease.objects.filter(item__study=study, expires_at__gt=timezone.now()).exists()
    for comparison in study.comparisons.all():
        left = items.filter(comparison=comparison, a_on_left=True).count()
        right = items.filter(comparison=comparison, a_on_left=False).count()
        assert abs(left - right) <= 1, f"{comparison}: {left} left, {right} right"
    # ... and the database itself refuses a second judgment by the same annotator
    some = judgments.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        Judgment.objects.create(item=some.item, annotator=some.annotator, choices=some.choices)


def test_thirty_annotators_at_once(transactional_db):
    study, _, _ = make_study(n_contexts=N_CONTEXTS, systems=SYSTEMS, k=K)

    run = _run(study, ["normal"] * N_ANNOTATORS)

    _assert_invariants(study)
    assert run.events["judged"] == N_CONTEXTS * (len(SYSTEMS) - 1) * K


def test_abandoned_and_late_items_are_reclaimed_under_concurrency(transactional_db):
    study, _, _ = make_study(n_contexts=N_CONTEXTS, systems=SYSTEMS, k=K, lease_ttl_seconds=2)
    behaviours = ["quit"] * 5 + ["slow"] * 5 + ["normal"] * (N_ANNOTATORS - 10)

    run = _run(study, behaviours)

    _assert_invariants(study)
    assert run.events["late submit refused"] == 5
    quitters = get_user_model().objects.filter(username__in=[f"conc{i}" for i in range(5)])
    assert not Judgment.objects.filter(annotator__in=quitters).exists()
    # the quitters' items were leased to them, expired, and still got all k judgments
    assert Lease.objects.filter(annotator__in=quitters).count() == 5
    assert run.events["leased"] >= 5 + run.events["judged"]


def test_one_annotator_holds_one_live_lease_under_parallel_next_calls(transactional_db):
    """Ten next-item calls at once from one annotator (double clicks, several tabs): one lease,
    and every call answers with its item. Without the per-annotator serialisation each call
    read 'no lease held' before the others committed and took an item of its own."""
    study, _, _ = make_study(n_contexts=20, systems=SYSTEMS, k=K)
    user = annotator(username="many-tabs")
    # the open-item count is known (counting it locks the study row, which would serialise
    # the calls and hide the race)
    allocation.progress(study, user)
    barrier = threading.Barrier(10)
    got: list[int] = []
    run = Run(study)

    def call(i: int) -> None:
        s = Study.objects.get(pk=study.pk)
        u = get_user_model().objects.get(pk=user.pk)
        barrier.wait(timeout=30)
        item = allocation.next_item(s, u)
        with run.lock:
            got.append(item.pk)

    threads = [run.thread(call, i) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not run.errors, run.errors
    live = Lease.objects.filter(annotator=user, expires_at__gt=timezone.now())
    assert live.count() == 1
    assert got == [live.get().item_id] * 10
