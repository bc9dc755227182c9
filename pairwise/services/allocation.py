"""Handing out items to annotators, and taking their judgments.

Invariants (tested under concurrency on PostgreSQL):
- every non-gold item ends with exactly k judgments, by k distinct annotators;
- an annotator never judges, nor is handed, the same item twice;
- at any moment, judgments + live leases on an item never exceed k;
- an annotator holds at most one live lease per study, also under parallel calls (PostgreSQL:
  an advisory lock per annotator and study, taken by the state query);
- an annotator is not shown a reply they have seen in another item (same row or identical
  text; or, by the study's `exposure` rule, the same dialogue) while another item is left for
  them; when none is, completeness wins: the repeat is allowed and recorded (Exposure.prior,
  copied to the judgment);
- each annotator sees A on the left about half the time: while their A-left and A-right counts
  differ, the item comes from the side that evens them, when the fewest-judgments tier open to
  them has one (so over a session |A left - A right| <= 1 but for items the tier lacked);
- gold items come at random positions: each next item is gold with probability gold_share;
- repeats (services/repeats.py: a judged item shown again, blind, for intra-annotator
  agreement) come through `assign` and `submit` but are never judgments.

Every lease is created, and every judgment recorded, while holding the item's row lock
(`select_for_update`; SQLite serialises writers itself because transactions start IMMEDIATE),
so the capacity check and the insert cannot interleave with another annotator's.
The number of SQL queries does not depend on the size of the study.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from pairwise.models import ComparisonItem, Judgment, Lease, Study
from pairwise.outcomes import CHOICES
from pairwise.services import counters, repeats, sql
from pairwise.services.errors import ServiceError

log = logging.getLogger(__name__)
CANDIDATES = 8  # rows considered per attempt; more than enough for skip_locked contention


class AllocationError(ServiceError):
    """Base for errors an annotator can meet; the message is shown to them as it is. Raised
    with the message alone; the class names the field (`field`, None: the request as a whole)."""

    field: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(type(self).field, message)
        self.args = (message,)  # as raised: the error pickles


class StudyNotOpen(AllocationError):
    pass


class ItemNotFound(AllocationError):
    field = "item"


class LeaseExpired(AllocationError):
    pass


LEASE_EXPIRED = (
    "Your time on this item ran out and it was handed back; your answer was not saved. "
    "Here is your next item."
)


class InvalidJudgment(AllocationError):
    def __init__(self, field: str, message: str) -> None:
        ServiceError.__init__(self, field, message)


@dataclass(frozen=True)
class Progress:
    done: int
    total: int

    @property
    def finished(self) -> bool:
        return self.done >= self.total


# --- running the statements of services/sql.py -------------------------------------------------
# The hot path (next item, submit, progress) runs hand-written statements, portable between
# PostgreSQL and SQLite; sql.py says why each one is SQL, docs/allocation.md how they fit.


def _params(study: Study, user, now=None, **more) -> dict:
    """The named parameters every allocator statement draws from."""
    params = {"study": study.pk, "user": user.pk, "k": study.overlap_k, **more}
    if now is not None:
        params["now"] = sql.at(now)
    return params


def _claim(
    study: Study,
    user,
    now,
    *,
    gold: bool,
    tried: list[int],
    unseen: bool,
    side: bool | None = None,
) -> ComparisonItem | None:
    """The best item for `user` that no one else is claiming right now, locked (PostgreSQL:
    the item row only, skipping locked ones; SQLite needs no lock: its transactions start
    IMMEDIATE and so run one at a time), with what the annotator is shown: one query
    (`sql.claim`). Its capacity is checked again by `_lease`.

    Best: fewest judgments, then the study's secret random order. `unseen` keeps out items
    that repeat what the annotator has seen; without it, a repeat is taken only when no one
    else at work could take the item fresh.

    With `side` (True: A on the left) the item comes from that side when it has one for them
    (the walk of the study's index skips the other side's items: about one row in two); only
    when it has none, a second statement reads the other side's. Taking the preferred side's
    best over a lower tier of the other side gave the same fill as keeping to the lowest tier,
    and balanced annotators better at the end of a study (|A left - A right| up to 2 instead
    of 4 in the 3-baseline design)."""
    since = now - timedelta(seconds=study.lease_ttl_seconds)
    params = _params(study, user, now, gold=gold, since=sql.at(since))
    params.update((f"tried_{n}", pk) for n, pk in enumerate(tried))
    statement = sql.claim(
        connection.vendor,
        study.exposure,
        gold=gold,
        unseen=unseen,
        side=side is not None,
        tried=len(tried),
    )
    if side is None:
        rows = sql.fetch(statement, params)
    else:
        rows = sql.fetch(statement, {**params, "side": side}) or sql.fetch(
            statement, {**params, "side": not side}
        )
    return sql.shown_item(rows[0]) if rows else None


def _held_lease(study: Study, user, now) -> ComparisonItem | None:
    """The item of the live lease `user` holds in `study`, if any, as a reload shows it."""
    ((item_id, expires),) = sql.fetch(sql.held_lease(connection.vendor), _params(study, user, now))
    return None if item_id is None else _reloaded(item_id, expires)


def _reloaded(item_id: int, expires) -> ComparisonItem:
    """The item of a lease the annotator holds, shown again with the lease's own expiry."""
    (row,) = sql.fetch(sql.shown_by_id(connection.vendor), {"item": item_id})
    item = sql.shown_item(row)
    item.lease_expires_at = sql.db_time(expires)
    return item


def _lease(study: Study, user, item: ComparisonItem, now) -> bool:
    """Lease the locked `item` to `user` if it still has room and they hold no other live
    lease in the study, and record that it is shown to them (Exposure): one statement on
    PostgreSQL, two on SQLite (`sql.lease`, `sql.exposure_insert`)."""
    expires = now + timedelta(seconds=study.lease_ttl_seconds)
    params = _params(
        study,
        user,
        now,
        item=item.pk,
        expires=sql.at(expires),
        count=item.judgment_count,
        context=item.context_id,
        key_a=item.key_a,
        key_b=item.key_b,
        a_on_left=None if item.is_gold else item.a_on_left,
    )
    leased = sql.fetch(sql.lease(connection.vendor, gold=item.is_gold), params)
    if leased and connection.vendor != "postgresql":  # PostgreSQL: in the lease's statement
        sql.fetch(sql.exposure_insert(connection.vendor), params)
    if leased:
        item.lease_expires_at = expires
        log.info("leased item %s to %s", item.public_id, user.username)
    return bool(leased)


def _state(study: Study, user, now=None, *, lazy_commit: bool = False) -> dict:
    """Everything allocation needs to know about `user` in `study`, in one query
    (`sql.state`): how many items they judged, how many open items there are and how many of
    those they judged (for progress), and, when `now` is given, the item they hold a live
    lease on, their side balance (A-left minus A-right over the items shown to them) and
    their next repeat; on PostgreSQL it also takes their advisory lock (`_lock_key`) and, with
    `lazy_commit`, sets the transaction's commit lazy (`sql.LAZY_COMMIT`)."""
    statement, names = sql.state(
        connection.vendor,
        assigning=now is not None,
        repeats=study.repeat_share > 0,
        lazy_commit=lazy_commit,
    )
    lock_study, lock_user = _lock_key(study, user)
    params = _params(study, user, now, lock_study=lock_study, lock_user=lock_user)
    (row,) = sql.fetch(statement, params)
    state = dict(zip(names, row, strict=True))
    if state["open_all"] is None:
        state["open_all"] = counters.count_open_items(study)
    return state


def _lock_key(study: Study, user) -> list[int]:
    """The two 32-bit keys of the annotator's advisory lock in a study (a collision only makes
    two annotators wait for each other's next item)."""
    return [study.pk % 2**31, user.pk % 2**31]


def _progress(study: Study, state: dict) -> Progress:
    judged = state["judged"]
    total = judged + state["open_all"] - state["open_mine"]
    if study.quota_per_annotator is not None:
        total = min(total, study.quota_per_annotator)
    done_repeats = state.get("repeats_done") or 0  # answered repeats count as items shown
    return Progress(done=judged + done_repeats, total=max(total, judged) + done_repeats)


def _wants_gold(study: Study, user, state: dict) -> bool:
    """Whether the annotator's next item is gold: with probability gold_share, drawn from the
    study's secret seed, the annotator and the position, so positions follow no pattern and
    a reload or an expired lease gives the same draw."""
    if study.gold_share <= 0:
        return False
    draw = random.Random(f"{study.seed}:gold-draw:{user.pk}:{state['judged']}").random()
    return draw < study.gold_share


class Assignment(NamedTuple):
    item: ComparisonItem | None  # None: nothing is left for this annotator
    progress: Progress


def assign(study: Study, user, *, now=None) -> Assignment:
    """The item this annotator should judge next, leased to them, with their progress.

    The item comes with its context and responses loaded, and `lease_expires_at` set.
    Queries: the annotator's state (progress, quota, held lease, side balance), then per
    attempt one claim and one lease statement that also records the exposure (SQLite: a
    statement of its own); the first attempt almost always succeeds."""
    if study.status != Study.Status.OPEN:
        raise StudyNotOpen(f"study {study.pk} is {study.status}, not open")
    now = now or timezone.now()
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        # a lease is not worth an fsync; a caller's writes are left durable
        state = _state(study, user, now, lazy_commit=outermost)
        progress = _progress(study, state)
        if state["held_item"] is not None:  # a reload: the same item again
            return Assignment(_reloaded(state["held_item"], state["held_expires"]), progress)
        # a repeat that is due (or held) comes first; pending ones before "done" and at the quota
        if repeat := repeats.assign_repeat(study, user, state, progress, now, due_only=True):
            return repeat
        if study.quota_per_annotator is not None and state["judged"] >= study.quota_per_annotator:
            return repeats.assign_repeat(study, user, state, progress, now, due_only=False) or (
                Assignment(None, progress)
            )
        side = None if not state["balance"] else state["balance"] < 0
        # gold if drawn (never a repeat); else an item repeating nothing they saw, else, when
        # the study has a rule and nothing else is left, a repeat: completeness wins
        plans = [(True, True)] if _wants_gold(study, user, state) else []
        plans += [(False, True)]
        if study.exposure != Study.ExposureRule.NONE:
            plans += [(False, False)]
        for gold, unseen in plans:
            tried: list[int] = []
            while len(tried) < CANDIDATES:
                item = _claim(
                    study,
                    user,
                    now,
                    gold=gold,
                    tried=tried,
                    unseen=unseen,
                    side=None if gold else side,
                )
                if item is None:
                    break
                if _lease(study, user, item, now):
                    return Assignment(item, progress)
                held = _held_lease(study, user, now) if "_serial" in state else None
                if held is not None:  # a parallel call leased one meanwhile: the same item
                    return Assignment(held, progress)
                tried.append(item.pk)  # filled up since the claim's snapshot: next one
        if repeat := repeats.assign_repeat(study, user, state, progress, now, due_only=False):
            return repeat
    return Assignment(None, progress)


def next_item(study: Study, user, *, now=None) -> ComparisonItem | None:
    """The item this annotator should judge next, leased to them; None when they are done."""
    return assign(study, user, now=now).item


def take(study: Study, user, item: ComparisonItem, *, now=None) -> bool:
    """Lease a given item to `user` if the allocator's rules allow it (simulation, tools)."""
    if study.status != Study.Status.OPEN:
        raise StudyNotOpen(f"study {study.pk} is {study.status}, not open")
    with transaction.atomic():
        if Judgment.objects.filter(item=item, annotator=user).exists():
            return False
        locked = ComparisonItem.objects.filter(pk=item.pk)
        if connection.features.has_select_for_update_skip_locked:
            locked = locked.select_for_update(skip_locked=True)
        locked = locked.first()
        if locked is None:
            return False  # another annotator holds its lock right now
        return _lease(study, user, locked, now or timezone.now())


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


def check_client_seconds(study: Study, value) -> float | None:
    """A duration the client reports: kept beside the server's, never instead of it.
    Must be a finite number of seconds, 0 < seconds <= the study's lease time."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InvalidJudgment("seconds", f"expected a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or not 0 < seconds <= study.lease_ttl_seconds:
        raise InvalidJudgment(
            "seconds",
            f"got {value!r}; expected 0 < seconds <= {study.lease_ttl_seconds} (the lease time)",
        )
    return seconds


def submit(
    study: Study,
    user,
    public_id: str,
    choices: dict,
    *,
    comment: str = "",
    client_seconds: float | None = None,
    cannot_judge: bool = False,
    cannot_judge_reason: str = "",
    simulated: bool = False,
    simulated_seconds: float | None = None,
    now=None,
) -> tuple[Judgment | repeats.Repeat, bool]:
    """Record a judgment. Idempotent: a second submit returns the first judgment, created=False.
    An id that is one of the annotator's repeats records the repeat's answer instead.

    `seconds` is always the time since the item was leased, measured on the server: quality
    flags use it alone. What the client reports is checked (`check_client_seconds`) and kept
    apart as `client_seconds`. Only a simulation (`simulated=True`) states its own duration."""
    clean = check_judgment(study, choices, cannot_judge=cannot_judge, reason=cannot_judge_reason)
    reported = check_client_seconds(study, client_seconds)
    if simulated_seconds is not None and not simulated:
        raise ValueError("simulated_seconds: only simulated judgments state their own duration")
    now = now or timezone.now()
    expired = False
    with transaction.atomic():
        # the item, locked, with this annotator's judgment, lease and exposure: one query
        params = {"study": study.pk, "user": user.pk, "public_id": public_id}
        rows = sql.fetch(sql.submitted_item(connection.vendor), params)
        if not rows:  # no item: one of the annotator's repeats, or nothing (services/repeats.py)
            return repeats.submit(
                study,
                user,
                public_id,
                clean,
                comment=comment,
                client_seconds=reported,
                cannot_judge=cannot_judge,
                cannot_judge_reason=cannot_judge_reason,
                now=now,
            )
        item_id, is_gold, judgment_count, judged, lease_expires, leased_at, prior = rows[0]
        if judged is not None:
            return Judgment.objects.get(pk=judged), False
        drop_lease = (sql.drop_lease(connection.vendor), {"item": item_id, "user": user.pk})
        if lease_expires is None or sql.db_time(lease_expires) <= now:
            if lease_expires is not None:
                sql.fetch(*drop_lease)
            expired = True
        else:
            measured = max(0.0, (now - sql.db_time(leased_at)).total_seconds())
            judgment = Judgment.objects.create(
                item_id=item_id,
                study_id=study.pk,
                annotator=user,
                choices=clean,
                cannot_judge=cannot_judge,
                cannot_judge_reason=cannot_judge_reason.strip() if cannot_judge else "",
                comment=(comment or "").strip(),
                seconds=measured if simulated_seconds is None else simulated_seconds,
                client_seconds=reported,
                prior_exposures=prior or 0,
                simulated=simulated,
                # the versions it was made under, from the study row already loaded
                guideline_sha256=study.guideline_sha256,
                criteria_versions=study.criteria_versions,
            )
            if study.repeat_share > 0:
                repeats.schedule(study, user, judgment, is_gold=is_gold)
            counters.judgment_added(
                study, item_id, count_before=judgment_count, is_gold=bool(is_gold)
            )
            sql.fetch(*drop_lease)
    if expired:
        raise LeaseExpired(LEASE_EXPIRED)
    log.info("judgment on item %s by %s", public_id, user.username)
    return judgment, True


def progress(study: Study, user) -> Progress:
    """How many items this annotator has judged, out of how many they can be given in all."""
    return _progress(study, _state(study, user))


def reclaim_expired(now=None) -> int:
    """Delete expired leases (allocation already ignores them; this keeps the table small)."""
    deleted, _ = Lease.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
