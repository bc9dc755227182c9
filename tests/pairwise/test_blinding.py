"""Annotators' pages and API never reveal a system, a checkpoint, or a response row."""

import json

import pytest
from django.test import Client

from pairwise.models import Comparison, Response, Study
from pairwise.services import allocation
from pairwise.services.items import build_items
from pairwise.services.sampling import sampling_key
from tests.factories import CheckpointFactory, SystemFactory, annotator, make_study

pytestmark = pytest.mark.django_db

SECRETS = ["ZZCARESECRET", "ZZBASELINESECRET", "zz-secret-path"]


@pytest.fixture
def planted():
    """A study whose systems, paths and row ids are distinctive enough to grep for."""
    study, _, contexts = make_study(n_contexts=3, systems=(), with_responses=False)
    checkpoints = [
        CheckpointFactory(
            pk=881000 + i, system=SystemFactory(name=name), path=f"/models/{SECRETS[2]}/{name}"
        )
        for i, name in enumerate(SECRETS[:2])
    ]
    Comparison.objects.create(study=study, checkpoint_a=checkpoints[0], checkpoint_b=checkpoints[1])
    key = sampling_key(study.sampling)
    pk = 990000
    for c in checkpoints:
        for ctx in contexts:
            pk += 1
            Response.objects.create(
                pk=pk,
                checkpoint=c,
                context=ctx,
                sampling_key=key,
                text="plain reply <script>alert(1)</script>",
                reasoning="<context>ZZREASONING</context>",
                strategy="ZZSTRATEGY",
                parse_status="complete",
            )
    build_items(study)
    # researchers often name a study after its systems; annotators must not see the name
    Study.objects.filter(pk=study.pk).update(name=f"{SECRETS[0]} vs {SECRETS[1]}")
    study.refresh_from_db()
    return study, checkpoints


def _assert_blind(body: str, *, html: bool):
    for secret in [*SECRETS, "ZZREASONING", "ZZSTRATEGY", "88100", "99000"]:
        assert secret.lower() not in body.lower(), secret
    if html:  # JSON carries the text as data; HTML must escape it
        assert "<script>alert(1)</script>" not in body


def test_pages_and_api_reveal_no_system_or_row(planted):
    study, checkpoints = planted
    user = annotator(username="blind-ann")
    client = Client()
    client.force_login(user)
    bodies = []
    for url in ["/", f"/study/{study.pk}/guidelines/", f"/study/{study.pk}/annotate/"]:
        response = client.get(url)
        assert response.status_code == 200, url
        bodies.append(response.content.decode())
    api = [
        client.get("/api/annotator/studies/"),
        client.get(f"/api/annotator/studies/{study.pk}/next/"),
        client.get(f"/api/annotator/studies/{study.pk}/progress/"),
    ]
    for r in api:
        assert r.status_code == 200
        bodies.append(r.content.decode())
    item_id = json.loads(api[1].content)["item"]["id"]
    submitted = client.post(
        f"/api/annotator/studies/{study.pk}/judgments/",
        {"item": item_id, "choices": {c: "tie" for c in study.criteria}},
        content_type="application/json",
    )
    assert submitted.status_code == 201
    bodies.append(submitted.content.decode())
    for i, body in enumerate(bodies):
        _assert_blind(body, html=i < 3)
    # the escaped form is there: the text is shown, not run
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in bodies[2]


def test_item_ids_are_opaque_and_unrelated_to_rows(planted):
    study, _ = planted
    ids = list(study.items.values_list("public_id", flat=True))
    assert all(len(i) >= 16 and not i.isdigit() for i in ids)
    assert len(set(ids)) == len(ids)


def test_annotators_never_see_other_annotators_judgments(planted):
    study, _ = planted
    a, b = annotator(username="ann-a"), annotator(username="ann-b")
    item = allocation.next_item(study, a)
    allocation.submit(
        study, a, item.public_id, {c: "left" for c in study.criteria}, comment="ZZPRIVATECOMMENT"
    )
    client = Client()
    client.force_login(b)
    for url in [
        "/",
        f"/study/{study.pk}/annotate/",
        "/api/annotator/studies/",
        f"/api/annotator/studies/{study.pk}/next/",
    ]:
        assert "ZZPRIVATECOMMENT" not in client.get(url).content.decode()
    for url in [
        f"/studies/{study.pk}/results/",
        "/api/studies/",
        f"/api/studies/{study.pk}/results/",
    ]:
        assert client.get(url).status_code in (403, 302)
