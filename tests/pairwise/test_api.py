"""The REST API: annotator flow, researcher study management, auth, JSON errors, schema."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from pairwise.models import Judgment, Study
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


@pytest.fixture
def ann_client():
    client = APIClient()
    client.user = annotator(username="api-ann")  # tests make it a member of their studies
    client.force_authenticate(client.user)
    return client


@pytest.fixture
def res_client():
    client = APIClient()
    client.user = researcher(username="api-res")
    client.force_authenticate(client.user)
    return client


def test_annotator_flow_next_submit_progress(ann_client):
    study, _, _ = make_study(n_contexts=2, k=1)
    join(study, ann_client.user)
    base = f"/api/annotator/studies/{study.pk}"
    seen = set()
    while True:
        nxt = ann_client.get(f"{base}/next/").json()
        if nxt["done"]:
            break
        item = nxt["item"]
        assert set(item) == {"id", "history", "left", "right"}
        seen.add(item["id"])
        r = ann_client.post(
            f"{base}/judgments/",
            {"item": item["id"], "choices": {c: "right" for c in study.criteria}},
            format="json",
        )
        assert r.status_code == 201 and r.json()["created"]
        again = ann_client.post(
            f"{base}/judgments/",
            {"item": item["id"], "choices": {c: "right" for c in study.criteria}},
            format="json",
        )
        assert again.status_code == 200 and not again.json()["created"]
    assert len(seen) == 2 == Judgment.objects.count()
    assert ann_client.get(f"{base}/progress/").json() == {"done": 2, "total": 2}


def test_next_item_answers_in_the_documented_shape(ann_client):
    """The view builds its JSON by hand (for speed): hold it to NextItemSerializer, the schema."""
    from pairwise.api.serializers import NextItemSerializer

    study, _, _ = make_study(n_contexts=1, k=1)
    join(study, ann_client.user)
    base = f"/api/annotator/studies/{study.pk}"
    body = ann_client.get(f"{base}/next/").json()
    documented = NextItemSerializer(data=body)
    assert documented.is_valid(), documented.errors
    assert set(body) == set(NextItemSerializer().fields)
    assert set(body["item"]) == {"id", "history", "left", "right"}
    assert body["lease_expires_at"].endswith("Z")  # as DRF's DateTimeField writes it
    item = body["item"]["id"]
    ties = {c: "tie" for c in study.criteria}
    ann_client.post(f"{base}/judgments/", {"item": item, "choices": ties}, format="json")
    done = ann_client.get(f"{base}/next/").json()
    assert done == {"done": True, "progress": {"done": 1, "total": 1}}
    assert NextItemSerializer(data=done).is_valid()


def test_annotator_endpoints_answer_404_for_a_study_that_is_not_open(ann_client):
    closed, _, _ = make_study(n_contexts=1, status=Study.Status.CLOSED)
    join(closed, ann_client.user)  # a member: the study being closed is what answers 404
    for study_id in (closed.pk, closed.pk + 1000):
        for path in ("next", "progress"):
            r = ann_client.get(f"/api/annotator/studies/{study_id}/{path}/")
            assert r.status_code == 404 and "detail" in r.json()


def test_validation_errors_are_json_naming_the_field(ann_client):
    study, _, _ = make_study(n_contexts=1)
    join(study, ann_client.user)
    base = f"/api/annotator/studies/{study.pk}"
    item = ann_client.get(f"{base}/next/").json()["item"]["id"]
    r = ann_client.post(
        f"{base}/judgments/", {"item": item, "choices": {"Overall": "left"}}, format="json"
    )
    assert r.status_code == 400 and "choices.Fluency" in r.json()
    r = ann_client.post(f"{base}/judgments/", {"choices": {}}, format="json")
    assert r.status_code == 400 and "item" in r.json()
    all_tie = {c: "tie" for c in study.criteria}
    r = ann_client.post(f"{base}/judgments/", {"item": "nope", "choices": all_tie}, format="json")
    assert r.status_code == 400 and "item" in r.json()


def test_expired_lease_is_a_409_with_a_message(ann_client):
    from django.utils import timezone

    from pairwise.models import Lease

    study, _, _ = make_study(n_contexts=1)
    join(study, ann_client.user)
    base = f"/api/annotator/studies/{study.pk}"
    item = ann_client.get(f"{base}/next/").json()["item"]["id"]
    Lease.objects.update(expires_at=timezone.now())
    r = ann_client.post(
        f"{base}/judgments/",
        {"item": item, "choices": {c: "tie" for c in study.criteria}},
        format="json",
    )
    assert r.status_code == 409 and r.json()["code"] == "lease_expired"


def test_roles_are_enforced(ann_client, res_client):
    study, _, _ = make_study(n_contexts=1)
    assert ann_client.get("/api/studies/").status_code == 403
    assert ann_client.post(f"/api/studies/{study.pk}/close/").status_code == 403
    assert res_client.get(f"/api/annotator/studies/{study.pk}/next/").status_code == 403
    assert APIClient().get("/api/studies/").status_code in (401, 403)


def _token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_token_authentication_and_roles(django_assert_num_queries):
    from django.contrib.auth.models import Group

    user = annotator(username="tok-ann")
    client = _token_client(user)
    with django_assert_num_queries(2):  # token with its user and roles, then the studies
        assert client.get("/api/annotator/studies/").status_code == 200
    # roles are read on every request, never remembered across them
    user.groups.remove(Group.objects.get(name="annotator"))
    assert client.get("/api/annotator/studies/").status_code == 403
    user.groups.add(Group.objects.get(name="researcher"))
    assert client.get("/api/studies/").status_code == 200
    assert (
        _token_client(researcher(username="tok-res")).get("/api/annotator/studies/").status_code
        == 403
    )


def test_bad_or_inactive_tokens_are_refused():
    user = annotator(username="tok-off")
    client = _token_client(user)
    user.is_active = False
    user.save()
    r = client.get("/api/annotator/studies/")
    # 401 with a challenge: the token scheme comes first (a session names none)
    assert r.status_code == 401 and "inactive" in r.json()["detail"]
    assert r["WWW-Authenticate"] == "Token"
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    r = stranger.get("/api/annotator/studies/")
    assert r.status_code == 401 and r.json()["detail"] == "Invalid token."


@pytest.mark.django_db(transaction=True)
def test_researcher_creates_opens_and_closes_a_study(res_client):
    care = CheckpointFactory(system=SystemFactory(name="CARE"), reasoning=True)
    base = CheckpointFactory(system=SystemFactory(name="ESConv"))
    contexts = [EvalContextFactory().pk for _ in range(3)]
    r = res_client.post(
        "/api/studies/",
        {
            "name": "api study",
            "contexts": contexts,
            "comparisons": [["CARE", f"ESConv v{base.version}"]],
            "overlap_k": 2,
        },
        format="json",
    )
    assert r.status_code == 201, r.json()
    study_id = r.json()["id"]
    assert r.json()["comparisons"] == [
        {"id": r.json()["comparisons"][0]["id"], "a": care.label, "b": base.label}
    ]
    opened = res_client.post(f"/api/studies/{study_id}/open/").json()
    assert opened["status"] == "open" and opened["batches"] == 2
    detail = res_client.get(f"/api/studies/{study_id}/").json()
    assert detail["progress"]["items_total"] == 3
    assert detail["generation"]["generated"] == 6
    assert res_client.post(f"/api/studies/{study_id}/close/").json()["status"] == "closed"


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"contexts": [], "comparisons": [["CARE", "ESConv"]]}, "contexts"),
        ({"contexts": [999999], "comparisons": [["CARE", "ESConv"]]}, "contexts"),
        ({"comparisons": [["CARE", "Nope"]]}, "comparisons"),
        ({"comparisons": [["CARE", "CARE"]]}, "comparisons"),
        ({"comparisons": [["CARE", "ESConv"]], "overlap_k": 0}, "overlap_k"),
        ({"comparisons": [["CARE", "ESConv"]], "sampling": {"temp": 1}}, "sampling"),
    ],
)
def test_bad_study_input_names_the_field_and_creates_nothing(res_client, payload, field):
    CheckpointFactory(system=SystemFactory(name="CARE"))
    CheckpointFactory(system=SystemFactory(name="ESConv"))
    body = {"name": "bad", "contexts": [EvalContextFactory().pk], **payload}
    r = res_client.post("/api/studies/", body, format="json")
    assert r.status_code == 400 and field in r.json(), r.json()
    assert not Study.objects.filter(name="bad").exists()


def test_openapi_schema_and_docs_are_served(res_client):
    from django.test import Client

    schema = res_client.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "/api/annotator/studies/{study_id}/next/" in text
    client = Client()
    client.force_login(researcher(username="docs-res"))
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
    assert b"cdn" not in docs.content.lower()  # served from the site itself
