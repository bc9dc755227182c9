"""Annotators' pages and API never reveal a system, a checkpoint, or a response row."""

import json

import pytest
from django.test import Client

from pairwise.models import Comparison, Judgment, Response, Study
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
    user = annotator(study, username="blind-ann")
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
    a, b = annotator(study, username="ann-a"), annotator(study, username="ann-b")
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


def test_a_study_of_three_systems_sharing_a_shows_nothing_twice_and_nothing_revealing():
    """The paper's design (A against three baselines on the same contexts, k = 3), generated
    output with reasoning chains, leaks and self-naming replies, judged through the API by a
    sufficient pool taking turns: no annotator is shown a reply twice, nothing of the reasoning,
    no name and no path reaches any of them, and every item ends with exactly k judgments."""
    from models.care_format import has_reasoning_tag
    from pairwise.services.exposure import min_pool
    from pairwise.services.generation import parsed_response

    names = ["ZZCARESECRET", "ZZESCONVSECRET", "ZZAUGESCSECRET", "ZZEXTESSECRET"]
    study, _, contexts = make_study(n_contexts=6, systems=(), with_responses=False, seed=31)
    checkpoints = [
        CheckpointFactory(
            system=SystemFactory(name=name),
            path=f"/models/{SECRETS[2]}/{name.lower()}-ckpt",
            lineage={"config": {"model_name_or_path": "meta-llama/Llama-3.1-8B-Instruct"}},
            reasoning=i == 0,
        )
        for i, name in enumerate(names)
    ]
    for other in checkpoints[1:]:
        Comparison.objects.create(study=study, checkpoint_a=checkpoints[0], checkpoint_b=other)
    key = sampling_key(study.sampling)
    chain = (
        "<think><context>ZZREASONING</context><cognition>b</cognition><emotion>c</emotion>"
        '<plan strategy="Question">d</plan></think> '
    )
    rows = []
    for n, ctx in enumerate(contexts):
        care = [
            f"{chain}How long has this weighed on you ({n})?",
            f'<context>ZZREASONING</context><plan strategy="Question">d</plan> Tell me ({n}).',
            f"{chain}I hear you &lt;/plan&gt; ({n})",  # an escaped tag: no clean reply
            f"{chain}As ZZCARESECRET, I think you should rest ({n}).",  # names itself
            f"{chain}As a Llama model I cannot feel ({n}).",  # names its backbone
            f"{chain}That sounds lonely ({n}). <script>alert(1)</script>",
        ][n]
        rows.append(parsed_response(checkpoints[0], key, ctx, care, provenance={}))
        for b, other in enumerate(checkpoints[1:]):
            text = f"Baseline {b} says: that sounds hard ({n})."
            rows.append(parsed_response(other, key, ctx, text, provenance={}))
    Response.objects.bulk_create(rows)
    build_items(study)
    Study.objects.filter(pk=study.pk).update(name=" vs ".join(names))
    study.refresh_from_db()
    # contexts 0, 1 and 5 have a clean CARE reply: 3 contexts x 3 comparisons
    assert study.items.count() == 9
    assert min_pool(study) == 9

    clients = []
    for i in range(min_pool(study) + 1):
        client = Client()
        client.force_login(annotator(study, username=f"pool{i}"))
        clients.append(client)
    seen: dict[int, list[str]] = {i: [] for i in range(len(clients))}
    bodies = []
    active = set(range(len(clients)))
    while active:
        for i in sorted(active):
            client = clients[i]
            nxt = client.get(f"/api/annotator/studies/{study.pk}/next/")
            assert nxt.status_code == 200
            bodies.append(nxt.content.decode())
            data = nxt.json()
            if data["done"]:
                active.discard(i)
                continue
            page = client.get(f"/study/{study.pk}/annotate/")  # the same item, as a page
            bodies.append(page.content.decode())
            item = data["item"]
            assert item["id"] in bodies[-1]
            seen[i] += [item["left"], item["right"]]
            done = client.post(
                f"/api/annotator/studies/{study.pk}/judgments/",
                {"item": item["id"], "choices": {c: "left" for c in study.criteria}},
                content_type="application/json",
            )
            assert done.status_code == 201
            bodies.append(done.content.decode())
    for client in clients:
        bodies += [
            client.get("/").content.decode(),
            client.get("/api/annotator/studies/").content.decode(),
            client.get(f"/api/annotator/studies/{study.pk}/progress/").content.decode(),
        ]

    for texts in seen.values():
        assert len(texts) == len(set(texts))  # no annotator was shown a reply twice
    for body in bodies:
        _assert_blind(body, html=body.lstrip().startswith("<"))
        assert not has_reasoning_tag(body)
        for hidden in [*names, "llama", "ckpt", "I cannot feel"]:
            assert hidden.lower() not in body.lower(), hidden
    assert set(study.items.values_list("judgment_count", flat=True)) == {3}
    for item in study.items.all():
        assert item.judgments.values("annotator").distinct().count() == 3
    assert not Judgment.objects.filter(study=study, prior_exposures__gt=0).exists()
