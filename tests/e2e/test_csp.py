"""The Content-Security-Policy holds in a real browser: no page, role or API docs trips it.

Chromium reports every blocked script, style or event handler on the console ("Refused to ...
because it violates the following Content Security Policy directive"); the pages must also still
work with their behaviour in static files.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from pairwise.models import StudyMember
from tests.e2e.conftest import login, make_blind_study
from tests.factories import UserFactory, annotator, researcher

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _is_violation(message) -> bool:
    return "Content Security Policy" in message.text or "Refused to" in message.text


@pytest.fixture
def problems(page):
    """Policy violations and uncaught script errors of the page (not a 404 the test asks for)."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if _is_violation(m) else None)
    page.on("pageerror", lambda e: seen.append(f"uncaught: {e}"))
    return seen


def _member(user, study, role="annotator"):
    StudyMember.objects.get_or_create(study=study, user=user, defaults={"role": role})
    return user


def test_annotator_pages_trip_no_policy(live_server, page, problems):
    study, _, _ = make_blind_study(n_contexts=1, k=1, guidelines="Read **both** replies.")
    _member(annotator(username="cspann"), study)
    page.goto(f"{live_server.url}/accounts/login/")
    login(page, live_server, "cspann")
    expect(page.get_by_role("heading", name="Your studies")).to_be_visible()
    page.goto(f"{live_server.url}/study/{study.pk}/guidelines/")
    page.goto(f"{live_server.url}/study/{study.pk}/annotate/")
    # annotate.js runs: it outlines the first criterion and answers the number keys
    expect(page.locator("fieldset.criterion.current")).to_have_count(1)
    for _ in study.criteria:
        page.keyboard.press("1")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("#all-done")).to_be_visible()
    page.goto(f"{live_server.url}/no/such/page/")
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    assert problems == []


def test_researcher_pages_and_api_docs_trip_no_policy(live_server, page, problems):
    study, checkpoints, _ = make_blind_study(n_contexts=2, k=1)
    _member(researcher(username="cspres"), study, role="owner")
    login(page, live_server, "cspres")
    page.goto(f"{live_server.url}/studies/{study.pk}/")
    expect(page.get_by_role("heading", name=study.name)).to_be_visible()

    # The checkpoint filter submits itself on change (autosubmit.js, no inline handler).
    page.goto(f"{live_server.url}/studies/{study.pk}/results/")
    with page.expect_navigation():
        page.locator("#checkpoint").select_option(str(checkpoints[0].pk))
    assert f"checkpoint={checkpoints[0].pk}" in page.url

    # Swagger UI loads its set-up script as a file and renders the operations.
    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() > 5
    assert problems == []


def test_admin_trips_no_policy(live_server, page, problems):
    UserFactory(username="cspadmin", is_staff=True, is_superuser=True)
    login(page, live_server, "cspadmin")
    page.goto(f"{live_server.url}/admin/")
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    page.goto(f"{live_server.url}/admin/pairwise/study/")
    assert problems == []
