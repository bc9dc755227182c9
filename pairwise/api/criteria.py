"""The study API's criteria, guidelines and evaluator-profile operations (issue #18, section 1).

A mixin of `StudyViewSet` (pairwise/api/views.py), kept apart so that file stays readable; the
operations call services/criteria.py and services/evaluators.py like the page and the commands.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response as APIResponse

from pairwise.api.schema import FIELD_ERRORS
from pairwise.models import StudyMember
from pairwise.services import criteria, evaluators
from pairwise.services.errors import field_errors


class CriterionDefinitionSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    definition = serializers.CharField(
        allow_blank=True, help_text="Verbatim, shown to annotators beside the buttons"
    )


@extend_schema_field(
    {
        "oneOf": [
            {"type": "array", "items": {"type": "string"}},
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "definition": {"type": "string"}},
                    "required": ["name"],
                },
            },
            {"type": "object", "additionalProperties": {"type": "string"}},
        ],
        "description": "Names, [{name, definition}] or {name: definition}; a criterion without "
        "a definition gets its bullet in the guidelines or the default one",
    }
)
class CriteriaInputField(serializers.JSONField):
    """A new study's criteria, with or without definitions (`criteria.parse_criteria`)."""

    def to_internal_value(self, data):
        data = super().to_internal_value(data)
        try:
            return criteria.parse_criteria(data)
        except criteria.CriteriaError as exc:
            raise serializers.ValidationError(exc.message) from None


class CriterionVersionSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField()
    definition = serializers.CharField(allow_blank=True)
    current = serializers.BooleanField(help_text="The version new judgments record")
    judgments = serializers.IntegerField(help_text="Judgments made under this version")
    created_at = serializers.DateTimeField()


class GuidelineVersionSerializer(serializers.Serializer):
    sha256 = serializers.CharField()
    text = serializers.CharField(allow_blank=True)
    current = serializers.BooleanField()
    judgments = serializers.IntegerField(help_text="Judgments made under this version")
    created_at = serializers.DateTimeField()


class SetGuidelinesSerializer(serializers.Serializer):
    text = serializers.CharField(allow_blank=True, help_text="Markdown, rendered safely")


class ProfileSerializer(serializers.Serializer):
    """An evaluator profile; every field optional (empty / null: not recorded)."""

    expertise = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text='e.g. "PhD psychology"'
    )
    language = serializers.CharField(required=False, allow_blank=True, max_length=100)
    paid = serializers.BooleanField(required=False, allow_null=True, default=None)
    payment = serializers.CharField(
        required=False, allow_blank=True, max_length=100, help_text='e.g. "15 GBP/hour"'
    )
    recruitment = serializers.CharField(required=False, allow_blank=True, max_length=200)
    training = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    is_author = serializers.BooleanField(required=False, allow_null=True, default=None)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        # only what the caller sent: a field left out keeps its value
        return {k: v for k, v in value.items() if k in data}


class MemberProfileSerializer(serializers.Serializer):
    username = serializers.CharField()
    profile = ProfileSerializer()


class CriteriaActions:
    """`StudyViewSet`'s criteria, guidelines and member-profile actions."""

    @extend_schema(
        methods=["GET"],
        request=None,
        responses=CriterionVersionSerializer(many=True),
        operation_id="studies_criteria_list",
    )
    @extend_schema(
        methods=["POST"],
        request=CriterionDefinitionSerializer,
        responses={200: CriterionVersionSerializer(many=True), 400: FIELD_ERRORS},
        operation_id="studies_criteria_edit",
    )
    @action(detail=True, methods=["get", "post"], serializer_class=CriterionDefinitionSerializer)
    def criteria(self, request, pk=None):
        """GET: every version of every criterion. POST {name, definition}: edit a criterion (in
        place while no judgment used its current version, else a new version). Answers the
        versions after the change."""
        study = self.get_object()
        if request.method == "POST":
            data = CriterionDefinitionSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            v = data.validated_data
            try:
                criteria.edit_criterion(study, v["name"], v["definition"], actor=request.user)
            except criteria.CriteriaError as exc:
                raise ValidationError(field_errors(exc)) from None
        return APIResponse(
            CriterionVersionSerializer(criteria.criteria_table(study), many=True).data
        )

    @extend_schema(
        methods=["GET"],
        request=None,
        responses=GuidelineVersionSerializer(many=True),
        operation_id="studies_guidelines_list",
    )
    @extend_schema(
        methods=["POST"],
        request=SetGuidelinesSerializer,
        responses={200: GuidelineVersionSerializer(many=True), 400: FIELD_ERRORS},
        operation_id="studies_guidelines_set",
    )
    @action(detail=True, methods=["get", "post"], serializer_class=SetGuidelinesSerializer)
    def guidelines(self, request, pk=None):
        """GET: every version of the study's guidelines, by hash. POST {text}: new guidelines;
        judgments from now on record their hash. Answers the versions after the change."""
        study = self.get_object()
        if request.method == "POST":
            data = SetGuidelinesSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            criteria.set_guidelines(study, data.validated_data["text"], actor=request.user)
        table = criteria.guideline_table(study)
        return APIResponse(GuidelineVersionSerializer(table, many=True).data)

    @extend_schema(
        request=ProfileSerializer,
        responses={
            200: MemberProfileSerializer,
            400: FIELD_ERRORS,
        },
        operation_id="studies_members_profile",
        description="Record a member's evaluator profile; fields left out keep their value",
    )
    @action(
        detail=True,
        methods=["post"],
        url_path=r"members/(?P<username>[\w.@+-]{1,150})/profile",
        serializer_class=ProfileSerializer,
    )
    def member_profile(self, request, pk=None, username=None):
        """Record a member's evaluator profile (fields left out keep their value)."""
        study = self.get_object()
        user = get_user_model().objects.filter(username=username).first()
        if user is None or not StudyMember.objects.filter(study=study, user=user).exists():
            raise ValidationError({"username": [f"{username!r} is not a member of this study"]})
        data = ProfileSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            profile = evaluators.set_profile(user, data.validated_data)
        except evaluators.ProfileError as exc:
            raise ValidationError(field_errors(exc)) from None
        body = {"username": user.username, "profile": evaluators.profile_of(profile)}
        return APIResponse(body, status=status.HTTP_200_OK)
