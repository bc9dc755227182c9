"""The evaluation data model: dataset -> contexts -> responses -> blind items -> judgments.

Systems have checkpoints (immutable once registered); a study compares checkpoints of systems on
eval contexts; responses are generated per (checkpoint, context, sampling config); comparison
items pair two responses with a stored left/right; annotators lease items and judge them.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

DEFAULT_CRITERIA = ["Fluency", "Identification", "Comforting", "Suggestion", "Overall"]
# Verbatim definitions of the default criteria (after ESConv's human evaluation, Liu et al. 2021),
# given to new studies that name a criterion without defining it.
DEFAULT_DEFINITIONS = {
    "Fluency": "Which reply reads more naturally and correctly?",
    "Identification": "Which reply better recognises the seeker's situation and feelings?",
    "Comforting": "Which reply is more comforting and supportive?",
    "Suggestion": "Which reply offers more helpful, appropriate suggestions?",
    "Overall": "Which reply would you rather the seeker received?",
}


def _opaque_id() -> str:
    return secrets.token_urlsafe(12)


def _default_criteria() -> list[str]:
    return list(DEFAULT_CRITERIA)


def default_lease_ttl() -> int:
    """New studies' lease time: the LEASE_TTL_SECONDS setting (15 minutes by default)."""
    return settings.LEASE_TTL_SECONDS


def new_study_seed() -> int:
    """A study's seed, drawn from `secrets`: sides, serving order and gold draws derive from it,
    so neither the code nor the (small, guessable) row ids are enough to work them out."""
    return secrets.randbits(62)


class System(models.Model):
    """A model family under evaluation, e.g. CARE-SFT-RL or the ESConv baseline."""

    class Kind(models.TextChoices):
        MODEL = "model", "model"
        REFERENCE = "reference", "human reference (gold items)"
        CONTROL = "control", "known-bad control (gold items)"

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.MODEL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Checkpoint(models.Model):
    """One version of a system. Immutable once registered; lineage via `parent`."""

    IMMUTABLE_FIELDS = ("system_id", "version", "path", "backend", "backend_config", "parent_id")

    system = models.ForeignKey(System, on_delete=models.PROTECT, related_name="checkpoints")
    version = models.PositiveIntegerField()
    path = models.CharField(max_length=500, blank=True)
    backend = models.CharField(max_length=20, default="vllm")
    backend_config = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    reasoning = models.BooleanField(default=False, help_text="Outputs a CARE reasoning chain")
    lineage = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["system__name", "version"]
        constraints = [
            models.UniqueConstraint(fields=["system", "version"], name="uniq_checkpoint_version")
        ]

    def __str__(self) -> str:
        return f"{self.system.name} v{self.version}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            old = type(self).objects.filter(pk=self.pk).values(*self.IMMUTABLE_FIELDS).first()
            if old and any(old[f] != getattr(self, f) for f in self.IMMUTABLE_FIELDS):
                raise ValidationError(f"checkpoint {self} is registered and immutable")
        super().save(*args, **kwargs)

    @property
    def label(self) -> str:
        return f"{self.system.name} v{self.version}"


class EvalContext(models.Model):
    """A dialogue history to respond to, with the gold supporter response and strategy."""

    source = models.CharField(max_length=50)
    dialogue_id = models.CharField(max_length=100)
    turn_index = models.PositiveIntegerField()
    window = models.PositiveIntegerField(default=0, help_text="History window (0 = all)")
    history = models.JSONField(help_text="[{speaker, text, strategy}]")
    gold_response = models.TextField()
    gold_strategy = models.CharField(max_length=100, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "dialogue_id", "turn_index", "window"], name="uniq_context"
            )
        ]

    def __str__(self) -> str:
        return f"{self.dialogue_id}#{self.turn_index}"


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        GENERATING = "generating", "generating"
        OPEN = "open", "open"
        CLOSED = "closed", "closed"

    name = models.CharField(max_length=200, unique=True)
    public_title = models.CharField(
        max_length=200,
        blank=True,
        help_text="What annotators see instead of the name, which may name systems",
    )
    guidelines = models.TextField(blank=True, help_text="Markdown, rendered safely")
    criteria = models.JSONField(default=_default_criteria)
    overlap_k = models.PositiveSmallIntegerField(default=3)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    contexts = models.ManyToManyField(EvalContext, related_name="studies", blank=True)
    sampling = models.JSONField(default=dict, blank=True, help_text="SamplingParams fields")
    seed = models.PositiveBigIntegerField(
        default=new_study_seed,
        help_text="Secret by default (drawn from `secrets`); set it to reproduce a study",
    )

    class ExposureRule(models.TextChoices):
        RESPONSE = "response", "never the same reply twice (same row or identical text)"
        CONTEXT = "context", "never the same dialogue twice"
        NONE = "none", "no rule"

    exposure = models.CharField(
        max_length=10,
        choices=ExposureRule.choices,
        default=ExposureRule.RESPONSE,
        help_text="What an annotator must not be shown twice while another item is left",
    )
    identity_patterns = models.JSONField(
        default=list,
        blank=True,
        help_text="Extra regular expressions that reveal a system; the study's system names, "
        "checkpoint folder names and backbone names are always checked",
    )
    allow_truncated = models.BooleanField(
        default=False, help_text="Show replies whose generation hit the length limit"
    )
    gold_controls = models.JSONField(
        default=list,
        blank=True,
        help_text="Control replies for gold items; empty: gold replies of unrelated contexts",
    )
    quota_per_annotator = models.PositiveIntegerField(null=True, blank=True)
    gold_share = models.FloatField(default=0.0, help_text="Share of gold items shown (0-0.5)")
    repeat_share = models.FloatField(
        default=0.0,
        help_text="Share of judged items shown again later, sides swapped (0-0.5): "
        "intra-annotator agreement",
    )
    lease_ttl_seconds = models.PositiveIntegerField(
        default=default_lease_ttl, help_text="Seconds an annotator holds an item"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    guideline_sha256 = models.CharField(
        max_length=64, blank=True, editable=False, help_text="Hash of the current guidelines"
    )
    criteria_versions = models.JSONField(
        default=dict, blank=True, editable=False, help_text="criterion -> its current version"
    )
    open_items = models.PositiveIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="Non-gold items with fewer than k judgments, kept by the allocator for "
        "annotators' progress; empty means 'count again'",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        # Never write back a count read earlier (it may have moved since): a save makes the
        # allocator count again, which also covers a change of overlap_k.
        self.open_items = None
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "open_items"}
        super().save(*args, **kwargs)

    @property
    def annotator_title(self) -> str:
        """Study names often name the systems compared; annotators see this instead."""
        return self.public_title or f"Study {self.pk}"


class Criterion(models.Model):
    """One version of a study's criterion: its name and verbatim definition. Editing a criterion
    once judgments exist adds a version; judgments keep the versions they were made under."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="criterion_versions")
    name = models.CharField(max_length=100)
    definition = models.TextField(blank=True, help_text="Verbatim, shown to annotators")
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "name", "version"]
        constraints = [
            models.UniqueConstraint(fields=["study", "name", "version"], name="uniq_criterion")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class GuidelineVersion(models.Model):
    """A study's guidelines as they were at some point, found by the SHA-256 of their text."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="guideline_versions")
    sha256 = models.CharField(max_length=64)
    text = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["study", "sha256"], name="uniq_guideline_version")
        ]

    def __str__(self) -> str:
        return f"guidelines {self.sha256[:12]}"


class Comparison(models.Model):
    """One pair of checkpoints compared in a study; A is the system of interest (e.g. CARE)."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="comparisons")
    checkpoint_a = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="+")
    checkpoint_b = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "checkpoint_a", "checkpoint_b"], name="uniq_comparison"
            ),
            models.CheckConstraint(
                condition=~Q(checkpoint_a=models.F("checkpoint_b")), name="comparison_distinct"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.checkpoint_a.label} vs {self.checkpoint_b.label}"


class Response(models.Model):
    """A generated (or imported) response. Only `text` is ever shown to annotators."""

    class ParseStatus(models.TextChoices):
        COMPLETE = "complete", "complete"
        MISSING_NODE = "missing_node", "missing node"
        OUT_OF_ORDER = "out_of_order", "out of order"
        MALFORMED = "malformed", "malformed"
        NO_REASONING = "no_reasoning", "no reasoning"
        UNWRAPPED = "unwrapped", "chain without <think>, reply split off"
        TAG_LEAK = "tag_leak", "reasoning tags in the reply"

    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="responses")
    context = models.ForeignKey(EvalContext, on_delete=models.PROTECT, related_name="responses")
    sampling_key = models.CharField(max_length=32)
    text = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    raw_output = models.TextField(blank=True)
    parse_status = models.CharField(max_length=20, choices=ParseStatus.choices)
    strategy = models.CharField(max_length=100, blank=True)
    usable = models.BooleanField(default=True, help_text="A clean reply could be taken out")
    truncated = models.BooleanField(
        default=False, help_text="Generation hit the length limit (finish reason 'length')"
    )
    provenance = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["checkpoint", "context", "sampling_key"], name="uniq_response"
            )
        ]

    def __str__(self) -> str:
        return f"response {self.pk} ({self.checkpoint_id}, context {self.context_id})"


class GenerationBatch(models.Model):
    """One unit of generation work; the database row, not the broker message, is the truth."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="batches")
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="+")
    sampling_key = models.CharField(max_length=32)
    context_ids = models.JSONField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="Celery node running it")
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "generation batches"
        indexes = [models.Index(fields=["status", "enqueued_at"])]

    def __str__(self) -> str:
        return f"batch {self.pk} ({self.checkpoint}, {len(self.context_ids)} contexts)"


class ComparisonItem(models.Model):
    """Two responses to one context, with left/right fixed when the item is made."""

    public_id = models.CharField(max_length=32, unique=True, default=_opaque_id, editable=False)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="items")
    comparison = models.ForeignKey(
        Comparison, null=True, blank=True, on_delete=models.CASCADE, related_name="items"
    )
    context = models.ForeignKey(EvalContext, on_delete=models.PROTECT, related_name="+")
    response_a = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    response_b = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    a_on_left = models.BooleanField()
    is_gold = models.BooleanField(default=False)
    judgment_count = models.PositiveIntegerField(default=0)
    order_key = models.PositiveIntegerField(help_text="Random tie-break for allocation")
    # What the item shows, as keys of the replies' normalised texts (`text_key`): the allocator
    # keeps an annotator from seeing the same reply twice, also as an identical text elsewhere.
    key_a = models.BigIntegerField(default=0, editable=False)
    key_b = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "context"],
                condition=Q(is_gold=False),
                name="uniq_item_per_comparison_context",
            )
        ]
        indexes = [models.Index(fields=["study", "is_gold", "judgment_count", "order_key"])]

    def __str__(self) -> str:
        return f"item {self.public_id}"

    def save(self, *args, **kwargs):
        if not self.key_a and self.response_a_id is not None:
            self.key_a = text_key(self.response_a.text)
        if not self.key_b and self.response_b_id is not None:
            self.key_b = text_key(self.response_b.text)
        super().save(*args, **kwargs)

    @property
    def left(self) -> Response:
        return self.response_a if self.a_on_left else self.response_b

    @property
    def right(self) -> Response:
        return self.response_b if self.a_on_left else self.response_a

    @property
    def gold_expected(self) -> str | None:
        """For gold items, response A is the good one: the side it is shown on."""
        if not self.is_gold:
            return None
        return "left" if self.a_on_left else "right"


class Lease(models.Model):
    item = models.ForeignKey(ComparisonItem, on_delete=models.CASCADE, related_name="leases")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="leases"
    )
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "annotator"], name="uniq_lease")]
        indexes = [models.Index(fields=["annotator", "expires_at"])]

    def __str__(self) -> str:
        return f"lease of item {self.item_id} to user {self.annotator_id}"


class Exposure(models.Model):
    """An item shown to an annotator (made with their first lease on it): what they have seen.

    The allocator reads these to keep an annotator from seeing a reply (or, by the study's rule,
    a dialogue) twice; `prior` is how many of the item's two replies they had already seen in
    another item when it was shown (0 unless the pool was too small to avoid it)."""

    # Few indexes: a row is written with every item handed out. The unique index leads with
    # (annotator, study, context) for the `context` rule's probe; the key indexes serve the
    # `response` rule's; (study, created_at) finds who is at work and counts repeats.
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+", db_index=False)
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    item = models.ForeignKey(
        ComparisonItem, on_delete=models.CASCADE, related_name="exposures", db_index=False
    )
    context = models.ForeignKey(
        EvalContext, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    key_a = models.BigIntegerField()
    key_b = models.BigIntegerField()
    a_on_left = models.BooleanField(null=True, help_text="Side of A; empty for gold items")
    prior = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # an item determines its context: this is one row per (annotator, study, item)
            models.UniqueConstraint(
                fields=["annotator", "study", "context", "item"], name="uniq_exposure"
            )
        ]
        indexes = [
            models.Index(fields=["annotator", "study", "key_a"], name="exposure_key_a"),
            models.Index(fields=["annotator", "study", "key_b"], name="exposure_key_b"),
            models.Index(fields=["study", "created_at"], name="exposure_by_time"),
        ]

    def __str__(self) -> str:
        return f"item {self.item_id} shown to user {self.annotator_id}"


class Judgment(models.Model):
    """One annotator's verdict on one item. `allocation.submit` makes them and keeps the item's
    judgment_count; any other writer calls `counters.recount_judgments` (a deletion does, by
    signal)."""

    item = models.ForeignKey(ComparisonItem, on_delete=models.PROTECT, related_name="judgments")
    # The item's study, kept on the judgment (set by save) so that an annotator's judgments in a
    # study are found from this table's index alone: every next item counts them.
    study = models.ForeignKey(
        Study, on_delete=models.PROTECT, related_name="judgments", editable=False
    )
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="judgments",
        db_index=False,  # judgment_by_annotator leads with it
    )
    choices = models.JSONField(default=dict, help_text="criterion -> left | right | tie")
    cannot_judge = models.BooleanField(default=False)
    cannot_judge_reason = models.TextField(blank=True)
    comment = models.TextField(blank=True)
    seconds = models.FloatField(
        default=0.0, help_text="Lease to submit, measured on the server (quality flags use it)"
    )
    client_seconds = models.FloatField(
        null=True, blank=True, help_text="What the client reported (0 < s <= lease TTL); kept apart"
    )
    prior_exposures = models.PositiveSmallIntegerField(
        default=0, help_text="How many of the item's replies the annotator had seen in another item"
    )
    simulated = models.BooleanField(default=False)
    imported = models.BooleanField(default=False)
    guideline_sha256 = models.CharField(
        max_length=64, blank=True, help_text="The guidelines it was made under"
    )
    criteria_versions = models.JSONField(
        default=dict, blank=True, help_text="criterion -> the version it was made under"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["item", "annotator"], name="uniq_judgment")]
        indexes = [models.Index(fields=["annotator", "study"], name="judgment_by_annotator")]

    def __str__(self) -> str:
        return f"judgment of item {self.item_id} by user {self.annotator_id}"

    def save(self, *args, **kwargs):
        if self.study_id is None and self.item_id is not None:
            self.study_id = self.item.study_id
        super().save(*args, **kwargs)


def text_key(text: str) -> int:
    """A 63-bit key of a reply's text, whitespace collapsed: equal texts, equal keys."""
    normal = " ".join((text or "").split())
    return int.from_bytes(hashlib.sha256(normal.encode()).digest()[:8], "big") >> 1


class TaskProbe(models.Model):
    """Rows written by the `ping` task: proof that a task ran, for broker and kill tests."""

    marker = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.marker


# The cached counters have one owner, services/counters.py; these signals call it.
@receiver([post_save, post_delete], sender=ComparisonItem)
def _items_changed(sender, instance, created=True, **kwargs):
    from pairwise.services import counters

    if created:
        counters.forget_open_items(instance.study_id)


@receiver(post_delete, sender=Judgment)
def _judgment_deleted(sender, instance, **kwargs):
    from pairwise.services import counters

    # an admin (or a shell) removed a judgment: the item needs one more again
    counters.forget_open_items(counters.recount_judgments(instance.item_id))


# Defaults of StudyInvite (models_access.py); migrations name them here.
def _invite_token() -> str:
    return secrets.token_urlsafe(24)


def _completion_code() -> str:
    return secrets.token_hex(4).upper()


# kept in their own modules (this one is long); imported here so Django registers them
from pairwise.models_access import Profile, StudyInvite, StudyMember, WorkerHeartbeat  # noqa: E402, F401
from pairwise.models_repeats import Repeat  # noqa: E402, F401
