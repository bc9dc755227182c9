"""Django admin for every model, with filters, study progress and the researcher actions."""

from __future__ import annotations

from auditlog.admin import LogEntryAdmin
from auditlog.models import LogEntry as AuditLogEntry
from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Count
from django.http import FileResponse
from django.utils.html import format_html, format_html_join
from rest_framework.authtoken.admin import TokenAdmin as DRFTokenAdmin
from rest_framework.authtoken.models import TokenProxy

from pairwise import models as m
from pairwise import roles
from pairwise.services import (
    accounts,
    counters,
    criteria,
    evaluators,
    export,
    generation,
    identity,
    studies,
)


@admin.register(m.System)
class SystemAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "n_checkpoints", "created_at")
    list_filter = ("kind",)
    search_fields = ("name",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_n=Count("checkpoints"))

    @admin.display(description="checkpoints", ordering="_n")
    def n_checkpoints(self, obj):
        return obj._n


@admin.register(m.Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ("__str__", "system", "version", "backend", "reasoning", "parent", "created_at")
    list_filter = ("system", "backend", "reasoning")
    search_fields = ("system__name", "path")

    def get_readonly_fields(self, request, obj=None):
        # registered checkpoints are immutable; only notes-like fields stay editable
        return CHECKPOINT_READONLY if obj else ()


CHECKPOINT_READONLY = (
    "system",
    "version",
    "path",
    "backend",
    "backend_config",
    "parent",
    "reasoning",
    "lineage",
)


@admin.register(m.EvalContext)
class EvalContextAdmin(admin.ModelAdmin):
    list_display = ("__str__", "source", "gold_strategy", "created_at")
    list_filter = ("source", "gold_strategy")
    search_fields = ("dialogue_id", "gold_response")


class ComparisonInline(admin.TabularInline):
    model = m.Comparison
    extra = 0
    raw_id_fields = ("checkpoint_a", "checkpoint_b")


class StudyMemberInline(admin.TabularInline):
    """Who reaches the study (services/access.py); an admin can hand a study to a new owner."""

    model = m.StudyMember
    fk_name = "study"
    extra = 0
    raw_id_fields = ("user", "added_by", "invite")


class StudyInviteInline(admin.TabularInline):
    model = m.StudyInvite
    extra = 0
    fields = ("token", "completion_code", "uses", "expires_at", "revoked_at", "created_by")
    readonly_fields = ("token", "uses", "created_by")


class StudyForm(forms.ModelForm):
    class Meta:
        model = m.Study
        fields = "__all__"  # noqa: DJ007 - the admin edits every field

    def clean_identity_patterns(self):
        try:
            return identity.check_identity_patterns(self.cleaned_data["identity_patterns"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(m.Study)
class StudyAdmin(admin.ModelAdmin):
    form = StudyForm
    readonly_fields = ("identity_flagged",)
    list_display = ("name", "status", "overlap_k", "progress", "created_at")
    list_filter = ("status",)
    search_fields = ("name",)
    inlines = [ComparisonInline, StudyMemberInline, StudyInviteInline]
    filter_horizontal = ("contexts",)
    actions = ["open_selected", "close_selected", "export_csv", "export_json", "export_parquet"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # new guidelines, or a criterion added here, get their versions (services/criteria.py)
        criteria.sync_study(obj)

    @admin.display(description="items complete / total")
    def progress(self, obj):
        o = studies.study_overview(obj)
        per = ", ".join(f"{a['annotator']}: {a['judgments']}" for a in o["per_annotator"])
        return format_html(
            "{} / {}<br><small>{}</small>",
            o["items_complete"],
            o["items_total"],
            per or "no judgments",
        )

    @admin.display(description="replies that reveal a system (kept out of items)")
    def identity_flagged(self, obj):
        if obj.pk is None:
            return "-"
        flagged = identity.flagged_responses(obj)
        if not flagged:
            return "none"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>response {} ({}, context {}): <code>{}</code> in &ldquo;{}&rdquo;</li>",
                (
                    (f["response_id"], f["checkpoint"], f["context_id"], f["pattern"], f["text"])
                    for f in flagged
                ),
            ),
        )

    @admin.action(description="Open (generate, then build items)")
    def open_selected(self, request, queryset):
        for study in queryset:
            try:
                result = studies.open_study(study, actor=request.user)
                self.message_user(request, f"{study}: {result}")
            except studies.StudyError as exc:
                self.message_user(request, f"{study}: {exc}", messages.ERROR)

    @admin.action(description="Close")
    def close_selected(self, request, queryset):
        for study in queryset:
            studies.close_study(study, actor=request.user)

    def _export(self, request, queryset, fmt):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one study to export.", messages.ERROR)
            return None
        study = queryset.get()
        return FileResponse(
            export.export_zip(study, fmt, actor=request.user),
            as_attachment=True,
            filename=f"study-{study.pk}-{fmt}.zip",
        )

    @admin.action(description="Export (CSV)")
    def export_csv(self, request, queryset):
        return self._export(request, queryset, "csv")

    @admin.action(description="Export (JSON)")
    def export_json(self, request, queryset):
        return self._export(request, queryset, "json")

    @admin.action(description="Export (Parquet)")
    def export_parquet(self, request, queryset):
        return self._export(request, queryset, "parquet")


@admin.register(m.Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = ("__str__", "study", "n_items")
    list_filter = ("study",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_n=Count("items"))

    @admin.display(description="items", ordering="_n")
    def n_items(self, obj):
        return obj._n


@admin.register(m.Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "checkpoint",
        "context",
        "parse_status",
        "usable",
        "truncated",
        "created_at",
    )
    list_filter = ("checkpoint__system", "parse_status", "usable", "truncated")
    search_fields = ("text",)
    raw_id_fields = ("checkpoint", "context")


@admin.register(m.GenerationBatch)
class GenerationBatchAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "study",
        "checkpoint",
        "n_contexts",
        "status",
        "attempts",
        "error_short",
        "finished_at",
    )
    list_filter = ("status", "study", "checkpoint__system")
    actions = ["retry_failed"]

    @admin.display(description="contexts")
    def n_contexts(self, obj):
        return len(obj.context_ids)

    @admin.display(description="error")
    def error_short(self, obj):
        return obj.error[:120]

    @admin.action(description="Retry failed batches")
    def retry_failed(self, request, queryset):
        ids = generation.retry_batches(queryset.values_list("pk", flat=True), actor=request.user)
        self.message_user(request, f"Re-queued {len(ids)} failed batches.")


@admin.register(m.ComparisonItem)
class ComparisonItemAdmin(admin.ModelAdmin):
    list_display = ("public_id", "study", "comparison", "a_on_left", "is_gold", "judgment_count")
    list_filter = ("study", "is_gold", "a_on_left", "comparison")
    search_fields = ("public_id",)
    raw_id_fields = ("context", "response_a", "response_b")


@admin.register(m.Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = ("item", "annotator", "expires_at")
    list_filter = ("item__study",)


@admin.register(m.Exposure)
class ExposureAdmin(admin.ModelAdmin):
    """What each annotator was shown; `prior` > 0 marks a repeat the pool was too small to
    avoid. Written by the allocator only."""

    list_display = ("item", "annotator", "prior", "created_at")
    list_filter = ("study", "prior")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(m.Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    list_display = (
        "item",
        "annotator",
        "cannot_judge",
        "seconds",
        "prior_exposures",
        "simulated",
        "imported",
        "created_at",
    )
    list_filter = ("item__study", "annotator", "simulated", "imported", "cannot_judge")
    raw_id_fields = ("item",)

    def get_readonly_fields(self, request, obj=None):
        # a judgment stays on its item (and the item's study, kept on the judgment); what the
        # allocator recorded when it was shown is not the admin's to write
        recorded = ("client_seconds", "prior_exposures")
        return ("item", *recorded) if obj is not None else recorded

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:  # made here, not by submit: the item's count must include it
            counters.forget_open_items(counters.recount_judgments(obj.item_id))


@admin.register(m.Profile)
class ProfileAdmin(admin.ModelAdmin):
    """Accounts' profiles: the evaluator fields a datasheet reports (services/evaluators.py; no
    field required) beside the participant id and the password lifecycle."""

    list_display = ("user", "expertise", "language", "paid", "recruitment", "is_author")
    list_filter = ("paid", "is_author", "language")
    search_fields = ("user__username", "participant_id", "expertise", "recruitment")
    fields = (
        "user",
        "participant_id",
        *evaluators.PROFILE_FIELDS,
        "must_change_password",
        "password_expires_at",
    )
    readonly_fields = ("user", "must_change_password", "password_expires_at")

    def has_add_permission(self, request):
        return False  # made with the account (invite_annotators, /join/, set_profile)


@admin.register(m.Criterion)
class CriterionAdmin(admin.ModelAdmin):
    """Read-only: an edit goes through `criteria.edit_criterion` (the study page, the API or
    `edit_criteria`), which makes a new version once judgments used the current one."""

    list_display = ("study", "name", "version", "definition", "created_at")
    list_filter = ("study",)
    search_fields = ("name", "definition")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(m.GuidelineVersion)
class GuidelineVersionAdmin(CriterionAdmin):
    list_display = ("study", "sha256", "created_at")
    search_fields = ("sha256", "text")


@admin.register(m.TaskProbe)
class TaskProbeAdmin(admin.ModelAdmin):
    list_display = ("marker", "created_at")


# --- Audit log (pairwise/services/audit.py) ----------------------------------------------------

admin.site.unregister(AuditLogEntry)


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(LogEntryAdmin):
    """Who did what, and when: read-only, and for admins only (not researchers or annotators,
    whatever model permissions a staff account was given)."""

    list_display = ["created", "resource_url", "what", "user_url", "remote_addr"]
    fieldsets = [
        (None, {"fields": ["created", "user_url", "resource_url", "remote_addr", "cid"]}),
        ("What", {"fields": ["what", "action", "msg"]}),
    ]
    readonly_fields = [*LogEntryAdmin.readonly_fields, "what"]

    @admin.display(description="what")
    def what(self, obj):
        data = dict(obj.additional_data or {})
        verb = data.pop("action", None) or obj.get_action_display()
        details = ", ".join(f"{k}={v}" for k, v in data.items())
        return f"{verb} ({details})" if details else verb

    def has_module_permission(self, request):
        return roles.is_admin(request.user)

    def has_view_permission(self, request, obj=None):
        return roles.is_admin(request.user)


# --- Accounts: login lockouts, API tokens, one-time passwords (pairwise/services/accounts.py) ---

User = get_user_model()


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Django's user admin, with actions to unlock a login locked out after failed attempts
    (axes' own "Access attempts" list shows them) and to revoke API tokens."""

    actions = ["unlock_login", "revoke_api_token"]

    @admin.action(description="Unlock login (forget failed logins)")
    def unlock_login(self, request, queryset):
        names = list(queryset.values_list("username", flat=True))
        removed = accounts.unlock_logins(names)
        self.message_user(
            request, f"Unlocked {', '.join(names)} ({removed} failed-login records removed)."
        )

    @admin.action(description="Revoke API token")
    def revoke_api_token(self, request, queryset):
        revoked = accounts.revoke_api_tokens(queryset)
        self.message_user(request, f"Revoked {revoked} API token{'s' if revoked != 1 else ''}.")


admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class TokenAdmin(DRFTokenAdmin):
    actions = ["revoke"]

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        revoked = accounts.revoke_api_tokens(User.objects.filter(auth_token__in=queryset))
        self.message_user(request, f"Revoked {revoked} API token{'s' if revoked != 1 else ''}.")
