"""Handing out items to annotators, and taking their judgments.

Invariants (tested under concurrency on PostgreSQL):
- every non-gold item ends with exactly k judgments, by k distinct annotators;
- an annotator never judges, nor is handed, the same item twice;
- at any moment, judgments + live leases on an item never exceed k.

Every lease is created, and every judgment recorded, while holding the item's row lock
(`select_for_update`; SQLite serialises writers itself because transactions start IMMEDIATE),
so the capacity check and the insert cannot interleave with another annotator's.
The number of SQL queries does not depend on the size of the study.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Count, Exists, F, Func, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from pairwise.models import CHOICES, ComparisonItem, Judgment, Lease, Study

log = logging.getLogger(__name__)
CANDIDATES = 8  # rows considered per attempt; more than enough for skip_locked contention


class AllocationError(Exception):
    """Base for errors an annotator can meet; the message is shown to them as it is."""


class StudyNotOpen(AllocationError):
    pass


class ItemNotFound(AllocationError):
    pass


class LeaseExpired(AllocationError):
    pass


class InvalidJudgment(AllocationError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Progress:
    done: int
    total: int

    @property
    def finished(self) -> bool:
        return self.done >= self.total


def _live_lease_count(now):
    leases = (
        Lease.objects.filter(item=OuterRef("pk"), expires_at__gt=now)
        .values("item")
        .annotate(c=Count("pk"))
        .values("c")
    )
    return Coalesce(Subquery(leases, output_field=IntegerField()), Value(0))


def _candidates(study: Study, user, now, *, gold: bool) -> list[int]:
    qs = ComparisonItem.objects.filter(study=study, is_gold=gold).exclude(
        Exists(Judgment.objects.filter(item=OuterRef("pk"), annotator=user))
    )
    if not gold:
        qs = (
            qs.filter(judgment_count__lt=study.overlap_k)
            .annotate(live=_live_lease_count(now))
            .filter(judgment_count__lt=study.overlap_k - F("live"))
        )
    return list(
        qs.order_by("judgment_count", "order_key").values_list("pk", flat=True)[:CANDIDATES]
    )


_SHOWN = ("context", "response_a", "response_b")  # what the annotator is shown: one query


def _lock(pk: int) -> ComparisonItem | None:
    qs = ComparisonItem.objects.filter(pk=pk).select_related(*_SHOWN)
    if connection.features.has_select_for_update_skip_locked:
        # lock the item row only, not the context and responses joined in for display
        of = ("self",) if connection.features.has_select_for_update_of else ()
        qs = qs.select_for_update(skip_locked=True, of=of)
    return qs.first()


def _wants_gold(study: Study, user) -> bool:
    """Keep each annotator's share of gold items at the study's gold_share, deterministically."""
    if study.gold_share <= 0:
        return False
    done = Judgment.objects.filter(item__study=study, annotator=user).aggregate(
        all=Count("pk"), gold=Count("pk", filter=Q(item__is_gold=True))
    )
    return done["gold"] < round(study.gold_share * (done["all"] + 1))


def next_item(study: Study, user, *, now=None) -> ComparisonItem | None:
    """The item this annotator should judge next, leased to them; None when they are done.

    The item comes with its context and responses loaded, and `lease_expires_at` set."""
    if study.status != Study.Status.OPEN:
        raise StudyNotOpen(f"study {study.pk} is {study.status}, not open")
    now = now or timezone.now()
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            # A lease is not worth an fsync: one lost in a crash frees its capacity and the
            # annotator's submit is refused as expired. Judgments still commit durably
            # (only when this is the whole transaction, so a caller's writes are unaffected).
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        held = (
            Lease.objects.filter(annotator=user, item__study=study, expires_at__gt=now)
            .exclude(Exists(Judgment.objects.filter(item=OuterRef("item"), annotator=user)))
            .order_by("created_at")
            .values_list("item_id", "expires_at")
            .first()
        )
        if held is not None:
            item = ComparisonItem.objects.select_related(*_SHOWN).get(pk=held[0])
            item.lease_expires_at = held[1]
            return item
        if study.quota_per_annotator is not None:
            done = Judgment.objects.filter(item__study=study, annotator=user).count()
            if done >= study.quota_per_annotator:
                return None
        order = [True, False] if _wants_gold(study, user) else [False]
        for gold in order:
            for pk in _candidates(study, user, now, gold=gold):
                item = _try_lease(study, user, pk, now)
                if item is not None:
                    return item
    return None


def _try_lease(study: Study, user, pk: int, now) -> ComparisonItem | None:
    """Lease item `pk` to `user` if it is free and has room; call inside a transaction."""
    item = _lock(pk)
    if item is None:
        return None  # another annotator holds its lock right now
    if not item.is_gold:
        live = Lease.objects.filter(item=item, expires_at__gt=now).exclude(annotator=user).count()
        if item.judgment_count + live >= study.overlap_k:
            return None
    # One statement: insert, or renew this annotator's old (expired) lease on the item.
    lease = Lease(
        item=item, annotator=user, expires_at=now + timedelta(seconds=study.lease_ttl_seconds)
    )
    Lease.objects.bulk_create(
        [lease],
        update_conflicts=True,
        unique_fields=["item", "annotator"],
        update_fields=["expires_at", "created_at"],
    )
    item.lease_expires_at = lease.expires_at
    log.info("leased item %s to %s", item.public_id, user.username)
    return item


def take(study: Study, user, item: ComparisonItem, *, now=None) -> bool:
    """Lease a given item to `user` if the allocator's rules allow it (simulation, tools)."""
    if study.status != Study.Status.OPEN:
        raise StudyNotOpen(f"study {study.pk} is {study.status}, not open")
    with transaction.atomic():
        if Judgment.objects.filter(item=item, annotator=user).exists():
            return False
        return _try_lease(study, user, item.pk, now or timezone.now()) is not None


def check_judgment(
    study: Study, choices: dict, *, cannot_judge: bool, reason: str
) -> dict[str, str]:
    """Validate a submission; raise InvalidJudgment naming the field that is wrong."""
    if cannot_judge:
        if not (reason or "").strip():
            raise InvalidJudgment("cannot_judge_reason", "give a reason when you cannot judge")
        return {}
    if not isinstance(choices, dict):
        raise InvalidJudgment("choices", "expected an object of criterion -> left|right|tie")
    unknown = sorted(set(choices) - set(study.criteria))
    if unknown:
        raise InvalidJudgment("choices", f"unknown criteria {unknown}; expected {study.criteria}")
    for criterion in study.criteria:
        value = choices.get(criterion)
        if value not in CHOICES:
            raise InvalidJudgment(
                f"choices.{criterion}", f"got {value!r}; expected one of {list(CHOICES)}"
            )
    return {c: choices[c] for c in study.criteria}


def submit(
    study: Study,
    user,
    public_id: str,
    choices: dict,
    *,
    comment: str = "",
    seconds: float | None = None,
    cannot_judge: bool = False,
    cannot_judge_reason: str = "",
    simulated: bool = False,
    now=None,
) -> tuple[Judgment, bool]:
    """Record a judgment. Idempotent: a second submit returns the first judgment, created=False.

    `seconds` defaults to the time since the item was leased, measured on the server."""
    clean = check_judgment(study, choices, cannot_judge=cannot_judge, reason=cannot_judge_reason)
    now = now or timezone.now()
    expired = False
    with transaction.atomic():
        qs = ComparisonItem.objects.filter(study=study, public_id=public_id)
        if connection.features.has_select_for_update:
            qs = qs.select_for_update()
        item = qs.first()
        if item is None:
            raise ItemNotFound(f"no item {public_id!r} in this study")
        existing = Judgment.objects.filter(item=item, annotator=user).first()
        if existing is not None:
            return existing, False
        lease = Lease.objects.filter(item=item, annotator=user).first()
        if lease is None or lease.expires_at <= now:
            Lease.objects.filter(item=item, annotator=user).delete()
            expired = True
        else:
            judgment = Judgment.objects.create(
                item=item,
                annotator=user,
                choices=clean,
                cannot_judge=cannot_judge,
                cannot_judge_reason=cannot_judge_reason.strip() if cannot_judge else "",
                comment=(comment or "").strip(),
                seconds=max(
                    0.0,
                    (now - lease.created_at).total_seconds() if seconds is None else seconds,
                ),
                simulated=simulated,
            )
            ComparisonItem.objects.filter(pk=item.pk).update(judgment_count=F("judgment_count") + 1)
            lease.delete()
    if expired:
        raise LeaseExpired(
            "Your time on this item ran out and it was handed back; your answer was not saved. "
            "Here is your next item."
        )
    log.info("judgment on item %s by %s", public_id, user.username)
    return judgment, True


def _count(qs) -> Subquery:
    """COUNT(*) of `qs` as a scalar subquery (no GROUP BY)."""
    counted = qs.order_by().annotate(n=Func(Value(1), function="COUNT")).values("n")
    return Subquery(counted, output_field=IntegerField())


def progress(study: Study, user) -> Progress:
    """How many items this annotator has judged, out of how many they can be given in all."""
    # One query, and no anti-join over the study's items: open items not judged by this
    # annotator = all open items - the open items this annotator judged.
    mine = Judgment.objects.filter(item__study=study, annotator=user)
    open_q = Q(is_gold=False, judgment_count__lt=study.overlap_k)
    judged, open_all, open_mine = (
        Study.objects.filter(pk=study.pk)
        .annotate(
            judged=_count(mine),
            open_all=_count(ComparisonItem.objects.filter(open_q, study=study)),
            open_mine=_count(
                mine.filter(item__is_gold=False, item__judgment_count__lt=study.overlap_k)
            ),
        )
        .values_list("judged", "open_all", "open_mine")
        .get()
    )
    total = judged + open_all - open_mine
    if study.quota_per_annotator is not None:
        total = min(total, study.quota_per_annotator)
    return Progress(done=judged, total=max(total, judged))


def reclaim_expired(now=None) -> int:
    """Delete expired leases (allocation already ignores them; this keeps the table small)."""
    deleted, _ = Lease.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
