"""Repeat exposure: the pool a study needs so that no annotator sees a reply twice, and how
many repeats happened.

The allocator (`allocation`) keeps an annotator from being shown, in a second item, a reply
they have seen (the same row or an identical text) or, under the `context` rule, a dialogue
they have seen. Each item needs k distinct annotators, and an annotator can take at most one of
the items that share a reply (or a dialogue), so a study whose busiest reply appears in D items
needs at least k x D annotators. With the minimal pool taking turns, the tests see no repeat.
"""

from __future__ import annotations

from collections import Counter

from pairwise.models import Exposure, Study


def busiest_share(study: Study) -> int:
    """The largest number of the study's items that show one same thing under its rule: a
    reply (text key) or a dialogue. Before items exist, read from the design: a checkpoint's
    reply to a context is shown in every comparison of that checkpoint (gold items add one
    item per context under the `context` rule)."""
    rows = list(study.items.values_list("context_id", "key_a", "key_b"))
    if study.exposure == Study.ExposureRule.CONTEXT:
        if rows:
            return max(Counter(c for c, _, _ in rows).values())
        return study.comparisons.count() + (1 if study.gold_share > 0 else 0)
    if rows:
        shown = Counter()
        for _, a, b in rows:
            shown.update({a, b})  # an item showing one text twice counts once
        return max(shown.values())
    per_checkpoint = Counter()
    for a, b in study.comparisons.values_list("checkpoint_a_id", "checkpoint_b_id"):
        per_checkpoint.update((a, b))
    return max(per_checkpoint.values(), default=1)


def min_pool(study: Study) -> int:
    """The smallest annotator pool that can judge every item k times with no repeat exposure
    under the study's rule (k itself when the rule is `none`)."""
    if study.exposure == Study.ExposureRule.NONE:
        return study.overlap_k
    return study.overlap_k * max(busiest_share(study), 1)


def repeat_exposures(study: Study) -> int:
    """Items shown to an annotator who had already seen one of its replies in another item."""
    return Exposure.objects.filter(study=study, prior__gt=0).count()


def exposure_overview(study: Study) -> dict:
    return {
        "rule": study.exposure,
        "min_pool": min_pool(study),
        "repeat_exposures": repeat_exposures(study),
    }
