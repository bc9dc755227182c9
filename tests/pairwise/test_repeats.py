"""Repeats (services/repeats.py): judged items shown again later, blind, sides swapped, kept out
of the Judgment table and the preference statistics; intra-annotator agreement on the results
page, in the API and in the export."""

import json

import pandas as pd
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from pairwise.api import serializers as s
from pairwise.models import ComparisonItem, Judgment, Repeat, Study
from pairwise.services import allocation, export, repeats, studies
from tests.factories import annotator, make_study, researcher

pytestmark = pytest.mark.django_db

CRITERIA = ["Overall", "Fluency"]
LEFT = {c: "left" for c in CRITERIA}


def repeat_study(n_contexts=30, **kw):
    kw.setdefault("repeat_share", 0.5)
    study, _, _ = make_study(n_contexts=n_contexts, k=1, criteria=CRITERIA, seed=11, **kw)
    return study


def judge_until_done(study, user, choices=LEFT):
    """Judge as the allocator serves; returns what was served, in order: (position among the
    annotator's judgments so far, public id, left text, right text)."""
    served = []
    while (item := allocation.next_item(study, user)) is not None:
        judged = Judgment.objects.filter(annotator=user, study=study).count()
        served.append((judged, item.public_id, item.left.text, item.right.text))
        allocation.submit(study, user, item.public_id, choices)
    return served


def test_repeats_come_later_sides_swapped_under_a_fresh_id():
    study = repeat_study()
    user = annotator(study)
    served = judge_until_done(study, user)
    made = list(Repeat.objects.filter(study=study))
    assert made, "repeat_share 0.5 over 30 judgments makes repeats"
    by_id = {public_id: (judged, left, right) for judged, public_id, left, right in served}
    item_ids = set(ComparisonItem.objects.values_list("public_id", flat=True))
    for repeat in made:
        original = repeat.judgment.item
        assert repeat.public_id != original.public_id and repeat.public_id not in item_ids
        assert repeat.a_on_left is not original.a_on_left
        judged, left, right = by_id[repeat.public_id]  # every repeat was served, before done
        assert (left, right) == (original.right.text, original.left.text)  # sides swapped
        first = [j for j, pid, *_ in served if pid == original.public_id][0]
        at = [i for i, (_, pid, *_) in enumerate(served) if pid == repeat.public_id][0]
        shown = [i for i, (_, pid, *_) in enumerate(served) if pid == original.public_id][0]
        # due after at least 5 further judgments; once no item is left, served if at least
        # MIN_APART items came in between
        assert judged >= first + 1 + 5 or (judged == 30 and at - shown > repeats.MIN_APART - 1)
        assert repeat.judged_at is not None and repeat.choices == LEFT
        assert repeat.seconds is not None and repeat.seconds >= 0
    # the k-annotator invariant and the counters are untouched
    assert Judgment.objects.filter(study=study).count() == study.items.count() == 30
    assert all(i.judgment_count == 1 for i in study.items.all())
    study.refresh_from_db()
    assert study.open_items in (0, None)
    progress = allocation.progress(study, user)
    assert progress.done == progress.total == 30 + len(made)


def test_repeats_stay_out_of_the_preference_statistics_and_reach_summary_and_export(tmp_path):
    study = repeat_study()
    user = annotator(study)
    judge_until_done(study, user)  # always "left": with sides swapped, position-driven
    n = Repeat.objects.filter(study=study).count()
    long = export.long_dataframe(study)
    assert len(long) == 30 * len(CRITERIA)  # judgments only
    assert not set(long["item_id"]) & set(Repeat.objects.values_list("public_id", flat=True))
    summary = export.study_summary(study, n_boot=50)
    assert sum(r["n"] for r in summary["preference"] if r["denominator"] == "all") == 60
    intra = summary["intra"]
    assert intra["n_repeats"] == n and intra["n_pending"] == 0
    (row,) = intra["per_annotator"]
    assert row["annotator"] == user.username and row["n_pairs"] == n * len(CRITERIA)
    assert row["position_share"] == 1 and row["consistent_share"] == 0
    assert intra["pooled"]["agreement"] == 0
    written = export.export_study(study, "csv", tmp_path)
    assert tmp_path / "repeats.csv" in written
    table = pd.read_csv(tmp_path / "repeats.csv")
    assert len(table) == n * len(CRITERIA)
    assert set(table["repeat_choice"]) == {"left"}
    assert (table["original_a_side"] != table["repeat_a_side"]).all()
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["intra"]["n_repeats"] == n


def test_repeat_share_zero_makes_none_and_no_extra_query():
    plain = repeat_study(repeat_share=0.0)
    user = annotator(plain)
    judge_until_done(plain, user)
    assert not Repeat.objects.exists()

    def next_item_queries(study):
        who = annotator(study)
        with CaptureQueriesContext(connection) as ctx:
            allocation.next_item(study, who)
        return len(ctx.captured_queries)

    # no repeat due: the same statements with or without repeats (subqueries of the state query)
    assert next_item_queries(repeat_study(n_contexts=4, repeat_share=0.0)) == next_item_queries(
        repeat_study(n_contexts=4, repeat_share=0.3)
    )


def test_gold_cannot_judge_and_simulated_judgments_are_never_repeated():
    study = repeat_study(repeat_share=0.5)
    user = annotator(study)
    while (item := allocation.next_item(study, user)) is not None:
        allocation.submit(
            study, user, item.public_id, {}, cannot_judge=True, cannot_judge_reason="x"
        )
    assert not Repeat.objects.exists()
    assert Judgment.objects.filter(study=study).count() == 30


def _served_repeat(study, user):
    """Judge until the allocator serves a repeat; return it (the item as served)."""
    while (item := allocation.next_item(study, user)) is not None:
        if Repeat.objects.filter(public_id=item.public_id).exists():
            return item
        allocation.submit(study, user, item.public_id, LEFT)
    raise AssertionError("no repeat served")


def test_a_repeat_cannot_be_submitted_by_another_annotator_or_twice():
    study = repeat_study()
    owner, other = annotator(study), annotator(study)
    item = _served_repeat(study, owner)
    with pytest.raises(allocation.ItemNotFound, match="no item"):
        allocation.submit(study, other, item.public_id, LEFT)
    repeat, created = allocation.submit(study, owner, item.public_id, LEFT, comment="first")
    assert created and repeat.judged_at is not None
    again, created = allocation.submit(study, owner, item.public_id, {c: "tie" for c in CRITERIA})
    assert not created and again.pk == repeat.pk
    repeat.refresh_from_db()
    assert repeat.choices == LEFT and repeat.comment == "first"
    # validated like a judgment, naming the field
    item = _served_repeat(study, owner)
    with pytest.raises(allocation.InvalidJudgment, match="choices.Overall"):
        allocation.submit(study, owner, item.public_id, {"Overall": "up", "Fluency": "left"})


def test_an_expired_repeat_lease_is_refused_like_a_judgments():
    from datetime import timedelta

    from django.utils import timezone

    study = repeat_study()
    user = annotator(study)
    item = _served_repeat(study, user)
    later = timezone.now() + timedelta(seconds=study.lease_ttl_seconds + 1)
    with pytest.raises(allocation.LeaseExpired) as exc:
        allocation.submit(study, user, item.public_id, LEFT, now=later)
    assert str(exc.value) == allocation.LEASE_EXPIRED
    assert Repeat.objects.get(public_id=item.public_id).judged_at is None


def test_only_repeats_left_are_served_before_done_and_at_the_quota():
    study = repeat_study(n_contexts=6, repeat_share=0.01, quota_per_annotator=4)
    user = annotator(study)
    for _ in range(4):
        item = allocation.next_item(study, user)
        allocation.submit(study, user, item.public_id, LEFT)
    first, last = Judgment.objects.filter(annotator=user).order_by("pk")[::3]
    Repeat.objects.all().delete()  # whatever the draws made: these two only
    # not due for a long time; at the quota the one far enough from its original still comes
    # before "done"; the one right after its original (the 4th item) does not
    early = Repeat.objects.create(
        study=study, annotator=user, judgment=first, a_on_left=True, position=1, due_after=100
    )
    Repeat.objects.create(
        study=study, annotator=user, judgment=last, a_on_left=True, position=4, due_after=99
    )
    item, progress = allocation.assign(study, user)
    assert item is not None and item.public_id == early.public_id
    assert progress.done == 4 and progress.total >= 5  # its position fits in the total
    assert allocation.next_item(study, user).public_id == early.public_id  # a reload
    allocation.submit(study, user, item.public_id, LEFT)
    item, progress = allocation.assign(study, user)
    assert item is None and progress.done == progress.total == 5


def test_a_repeat_is_blind_in_the_api_and_submitted_through_the_same_endpoint():
    study = repeat_study()
    user = annotator(study)
    _served_repeat(study, user)
    client = APIClient()
    client.force_authenticate(user)
    base = f"/api/annotator/studies/{study.pk}"
    body = client.get(f"{base}/next/").json()
    repeat = Repeat.objects.get(public_id=body["item"]["id"])
    assert set(body["item"]) == {"id", "history", "left", "right"}
    assert body["item"]["id"] != repeat.judgment.item.public_id
    judgments = Judgment.objects.count()
    r = client.post(
        f"{base}/judgments/", {"item": repeat.public_id, "choices": LEFT}, format="json"
    )
    assert r.status_code == 201 and r.json()["created"] is True
    assert Judgment.objects.count() == judgments
    other = APIClient()
    other.force_authenticate(annotator(study))
    r = other.post(f"{base}/judgments/", {"item": repeat.public_id, "choices": LEFT}, format="json")
    assert r.status_code == 400 and "item" in r.json()


def test_bad_repeat_share_is_rejected_naming_the_field():
    study, checkpoints, contexts = make_study(n_contexts=2)
    for bad in (0.6, -0.1, "lots", float("nan"), True):
        with pytest.raises(studies.StudyError, match="^repeat_share"):
            studies.create_study(
                f"bad {bad!r}",
                contexts=contexts,
                pairs=[(checkpoints[0], checkpoints[1])],
                repeat_share=bad,
            )
    made = studies.create_study(
        "good", contexts=contexts, pairs=[(checkpoints[0], checkpoints[1])], repeat_share=0.05
    )
    assert Study.objects.get(pk=made.pk).repeat_share == 0.05
    data = s.StudyCreateSerializer(
        data={"name": "x", "contexts": [1], "comparisons": [["a", "b"]], "repeat_share": 0.9}
    )
    assert not data.is_valid() and "repeat_share" in data.errors
    assert s.StudySerializer(made).data["repeat_share"] == 0.05


def test_results_page_and_api_show_intra_annotator_agreement(client):
    study = repeat_study()
    judge_until_done(study, annotator(study))
    res = researcher(study)
    client.force_login(res)
    page = client.get(f"/studies/{study.pk}/results/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Intra-annotator agreement" in html and 'id="intra-table"' in html
    api = APIClient()
    api.force_authenticate(res)
    body = api.get(f"/api/studies/{study.pk}/results/").json()
    assert body["intra"]["n_repeats"] == Repeat.objects.count() > 0


def test_schedule_draw_is_reproducible_from_the_seed_and_judgment():
    study = repeat_study(n_contexts=4, repeat_share=0.5)
    user = annotator(study)
    item = allocation.next_item(study, user)
    judgment, _ = allocation.submit(study, user, item.public_id, LEFT)
    had = Repeat.objects.filter(judgment=judgment).first()
    Repeat.objects.all().delete()
    again = repeats.schedule(study, user, judgment, is_gold=False)
    assert (had is None) == (again is None)
    if had is not None:
        assert again.due_after == had.due_after and again.a_on_left == had.a_on_left
    assert repeats.schedule(study, user, judgment, is_gold=True) is None
