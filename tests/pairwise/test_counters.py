"""The cached counters' owner (services/counters.py) and `check_counters`."""

import io

import pytest
from django.core.management import CommandError, call_command

from pairwise.models import ComparisonItem, Judgment, Study
from pairwise.services import allocation, counters
from tests.factories import make_study

pytestmark = pytest.mark.django_db


def _judge(study, user, n):
    for _ in range(n):
        item = allocation.next_item(study, user)
        choices = {c: "left" for c in study.criteria}
        allocation.submit(study, user, item.public_id, choices, client_seconds=5)


def test_submit_keeps_both_counters(annotators):
    study, _, _ = make_study(n_contexts=3, k=2)
    assert allocation.progress(study, annotators[0]).total == 3  # counts open items once
    study.refresh_from_db()
    assert study.open_items == 3
    _judge(study, annotators[0], 3)
    _judge(study, annotators[1], 1)
    study.refresh_from_db()
    assert study.open_items == 2  # one item completed by the second judgment
    assert sorted(ComparisonItem.objects.values_list("judgment_count", flat=True)) == [1, 1, 2]
    assert counters.drift() == []


def test_drift_is_reported_and_fixed(annotators):
    study, _, _ = make_study(n_contexts=3, k=2)
    _judge(study, annotators[0], 2)
    allocation.progress(study, annotators[0])  # open_items counted
    item = Judgment.objects.first().item
    ComparisonItem.objects.filter(pk=item.pk).update(judgment_count=5)
    Study.objects.filter(pk=study.pk).update(open_items=0)
    found = counters.drift(study)
    assert {d.what for d in found} == {f"judgment_count of item {item.public_id}", "open_items"}
    by_what = {d.what: d for d in found}
    assert (by_what["open_items"].cached, by_what["open_items"].actual) == (0, 3)
    assert by_what[f"judgment_count of item {item.public_id}"].actual == 1

    out = io.StringIO()
    with pytest.raises(CommandError, match="2 counters disagree; run with --fix"):
        call_command("check_counters", "--study", study.name, stdout=out)
    assert "recount gives 1" in out.getvalue()

    out = io.StringIO()
    call_command("check_counters", "--fix", stdout=out)
    assert "fixed 2 counters" in out.getvalue()
    assert counters.drift() == []
    item.refresh_from_db()
    assert item.judgment_count == 1
    assert allocation.progress(study, annotators[1]).total == 3  # recounted: 3 open items


def test_a_null_open_items_is_not_drift_and_a_clean_database_says_so(annotators):
    study, _, _ = make_study(n_contexts=2, k=1)
    Study.objects.filter(pk=study.pk).update(open_items=None)
    assert counters.drift() == []
    out = io.StringIO()
    call_command("check_counters", stdout=out)
    assert out.getvalue().strip() == "counters agree with the rows"


def test_check_counters_names_an_unknown_study():
    with pytest.raises(CommandError, match="no study with id or name 'nope'"):
        call_command("check_counters", "--study", "nope")


def test_deleting_a_judgment_recounts_through_the_owner(annotators):
    study, _, _ = make_study(n_contexts=2, k=2)
    _judge(study, annotators[0], 1)
    Judgment.objects.first().delete()  # the post_delete signal recounts
    assert counters.drift() == []
    assert ComparisonItem.objects.filter(judgment_count__gt=0).count() == 0
