"""Invite links: a participant id and a completion code, enrolment of visitors and signed-in
annotators, revoked, expired and closed links, throttling of new accounts, and the API.
The world (two studies, one account per role) is test_access.py's (access_world.py).
"""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta

import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from pairwise.models import Judgment, Profile, Study, StudyInvite, StudyMember
from tests.pairwise.access_world import _api_client, _page_client, world_fixture  # noqa: F401

pytestmark = pytest.mark.django_db


# --- Invite links --------------------------------------------------------------------------------


def _invite_url(client: Client, study: Study, **form) -> str:
    r = client.post(f"/studies/{study.pk}/invites/", form, follow=True)
    assert r.status_code == 200, r.content.decode()[:500]
    invites = r.context["invites"]
    return invites[-1]["url"].removeprefix("http://testserver")


def test_an_invite_link_enrols_a_visitor_without_an_account(world):
    a = world["a"]
    url = _invite_url(_page_client(world, "owner"), a, completion_code="C1A2B3")
    assert url.startswith("/join/")
    users_before = get_user_model().objects.count()

    visitor = Client()
    page = visitor.get(url, {"PROLIFIC_PID": "5f0c-PID_42"})
    assert page.status_code == 200 and "Study Alpha" in page.content.decode()
    assert a.name not in page.content.decode()  # the name may name systems
    assert get_user_model().objects.count() == users_before  # a GET changes nothing

    r = visitor.post(url, {"participant": "5f0c-PID_42"})
    assert r.status_code == 302 and r["Location"] == f"/study/{a.pk}/guidelines/"
    user = get_user_model().objects.get(profile__participant_id="5f0c-PID_42")
    assert not user.has_usable_password()
    assert StudyMember.objects.get(study=a, user=user).role == "annotator"
    assert StudyInvite.objects.get(study=a).uses == 1

    # signed in: judges every item, then sees the link's completion code
    for _ in range(2):
        page = visitor.get(f"/study/{a.pk}/annotate/")
        data = {"item": page.context["item"]["id"]}
        data |= {f"choice-{i}": "right" for i in range(len(a.criteria))}
        visitor.post(f"/study/{a.pk}/annotate/", data)
    done = visitor.get(f"/study/{a.pk}/annotate/").content.decode()
    assert "All done" in done and '<code id="completion-code">C1A2B3</code>' in done
    # and reaches nothing else
    assert visitor.get(f"/study/{world['b'].pk}/annotate/").status_code == 404
    assert visitor.get(f"/studies/{a.pk}/").status_code == 403

    # the same participant coming back (another browser) continues as the same account
    again = Client()
    again.post(url, {"participant": "5f0c-PID_42"})
    assert again.get(f"/study/{a.pk}/annotate/").context["progress"].done == 2
    assert StudyInvite.objects.get(study=a).uses == 1

    # the participant id is exported with the judgments, and the export imports again
    export = _page_client(world, "owner").get(f"/studies/{a.pk}/export/csv/")
    with zipfile.ZipFile(io.BytesIO(b"".join(export.streaming_content))) as zf:
        name = next(n for n in zf.namelist() if n.endswith("judgments.csv"))
        csv_bytes = zf.read(name)
    df = pd.read_csv(io.BytesIO(csv_bytes), dtype=str, keep_default_na=False)
    assert list(df.columns[-5:]) == [
        "comment",
        "cannot_judge_reason",
        "participant_id",
        "guideline_sha256",
        "criterion_version",
    ]
    assert set(df.loc[df["annotator"] == user.username, "participant_id"]) == {"5f0c-PID_42"}


def test_the_export_with_participant_ids_imports_again(world, tmp_path):
    a = world["a"]
    owner = _page_client(world, "owner")
    url = _invite_url(owner, a)
    visitor = Client()
    visitor.post(url, {"participant": "P-77"})
    page = visitor.get(f"/study/{a.pk}/annotate/")
    data = {"item": page.context["item"]["id"]}
    data |= {f"choice-{i}": "tie" for i in range(len(a.criteria))}
    visitor.post(f"/study/{a.pk}/annotate/", data)
    out = tmp_path / "export"
    call_command("export_study", str(a.pk), "--format", "csv", "--out", str(out))
    judgments = next(out.rglob("judgments.csv"))
    text = judgments.read_text().replace(a.name, "imported copy")
    copy = tmp_path / "judgments.csv"
    copy.write_text(text)
    call_command("import_judgments", str(copy), stdout=io.StringIO())
    imported = Study.objects.get(name="imported copy")
    account = Judgment.objects.get(study=imported).annotator
    assert account.profile.participant_id == "P-77"


def test_no_completion_code_without_work(world):
    """A participant who arrives when every item is complete gets no code, and is told why."""
    a = world["a"]
    url = _invite_url(_page_client(world, "owner"), a, completion_code="NOWORK")
    ann = _page_client(world, "annotator")
    for _ in range(2):  # k = 1: the member judges both items
        page = ann.get(f"/study/{a.pk}/annotate/")
        data = {"item": page.context["item"]["id"]}
        data |= {f"choice-{i}": "tie" for i in range(len(a.criteria))}
        ann.post(f"/study/{a.pk}/annotate/", data)
    late = Client()
    late.post(url, {"participant": "late-1"})
    done = late.get(f"/study/{a.pk}/annotate/").content.decode()
    assert "NOWORK" not in done and 'id="no-completion"' in done


@pytest.mark.parametrize(
    "query",
    [
        {"PROLIFIC_PID": "x" * 101},
        {"participant": "a b"},
        {"participant": "<script>"},
        {"PROLIFIC_PID": "one", "participant": "two"},
    ],
)
def test_a_malformed_participant_id_is_a_400_naming_it(world, query):
    url = _invite_url(_page_client(world, "owner"), world["a"])
    users_before = get_user_model().objects.count()
    for r in (Client().get(url, query), Client().post(url, query)):
        assert r.status_code == 400 and "participant" in r.content.decode()
    assert get_user_model().objects.count() == users_before


def test_a_signed_in_annotator_is_enrolled_and_a_researcher_is_told_the_link_is_for_annotators(
    world,
):
    a, b = world["a"], world["b"]
    url = _invite_url(_page_client(world, "admin"), b)
    ann = _page_client(world, "annotator")
    assert "ann-a" in ann.get(url).content.decode()  # "you will take part as ann-a"
    users_before = get_user_model().objects.count()
    r = ann.post(url, {"PROLIFIC_PID": "PID9"})
    assert r.status_code == 302 and ann.get(f"/study/{b.pk}/annotate/").status_code == 200
    assert get_user_model().objects.count() == users_before
    assert Profile.objects.get(user=world["users"]["annotator"]).participant_id == "PID9"
    assert ann.get(url).status_code == 302  # already a member: straight to the study
    assert ann.get(f"/study/{a.pk}/annotate/").status_code == 200  # still a member of A

    res = _page_client(world, "stranger")
    for r in (res.get(url), res.post(url)):
        assert r.status_code == 403 and "for annotators" in r.content.decode()
    assert not StudyMember.objects.filter(study=b, user=world["users"]["stranger"]).exists()


def test_revoked_expired_unknown_and_closed_links_say_so(world):
    a = world["a"]
    owner = _page_client(world, "owner")
    url = _invite_url(owner, a)
    invite = StudyInvite.objects.get(study=a)
    r = owner.post(f"/studies/{a.pk}/invites/{invite.pk}/revoke/", follow=True)
    assert "revoked" in r.content.decode()
    users_before = get_user_model().objects.count()
    for method in ("get", "post"):
        r = getattr(Client(), method)(url)
        assert r.status_code == 410 and "withdrawn" in r.content.decode()
    assert get_user_model().objects.count() == users_before

    url = _invite_url(owner, a, expires_in_days="3")
    StudyInvite.objects.filter(pk=StudyInvite.objects.latest("pk").pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    r = Client().get(url)
    assert r.status_code == 410 and "expired" in r.content.decode()

    r = Client().get("/join/not-a-token/")
    assert r.status_code == 404 and "not valid" in r.content.decode()

    url = _invite_url(owner, a)
    Study.objects.filter(pk=a.pk).update(status=Study.Status.CLOSED)
    r = Client().post(url)
    assert r.status_code == 410 and "ended" in r.content.decode()


def test_new_accounts_from_one_address_are_throttled(world, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "600/minute", "anon": "2/minute"},
    }
    url = _invite_url(_page_client(world, "owner"), world["a"])
    users_before = get_user_model().objects.count()
    codes = [Client().post(url).status_code for _ in range(3)]
    assert codes == [302, 302, 429]
    r = Client().post(url)
    assert "Try again in" in r.content.decode() and 1 <= int(r["Retry-After"]) <= 60
    assert get_user_model().objects.count() == users_before + 2
    # a signed-in annotator is not a new account: enrolled whatever the rate
    assert _page_client(world, "stranger_annotator").post(url).status_code == 302


def test_invite_links_through_the_api(world):
    a = world["a"]
    collab = _api_client(world, "collaborator")
    r = collab.post(
        f"/api/studies/{a.pk}/invites/", {"completion_code": "PROLIFIC1", "expires_in_days": 7}
    )
    assert r.status_code == 201, r.json()
    invite = r.json()
    assert invite["completion_code"] == "PROLIFIC1" and invite["state"] == "active"
    assert invite["url"] == f"http://testserver/join/{invite['token']}/"
    assert invite["created_by"] == "collab-a" and invite["expires_at"]
    bad = collab.post(f"/api/studies/{a.pk}/invites/", {"completion_code": "no spaces"})
    assert bad.status_code == 400 and "completion_code" in bad.json()

    visitor = Client()
    visitor.post(f"/join/{invite['token']}/?participant=api-P1")
    assert visitor.get(f"/study/{a.pk}/guidelines/").status_code == 200
    assert collab.get(f"/api/studies/{a.pk}/invites/").json()[0]["uses"] == 1

    r = collab.delete(f"/api/studies/{a.pk}/invites/{invite['id']}/")
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    assert Client().get(f"/join/{invite['token']}/").status_code == 410
    # the invite of another study is not found through this one
    other = StudyInvite.objects.create(study=world["b"])
    assert collab.delete(f"/api/studies/{a.pk}/invites/{other.pk}/").status_code == 404
