"""Which responses a study may show: the one place that decides it.

Items are made only from eligible responses; the intention-to-treat statistics count every
context where a system's response is not eligible (missing, unusable, truncated, or revealing a
system's identity) as that system's loss.
"""

from __future__ import annotations

from collections.abc import Iterable

from pairwise.models import Checkpoint, Response, Study, System
from pairwise.services import identity


def eligible_by_context(
    study: Study, checkpoint_id: int, key: str, context_ids: Iterable[int]
) -> dict[int, Response]:
    """The checkpoint's responses (sampling key `key`) that `study` may show, by context id.

    A response is eligible when a clean reply was taken out of it (`usable`), it was not cut
    off at the length limit (unless the study allows truncated replies), and it does not reveal
    a system's identity (`identity`; gold items' reference and control replies are not
    checked)."""
    qs = Response.objects.filter(
        checkpoint_id=checkpoint_id, sampling_key=key, usable=True, context_id__in=context_ids
    )
    if not study.allow_truncated:
        qs = qs.filter(truncated=False)
    found = {r.context_id: r for r in qs.only("pk", "context_id", "text")}
    if not found or not _is_model(checkpoint_id):
        return found
    patterns = identity.study_patterns(study)  # compiled once per call
    return {ctx: r for ctx, r in found.items() if identity.first_match(patterns, r.text) is None}


def _is_model(checkpoint_id: int) -> bool:
    return (
        Checkpoint.objects.filter(pk=checkpoint_id, system__kind=System.Kind.MODEL)
        .exclude(backend="static")
        .exists()
    )
