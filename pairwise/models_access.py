"""Accounts and access: the profile kept beside Django's user, study membership, invite links,
and the workers' heartbeats (services/access.py, accounts.py, evaluators.py, heartbeat.py).
Imported by models.py, like models_repeats.py, so every model is still `pairwise.models.X`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from pairwise.models import Study, _completion_code, _invite_token


class Profile(models.Model):
    """What the site keeps about an account beyond Django's user: the password lifecycle of an
    invited account, and the participant id a crowd platform passed in through an invite link."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    must_change_password = models.BooleanField(
        default=False, help_text="Invited with a one-time password: set one at first login"
    )
    password_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="The one-time password stops working after this"
    )
    participant_id = models.CharField(
        max_length=100, blank=True, help_text="External participant id (e.g. Prolific PID)"
    )
    # The evaluator profile a datasheet reports (HEDS section 4); every field optional.
    expertise = models.CharField(max_length=200, blank=True, help_text='e.g. "PhD psychology"')
    language = models.CharField(max_length=100, blank=True, help_text="e.g. native English")
    paid = models.BooleanField(null=True, blank=True, help_text="Paid for the work; empty: unknown")
    payment = models.CharField(max_length=100, blank=True, help_text='e.g. "15 GBP/hour"')
    recruitment = models.CharField(max_length=200, blank=True, help_text="How recruited")
    training = models.TextField(blank=True, help_text="Training given before judging")
    is_author = models.BooleanField(
        null=True, blank=True, help_text="An author of the study; empty: unknown"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"profile of user {self.user_id}"


class StudyMember(models.Model):
    """Who may reach a study: its annotators, and its researchers (one owner, collaborators)."""

    class Role(models.TextChoices):
        ANNOTATOR = "annotator"
        RESEARCHER = "researcher"
        OWNER = "owner"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="study_memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ANNOTATOR)
    invite = models.ForeignKey(
        "StudyInvite", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "user"], name="uniq_study_member"),
        ]
        indexes = [models.Index(fields=["user", "role"], name="member_by_user")]

    def __str__(self) -> str:
        return f"user {self.user_id} is {self.role} of study {self.study_id}"


class StudyInvite(models.Model):
    """A shareable, revocable link that enrols whoever follows it as an annotator of a study."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="invites")
    token = models.CharField(max_length=64, unique=True, default=_invite_token, editable=False)
    completion_code = models.CharField(
        max_length=32, default=_completion_code, help_text="Shown when the annotator is done"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    uses = models.PositiveIntegerField(default=0)
    profile = models.JSONField(
        default=dict, blank=True, help_text="Evaluator profile fields given to accounts it makes"
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"invite {self.pk} to study {self.study_id}"


class WorkerHeartbeat(models.Model):
    """A Celery worker's last sign of life, written by the worker itself every few seconds, so
    the health check reads one row instead of asking the broker."""

    name = models.CharField(max_length=200, unique=True, help_text="Celery node name")
    queues = models.CharField(max_length=200, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
