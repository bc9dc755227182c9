"""Blind comparison items: made as soon as both responses of a pair are eligible.

Left/right and the serving order are drawn from a generator seeded by (study seed, comparison,
item number); the study seed is secret (drawn from `secrets`), so neither follows from the code
and the ids. Sides are kept balanced within each comparison: the two systems' left counts never
differ by more than 1.

Gold items pair the context's human reference with a control reply drawn from a large pool (the
gold replies of unrelated contexts, or the study's own list): fluent, off-topic, and never one of
a few fixed texts an annotator could learn.
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
    text_key,
)
from pairwise.services import counters
from pairwise.services.eligibility import Eligibility
from pairwise.services.errors import ServiceError
from pairwise.services.sampling import sampling_key

log = logging.getLogger(__name__)


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


def build_items(study: Study) -> int:
    """Create the missing items of every comparison in the study; return how many were made."""
    key = sampling_key(study.sampling)
    context_ids = list(study.contexts.values_list("pk", flat=True))
    eligible = Eligibility(study, key, context_ids)  # A's replies are read once, not per pair
    made = 0
    for comparison in study.comparisons.all():
        with transaction.atomic():
            qs = Comparison.objects.filter(pk=comparison.pk)
            if connection.features.has_select_for_update:
                qs = qs.select_for_update()
            qs.get()  # serialise item creation per comparison, so the balance holds
            done = set(comparison.items.values_list("context_id", flat=True))
            a = eligible.by_context(comparison.checkpoint_a_id)
            b = eligible.by_context(comparison.checkpoint_b_id)
            new = sorted((set(a) & set(b)) - done)
            if not new:
                continue
            left = comparison.items.filter(a_on_left=True).count()
            right = len(done) - left
            # ids of the checkpoints, not of the comparison row: an explicit seed reproduces
            # a study made again from the same checkpoints and contexts
            pair = f"{comparison.checkpoint_a_id}:{comparison.checkpoint_b_id}"
            rng = random.Random(f"{study.seed}:{pair}:{len(done)}")
            sides = _balanced_sides(rng, left, right, len(new))
            ComparisonItem.objects.bulk_create(
                ComparisonItem(
                    study=study,
                    comparison=comparison,
                    context_id=ctx,
                    response_a_id=a[ctx].pk,
                    response_b_id=b[ctx].pk,
                    key_a=text_key(a[ctx].text),
                    key_b=text_key(b[ctx].text),
                    a_on_left=side,
                    order_key=rng.randrange(2**31),
                )
                for ctx, side in zip(new, sides, strict=True)
            )
            counters.forget_open_items(study.pk)
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
    """Mix in n attention items: the human reference against a control reply.

    The control is drawn, per item, from `study.gold_controls` when the researcher gave a list,
    else from the gold replies of unrelated contexts (another dialogue): fluent but off-topic.
    Gold items are unmarked for annotators; `ComparisonItem.gold_expected` gives the right side.
    """
    key = sampling_key(study.sampling)
    reference = _static_checkpoint("Human reference", System.Kind.REFERENCE)
    control = _static_checkpoint("Control", System.Kind.CONTROL)
    have = set(study.items.filter(is_gold=True).values_list("context_id", flat=True))
    rng = random.Random(f"{study.seed}:gold:{len(have)}")
    pool = [c for c in study.contexts.order_by("pk") if c.pk not in have]
    rng.shuffle(pool)
    chosen = pool[:n]
    controls = _control_pool(study, chosen, rng)
    remaining = list(controls)
    made = 0
    with transaction.atomic():
        left = study.items.filter(is_gold=True, a_on_left=True).count()
        right = len(have) - left
        for context, side in zip(
            chosen, _balanced_sides(rng, left, right, len(chosen)), strict=True
        ):
            good = _static_response(reference, context, key, context.gold_response)
            bad = _static_response(
                control, context, key, _draw_control(rng, remaining, controls, context)
            )
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


def _control_pool(
    study: Study, gold_contexts: list[EvalContext], rng: random.Random
) -> list[tuple[str, str]]:
    """(dialogue id, text) candidates for control replies in a random order: the study's list,
    else the gold replies of other contexts (the study's gold contexts last, so that a reference
    an annotator sees in one gold item is not a control in another while other texts are left)."""
    if study.gold_controls:
        pool = [("", str(t)) for t in study.gold_controls if str(t).strip()]
        rng.shuffle(pool)
        return pool
    reserved = {c.pk for c in gold_contexts}
    rows = list(
        EvalContext.objects.exclude(gold_response="")
        .order_by("pk")
        .values_list("pk", "dialogue_id", "gold_response")
    )
    free = [(d, t) for pk, d, t in rows if pk not in reserved]
    last = [(d, t) for pk, d, t in rows if pk in reserved]
    rng.shuffle(free)
    rng.shuffle(last)
    return free + last


def _draw_control(
    rng: random.Random, pool: list[tuple[str, str]], whole: list[tuple[str, str]], context
) -> str:
    """A control reply for `context`, from another dialogue and not the context's own reference.
    Drawn without replacement while the pool lasts (gold items do not share a control), then
    from the whole pool again."""
    for _ in range(2):
        for i, (dialogue, text) in enumerate(pool):
            if dialogue != context.dialogue_id and text.strip() != context.gold_response.strip():
                return pool.pop(i)[1]
        pool.extend(rng.sample(whole, len(whole)))
    raise ServiceError(
        "gold_controls",
        f"no control reply fits context {context.pk} (another dialogue's, not "
        "its own reference); give the study a list of control replies or import more contexts",
    )


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
