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
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from pairwise.models import (
    ComparisonItem,
    EvalContext,
    Exposure,
    Judgment,
    Lease,
    Response,
    Study,
)
from pairwise.outcomes import CHOICES
from pairwise.services import counters, repeats

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


LEASE_EXPIRED = (
    "Your time on this item ran out and it was handed back; your answer was not saved. "
    "Here is your next item."
)


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


# --- SQL ------------------------------------------------------------------------------------
# The hot path (next item, submit, progress) is written in SQL, portable between PostgreSQL and
# SQLite: building and compiling the equivalent ORM querysets (nested subqueries) cost 5-10 ms
# of CPU per request, several times the work the database does for them.


class _Tables:
    """Quoted table names, read from the models once."""

    def __getattr__(self, name):
        model = {
            "item": ComparisonItem,
            "judgment": Judgment,
            "lease": Lease,
            "context": EvalContext,
            "response": Response,
            "study": Study,
            "exposure": Exposure,
        }[name]
        quoted = connection.ops.quote_name(model._meta.db_table)
        setattr(self, name, quoted)
        return quoted


T = _Tables()


def _sql(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def _db_time(value) -> datetime:
    """A datetime as the database returned it (SQLite: text in UTC) as an aware datetime."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


_ITEM_FIELDS = (
    "id",
    "public_id",
    "study_id",
    "comparison_id",
    "context_id",
    "response_a_id",
    "response_b_id",
    "a_on_left",
    "is_gold",
    "judgment_count",
    "key_a",
    "key_b",
)


def _shown_columns() -> str:
    """The item's columns, then what the annotator is shown: history, texts of A and B."""
    return ", ".join([f"i.{f}" for f in _ITEM_FIELDS] + ["c.history", "ra.text", "rb.text"])


def _shown_joins() -> str:
    return (
        f"JOIN {T.context} c ON c.id = i.context_id "
        f"JOIN {T.response} ra ON ra.id = i.response_a_id "
        f"JOIN {T.response} rb ON rb.id = i.response_b_id"
    )


def _item_from_row(row) -> ComparisonItem:
    """A ComparisonItem (other fields deferred) with its context and responses attached."""
    values = list(row[: len(_ITEM_FIELDS)])
    values[7], values[8] = bool(values[7]), bool(values[8])  # SQLite gives 0/1
    item = ComparisonItem.from_db(connection.alias, _ITEM_FIELDS, values)
    history, text_a, text_b = row[len(_ITEM_FIELDS) :]
    history = EvalContext._meta.get_field("history").from_db_value(history, None, connection)
    db = connection.alias
    item.context = EvalContext.from_db(db, ("id", "history"), (item.context_id, history))
    item.response_a = Response.from_db(db, ("id", "text"), (item.response_a_id, text_a))
    item.response_b = Response.from_db(db, ("id", "text"), (item.response_b_id, text_b))
    return item


def _conflict(study: Study, who: str, who_params: list, item: str) -> tuple[str, list]:
    """SQL true when annotator `who` (a column, or %s with `who_params`) has seen, in another
    item, something that `item` shows, by the study's rule: a reply (by text key: the same row
    or an identical text) or a dialogue. Each test is an index probe into Exposure, so its cost
    does not grow with the annotator's history."""
    seen = (
        f"EXISTS (SELECT 1 FROM {T.exposure} e WHERE e.annotator_id = {who} "
        f"AND e.study_id = %s AND e.item_id <> {item}.id AND {{}})"
    )
    params = [*who_params, study.pk]
    if study.exposure == Study.ExposureRule.CONTEXT:
        return seen.format(f"e.context_id = {item}.context_id"), params
    keys = f"({item}.key_a, {item}.key_b)"
    sql = f"({seen.format(f'e.key_a IN {keys}')} OR {seen.format(f'e.key_b IN {keys}')})"
    return sql, params + params


def _repeat_filter(study: Study, user, now) -> tuple[str, list]:
    """SQL letting `user` take an item that repeats what they saw only when no one else at work
    on the study (shown an item within the lease time) could take it without a repeat: with a
    sufficient pool, the last items wait for the annotator who can see them fresh."""
    at = connection.ops.adapt_datetimefield_value
    others = (
        f"SELECT DISTINCT a.annotator_id AS who FROM {T.exposure} a WHERE a.study_id = %s "
        "AND a.annotator_id <> %s AND a.created_at > %s"
    )
    conflict, conflict_params = _conflict(study, "active.who", [], "i")
    fresh = (
        f"(SELECT COUNT(*) FROM ({others}) active WHERE NOT {conflict} "
        f"AND NOT EXISTS (SELECT 1 FROM {T.judgment} oj WHERE oj.item_id = i.id "
        "AND oj.annotator_id = active.who) "
        f"AND NOT EXISTS (SELECT 1 FROM {T.lease} ol WHERE ol.item_id = i.id "
        "AND ol.annotator_id = active.who))"
    )
    live = f"(SELECT COUNT(*) FROM {T.lease} rl WHERE rl.item_id = i.id AND rl.expires_at > %s)"
    since = now - timedelta(seconds=study.lease_ttl_seconds)
    return (
        f"{fresh} < %s - i.judgment_count - {live}",
        [study.pk, user.pk, at(since), *conflict_params, study.overlap_k, at(now)],
    )


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
    IMMEDIATE and so run one at a time), with what the annotator is shown: one query.
    Its capacity is checked again by `_lease`.

    Best: fewest judgments, then the study's secret random order. `unseen` keeps out items
    that repeat what the annotator has seen (`_conflict`); without it, a repeat is taken only
    when no one else at work could take the item fresh (`_repeat_filter`).

    With `side` (True: A on the left) the item comes from that side when it has one for them
    (the walk of the study's index skips the other side's items: about one row in two); only
    when it has none, a second statement reads the other side's. Taking the preferred side's
    best over a lower tier of the other side gave the same fill as keeping to the lowest tier,
    and balanced annotators better at the end of a study (|A left - A right| up to 2 instead
    of 4 in the 3-baseline design)."""
    at = connection.ops.adapt_datetimefield_value
    where = [
        "i.study_id = %s",
        "i.is_gold = %s",
        f"NOT EXISTS (SELECT 1 FROM {T.judgment} j WHERE j.item_id = i.id AND j.annotator_id = %s)",
    ]
    params: list = [study.pk, gold, user.pk]
    if not gold:
        where += [
            "i.judgment_count < %s",
            f"i.judgment_count + (SELECT COUNT(*) FROM {T.lease} l WHERE l.item_id = i.id"
            " AND l.expires_at > %s) < %s",
        ]
        params += [study.overlap_k, at(now), study.overlap_k]
    if study.exposure != Study.ExposureRule.NONE:
        if unseen:
            conflict, conflict_params = _conflict(study, "%s", [user.pk], "i")
            where.append(f"NOT {conflict}")
            params += conflict_params
        elif not gold:
            sql, repeat_params = _repeat_filter(study, user, now)
            where.append(sql)
            params += repeat_params
    if tried:
        where.append(f"i.id NOT IN ({', '.join(['%s'] * len(tried))})")
        params += tried
    lock = ""
    if connection.features.has_select_for_update_skip_locked:
        lock = " FOR UPDATE OF i SKIP LOCKED"

    def best(extra: str = "") -> str:
        return (
            f"SELECT {_shown_columns()} FROM {T.item} i {_shown_joins()} "
            f"WHERE {' AND '.join(where)}{extra} ORDER BY i.judgment_count, i.order_key "
            f"LIMIT 1{lock}"
        )

    if side is None:
        rows = _sql(best(), params)
    else:
        on_side = best(" AND i.a_on_left = %s")
        rows = _sql(on_side, [*params, side]) or _sql(on_side, [*params, not side])
    return _item_from_row(rows[0]) if rows else None


def _held(study: Study, user, now, column: str) -> tuple[str, list]:
    """SQL for `column` of the oldest live lease `user` holds in `study` on an item they have
    not judged (NULL when none), with its parameters."""
    at = connection.ops.adapt_datetimefield_value
    return (
        f"(SELECT {column} FROM {T.lease} l JOIN {T.item} li ON li.id = l.item_id "
        "WHERE l.annotator_id = %s AND li.study_id = %s AND l.expires_at > %s AND NOT EXISTS "
        f"(SELECT 1 FROM {T.judgment} lj WHERE lj.item_id = l.item_id "
        "AND lj.annotator_id = %s) ORDER BY l.created_at LIMIT 1)",
        [user.pk, study.pk, at(now), user.pk],
    )


def _held_lease(study: Study, user, now) -> ComparisonItem | None:
    """The item of the live lease `user` holds in `study`, if any, as a reload shows it."""
    (item_sql, params), (expires_sql, _) = (
        _held(study, user, now, "l.item_id"),
        _held(study, user, now, "l.expires_at"),
    )
    ((item_id, expires),) = _sql(f"SELECT {item_sql}, {expires_sql}", params + params)
    return None if item_id is None else _reloaded(item_id, expires)


def _reloaded(item_id: int, expires) -> ComparisonItem:
    """The item of a lease the annotator holds, shown again with the lease's own expiry."""
    item = _shown_item(item_id)
    item.lease_expires_at = _db_time(expires)
    return item


def _shown_item(pk: int) -> ComparisonItem:
    rows = _sql(f"SELECT {_shown_columns()} FROM {T.item} i {_shown_joins()} WHERE i.id = %s", [pk])
    return _item_from_row(rows[0])


def _lease(study: Study, user, item: ComparisonItem, now) -> bool:
    """Lease the locked `item` to `user` if it still has room and they hold no other live
    lease in the study, and record that it is shown to them (`_exposure_insert`): one
    statement on PostgreSQL, two on SQLite.

    Capacity (judgments + other annotators' live leases < k; gold items have no limit) is
    checked by the INSERT itself, in a statement that starts after the item's lock was taken,
    so it sees every lease committed before, including those `_claim`'s snapshot missed.
    An old, expired lease of this annotator on the item is renewed in place."""
    expires = now + timedelta(seconds=study.lease_ttl_seconds)
    at = connection.ops.adapt_datetimefield_value
    params = [item.pk, user.pk, at(expires), at(now)]
    # no other live lease of this annotator in the study (parallel calls: see `_state`)
    room = (
        f"WHERE NOT EXISTS (SELECT 1 FROM {T.lease} ol JOIN {T.item} oi ON oi.id = ol.item_id "
        "WHERE ol.annotator_id = %s AND ol.expires_at > %s AND ol.item_id <> %s "
        f"AND oi.study_id = %s AND NOT EXISTS (SELECT 1 FROM {T.judgment} oj "
        "WHERE oj.item_id = ol.item_id AND oj.annotator_id = %s))"
    )
    params += [user.pk, at(now), item.pk, study.pk, user.pk]
    if not item.is_gold:  # gold items have no capacity limit
        room += (
            f" AND %s + (SELECT COUNT(*) FROM {T.lease} WHERE item_id = %s AND expires_at > %s"
            " AND annotator_id <> %s) < %s"
        )
        params += [item.judgment_count, item.pk, at(now), user.pk, study.overlap_k]
    lease = (
        f"INSERT INTO {T.lease} (item_id, annotator_id, expires_at, created_at) "
        f"SELECT %s, %s, %s, %s {room} "
        "ON CONFLICT (item_id, annotator_id) DO UPDATE "
        "SET expires_at = excluded.expires_at, created_at = excluded.created_at "
        "RETURNING item_id"
    )
    if connection.vendor == "postgresql":
        # The exposure rides on the lease in a data-modifying CTE: a round trip fewer (a
        # quarter of the allocator's statement time). It is written only if the lease is.
        shown, shown_params = _exposure_insert(study, user, item, now, source="FROM leased")
        leased = _sql(
            f"WITH leased AS ({lease}), shown AS ({shown}) SELECT item_id FROM leased",
            [*params, *shown_params],
        )
    else:
        leased = _sql(lease, params)
        if leased:
            _sql(*_exposure_insert(study, user, item, now, source="WHERE 1 = 1"))
    if leased:
        item.lease_expires_at = expires
        log.info("leased item %s to %s", item.public_id, user.username)
    return bool(leased)


def _exposure_insert(study: Study, user, item: ComparisonItem, now, *, source: str):
    """SQL recording that `user` is shown `item` (once: a renewed lease changes nothing), with
    how many of its two replies they have already seen in another item. `source` ends the
    SELECT: the CTE of the lease it rides on, or a WHERE that SQLite needs before ON CONFLICT."""
    seen = (
        f"CASE WHEN EXISTS (SELECT 1 FROM {T.exposure} e WHERE e.annotator_id = %s "
        "AND e.study_id = %s AND e.item_id <> %s AND (e.key_a = %s OR e.key_b = %s)) "
        "THEN 1 ELSE 0 END"
    )
    who = [user.pk, study.pk, item.pk]
    sql = (
        f"INSERT INTO {T.exposure} (study_id, annotator_id, item_id, context_id, key_a, key_b, "
        f"a_on_left, prior, created_at) SELECT %s, %s, %s, %s, %s, %s, %s, {seen} + {seen}, %s "
        f"{source} ON CONFLICT (annotator_id, study_id, context_id, item_id) DO NOTHING"
    )
    params = [
        study.pk,
        user.pk,
        item.pk,
        item.context_id,
        item.key_a,
        item.key_b,
        None if item.is_gold else item.a_on_left,
        *who,
        item.key_a,
        item.key_a,
        *who,
        item.key_b,
        item.key_b,
        connection.ops.adapt_datetimefield_value(now),
    ]
    return sql, params


def _state(study: Study, user, now=None, *, lazy_commit: bool = False) -> dict:
    """Everything allocation needs to know about `user` in `study`, in one query: how many
    items they judged, how many open items there are and how many of those they judged (for
    progress), and, when `now` is given, the item they hold a live lease on and their side
    balance (A-left minus A-right over the items shown to them).
    `lazy_commit` (PostgreSQL) also sets synchronous_commit off for this transaction, in the
    same statement (SET LOCAL would be a round trip of its own).

    The annotator's judgments in the study are read from the judgment table's index, and each
    one's item by its primary key: the cost grows with how many items they judged, never with
    the study's size. (As a join, PostgreSQL's planner switched to scanning all the study's
    items once the annotator had judged a few dozen of a 10,000-item study.)"""
    k = study.overlap_k
    item_is = f"(SELECT CASE WHEN {{}} THEN 1 ELSE 0 END FROM {T.item} i WHERE i.id = j.item_id)"
    # open items not judged by this annotator = all open items - the open items they judged:
    # no anti-join over the study's items
    counts = {
        "judged": ("COUNT(*)", []),
        "open_mine": (
            f"COALESCE(SUM({item_is.format('i.is_gold = %s AND i.judgment_count < %s')}), 0)",
            [False, k],
        ),
    }
    others = {"open_all": (f"(SELECT open_items FROM {T.study} WHERE id = %s)", [study.pk])}
    if now is not None:
        # A-left minus A-right over the items shown to them (gold aside)
        others["balance"] = (
            "(SELECT COALESCE(SUM(CASE WHEN e.a_on_left THEN 1 WHEN NOT e.a_on_left THEN -1 "
            f"ELSE 0 END), 0) FROM {T.exposure} e WHERE e.annotator_id = %s AND e.study_id = %s)",
            [user.pk, study.pk],
        )
        # the oldest live lease this annotator holds on an item not judged
        others["held_item"] = _held(study, user, now, "l.item_id")
        others["held_expires"] = _held(study, user, now, "l.expires_at")
    others.update(repeats.state_columns(study, user, now))  # none when repeat_share is 0
    if lazy_commit:
        others["_"] = ("set_config('synchronous_commit', 'off', true)", [])
    if now is not None and connection.vendor == "postgresql":
        # One next item at a time per annotator and study: a parallel call waits here until
        # this transaction ends, and its lease statement (a later snapshot) then sees this
        # lease (`_lease`'s held-lease test). Taken in this statement: no round trip of its own.
        others["_serial"] = ("pg_advisory_xact_lock(%s, %s)", _lock_key(study, user))
    columns = {**counts, **others}
    select = ", ".join(f"{q} AS {name}" for name, (q, _) in columns.items())
    params = [p for _, ps in columns.values() for p in ps]
    (row,) = _sql(
        f"SELECT {select} FROM {T.judgment} j WHERE j.annotator_id = %s AND j.study_id = %s",
        [*params, user.pk, study.pk],
    )
    state = dict(zip(columns, row, strict=True))
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
        # A lease is not worth an fsync: one lost in a crash frees its capacity and the
        # annotator's submit is refused as expired. Judgments still commit durably (only when
        # this is the whole transaction, so a caller's writes are unaffected).
        lazy_commit = outermost and connection.vendor == "postgresql"
        state = _state(study, user, now, lazy_commit=lazy_commit)
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
        lease = f"SELECT {{}} FROM {T.lease} l WHERE l.item_id = i.id AND l.annotator_id = %s"
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        rows = _sql(
            f"SELECT i.id, i.is_gold, i.judgment_count, (SELECT j.id FROM {T.judgment} j "
            "WHERE j.item_id = i.id "
            f"AND j.annotator_id = %s), ({lease.format('l.expires_at')}), "
            f"({lease.format('l.created_at')}), (SELECT e.prior FROM {T.exposure} e "
            "WHERE e.annotator_id = %s AND e.study_id = i.study_id "
            "AND e.context_id = i.context_id AND e.item_id = i.id) "
            f"FROM {T.item} i WHERE i.study_id = %s AND i.public_id = %s{lock}",
            [user.pk, user.pk, user.pk, user.pk, study.pk, public_id],
        )
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
        drop_lease = (
            f"DELETE FROM {T.lease} WHERE item_id = %s AND annotator_id = %s",
            [item_id, user.pk],
        )
        if lease_expires is None or _db_time(lease_expires) <= now:
            if lease_expires is not None:
                _sql(*drop_lease)
            expired = True
        else:
            measured = max(0.0, (now - _db_time(leased_at)).total_seconds())
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
            _sql(*drop_lease)
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
