"""Server-rendered pages: annotators judge blind pairs; researchers follow and analyse studies.

Annotator pages get only what `blind_item` returns: texts and an opaque item id, never a
system, checkpoint or response id.
"""

from __future__ import annotations

import markdown
import nh3
from django.contrib import messages
from django.contrib.auth import login
from django.core.exceptions import PermissionDenied
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from pairwise import roles
from pairwise.models import Study, StudyInvite
from pairwise.services import access, allocation, criteria, evaluators, health
from pairwise.services.blind import blind_item


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 or 503 from a report at most a few seconds old (no broker round trip). Anonymous
    callers get `{"ok": ...}` only; staff and admins get the details (worker host names)."""
    report = health.cached_health()
    staff = request.user.is_staff or roles.is_admin(request.user)  # False for anonymous
    body = report if staff else {"ok": report["ok"]}
    response = JsonResponse(body, status=200 if report["ok"] else 503)
    response["Content-Length"] = len(response.content)  # probes skip CommonMiddleware
    # a 503 here is an answer, not a server error: no ERROR line per probe while a worker is down
    response._has_been_logged = True
    return response


def render_markdown(text: str) -> str:
    """Guidelines are Markdown written by researchers: rendered, then sanitised."""
    return nh3.clean(markdown.markdown(text or "", extensions=["extra", "sane_lists"]))


# A role that cannot use a kind of page at all gets 403 (for any id: that says nothing about a
# study); a study the caller may not reach is a 404, as if it did not exist (services/access.py).


def _require_annotator(request: HttpRequest) -> None:
    if not access.may_judge(request.user):
        raise PermissionDenied("Only annotators can judge items.")


def _require_researcher(request: HttpRequest) -> None:
    if not access.may_research(request.user):
        raise PermissionDenied("Only researchers and admins can see studies and results.")


def _study_to_annotate(request: HttpRequest, study_id: int, *, open_only: bool = False) -> Study:
    _require_annotator(request)
    study = access.study_to_annotate(request.user, study_id, open_only=open_only)
    if study is None:
        raise Http404("No study of yours with that id.")
    return study


def _managed_study(request: HttpRequest, study_id: int) -> Study:
    _require_researcher(request)
    return get_object_or_404(access.managed_studies(request.user), pk=study_id)


def home(request: HttpRequest) -> HttpResponse:
    if roles.is_researcher(request.user):
        return redirect("study-list")
    _require_annotator(request)
    studies = access.annotated_studies(request.user).filter(status=Study.Status.OPEN)
    rows = [(s, allocation.progress(s, request.user)) for s in studies.order_by("pk")]
    return render(request, "pairwise/home.html", {"rows": rows})


def guidelines(request: HttpRequest, study_id: int) -> HttpResponse:
    study = _study_to_annotate(request, study_id, open_only=True)
    return render(
        request,
        "pairwise/guidelines.html",
        {
            "study": study,
            "guidelines_html": render_markdown(study.guidelines),
            "criteria": criteria.definitions(study),
        },
    )


@never_cache
@require_http_methods(["GET", "POST"])
def annotate(request: HttpRequest, study_id: int) -> HttpResponse:
    study = _study_to_annotate(request, study_id)
    if study.status != Study.Status.OPEN:
        return render(request, "pairwise/closed.html", {"study": study}, status=409)
    if request.method == "POST":
        return _submit(request, study)
    item, progress = allocation.assign(study, request.user)
    if item is None:
        # crowd platforms (Prolific) ask their participants for it at the end; not for no work
        code = access.completion_code(request.user, study)
        return render(
            request,
            "pairwise/done.html",
            {
                "study": study,
                "progress": progress,
                "completion_code": code if progress.done else None,
                "nothing_to_do": bool(code) and not progress.done,
            },
        )
    return render(
        request,
        "pairwise/annotate.html",
        {
            "study": study,
            "item": blind_item(item),
            "criteria": criteria.definitions(study),  # [{name, definition}], cached per process
            "progress": progress,
            "position": progress.done + 1,
            "lease_expires": item.lease_expires_at,  # set by next_item
            "errors": {},
        },
    )


def _submit(request: HttpRequest, study: Study) -> HttpResponse:
    public_id = request.POST.get("item", "")
    cannot = request.POST.get("cannot_judge") == "1"
    choices = {c: request.POST.get(f"choice-{i}") for i, c in enumerate(study.criteria)}
    try:
        allocation.submit(
            study,
            request.user,
            public_id,
            {} if cannot else choices,
            comment=request.POST.get("comment", ""),
            cannot_judge=cannot,
            cannot_judge_reason=request.POST.get("cannot_judge_reason", ""),
        )
    except allocation.InvalidJudgment as exc:
        messages.error(request, f"Please complete the form: {exc.message}")
    except allocation.LeaseExpired as exc:
        messages.warning(request, exc.message)
    except allocation.ItemNotFound:
        raise Http404("No such item in this study") from None
    return redirect("annotate", study_id=study.pk)


# --- Researchers -------------------------------------------------------------------------------


def study_list(request: HttpRequest) -> HttpResponse:
    _require_researcher(request)
    studies = access.managed_studies(request.user)
    return render(request, "pairwise/study_list.html", {"studies": studies})


def study_detail(request: HttpRequest, study_id: int) -> HttpResponse:
    return _detail_page(request, _managed_study(request, study_id))


def _detail_page(
    request: HttpRequest, study: Study, *, errors: dict | None = None, status: int = 200
) -> HttpResponse:
    """The study page; `errors` ({form: message}) re-renders it after a bad form (400)."""
    from pairwise.models import Checkpoint
    from pairwise.services import exposure, generation, identity, scoring, studies
    from training.metrics import METRIC_KEYS

    flagged = identity.flagged_responses(study)  # listed, and counted in the overview
    invites = [
        {
            "invite": invite,
            "state": access.invite_state(invite),
            "url": request.build_absolute_uri(reverse("join", args=[invite.token])),
        }
        for invite in study.invites.select_related("study", "created_by")
    ]
    from pairwise.criteria_views import detail_context

    members = access.members(study)
    planner = _planner(study, request.GET)
    if "error" in planner and status == 200:
        status = 400  # a planner field out of range; the page names it
    return render(
        request,
        "pairwise/study_detail.html",
        {
            "study": study,
            "gen": generation.generation_progress(study),
            "overview": studies.study_overview(study, flagged=flagged),
            "exposure": exposure.exposure_overview(study),
            "identity_flagged": flagged,
            "metric_keys": METRIC_KEYS,
            "metrics": scoring.study_metrics(study),
            "checkpoints": Checkpoint.objects.select_related("system").filter(system__kind="model"),
            "members": members,
            **detail_context(study, members),  # criteria, guidelines, profiles
            "member_roles": access.ASSIGNABLE_ROLES,
            "invites": invites,
            "may_remove_owner": roles.is_admin(request.user),
            "errors": errors or {},
            "planner": planner,
        },
        status=status,
    )


def _planner(study: Study, params) -> dict:
    """The study page's planner: prefilled from the study, recomputed from the GET form."""
    from pairwise.services import export, power

    defaults = export.plan_defaults(study)
    inputs = {
        "win_rate": power.DEFAULT_WIN_RATE,
        "tie_share": power.DEFAULT_TIE_SHARE,
        "alpha": power.DEFAULT_ALPHA,
        "power": power.DEFAULT_POWER,
        **defaults,
        "icc": 0.0 if defaults["icc"] is None else round(defaults["icc"], 4),
    }
    inputs.update({k: params[k][:40] for k in inputs if params.get(k)})
    try:
        return {"inputs": inputs, "plan": power.plan_study(**inputs), "study_icc": defaults["icc"]}
    except power.PlanError as exc:
        return {"inputs": inputs, "error": str(exc), "study_icc": defaults["icc"]}


@require_POST
def study_members(request: HttpRequest, study_id: int) -> HttpResponse:
    """Add (`action=add`, `usernames`, `role`) or remove (`action=remove`, `usernames`)
    members; usernames separated by spaces or commas."""
    study = _managed_study(request, study_id)
    action = request.POST.get("action", "")
    names = request.POST.get("usernames", "").replace(",", " ").split()
    try:
        if action == "add":
            role = request.POST.get("role", access.Role.ANNOTATOR)
            access.add_members(study, names, role, by=request.user)
            messages.success(request, f"Added {', '.join(names)} as {role}.")
        elif action == "remove":
            access.remove_members(study, names, by=request.user)
            messages.success(request, f"Removed {', '.join(names)}.")
        elif action == "profile":  # one member's evaluator profile (criteria_views.py)
            from pairwise.criteria_views import member_profile

            return member_profile(request, study)
        else:
            raise access.AccessError(
                "action", f"expected 'add', 'remove' or 'profile', got {action[:20]!r}"
            )
    except access.AccessError as exc:
        return _detail_page(request, study, errors={"members": str(exc)}, status=400)
    return redirect(reverse("study-detail", args=[study.pk]) + "#members")


@require_POST
def study_invites(request: HttpRequest, study_id: int) -> HttpResponse:
    """Create an invite link (`completion_code` and `expires_in_days` optional)."""
    study = _managed_study(request, study_id)
    days = request.POST.get("expires_in_days", "").strip()
    try:
        if days and not days.isdigit():
            raise access.AccessError(
                "expires_in_days", f"expected a whole number, got {days[:20]!r}"
            )
        access.create_invite(
            study,
            request.user,
            completion_code=request.POST.get("completion_code", ""),
            expires_in_days=int(days) if days else None,
            profile=evaluators.profile_from_form(request.POST),
        )
    except (access.AccessError, evaluators.ProfileError) as exc:
        return _detail_page(request, study, errors={"invites": str(exc)}, status=400)
    messages.success(request, "Invite link created. Share it; revoke it here when you are done.")
    return redirect(reverse("study-detail", args=[study.pk]) + "#invites")


@require_POST
def invite_revoke(request: HttpRequest, study_id: int, invite_id: int) -> HttpResponse:
    study = _managed_study(request, study_id)
    invite = get_object_or_404(StudyInvite, pk=invite_id, study=study)
    access.revoke_invite(invite, request.user)
    messages.success(request, "Invite link revoked: following it now says so.")
    return redirect(reverse("study-detail", args=[study.pk]) + "#invites")


@require_POST
def study_requeue(request: HttpRequest, study_id: int) -> HttpResponse:
    from pairwise.services import studies
    from pairwise.services.checkpoints import resolve_checkpoint

    study = _managed_study(request, study_id)
    try:
        checkpoint = resolve_checkpoint(request.POST.get("checkpoint", ""))
        result = studies.requeue(study, checkpoint, actor=request.user)
    except ValueError as exc:  # StudyError too: a bad form value, named
        named = getattr(exc, "field", None) == "checkpoint"  # else the form's field is meant
        text = str(exc) if named else f"checkpoint: {exc}"
        return HttpResponseBadRequest(text, content_type="text/plain; charset=utf-8")
    messages.success(
        request,
        f"Re-queued {checkpoint.label}: {result['comparisons_added']} new comparisons, "
        f"{result['batches']} generation batches.",
    )
    return redirect("study-detail", study_id=study.pk)


def study_results(request: HttpRequest, study_id: int) -> HttpResponse:
    from pairwise.services import dashboard

    study = _managed_study(request, study_id)
    checkpoint = request.GET.get("checkpoint") or None
    try:
        context = dashboard.results_context(study, checkpoint=checkpoint)
    except ValueError as exc:  # a filter that names no checkpoint: 400, naming it
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    return render(request, "pairwise/results.html", {"study": study, **context})


def study_items(request: HttpRequest, study_id: int) -> HttpResponse:
    """The item browser: filtered items with context, replies, CARE nodes and judgments."""
    from pairwise.services import browser

    study = _managed_study(request, study_id)
    names = ("comparison", "outcome", "agreement", "has_comment", "criterion", "page")
    params = {k: request.GET.get(k, "")[:100] for k in names}
    try:
        found = browser.browse_items(study, **params)
    except browser.BrowseError as exc:  # a bad filter: 400, naming it
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    return render(
        request,
        "pairwise/study_items.html",
        {"study": study, "found": found, **browser.page_context(found)},
    )


def study_export(request: HttpRequest, study_id: int, fmt: str) -> FileResponse:
    from pairwise.services import export

    study = _managed_study(request, study_id)
    if fmt not in export.FORMATS:
        raise Http404(f"unknown export format {fmt!r}")
    return FileResponse(
        export.export_zip(study, fmt, actor=request.user),
        as_attachment=True,
        filename=f"study-{study.pk}-{fmt}.zip",
    )


# --- Invite links ------------------------------------------------------------------------------


def _join_page(request: HttpRequest, context: dict, status: int = 200) -> HttpResponse:
    return render(request, "pairwise/join.html", context, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
def join(request: HttpRequest, token: str) -> HttpResponse:
    """An invite link. GET shows the invitation (and changes nothing: link previews and mail
    scanners fetch links too); POST enrols the visitor as an annotator of the study, creating
    an account for a visitor who has none (crowd platforms send people without accounts), and
    takes them to the guidelines. `?PROLIFIC_PID=` or `?participant=` is kept on the profile
    and exported with their judgments."""
    try:
        invite = access.find_invite(token)
    except access.InviteNotFound:
        return _join_page(request, {"state": "unknown"}, status=404)
    except access.InviteGone as exc:
        return _join_page(request, {"state": exc.state, "study": exc.invite.study}, status=410)
    study, user = invite.study, request.user
    params = request.POST if request.method == "POST" else request.GET
    try:
        participant = access.participant_from(params)
    except access.AccessError as exc:
        return _join_page(request, {"state": "bad", "study": study, "error": str(exc)}, status=400)
    context = {"state": "active", "study": study, "participant": participant, "token": token}
    if user.is_authenticated and not roles.is_annotator(user):
        return _join_page(request, {**context, "state": "wrong-role"}, status=403)
    if request.method == "GET":
        if user.is_authenticated and access.may_annotate(user, study):
            return _after_join(study)
        return _join_page(request, context)
    if not user.is_authenticated and not _may_create_account(request):
        context = {**context, "state": "throttled", "wait": request.throttle_wait}
        response = _join_page(request, context, status=429)
        response["Retry-After"] = str(request.throttle_wait)
        return response
    try:
        enrolment = access.accept_invite(token, user, participant)
    except access.InviteNotFound:  # deleted between the two requests
        return _join_page(request, {"state": "unknown"}, status=404)
    except access.InviteGone as exc:  # revoked between the two requests
        return _join_page(request, {"state": exc.state, "study": study}, status=410)
    if enrolment.new_account or not user.is_authenticated:
        login(request, enrolment.user, backend=_password_backend())
    return _after_join(study)


def _may_create_account(request: HttpRequest) -> bool:
    """A link may be posted publicly: new accounts from one address are held to the rate of
    requests without credentials (API_THROTTLE_ANON), so nobody fills the database with them."""
    from pairwise.api.throttling import AnonThrottle

    throttle = AnonThrottle()
    if throttle.allow_request(request, None):
        return True
    request.throttle_wait = int(throttle.wait())
    return False


def _password_backend() -> str:
    """The configured backend that keeps sessions of ordinary accounts (a ModelBackend): an
    account made by an invite link has no password, so nothing authenticated it."""
    from django.conf import settings
    from django.contrib.auth import load_backend
    from django.contrib.auth.backends import ModelBackend

    return next(
        path
        for path in settings.AUTHENTICATION_BACKENDS
        if isinstance(load_backend(path), ModelBackend)
    )


def _after_join(study: Study) -> HttpResponse:
    if study.status == Study.Status.OPEN:
        return redirect("guidelines", study_id=study.pk)
    return redirect("annotate", study_id=study.pk)  # says the study is not open yet
