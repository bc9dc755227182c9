"""Which responses a study may show: the one place that decides it.

Items are made only from eligible responses; the intention-to-treat statistics count every
context where a system's response is not eligible (missing, unusable, truncated, or revealing a
system's identity) as that system's loss.
"""

from __future__ import annotations

from collections.abc import Iterable

from pairwise.models import Checkpoint, Response, Study
from pairwise.services import identity


class Eligibility:
    """The responses `study` may show, read once per checkpoint: building items and counting
    availability ask for system A's once per comparison, and the study's identity patterns are
    compiled once for all of them.

    A response is eligible when a clean reply was taken out of it (`usable`), it was not cut
    off at the length limit (unless the study allows truncated replies), and it does not reveal
    a system's identity (`identity`; gold items' reference and control replies are not
    checked)."""

    def __init__(self, study: Study, key: str, context_ids: Iterable[int]):
        self.study = study
        self.key = key
        self.context_ids = list(context_ids)
        self._found: dict[int, dict[int, Response]] = {}
        self._patterns: list[identity.IdentityPattern] | None = None

    def by_context(self, checkpoint_id: int) -> dict[int, Response]:
        """The checkpoint's eligible responses, by context id."""
        if checkpoint_id not in self._found:
            self._found[checkpoint_id] = self._read(checkpoint_id)
        return self._found[checkpoint_id]

    def _read(self, checkpoint_id: int) -> dict[int, Response]:
        qs = Response.objects.filter(
            checkpoint_id=checkpoint_id,
            sampling_key=self.key,
            usable=True,
            context_id__in=self.context_ids,
        )
        if not self.study.allow_truncated:
            qs = qs.filter(truncated=False)
        found = {r.context_id: r for r in qs.only("pk", "context_id", "text")}
        if not found:
            return found
        if not identity.is_model(Checkpoint.objects.select_related("system").get(pk=checkpoint_id)):
            return found  # a gold item's reference or control
        if self._patterns is None:
            self._patterns = identity.study_patterns(self.study)
        patterns = self._patterns
        return {c: r for c, r in found.items() if identity.first_match(patterns, r.text) is None}


def eligible_by_context(
    study: Study, checkpoint_id: int, key: str, context_ids: Iterable[int]
) -> dict[int, Response]:
    """The checkpoint's responses (sampling key `key`) that `study` may show, by context id
    (`Eligibility`, for one checkpoint)."""
    return Eligibility(study, key, context_ids).by_context(checkpoint_id)
