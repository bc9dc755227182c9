"""Study life cycle: create, open (generate, then build items), close, re-queue a checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import Count, Q

from pairwise.models import Checkpoint, Comparison, ComparisonItem, EvalContext, Response, Study
from pairwise.services import access, audit, generation, identity
from pairwise.services.errors import ServiceError
from pairwise.services.items import add_gold_items, build_items
from pairwise.services.repeats import check_repeat_share
from pairwise.services.sampling import sampling_key, sampling_params

log = logging.getLogger(__name__)


class StudyError(ServiceError):
    """Bad input for a study operation; the message names the field."""


def find_study(ref: str | int) -> Study:
    """A study by id or by name; StudyError naming the reference otherwise."""
    ref = str(ref)
    study = Study.objects.filter(pk=int(ref)).first() if ref.isdigit() else None
    study = study or Study.objects.filter(name=ref).first()
    if study is None:
        raise StudyError("study", f"no study with id or name {ref!r}")
    return study


def latest_checkpoint(system_name: str) -> Checkpoint:
    checkpoint = Checkpoint.objects.filter(system__name=system_name).order_by("-version").first()
    if checkpoint is None:
        raise StudyError("system", f"no checkpoint registered for {system_name!r}")
    return checkpoint


def check_study(
    name: str,
    pairs: list[tuple[Checkpoint, Checkpoint]],
    criteria: list[str],
    overlap_k: int,
    sampling: dict | None,
    gold_share: float,
    identity_patterns: list[str] | None = None,
    repeat_share: float = 0.0,
) -> None:
    if not name or not name.strip():
        raise StudyError("name", "required")
    if Study.objects.filter(name=name).exists():
        raise StudyError("name", f"a study called {name!r} exists already")
    if not pairs:
        raise StudyError("comparisons", "give at least one pair of checkpoints")
    for a, b in pairs:
        if a.pk == b.pk:
            raise StudyError("comparisons", f"{a.label} is compared with itself")
    if not criteria or len(set(criteria)) != len(criteria):
        raise StudyError("criteria", "give a non-empty list of distinct names")
    if overlap_k < 1:
        raise StudyError("overlap_k", "must be at least 1")
    if not 0 <= gold_share <= 0.5:
        raise StudyError("gold_share", "must be between 0 and 0.5")
    try:
        check_repeat_share(repeat_share)
    except ServiceError as exc:
        raise StudyError(exc.field, exc.message) from exc
    try:
        sampling_params(sampling)
    except ServiceError as exc:
        raise StudyError(exc.field, exc.message) from exc
    try:
        identity.check_identity_patterns(identity_patterns)
    except ServiceError as exc:
        raise StudyError(exc.field, exc.message) from exc


def create_study(
    name: str,
    *,
    contexts: Iterable[EvalContext],
    pairs: list[tuple[Checkpoint, Checkpoint]],
    criteria: list[str] | list[dict] | dict[str, str] | None = None,
    overlap_k: int = 3,
    guidelines: str = "",
    sampling: dict | None = None,
    quota_per_annotator: int | None = None,
    gold_share: float = 0.0,
    repeat_share: float = 0.0,
    seed: int | None = None,
    exposure: str = Study.ExposureRule.RESPONSE,
    identity_patterns: list[str] | None = None,
    allow_truncated: bool = False,
    gold_controls: list[str] | None = None,
    created_by=None,
) -> Study:
    """Create a draft study comparing each (A, B) pair of checkpoints on the contexts.
    `created_by` owns it (`access.make_owner`): only its owner, the researchers they add and
    admins see it.

    `seed` is drawn from `secrets` unless given (give the stored seed to reproduce a study).
    `criteria`: names, {name: definition} or [{name, definition}]; a criterion without a
    definition gets its bullet in the guidelines or the default one (`criteria.version_new_study`).
    """
    from pairwise.models import DEFAULT_CRITERIA, new_study_seed
    from pairwise.services import criteria as criteria_service

    try:
        definitions = criteria_service.parse_criteria(criteria)
    except criteria_service.CriteriaError as exc:
        raise StudyError(exc.field, exc.message) from None
    criteria = list(definitions) or list(DEFAULT_CRITERIA)
    if seed is not None and (isinstance(seed, bool) or not 0 <= int(seed) < 2**63):
        raise StudyError("seed", f"expected an integer 0 <= seed < 2**63, got {seed!r}")
    if exposure not in Study.ExposureRule.values:
        raise StudyError(
            "exposure", f"expected one of {Study.ExposureRule.values}, got {exposure!r}"
        )
    if gold_controls is not None and not all(
        isinstance(t, str) and t.strip() for t in gold_controls
    ):
        raise StudyError("gold_controls", "expected a list of non-empty texts")
    check_study(
        name,
        pairs,
        criteria,
        overlap_k,
        sampling,
        gold_share,
        identity_patterns=identity_patterns,
        repeat_share=repeat_share,
    )
    with transaction.atomic():
        study = Study.objects.create(
            name=name,
            criteria=criteria,
            overlap_k=overlap_k,
            guidelines=guidelines,
            sampling=sampling_params(sampling).to_dict(),
            quota_per_annotator=quota_per_annotator,
            gold_share=gold_share,
            repeat_share=float(repeat_share),
            seed=new_study_seed() if seed is None else int(seed),
            exposure=exposure,
            identity_patterns=list(identity_patterns or []),
            allow_truncated=allow_truncated,
            gold_controls=list(gold_controls or []),
            created_by=created_by,
        )
        study.contexts.set(list(contexts))
        for a, b in pairs:
            Comparison.objects.create(study=study, checkpoint_a=a, checkpoint_b=b)
        criteria_service.version_new_study(study, definitions)
        if created_by is not None:
            access.make_owner(study, created_by)
    log.info("created study %s (%s)", study.pk, name)
    return study


def open_study(study: Study, *, gold_items: int | None = None, actor=None) -> dict:
    """Queue the generation of every missing response; items appear as pairs complete.
    `actor`: the user who opened it, for the audit log."""
    if study.status == Study.Status.CLOSED:
        raise StudyError("status", f"study {study.name!r} is closed")
    if gold_items is None:
        gold_items = round(study.gold_share * study.contexts.count())
    gold = add_gold_items(study, gold_items) if gold_items else 0
    batches = generation.queue_study(study)
    made = build_items(study)
    study.refresh_from_db()
    if not batches and study.status in (Study.Status.DRAFT, Study.Status.GENERATING):
        study.status = Study.Status.OPEN
        study.save(update_fields=["status"])
    result = {"batches": len(batches), "items": made, "gold_items": gold}
    audit.record("open", study, actor, status=study.status, **result)
    return result


def close_study(study: Study, *, actor=None) -> None:
    study.status = Study.Status.CLOSED
    study.save(update_fields=["status"])
    audit.record("close", study, actor)


def reopen_study(study: Study, *, actor=None) -> None:
    study.status = Study.Status.OPEN
    study.save(update_fields=["status"])
    audit.record("reopen", study, actor)


def requeue(study: Study, checkpoint: Checkpoint, *, actor=None) -> dict:
    """Bring a new checkpoint into a study against the same opponents.

    A checkpoint of a system on the A side is compared with each baseline (B) checkpoint; one of
    a system on the B side, with each A checkpoint. Only missing responses are generated; no
    existing comparison, item or judgment is touched. Running it twice does nothing the second time.
    """
    existing = list(study.comparisons.select_related("checkpoint_a", "checkpoint_b"))
    a_systems = {c.checkpoint_a.system_id for c in existing}
    b_systems = {c.checkpoint_b.system_id for c in existing}
    pairs: list[tuple[Checkpoint, Checkpoint]] = []
    if checkpoint.system_id in a_systems:
        opponents = _latest_per_system(
            c.checkpoint_b for c in existing if c.checkpoint_a.system_id == checkpoint.system_id
        )
        pairs = [(checkpoint, b) for b in opponents]
    elif checkpoint.system_id in b_systems:
        opponents = _latest_per_system(
            c.checkpoint_a for c in existing if c.checkpoint_b.system_id == checkpoint.system_id
        )
        pairs = [(a, checkpoint) for a in opponents]
    else:
        raise StudyError(
            "checkpoint", f"{checkpoint.label} belongs to no system in study {study.name!r}"
        )
    added = 0
    with transaction.atomic():
        for a, b in pairs:
            if a.pk == b.pk:
                continue
            _, created = Comparison.objects.get_or_create(
                study=study, checkpoint_a=a, checkpoint_b=b
            )
            added += created
    batches = generation.queue_study(study)
    items = build_items(study)
    log.info(
        "study %s: re-queued %s (%d comparisons, %d batches)",
        study.pk,
        checkpoint,
        added,
        len(batches),
    )
    result = {"comparisons_added": added, "batches": len(batches), "items": items}
    audit.record("requeue", study, actor, checkpoint=checkpoint.label, **result)
    return result


def _latest_per_system(checkpoints: Iterable[Checkpoint]) -> list[Checkpoint]:
    best: dict[int, Checkpoint] = {}
    for c in checkpoints:
        if c.system_id not in best or c.version > best[c.system_id].version:
            best[c.system_id] = c
    return sorted(best.values(), key=lambda c: (c.system.name, c.version))


def study_overview(study: Study, *, flagged: list[dict] | None = None) -> dict:
    """Progress for researchers and the admin: items complete of total, counts per annotator.
    `flagged`: the study's `identity.flagged_responses`, when the caller has them already."""
    items = ComparisonItem.objects.filter(study=study, is_gold=False)
    totals = items.aggregate(
        total=Count("pk"), complete=Count("pk", filter=Q(judgment_count__gte=study.overlap_k))
    )
    per_annotator = list(
        study.items.filter(judgments__isnull=False)
        .values("judgments__annotator__username")
        .annotate(n=Count("judgments"))
        .order_by("judgments__annotator__username")
    )
    per_comparison = [
        {
            "comparison": str(c),
            "items": c.n,
            "complete": c.done,
        }
        for c in study.comparisons.select_related(
            "checkpoint_a__system", "checkpoint_b__system"
        ).annotate(
            n=Count("items"),
            done=Count("items", filter=Q(items__judgment_count__gte=study.overlap_k)),
        )
    ]
    key = sampling_key(study.sampling)
    responses = Response.objects.filter(
        sampling_key=key, context__studies=study, checkpoint__in=generation.study_checkpoints(study)
    )
    unusable = responses.filter(usable=False).count()
    # clean replies cut at the length limit: left out unless the study allows them
    truncated = responses.filter(usable=True, truncated=True).count()
    return {
        "items_total": totals["total"],
        "items_complete": totals["complete"],
        "per_annotator": [
            {"annotator": r["judgments__annotator__username"], "judgments": r["n"]}
            for r in per_annotator
        ],
        "per_comparison": per_comparison,
        "unusable_responses": unusable,
        "truncated_responses": truncated,
        "gold_items": study.items.filter(is_gold=True).count(),
        # replies that name a system: kept out of items (identity.py), listed on the study page
        "identity_flagged": len(identity.flagged_responses(study) if flagged is None else flagged),
    }
