"""Per-study access: every role against two studies, in the pages and the API; members managed
on the study page, through the API and with `manage.py study_members` (invite links:
test_access_invites.py; the shared world: access_world.py).

Study A has members (an annotator, its owner, a collaborating researcher); study B has none of
them. A study the caller may not reach answers 404, as if it did not exist.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from pairwise.models import Judgment, Lease, StudyInvite, StudyMember
from tests.factories import UserFactory, annotator
from tests.pairwise.access_world import _api_client, _page_client, world_fixture  # noqa: F401

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
