"""Who sees what: annotators never reach researcher pages, anonymous users only the login page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import login, make_blind_study
from tests.factories import annotator

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_annotator_cannot_reach_researcher_pages(live_server, page):
    study, _, _ = make_blind_study(n_contexts=1, k=1)
    annotator(study, username="gina")  # even a member of the study: the role decides
    login(page, live_server, "gina")

    for path in (
        "/studies/",
        f"/studies/{study.pk}/",
        f"/studies/{study.pk}/results/",
        f"/studies/{study.pk}/export/csv/",
    ):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 403, f"{path}: {response.status}"
        assert "ZZSECRET" not in page.content(), path

    # The admin sends a non-staff user to its own login form instead of showing anything.
    page.goto(f"{live_server.url}/admin/")
    assert "/admin/login/" in page.url
    expect(page.locator("body")).not_to_contain_text("Site administration")
    assert "ZZSECRET" not in page.content()

    # A researcher-only POST is refused too.
    token = page.context.cookies()
    csrf = next(c["value"] for c in token if c["name"] == "csrftoken")
    response = page.request.post(
        f"{live_server.url}/studies/{study.pk}/requeue/",
        form={"checkpoint": "1"},
        headers={"X-CSRFToken": csrf},
    )
    assert response.status == 403


def test_anonymous_users_are_sent_to_login_except_healthz(live_server, page):
    study, _, _ = make_blind_study(n_contexts=1, k=1)
    for path in (
        "/",
        f"/study/{study.pk}/guidelines/",
        f"/study/{study.pk}/annotate/",
        "/studies/",
        f"/studies/{study.pk}/",
        f"/studies/{study.pk}/results/",
        f"/studies/{study.pk}/export/csv/",
        "/admin/",
    ):
        page.goto(f"{live_server.url}{path}")
        assert page.url.startswith(f"{live_server.url}/accounts/login/"), f"{path} -> {page.url}"
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        assert "ZZSECRET" not in page.content()

    # The API answers for itself (401/403 JSON), never with a page.
    api = page.request.get(f"{live_server.url}/api/annotator/studies/", max_redirects=0)
    assert api.status in (401, 403)

    health = page.request.get(f"{live_server.url}/healthz", max_redirects=0)
    assert health.status in (200, 503)  # 503 only says a dependency is down, not "log in"
    assert "ok" in health.json()
