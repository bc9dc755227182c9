"""The allocator: overlap k, distinct annotators, leases, quota, gold items, query counts."""

from datetime import timedelta

import pytest
from django.utils import timezone

from pairwise.models import ComparisonItem, Judgment, Lease, Response, Study
from pairwise.services import allocation, counters
from pairwise.services.items import add_gold_items, build_items
from pairwise.services.sampling import sampling_key
from tests.factories import EvalContextFactory, make_study

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("counters_agree")]

ALL_LEFT = {c: "left" for c in ["Fluency", "Identification", "Comforting", "Suggestion", "Overall"]}


def judge_all(study, user, choices=None):
    n = 0
    while (item := allocation.next_item(study, user)) is not None:
        allocation.submit(study, user, item.public_id, choices or ALL_LEFT, client_seconds=5)
        n += 1
    return n


def test_each_item_ends_with_exactly_k_distinct_annotators(annotators):
    study, _, _ = make_study(n_contexts=5, systems=("CARE", "ESConv", "AugESC"), k=3)
    assert study.items.count() == 10
    for user in annotators:
        judge_all(study, user)
    for item in study.items.all():
        users = list(item.judgments.values_list("annotator_id", flat=True))
        assert len(users) == 3 == len(set(users)) == item.judgment_count
    assert Judgment.objects.count() == 30
    assert not Lease.objects.exists()


def test_fewest_judgments_first_and_never_the_same_item_twice(annotators):
    study, _, _ = make_study(n_contexts=4, k=2)
    a, b = annotators[:2]
    first = allocation.next_item(study, a)
    allocation.submit(study, a, first.public_id, ALL_LEFT)
    # b gets an item nobody has judged before the one a judged
    second = allocation.next_item(study, b)
    assert second.public_id != first.public_id
    seen = {first.public_id}
    while (item := allocation.next_item(study, a)) is not None:
        assert item.public_id not in seen
        seen.add(item.public_id)
        allocation.submit(study, a, item.public_id, ALL_LEFT)
    assert len(seen) == 4


def test_a_held_lease_is_returned_again_until_judged(annotators):
    study, _, _ = make_study(n_contexts=3)
    user = annotators[0]
    item = allocation.next_item(study, user)
    again = allocation.next_item(study, user)
    assert again.pk == item.pk
    assert again.lease_expires_at == item.lease_expires_at  # the lease is not extended
    assert again.lease_expires_at == Lease.objects.get(annotator=user).expires_at
    assert [t["text"] for t in again.context.history] == [t["text"] for t in item.context.history]


def test_live_leases_count_against_capacity(annotators):
    study, _, _ = make_study(n_contexts=1, k=2)  # one item
    a, b, c = annotators[:3]
    assert allocation.next_item(study, a) is not None
    assert allocation.next_item(study, b) is not None
    assert allocation.next_item(study, c) is None  # 2 live leases fill k=2


def test_expired_leases_are_reclaimed(annotators):
    study, _, _ = make_study(n_contexts=1, k=1)
    a, b = annotators[:2]
    item = allocation.next_item(study, a)
    assert allocation.next_item(study, b) is None
    Lease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert allocation.next_item(study, b).pk == item.pk
    # a's late answer is refused with a clear message, and b's stands
    with pytest.raises(allocation.LeaseExpired, match="ran out"):
        allocation.submit(study, a, item.public_id, ALL_LEFT)
    allocation.submit(study, b, item.public_id, ALL_LEFT)
    item.refresh_from_db()
    assert item.judgment_count == 1
    assert allocation.reclaim_expired() == 0


def test_submit_is_idempotent(annotators):
    study, _, _ = make_study(n_contexts=2)
    user = annotators[0]
    item = allocation.next_item(study, user)
    first, created = allocation.submit(study, user, item.public_id, ALL_LEFT)
    again, created_again = allocation.submit(study, user, item.public_id, ALL_LEFT)
    assert created and not created_again and first.pk == again.pk
    item.refresh_from_db()
    assert item.judgment_count == 1


@pytest.mark.parametrize(
    "choices, field",
    [
        ({**ALL_LEFT, "Overall": "maybe"}, "choices.Overall"),
        ({k: v for k, v in ALL_LEFT.items() if k != "Fluency"}, "choices.Fluency"),
        ({**ALL_LEFT, "Empathy": "left"}, "choices"),
    ],
)
def test_invalid_choices_name_the_field_and_store_nothing(annotators, choices, field):
    study, _, _ = make_study(n_contexts=1)
    user = annotators[0]
    item = allocation.next_item(study, user)
    with pytest.raises(allocation.InvalidJudgment) as exc:
        allocation.submit(study, user, item.public_id, choices)
    assert exc.value.field == field
    assert not Judgment.objects.exists()
    assert Lease.objects.filter(annotator=user).exists()  # still theirs to finish


def test_cannot_judge_needs_a_reason(annotators):
    study, _, _ = make_study(n_contexts=1)
    user = annotators[0]
    item = allocation.next_item(study, user)
    with pytest.raises(allocation.InvalidJudgment, match="reason"):
        allocation.submit(study, user, item.public_id, {}, cannot_judge=True)
    judgment, _ = allocation.submit(
        study, user, item.public_id, {}, cannot_judge=True, cannot_judge_reason="not English"
    )
    assert judgment.cannot_judge and judgment.choices == {}


def test_quota_limits_each_annotator(annotators):
    study, _, _ = make_study(n_contexts=6, quota_per_annotator=2)
    assert judge_all(study, annotators[0]) == 2
    progress = allocation.progress(study, annotators[0])
    assert (progress.done, progress.total, progress.finished) == (2, 2, True)


def test_progress_counts_done_of_available(annotators):
    study, _, _ = make_study(n_contexts=4, k=1)
    a, b = annotators[:2]
    assert allocation.progress(study, a).total == 4
    item = allocation.next_item(study, b)
    allocation.submit(study, b, item.public_id, ALL_LEFT)
    assert (allocation.progress(study, a).done, allocation.progress(study, a).total) == (0, 3)


def _open_items(study) -> int:
    return study.items.filter(is_gold=False, judgment_count__lt=study.overlap_k).count()


def test_the_open_item_count_is_kept_by_submit_and_counted_again_when_forgotten(annotators):
    study, checkpoints, _ = make_study(n_contexts=4, systems=("CARE", "ESConv", "AugESC"), k=2)
    add_gold_items(study, 2)
    a, b, c = annotators[:3]
    assert allocation.progress(study, a).total == 8  # counted once, then kept
    assert Study.objects.get(pk=study.pk).open_items == 8
    for user in (a, b, c):
        while (item := allocation.next_item(study, user)) is not None:
            allocation.submit(study, user, item.public_id, ALL_LEFT)
            kept = Study.objects.get(pk=study.pk).open_items
            assert kept == _open_items(study), "submit must keep the count exact"
    assert Study.objects.get(pk=study.pk).open_items == 0
    # A change of k goes through Study.save, which forgets the count: 8 items open again.
    study.overlap_k = 3
    study.save(update_fields=["overlap_k"])
    assert Study.objects.get(pk=study.pk).open_items is None
    d = annotators[3]
    assert allocation.progress(study, d).total == 8 == _open_items(study)
    assert Study.objects.get(pk=study.pk).open_items == 8
    # New items (a new context's replies after a requeue) forget it too.
    allocation.progress(study, d)
    context = EvalContextFactory()
    study.contexts.add(context)
    for checkpoint in checkpoints:
        Response.objects.create(
            checkpoint=checkpoint,
            context=context,
            sampling_key=sampling_key(study.sampling),
            text="a late reply",
            parse_status=Response.ParseStatus.NO_REASONING,
        )
    assert build_items(study) == 2
    assert Study.objects.get(pk=study.pk).open_items is None
    assert allocation.progress(study, d).total == 10 == _open_items(study)
    # So does a deleted item.
    study.items.filter(is_gold=False, judgment_count=0).first().delete()
    assert allocation.progress(study, d).total == 9 == _open_items(study)


def test_closed_study_hands_out_nothing(annotators):
    study, _, _ = make_study(n_contexts=1, status=Study.Status.CLOSED)
    with pytest.raises(allocation.StudyNotOpen):
        allocation.next_item(study, annotators[0])


def test_gold_items_are_mixed_in_at_the_study_share(annotators):
    study, _, _ = make_study(n_contexts=10, k=1, gold_share=0.25, seed=7)
    assert add_gold_items(study, 4) == 4
    user = annotators[0]
    seen_gold = 0
    for _ in range(8):
        item = allocation.next_item(study, user)
        seen_gold += item.is_gold
        allocation.submit(study, user, item.public_id, ALL_LEFT)
    # each next item is gold with probability 0.25, from the study's seed (see
    # test_blind_integrity for the share over long sessions and the positions)
    assert 0 < seen_gold < 8
    gold = ComparisonItem.objects.filter(study=study, is_gold=True)
    # the good reply (the human reference) is on the expected side
    for item in gold:
        expected = item.left if item.gold_expected == "left" else item.right
        assert expected.text == item.context.gold_response


def test_left_right_is_balanced_within_each_comparison():
    study, _, _ = make_study(n_contexts=25, systems=("CARE", "ESConv", "AugESC", "ExTES"))
    for comparison in study.comparisons.all():
        left = comparison.items.filter(a_on_left=True).count()
        right = comparison.items.filter(a_on_left=False).count()
        assert left + right == 25 and abs(left - right) <= 1
    sides = list(study.items.order_by("pk").values_list("a_on_left", flat=True))
    assert sides != sorted(sides)  # random, not all one way then the other


def _one_round(study, user):
    item = allocation.next_item(study, user)
    allocation.submit(study, user, item.public_id, ALL_LEFT)


@pytest.mark.parametrize("n_contexts", [3, 40])
def test_query_count_does_not_grow_with_study_size(
    django_assert_max_num_queries, annotators, n_contexts
):
    study, _, _ = make_study(n_contexts=n_contexts, systems=("CARE", "ESConv", "AugESC"))
    user = annotators[0]
    _one_round(study, user)  # warm caches (content types, groups)
    # Each count includes the savepoint and its release (the test runs inside a transaction).
    # Next item: state (progress, quota, held lease, side balance), claim, lease, and the
    # record of what the annotator is shown (Exposure).
    with django_assert_max_num_queries(6):
        item = allocation.next_item(study, user)
    # Submit: the item with this annotator's judgment and lease, insert, count, drop the lease.
    with django_assert_max_num_queries(6):
        allocation.submit(study, user, item.public_id, ALL_LEFT)


def test_a_judgment_keeps_its_items_study_also_when_made_outside_submit(annotators, client):
    """The state query finds judgments by Judgment.study: imports and the admin set it too."""
    study, _, _ = make_study(n_contexts=2, k=2)
    item = study.items.order_by("pk").first()
    made = Judgment.objects.create(item=item, annotator=annotators[0], choices=ALL_LEFT)
    counters.recount_judgments(item.pk)  # as every writer outside submit does
    assert made.study_id == study.pk
    assert allocation.progress(study, annotators[0]).done == 1

    from django.contrib.auth import get_user_model

    boss = get_user_model().objects.create_superuser("boss", password="pw-123456")
    client.force_login(boss)
    add = client.get("/admin/pairwise/judgment/add/")
    assert add.status_code == 200 and 'name="study"' not in add.content.decode()
    change = client.get(f"/admin/pairwise/judgment/{made.pk}/change/")
    assert change.status_code == 200
    assert 'name="item"' not in change.content.decode()  # read-only once made


def test_a_judgment_removed_or_added_in_the_admin_keeps_the_items_count(annotators, client):
    """An admin deletes a bad judgment: the item needs one more, and another annotator gets it."""
    from django.contrib.auth import get_user_model

    study, _, _ = make_study(n_contexts=1, k=2)
    a, b, c, d = annotators[:4]
    item = study.items.get()
    for user in (a, b):
        allocation.submit(study, user, allocation.next_item(study, user).public_id, ALL_LEFT)
    assert allocation.next_item(study, c) is None  # complete
    assert Study.objects.get(pk=study.pk).open_items == 0

    boss = get_user_model().objects.create_superuser("boss", password="pw-123456")
    client.force_login(boss)
    bad = Judgment.objects.get(item=item, annotator=b)
    page = client.post(f"/admin/pairwise/judgment/{bad.pk}/delete/", {"post": "yes"})
    assert page.status_code == 302 and not Judgment.objects.filter(pk=bad.pk).exists()
    item.refresh_from_db()
    assert item.judgment_count == 1
    assert allocation.progress(study, c).total == 1 == _open_items(study)
    assert allocation.next_item(study, c).pk == item.pk  # handed out again

    # A judgment added by hand (say, from a paper form) counts too: the item is complete again.
    Lease.objects.all().delete()
    form = {"item": item.pk, "annotator": d.pk, "choices": '{"Overall": "left"}', "seconds": "0"}
    assert client.post("/admin/pairwise/judgment/add/", form).status_code == 302
    item.refresh_from_db()
    assert item.judgment_count == 2
    assert allocation.progress(study, c).total == 0 == _open_items(study)
    assert allocation.next_item(study, c) is None


def test_new_studies_take_their_lease_time_from_the_setting(settings):
    """LEASE_TTL_SECONDS was documented and read, but studies kept a fixed 15 minutes."""
    from pairwise.services import studies
    from tests.factories import CheckpointFactory, EvalContextFactory

    settings.LEASE_TTL_SECONDS = 120
    care, esconv = CheckpointFactory(), CheckpointFactory()
    study = studies.create_study("ttl", contexts=[EvalContextFactory()], pairs=[(care, esconv)])
    assert study.lease_ttl_seconds == 120
