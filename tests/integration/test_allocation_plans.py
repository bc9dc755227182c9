"""PostgreSQL's plans for the annotator's state: they read what the annotator judged, never the
study's items, also after ANALYZE has seen an annotator with a long history.

A query count cannot catch this: the old state query was one statement too, but once the
statistics showed annotators with a hundred-odd judgments each, the planner joined them to a
scan of every item in the study. Measured with this test's data: the state query of 2e0f9a8 read
20,002 item rows (4.0 ms), its one-pass successor 10,002 (2.3 ms), this one 163 (0.5 ms).
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pairwise.bulk import populate
from pairwise.models import ComparisonItem, Judgment, Study
from pairwise.services import allocation

pytestmark = pytest.mark.integration

ITEMS = 10_000
ANNOTATORS = 20
HISTORY = 150  # judgments per annotator, on items judged by 3 of them, in random order


def _item_rows_read(plan: dict) -> float:
    """Rows PostgreSQL read from the item table, over the whole plan (rows x loops)."""
    rows = 0.0
    if plan.get("Relation Name") == ComparisonItem._meta.db_table:
        rows += plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1)
        rows += plan.get("Rows Removed by Filter", 0) * plan.get("Actual Loops", 1)
    for child in plan.get("Plans", []):
        rows += _item_rows_read(child)
    return rows


def test_state_reads_the_annotators_judgments_not_the_studys_items(db):
    study_id, _ = populate(ITEMS, n_annotators=ANNOTATORS, k=3, seed=1, history=HISTORY)
    study = Study.objects.get(pk=study_id)  # populate ran ANALYZE after the history
    user = get_user_model().objects.filter(username__startswith="bench-annotator-").first()
    judged = Judgment.objects.filter(annotator=user, study=study).count()
    assert judged > 100

    with CaptureQueriesContext(connection) as ctx:
        allocation.assign(study, user, now=timezone.now())
    (state_sql,) = [q["sql"] for q in ctx.captured_queries if "AS judged" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {state_sql}")
        (plan,) = cursor.fetchone()[0]

    read = _item_rows_read(plan["Plan"])
    # each judged item by primary key (open and gold checks), plus the held-lease lookup
    assert read <= 2 * judged + 10, f"{read} item rows read for {judged} judgments"
    assert allocation.progress(study, user).done == judged
