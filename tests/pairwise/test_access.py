"""Per-study access: every role against two studies, in the pages and the API; members managed
on the study page, through the API and with `manage.py study_members`; invite links with a
participant id and a completion code.

Study A has members (an annotator, its owner, a collaborating researcher); study B has none of
them. A study the caller may not reach answers 404, as if it did not exist.
"""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta

import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from pairwise.models import Judgment, Lease, Profile, Study, StudyInvite, StudyMember
from tests.factories import UserFactory, annotator, make_study, researcher

pytestmark = pytest.mark.django_db

ROLES = (
    "anonymous",
    "annotator",
    "stranger_annotator",
    "owner",
    "collaborator",
    "stranger",
    "admin",
)


@pytest.fixture
def world():
    """Two open studies; members of A only; the admin belongs to neither."""
    a, _, _ = make_study(n_contexts=2, k=1, public_title="Study Alpha")
    b, _, _ = make_study(n_contexts=2, k=1, public_title="Study Beta")
    users = {
        "annotator": annotator(a, username="ann-a"),
        "stranger_annotator": annotator(username="ann-none"),
        "owner": researcher(username="owner-a"),
        "collaborator": researcher(a, username="collab-a"),
        "stranger": researcher(username="res-none"),
        "admin": UserFactory(username="boss", role="admin"),
    }
    StudyMember.objects.create(study=a, user=users["owner"], role=StudyMember.Role.OWNER)
    return {"a": a, "b": b, "users": users}


def _page_client(world, role: str) -> Client:
    client = Client()
    if role != "anonymous":
        client.force_login(world["users"][role])
    return client


def _api_client(world, role: str) -> APIClient:
    client = APIClient()
    if role != "anonymous":
        client.force_authenticate(world["users"][role])
    return client


def _annotator_code(role: str, which: str, ok: int = 200) -> int:
    """What an annotator-side URL answers: login first, role (403), then membership (404)."""
    if role == "anonymous":
        return 302
    if role in ("owner", "collaborator", "stranger"):
        return 403
    if role == "admin" or (role == "annotator" and which == "a"):
        return ok
    return 404


def _researcher_code(role: str, which: str, ok: int = 200) -> int:
    if role == "anonymous":
        return 302
    if role in ("annotator", "stranger_annotator"):
        return 403
    if role == "admin" or (role in ("owner", "collaborator") and which == "a"):
        return ok
    return 404


def _api(code: int) -> tuple[int, ...]:
    # DRF: no session and no token is 403 (the session scheme names no challenge) or 401
    return (401, 403) if code == 302 else (code,)


# --- Pages ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_pages_reach_only_the_callers_studies(world, role):
    client = _page_client(world, role)
    for which in ("a", "b"):
        pk = world[which].pk
        annotator_pages = {
            f"/study/{pk}/guidelines/": 200,
            f"/study/{pk}/annotate/": 200,
        }
        for url, ok in annotator_pages.items():
            r = client.get(url)
            assert r.status_code == _annotator_code(role, which, ok), (role, url)
        # an incomplete form: a member is sent back to the item with a message (302);
        # anyone else never reaches the form's checks
        r = client.post(f"/study/{pk}/annotate/", {"item": "nope"})
        assert r.status_code == _annotator_code(role, which, 302), (role, "submit")
        if r.status_code == 302 and role == "anonymous":
            assert "/accounts/login/" in r["Location"]
        researcher_pages = {
            ("get", f"/studies/{pk}/", None): 200,
            ("get", f"/studies/{pk}/results/", None): 200,
            ("get", f"/studies/{pk}/export/csv/", None): 200,
            # bad form values: 400 once the study is found (nothing changes)
            ("post", f"/studies/{pk}/requeue/", (("checkpoint", "abc"),)): 400,
            ("post", f"/studies/{pk}/members/", (("action", "add"), ("usernames", "x9"))): 400,
            ("post", f"/studies/{pk}/invites/", (("completion_code", "bad code!"),)): 400,
            ("post", f"/studies/{pk}/invites/999/revoke/", None): 404,
        }
        for (method, url, data), ok in researcher_pages.items():
            r = getattr(client, method)(url, dict(data or ()))
            assert r.status_code == _researcher_code(role, which, ok), (role, url)
            if r.status_code == 302:
                assert "/accounts/login/" in r["Location"]
    assert not StudyMember.objects.filter(user__username="x9").exists()


@pytest.mark.parametrize("role", ROLES)
def test_study_lists_list_only_the_callers_studies(world, role):
    client = _page_client(world, role)
    a, b = world["a"], world["b"]
    home = client.get("/")
    studies = client.get("/studies/")
    if role == "anonymous":
        assert home.status_code == studies.status_code == 302
        return
    if role in ("annotator", "stranger_annotator"):
        body = home.content.decode()
        assert ("Study Alpha" in body) == (role == "annotator")
        assert "Study Beta" not in body
        assert studies.status_code == 403
        return
    assert studies.status_code == 200
    listed = {s.pk for s in studies.context["studies"]}
    expected = {
        "owner": {a.pk},
        "collaborator": {a.pk},
        "stranger": set(),
        "admin": {a.pk, b.pk},
    }[role]
    assert listed == expected


def test_a_member_judges_and_the_done_page_shows_no_code_without_an_invite(world):
    a = world["a"]
    client = _page_client(world, "annotator")
    for _ in range(2):
        page = client.get(f"/study/{a.pk}/annotate/")
        data = {"item": page.context["item"]["id"]}
        data |= {f"choice-{i}": "left" for i in range(len(a.criteria))}
        assert client.post(f"/study/{a.pk}/annotate/", data).status_code == 302
    done = client.get(f"/study/{a.pk}/annotate/")
    assert "All done" in done.content.decode() and "completion-code" not in done.content.decode()
    assert Judgment.objects.filter(annotator=world["users"]["annotator"]).count() == 2


# --- API -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_api_reaches_only_the_callers_studies(world, role):
    client = _api_client(world, role)
    for which in ("a", "b"):
        pk = world[which].pk
        base = f"/api/annotator/studies/{pk}"
        assert client.get(f"{base}/next/").status_code in _api(_annotator_code(role, which))
        assert client.get(f"{base}/progress/").status_code in _api(_annotator_code(role, which))
        r = client.post(f"{base}/judgments/", {}, format="json")  # no item: 400 once found
        assert r.status_code in _api(_annotator_code(role, which, 400)), (role, "judgments")
        study = f"/api/studies/{pk}"
        for method, url, body, ok in [
            ("get", f"{study}/", None, 200),
            ("get", f"{study}/results/", None, 200),
            ("get", f"{study}/export/", None, 200),
            ("get", f"{study}/members/", None, 200),
            ("get", f"{study}/invites/", None, 200),
            ("post", f"{study}/requeue/", {}, 400),
            ("post", f"{study}/members/", {"usernames": []}, 400),
            ("post", f"{study}/invites/", {"expires_in_days": 0}, 400),
            ("post", f"{study}/retry-failed/", None, 200),
            ("delete", f"{study}/members/nobody-here/", None, 400),
            ("delete", f"{study}/invites/999/", None, 404),
        ]:
            r = getattr(client, method)(url, body, format="json")
            assert r.status_code in _api(_researcher_code(role, which, ok)), (role, method, url)


@pytest.mark.parametrize("role", ROLES)
def test_api_lists_list_only_the_callers_studies(world, role):
    client = _api_client(world, role)
    a, b = world["a"], world["b"]
    mine = client.get("/api/annotator/studies/")
    managed = client.get("/api/studies/")
    if role == "anonymous":
        assert mine.status_code in (401, 403) and managed.status_code in (401, 403)
        return
    judges = role in ("annotator", "stranger_annotator", "admin")
    researches = role in ("owner", "collaborator", "stranger", "admin")
    assert mine.status_code == (200 if judges else 403)
    assert managed.status_code == (200 if researches else 403)
    if judges:
        expected = {"annotator": {a.pk}, "stranger_annotator": set(), "admin": {a.pk, b.pk}}
        assert {s["id"] for s in mine.json()} == expected[role]
        assert all("Beta" not in s["name"] for s in mine.json() if role != "admin")
    if researches:
        expected = {"owner": {a.pk}, "collaborator": {a.pk}, "stranger": set()}
        assert {s["id"] for s in managed.json()} == expected.get(role, {a.pk, b.pk})


def test_creating_a_study_through_the_api_makes_the_creator_its_owner(world):
    from tests.factories import CheckpointFactory, EvalContextFactory, SystemFactory

    CheckpointFactory(system=SystemFactory(name="CARE"))
    CheckpointFactory(system=SystemFactory(name="ESConv"))
    creator = _api_client(world, "stranger")
    r = creator.post(
        "/api/studies/",
        {"name": "new", "contexts": [EvalContextFactory().pk], "comparisons": [["CARE", "ESConv"]]},
        format="json",
    )
    assert r.status_code == 201, r.json()
    pk = r.json()["id"]
    member = StudyMember.objects.get(study_id=pk)
    assert (member.user.username, member.role) == ("res-none", "owner")
    assert creator.get(f"/api/studies/{pk}/").status_code == 200
    assert _api_client(world, "owner").get(f"/api/studies/{pk}/").status_code == 404
    assert _api_client(world, "admin").get(f"/api/studies/{pk}/").status_code == 200


# --- Managing members ----------------------------------------------------------------------------


def test_members_are_managed_on_the_study_page(world):
    a, users = world["a"], world["users"]
    owner = _page_client(world, "owner")
    page = owner.get(f"/studies/{a.pk}/")
    body = page.content.decode()
    assert 'id="members-table"' in body and "ann-a" in body and "collab-a" in body
    assert "ann-none" not in body

    # all or nothing: one unknown name adds nobody, and the page says which
    r = owner.post(
        f"/studies/{a.pk}/members/",
        {"action": "add", "usernames": "ann-none, ghost", "role": "annotator"},
    )
    assert r.status_code == 400 and "ghost" in r.content.decode()
    assert not StudyMember.objects.filter(study=a, user=users["stranger_annotator"]).exists()
    # an annotator account cannot be made a researcher of the study
    r = owner.post(
        f"/studies/{a.pk}/members/",
        {"action": "add", "usernames": "ann-none", "role": "researcher"},
    )
    assert r.status_code == 400 and "researcher role" in r.content.decode()

    r = owner.post(
        f"/studies/{a.pk}/members/",
        {"action": "add", "usernames": "ann-none", "role": "annotator"},
        follow=True,
    )
    assert "Added ann-none as annotator" in r.content.decode()
    newcomer = _page_client(world, "stranger_annotator")
    assert newcomer.get(f"/study/{a.pk}/annotate/").status_code == 200

    # a collaborator adds another researcher, who then sees the study
    collab = _page_client(world, "collaborator")
    collab.post(
        f"/studies/{a.pk}/members/",
        {"action": "add", "usernames": "res-none", "role": "researcher"},
    )
    assert _page_client(world, "stranger").get(f"/studies/{a.pk}/").status_code == 200

    # removing: the annotator loses the study and its lease goes back to the pool
    assert Lease.objects.filter(annotator=users["stranger_annotator"]).count() == 1
    collab.post(f"/studies/{a.pk}/members/", {"action": "remove", "usernames": "ann-none"})
    assert newcomer.get(f"/study/{a.pk}/annotate/").status_code == 404
    assert not Lease.objects.filter(annotator=users["stranger_annotator"]).exists()

    # the owner is removed by an admin only
    r = collab.post(f"/studies/{a.pk}/members/", {"action": "remove", "usernames": "owner-a"})
    assert r.status_code == 400 and "only an admin" in r.content.decode()
    admin = _page_client(world, "admin")
    assert "Remove<span" in admin.get(f"/studies/{a.pk}/").content.decode()
    admin.post(f"/studies/{a.pk}/members/", {"action": "remove", "usernames": "owner-a"})
    assert owner.get(f"/studies/{a.pk}/").status_code == 404


def test_members_are_managed_through_the_api(world):
    a = world["a"]
    collab = _api_client(world, "collaborator")
    listed = collab.get(f"/api/studies/{a.pk}/members/").json()
    assert {(m["username"], m["role"]) for m in listed} == {
        ("ann-a", "annotator"),
        ("collab-a", "researcher"),
        ("owner-a", "owner"),
    }
    r = collab.post(
        f"/api/studies/{a.pk}/members/",
        {"usernames": ["ann-none", "nobody1", "nobody2"]},
        format="json",
    )
    assert r.status_code == 400 and "'nobody1', 'nobody2'" in r.json()["usernames"][0]
    r = collab.post(
        f"/api/studies/{a.pk}/members/", {"usernames": ["ann-none"], "role": "annotator"}
    )
    assert r.status_code == 201
    added = next(m for m in r.json() if m["username"] == "ann-none")
    assert added["role"] == "annotator" and added["added_by"] == "collab-a"
    ann = _api_client(world, "stranger_annotator")
    assert ann.get(f"/api/annotator/studies/{a.pk}/next/").status_code == 200

    r = collab.delete(f"/api/studies/{a.pk}/members/ann-none/")
    assert r.status_code == 200 and "ann-none" not in {m["username"] for m in r.json()}
    assert ann.get(f"/api/annotator/studies/{a.pk}/next/").status_code == 404
    r = collab.delete(f"/api/studies/{a.pk}/members/owner-a/")
    assert r.status_code == 400 and "only an admin" in r.json()["usernames"][0]
    assert (
        _api_client(world, "admin").delete(f"/api/studies/{a.pk}/members/owner-a/").status_code
        == 200
    )


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


# --- The command ---------------------------------------------------------------------------------


def _run(*args) -> str:
    out = io.StringIO()
    call_command("study_members", *args, stdout=out)
    return out.getvalue()


def test_study_members_command_adds_lists_and_removes(world):
    a = world["a"]
    annotator(username="cmd-1")
    annotator(username="cmd-2")
    out = _run(a.name, "--add", "cmd-1", "cmd-2")
    assert "cmd-1, cmd-2 added as annotator" in out
    assert set(
        StudyMember.objects.filter(study=a, role="annotator").values_list(
            "user__username", flat=True
        )
    ) == {"ann-a", "cmd-1", "cmd-2"}
    _run(str(a.pk), "--add", "res-none", "--role", "researcher")
    listed = _run(str(a.pk), "--list")
    assert "res-none" in listed and "researcher" in listed and "owner-a" in listed

    out = _run(str(a.pk), "--remove", "cmd-1", "owner-a")  # an operator may remove the owner
    assert "2 members removed" in out
    assert not StudyMember.objects.filter(study=a, user__username__in=["cmd-1", "owner-a"]).exists()


def test_study_members_command_names_what_is_wrong_and_changes_nothing(world):
    a = world["a"]
    before = StudyMember.objects.count()
    with pytest.raises(CommandError, match="'ghost', 'ghoul'"):
        _run(str(a.pk), "--add", "ann-none", "ghost", "ghoul")
    with pytest.raises(CommandError, match="'ann-none' not in the researcher role"):
        _run(str(a.pk), "--add", "ann-none", "--role", "researcher")
    with pytest.raises(CommandError, match="'ann-none' not a member"):
        _run(str(a.pk), "--remove", "ann-a", "ann-none")
    with pytest.raises(CommandError, match="no study with id or name 'nope'"):
        _run("nope", "--list")
    with pytest.raises(CommandError, match="no invite link 999"):
        _run(str(a.pk), "--revoke-invite", "999")
    assert StudyMember.objects.count() == before


def test_study_members_command_prints_a_working_invite_link(world):
    a = world["a"]
    out = _run(str(a.pk), "--invite", "--completion-code", "DONE-1", "--base-url", "https://x.org")
    url = next(line for line in out.splitlines() if line.startswith("https://x.org/join/"))
    path = url.removeprefix("https://x.org")
    visitor = Client()
    assert visitor.post(path, {"participant": "cmd-P"}).status_code == 302
    assert visitor.get(f"/study/{a.pk}/annotate/").status_code == 200
    invite = StudyInvite.objects.get(study=a)
    assert invite.completion_code == "DONE-1"
    assert f"invite {invite.pk}: active, 1 enrolled" in _run(str(a.pk))
    _run(str(a.pk), "--revoke-invite", str(invite.pk))
    assert Client().get(path).status_code == 410


def test_simulated_annotators_are_members_of_the_study_they_judge(world):
    a = world["a"]
    call_command("simulate_annotators", str(a.pk), "--annotators", "2", stdout=io.StringIO())
    members = StudyMember.objects.filter(study=a, user__username__startswith="simulated-")
    assert sorted(members.values_list("user__username", "role")) == [
        ("simulated-1", "annotator"),
        ("simulated-2", "annotator"),
    ]
    assert not StudyMember.objects.filter(study=world["b"], user__username__startswith="sim")


def test_the_admin_shows_a_studys_members_and_invite_links(world):
    a = world["a"]
    StudyInvite.objects.create(study=a, completion_code="ADMINSEES")
    admin = UserFactory(username="root")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client = Client()
    client.force_login(admin)
    page = client.get(f"/admin/pairwise/study/{a.pk}/change/").content.decode()
    # the three members (owner, collaborator, annotator) and the invite, editable
    assert 'name="members-TOTAL_FORMS" value="3"' in page
    assert 'name="invites-TOTAL_FORMS" value="1"' in page and "ADMINSEES" in page
