"""API serializers. The annotator ones carry texts and opaque ids only."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pairwise.api.criteria import (
    CriteriaInputField,
    CriterionDefinitionSerializer,
    ProfileSerializer,
)
from pairwise.models import Checkpoint, Study


class TurnSerializer(serializers.Serializer):
    speaker = serializers.ChoiceField(choices=["seeker", "supporter"])
    text = serializers.CharField()


class BlindItemSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Opaque item id")
    history = TurnSerializer(many=True)
    left = serializers.CharField(help_text="Reply A")
    right = serializers.CharField(help_text="Reply B")


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField()


class NextItemSerializer(serializers.Serializer):
    done = serializers.BooleanField(help_text="True when nothing is left for you")
    item = BlindItemSerializer(required=False)
    lease_expires_at = serializers.DateTimeField(required=False, allow_null=True)
    criteria = CriterionDefinitionSerializer(
        many=True, required=False, help_text="The criteria to judge, with their definitions"
    )
    progress = ProgressSerializer()


class AnnotatorStudySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    criteria = serializers.ListField(child=serializers.CharField())
    done = serializers.IntegerField()
    total = serializers.IntegerField()


class SubmitSerializer(serializers.Serializer):
    item = serializers.CharField()
    choices = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="criterion -> left | right | tie (all criteria, unless cannot_judge)",
    )
    comment = serializers.CharField(required=False, allow_blank=True, default="")
    cannot_judge = serializers.BooleanField(required=False, default=False)
    cannot_judge_reason = serializers.CharField(required=False, allow_blank=True, default="")
    seconds = serializers.FloatField(
        required=False,
        help_text="Seconds the client measured (0 < s <= the lease time). Kept apart: the "
        "server measures its own, and quality flags use only that",
    )


class JudgmentReceiptSerializer(serializers.Serializer):
    item = serializers.CharField()
    created = serializers.BooleanField()
    progress = ProgressSerializer()


class StudySerializer(serializers.ModelSerializer):
    comparisons = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    blinding = serializers.SerializerMethodField()
    generation = serializers.SerializerMethodField()

    class Meta:
        model = Study
        fields = [
            "id",
            "name",
            "status",
            "criteria",
            "overlap_k",
            "guidelines",
            "sampling",
            "seed",
            "quota_per_annotator",
            "gold_share",
            "repeat_share",
            "exposure",
            "identity_patterns",
            "allow_truncated",
            "gold_controls",
            "guideline_sha256",
            "criteria_versions",
            "comparisons",
            "progress",
            "blinding",
            "generation",
            "created_at",
        ]

    def get_comparisons(self, study) -> list[dict]:
        return [
            {"id": c.pk, "a": c.checkpoint_a.label, "b": c.checkpoint_b.label}
            for c in study.comparisons.select_related(
                "checkpoint_a__system", "checkpoint_b__system"
            )
        ]

    def get_progress(self, study) -> dict:
        from pairwise.services.studies import study_overview

        return study_overview(study)

    def get_blinding(self, study) -> dict:
        """The exposure rule, the smallest pool with no repeat exposure, repeats so far."""
        from pairwise.services.exposure import exposure_overview

        return exposure_overview(study)

    def get_generation(self, study) -> dict:
        from pairwise.services.generation import generation_progress

        return generation_progress(study)


class StudyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    contexts = serializers.ListField(child=serializers.IntegerField(), allow_empty=False)
    comparisons = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField(), min_length=2, max_length=2),
        allow_empty=False,
        help_text='[[A, B], ...]: checkpoint ids, "System vN" or "System" (its latest)',
    )
    criteria = CriteriaInputField(required=False)
    overlap_k = serializers.IntegerField(min_value=1, default=3)
    guidelines = serializers.CharField(required=False, allow_blank=True, default="")
    sampling = serializers.DictField(required=False)
    quota_per_annotator = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    gold_share = serializers.FloatField(min_value=0, max_value=0.5, default=0.0)
    repeat_share = serializers.FloatField(
        min_value=0,
        max_value=0.5,
        default=0.0,
        help_text="Share of judged items shown to the annotator again later, sides swapped "
        "(intra-annotator agreement)",
    )
    seed = serializers.IntegerField(
        min_value=0,
        max_value=2**63 - 1,
        required=False,
        allow_null=True,
        help_text="Drawn from `secrets` when absent; give a study's stored seed to reproduce it",
    )
    exposure = serializers.ChoiceField(
        choices=Study.ExposureRule.choices,
        default=Study.ExposureRule.RESPONSE,
        help_text="What an annotator is never shown twice while another item is left",
    )
    identity_patterns = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Extra regular expressions that reveal a system (names, paths and backbones "
        "are always checked)",
    )
    allow_truncated = serializers.BooleanField(default=False)
    gold_controls = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Control replies for gold items (default: gold replies of unrelated contexts)",
    )


class RequeueSerializer(serializers.Serializer):
    checkpoint = serializers.CharField(required=False, help_text='id or "System vN"')
    system = serializers.CharField(required=False, help_text="use this system's latest")

    def validate(self, attrs):
        if not attrs.get("checkpoint") and not attrs.get("system"):
            raise serializers.ValidationError({"checkpoint": ["give checkpoint or system"]})
        return attrs


class OpenResultSerializer(serializers.Serializer):
    batches = serializers.IntegerField(help_text="Generation batches queued")
    items = serializers.IntegerField(help_text="Blind items built now")
    gold_items = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Study.Status.choices)


class StatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Study.Status.choices)


class RequeueResultSerializer(serializers.Serializer):
    comparisons_added = serializers.IntegerField()
    batches = serializers.IntegerField(help_text="Generation batches queued")
    items = serializers.IntegerField(help_text="Blind items built now")
    checkpoint = serializers.CharField(help_text='"System vN"')


class RetryResultSerializer(serializers.Serializer):
    retried = serializers.ListField(child=serializers.IntegerField(), help_text="Batch ids")


class LeaseExpiredSerializer(serializers.Serializer):
    item = serializers.ListField(child=serializers.CharField())
    code = serializers.ChoiceField(choices=["lease_expired"])


class CheckpointSerializer(serializers.ModelSerializer):
    system = serializers.CharField(source="system.name")
    parent = serializers.CharField(source="parent.label", default=None, allow_null=True)

    class Meta:
        model = Checkpoint
        fields = [
            "id",
            "system",
            "version",
            "path",
            "backend",
            "backend_config",
            "parent",
            "reasoning",
            "lineage",
            "metrics",
            "created_at",
        ]


class RegisterCheckpointSerializer(serializers.Serializer):
    path = serializers.CharField()
    system = serializers.CharField()
    backend = serializers.CharField(required=False, allow_blank=True)
    version = serializers.IntegerField(required=False, min_value=1)


class MemberSerializer(serializers.Serializer):
    username = serializers.CharField(source="user.username")
    role = serializers.ChoiceField(choices=["owner", "researcher", "annotator"])
    invite = serializers.IntegerField(
        source="invite_id", allow_null=True, help_text="The invite link they joined through"
    )
    added_by = serializers.CharField(source="added_by.username", default=None, allow_null=True)
    created_at = serializers.DateTimeField()
    profile = serializers.SerializerMethodField(help_text="The evaluator profile")

    @extend_schema_field(ProfileSerializer)
    def get_profile(self, member) -> dict:
        from pairwise.services.evaluators import profile_of

        known = self.context.get("profiles", {})
        return known[member.user_id] if member.user_id in known else profile_of(member.user)


class AddMembersSerializer(serializers.Serializer):
    usernames = serializers.ListField(
        child=serializers.CharField(max_length=150), allow_empty=False, max_length=1000
    )
    role = serializers.ChoiceField(
        choices=["annotator", "researcher"],
        default="annotator",
        help_text="Annotators judge the study; researchers see, manage and export it",
    )
    profile = ProfileSerializer(
        required=False, help_text="Evaluator profile fields recorded on every account added"
    )


class InviteSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.SerializerMethodField(help_text="The link to share")
    token = serializers.CharField()
    completion_code = serializers.CharField(help_text="Shown to annotators when they are done")
    state = serializers.SerializerMethodField(help_text="active, revoked, expired or closed")
    uses = serializers.IntegerField(help_text="Accounts enrolled through it")
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    profile = serializers.DictField(help_text="Evaluator profile fields it gives new accounts")

    def get_url(self, invite) -> str:
        return self.context["url"]

    def get_state(self, invite) -> str:
        return self.context["state"]


class CreateInviteSerializer(serializers.Serializer):
    completion_code = serializers.RegexField(
        r"^[A-Za-z0-9_-]{1,32}$",
        required=False,
        help_text="The code your crowd platform gave you (e.g. Prolific's); random when absent",
    )
    expires_in_days = serializers.IntegerField(
        min_value=1, max_value=365, required=False, allow_null=True
    )
    profile = ProfileSerializer(
        required=False, help_text="Evaluator profile fields given to the accounts it makes"
    )
