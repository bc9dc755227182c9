"""An invite link in the browser, as a crowd platform's participant meets it: no account, a
participant id in the link, Start, guidelines, judging, then the completion code."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from pairwise.models import StudyInvite, StudyMember
from tests.e2e.conftest import make_blind_study

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_participant_follows_an_invite_link_judges_and_gets_the_completion_code(
    live_server, page, screenshot_dir
):
    study, _, _ = make_blind_study(n_contexts=2, k=1, public_title="Supportive replies")
    invite = StudyInvite.objects.create(study=study, completion_code="C0MPL3TE")

    page.goto(f"{live_server.url}/join/{invite.token}/?PROLIFIC_PID=60a1b2c3d4e5f6")
    expect(page.get_by_role("heading", name="You are invited to a study")).to_be_visible()
    expect(page.locator("#join")).to_contain_text("Supportive replies")
    assert "ZZSECRET" not in page.content()
    page.screenshot(path=screenshot_dir / "join.png")
    page.get_by_role("button", name="Start").click()

    expect(page.get_by_role("heading", name="Guidelines")).to_be_visible()
    page.get_by_role("link", name="Start judging").click()
    for n in (1, 2):
        expect(page.locator("#progress-text")).to_have_text(f"Item {n} of 2")
        for i in range(len(study.criteria)):
            page.locator(f'fieldset[data-index="{i}"]').get_by_text("Tie", exact=True).click()
        page.get_by_role("button", name="Submit judgment").click()

    expect(page.get_by_role("heading", name="All done")).to_be_visible()
    expect(page.locator("#completion-code")).to_have_text("C0MPL3TE")
    page.screenshot(path=screenshot_dir / "join-done.png")
    user = get_user_model().objects.get(profile__participant_id="60a1b2c3d4e5f6")
    assert StudyMember.objects.get(study=study, user=user).invite_id == invite.pk

    # revoked: the same link now says so
    StudyInvite.objects.filter(pk=invite.pk).update(revoked_at=study.created_at)
    response = page.goto(f"{live_server.url}/join/{invite.token}/")
    assert response.status == 410
    expect(page.get_by_role("heading", name="This invitation was withdrawn")).to_be_visible()
