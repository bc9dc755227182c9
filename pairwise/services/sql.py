"""The annotator hot path's hand-written SQL: every statement, in one place.

Each statement is written once, with named parameters (``%(user)s``: Django passes a dict to
PostgreSQL and SQLite alike), and built once per process and variant (`functools.cache`): the
caller passes one dict of values and never keeps positional lists in step. Each one says why it
is SQL rather than the ORM; docs/allocation.md has the algorithm, its invariants and the
measurements (bench/RESULTS.md, "SQL or ORM").

Rows become model instances here too (`instance`, `shown_item`): the column-to-field mapping and
the converters are worked out once per model (``Model.objects.raw`` does it again per query,
a tenth of a ~2 ms request), then applied as the ORM does (`Model.from_db` with the database's
and the fields' converters: SQLite's 0/1 booleans and text datetimes, JSON fields).

Statements are portable between PostgreSQL and SQLite; the only differences are the row lock
(``FOR UPDATE ... SKIP LOCKED``, PostgreSQL) and the lease and its exposure record in one
statement (a data-modifying CTE, PostgreSQL only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import Model
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.authtoken.models import Token

from pairwise import roles
from pairwise.models import (
    ComparisonItem,
    EvalContext,
    Exposure,
    Judgment,
    Lease,
    Profile,
    Repeat,
    Response,
    Study,
    StudyMember,
)

# --- running statements ------------------------------------------------------------------------


def fetch(sql: str, params: dict) -> list[tuple]:
    """The rows of one statement (none for a statement that returns no rows)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


# The transaction-local `synchronous_commit = off` of `allocation.assign`, as a column of the
# state query (`state(lazy_commit=True)`): the same effect as `SET LOCAL synchronous_commit TO
# OFF` without a round trip of its own. As a statement of its own it cost the annotator bench
# 0.44 of its next-item/bare ratio (3.75 against 3.31, same conditions; bench/RESULTS.md).
LAZY_COMMIT = "set_config('synchronous_commit', 'off', true)"


def at(value: datetime):
    """A datetime as a parameter, as the ORM would pass it (SQLite: text in UTC)."""
    return connection.ops.adapt_datetimefield_value(value)


def db_time(value) -> datetime:
    """A datetime as the database returned it (SQLite: text in UTC) as an aware datetime."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


# --- rows to model instances -------------------------------------------------------------------


@cache
def _layout(model: type[Model], names: tuple[str, ...] | None) -> tuple[tuple[str, ...], tuple]:
    fields = model._meta.concrete_fields
    if names is not None:
        fields = [model._meta.get_field(name) for name in names]
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        if found:
            converters.append((index, column, tuple(found)))
    return tuple(f.attname for f in fields), tuple(converters)


@cache
def columns(model: type[Model], alias: str) -> str:
    """The model's concrete columns, qualified by `alias`, in the order `instance` expects."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(f.column)}" for f in model._meta.concrete_fields)


def instance(model: type[Model], row, fields: tuple[str, ...] | None = None) -> Model:
    """An instance from the first columns of `row`: all the model's concrete fields (selected
    with `columns`), or only `fields` (the others deferred)."""
    names, converters = _layout(model, fields)
    values = list(row[: len(names)])
    for index, column, found in converters:
        value = values[index]
        for convert in found:
            value = convert(value, column, connection)
        values[index] = value
    return model.from_db(connection.alias, names, values)


ITEM_FIELDS = (
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
SHOWN = ", ".join([f"i.{f}" for f in ITEM_FIELDS] + ["c.history", "ra.text", "rb.text"])
SHOWN_WIDTH = len(ITEM_FIELDS) + 3  # columns of SHOWN


def shown_item(row) -> ComparisonItem:
    """The item of a row that starts with SHOWN (other fields deferred), with its context and
    both responses attached: what the annotator is shown."""
    item = instance(ComparisonItem, row, ITEM_FIELDS)
    history, text_a, text_b = row[len(ITEM_FIELDS) : SHOWN_WIDTH]
    item.context = instance(EvalContext, (item.context_id, history), ("id", "history"))
    item.response_a = instance(Response, (item.response_a_id, text_a), ("id", "text"))
    item.response_b = instance(Response, (item.response_b_id, text_b), ("id", "text"))
    return item


# --- tables ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tables:
    """Quoted table names, read from the models: the only place the hot path quotes one."""

    item: str
    judgment: str
    lease: str
    context: str
    response: str
    study: str
    exposure: str
    repeat: str
    member: str
    user: str
    user_group: str
    group: str
    token: str
    profile: str


@cache
def tables(vendor: str) -> Tables:
    user = get_user_model()
    models = (
        *(ComparisonItem, Judgment, Lease, EvalContext, Response, Study, Exposure, Repeat),
        *(StudyMember, user, user.groups.through, Group, Token, Profile),
    )
    return Tables(*(connection.ops.quote_name(m._meta.db_table) for m in models))


def _shown_joins(t: Tables) -> str:
    """Joins from item `i` to what the annotator is shown of it (SHOWN)."""
    return (
        f"JOIN {t.context} c ON c.id = i.context_id "
        f"JOIN {t.response} ra ON ra.id = i.response_a_id "
        f"JOIN {t.response} rb ON rb.id = i.response_b_id"
    )


# --- the allocator's statements ----------------------------------------------------------------
# Why SQL: the equivalent ORM querysets (nested correlated subqueries) cost 5-10 ms of CPU per
# request to build and compile, several times what the database spends answering them; and
# some have no ORM form (INSERT ... SELECT ... ON CONFLICT, a data-modifying CTE, FOR UPDATE OF
# one table with SKIP LOCKED over a join).


def _conflict(t: Tables, rule: str, who: str) -> str:
    """True when annotator `who` (a column, or %(user)s) has seen, in another item, something
    that item `i` shows, by the study's exposure rule: a reply (by text key: the same row or an
    identical text) or a dialogue. Each test is an index probe into Exposure, so its cost does
    not grow with the annotator's history."""
    seen = (
        f"EXISTS (SELECT 1 FROM {t.exposure} e WHERE e.annotator_id = {who} "
        "AND e.study_id = %(study)s AND e.item_id <> i.id AND {})"
    )
    if rule == Study.ExposureRule.CONTEXT:
        return seen.format("e.context_id = i.context_id")
    keys = "(i.key_a, i.key_b)"
    return f"({seen.format(f'e.key_a IN {keys}')} OR {seen.format(f'e.key_b IN {keys}')})"


def _repeat_filter(t: Tables, rule: str) -> str:
    """True when the annotator may take item `i` although it repeats what they saw: no one else
    at work on the study (shown an item since %(since)s) could take it without a repeat, so with
    a sufficient pool the last items wait for the annotator who can see them fresh."""
    others = (
        f"SELECT DISTINCT a.annotator_id AS who FROM {t.exposure} a WHERE a.study_id = %(study)s "
        "AND a.annotator_id <> %(user)s AND a.created_at > %(since)s"
    )
    fresh = (
        f"(SELECT COUNT(*) FROM ({others}) active WHERE NOT {_conflict(t, rule, 'active.who')} "
        f"AND NOT EXISTS (SELECT 1 FROM {t.judgment} oj WHERE oj.item_id = i.id "
        "AND oj.annotator_id = active.who) "
        f"AND NOT EXISTS (SELECT 1 FROM {t.lease} ol WHERE ol.item_id = i.id "
        "AND ol.annotator_id = active.who))"
    )
    live = (
        f"(SELECT COUNT(*) FROM {t.lease} rl WHERE rl.item_id = i.id AND rl.expires_at > %(now)s)"
    )
    return f"{fresh} < %(k)s - i.judgment_count - {live}"


@cache
def claim(vendor: str, rule: str, *, gold: bool, unseen: bool, side: bool, tried: int) -> str:
    """The best item for %(user)s in %(study)s, locked, with what they are shown (SHOWN).

    Best: fewest judgments, then the study's secret order. Not judged by them; for non-gold
    items, judgments + live leases < %(k)s. With a `rule` (not "none"): `unseen` keeps out items
    that repeat what they saw, else (non-gold) a repeat only by `_repeat_filter`. `side`: only
    items with a_on_left = %(side)s. `tried`: not the items %(tried_0)s ... (lease refused).
    PostgreSQL locks the item row only, skipping rows locked by others.
    Why SQL: the correlated subqueries above, `FOR UPDATE OF i SKIP LOCKED` over the joins,
    and the texts in the same row; as a queryset, the most expensive to build of all."""
    t = tables(vendor)
    where = [
        "i.study_id = %(study)s",
        "i.is_gold = %(gold)s",
        f"NOT EXISTS (SELECT 1 FROM {t.judgment} j WHERE j.item_id = i.id "
        "AND j.annotator_id = %(user)s)",
    ]
    if not gold:
        where += [
            "i.judgment_count < %(k)s",
            f"i.judgment_count + (SELECT COUNT(*) FROM {t.lease} l WHERE l.item_id = i.id"
            " AND l.expires_at > %(now)s) < %(k)s",
        ]
    if rule != Study.ExposureRule.NONE:
        if unseen:
            where.append(f"NOT {_conflict(t, rule, '%(user)s')}")
        elif not gold:
            where.append(_repeat_filter(t, rule))
    if tried:
        where.append(f"i.id NOT IN ({', '.join(f'%(tried_{n})s' for n in range(tried))})")
    if side:
        where.append("i.a_on_left = %(side)s")
    lock = ""
    if connection.features.has_select_for_update_skip_locked:
        lock = " FOR UPDATE OF i SKIP LOCKED"
    return (
        f"SELECT {SHOWN} FROM {t.item} i {_shown_joins(t)} WHERE {' AND '.join(where)} "
        f"ORDER BY i.judgment_count, i.order_key LIMIT 1{lock}"
    )


def _held(t: Tables, column: str) -> str:
    """`column` of the oldest live lease %(user)s holds in %(study)s on an item they have not
    judged (NULL when none)."""
    return (
        f"(SELECT {column} FROM {t.lease} l JOIN {t.item} li ON li.id = l.item_id "
        "WHERE l.annotator_id = %(user)s AND li.study_id = %(study)s AND l.expires_at > %(now)s "
        f"AND NOT EXISTS (SELECT 1 FROM {t.judgment} lj WHERE lj.item_id = l.item_id "
        "AND lj.annotator_id = %(user)s) ORDER BY l.created_at LIMIT 1)"
    )


@cache
def held_lease(vendor: str) -> str:
    """The item and expiry of the live lease %(user)s holds in %(study)s (NULLs when none).
    Why SQL: `state` has the same subqueries; the ORM queryset took 5-10 times as long."""
    t = tables(vendor)
    return f"SELECT {_held(t, 'l.item_id')}, {_held(t, 'l.expires_at')}"


@cache
def shown_by_id(vendor: str) -> str:
    """Item %(item)s as the annotator is shown it (SHOWN). Why SQL: the same row as `claim`'s,
    read by `shown_item`; `select_related` would load every column of four tables."""
    t = tables(vendor)
    return f"SELECT {SHOWN} FROM {t.item} i {_shown_joins(t)} WHERE i.id = %(item)s"


def _exposure_insert(t: Tables, source: str) -> str:
    """Record that %(user)s is shown %(item)s (once: a renewed lease changes nothing), with how
    many of its two replies (%(key_a)s, %(key_b)s) they have already seen in another item.
    `source` ends the SELECT: the CTE of the lease it rides on, or the WHERE that SQLite needs
    before ON CONFLICT."""
    seen = (
        f"CASE WHEN EXISTS (SELECT 1 FROM {t.exposure} e WHERE e.annotator_id = %(user)s "
        "AND e.study_id = %(study)s AND e.item_id <> %(item)s "
        "AND (e.key_a = {key} OR e.key_b = {key})) THEN 1 ELSE 0 END"
    )
    prior = f"{seen.format(key='%(key_a)s')} + {seen.format(key='%(key_b)s')}"
    return (
        f"INSERT INTO {t.exposure} (study_id, annotator_id, item_id, context_id, key_a, key_b, "
        "a_on_left, prior, created_at) SELECT %(study)s, %(user)s, %(item)s, %(context)s, "
        f"%(key_a)s, %(key_b)s, %(a_on_left)s, {prior}, %(now)s "
        f"{source} ON CONFLICT (annotator_id, study_id, context_id, item_id) DO NOTHING"
    )


@cache
def lease(vendor: str, *, gold: bool) -> str:
    """Lease %(item)s (locked by `claim`) to %(user)s until %(expires)s, if they hold no other
    live lease in %(study)s and (non-gold) %(count)s judgments + other annotators' live leases
    < %(k)s; returns the item's id when it did. The capacity is checked by the INSERT itself,
    which starts after the item's lock was taken, so it sees every lease committed before. An
    old, expired lease of theirs on the item is renewed in place.

    PostgreSQL: the exposure record (`exposure_insert`) rides on the lease in a data-modifying
    CTE, written only if the lease is: a round trip fewer (a quarter of the allocator's
    statement time). SQLite runs `exposure_insert` after it.
    Why SQL: the ORM has no INSERT ... SELECT, conditional insert or data-modifying CTE."""
    t = tables(vendor)
    room = (
        f"WHERE NOT EXISTS (SELECT 1 FROM {t.lease} ol JOIN {t.item} oi ON oi.id = ol.item_id "
        "WHERE ol.annotator_id = %(user)s AND ol.expires_at > %(now)s AND ol.item_id <> %(item)s "
        f"AND oi.study_id = %(study)s AND NOT EXISTS (SELECT 1 FROM {t.judgment} oj "
        "WHERE oj.item_id = ol.item_id AND oj.annotator_id = %(user)s))"
    )
    if not gold:  # gold items have no capacity limit
        room += (
            f" AND %(count)s + (SELECT COUNT(*) FROM {t.lease} WHERE item_id = %(item)s "
            "AND expires_at > %(now)s AND annotator_id <> %(user)s) < %(k)s"
        )
    insert = (
        f"INSERT INTO {t.lease} (item_id, annotator_id, expires_at, created_at) "
        f"SELECT %(item)s, %(user)s, %(expires)s, %(now)s {room} "
        "ON CONFLICT (item_id, annotator_id) DO UPDATE "
        "SET expires_at = excluded.expires_at, created_at = excluded.created_at "
        "RETURNING item_id"
    )
    if vendor != "postgresql":
        return insert
    shown = _exposure_insert(t, "FROM leased")
    return f"WITH leased AS ({insert}), shown AS ({shown}) SELECT item_id FROM leased"


@cache
def exposure_insert(vendor: str) -> str:
    """`lease`'s exposure record as a statement of its own (SQLite). Why SQL: as `lease`."""
    return _exposure_insert(tables(vendor), "WHERE 1 = 1")


@cache
def state(
    vendor: str, *, assigning: bool, repeats: bool, lazy_commit: bool = False
) -> tuple[str, tuple[str, ...]]:
    """Everything allocation needs to know about %(user)s in %(study)s, one row, and the names
    of its columns:

    - judged: their judgments; open_mine: how many of those are on open items (non-gold, fewer
      than %(k)s judgments); open_all: the study's cached open-item count (NULL: count again);
    - `assigning` (at %(now)s): balance (A-left minus A-right over the items shown to them),
      held_item and held_expires (the live lease they hold), and on PostgreSQL `_serial`: the
      advisory lock (%(lock_study)s, %(lock_user)s) that makes their parallel next-item calls
      take turns. It is taken by this statement, not one of its own, to save a round trip:
      a parallel call waits here until this transaction ends, and its lease statement (a later
      snapshot) then sees this lease;
    - `repeats`: repeats_done, and when assigning the next pending repeat (repeat_id) and when
      it is due (repeat_due: -1 when they hold a live lease on it);
    - `lazy_commit` (PostgreSQL): `LAZY_COMMIT`, for the rest of the transaction: a lease is not
      worth an fsync (one lost in a crash frees its capacity, and the annotator's submit is
      refused as expired); asked for only when the transaction is the caller's whole one, so
      every judgment still commits durably;

    Why SQL: one round trip for what the ORM needs four or more queries for. The judgments are
    read from the (annotator, study) index and each one's item by primary key inside the
    aggregate: the cost grows with the annotator's history, never with the study's size (as a
    join, PostgreSQL's planner switched to scanning all the study's items once an annotator
    had judged a few dozen items of a 10,000-item study; tests/integration/
    test_allocation_plans.py)."""
    t = tables(vendor)
    open_item = (
        f"(SELECT CASE WHEN NOT i.is_gold AND i.judgment_count < %(k)s THEN 1 ELSE 0 END "
        f"FROM {t.item} i WHERE i.id = j.item_id)"
    )
    cols = {
        "judged": "COUNT(*)",
        # open items not judged by them = all open items - the open items they judged:
        # no anti-join over the study's items
        "open_mine": f"COALESCE(SUM({open_item}), 0)",
        "open_all": f"(SELECT open_items FROM {t.study} WHERE id = %(study)s)",
    }
    if assigning:
        cols["balance"] = (
            "(SELECT COALESCE(SUM(CASE WHEN e.a_on_left THEN 1 WHEN NOT e.a_on_left THEN -1 "
            f"ELSE 0 END), 0) FROM {t.exposure} e WHERE e.annotator_id = %(user)s "
            "AND e.study_id = %(study)s)"
        )
        cols["held_item"] = _held(t, "l.item_id")
        cols["held_expires"] = _held(t, "l.expires_at")
    if repeats:
        mine = f"FROM {t.repeat} r WHERE r.annotator_id = %(user)s AND r.study_id = %(study)s"
        cols["repeats_done"] = f"(SELECT COUNT(*) {mine} AND r.judged_at IS NOT NULL)"
        if assigning:
            # one held (live lease) first, a reload; then in the order of their originals, so
            # the one served when no item is left is the farthest from its original
            live = "r.lease_expires_at > %(now)s"
            pending = (
                f"{mine} AND r.judged_at IS NULL "
                f"ORDER BY CASE WHEN {live} THEN 0 ELSE 1 END, r.position, r.id LIMIT 1"
            )
            cols["repeat_id"] = f"(SELECT r.id {pending})"
            cols["repeat_due"] = f"(SELECT CASE WHEN {live} THEN -1 ELSE r.due_after END {pending})"
    if lazy_commit and vendor == "postgresql":
        cols["_lazy_commit"] = LAZY_COMMIT
    if assigning and vendor == "postgresql":
        cols["_serial"] = "pg_advisory_xact_lock(%(lock_study)s, %(lock_user)s)"
    select = ", ".join(f"{sql} AS {name}" for name, sql in cols.items())
    return (
        f"SELECT {select} FROM {t.judgment} j "
        "WHERE j.annotator_id = %(user)s AND j.study_id = %(study)s",
        tuple(cols),
    )


@cache
def submitted_item(vendor: str) -> str:
    """Item %(public_id)s of %(study)s, locked, with %(user)s's judgment of it, the expiry and
    start of their lease on it, and how many of its replies they had seen before (Exposure.prior).
    Why SQL: one query for what the ORM needs four for, on every submit."""
    t = tables(vendor)
    lease_col = "(SELECT l.{} FROM %s l WHERE l.item_id = i.id AND l.annotator_id = %%(user)s)"
    lease_col %= t.lease
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    return (
        f"SELECT i.id, i.is_gold, i.judgment_count, (SELECT j.id FROM {t.judgment} j "
        "WHERE j.item_id = i.id AND j.annotator_id = %(user)s), "
        f"{lease_col.format('expires_at')}, {lease_col.format('created_at')}, "
        f"(SELECT e.prior FROM {t.exposure} e WHERE e.annotator_id = %(user)s "
        "AND e.study_id = i.study_id AND e.context_id = i.context_id AND e.item_id = i.id) "
        f"FROM {t.item} i WHERE i.study_id = %(study)s AND i.public_id = %(public_id)s{lock}"
    )


@cache
def drop_lease(vendor: str) -> str:
    """Delete %(user)s's lease on %(item)s (judged, or found expired). Why SQL: beside
    `submitted_item`, by the ids it read, without building a queryset on every submit."""
    lease = tables(vendor).lease
    return f"DELETE FROM {lease} WHERE item_id = %(item)s AND annotator_id = %(user)s"


@cache
def count_judgment(vendor: str) -> str:
    """One more judgment on %(item)s (`counters.judgment_added`). Why SQL: an increment in
    place, in the submit's transaction, without building a queryset on every submit."""
    item = tables(vendor).item
    return f"UPDATE {item} SET judgment_count = judgment_count + 1 WHERE id = %(item)s"


@cache
def close_item(vendor: str) -> str:
    """One open item fewer in %(study)s (NULL, not counted yet, stays NULL). Why SQL: as
    `count_judgment`."""
    return f"UPDATE {tables(vendor).study} SET open_items = open_items - 1 WHERE id = %(study)s"


# --- repeats (services/repeats.py) -------------------------------------------------------------


@cache
def repeat_shown(vendor: str) -> str:
    """Repeat %(repeat)s: its item as shown (SHOWN), then the repeat's position, public id,
    side and lease expiry. Why SQL: the shown columns and instances are `shown_item`'s."""
    t = tables(vendor)
    return (
        f"SELECT {SHOWN}, r.position, r.public_id, r.a_on_left, r.lease_expires_at "
        f"FROM {t.repeat} r JOIN {t.judgment} j ON j.id = r.judgment_id "
        f"JOIN {t.item} i ON i.id = j.item_id {_shown_joins(t)} WHERE r.id = %(repeat)s"
    )


@cache
def repeat_lease(vendor: str) -> str:
    """Lease repeat %(repeat)s from %(now)s until %(expires)s. Why SQL: beside
    `repeat_shown`, by id, without building a queryset."""
    return (
        f"UPDATE {tables(vendor).repeat} SET leased_at = %(now)s, "
        "lease_expires_at = %(expires)s WHERE id = %(repeat)s"
    )


# --- token login (api/authentication.py) -------------------------------------------------------


@cache
def token_user(vendor: str) -> str:
    """Token %(key)s's user (the user model's `columns`), one flag per role (%(role_<name>)s),
    whether the token was created before %(issued_before)s (expired; NULL: never) and whether
    the account must change its password. Why SQL: the ORM needs three queries (token with
    user, groups, profile) and spends more CPU building them than the database spends
    answering, on every API request (bench/RESULTS.md, "Annotators")."""
    t = tables(vendor)
    q = connection.ops.quote_name
    has_role = ", ".join(
        f"EXISTS (SELECT 1 FROM {t.user_group} ug JOIN {t.group} g ON g.id = ug.group_id "
        f"WHERE ug.user_id = u.id AND g.name = %(role_{name})s) AS {q('has_role_' + name)}"
        for name in roles.ROLES
    )
    return (
        f"SELECT {columns(get_user_model(), 'u')}, {has_role}, "
        "tk.created < %(issued_before)s AS expired, "
        "COALESCE(p.must_change_password, FALSE) AS must_change_password "
        f"FROM {t.token} tk JOIN {t.user} u ON u.id = tk.user_id "
        f"LEFT JOIN {t.profile} p ON p.user_id = u.id "
        "WHERE tk.key = %(key)s"
    )


# --- access (services/access.py) ---------------------------------------------------------------


@cache
def study_to_annotate(vendor: str) -> str:
    """Study %(study)s (`columns`) if it is open or %(any_status)s, and %(admin)s or %(user)s is
    one of its members with role %(role)s. Why SQL: every annotator request asks, and the
    ORM queryset took 4 to 9 times the statement's time, most of it CPU spent building and
    compiling the query (bench/sql_vs_orm.py, bench/RESULTS.md "SQL or ORM")."""
    t = tables(vendor)
    return (
        f"SELECT {columns(Study, 's')} FROM {t.study} s WHERE s.id = %(study)s "
        "AND (%(any_status)s OR s.status = %(open)s) "
        f"AND (%(admin)s OR EXISTS (SELECT 1 FROM {t.member} m "
        "WHERE m.study_id = s.id AND m.user_id = %(user)s AND m.role = %(role)s))"
    )
