"""Queueing and running generation: one batch per (checkpoint, group of contexts).

The GenerationBatch row is the truth; the broker message only wakes a worker. A batch can run
any number of times: responses have a unique (checkpoint, context, sampling key), so a re-run
writes nothing twice. `reconcile` re-enqueues batches whose message or worker was lost.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Avg, Count, F, Q
from django.utils import timezone

from models.base import GenerationRequest, prompt_hash
from models.care_format import has_reasoning_tag, parse_care_output
from models.registry import get_backend
from pairwise.models import Checkpoint, EvalContext, GenerationBatch, Response, Study
from pairwise.services import audit
from pairwise.services.items import build_items
from pairwise.services.sampling import (
    backend_params,
    reasoning_budget,
    reasoning_budget_source,
    sampling_key,
    sampling_params,
)
from training.datasets.types import Turn
from training.lineage import generation_defaults
from training.prompts import prompt_messages

log = logging.getLogger(__name__)
ACTIVE = (GenerationBatch.Status.PENDING, GenerationBatch.Status.RUNNING)


def study_checkpoints(study: Study) -> list[Checkpoint]:
    ids = set()
    for a, b in study.comparisons.values_list("checkpoint_a_id", "checkpoint_b_id"):
        ids.update((a, b))
    return list(Checkpoint.objects.filter(pk__in=ids).select_related("system"))


def queue_study(study: Study, *, batch_size: int | None = None) -> list[int]:
    """Create batches for every response the study still lacks; enqueue them after commit.

    Contexts already answered, or already in a pending or running batch, are left out, so
    calling this twice queues nothing the second time.
    """
    batch_size = batch_size or settings.GENERATION_BATCH_SIZE
    key = sampling_key(study.sampling)
    context_ids = sorted(study.contexts.values_list("pk", flat=True))
    created: list[int] = []
    with transaction.atomic():
        for checkpoint in study_checkpoints(study):
            if checkpoint.backend == "static":
                continue
            have = set(
                Response.objects.filter(
                    checkpoint=checkpoint, sampling_key=key, context_id__in=context_ids
                ).values_list("context_id", flat=True)
            )
            queued: set[int] = set()
            for ids in GenerationBatch.objects.filter(
                checkpoint=checkpoint, sampling_key=key, status__in=ACTIVE
            ).values_list("context_ids", flat=True):
                queued.update(ids)
            missing = [c for c in context_ids if c not in have and c not in queued]
            for i in range(0, len(missing), batch_size):
                batch = GenerationBatch.objects.create(
                    study=study,
                    checkpoint=checkpoint,
                    sampling_key=key,
                    context_ids=missing[i : i + batch_size],
                )
                created.append(batch.pk)
        if created and study.status == Study.Status.DRAFT:
            study.status = Study.Status.GENERATING
            study.save(update_fields=["status"])
        transaction.on_commit(lambda: enqueue(created))
    log.info("study %s: queued %d generation batches", study.pk, len(created))
    return created


def enqueue(batch_ids: list[int]) -> None:
    from pairwise.tasks import generate_batch

    for batch_id in batch_ids:
        result = generate_batch.apply_async(args=[batch_id], queue="generation")
        GenerationBatch.objects.filter(pk=batch_id).update(
            task_id=result.id or "", enqueued_at=timezone.now()
        )


def _seed(study: Study, context_id: int) -> int:
    digest = hashlib.sha256(f"{study.seed}:{context_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


PROMPT_OPTIONS = ("prompt_window",)  # used to build prompts, not passed to the backend


def backend_for(checkpoint: Checkpoint):
    options = {
        k: v for k, v in (checkpoint.backend_config or {}).items() if k not in PROMPT_OPTIONS
    }
    if checkpoint.path:
        options.setdefault("model", checkpoint.path)
    if checkpoint.backend == "fake":
        options.setdefault("model", checkpoint.label)
        options.setdefault("reasoning", checkpoint.reasoning)
    return get_backend(checkpoint.backend, **options)


def run_batch(batch_id: int, *, worker: str = "") -> str:
    """Generate the batch's missing responses and build the items they complete.

    Returns the batch's final status. Exceptions from the backend propagate (the task decides
    whether to retry); the batch is left `running` with a lease, which reconcile reclaims.
    """
    now = timezone.now()
    claimed = (
        GenerationBatch.objects.filter(pk=batch_id)
        .exclude(status=GenerationBatch.Status.DONE)
        .update(
            status=GenerationBatch.Status.RUNNING,
            attempts=F("attempts") + 1,
            started_at=now,
            error="",
            worker=worker,
            lease_until=now + timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT),
        )
    )
    batch = GenerationBatch.objects.select_related("checkpoint__system", "study").get(pk=batch_id)
    if not claimed:
        return batch.status
    study, checkpoint = batch.study, batch.checkpoint
    have = set(
        Response.objects.filter(
            checkpoint=checkpoint, sampling_key=batch.sampling_key, context_id__in=batch.context_ids
        ).values_list("context_id", flat=True)
    )
    contexts = list(
        EvalContext.objects.filter(pk__in=batch.context_ids).exclude(pk__in=have).order_by("pk")
    )
    if contexts:
        params = sampling_params(study.sampling)
        # Prompted as trained (lineage.json's `generation`); `prompt_window` overrides the window.
        trained = generation_defaults(checkpoint.lineage)
        # A reasoning checkpoint gets its chain's budget on top of the reply's (sampling.py).
        sent = backend_params(
            params, reasoning=checkpoint.reasoning, trained_budget=trained.max_new_tokens
        )
        window = (checkpoint.backend_config or {}).get("prompt_window", trained.window)
        requests = [
            GenerationRequest(
                messages=prompt_messages(
                    [Turn.from_dict(t) for t in c.history],
                    window=window,
                    care=checkpoint.reasoning,
                    seeker_placeholder=trained.seeker_placeholder,
                ),
                sampling=sent,
                seed=_seed(study, c.pk),
            )
            for c in contexts
        ]
        backend = backend_for(checkpoint)
        started = time.perf_counter()
        generations = backend.generate(requests)
        log.info(
            "batch %s: %d responses from %s in %.2fs",
            batch_id,
            len(generations),
            checkpoint.label,
            time.perf_counter() - started,
        )
        row = partial(_response_row, checkpoint, batch.sampling_key, trained=trained, window=window)
        rows = [
            row(c, r, g, backend, params)
            for c, r, g in zip(contexts, requests, generations, strict=True)
        ]
        Response.objects.bulk_create(rows, ignore_conflicts=True)
    # Items before `done`: a worker that dies in between leaves the batch running, and its
    # re-run (after reconcile) finds the responses and builds what is missing.
    build_items(study)
    GenerationBatch.objects.filter(pk=batch_id).update(
        status=GenerationBatch.Status.DONE, finished_at=timezone.now(), lease_until=None
    )
    finish_if_generated(study)
    return GenerationBatch.Status.DONE


def _response_row(
    checkpoint, key, context, request, generation, backend, params, *, trained, window
) -> Response:
    return parsed_response(
        checkpoint,
        key,
        context,
        generation.text,
        truncated=generation.finish_reason == "length",
        provenance={
            "checkpoint": checkpoint.label,
            "checkpoint_id": checkpoint.pk,
            "lineage": [c.label for c in _ancestors(checkpoint)],
            "backend": backend.name,
            "backend_version": backend.version,
            "sampling": params.to_dict(),
            "reply_tokens": params.max_new_tokens,
            "reasoning_tokens": reasoning_budget(
                params, reasoning=checkpoint.reasoning, trained_budget=trained.max_new_tokens
            ),
            "reasoning_tokens_from": reasoning_budget_source(
                params, reasoning=checkpoint.reasoning, trained_budget=trained.max_new_tokens
            ),
            "max_new_tokens": request.sampling.max_new_tokens,  # what the backend was sent
            # the prompt's history window (the context's import window capped by the
            # checkpoint's; None: all turns) and what the checkpoint was trained with
            "window": min((w for w in (window, context.window) if w), default=None),
            "trained_window": trained.window,
            "trained_max_new_tokens": trained.max_new_tokens,
            "seeker_placeholder": trained.seeker_placeholder,
            "seed": request.seed,
            "prompt_hash": prompt_hash(request.messages),
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens,
            "finish_reason": generation.finish_reason,
            "seconds": generation.seconds,
            "generated_at": timezone.now().isoformat(),
        },
    )


#: What a NUL character in a model's text is stored as (`parsed_response`).
NUL_REPLACEMENT = "\ufffd"


def parsed_response(
    checkpoint,
    key,
    context,
    raw: str,
    *,
    provenance: dict,
    reasoning: str | None = None,
    truncated: bool = False,
) -> Response:
    """A Response row from a model's raw text: the reply split from any reasoning chain.

    `reasoning`, when given (an import with the chain stored apart), is kept as it is and the
    text is taken as the reply; a reply holding a reasoning tag (`has_reasoning_tag`) is then
    `tag_leak`, with no text and not usable, as it is from the parser. `truncated`: the
    generation hit its length limit; the parse does not change, whether a study may show it is
    `eligibility`'s to decide.

    Model output is untrusted and may hold NUL characters (a tiny sampled model wrote one), which
    PostgreSQL text cannot store: the batch failed there while SQLite kept it. Each becomes
    U+FFFD before anything is parsed or stored, on every database alike."""
    raw = raw.replace("\x00", NUL_REPLACEMENT)
    if reasoning is not None:
        reasoning = reasoning.replace("\x00", NUL_REPLACEMENT)
        text = raw.strip()
        leak = has_reasoning_tag(text)
        return Response(
            checkpoint=checkpoint,
            context=context,
            sampling_key=key,
            text="" if leak else text,
            reasoning=reasoning,
            raw_output=raw,
            parse_status=(
                Response.ParseStatus.TAG_LEAK if leak else Response.ParseStatus.NO_REASONING
            ),
            usable=bool(text) and not leak,
            truncated=truncated,
            provenance=provenance,
        )
    parsed = parse_care_output(raw)
    return Response(
        checkpoint=checkpoint,
        context=context,
        sampling_key=key,
        text=parsed.response or "",
        reasoning=parsed.reasoning or "",
        raw_output=raw,
        parse_status=parsed.status,
        strategy=parsed.strategy or "",
        usable=parsed.response is not None and bool(parsed.response.strip()),
        truncated=truncated,
        provenance=provenance,
    )


def _ancestors(checkpoint: Checkpoint) -> list[Checkpoint]:
    chain, seen = [], set()
    node = checkpoint
    while node is not None and node.pk not in seen:
        chain.append(node)
        seen.add(node.pk)
        node = node.parent
    return chain


def mark_failed(batch_id: int, error: str) -> None:
    """Keep the error on the batch (for a retry); if it was the study's last batch to run, the
    study opens with what was generated, its failures shown in its progress."""
    GenerationBatch.objects.filter(pk=batch_id).update(
        status=GenerationBatch.Status.FAILED,
        error=error[:4000],
        finished_at=timezone.now(),
        lease_until=None,
    )
    study = Study.objects.filter(batches__pk=batch_id).first()
    if study is not None:
        finish_if_generated(study)


def finish_if_generated(study: Study) -> bool:
    """A generating study opens for annotation when no batch is pending or running.
    Returns whether this call opened it."""
    if study.status != Study.Status.GENERATING:
        return False
    if GenerationBatch.objects.filter(study=study, status__in=ACTIVE).exists():
        return False
    return bool(
        Study.objects.filter(pk=study.pk, status=Study.Status.GENERATING).update(
            status=Study.Status.OPEN
        )
    )


def retry_batches(batch_ids, *, actor=None) -> list[int]:
    """Put failed batches back in the queue (the admin action and the API call this).
    `actor`: who asked, for the audit log (a re-queue of each study concerned)."""
    ids = list(
        GenerationBatch.objects.filter(
            pk__in=batch_ids, status=GenerationBatch.Status.FAILED
        ).values_list("pk", flat=True)
    )
    GenerationBatch.objects.filter(pk__in=ids).update(
        status=GenerationBatch.Status.PENDING, error="", enqueued_at=None
    )
    Study.objects.filter(batches__pk__in=ids, status=Study.Status.OPEN).update(
        status=Study.Status.GENERATING
    )
    transaction.on_commit(lambda: enqueue(ids))
    if ids:
        for study in Study.objects.filter(batches__pk__in=ids).distinct():
            retried = sorted(study.batches.filter(pk__in=ids).values_list("pk", flat=True))
            audit.record("requeue", study, actor, retried_batches=retried)
    return ids


def reconcile(*, now=None, worker: str = "", pending_grace: int | None = None) -> list[int]:
    """Re-enqueue work that has no live task: the database, not the broker, is the truth.

    - pending batches never enqueued, or enqueued longer than `pending_grace` seconds ago;
    - running batches whose lease ran out (their worker died or hung);
    - running batches claimed by `worker`, when that worker has just (re)started.
    Running a batch twice is harmless, so erring towards re-enqueueing is safe. A study still
    `generating` with no batch left to run (its last worker died between marking its batch done
    and opening it) gets its items and opens.
    """
    now = now or timezone.now()
    grace = settings.CELERY_VISIBILITY_TIMEOUT if pending_grace is None else pending_grace
    stale = Q(status=GenerationBatch.Status.PENDING) & (
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=now - timedelta(seconds=grace))
    )
    stale |= Q(status=GenerationBatch.Status.RUNNING, lease_until__lt=now)
    if worker:
        stale |= Q(status=GenerationBatch.Status.RUNNING, worker=worker)
    ids = list(GenerationBatch.objects.filter(stale).values_list("pk", flat=True))
    if ids:
        GenerationBatch.objects.filter(pk__in=ids).update(
            status=GenerationBatch.Status.PENDING, lease_until=None
        )
        log.warning("reconcile: re-enqueueing %d batches %s", len(ids), ids[:20])
        enqueue(ids)
    stuck = Study.objects.filter(status=Study.Status.GENERATING).exclude(batches__status__in=ACTIVE)
    for study in stuck:
        made = build_items(study)
        if finish_if_generated(study):
            log.warning(
                "reconcile: study %s was generating with no batch left to run: %d new items, "
                "opened",
                study.pk,
                made,
            )
    return ids


def generation_progress(study: Study) -> dict:
    """Generated out of needed, failures with their errors, and an ETA in seconds."""
    checkpoints = [c for c in study_checkpoints(study) if c.backend != "static"]
    key = sampling_key(study.sampling)
    n_contexts = study.contexts.count()
    needed = n_contexts * len(checkpoints)
    responses = Response.objects.filter(
        checkpoint__in=checkpoints, sampling_key=key, context__studies=study
    )
    counts = responses.aggregate(n=Count("pk"), unusable=Count("pk", filter=Q(usable=False)))
    batches = GenerationBatch.objects.filter(study=study)
    failed = list(
        batches.filter(status=GenerationBatch.Status.FAILED).values("pk", "checkpoint_id", "error")
    )
    remaining = batches.filter(status__in=ACTIVE).count()
    avg = batches.filter(status=GenerationBatch.Status.DONE, started_at__isnull=False).aggregate(
        d=Avg(F("finished_at") - F("started_at"))
    )["d"]
    eta = avg.total_seconds() * remaining if (avg is not None and remaining) else None
    return {
        "generated": counts["n"],
        "needed": needed,
        "unusable": counts["unusable"],
        "batches_remaining": remaining,
        "failed": failed,
        "eta_seconds": eta,
    }
