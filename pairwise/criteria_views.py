"""Study-page forms for criteria, guidelines and evaluator profiles (issue #18, section 1).

Researchers only (the caller checks access); each form posts here, calls the same service as
the API and the commands (services/criteria.py, services/evaluators.py), and goes back to the
study page, or re-renders it with the error (400) naming the field.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from pairwise.models import Study, StudyMember
from pairwise.services import criteria, evaluators


def detail_context(study: Study, members: list[StudyMember]) -> dict:
    """What the study page shows of criteria, guidelines and profiles; sets `member.evaluator`
    (the profile fields) on each member."""
    profiles = evaluators.member_profiles(members)
    for member in members:
        member.evaluator = profiles[member.user_id]
    return {
        "criteria_table": criteria.criteria_table(study),
        "guideline_table": criteria.guideline_table(study),
    }


@require_POST
def study_criteria(request: HttpRequest, study_id: int) -> HttpResponse:
    """`action=criterion` (`name`, `definition`) edits a criterion; `action=guidelines`
    (`guidelines`) replaces the guidelines."""
    from pairwise.views import _detail_page, _managed_study

    study = _managed_study(request, study_id)
    action = request.POST.get("action", "")
    try:
        if action == "criterion":
            name = request.POST.get("name", "")
            row = criteria.edit_criterion(
                study, name, request.POST.get("definition", ""), actor=request.user
            )
            messages.success(request, f"{row.name} is now version {row.version}.")
        elif action == "guidelines":
            version = criteria.set_guidelines(
                study, request.POST.get("guidelines", ""), actor=request.user
            )
            messages.success(request, f"Guidelines saved (version {version.sha256[:12]}).")
        else:
            raise criteria.CriteriaError(
                "action", f"expected 'criterion' or 'guidelines', got {action[:20]!r}"
            )
    except criteria.CriteriaError as exc:
        return _detail_page(request, study, errors={"criteria": str(exc)}, status=400)
    return redirect(reverse("study-detail", args=[study.pk]) + "#criteria")


def member_profile(request: HttpRequest, study: Study) -> HttpResponse:
    """The members form's `action=profile`: record `username`'s evaluator profile from the
    form's fields (an empty field clears it; paid/is_author: yes, no or empty)."""
    from pairwise.views import _detail_page

    username = request.POST.get("username", "")
    user = get_user_model().objects.filter(username=username).first()
    try:
        if user is None or not StudyMember.objects.filter(study=study, user=user).exists():
            raise evaluators.ProfileError("username", f"{username[:150]!r} is not a member")
        data = {f: request.POST.get(f, "") for f in evaluators.PROFILE_FIELDS}
        evaluators.set_profile(user, data)
    except evaluators.ProfileError as exc:
        return _detail_page(request, study, errors={"members": str(exc)}, status=400)
    messages.success(request, f"Saved the profile of {user.username}.")
    return redirect(reverse("study-detail", args=[study.pk]) + "#members")
