"""Blind-study integrity: what an annotator is shown, in what order and on which side, is
neither repeated (a reply seen before gives its system away) nor predictable."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from pairwise.models import (
    Comparison,
    ComparisonItem,
    EvalContext,
    Exposure,
    Judgment,
    Response,
    Study,
)
from pairwise.services import allocation, exposure, studies
from pairwise.services.items import add_gold_items, build_items
from pairwise.services.sampling import sampling_key
from tests.factories import (
    CheckpointFactory,
    EvalContextFactory,
    SystemFactory,
    annotator,
    join,
    make_study,
    researcher,
)

pytestmark = pytest.mark.django_db
SHARING_A = ("CARE", "ESConv", "AugESC", "ExTES")  # the paper's design: A against 3 baselines


def _judge(study, user, item, **kw):
    allocation.submit(study, user, item.public_id, {c: "left" for c in study.criteria}, **kw)


def take_turns(study, users) -> dict[int, list[ComparisonItem]]:
    """Annotators take one item each in turn until none is left for anyone."""
    shown = {u.pk: [] for u in users}
    active = list(users)
    while active:
        for user in list(active):
            item = allocation.next_item(study, user)
            if item is None:
                active.remove(user)
                continue
            shown[user.pk].append(item)
            _judge(study, user, item)
    return shown


def _texts(item) -> set[str]:
    return {item.response_a.text, item.response_b.text}


def _repeats(shown) -> int:
    n = 0
    for items in shown.values():
        seen: set[str] = set()
        for item in items:
            n += bool(_texts(item) & seen)
            seen |= _texts(item)
    return n


def test_a_sufficient_pool_taking_turns_sees_no_reply_twice():
    study, _, _ = make_study(n_contexts=12, systems=SHARING_A, k=3, seed=101)
    assert exposure.min_pool(study) == 9  # the CARE reply of a context is in 3 items
    shown = take_turns(study, [annotator(username=f"t{i}") for i in range(10)])
    assert _repeats(shown) == 0
    assert not Exposure.objects.filter(study=study, prior__gt=0).exists()
    assert set(study.items.values_list("judgment_count", flat=True)) == {3}
    for item in study.items.all():
        assert item.judgments.values("annotator").distinct().count() == 3


def test_a_pool_too_small_allows_repeats_and_records_them():
    study, _, _ = make_study(n_contexts=5, systems=SHARING_A, k=3, seed=102)
    shown = take_turns(study, [annotator(username=f"s{i}") for i in range(3)])
    # completeness wins: every item still gets exactly k judgments
    assert set(study.items.values_list("judgment_count", flat=True)) == {3}
    repeats = _repeats(shown)
    assert repeats > 0
    judged = Judgment.objects.filter(study=study)
    assert judged.filter(prior_exposures__gt=0).count() == repeats
    assert exposure.repeat_exposures(study) == repeats
    # a CARE reply shown the third time was seen twice before, but counts as one of 2 replies
    assert set(judged.values_list("prior_exposures", flat=True)) <= {0, 1, 2}
    # and exported: one long-format row per judgment and criterion
    from pairwise.services.export import long_dataframe

    exported = long_dataframe(study)
    repeated = exported[exported["prior_exposures"] > 0]
    assert repeated["item_id"].nunique() <= repeats
    assert len(repeated) == repeats * len(study.criteria)


def test_an_identical_text_in_another_item_counts_as_seen():
    """A baseline that answers two contexts with the same words gives itself away the same way
    as a repeated row: the annotator gets the unrelated item first."""
    study, (a, b), contexts = make_study(n_contexts=3, k=1, with_responses=False, seed=103)
    key = sampling_key(study.sampling)
    for i, ctx in enumerate(contexts):
        Response.objects.create(
            checkpoint=a, context=ctx, sampling_key=key, text=f"a{i}", parse_status="no_reasoning"
        )
        generic = "I hear you." if i < 2 else "Tell me more about your week."
        Response.objects.create(
            checkpoint=b, context=ctx, sampling_key=key, text=generic, parse_status="no_reasoning"
        )
    build_items(study)
    user = annotator(username="id-text")
    first = allocation.next_item(study, user)
    _judge(study, user, first)
    second = allocation.next_item(study, user)
    _judge(study, user, second)
    if "I hear you." in _texts(first):
        assert "I hear you." not in _texts(second)
    third = allocation.next_item(study, user)  # only the repeat is left, and no one else works
    _judge(study, user, third)
    assert Judgment.objects.get(annotator=user, item=third).prior_exposures == 1
    assert allocation.next_item(study, user) is None


def test_a_repeat_waits_while_someone_else_at_work_could_see_it_fresh():
    study, _, _ = make_study(n_contexts=1, systems=("CARE", "ESConv", "AugESC"), k=1, seed=104)
    u, v = annotator(username="fast"), annotator(username="other")
    _judge(study, u, allocation.next_item(study, u))
    v_item = allocation.next_item(study, v)  # v is at work (on the item u could not see fresh)
    assert allocation.next_item(study, u) is None  # so u does not get the repeat
    _judge(study, v, v_item)
    assert set(study.items.values_list("judgment_count", flat=True)) == {1}


def test_the_context_rule_never_shows_a_dialogue_twice():
    study, _, _ = make_study(
        n_contexts=6, systems=SHARING_A, k=2, seed=105, exposure=Study.ExposureRule.CONTEXT
    )
    add_gold_items(study, 2)
    assert exposure.min_pool(study) == 2 * 4  # 3 comparisons and a gold item on a context
    shown = take_turns(study, [annotator(username=f"c{i}") for i in range(8)])
    for items in shown.values():
        contexts = [i.context_id for i in items]
        assert len(contexts) == len(set(contexts))
    assert set(study.items.filter(is_gold=False).values_list("judgment_count", flat=True)) == {2}


def test_the_rule_none_keeps_no_record_out():
    study, _, _ = make_study(
        n_contexts=2, systems=SHARING_A, k=1, seed=106, exposure=Study.ExposureRule.NONE
    )
    assert exposure.min_pool(study) == 1
    user = annotator(username="none-rule")
    shown = take_turns(study, [user])
    assert len(shown[user.pk]) == 6 and _repeats(shown) > 0


def test_min_pool_before_opening_and_repeats_once_open_are_on_the_study_page(client):
    care, *baselines = (CheckpointFactory(system=SystemFactory(name=s)) for s in SHARING_A)
    study = studies.create_study(
        "paper design", contexts=[EvalContextFactory()], pairs=[(care, b) for b in baselines]
    )
    assert exposure.min_pool(study) == 9  # from the design, before any item exists
    rex = researcher(study, username="rex")
    client.force_login(rex)
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert 'id="min-pool"' in page and "<strong>9</strong>" in page
    assert str(study.seed) in page  # researchers can audit the seed
    api = client.get(f"/api/studies/{study.pk}/").json()
    assert api["seed"] == study.seed and api["exposure"] == "response"
    assert api["blinding"] == {"rule": "response", "min_pool": 9, "repeat_exposures": 0}

    small, _, _ = make_study(n_contexts=2, systems=SHARING_A, k=3, seed=107)
    take_turns(small, [annotator(username=f"p{i}") for i in range(3)])
    join(small, rex, role="researcher")
    page = client.get(f"/studies/{small.pk}/").content.decode()
    n = exposure.repeat_exposures(small)
    assert n > 0 and f'id="repeat-exposures"><strong>{n}</strong>' in page


# --- Seeds: sides and serving order ------------------------------------------------------------


def test_each_study_gets_a_secret_seed_and_an_explicit_one_reproduces_it():
    care, esconv = CheckpointFactory(), CheckpointFactory()
    contexts = [EvalContextFactory() for _ in range(30)]

    def study(name, seed=None):
        s = studies.create_study(name, contexts=contexts, pairs=[(care, esconv)], seed=seed)
        key = sampling_key(s.sampling)
        for ck in (care, esconv):
            for ctx in contexts:
                Response.objects.get_or_create(
                    checkpoint=ck,
                    context=ctx,
                    sampling_key=key,
                    defaults={"text": f"{ck.pk}:{ctx.pk}", "parse_status": "no_reasoning"},
                )
        build_items(s)
        return s

    def layout(s):
        rows = s.items.order_by("context_id").values_list("a_on_left", "order_key")
        return [side for side, _ in rows], [k for _, k in rows]

    one, two = study("one"), study("two")
    assert one.seed != two.seed and min(one.seed, two.seed) > 2**31  # not 13, not small
    assert layout(one) != layout(two)  # same contexts, same checkpoints, other seed
    again = study("again", seed=one.seed)
    assert layout(again) == layout(one)


def test_sides_stay_balanced_per_comparison_and_even_out_per_annotator():
    study, _, _ = make_study(n_contexts=40, systems=("CARE", "ESConv", "AugESC"), k=3, seed=108)
    for comparison in study.comparisons.all():
        left = comparison.items.filter(a_on_left=True).count()
        assert abs(2 * left - 40) <= 1
    shown = take_turns(study, [annotator(username=f"b{i}") for i in range(8)])
    for items in shown.values():
        balance, worst_before_the_end = 0, 0
        for n, item in enumerate(items, start=1):
            balance += 1 if item.a_on_left else -1
            if n <= 0.9 * len(items):
                worst_before_the_end = max(worst_before_the_end, abs(balance))
        # The stated bound: |A left - A right| <= 1 while both sides are open to them; the last
        # items of a study may all lie on one side.
        assert worst_before_the_end <= 1
        assert abs(balance) <= 3
        assert len(items) >= 25  # a long session: 240 judgments among 8


# --- Gold items ----------------------------------------------------------------------------------


def test_gold_items_come_at_random_positions_with_controls_from_a_large_pool():
    study, _, contexts = make_study(n_contexts=60, k=3, gold_share=0.25, seed=109)
    assert add_gold_items(study, 15) == 15
    gold = list(study.items.filter(is_gold=True).select_related("context", "response_b"))
    controls = [g.response_b.text for g in gold]
    assert len(set(controls)) == 15  # no small set of texts to learn
    by_text = {c.gold_response: c for c in EvalContext.objects.all()}
    for g in gold:  # a fluent human reply, from another dialogue
        source = by_text[g.response_b.text]
        assert source.dialogue_id != g.context.dialogue_id
    positions = {}
    for u in range(4):
        user = annotator(username=f"g{u}")
        flags = []
        for _ in range(40):
            item = allocation.next_item(study, user)
            flags.append(item.is_gold)
            _judge(study, user, item)
        positions[u] = tuple(i for i, f in enumerate(flags) if f)
    n_gold = sum(len(p) for p in positions.values())
    assert 0.15 <= n_gold / 160 <= 0.35  # drawn with probability 0.25
    assert len(set(positions.values())) == 4  # each annotator's gold positions differ
    for p in positions.values():
        gaps = {b - a for a, b in zip(p, p[1:], strict=False)}
        assert len(gaps) > 1  # not every 1/share items


def test_gold_controls_can_be_the_researchers_list():
    pool = [f"Have you thought about tomorrow's weather in city {i}?" for i in range(5)]
    study, _, _ = make_study(n_contexts=5, gold_share=0.5, seed=110, gold_controls=pool)
    add_gold_items(study, 5)
    used = set(study.items.filter(is_gold=True).values_list("response_b__text", flat=True))
    assert used == set(pool)


# --- Timing ---------------------------------------------------------------------------------------


def test_seconds_are_measured_on_the_server_and_the_clients_are_kept_apart():
    study, _, _ = make_study(n_contexts=2, k=1, seed=111)
    user = annotator(username="timer")
    t0 = timezone.now()
    item = allocation.next_item(study, user, now=t0)
    _judge(study, user, item, client_seconds=600.0, now=t0 + timedelta(seconds=2))
    judgment = Judgment.objects.get(item=item)
    assert judgment.seconds == pytest.approx(2.0)  # what the too-fast flag reads
    assert judgment.client_seconds == 600.0


@pytest.mark.parametrize("bad", [0, -1, 10**9, float("inf"), float("nan"), "fast"])
def test_a_client_duration_outside_the_lease_is_refused(bad):
    study, _, _ = make_study(n_contexts=1, k=1, seed=112)
    user = annotator(username="liar")
    item = allocation.next_item(study, user)
    with pytest.raises(allocation.InvalidJudgment, match="seconds"):
        _judge(study, user, item, client_seconds=bad)
    assert not Judgment.objects.exists()


def test_the_api_stores_the_clients_seconds_apart_and_names_a_bad_value():
    study, _, _ = make_study(n_contexts=2, k=1, seed=113)
    client = Client()
    client.force_login(annotator(study, username="api-timer"))
    item = client.get(f"/api/annotator/studies/{study.pk}/next/").json()["item"]["id"]
    body = {"item": item, "choices": {c: "tie" for c in study.criteria}}
    url = f"/api/annotator/studies/{study.pk}/judgments/"
    too_long = client.post(url, {**body, "seconds": 10**7}, content_type="application/json")
    assert too_long.status_code == 400 and "seconds" in too_long.json()
    ok = client.post(url, {**body, "seconds": 42.5}, content_type="application/json")
    assert ok.status_code == 201
    judgment = Judgment.objects.get()
    assert judgment.client_seconds == 42.5 and judgment.seconds < 42.5


def test_comparison_sides_are_not_recomputable_from_the_old_fixed_seed():
    """Before, every study used seed 13: Random(f"13:{comparison}:{n}") gave the sides away."""
    import random

    study, _, _ = make_study(n_contexts=20, seed=Study._meta.get_field("seed").default())
    comparison = Comparison.objects.get(study=study)
    rng = random.Random(f"13:{comparison.pk}:0")
    guess = [rng.random() < 0.5 for _ in range(20)]
    actual = list(study.items.order_by("pk").values_list("a_on_left", flat=True))
    assert study.seed != 13 and actual != guess
