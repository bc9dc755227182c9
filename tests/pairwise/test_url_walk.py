"""Every page answers malformed input with a 4xx, never a 500.

The walk reads the project's urlconf (every pattern, found recursively; the REST API is
schemathesis' in test_schemathesis.py, and of the admin only its main pages: the index and each
model's list, add and change pages). Each page is asked, as each role (anonymous, annotator,
researcher, admin), with real and malformed path values (huge, negative, non-digit, NUL,
traversal, very long), malformed query parameters, and malformed POST forms. A crash is caught
as a 500 (`raise_request_exception = False`) and reported with the request that caused it.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.converters import IntConverter, StringConverter

from pairwise.converters import IdConverter
from pairwise.models import Study, StudyInvite, StudyMember
from pairwise.services import allocation
from tests.factories import UserFactory, annotator, make_study, researcher

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "annotator", "researcher", "admin")
# answers a malformed request may get: success, a redirect (to the login page, or back to the
# form with a message), or a 4xx that says what is wrong; 409 is a closed study's page, 410 a
# revoked invite link, 429 a throttled or locked-out client; 401 is the API's (the schema)
ALLOWED = {200, 201, 204, 301, 302, 303, 400, 401, 403, 404, 405, 409, 410, 429}

BAD_IDS = ["0", "999999999999999999", "9" * 19, "99999999999999999999", "-1", "abc", "1.5"]
BAD_STRINGS = ["x", "\x00", "../..", "..%2f..", "é" * 300, "a" * 3000, "%", "<script>"]
CHECKPOINTS = ["ESConv", "999999999999", "9" * 25, "-1", "%00", "CARE%20v%C2%B2", "x" * 5000]
# each page is asked with each filter value, then with the rest of the junk in three requests
# (a page that ignores a parameter ignores it as cheaply one at a time as all at once)
BAD_QUERIES = [f"checkpoint={v}" for v in CHECKPOINTS] + [
    "page=x&page=-1&format=../..&fmt=x&next=//evil.example/&lang=%00",
    "q=%00&o=abc&p=x&e=1&all=&status__exact=%00&id__in=abc&o=-99",
    "%00=%00&a=%FF%FE&x=" + "%C3%A9" * 2000,
]
# the admin's lists read these one by one (an unknown one redirects to ?e=1 before the next)
ADMIN_QUERIES = [
    "q=%00",
    "q=" + "x" * 3000,
    "o=abc",
    "o=-99",
    "p=x",
    "p=99999999999",
    "e=1",
    "all=",
    "status__exact=%00",
    "id__in=abc",
    "%00=%00",
    "a=%FF%FE",
]
BAD_FORMS = [
    {},
    {"checkpoint": "abc"},
    {"checkpoint": "ESConv"},
    {"checkpoint": "99999999999999999999"},
    {"checkpoint": "\x00"},
    {"item": "no-such-item", "choice-0": "left"},
    {"item": "\x00", "comment": "\x00", "cannot_judge": "1", "cannot_judge_reason": "\x00"},
    {"item": "x" * 5000, "choice-0": "sideways", "choice-99": "left"},
    {"action": "add", "usernames": "nobody \x00 " + "u" * 300, "role": "emperor"},
    {"action": "remove", "usernames": "\x00"},
    {"action": "\x00"},
    {"expires_in_days": "-1", "completion_code": "\x00" * 40},
    {"expires_in_days": "99999999999999999999", "completion_code": "é" * 100},
    {"username": "\x00", "password": "\x00"},
    {"username": "admin", "password": "x" * 5000},
    {"participant_id": "\x00", "PROLIFIC_PID": "x" * 5000},
    {"old_password": "\x00", "new_password1": "a", "new_password2": "b"},
]


def _walk(patterns, prefix: str = ""):
    """(route, converters) of every pattern below `patterns`, outside the API and admin."""
    for p in patterns:
        route = prefix + str(p.pattern)
        if isinstance(p, URLResolver):
            if route.startswith(("admin/", "api/")) and route not in ("api/schema/", "api/docs/"):
                continue
            yield from _walk(p.url_patterns, route)
        elif isinstance(p, URLPattern):
            yield route, getattr(p.pattern, "converters", {})


ROUTES = sorted(set((r, tuple(c.items())) for r, c in _walk(get_resolver().url_patterns)))


def _admin_pages() -> tuple[list[str], list[str]]:
    """The admin's main pages: (the index and each model's list, its add and change pages)."""
    lists, pages = ["/admin/"], []
    for model in admin.site._registry:
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        lists.append(base)
        pages += [f"{base}add/"]
        pages += [f"{base}{quote(v, safe='')}/change/" for v in ("1", "abc", "9" * 25, "\x00")]
    return lists, pages


@pytest.fixture
def site(db) -> dict:
    ann, res = annotator(username="walk-ann"), researcher(username="walk-res")
    boss = UserFactory(username="walk-admin", is_staff=True, is_superuser=True)
    open_study, _, _ = make_study(n_contexts=2, k=1)
    closed, _, _ = make_study(n_contexts=1, k=1, status=Study.Status.CLOSED)
    for study in (open_study, closed):
        StudyMember.objects.create(study=study, user=res, role=StudyMember.Role.OWNER)
        StudyMember.objects.create(study=study, user=ann, role=StudyMember.Role.ANNOTATOR)
    other = annotator(username="walk-ann2")
    StudyMember.objects.create(study=open_study, user=other, role=StudyMember.Role.ANNOTATOR)
    item = allocation.next_item(open_study, other)
    allocation.submit(open_study, other, item.public_id, {c: "left" for c in open_study.criteria})
    allocation.next_item(open_study, ann)
    invite = StudyInvite.objects.create(study=open_study, created_by=res)
    return {
        "users": {"annotator": ann, "researcher": res, "admin": boss},
        "ids": [str(open_study.pk), str(closed.pk)],
        "invite": str(invite.pk),
        "token": invite.token,
    }


def _values(converter, name: str, site: dict) -> list[str]:
    """Real values for a path parameter, then malformed ones its converter lets through (or
    not: a value no converter accepts must be a 404 too)."""
    if isinstance(converter, IdConverter | IntConverter):
        real = [site["invite"]] if name == "invite_id" else site["ids"]
        return real + BAD_IDS
    if isinstance(converter, StringConverter):
        real = [site["token"]] if name == "token" else ["csv", "json", "parquet"]
        return real + BAD_STRINGS
    return ["x", *BAD_STRINGS]


def _urls(route: str, converters: tuple, site: dict) -> tuple[list[str], list[str]]:
    """(pages with real path values, pages with malformed ones) for one route."""
    names = [name for name, _ in converters]
    if not names:
        return ["/" + route], []
    options = {name: _values(conv, name, site) for name, conv in converters}
    real = {name: options[name][0] for name in names}

    def fill(values: dict) -> str:
        path = route
        for name in names:
            value = quote(values[name], safe="")
            path = re.sub(rf"<(?:\w+:)?{name}>", lambda _, v=value: v, path)
        return "/" + path

    good = [fill(real)] + [fill({**real, n: v}) for n in names for v in options[n][1:2]]
    bad = [fill({**real, n: v}) for n in names for v in options[n][2:]]
    return good, bad


def _client(role: str, site: dict) -> Client:
    client = Client()
    client.raise_request_exception = False  # a crash is a 500 to report, not an exception
    if role != "anonymous":
        client.force_login(site["users"][role])
    return client


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("route", "converters"), ROUTES, ids=[r for r, _ in ROUTES])
def test_page_answers_malformed_requests_with_4xx(site, role, route, converters):
    client = _client(role, site)
    good, bad = _urls(route, converters, site)
    requests = [("GET", url, None) for url in good + bad]
    requests += [("GET", f"{good[0]}?{q}", None) for q in BAD_QUERIES]
    requests += [("POST", good[0], form) for form in BAD_FORMS]
    requests += [("POST", url, form) for url in bad[:3] for form in BAD_FORMS[:2]]
    failures = []
    for method, url, form in requests:
        response = client.get(url) if method == "GET" else client.post(url, form)
        allowed = ALLOWED | ({503} if route == "healthz" else set())  # no worker in tests
        if response.status_code not in allowed:
            failures.append(f"{method} {url[:120]} {form!r:.120} -> {response.status_code}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", ROLES)
def test_admin_pages_answer_malformed_requests_with_4xx(site, role):
    client = _client(role, site)
    failures = []
    lists, pages = _admin_pages()
    urls = pages + [f"{page}?{q}" for page in lists for q in ["", *ADMIN_QUERIES]]
    for url in urls:
        response = client.get(url)
        if response.status_code not in ALLOWED:
            failures.append(f"GET {url[:120]} -> {response.status_code}")
    assert not failures, "\n".join(failures)


def test_the_walk_reaches_every_page():
    """The walk is only as good as its list: the annotator and researcher pages are in it."""
    routes = {r for r, _ in ROUTES}
    assert {"", "studies/", "studies/<id:study_id>/results/", "accounts/login/"} <= routes
    assert "study/<id:study_id>/annotate/" in routes
    assert not any(r.startswith("api/") and r not in ("api/schema/", "api/docs/") for r in routes)


def test_a_nul_character_is_a_400_naming_the_parameter(site):
    """PostgreSQL cannot compare or store a NUL: it was a 500 wherever a value reached it."""
    study = site["ids"][0]
    client = _client("researcher", site)
    page = client.get(f"/studies/{study}/results/?checkpoint=a%00b")
    assert (
        page.status_code == 400 and page.content.decode() == "checkpoint: contains a NUL character"
    )
    api = client.get(f"/api/studies/{study}/results/?checkpoint=a%00b")
    assert api.status_code == 400 and api.json() == {"checkpoint": ["contains a NUL character"]}
    form = _client("annotator", site).post(f"/study/{study}/annotate/", {"comment": "x\x00"})
    assert form.status_code == 400 and b"comment" in form.content
    assert _client("anonymous", site).get("/join/%00/").content == b"path: contains a NUL character"


def test_a_checkpoint_filter_that_names_nothing_is_a_400_naming_it(site):
    client = _client("researcher", site)
    for value in ("CARE v²", "²", "ESConv v99", "99999999999999999999"):
        page = client.get(f"/studies/{site['ids'][0]}/results/", {"checkpoint": value})
        assert page.status_code == 400 and page.content.startswith(b"checkpoint: "), value
