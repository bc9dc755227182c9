"""Repeats: an item an annotator already judged, shown to them again later with the sides
swapped, to measure intra-annotator agreement (services/repeats.py, services/intra.py).

Kept apart from the Judgment table on purpose: a repeat's answer never enters the item's
judgment count, the k-annotator rule or any preference statistic. Imported by models.py.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from pairwise.models import Judgment, Study, _opaque_id


class Repeat(models.Model):
    """One judged item shown again to the same annotator, blind: its own opaque id (never the
    item's), A on the other side than in the original, due once the annotator has made
    `due_after` judgments in the study."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+", db_index=False)
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    judgment = models.OneToOneField(Judgment, on_delete=models.CASCADE, related_name="repeat")
    public_id = models.CharField(max_length=32, unique=True, default=_opaque_id, editable=False)
    a_on_left = models.BooleanField(help_text="Side of A when shown again: the original's other")
    position = models.PositiveIntegerField(
        default=0,
        help_text="Items the annotator had judged in the study, repeats included, "
        "with the original",
    )
    due_after = models.PositiveIntegerField(
        help_text="Shown once the annotator has this many judgments in the study"
    )
    leased_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # the answer, validated as a judgment's (allocation.check_judgment)
    choices = models.JSONField(default=dict, blank=True, help_text="criterion -> left|right|tie")
    cannot_judge = models.BooleanField(default=False)
    cannot_judge_reason = models.TextField(blank=True)
    comment = models.TextField(blank=True)
    seconds = models.FloatField(null=True, blank=True, help_text="Lease to submit, server time")
    client_seconds = models.FloatField(null=True, blank=True)
    judged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        # the allocator's probe: this annotator's pending repeats in the study, oldest first
        indexes = [
            models.Index(fields=["annotator", "study", "judged_at", "position"], name="repeat_next")
        ]

    def __str__(self) -> str:
        return f"repeat of judgment {self.judgment_id}"
