"""Blind comparison items: made as soon as both responses of a pair exist.

Left/right is drawn from a generator seeded by (study seed, comparison, item number) and kept
balanced within each comparison: the two systems' left counts never differ by more than 1.
"""

from __future__ import annotations

import logging
import random

from django.db import connection, transaction

from pairwise.models import (
    Checkpoint,
    Comparison,
    ComparisonItem,
    EvalContext,
    Response,
    Study,
    System,
    forget_open_items,
)
from pairwise.services.sampling import sampling_key

log = logging.getLogger(__name__)

CONTROL_REPLIES = (
    "ok. anyway, what is the capital of australia?",
    "That is not a real problem. Stop complaining and move on.",
    "I don't care about that. Let's talk about something else.",
    "Have you tried turning it off and on again?",
)


def _balanced_sides(rng: random.Random, left: int, right: int, n: int) -> list[bool]:
    """n values of a_on_left, keeping |left - right| <= 1 and otherwise random."""
    out = []
    for _ in range(n):
        if left > right:
            side = False
        elif right > left:
            side = True
        else:
            side = rng.random() < 0.5
        out.append(side)
        left += side
        right += not side
    return out


def _responses_by_context(checkpoint_id: int, key: str, context_ids) -> dict[int, int]:
    return dict(
        Response.objects.filter(
            checkpoint_id=checkpoint_id, sampling_key=key, usable=True, context_id__in=context_ids
        ).values_list("context_id", "pk")
    )


def build_items(study: Study) -> int:
    """Create the missing items of every comparison in the study; return how many were made."""
    key = sampling_key(study.sampling)
    context_ids = list(study.contexts.values_list("pk", flat=True))
    made = 0
    for comparison in study.comparisons.all():
        with transaction.atomic():
            qs = Comparison.objects.filter(pk=comparison.pk)
            if connection.features.has_select_for_update:
                qs = qs.select_for_update()
            qs.get()  # serialise item creation per comparison, so the balance holds
            done = set(comparison.items.values_list("context_id", flat=True))
            a = _responses_by_context(comparison.checkpoint_a_id, key, context_ids)
            b = _responses_by_context(comparison.checkpoint_b_id, key, context_ids)
            new = sorted((set(a) & set(b)) - done)
            if not new:
                continue
            left = comparison.items.filter(a_on_left=True).count()
            right = len(done) - left
            rng = random.Random(f"{study.seed}:{comparison.pk}:{len(done)}")
            sides = _balanced_sides(rng, left, right, len(new))
            ComparisonItem.objects.bulk_create(
                ComparisonItem(
                    study=study,
                    comparison=comparison,
                    context_id=ctx,
                    response_a_id=a[ctx],
                    response_b_id=b[ctx],
                    a_on_left=side,
                    order_key=rng.randrange(2**31),
                )
                for ctx, side in zip(new, sides, strict=True)
            )
            forget_open_items(study.pk)
            made += len(new)
            log.info("study %s: %d new items for %s", study.pk, len(new), comparison)
    return made


def _static_checkpoint(name: str, kind: str) -> Checkpoint:
    system, _ = System.objects.get_or_create(name=name, defaults={"kind": kind})
    checkpoint, _ = Checkpoint.objects.get_or_create(
        system=system, version=1, defaults={"backend": "static"}
    )
    return checkpoint


def add_gold_items(study: Study, n: int) -> int:
    """Mix in n attention items: the human reference against a known-bad control reply.

    They are unmarked for annotators; `ComparisonItem.gold_expected` gives the right side.
    """
    key = sampling_key(study.sampling)
    reference = _static_checkpoint("Human reference", System.Kind.REFERENCE)
    control = _static_checkpoint("Control", System.Kind.CONTROL)
    have = set(study.items.filter(is_gold=True).values_list("context_id", flat=True))
    rng = random.Random(f"{study.seed}:gold")
    pool = [c for c in study.contexts.order_by("pk") if c.pk not in have]
    rng.shuffle(pool)
    made = 0
    with transaction.atomic():
        left = study.items.filter(is_gold=True, a_on_left=True).count()
        right = len(have) - left
        for context, side in zip(
            pool[:n], _balanced_sides(rng, left, right, min(n, len(pool))), strict=True
        ):
            good = _static_response(reference, context, key, context.gold_response)
            bad = _static_response(control, context, key, rng.choice(CONTROL_REPLIES))
            ComparisonItem.objects.create(
                study=study,
                context=context,
                response_a=good,
                response_b=bad,
                a_on_left=side,
                is_gold=True,
                order_key=rng.randrange(2**31),
            )
            made += 1
    return made


def _static_response(checkpoint: Checkpoint, context: EvalContext, key: str, text: str):
    response, _ = Response.objects.get_or_create(
        checkpoint=checkpoint,
        context=context,
        sampling_key=key,
        defaults={
            "text": text,
            "raw_output": text,
            "parse_status": Response.ParseStatus.NO_REASONING,
            "provenance": {"backend": "static"},
        },
    )
    return response
