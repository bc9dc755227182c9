"""The allocator against a plain-Python reference model.

Seeded random sequences of next, submit and lease expiry run through `allocation` and through
`Model` below, which holds the rules in a few lines of Python: an item takes k distinct
annotators, judgments plus other annotators' live leases never exceed k, an annotator never
gets an item twice, a held lease comes back until it is judged, and a submit counts only on a
live lease. After every step both must agree on who may get what, and the database's cached
counters must equal a recount.
"""

import random
from collections import defaultdict
from datetime import timedelta

import pytest
from django.utils import timezone

from pairwise.models import ComparisonItem, Judgment, Study
from pairwise.services import allocation
from tests.factories import annotator, make_study

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("counters_agree")]

TTL = 60


class Model:
    """Who may get what: the allocator's rules without its SQL."""

    def __init__(self, items: list[int], k: int):
        self.items, self.k = items, k
        self.judged: dict[int, set[int]] = defaultdict(set)
        self.leases: dict[tuple[int, int], object] = {}  # (item, user) -> expiry

    def live(self, item: int, user: int, now) -> bool:
        expires = self.leases.get((item, user))
        return expires is not None and expires > now

    def held(self, user: int, now) -> set[int]:
        return {i for i in self.items if self.live(i, user, now) and user not in self.judged[i]}

    def eligible(self, user: int, now) -> set[int]:
        """Items `user` may be handed: not judged by them, with room for one more."""
        out = set()
        for i in self.items:
            if user in self.judged[i] or len(self.judged[i]) >= self.k:
                continue
            others = sum(
                1 for (it, u) in self.leases if it == i and u != user and self.live(it, u, now)
            )
            if len(self.judged[i]) + others < self.k:
                out.add(i)
        return out

    def lease(self, item: int, user: int, now) -> None:
        self.leases[item, user] = now + timedelta(seconds=TTL)

    def submit(self, item: int, user: int, now) -> str:
        """ "created", "again" (judged before: idempotent) or "expired" (no live lease)."""
        if user in self.judged[item]:
            return "again"
        if not self.live(item, user, now):
            self.leases.pop((item, user), None)
            return "expired"
        self.judged[item].add(user)
        del self.leases[item, user]
        return "created"


def _check_counters(study: Study, model: Model) -> None:
    for item in ComparisonItem.objects.filter(study=study):
        real = Judgment.objects.filter(item=item).count()
        assert item.judgment_count == real == len(model.judged[item.pk])
        assert real <= model.k
        annotators = list(Judgment.objects.filter(item=item).values_list("annotator_id", flat=True))
        assert len(annotators) == len(set(annotators))
    study.refresh_from_db()
    if study.open_items is not None:
        assert study.open_items == sum(1 for i in model.items if len(model.judged[i]) < model.k)


@pytest.mark.parametrize("seed", range(6))
def test_allocator_agrees_with_the_reference_model(seed):
    rng = random.Random(seed)
    k = rng.choice([1, 2, 3])
    study, _, _ = make_study(
        n_contexts=rng.randint(2, 5),
        systems=("CARE", "ESConv", "ExTES")[: rng.choice([2, 3])],
        k=k,
        exposure=Study.ExposureRule.NONE,
        lease_ttl_seconds=TTL,
    )
    users = [annotator(username=f"m{seed}-{i}") for i in range(rng.randint(2, 5))]
    ids = {i.public_id: i.pk for i in ComparisonItem.objects.filter(study=study)}
    model = Model(sorted(ids.values()), k)
    shown: dict[int, str] = {}  # user -> public id of the last item handed to them
    now = timezone.now()
    for _step in range(120):
        user = rng.choice(users)
        op = rng.choices(["next", "submit", "stale", "wait"], weights=[5, 5, 1, 1])[0]
        if op == "wait":  # time passes: leases may run out
            now += timedelta(seconds=rng.choice([1, TTL // 2, TTL + 1]))
            continue
        if op == "next":
            held, allowed = model.held(user.pk, now), model.eligible(user.pk, now)
            item = allocation.next_item(study, user, now=now)
            if held:
                assert item is not None and item.pk in held, "a held lease comes back"
            elif not allowed:
                assert item is None, "nothing may be handed out, yet the allocator did"
            else:
                assert item is not None, f"items {sorted(allowed)} were left for {user}"
                assert item.pk in allowed
                model.lease(item.pk, user.pk, now)
            if item is not None:
                shown[user.pk] = item.public_id
        else:
            # submit the last item shown, or (stale) any item of the study
            public_id = shown.get(user.pk) if op == "submit" else rng.choice(list(ids))
            if public_id is None:
                continue
            expected = model.submit(ids[public_id], user.pk, now)
            choices = {c: rng.choice(("left", "right", "tie")) for c in study.criteria}
            if expected == "expired":
                with pytest.raises(allocation.LeaseExpired):
                    allocation.submit(study, user, public_id, choices, now=now)
            else:
                _, created = allocation.submit(study, user, public_id, choices, now=now)
                assert created == (expected == "created")
        _check_counters(study, model)
        for u in users:
            done = sum(1 for i in model.items if u.pk in model.judged[i])
            assert allocation.progress(study, u).done == done


def test_the_model_is_not_vacuous():
    """The sequences above reach full items, expired submits and held leases."""
    model = Model([1, 2], k=1)
    now = timezone.now()
    model.lease(1, 10, now)
    assert model.held(10, now) == {1}
    assert model.eligible(11, now) == {2}  # item 1 is full with 10's live lease
    assert model.submit(1, 10, now + timedelta(seconds=TTL + 1)) == "expired"
    assert model.eligible(11, now + timedelta(seconds=TTL + 1)) == {1, 2}
    model.lease(2, 11, now)
    assert model.submit(2, 11, now) == "created"
    assert model.submit(2, 11, now) == "again"
    assert model.eligible(10, now) == {1}
