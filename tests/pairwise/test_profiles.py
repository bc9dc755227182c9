"""Evaluator profiles (issue #18, section 1): recorded with `invite_annotators`, on the study
page, through the API, carried by invite links to the accounts they make, shown in the admin,
counted for the datasheet (`evaluators.profile_counts`) and exported."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from pairwise.models import Profile, StudyInvite, StudyMember
from pairwise.services import access, allocation, evaluators, export
from tests.factories import UserFactory, annotator, make_study, researcher

pytestmark = pytest.mark.django_db


@pytest.fixture
def study():
    study, _, _ = make_study(n_contexts=3, k=1, criteria=["Overall"], public_title="Study P")
    owner = researcher(username="owner-p")
    StudyMember.objects.create(study=study, user=owner, role=StudyMember.Role.OWNER)
    study.owner = owner
    return study


def _judge(study, user):
    item, _ = allocation.assign(study, user)
    allocation.submit(study, user, item.public_id, {"Overall": "tie"})


# --- The service ---------------------------------------------------------------------------------


def test_check_profile_cleans_and_names_a_bad_field():
    assert evaluators.check_profile(
        {"expertise": "  PhD psychology ", "paid": "yes", "is_author": "", "training": None}
    ) == {"expertise": "PhD psychology", "paid": True, "is_author": None, "training": ""}
    assert evaluators.check_profile({"paid": False, "is_author": "no"}) == {
        "paid": False,
        "is_author": False,
    }
    with pytest.raises(evaluators.ProfileError, match=r"^paid: expected yes, no"):
        evaluators.check_profile({"paid": "sometimes"})
    with pytest.raises(evaluators.ProfileError, match=r"^language: at most 100 characters"):
        evaluators.check_profile({"language": "x" * 101})
    with pytest.raises(evaluators.ProfileError, match=r"^salary: not a profile field"):
        evaluators.check_profile({"salary": "lots"})
    with pytest.raises(evaluators.ProfileError, match=r"^expertise: expected text"):
        evaluators.check_profile({"expertise": 3})


def test_set_profile_changes_only_the_fields_given():
    user = UserFactory(username="someone")
    evaluators.set_profile(user, {"expertise": "nurse", "paid": True})
    evaluators.set_profile(user, {"language": "native English"})
    assert evaluators.profile_of(user) == {
        "expertise": "nurse",
        "language": "native English",
        "paid": True,
        "payment": "",
        "recruitment": "",
        "training": "",
        "is_author": None,
    }


def test_count_profiles_by_hand():
    rows = [
        {"expertise": "PhD psychology", "paid": True, "is_author": False},
        {"expertise": "PhD psychology", "paid": None, "is_author": False},
        {"expertise": "", "paid": False, "is_author": True, "language": "German"},
    ]
    counts = evaluators.count_profiles(rows)
    assert counts["annotators"] == 3
    assert counts["expertise"] == {"PhD psychology": 2, "unknown": 1}
    assert counts["paid"] == {"no": 1, "unknown": 1, "yes": 1}
    assert counts["is_author"] == {"no": 2, "yes": 1}
    assert counts["language"] == {"unknown": 2, "German": 1}
    assert counts["training"] == {"unknown": 3}


def test_profile_counts_cover_the_annotators_who_judged(study):
    a1, a2, idle = (annotator(study, username=n) for n in ("p-1", "p-2", "p-idle"))
    evaluators.set_profile(a1, {"expertise": "PhD psychology", "paid": True})
    evaluators.set_profile(idle, {"expertise": "never judged"})
    _judge(study, a1)
    _judge(study, a2)  # no profile at all
    counts = evaluators.profile_counts(study)
    assert counts["annotators"] == 2
    assert counts["expertise"] == {"PhD psychology": 1, "unknown": 1}
    assert counts["paid"] == {"unknown": 1, "yes": 1}


# --- The command line ----------------------------------------------------------------------------


def test_invite_annotators_records_the_profile(study):
    out = io.StringIO()
    call_command(
        "invite_annotators",
        "cli-ann",
        "--expertise",
        "PhD psychology",
        "--language",
        "native English",
        "--paid",
        "--payment",
        "15 GBP/hour",
        "--recruitment",
        "university mailing list",
        "--training",
        "one-hour briefing",
        "--not-author",
        stdout=out,
    )
    profile = Profile.objects.get(user__username="cli-ann")
    assert (profile.expertise, profile.language, profile.paid, profile.is_author) == (
        "PhD psychology",
        "native English",
        True,
        False,
    )
    assert (profile.payment, profile.recruitment, profile.training) == (
        "15 GBP/hour",
        "university mailing list",
        "one-hour briefing",
    )
    assert profile.must_change_password  # the one-time password still works as before
    # an existing account: only the flags given change
    call_command("invite_annotators", "cli-ann", "--unpaid", stdout=io.StringIO())
    profile.refresh_from_db()
    assert profile.paid is False and profile.expertise == "PhD psychology"
    with pytest.raises(CommandError, match=r"^--language: at most 100"):
        call_command("invite_annotators", "cli-2", "--language", "x" * 101)
    with pytest.raises(CommandError):
        call_command("invite_annotators", "cli-2", "--paid", "--unpaid")


def test_study_members_invite_carries_the_profile_to_the_accounts_it_makes(study):
    out = io.StringIO()
    call_command(
        "study_members",
        str(study.pk),
        "--invite",
        "--recruitment",
        "Prolific",
        "--paid",
        stdout=out,
    )
    invite = StudyInvite.objects.get(study=study)
    assert invite.profile == {"recruitment": "Prolific", "paid": True}
    Client().post(f"/join/{invite.token}/", {"participant": "PID-1"})
    profile = Profile.objects.get(participant_id="PID-1")
    assert (profile.recruitment, profile.paid, profile.expertise) == ("Prolific", True, "")


# --- The study page ------------------------------------------------------------------------------


def test_the_members_page_records_a_profile(study):
    member = annotator(study, username="page-ann")
    client = Client()
    client.force_login(study.owner)
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert 'name="action" value="profile"' in page and "Profile<span" in page
    form = {
        "action": "profile",
        "username": "page-ann",
        "expertise": "nurse",
        "language": "",
        "paid": "no",
        "payment": "",
        "recruitment": "ward colleagues",
        "training": "",
        "is_author": "",
    }
    r = client.post(f"/studies/{study.pk}/members/", form)
    assert r.status_code == 302 and r["Location"].endswith("#members")
    assert evaluators.profile_of(member) | {} == {
        "expertise": "nurse",
        "language": "",
        "paid": False,
        "payment": "",
        "recruitment": "ward colleagues",
        "training": "",
        "is_author": None,
    }
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert 'value="nurse"' in page
    bad = client.post(f"/studies/{study.pk}/members/", {**form, "is_author": "maybe"})
    assert bad.status_code == 400 and "is_author: expected yes, no" in bad.content.decode()
    stranger = client.post(f"/studies/{study.pk}/members/", {**form, "username": "nobody"})
    assert stranger.status_code == 400 and "username: " in stranger.content.decode()


def test_an_invite_made_on_the_page_carries_the_profile(study):
    client = Client()
    client.force_login(study.owner)
    r = client.post(
        f"/studies/{study.pk}/invites/",
        {"expertise": "crowd worker", "paid": "yes", "language": ""},
    )
    assert r.status_code == 302
    assert StudyInvite.objects.get(study=study).profile == {
        "expertise": "crowd worker",
        "paid": True,
    }
    bad = client.post(f"/studies/{study.pk}/invites/", {"paid": "often"})
    assert bad.status_code == 400 and "paid: " in bad.content.decode()


# --- The API -------------------------------------------------------------------------------------


def test_members_through_the_api_take_and_return_profiles(study):
    annotator(username="api-ann")
    client = APIClient()
    client.force_authenticate(study.owner)
    base = f"/api/studies/{study.pk}/members/"
    r = client.post(
        base,
        {"usernames": ["api-ann"], "profile": {"expertise": "linguist", "is_author": True}},
        format="json",
    )
    assert r.status_code == 201, r.json()
    row = next(m for m in r.json() if m["username"] == "api-ann")
    assert row["profile"]["expertise"] == "linguist" and row["profile"]["is_author"] is True
    assert row["profile"]["paid"] is None
    r = client.post(f"{base}api-ann/profile/", {"paid": False, "payment": "none"}, format="json")
    assert r.status_code == 200, r.json()
    assert r.json()["profile"] | {} == {
        "expertise": "linguist",  # left out: kept
        "language": "",
        "paid": False,
        "payment": "none",
        "recruitment": "",
        "training": "",
        "is_author": True,
    }
    listed = client.get(base).json()
    assert next(m for m in listed if m["username"] == "api-ann")["profile"]["payment"] == "none"
    bad = client.post(f"{base}api-ann/profile/", {"language": "x" * 101}, format="json")
    assert bad.status_code == 400 and "language" in bad.json()
    gone = client.post(f"{base}owner-x/profile/", {"language": "en"}, format="json")
    assert gone.status_code == 400 and "username" in gone.json()
    bad_add = client.post(
        base, {"usernames": ["api-ann"], "profile": {"paid": "often"}}, format="json"
    )
    assert bad_add.status_code == 400 and "paid" in bad_add.json()["profile"]


def test_an_api_invite_carries_the_profile(study):
    client = APIClient()
    client.force_authenticate(study.owner)
    r = client.post(
        f"/api/studies/{study.pk}/invites/",
        {"profile": {"recruitment": "Prolific", "paid": True, "payment": "9 GBP/hour"}},
        format="json",
    )
    assert r.status_code == 201, r.json()
    assert r.json()["profile"] == {"recruitment": "Prolific", "paid": True, "payment": "9 GBP/hour"}
    user = access.accept_invite(r.json()["token"], None, "PID-9").user
    assert evaluators.profile_of(user)["payment"] == "9 GBP/hour"


# --- Admin and export ----------------------------------------------------------------------------


def test_the_admin_edits_a_profile(study):
    admin = UserFactory(username="boss", is_staff=True, is_superuser=True)
    member = annotator(study, username="adm-ann")
    profile = evaluators.set_profile(member, {"expertise": "counsellor"})
    client = Client()
    client.force_login(admin)
    url = f"/admin/pairwise/profile/{profile.pk}/change/"
    assert 'value="counsellor"' in client.get(url).content.decode()
    form = {"participant_id": "", "expertise": "psychiatrist", "language": "en", "paid": "true"}
    form |= {"payment": "", "recruitment": "", "training": "", "is_author": "unknown"}
    r = client.post(url, form)
    assert r.status_code == 302, r.content.decode()[:3000]
    profile.refresh_from_db()
    assert (profile.expertise, profile.paid, profile.is_author) == ("psychiatrist", True, None)


def test_the_export_lists_the_annotators_with_their_profiles(study, tmp_path):
    judge = annotator(study, username="exp-ann")
    evaluators.set_profile(judge, {"expertise": "PhD psychology", "paid": True})
    _judge(study, judge)
    df = evaluators.annotators_dataframe(study)
    assert df.to_dict("records") == [
        {
            "annotator": "exp-ann",
            "participant_id": "",
            "expertise": "PhD psychology",
            "language": "",
            "paid": True,
            "payment": "",
            "recruitment": "",
            "training": "",
            "is_author": None,
        }
    ]
    written = export.export_study(study, "json", tmp_path)
    assert tmp_path / "annotators.json" in written
