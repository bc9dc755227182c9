"""schemathesis against every operation in /api/schema/, as an annotator and as a researcher.

In process over WSGI, on a database holding a realistic site: an open study with judgments and a
live lease, a closed one, a draft, members and an invite link. Every operation gets the requests
a client would really send (the happy path and the classic mistakes), then 25 generated ones,
valid and invalid, with path ids drawn from real objects as well as made up. A request fails the
test on a 5xx, a status code the schema does not document, or a content type or body that breaks
the documented one. Each request runs in a savepoint that is rolled back, so a close, open or
re-queue leaves the next request the same data, and a derandomized run the same answers.

schemathesis' own pytest loader (`schemathesis.pytest.from_fixture`) does not run under pytest 9
(it writes a private node attribute that pytest 9 removed), so the test builds each operation's
Hypothesis test from the loaded schema itself.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from evalsite.wsgi import application
from pairwise.models import Study, StudyInvite, StudyMember
from pairwise.services import allocation
from tests.factories import CheckpointFactory, SystemFactory, annotator, make_study, researcher
from training.lineage import write_lineage

pytestmark = pytest.mark.django_db

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same requests on every run: CI is reproducible
    database=None,
    suppress_health_check=list(HealthCheck),
)
ROLES = ("annotator", "researcher")


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation, for the test ids (the generator behind /api/schema/;
    the test itself loads the schema over HTTP and fails on an operation it does not serve)."""
    from drf_spectacular.generators import SchemaGenerator

    spec = SchemaGenerator().get_schema(request=None, public=True)
    methods = {"get", "post", "put", "patch", "delete"}
    return [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if m in methods]


@pytest.fixture
def site(db, tmp_path) -> dict:
    """Accounts with tokens, the studies they belong to, and the ids a client would use."""
    ann, res = annotator(username="fuzz-ann"), researcher(username="fuzz-res")
    others = [annotator(username=f"fuzz-ann{i}") for i in range(3)]
    open_study, (care, esconv), contexts = make_study(n_contexts=4, k=3)
    closed, _, _ = make_study(n_contexts=2, k=1, status=Study.Status.CLOSED)
    draft, _, _ = make_study(n_contexts=2, k=1, status=Study.Status.DRAFT, with_responses=False)
    augesc = CheckpointFactory(system=SystemFactory(name="AugESC"), path="/nonexistent/augesc")
    for study in (open_study, closed, draft):
        StudyMember.objects.create(study=study, user=res, role=StudyMember.Role.OWNER)
        for user in (ann, *others):
            StudyMember.objects.create(study=study, user=user, role=StudyMember.Role.ANNOTATOR)
    for user in others:  # judgments by others
        for _ in range(2):
            item = allocation.next_item(open_study, user)
            choices = {c: "left" for c in open_study.criteria}
            allocation.submit(open_study, user, item.public_id, choices)
    leased = allocation.next_item(open_study, ann)  # the annotator's live lease
    invite = StudyInvite.objects.create(study=open_study, created_by=res)
    annotator(username="fuzz-outsider")  # in no study yet
    folder = tmp_path / "care-sft-rl"  # a checkpoint folder the API can register
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    write_lineage(folder, system="CARE", config={}, parent=None, metrics={})
    return {
        "tokens": {
            "annotator": Token.objects.create(user=ann).key,
            "researcher": Token.objects.create(user=res).key,
        },
        "studies": {"open": open_study, "closed": closed, "draft": draft},
        "criteria": open_study.criteria,
        "leased": leased.public_id,
        "checkpoints": {"care": care, "esconv": esconv, "augesc": augesc},
        "contexts": [c.pk for c in contexts],
        "invite": invite.pk,
        "folder": str(folder),
    }


def _realistic(method: str, path: str, site: dict) -> list[dict]:
    """The requests a client would really send to this operation: Case keyword arguments."""
    s = site["studies"]
    care, esconv, augesc = (site["checkpoints"][k] for k in ("care", "esconv", "augesc"))
    every_study = [{"path_parameters": {"id": st.pk}} for st in s.values()]
    annotated = [{"path_parameters": {"study_id": st.pk}} for st in s.values()]
    ties = {c: "tie" for c in site["criteria"]}
    nasty = ["ESConv", "abc", "999999999999", "-1", "a\x00b", "CARE v²", "é" * 300, "../.."]
    table: dict[tuple[str, str], list[dict]] = {
        ("POST", "/api/annotator/studies/{study_id}/judgments/"): [
            {**a, "body": body}
            for a in annotated
            for body in (
                {"item": site["leased"], "choices": ties},
                {"item": site["leased"], "choices": {"Fluency": "up"}},
                {"item": site["leased"], "cannot_judge": True, "cannot_judge_reason": "x"},
                {"item": "no-such-item", "choices": ties},
                {"item": site["leased"], "choices": ties, "seconds": -5},
            )
        ],
        ("POST", "/api/studies/"): [
            {
                "body": {
                    "name": "fuzz-new",
                    "contexts": site["contexts"],
                    "comparisons": [[care.label, "ESConv"]],
                }
            },
            *(
                {
                    "body": {
                        "name": "fuzz-sampling",
                        "contexts": site["contexts"],
                        "comparisons": [[care.label, "ESConv"]],
                        "sampling": sampling,
                    }
                }
                for sampling in ({"stop": ["\x00"]}, {"temperature": "\x00"}, {"\x00": 1})
            ),
            {"body": {"name": "x", "contexts": [999999999], "comparisons": [["a", "b"]]}},
            {"body": {"name": "x", "contexts": site["contexts"], "comparisons": [["ESConv", "x"]]}},
        ],
        ("POST", "/api/studies/{id}/requeue/"): [
            {**p, "body": body}
            for p in every_study
            for body in (
                {"checkpoint": str(esconv.pk)},
                {"checkpoint": augesc.label},
                {"system": "ESConv"},
                *({"checkpoint": bad} for bad in nasty),
            )
        ],
        ("GET", "/api/studies/{id}/results/"): [
            {**p, "query": q}
            for p in every_study
            for q in ({}, {"checkpoint": care.label}, *({"checkpoint": bad} for bad in nasty))
        ],
        ("GET", "/api/studies/{id}/export/"): [
            {**p, "query": {"fmt": f}}
            for p in every_study[:1]
            for f in ("csv", "json", "parquet", "preferences", "xlsx", "../..")
        ],
        ("POST", "/api/studies/{id}/members/"): [
            {**every_study[0], "body": {"usernames": ["fuzz-outsider"], "role": "annotator"}},
            {**every_study[0], "body": {"usernames": ["fuzz-ann0"], "role": "researcher"}},
            {**every_study[0], "body": {"usernames": ["nobody"]}},
        ],
        ("DELETE", "/api/studies/{id}/members/{username}/"): [
            {"path_parameters": {"id": s["open"].pk, "username": name}}
            for name in ("fuzz-ann0", "fuzz-res", "nobody")
        ],
        ("POST", "/api/studies/{id}/members/{username}/profile/"): [
            {"path_parameters": {"id": s["open"].pk, "username": name}, "body": body}
            for name in ("fuzz-ann0", "nobody")
            for body in ({"expertise": "PhD psychology", "paid": True}, {"paid": "often"})
        ],
        ("POST", "/api/studies/{id}/criteria/"): [
            {**p, "body": body}
            for p in every_study
            for body in (
                {"name": site["criteria"][0], "definition": "Which reply reads better?"},
                {"name": "no-such-criterion", "definition": "x"},
            )
        ],
        ("POST", "/api/studies/{id}/invites/"): [
            {**every_study[0], "body": {}},
            {**every_study[0], "body": {"completion_code": "C0DE", "expires_in_days": 7}},
        ],
        ("DELETE", "/api/studies/{id}/invites/{invite_id}/"): [
            {"path_parameters": {"id": s["open"].pk, "invite_id": site["invite"]}},
            {"path_parameters": {"id": s["closed"].pk, "invite_id": site["invite"]}},
        ],
        ("GET", "/api/checkpoints/{id}/"): [
            {"path_parameters": {"id": ck.pk}} for ck in (care, esconv, augesc)
        ],
        ("POST", "/api/checkpoints/register/"): [
            {"body": {"path": site["folder"], "system": "CARE"}},
            {"body": {"path": site["folder"], "system": "CARE", "backend": "nope"}},
            {"body": {"path": "/nonexistent/ckpt", "system": "CARE"}},
            {"body": {"path": "../../etc", "system": "CARE", "version": 1}},
        ],
    }
    if (method, path) in table:
        return table[(method, path)]
    if "{study_id}" in path:
        return annotated
    if "{id}" in path and path.startswith("/api/studies/"):
        return every_study
    return [{}]


def _pins(path: str, site: dict) -> list[dict]:
    """Path parameters set to real objects (the rest generated): most made-up ids are 404s."""
    ids = [st.pk for st in site["studies"].values()]
    if "{study_id}" in path:
        return [{"study_id": pk} for pk in ids]
    if "{id}" in path and path.startswith("/api/studies/"):
        return [{"id": pk} for pk in ids]
    if "{id}" in path:
        return [{"id": ck.pk} for ck in site["checkpoints"].values()]
    return []


@pytest.fixture(autouse=True)
def _one_connection():
    """Requests go through Django's WSGI handler, which closes the database connection when a
    request ends; the test's transaction lives on it. Django's test client keeps it open the
    same way (it matters on PostgreSQL; SQLite in memory ignores the close)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(site):
    headers = {"Authorization": f"Token {site['tokens']['researcher']}"}
    return schemathesis.openapi.from_wsgi("/api/schema/", application, headers=headers)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path"), _operations())
def test_api_answers_within_its_schema(api_schema, site, role, method, path):
    operation = api_schema[path][method]
    headers = {"Authorization": f"Token {site['tokens'][role]}"}
    answered: Counter[int] = Counter()

    def check(case) -> None:
        with transaction.atomic():  # rolled back: every request starts from the same data
            response = case.call(headers=headers)
            transaction.set_rollback(True)
        answered[response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    for kwargs in _realistic(method, path, site):
        media = {"media_type": "application/json"} if "body" in kwargs else {}
        check(operation.Case(**kwargs, **media))

    pins = [{}, *_pins(path, site)]
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    cases = st.one_of(
        [operation.as_strategy(mode, path_parameters=pin) for pin in pins for mode in modes]
    )
    FUZZ(given(case=cases)(check))()

    # the requests reached the view: the role it is for got a success, the other one never
    owner = "annotator" if path.startswith("/api/annotator/") else "researcher"
    succeeded = any(200 <= code < 300 for code in answered)
    assert succeeded == (role == owner), answered


def test_schema_documents_the_errors_and_filters(api_schema):
    """What the fuzz holds the API to: each operation lists the 4xx it can answer."""
    spec = api_schema.raw_schema["paths"]
    results = spec["/api/studies/{id}/results/"]["get"]
    assert {"200", "400", "401", "403", "404"} <= set(results["responses"])
    assert [p["name"] for p in results["parameters"] if p["in"] == "query"] == ["checkpoint"]
    export = spec["/api/studies/{id}/export/"]["get"]
    fmt = next(p for p in export["parameters"] if p["name"] == "fmt")
    assert fmt["schema"]["enum"] == ["csv", "datasheet", "json", "parquet", "preferences"]
    assert "application/zip" in export["responses"]["200"]["content"]
    datasheet = spec["/api/studies/{id}/datasheet/"]["get"]
    assert {"200", "400", "401", "403", "404"} <= set(datasheet["responses"])
    assert {"application/json", "text/markdown"} <= set(datasheet["responses"]["200"]["content"])
    submit = spec["/api/annotator/studies/{study_id}/judgments/"]["post"]
    assert {"200", "201", "400", "404", "409"} <= set(submit["responses"])
    assert "400" not in spec["/api/studies/"]["get"]["responses"]  # nothing to get wrong
