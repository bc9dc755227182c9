"""The REST API: annotators (next item, submit, progress) and researchers (studies, checkpoints).

Annotator responses are built from `blind_item` only. Errors are JSON naming the field.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response as APIResponse
from rest_framework.views import APIView

from pairwise import roles
from pairwise.api import serializers as s
from pairwise.converters import ID_REGEX
from pairwise.models import Checkpoint, EvalContext, Study
from pairwise.services import allocation, generation, rows, studies
from pairwise.services.blind import blind_item
from pairwise.services.checkpoints import resolve_checkpoint


class IsAnnotator(permissions.BasePermission):
    message = "Only annotators can judge items."

    def has_permission(self, request, view):
        return roles.is_annotator(request.user) or roles.is_admin(request.user)


class IsResearcher(permissions.BasePermission):
    message = "Only researchers and admins can manage studies."

    def has_permission(self, request, view):
        return roles.is_researcher(request.user)


def _field_error(exc: Exception) -> ValidationError:
    """Turn a service error 'field: message' into DRF's {field: [message]}."""
    text = str(exc)
    field, _, message = text.partition(": ")
    if not message or " " in field:
        return ValidationError({"non_field_errors": [text]})
    return ValidationError({field: [message]})


def _open_study(study_id: int) -> Study:
    """The open study, or 404. In SQL: every annotator request asks, and building the ORM's
    query cost more CPU than the database spends answering it."""
    table = connection.ops.quote_name(Study._meta.db_table)
    found = rows.fetch(
        f"SELECT {rows.columns(Study, 's')} FROM {table} s WHERE s.id = %s AND s.status = %s",
        [study_id, Study.Status.OPEN.value],
    )
    if not found:
        raise Http404("No open study with that id.")
    return rows.instance(Study, found[0])


class AnnotatorStudiesView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsAnnotator]

    @extend_schema(responses=s.AnnotatorStudySerializer(many=True))
    def get(self, request):
        rows = []
        for study in Study.objects.filter(status=Study.Status.OPEN).order_by("pk"):
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
        study = _open_study(study_id)
        item, p = allocation.assign(study, request.user)
        body = {"done": item is None, "progress": {"done": p.done, "total": p.total}}
        if item is not None:
            body["item"] = blind_item(item)
            body["lease_expires_at"] = item.lease_expires_at  # set by next_item
        # The body is built from plain values in NextItemSerializer's shape (a test holds it
        # to the schema); running it through the serializer cost ~1 ms per request.
        return APIResponse(body)


class SubmitView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsAnnotator]

    @extend_schema(
        request=s.SubmitSerializer,
        responses={201: s.JudgmentReceiptSerializer, 200: s.JudgmentReceiptSerializer},
    )
    def post(self, request, study_id: int):
        study = _open_study(study_id)
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
        except allocation.InvalidJudgment as exc:
            raise ValidationError({exc.field: [exc.message]}) from None
        except allocation.ItemNotFound as exc:
            raise ValidationError({"item": [str(exc)]}) from None
        except allocation.LeaseExpired as exc:
            return APIResponse(
                {"item": [str(exc)], "code": "lease_expired"}, status=status.HTTP_409_CONFLICT
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
        p = allocation.progress(_open_study(study_id), request.user)
        return APIResponse({"done": p.done, "total": p.total})


class StudyViewSet(viewsets.ModelViewSet):
    """Researchers: create, open, close, re-queue studies and follow their progress."""

    permission_classes = [permissions.IsAuthenticated, IsResearcher]
    lookup_value_regex = ID_REGEX  # a longer number is a 404, not a database error
    queryset = Study.objects.all()
    http_method_names = ["get", "post", "head", "options"]

    def get_serializer_class(self):
        return s.StudyCreateSerializer if self.action == "create" else s.StudySerializer

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
                seed=v.get("seed"),
                exposure=v.get("exposure", Study.ExposureRule.RESPONSE),
                identity_patterns=v.get("identity_patterns"),
                allow_truncated=v.get("allow_truncated", False),
                gold_controls=v.get("gold_controls"),
                created_by=request.user,
            )
        except studies.StudyError as exc:
            raise _field_error(exc) from None
        return APIResponse(s.StudySerializer(study).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def open(self, request, pk=None):
        study = self.get_object()
        try:
            result = studies.open_study(study)
        except studies.StudyError as exc:
            raise _field_error(exc) from None
        study.refresh_from_db()
        return APIResponse({**result, "status": study.status})

    @action(detail=True, methods=["post"])
    def close(self, request, pk=None):
        study = self.get_object()
        studies.close_study(study)
        return APIResponse({"status": study.status})

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
                result = studies.requeue(study, checkpoint)
        except (studies.StudyError, ValueError) as exc:
            raise _field_error(exc) from None
        return APIResponse({**result, "checkpoint": checkpoint.label})

    @action(detail=True, methods=["post"], url_path="retry-failed")
    def retry_failed(self, request, pk=None):
        study = self.get_object()
        ids = generation.retry_batches(study.batches.values_list("pk", flat=True))
        return APIResponse({"retried": ids})

    @action(detail=True, methods=["get"])
    def results(self, request, pk=None):
        from pairwise.services import export

        study = self.get_object()
        try:
            summary = export.study_summary(study, checkpoint=request.query_params.get("checkpoint"))
        except ValueError as exc:
            raise _field_error(exc) from None
        return APIResponse(summary)

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
            export.export_zip(study, fmt),
            as_attachment=True,
            filename=f"study-{study.pk}-{fmt}.zip",
        )


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
            )
        except CheckpointError as exc:
            raise _field_error(exc) from None
        return APIResponse(s.CheckpointSerializer(checkpoint).data, status=status.HTTP_201_CREATED)


__all__ = ["serializers"]
