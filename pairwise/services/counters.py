"""The cached counters, and the one place that writes them.

Two numbers are kept so that the annotator's hot path never counts rows:

- ``ComparisonItem.judgment_count``: the item's judgments. `allocation.submit` adds one per
  judgment (`judgment_added`); whoever else adds or removes judgments (an import, an admin, a
  deletion signal) calls `recount_judgments`.
- ``Study.open_items``: non-gold items with fewer than k judgments, for progress. NULL means
  "count again": `judgment_added` lowers it when an item completes, anything else that changes
  items or k calls `forget_open_items`, and the next reader calls `count_open_items`.

`drift` recounts both from the rows and reports where a cached value disagrees;
``python manage.py check_counters [--fix]`` runs it (and `fix`).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Count, F, Q

from pairwise.models import ComparisonItem, Judgment, Study
from pairwise.services import sql


def judgment_added(study: Study, item_id: int, *, count_before: int, is_gold: bool) -> None:
    """`allocation.submit` recorded a judgment on the item it holds locked: one more for the
    item, and one open item fewer when this one completed it (NULL, not counted yet, stays
    NULL). Two plain UPDATEs inside the caller's transaction (`sql.count_judgment`,
    `sql.close_item`)."""
    sql.fetch(sql.count_judgment(connection.vendor), {"item": item_id})
    if not is_gold and count_before + 1 == study.overlap_k:
        sql.fetch(sql.close_item(connection.vendor), {"study": study.pk})


def forget_open_items(study_id: int) -> None:
    """Items were added, removed or recounted outside the allocator: count them again."""
    Study.objects.filter(pk=study_id).update(open_items=None)


def recount_judgments(item_id: int) -> int:
    """Judgments were added or removed outside `allocation.submit`: count the item's judgments
    again, under its row lock. Returns the item's study id; the caller then has the study
    recount its open items (`forget_open_items`), once for many items."""
    with transaction.atomic():
        item = ComparisonItem.objects.select_for_update().only("study_id").get(pk=item_id)
        n = Judgment.objects.filter(item_id=item_id).count()
        ComparisonItem.objects.filter(pk=item_id).update(judgment_count=n)
    return item.study_id


def set_judgment_counts(item_ids, count: int) -> None:
    """Bulk-built studies (pairwise/bulk.py) store judgments directly: set their items' counts,
    and have the studies count their open items again."""
    items = ComparisonItem.objects.filter(pk__in=list(item_ids))
    studies = set(items.values_list("study_id", flat=True))
    items.update(judgment_count=count)
    for study_id in studies:
        forget_open_items(study_id)


def count_open_items(study: Study) -> int:
    """Count the study's open items again and keep the count (Study.open_items), which
    `judgment_added` then keeps current: progress costs no scan of the study's items.

    The study row is locked first, so a submit that completes an item either committed
    before the count (which sees it) or decrements after the count is written."""
    with transaction.atomic():
        if connection.features.has_select_for_update:
            list(Study.objects.select_for_update().filter(pk=study.pk).values_list("pk"))
        n = ComparisonItem.objects.filter(
            study_id=study.pk, is_gold=False, judgment_count__lt=study.overlap_k
        ).count()
        Study.objects.filter(pk=study.pk).update(open_items=n)
    return n


@dataclass(frozen=True)
class Drift:
    """A cached value that disagrees with a recount."""

    study: str
    what: str  # "judgment_count of item <public id>" or "open_items"
    cached: int | None
    actual: int

    def __str__(self) -> str:
        return f"study {self.study!r}: {self.what} is {self.cached}, recount gives {self.actual}"


def drift(study: Study | None = None) -> list[Drift]:
    """Every cached counter (of one study, or all) that disagrees with a recount of its rows.
    A NULL open_items is not drift: it means "count again"."""
    studies = [study] if study is not None else list(Study.objects.order_by("pk"))
    out: list[Drift] = []
    for s in studies:
        items = (
            ComparisonItem.objects.filter(study=s)
            .annotate(n=Count("judgments"))
            .exclude(n=F("judgment_count"))
            .order_by("pk")
        )
        for public_id, cached, n in items.values_list("public_id", "judgment_count", "n"):
            out.append(Drift(s.name, f"judgment_count of item {public_id}", cached, n))
        cached_open = Study.objects.filter(pk=s.pk).values_list("open_items", flat=True).first()
        if cached_open is not None:
            actual = (
                ComparisonItem.objects.filter(study=s, is_gold=False)
                .annotate(n=Count("judgments"))
                .filter(n__lt=s.overlap_k)
                .count()
            )
            if actual != cached_open:
                out.append(Drift(s.name, "open_items", cached_open, actual))
    return out


def fix(study: Study | None = None) -> list[Drift]:
    """Recount what `drift` reports; returns what was wrong."""
    found = drift(study)
    for s in [study] if study is not None else Study.objects.all():
        wrong = ComparisonItem.objects.filter(study=s).annotate(n=Count("judgments"))
        for item_id in wrong.filter(~Q(n=F("judgment_count"))).values_list("pk", flat=True):
            recount_judgments(item_id)
        forget_open_items(s.pk)
    return found
