"""The audit log: who opened, closed, re-queued, registered, exported, imported, invited and
changed roles or members, and when, through the API, the pages, the admin and the commands; read
by admins only, and never written by the annotator's next and submit."""

from __future__ import annotations

import getpass
import json
from datetime import timedelta
from pathlib import Path

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from pairwise.models import Checkpoint, EvalContext, Study, StudyInvite, StudyMember
from pairwise.services import studies
from tests.factories import (
    CheckpointFactory,
    EvalContextFactory,
    SystemFactory,
    UserFactory,
    annotator,
    make_study,
    researcher,
)
from training.lineage import write_lineage

pytestmark = pytest.mark.django_db


def _entries(action: str, obj=None):
    rows = LogEntry.objects.filter(additional_data__action=action)
    if obj is not None:
        rows = rows.filter(
            content_type=ContentType.objects.get_for_model(obj), object_pk=str(obj.pk)
        )
    return list(rows.order_by("pk"))


def _one(action: str, obj=None) -> LogEntry:
    found = _entries(action, obj)
    assert len(found) == 1, f"{action}: {len(found)} rows {[e.additional_data for e in found]}"
    entry = found[0]
    assert timezone.now() - entry.timestamp < timedelta(minutes=1)
    return entry


def _token_client(user) -> APIClient:
    """A client signed with an API token: the request's user is known only inside DRF."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def _owned_study(owner, **kw):
    study, checkpoints, contexts = make_study(n_contexts=2, k=1, **kw)
    StudyMember.objects.get_or_create(study=study, user=owner, defaults={"role": "owner"})
    return study, checkpoints, contexts


def _checkpoint_folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    write_lineage(folder, system="CARE", config={}, parent=None, metrics={})
    return folder


# --- Study life cycle --------------------------------------------------------------------------


def test_open_requeue_retry_and_close_through_the_api_record_the_token_user():
    res = researcher(username="res-api")
    study, checkpoints, _ = _owned_study(res, status=Study.Status.DRAFT)
    api = _token_client(res)
    base = f"/api/studies/{study.pk}"

    assert api.post(f"{base}/open/").status_code == 200
    opened = _one("open", study)
    assert opened.actor == res and opened.object_repr == str(study)
    assert opened.additional_data["status"] == Study.Status.OPEN
    assert opened.action == LogEntry.Action.ACCESS

    v2 = CheckpointFactory(system=checkpoints[0].system, version=99)
    r = api.post(f"{base}/requeue/", {"checkpoint": str(v2.pk)}, format="json")
    assert r.status_code == 200, r.content
    requeued = _one("requeue", study)
    assert requeued.actor == res
    assert requeued.additional_data["checkpoint"] == v2.label
    assert requeued.additional_data["comparisons_added"] == 1

    batch = study.batches.first()
    batch.status = batch.Status.FAILED
    batch.save(update_fields=["status"])
    assert api.post(f"{base}/retry-failed/").json()["retried"] == [batch.pk]
    retried = _entries("requeue", study)[-1]
    assert retried.actor == res and retried.additional_data["retried_batches"] == [batch.pk]

    assert api.post(f"{base}/close/").status_code == 200
    assert _one("close", study).actor == res


def test_requeue_from_the_study_page_records_the_signed_in_researcher():
    res = researcher(username="res-page")
    study, checkpoints, _ = _owned_study(res)
    v2 = CheckpointFactory(system=checkpoints[0].system, version=50)
    client = Client()
    client.force_login(res)
    page = client.post(f"/studies/{study.pk}/requeue/", {"checkpoint": str(v2.pk)})
    assert page.status_code == 302
    entry = _one("requeue", study)
    assert entry.actor == res and entry.additional_data["checkpoint"] == v2.label
    assert entry.remote_addr == "127.0.0.1"  # the middleware adds where the request came from


def test_open_and_close_from_the_admin_record_the_admin():
    boss = UserFactory(username="boss", is_staff=True, is_superuser=True)
    study, _, _ = make_study(n_contexts=2, k=1, status=Study.Status.DRAFT)
    client = Client()
    client.force_login(boss)
    for action in ("open_selected", "close_selected"):
        r = client.post(
            "/admin/pairwise/study/", {"action": action, "_selected_action": [study.pk]}
        )
        assert r.status_code == 302
    assert _one("open", study).actor == boss
    assert _one("close", study).actor == boss
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED


@pytest.mark.django_db(transaction=True)
def test_requeue_command_records_the_command_and_the_os_user(capsys):
    care = SystemFactory(name="CARE")
    v1 = CheckpointFactory(system=care, version=1)
    base = CheckpointFactory(system=SystemFactory(name="ESConv"), version=1)
    study = studies.create_study(
        "rq-audit", contexts=[EvalContextFactory() for _ in range(2)], pairs=[(v1, base)]
    )
    studies.open_study(study)
    CheckpointFactory(system=care, version=2)
    call_command("requeue", "rq-audit", "--latest", "CARE")
    entry = _one("requeue", study)
    assert entry.actor is None
    assert entry.additional_data["via"] == "command"
    assert entry.additional_data["command"] == "requeue"
    assert entry.additional_data["os_user"] == getpass.getuser()
    assert entry.additional_data["checkpoint"] == "CARE v2"


# --- Checkpoints, export, import ---------------------------------------------------------------


def test_checkpoint_registration_by_api_and_command(tmp_path):
    res = researcher(username="res-reg")
    r = _token_client(res).post(
        "/api/checkpoints/register/",
        {"path": str(_checkpoint_folder(tmp_path, "a")), "system": "CARE"},
        format="json",
    )
    assert r.status_code == 201, r.content
    by_api = Checkpoint.objects.get(pk=r.json()["id"])
    entry = _one("register", by_api)
    assert entry.actor == res and entry.additional_data["path"] == by_api.path

    call_command("register_checkpoint", str(_checkpoint_folder(tmp_path, "b")))
    by_command = Checkpoint.objects.exclude(pk=by_api.pk).get()
    entry = _one("register", by_command)
    assert entry.actor is None and entry.additional_data["command"] == "register_checkpoint"


def test_exports_from_page_api_and_command_are_recorded(tmp_path):
    res = researcher(username="res-export")
    study, _, _ = _owned_study(res)
    client = Client()
    client.force_login(res)
    assert client.get(f"/studies/{study.pk}/export/csv/").status_code == 200
    assert _token_client(res).get(f"/api/studies/{study.pk}/export/?fmt=json").status_code == 200
    call_command("export_study", str(study.pk), "--format", "csv", "--out", str(tmp_path / "x"))
    page, api, command = _entries("export", study)
    assert (page.actor, page.additional_data["format"], page.additional_data["out"]) == (
        res,
        "csv",
        "download",
    )
    assert (api.actor, api.additional_data["format"]) == (res, "json")
    assert command.actor is None and command.additional_data["command"] == "export_study"
    assert command.additional_data["out"] == str((tmp_path / "x").resolve())


def test_imports_of_judgments_and_responses_by_command_are_recorded(tmp_path):
    _, checkpoints, _ = make_study(n_contexts=2, k=1)
    (tmp_path / "outside.csv").write_text(
        "study,item_id,comparison,system_a,system_b,a_side,annotator,criterion,choice\n"
        "outside,i1,X vs Y,X,Y,left,ann1,Overall,left\n"
        "outside,i1,X vs Y,X,Y,left,ann2,Overall,right\n"
    )
    call_command("import_judgments", str(tmp_path / "outside.csv"))
    entry = _one("import", Study.objects.get(name="outside"))
    assert entry.additional_data["kind"] == "judgments"
    assert entry.additional_data["file"] == str(tmp_path / "outside.csv")
    assert entry.additional_data["rows"] == 2
    assert entry.additional_data["command"] == "import_judgments"

    fresh = EvalContextFactory()
    lines = tmp_path / "responses.jsonl"
    lines.write_text(json.dumps({"context_id": fresh.pk, "text": "That sounds hard."}) + "\n")
    call_command("import_responses", str(lines), "--checkpoint", str(checkpoints[0].pk))
    entry = _one("import", checkpoints[0])
    assert entry.additional_data["kind"] == "responses"
    assert entry.additional_data["responses"] == 1
    assert entry.additional_data["command"] == "import_responses"


def test_import_contexts_command_is_recorded(tmp_path):
    folder = tmp_path / "esconv"
    folder.mkdir()
    dialog = [
        {"text": "I lost my job last week.", "speaker": "usr"},
        {"text": "I'm so sorry. How are you coping?", "speaker": "sys", "strategy": "Question"},
        {"text": "Not well, I can't sleep.", "speaker": "usr"},
        {"text": "That sounds exhausting.", "speaker": "sys", "strategy": "Reflection of feelings"},
    ]
    record = {
        "emotion_type": "sadness",
        "problem_type": "job crisis",
        "situation": "I lost my job.",
        "dialog": dialog,
    }
    (folder / "test.jsonl").write_text(json.dumps(record) + "\n")
    call_command("import_contexts", "--data-dir", str(tmp_path), "--n", "1")
    entry = _one("import")
    assert entry.content_type == ContentType.objects.get_for_model(EvalContext)
    assert entry.object_repr == "esconv/test"
    assert entry.additional_data["kind"] == "contexts"
    assert entry.additional_data["contexts"] == EvalContext.objects.count() == 1
    assert entry.additional_data["command"] == "import_contexts"


# --- Invites, roles and members ----------------------------------------------------------------


def test_invite_and_role_changes_are_recorded():
    call_command("invite_annotators", "alice")
    alice = get_user_model().objects.get(username="alice")
    invite = _one("invite", alice)
    assert invite.additional_data["role"] == "annotator"
    assert invite.additional_data["command"] == "invite_annotators"
    created = LogEntry.objects.get_for_object(alice).filter(action=LogEntry.Action.CREATE).get()
    assert "password" not in (created.changes or {})  # never the hash

    call_command("invite_annotators", "alice", "--role", "admin", "--reset")
    changes = [e.changes for e in LogEntry.objects.get_for_object(alice).order_by("pk")]
    groups = [c["groups"] for c in changes if c and "groups" in c]
    assert [g["objects"] for g in groups] == [["annotator"], ["admin"]]
    assert any(c and c.get("is_superuser") == ["False", "True"] for c in changes)
    assert not any(c and ("password" in c or "last_login" in c) for c in changes)


def test_a_group_change_in_the_admin_is_recorded_with_the_admin():
    boss = UserFactory(username="boss", is_staff=True, is_superuser=True)
    bob = annotator(username="bob")
    client = Client()
    client.force_login(boss)
    form = {
        "username": "bob",
        "is_active": "on",
        "groups": [Group.objects.get(name="researcher").pk],
        "date_joined_0": "2025-01-01",
        "date_joined_1": "00:00:00",
    }
    r = client.post(f"/admin/auth/user/{bob.pk}/change/", form)
    assert r.status_code == 302, r.content[:2000]
    m2m = [
        e
        for e in LogEntry.objects.get_for_object(bob).order_by("pk")
        if e.changes and "groups" in e.changes and e.actor == boss
    ]
    assert {
        (e.changes["groups"]["operation"], tuple(e.changes["groups"]["objects"])) for e in m2m
    } >= {
        ("delete", ("annotator",)),
        ("add", ("researcher",)),
    }


def test_study_members_and_invites_from_the_study_page_are_recorded():
    res = researcher(username="res-members")
    study, _, _ = _owned_study(res)
    annotator(username="carol")
    client = Client()
    client.force_login(res)
    base = f"/studies/{study.pk}"
    r = client.post(
        f"{base}/members/", {"action": "add", "usernames": "carol", "role": "annotator"}
    )
    assert r.status_code == 302
    member = StudyMember.objects.get(study=study, user__username="carol")
    added = LogEntry.objects.get_for_object(member).get(action=LogEntry.Action.CREATE)
    assert added.actor == res

    r = client.post(f"{base}/members/", {"action": "remove", "usernames": "carol"})
    assert r.status_code == 302
    removed = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(StudyMember),
        object_pk=str(member.pk),
        action=LogEntry.Action.DELETE,
    ).get()
    assert removed.actor == res

    assert client.post(f"{base}/invites/", {}).status_code == 302
    invite = StudyInvite.objects.get(study=study)
    made = LogEntry.objects.get_for_object(invite).get(action=LogEntry.Action.CREATE)
    assert made.actor == res
    assert invite.token not in json.dumps(made.changes)  # the link's secret is masked


def test_the_middleware_attributes_rows_to_a_user_known_only_inside_the_view():
    """An API token's user is set by DRF inside the view, after the middleware ran: the row
    still names them (auditlog's own middleware reads the user on the way in, and misses it)."""
    from django.contrib.auth.models import AnonymousUser
    from django.test import RequestFactory

    from pairwise.services.audit import AuditlogMiddleware

    res = researcher(username="late-user")
    study, _, _ = make_study(n_contexts=1, k=1)
    carol = annotator(username="carol-late")

    def view(request):
        request.user = res  # what DRF's authentication does to the underlying request
        StudyMember.objects.create(study=study, user=carol, role="annotator")
        return None

    request = RequestFactory().post("/api/anything/")
    request.user = AnonymousUser()
    AuditlogMiddleware(view)(request)
    member = StudyMember.objects.get(study=study, user=carol)
    assert LogEntry.objects.get_for_object(member).get().actor == res


# --- Who reads it, and what does not write it --------------------------------------------------


def _log_admin_status(user, path="/admin/auditlog/logentry/") -> int:
    client = Client()
    client.force_login(user)
    return client.get(path).status_code


def test_only_admins_read_the_log_and_nobody_edits_it():
    study, _, _ = make_study(n_contexts=1, k=1)
    studies.close_study(study)
    entry = _one("close", study)

    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    admin_group = UserFactory(username="adm", role="admin", is_staff=True)
    client = Client()
    client.force_login(superuser)
    listing = client.get("/admin/auditlog/logentry/")
    assert listing.status_code == 200 and b"close" in listing.content
    assert client.get(f"/admin/auditlog/logentry/{entry.pk}/change/").status_code == 200
    assert b"Audit log" in client.get("/admin/").content
    assert _log_admin_status(admin_group) == 200

    # read-only, even for a superuser
    assert client.get("/admin/auditlog/logentry/add/").status_code == 403
    assert (
        client.post(f"/admin/auditlog/logentry/{entry.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert LogEntry.objects.filter(pk=entry.pk).exists()

    # a researcher made staff with every model permission still cannot read it
    staff_researcher = researcher(username="res-staff")
    staff_researcher.is_staff = True
    staff_researcher.save(update_fields=["is_staff"])
    staff_researcher.user_permissions.set(Permission.objects.all())
    assert _log_admin_status(staff_researcher) == 403
    index = Client()
    index.force_login(staff_researcher)
    assert b"Audit log" not in index.get("/admin/").content
    # annotators and researchers are not staff: the admin sends them to its login page
    assert _log_admin_status(annotator(username="ann-x")) == 302
    assert _log_admin_status(researcher(username="res-x")) == 302


def test_the_annotator_hot_path_writes_no_audit_rows():
    study, _, _ = make_study(n_contexts=3, k=1)
    ann = annotator(username="fast")
    StudyMember.objects.get_or_create(study=study, user=ann, defaults={"role": "annotator"})
    api = _token_client(ann)
    pages = Client()
    pages.force_login(ann)
    before = LogEntry.objects.count()
    base = f"/api/annotator/studies/{study.pk}"
    for _ in range(2):  # through the API
        item = api.get(f"{base}/next/").json()["item"]
        choices = {c: "left" for c in study.criteria}
        r = api.post(f"{base}/judgments/", {"item": item["id"], "choices": choices}, format="json")
        assert r.status_code == 201
    page = pages.get(f"/study/{study.pk}/annotate/")  # and through the page
    assert page.status_code == 200
    assert study.judgments.count() == 2
    assert LogEntry.objects.count() == before
