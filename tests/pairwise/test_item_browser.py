"""The researcher's item browser: filters, what each item shows, who may see it, escaping.

One small study (CARE against ESConv and AugESC, three contexts each: six items) with hand-made
judgments whose outcomes are known: the service, the page (`/studies/<id>/items/`) and the API
(`/api/studies/<id>/items/`) are checked against them.
"""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from models.care_format import format_care_output, parse_care_output
from pairwise.models import Judgment, Response
from pairwise.services import browser
from tests.factories import annotator, make_study, researcher

pytestmark = pytest.mark.django_db

CHAIN = {
    "context": "The seeker lost their job last week.",
    "cognition": "They believe they failed their family.",
    "emotion": "Shame and fear.",
    "strategy": "Question",
    "plan": "Ask how they are coping.",
}


def _side(item, outcome: str) -> str:
    """The blinded answer an annotator gives for `outcome` ("a", "b" or "tie") on `item`."""
    if outcome == "tie":
        return "tie"
    a_side = "left" if item.a_on_left else "right"
    return a_side if outcome == "a" else ("right" if a_side == "left" else "left")


def _judge(item, user, overall: str, *, fluency: str | None = None, **kw) -> Judgment:
    choices = {c: _side(item, overall) for c in item.study.criteria}
    if fluency:
        choices["Fluency"] = _side(item, fluency)
    return Judgment.objects.create(item=item, annotator=user, choices=choices, **kw)


def _care(response: Response, reply: str, **nodes) -> None:
    """Make `response` a CARE output: raw text with a chain, split by the one parser."""
    raw = format_care_output(**{**CHAIN, **nodes}, response=reply)
    parsed = parse_care_output(raw)
    response.raw_output = raw
    response.reasoning = parsed.reasoning
    response.text = parsed.response
    response.parse_status = parsed.status
    response.strategy = parsed.strategy
    response.save()


@pytest.fixture
def site(db) -> dict:
    study, (care, esconv, augesc), _ = make_study(
        n_contexts=3, systems=("CARE", "ESConv", "AugESC"), k=3
    )
    care.reasoning = True
    care.save(update_fields=["reasoning"])
    c1, c2 = study.comparisons.order_by("pk")
    items = list(study.items.order_by("pk"))
    assert [i.comparison_id for i in items] == [c1.pk] * 3 + [c2.pk] * 3
    owner = researcher(study, username="ib-owner")
    anns = [annotator(study, username=f"ib-ann{i}") for i in range(3)]
    x, y, z = anns
    # item 0: A unanimously on Overall, B unanimously on Fluency; one comment
    _judge(items[0], x, "a", fluency="b", comment="A asks a real question", seconds=41.5)
    _judge(items[0], y, "a", fluency="b", seconds=12.0)
    _judge(items[0], z, "a", fluency="b", seconds=7.25)
    # item 1: B by majority (2 of 3)
    for user, answer in zip(anns, "abb", strict=True):
        _judge(items[1], user, answer, seconds=20.0)
    # item 2: a, b, tie: no majority
    for user, answer in zip(anns, ("a", "b", "tie"), strict=True):
        _judge(items[2], user, answer, seconds=20.0)
    # item 3: tie by both who answered; the third could not judge (left out of the vote)
    _judge(items[3], x, "tie", seconds=9.0)
    _judge(items[3], y, "tie", seconds=9.0, comment="both fine")
    Judgment.objects.create(
        item=items[3], annotator=z, cannot_judge=True, cannot_judge_reason="garbled", seconds=3.0
    )
    # item 4: a single answer for B; item 5: not judged
    _judge(items[4], x, "b", seconds=15.0)
    # the CARE reply of item 0: a complete chain; of item 1: the emotion node left out
    _care(items[0].response_a, "How are you coping with it?")
    raw = (
        "<think><context>Lost a job.</context><cognition>Blames self.</cognition>"
        '<plan strategy="Question">Ask.</plan></think>\nWhat happened next?'
    )
    parsed = parse_care_output(raw)
    assert parsed.status == "missing_node"
    Response.objects.filter(pk=items[1].response_a_id).update(
        raw_output=raw,
        reasoning=parsed.reasoning,
        text=parsed.response,
        parse_status="missing_node",
    )
    return {
        "study": study,
        "items": items,
        "c1": c1,
        "c2": c2,
        "care": care,
        "esconv": esconv,
        "owner": owner,
        "annotators": anns,
    }


def _ids(found: dict) -> list[str]:
    return [i["id"] for i in found["items"]]


def _pub(site, *idx) -> list[str]:
    return [site["items"][i].public_id for i in idx]


# --- The pure parts ----------------------------------------------------------------------------


def test_item_outcome_counts_a_majority_as_more_than_half():
    assert browser.item_outcome(["a", "a", "a"]) == {
        "outcome": "a",
        "agreement": 1.0,
        "level": "unanimous",
        "n": 3,
        "a": 3,
        "b": 0,
        "tie": 0,
    }
    two_of_three = browser.item_outcome(["b", "a", "b"])
    assert (two_of_three["outcome"], two_of_three["level"]) == ("b", "majority")
    assert two_of_three["agreement"] == pytest.approx(2 / 3)
    # two of four is not more than half
    half = browser.item_outcome(["a", "a", "b", "tie"])
    assert (half["outcome"], half["level"], half["agreement"]) == ("no_majority", "split", 0.5)
    assert browser.item_outcome([])["outcome"] == "unjudged"
    with pytest.raises(ValueError, match="outcomes"):
        browser.item_outcome(["left"])


def test_answers_are_translated_to_a_and_b_from_the_side_a_was_shown_on():
    assert browser.answer_from_a("left", True) == "a"
    assert browser.answer_from_a("left", False) == "b"
    assert browser.answer_from_a("right", False) == "a"
    assert browser.answer_from_a("tie", False) == "tie"
    assert browser.answer_from_a(None, True) is None


# --- Filters -----------------------------------------------------------------------------------


def test_each_filter_selects_the_items_it_names(site):
    study, c1, c2 = site["study"], site["c1"], site["c2"]
    assert _ids(browser.browse_items(study)) == _pub(site, 0, 1, 2, 3, 4, 5)
    assert _ids(browser.browse_items(study, comparison=c1.pk)) == _pub(site, 0, 1, 2)
    assert _ids(browser.browse_items(study, comparison=str(c2.pk))) == _pub(site, 3, 4, 5)
    assert _ids(browser.browse_items(study, comparison="gold")) == []
    expected = {"a": [0], "b": [1, 4], "tie": [3], "no_majority": [2], "unjudged": [5]}
    for outcome, idx in expected.items():
        assert _ids(browser.browse_items(study, outcome=outcome)) == _pub(site, *idx), outcome
    levels = {"unanimous": [0, 3], "majority": [1], "split": [2], "single": [4], "unjudged": [5]}
    for level, idx in levels.items():
        assert _ids(browser.browse_items(study, agreement=level)) == _pub(site, *idx), level
    assert _ids(browser.browse_items(study, has_comment="true")) == _pub(site, 0, 3)
    assert _ids(browser.browse_items(study, has_comment=False)) == _pub(site, 1, 2, 4, 5)
    # combined, and on another criterion: item 0 is B's on Fluency
    both = browser.browse_items(study, comparison=c2.pk, agreement="unanimous", has_comment="1")
    assert _ids(both) == _pub(site, 3)
    fluency = browser.browse_items(study, criterion="Fluency", outcome="b")
    assert fluency["criterion"] == "Fluency" and _ids(fluency) == _pub(site, 0, 1, 4)


def test_summary_counts_answers_on_the_criterion_without_cannot_judge(site):
    found = browser.browse_items(site["study"], comparison=site["c2"].pk)
    tie = found["items"][0]["summary"]
    assert (tie["outcome"], tie["n"], tie["tie"], tie["agreement"]) == ("tie", 2, 2, 1.0)
    assert found["criterion"] == "Overall"


def test_default_criterion_is_overall_else_the_last(site):
    study = site["study"]
    assert browser.default_criterion(study) == "Overall"
    study.criteria = ["Fluency", "Comforting"]
    assert browser.default_criterion(study) == "Comforting"


@pytest.mark.parametrize(
    "param, value",
    [
        ("comparison", "999999"),
        ("comparison", "abc"),
        ("comparison", "²"),
        ("outcome", "A wins"),
        ("agreement", "most"),
        ("has_comment", "maybe"),
        ("criterion", "Empathy"),
        ("page", "0"),
        ("page", "x"),
        ("page", "2"),  # past the last page
        ("page", "9" * 5000),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(site, param, value):
    with pytest.raises(browser.BrowseError, match=f"^{param}: "):
        browser.browse_items(site["study"], **{param: value})
    client = Client()
    client.force_login(site["owner"])
    page = client.get(f"/studies/{site['study'].pk}/items/", {param: value})
    assert page.status_code == 400 and page.content.decode().startswith(f"{param}: ")
    api = APIClient()
    api.force_authenticate(site["owner"])
    r = api.get(f"/api/studies/{site['study'].pk}/items/", {param: value})
    assert r.status_code == 400 and param in r.json(), r.json()


def test_pages_hold_25_items_and_read_a_bounded_number_of_queries(
    db, django_assert_max_num_queries
):
    study, _, _ = make_study(n_contexts=27, k=1)
    owner = researcher(study, username="ib-pages")
    ann = annotator(study, username="ib-pages-ann")
    for item in study.items.all():
        _judge(item, ann, "a", comment="c", seconds=5.0)
    with django_assert_max_num_queries(8):
        first = browser.browse_items(study, outcome="a")
    assert (first["count"], first["num_pages"], len(first["items"])) == (27, 2, 25)
    second = browser.browse_items(study, page=2)
    assert len(second["items"]) == 2
    client = Client()
    client.force_login(owner)
    body = client.get(f"/studies/{study.pk}/items/", {"outcome": "a"}).content.decode()
    assert "?outcome=a&amp;criterion=Overall&amp;page=2" in body


# --- What an item shows ------------------------------------------------------------------------


def test_an_item_shows_context_replies_care_nodes_and_judgments(site):
    found = browser.browse_items(site["study"], comparison=site["c1"].pk)
    item = found["items"][0]
    assert item["comparison"]["label"] == f"{site['care'].label} vs {site['esconv'].label}"
    assert item["context"]["history"][0] == {
        "speaker": "seeker",
        "text": "I lost my job last week.",
        "strategy": None,
    }
    a, b = item["reply_a"], item["reply_b"]
    assert (a["system"], a["checkpoint"], a["text"]) == (
        "CARE",
        site["care"].label,
        "How are you coping with it?",
    )
    assert (b["system"], b["checkpoint"], b["reasoning"]) == ("ESConv", site["esconv"].label, None)
    reasoning = a["reasoning"]
    assert reasoning["status"] == "complete" and reasoning["strategy"] == "Question"
    assert [(n["label"], n["text"]) for n in reasoning["nodes"]] == [
        ("Context", CHAIN["context"]),
        ("Cognition", CHAIN["cognition"]),
        ("Emotion", CHAIN["emotion"]),
        ("Support Plan", CHAIN["plan"]),
    ]
    missing = found["items"][1]["reply_a"]["reasoning"]
    assert missing["status"] == "missing_node"
    assert [n["text"] for n in missing["nodes"]] == ["Lost a job.", "Blames self.", None, "Ask."]
    judged = item["judgments"]
    assert [j["annotator"] for j in judged] == ["ib-ann0", "ib-ann1", "ib-ann2"]
    assert (judged[0]["comment"], judged[0]["seconds"]) == ("A asks a real question", 41.5)
    assert judged[0]["choices"]["Overall"] == "a" and judged[0]["choices"]["Fluency"] == "b"
    assert list(judged[0]["choices"]) == site["study"].criteria


def test_the_page_shows_the_same(site):
    client = Client()
    client.force_login(site["owner"])
    study = site["study"]
    detail = client.get(f"/studies/{study.pk}/").content.decode()
    assert f'href="/studies/{study.pk}/items/"' in detail
    r = client.get(f"/studies/{study.pk}/items/", {"comparison": site["c1"].pk})
    assert r.status_code == 200
    body = r.content.decode()
    assert "3 items; page 1 of 1." in body
    assert "I lost my job last week." in body
    assert site["care"].label in body and site["esconv"].label in body
    for label in ("Context", "Cognition", "Emotion", "Support Plan"):
        assert f"<dt>{label}</dt>" in body
    assert CHAIN["cognition"] in body
    assert "CARE reasoning: complete" in body and "CARE reasoning: missing node" in body
    assert "<em>missing</em>" in body
    assert "A asks a real question" in body and "41.5" in body
    assert '<strong class="outcome">A wins</strong>' in body
    assert "no majority" in body
    # the cannot-judge judgment and its reason, on the other comparison
    other = client.get(f"/studies/{study.pk}/items/", {"comparison": site["c2"].pk})
    assert "cannot judge: garbled" in other.content.decode()


def test_the_api_shows_the_same(site):
    api = APIClient()
    api.force_authenticate(site["owner"])
    r = api.get(f"/api/studies/{site['study'].pk}/items/", {"has_comment": "true", "outcome": "a"})
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 1 and body["filters"]["has_comment"] is True
    item = body["items"][0]
    assert item["id"] == site["items"][0].public_id
    assert [n["name"] for n in item["reply_a"]["reasoning"]["nodes"]] == [
        "context",
        "cognition",
        "emotion",
        "plan",
    ]
    assert item["reply_a"]["parse_status"] == "complete"
    assert item["judgments"][0]["comment"] == "A asks a real question"
    assert item["judgments"][0]["seconds"] == 41.5
    assert item["summary"] == {
        "criterion": "Overall",
        "label": "A wins",
        "outcome": "a",
        "agreement": 1.0,
        "level": "unanimous",
        "n": 3,
        "a": 3,
        "b": 0,
        "tie": 0,
    }


# --- Who may see it ----------------------------------------------------------------------------


def test_annotators_get_403_on_the_page_and_the_api(site):
    member = site["annotators"][0]  # an annotator of this very study
    client = Client()
    client.force_login(member)
    assert client.get(f"/studies/{site['study'].pk}/items/").status_code == 403
    api = APIClient()
    api.force_authenticate(member)
    assert api.get(f"/api/studies/{site['study'].pk}/items/").status_code == 403


def test_a_researcher_of_another_study_gets_404_as_elsewhere(site):
    stranger = researcher(username="ib-stranger")
    client = Client()
    client.force_login(stranger)
    assert client.get(f"/studies/{site['study'].pk}/items/").status_code == 404
    api = APIClient()
    api.force_authenticate(stranger)
    assert api.get(f"/api/studies/{site['study'].pk}/items/").status_code == 404
    assert Client().get(f"/studies/{site['study'].pk}/items/").status_code == 302  # login


# --- Model output is untrusted -----------------------------------------------------------------


def test_model_output_and_comments_are_escaped(site):
    item = site["items"][0]
    _care(
        item.response_a,
        "<script>alert('reply')</script>",
        emotion="<img src=x onerror=alert(1)>",
    )
    Response.objects.filter(pk=item.response_b_id).update(text="<b>bold</b> & more")
    Judgment.objects.filter(item=item, comment__startswith="A asks").update(
        comment="<script>alert('comment')</script>"
    )
    client = Client()
    client.force_login(site["owner"])
    body = client.get(f"/studies/{site['study'].pk}/items/").content.decode()
    assert "<script>alert" not in body and "<img src=x" not in body and "<b>bold" not in body
    assert "&lt;script&gt;alert(&#x27;reply&#x27;)&lt;/script&gt;" in body
    assert "&lt;script&gt;alert(&#x27;comment&#x27;)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in body


def test_the_schema_documents_the_items_operation():
    from drf_spectacular.generators import SchemaGenerator

    spec = SchemaGenerator().get_schema(request=None, public=True)
    op = spec["paths"]["/api/studies/{id}/items/"]["get"]
    assert {"200", "400", "401", "403", "404"} <= set(op["responses"])
    query = [p["name"] for p in op["parameters"] if p["in"] == "query"]
    assert query == ["agreement", "comparison", "criterion", "has_comment", "outcome", "page"]
