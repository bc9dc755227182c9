"""Repeats: some items an annotator judged come back to them later, blind, sides swapped, so
that intra-annotator agreement can be measured (services/intra.py, docs/statistics.md).

- When an annotator submits a normal (not gold, not cannot-judge, not simulated) judgment, a
  `Repeat` of it is made with probability `Study.repeat_share`, drawn from the study's secret
  seed and the judgment's id (reproducible, and nothing the annotator can work out). It is due
  after a further 5 to 15 of their judgments (the same draw); pending repeats are served in the
  order of their originals.
- The allocator (`allocation.assign`) serves a due repeat before a new item, and any pending
  repeat before the annotator is told they are done (also at their quota: repeats do not count
  toward it). A repeat shows the item's texts with A on the other side than the first time,
  under its own opaque id, never the item's.
- Its answer goes through the same submit (form or API) as a judgment, validated the same way
  (`allocation.check_judgment`, `check_client_seconds`), and is kept on the repeat: never in the
  Judgment table, so the item's judgment count, the k-annotator rule and every preference
  statistic are untouched by construction.

Cost: with repeat_share 0 nothing here runs (no query). Otherwise the allocator's state query
(`sql.state`) gets three subqueries (index probes on `repeat_next`); serving a repeat is one
select and at most one update (`sql.repeat_shown`, `sql.repeat_lease`).
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from django.db import connection, transaction

from pairwise.models import ComparisonItem, Judgment, Repeat, Study
from pairwise.services import allocation, sql
from pairwise.services.errors import ServiceError

log = logging.getLogger(__name__)
GAP = (5, 15)  # a repeat is due after this many further judgments of the annotator (inclusive)
# Before "done" (or at the quota) a repeat not yet due is served only this many items after its
# original: right after it, the same texts with the sides swapped would be recognised.
MIN_APART = 3


def check_repeat_share(value) -> float:
    """A study's repeat_share: a number 0 <= share <= 0.5, else ValueError naming the field."""
    if isinstance(value, bool):
        raise ServiceError("repeat_share", f"expected a number between 0 and 0.5, got {value!r}")
    try:
        share = float(value)
    except (TypeError, ValueError):
        raise ServiceError(
            "repeat_share", f"expected a number between 0 and 0.5, got {value!r}"
        ) from None
    if not 0 <= share <= 0.5:  # NaN fails too
        raise ServiceError("repeat_share", f"must be between 0 and 0.5, got {value!r}")
    return share


def schedule(study: Study, user, judgment: Judgment, *, is_gold: bool) -> Repeat | None:
    """Maybe make a repeat of a judgment just recorded (`allocation.submit`, in its
    transaction): with probability repeat_share, drawn from the study seed and the judgment id;
    due after a further GAP judgments of the annotator (same draw). Gold, cannot-judge and
    simulated judgments are never repeated."""
    if is_gold or judgment.cannot_judge or judgment.simulated or study.repeat_share <= 0:
        return None
    rng = random.Random(f"{study.seed}:repeat:{judgment.pk}")
    if rng.random() >= study.repeat_share:
        return None
    gap = rng.randint(*GAP)
    judged = Judgment.objects.filter(annotator=user, study=study).count()
    answered = Repeat.objects.filter(annotator=user, study=study, judged_at__isnull=False).count()
    a_on_left = ComparisonItem.objects.values_list("a_on_left", flat=True).get(pk=judgment.item_id)
    repeat = Repeat.objects.create(
        study=study,
        annotator=user,
        judgment=judgment,
        a_on_left=not a_on_left,
        position=judged + answered,  # as progress counts items shown
        due_after=judged + gap,
    )
    log.info("repeat %s of judgment %s due after %s", repeat.pk, judgment.pk, repeat.due_after)
    return repeat


def assign_repeat(
    study: Study, user, state: dict, progress: allocation.Progress, now, *, due_only: bool
) -> allocation.Assignment | None:
    """The annotator's next pending repeat, leased to them, as `allocation.assign` answers;
    None when there is none (or, with `due_only`, none due yet). No query unless one is
    served."""
    repeat_id = state.get("repeat_id")
    if repeat_id is None or (due_only and state["repeat_due"] > state["judged"]):
        return None
    held = state["repeat_due"] == -1
    shown = None if due_only or held else progress.done  # items shown so far, repeats included
    item = _serve(study, repeat_id, now, shown=shown)
    if item is None:
        return None
    progress = allocation.Progress(progress.done, max(progress.total, progress.done + 1))
    return allocation.Assignment(item, progress)


def _serve(study: Study, repeat_id: int, now, *, shown: int | None) -> ComparisonItem | None:
    """The repeat's item as the annotator is shown it: its texts, A on the repeat's side, the
    repeat's own public id; leased (unless a live lease is being reloaded). With `shown` (the
    items shown so far, when it is not due yet), None if fewer than MIN_APART of them came
    after its original."""
    (row,) = sql.fetch(sql.repeat_shown(connection.vendor), {"repeat": repeat_id})
    position, public_id, a_on_left, expires = row[sql.SHOWN_WIDTH :]
    if shown is not None and shown - position < MIN_APART:
        return None
    if expires is None or sql.db_time(expires) <= now:
        expires = now + timedelta(seconds=study.lease_ttl_seconds)
        sql.fetch(
            sql.repeat_lease(connection.vendor),
            {"repeat": repeat_id, "now": sql.at(now), "expires": sql.at(expires)},
        )
    item = sql.shown_item(row)
    # an unsaved view of the item: never saved, only shown through blind_item
    item.public_id = public_id
    item.a_on_left = bool(a_on_left)
    item.lease_expires_at = sql.db_time(expires)
    log.info("served repeat %s", repeat_id)
    return item


def submit(
    study: Study,
    user,
    public_id: str,
    clean: dict,
    *,
    comment: str = "",
    client_seconds: float | None = None,
    cannot_judge: bool = False,
    cannot_judge_reason: str = "",
    now,
) -> tuple[Repeat, bool]:
    """Record the answer to one of `user`'s repeats (`allocation.submit` passes on an id that
    is no item, already validated). Idempotent: a second submit returns the repeat with
    created=False and keeps the first answer. Another annotator's repeat, or an unknown id, is
    ItemNotFound; an expired lease is LeaseExpired, with the messages a judgment gets."""
    with transaction.atomic():
        found = Repeat.objects.filter(study=study, annotator=user, public_id=public_id)
        if connection.features.has_select_for_update:
            found = found.select_for_update()
        repeat = found.first()
        if repeat is None:
            raise allocation.ItemNotFound(f"no item {public_id!r} in this study")
        if repeat.judged_at is not None:
            return repeat, False
        if repeat.lease_expires_at is None or repeat.lease_expires_at <= now:
            raise allocation.LeaseExpired(allocation.LEASE_EXPIRED)
        repeat.choices = clean
        repeat.cannot_judge = cannot_judge
        repeat.cannot_judge_reason = cannot_judge_reason.strip() if cannot_judge else ""
        repeat.comment = (comment or "").strip()
        repeat.seconds = max(0.0, (now - repeat.leased_at).total_seconds())
        repeat.client_seconds = client_seconds
        repeat.judged_at = now
        repeat.lease_expires_at = None
        repeat.save()
    log.info("repeat %s answered by %s", repeat.pk, user.username)
    return repeat, True
