"""Server-rendered pages: annotators judge blind pairs; researchers follow and analyse studies.

Annotator pages get only what `blind_item` returns: texts and an opaque item id, never a
system, checkpoint or response id.
"""

from __future__ import annotations

import markdown
import nh3
from django.contrib import messages
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
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from pairwise import roles
from pairwise.models import Study
from pairwise.services import allocation, health
from pairwise.services.blind import blind_item


def healthz(request: HttpRequest) -> JsonResponse:
    report = health.health()
    return JsonResponse(report, status=200 if report["ok"] else 503)


def render_markdown(text: str) -> str:
    """Guidelines are Markdown written by researchers: rendered, then sanitised."""
    return nh3.clean(markdown.markdown(text or "", extensions=["extra", "sane_lists"]))


def _require_annotator(request: HttpRequest) -> None:
    if not (roles.is_annotator(request.user) or roles.is_admin(request.user)):
        raise PermissionDenied("Only annotators can judge items.")


def _require_researcher(request: HttpRequest) -> None:
    if not roles.is_researcher(request.user):
        raise PermissionDenied("Only researchers and admins can see studies and results.")


def home(request: HttpRequest) -> HttpResponse:
    if roles.is_researcher(request.user):
        return redirect("study-list")
    _require_annotator(request)
    studies = Study.objects.filter(status=Study.Status.OPEN).order_by("pk")
    rows = [(s, allocation.progress(s, request.user)) for s in studies]
    return render(request, "pairwise/home.html", {"rows": rows})


def guidelines(request: HttpRequest, study_id: int) -> HttpResponse:
    _require_annotator(request)
    study = get_object_or_404(Study, pk=study_id, status=Study.Status.OPEN)
    return render(
        request,
        "pairwise/guidelines.html",
        {"study": study, "guidelines_html": render_markdown(study.guidelines)},
    )


@never_cache
@require_http_methods(["GET", "POST"])
def annotate(request: HttpRequest, study_id: int) -> HttpResponse:
    _require_annotator(request)
    study = get_object_or_404(Study, pk=study_id)
    if study.status != Study.Status.OPEN:
        return render(request, "pairwise/closed.html", {"study": study}, status=409)
    if request.method == "POST":
        return _submit(request, study)
    item, progress = allocation.assign(study, request.user)
    if item is None:
        return render(request, "pairwise/done.html", {"study": study, "progress": progress})
    return render(
        request,
        "pairwise/annotate.html",
        {
            "study": study,
            "item": blind_item(item),
            "criteria": study.criteria,
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
        messages.warning(request, str(exc))
    except allocation.ItemNotFound:
        raise Http404("No such item in this study") from None
    return redirect("annotate", study_id=study.pk)


# --- Researchers -------------------------------------------------------------------------------


def study_list(request: HttpRequest) -> HttpResponse:
    _require_researcher(request)
    return render(request, "pairwise/study_list.html", {"studies": Study.objects.all()})


def study_detail(request: HttpRequest, study_id: int) -> HttpResponse:
    _require_researcher(request)
    from pairwise.models import Checkpoint
    from pairwise.services import exposure, generation, identity, scoring, studies
    from training.metrics import METRIC_KEYS

    study = get_object_or_404(Study, pk=study_id)
    flagged = identity.flagged_responses(study)  # listed, and counted in the overview
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
        },
    )


@require_POST
def study_requeue(request: HttpRequest, study_id: int) -> HttpResponse:
    _require_researcher(request)
    from pairwise.services import studies
    from pairwise.services.checkpoints import resolve_checkpoint

    study = get_object_or_404(Study, pk=study_id)
    try:
        checkpoint = resolve_checkpoint(request.POST.get("checkpoint", ""))
        result = studies.requeue(study, checkpoint)
    except ValueError as exc:  # StudyError too: a bad form value, named
        text = str(exc) if str(exc).startswith("checkpoint") else f"checkpoint: {exc}"
        return HttpResponseBadRequest(text, content_type="text/plain; charset=utf-8")
    messages.success(
        request,
        f"Re-queued {checkpoint.label}: {result['comparisons_added']} new comparisons, "
        f"{result['batches']} generation batches.",
    )
    return redirect("study-detail", study_id=study.pk)


def study_results(request: HttpRequest, study_id: int) -> HttpResponse:
    _require_researcher(request)
    from pairwise.services import dashboard

    study = get_object_or_404(Study, pk=study_id)
    checkpoint = request.GET.get("checkpoint") or None
    try:
        context = dashboard.results_context(study, checkpoint=checkpoint)
    except ValueError as exc:  # a filter that names no checkpoint: 400, naming it
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    return render(request, "pairwise/results.html", {"study": study, **context})


def study_export(request: HttpRequest, study_id: int, fmt: str) -> FileResponse:
    _require_researcher(request)
    from pairwise.services import export

    study = get_object_or_404(Study, pk=study_id)
    if fmt not in export.FORMATS:
        raise Http404(f"unknown export format {fmt!r}")
    return FileResponse(
        export.export_zip(study, fmt),
        as_attachment=True,
        filename=f"study-{study.pk}-{fmt}.zip",
    )
