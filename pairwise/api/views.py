"""The REST API: annotators (next item, submit, progress) and researchers (studies, checkpoints).

Annotator responses are built from `blind_item` only. Errors are JSON naming the field.
"""

from __future__ import annotations

from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response as APIResponse
from rest_framework.views import APIView

from pairwise.api import serializers as s
from pairwise.api.browser_serializers import ItemPageSerializer
from pairwise.api.criteria import CriteriaActions
from pairwise.api.schema import FIELD_ERRORS
from pairwise.converters import ID_REGEX
from pairwise.models import Checkpoint, EvalContext, Study, StudyInvite
from pairwise.services import access, allocation, browser, criteria, evaluators, generation, studies
from pairwise.services.blind import blind_item
from pairwise.services.checkpoints import resolve_checkpoint
from pairwise.services.errors import field_errors
from pairwise.services.export import FORMATS as EXPORT_FORMATS


class IsAnnotator(permissions.BasePermission):
    message = "Only annotators can judge items."

    def has_permission(self, request, view):
        return access.may_judge(request.user)


class IsResearcher(permissions.BasePermission):
    message = "Only researchers and admins can manage studies."

    def has_permission(self, request, view):
        return access.may_research(request.user)


def _open_study(request, study_id: int) -> Study:
    """The open study the caller may judge, or 404 (one query: `access.study_to_annotate`)."""
    study = access.study_to_annotate(request.user, study_id, open_only=True)
    if study is None:
        raise Http404("No open study of yours with that id.")
    return study


class AnnotatorStudiesView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsAnnotator]

    @extend_schema(responses=s.AnnotatorStudySerializer(many=True))
    def get(self, request):
        rows = []
        mine = access.annotated_studies(request.user).filter(status=Study.Status.OPEN)
        for study in mine.order_by("pk"):
            p = allocation.progress(study, request.user)
            rows.append(
                {
                    "id": study.pk,
                    "name": study.annotator_title,
                    "criteria": study.criteria,
                    "done": p.done,
                    "total": p.total,
                }
            )
        return APIResponse(s.AnnotatorStudySerializer(rows, many=True).data)


class NextItemView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsAnnotator]

    @extend_schema(responses=s.NextItemSerializer)
    def get(self, request, study_id: int):
        study = _open_study(request, study_id)
        item, p = allocation.assign(study, request.user)
        body = {"done": item is None, "progress": {"done": p.done, "total": p.total}}
        if item is not None:
            body["item"] = blind_item(item)
            body["lease_expires_at"] = item.lease_expires_at  # set by next_item
            body["criteria"] = criteria.definitions(study)  # cached per process: no query
        # The body is built from plain values in NextItemSerializer's shape (a test holds it
        # to the schema); running it through the serializer cost ~1 ms per request.
        return APIResponse(body)


class SubmitView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsAnnotator]

    @extend_schema(
        request=s.SubmitSerializer,
        responses={
            201: s.JudgmentReceiptSerializer,
            200: s.JudgmentReceiptSerializer,
            409: OpenApiResponse(s.LeaseExpiredSerializer, description="The lease ran out"),
        },
    )
    def post(self, request, study_id: int):
        study = _open_study(request, study_id)
        data = s.SubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            judgment, created = allocation.submit(
                study,
                request.user,
                v["item"],
                v.get("choices") or {},
                comment=v.get("comment", ""),
                client_seconds=v.get("seconds"),
                cannot_judge=v.get("cannot_judge", False),
                cannot_judge_reason=v.get("cannot_judge_reason", ""),
            )
        except (allocation.InvalidJudgment, allocation.ItemNotFound) as exc:
            raise ValidationError(field_errors(exc)) from None
        except allocation.LeaseExpired as exc:
            return APIResponse(
                {"item": [exc.message], "code": "lease_expired"}, status=status.HTTP_409_CONFLICT
            )
        p = allocation.progress(study, request.user)
        return APIResponse(
            {"item": v["item"], "created": created, "progress": {"done": p.done, "total": p.total}},
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class ProgressView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsAnnotator]

    @extend_schema(responses=s.ProgressSerializer)
    def get(self, request, study_id: int):
        p = allocation.progress(_open_study(request, study_id), request.user)
        return APIResponse({"done": p.done, "total": p.total})


class StudyViewSet(
    CriteriaActions,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Researchers: create, open, close, re-queue studies and follow their progress; manage
    their members and invite links. Each researcher reaches the studies they own or were added
    to (admins: all); any other id answers 404."""

    permission_classes = [permissions.IsAuthenticated, IsResearcher]
    lookup_value_regex = ID_REGEX  # a longer number is a 404, not a database error
    queryset = Study.objects.all()  # for the schema; requests see `get_queryset`
    # DELETE: members and invite links only (a study itself is never deleted through the API)
    http_method_names = ["get", "post", "delete", "head", "options"]

    def get_queryset(self):
        return access.managed_studies(self.request.user)

    def get_serializer_class(self):
        return s.StudyCreateSerializer if self.action == "create" else s.StudySerializer

    @extend_schema(request=s.StudyCreateSerializer, responses={201: s.StudySerializer})
    def create(self, request, *args, **kwargs):
        data = s.StudyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        contexts = list(EvalContext.objects.filter(pk__in=v["contexts"]))
        missing = sorted(set(v["contexts"]) - {c.pk for c in contexts})
        if missing:
            raise ValidationError({"contexts": [f"unknown context ids {missing[:10]}"]})
        pairs = []
        for i, pair in enumerate(v["comparisons"]):
            try:
                pairs.append(tuple(resolve_checkpoint(x) for x in pair))
            except ValueError as exc:
                raise ValidationError({"comparisons": [f"pair {i}: {exc}"]}) from None
        try:
            study = studies.create_study(
                v["name"],
                contexts=contexts,
                pairs=pairs,
                criteria=v.get("criteria"),
                overlap_k=v.get("overlap_k", 3),
                guidelines=v.get("guidelines", ""),
                sampling=v.get("sampling"),
                quota_per_annotator=v.get("quota_per_annotator"),
                gold_share=v.get("gold_share", 0.0),
                repeat_share=v.get("repeat_share", 0.0),
                seed=v.get("seed"),
                exposure=v.get("exposure", Study.ExposureRule.RESPONSE),
                identity_patterns=v.get("identity_patterns"),
                allow_truncated=v.get("allow_truncated", False),
                gold_controls=v.get("gold_controls"),
                created_by=request.user,
            )
        except studies.StudyError as exc:
            raise ValidationError(field_errors(exc)) from None
        return APIResponse(s.StudySerializer(study).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: s.OpenResultSerializer, 400: FIELD_ERRORS})
    @action(detail=True, methods=["post"])
    def open(self, request, pk=None):
        study = self.get_object()
        try:
            result = studies.open_study(study, actor=request.user)
        except studies.StudyError as exc:
            raise ValidationError(field_errors(exc)) from None
        study.refresh_from_db()
        return APIResponse({**result, "status": study.status})

    @extend_schema(request=None, responses=s.StatusSerializer)
    @action(detail=True, methods=["post"])
    def close(self, request, pk=None):
        study = self.get_object()
        studies.close_study(study, actor=request.user)
        return APIResponse({"status": study.status})

    @extend_schema(responses=s.RequeueResultSerializer)
    @action(detail=True, methods=["post"], serializer_class=s.RequeueSerializer)
    def requeue(self, request, pk=None):
        study = self.get_object()
        data = s.RequeueSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            if v.get("checkpoint"):
                try:
                    checkpoint = resolve_checkpoint(v["checkpoint"])
                except ValueError as exc:
                    raise ValidationError({"checkpoint": [str(exc)]}) from None
            else:
                checkpoint = studies.latest_checkpoint(v["system"])
            with transaction.atomic():
                result = studies.requeue(study, checkpoint, actor=request.user)
        except (studies.StudyError, ValueError) as exc:
            raise ValidationError(field_errors(exc)) from None
        return APIResponse({**result, "checkpoint": checkpoint.label})

    @extend_schema(request=None, responses=s.RetryResultSerializer)
    @action(detail=True, methods=["post"], url_path="retry-failed")
    def retry_failed(self, request, pk=None):
        study = self.get_object()
        ids = generation.retry_batches(
            study.batches.values_list("pk", flat=True), actor=request.user
        )
        return APIResponse({"retried": ids})

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "checkpoint",
                str,
                description='Only comparisons with this checkpoint: an id, "System vN" or a '
                "system name",
            )
        ],
        responses=OpenApiResponse(
            OpenApiTypes.OBJECT,
            description="Win rates, agreement, intention-to-treat rows and the length-controlled "
            "ranking (`length`; docs/statistics.md)",
        ),
    )
    @action(detail=True, methods=["get"])
    def results(self, request, pk=None):
        from pairwise.services import export

        study = self.get_object()
        try:
            summary = export.study_summary(study, checkpoint=request.query_params.get("checkpoint"))
        except ValueError as exc:
            raise ValidationError(field_errors(exc)) from None
        return APIResponse(summary)

    @extend_schema(
        parameters=[
            OpenApiParameter("win_rate", float, description="expected non-tied win rate P"),
            OpenApiParameter("tie_share", float, description="expected tie share T"),
            OpenApiParameter("alpha", float, description="family-wise alpha A"),
            OpenApiParameter("power", float, description="power B"),
            OpenApiParameter("comparisons", int, description="M (default: the study's)"),
            OpenApiParameter("k", int, description="annotators per item (default: the study's)"),
            OpenApiParameter("icc", float, description="R (default: the study's ICC(1) or 0)"),
        ],
        responses=OpenApiResponse(
            OpenApiTypes.OBJECT,
            description="The planner's inputs and non_tied_judgments, judgments, items "
            "(docs/statistics.md, Power planning)",
        ),
    )
    @action(detail=True, methods=["get"])
    def plan(self, request, pk=None):
        from pairwise.services import export, power

        study = self.get_object()
        inputs = {
            "win_rate": power.DEFAULT_WIN_RATE,
            "tie_share": power.DEFAULT_TIE_SHARE,
            "alpha": power.DEFAULT_ALPHA,
            "power": power.DEFAULT_POWER,
            **export.plan_defaults(study),
        }
        if inputs["icc"] is None:
            inputs["icc"] = 0.0
        inputs.update({k: v for k, v in request.query_params.items() if k in inputs})
        try:
            plan = power.plan_study(**inputs)
        except power.PlanError as exc:
            raise ValidationError(field_errors(exc)) from None
        return APIResponse(plan.as_dict())

    @extend_schema(
        parameters=[
            OpenApiParameter("comparison", str, description='A comparison id, or "gold"'),
            OpenApiParameter("outcome", str, enum=list(browser.OUTCOMES)),
            OpenApiParameter("agreement", str, enum=list(browser.AGREEMENT_LEVELS)),
            OpenApiParameter("has_comment", bool, description="Some judgment has a comment"),
            OpenApiParameter("criterion", str, description='Default "Overall", else the last'),
            OpenApiParameter("page", int, description="25 items a page, from 1"),
        ],
        responses={200: ItemPageSerializer, 400: FIELD_ERRORS},
    )
    @action(detail=True, methods=["get"])
    def items(self, request, pk=None):
        """The item browser (services/browser.py): the study's items with their context, both
        replies (system, checkpoint, CARE nodes and parse status) and every judgment (answers
        from A's side, comment, seconds), filtered and paginated."""
        study = self.get_object()
        names = ("comparison", "outcome", "agreement", "has_comment", "criterion", "page")
        try:
            found = browser.browse_items(study, **{k: request.query_params.get(k) for k in names})
        except browser.BrowseError as exc:
            raise ValidationError(field_errors(exc)) from None
        return APIResponse(found)

    @extend_schema(
        parameters=[OpenApiParameter("fmt", str, enum=list(EXPORT_FORMATS), default="csv")],
        responses={(200, "application/zip"): OpenApiTypes.BINARY},
    )
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        from django.http import FileResponse

        from pairwise.services import export

        study = self.get_object()
        # not `format`: DRF reserves that query parameter for choosing a renderer
        fmt = request.query_params.get("fmt", "csv")
        if fmt not in export.FORMATS:
            raise ValidationError({"fmt": [f"expected one of {list(export.FORMATS)}"]})
        return FileResponse(
            export.export_zip(study, fmt, actor=request.user),
            as_attachment=True,
            filename=f"study-{study.pk}-{fmt}.zip",
        )

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "fmt", str, enum=["json", "md"], default="json", description="md: Markdown"
            )
        ],
        responses={
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="The evaluation datasheet (HEDS 3.0): systems, sample, evaluators, "
                "design, criteria, quality_control, results, ethics (docs/statistics.md)",
            ),
            (200, "text/markdown"): OpenApiResponse(
                OpenApiTypes.STR, description="The same datasheet as Markdown"
            ),
        },
    )
    @action(detail=True, methods=["get"])
    def datasheet(self, request, pk=None):
        from django.http import HttpResponse

        from pairwise.services import datasheet

        study = self.get_object()
        # not `format`: DRF reserves that query parameter for choosing a renderer
        fmt = request.query_params.get("fmt", "json")
        if fmt not in ("json", "md"):
            raise ValidationError({"fmt": ["expected one of ['json', 'md']"]})
        ds = datasheet.build_datasheet(study)
        if fmt == "md":
            return HttpResponse(
                datasheet.render_markdown(ds), content_type="text/markdown; charset=utf-8"
            )
        return APIResponse(ds)

    # --- members and invite links (services/access.py) ---

    def _member_list(self, study: Study):
        found = access.members(study)
        context = {"profiles": evaluators.member_profiles(found)}
        return s.MemberSerializer(found, many=True, context=context).data

    @extend_schema(
        methods=["GET"],
        request=None,
        responses=s.MemberSerializer(many=True),
        operation_id="studies_members_list",
    )
    @extend_schema(
        methods=["POST"],
        request=s.AddMembersSerializer,
        responses={201: s.MemberSerializer(many=True)},
        operation_id="studies_members_add",
    )
    @action(detail=True, methods=["get", "post"], serializer_class=s.AddMembersSerializer)
    def members(self, request, pk=None):
        """GET: the study's members. POST: add accounts by username as annotators or
        researchers (all or nothing; a member already there takes the new role, the owner stays
        owner). Answers the members after the change."""
        study = self.get_object()
        if request.method == "GET":
            return APIResponse(self._member_list(study))
        data = s.AddMembersSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            with transaction.atomic():
                added = access.add_members(study, v["usernames"], v["role"], by=request.user)
                for member in added if v.get("profile") else ():
                    evaluators.set_profile(member.user, v["profile"])
        except (access.AccessError, evaluators.ProfileError) as exc:
            raise ValidationError(field_errors(exc)) from None
        return APIResponse(self._member_list(study), status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={
            200: s.MemberSerializer(many=True),
            400: OpenApiResponse(
                response=OpenApiTypes.OBJECT,
                description="'usernames': the account is not a member, or owns the study",
            ),
        },
        operation_id="studies_members_remove",
    )
    @action(
        detail=True,
        methods=["delete"],
        url_path=r"members/(?P<username>[\w.@+-]{1,150})",
        serializer_class=s.MemberSerializer,
    )
    def remove_member(self, request, pk=None, username=None):
        """Take an account off the study. Its judgments stay; its leases go back to the pool.
        Only an admin removes the owner. Answers the members after the change."""
        study = self.get_object()
        try:
            access.remove_members(study, [username], by=request.user)
        except access.AccessError as exc:
            raise ValidationError(field_errors(exc)) from None
        return APIResponse(self._member_list(study))

    def _invite_body(self, request, invite: StudyInvite) -> dict:
        url = request.build_absolute_uri(reverse("join", args=[invite.token]))
        return s.InviteSerializer(
            invite, context={"url": url, "state": access.invite_state(invite)}
        ).data

    @extend_schema(
        methods=["GET"],
        request=None,
        responses=s.InviteSerializer(many=True),
        operation_id="studies_invites_list",
    )
    @extend_schema(
        methods=["POST"],
        request=s.CreateInviteSerializer,
        responses={201: s.InviteSerializer},
        operation_id="studies_invites_create",
    )
    @action(detail=True, methods=["get", "post"], serializer_class=s.CreateInviteSerializer)
    def invites(self, request, pk=None):
        """GET: the study's invite links. POST: a new one; whoever follows it becomes an
        annotator of the study (a visitor without an account gets one)."""
        study = self.get_object()
        if request.method == "GET":
            found = study.invites.select_related("study", "created_by")
            return APIResponse([self._invite_body(request, i) for i in found])
        data = s.CreateInviteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            invite = access.create_invite(
                study,
                request.user,
                completion_code=v.get("completion_code") or None,
                expires_in_days=v.get("expires_in_days"),
                profile=v.get("profile"),
            )
        except (access.AccessError, evaluators.ProfileError) as exc:
            raise ValidationError(field_errors(exc)) from None
        return APIResponse(self._invite_body(request, invite), status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None, responses={200: s.InviteSerializer}, operation_id="studies_invites_revoke"
    )
    @action(
        detail=True,
        methods=["delete"],
        url_path=rf"invites/(?P<invite_id>{ID_REGEX})",
        serializer_class=s.InviteSerializer,
    )
    def revoke_invite(self, request, pk=None, invite_id=None):
        """Revoke an invite link: following it answers 410 from now on. Annotators it enrolled
        stay members. Answers the revoked invite."""
        study = self.get_object()
        invite = get_object_or_404(
            StudyInvite.objects.select_related("study"), pk=invite_id, study=study
        )
        access.revoke_invite(invite, request.user)
        return APIResponse(self._invite_body(request, invite))


class CheckpointViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [permissions.IsAuthenticated, IsResearcher]
    lookup_value_regex = ID_REGEX
    queryset = Checkpoint.objects.select_related("system", "parent__system")
    serializer_class = s.CheckpointSerializer

    @extend_schema(request=s.RegisterCheckpointSerializer, responses={201: s.CheckpointSerializer})
    @action(detail=False, methods=["post"], serializer_class=s.RegisterCheckpointSerializer)
    def register(self, request):
        from pairwise.services.checkpoints import CheckpointError, register_checkpoint

        data = s.RegisterCheckpointSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            checkpoint = register_checkpoint(
                v["path"],
                system=v["system"],
                backend=v.get("backend") or None,
                version=v.get("version"),
                actor=request.user,
            )
        except CheckpointError as exc:
            raise ValidationError(field_errors(exc)) from None
        return APIResponse(s.CheckpointSerializer(checkpoint).data, status=status.HTTP_201_CREATED)


__all__ = ["serializers"]
