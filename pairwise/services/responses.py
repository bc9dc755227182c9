"""Importing responses generated elsewhere: validated whole, then written in one transaction."""

from __future__ import annotations

import json
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from pairwise.models import Checkpoint, EvalContext, Response, Study
from pairwise.services import audit
from pairwise.services.errors import ServiceError
from pairwise.services.generation import parsed_response
from pairwise.services.items import build_items
from pairwise.services.sampling import sampling_key


class ResponseImportError(ServiceError):
    """A bad file or line: `where` is the file (and line), `field` the line's field if any."""

    def __init__(self, where: str, field: str | None, message: str) -> None:
        super().__init__(field, message)
        self.where = where
        self.args = (where, field, message)

    def __str__(self) -> str:
        field = f", field '{self.field}'" if self.field else ""
        return f"{self.where}{field}: {self.message}"


def _fail(path: Path, line: int, field: str, message: str) -> ResponseImportError:
    return ResponseImportError(f"{path}, line {line}", field, message)


def import_responses(
    checkpoint: Checkpoint, path: str | Path, *, study: Study | None = None, actor=None
) -> dict:
    """Import JSONL lines {"context_id", "text", optional "reasoning"} for `checkpoint`.

    The sampling key is the study's (so the responses count for it), else the default one. A
    `text` holding a CARE chain is split as generated text is; with `reasoning` given, `text` is
    the reply as it is. All or nothing: any bad line imports nothing. `actor`: who imported,
    for the audit log.
    """
    path = Path(path)
    if not path.is_file():
        raise ResponseImportError(str(path), None, "no such file")
    key = sampling_key(study.sampling if study else None)
    records = []
    seen: dict[int, int] = {}
    with open(path, encoding="utf-8") as fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise _fail(path, n, "(line)", f"invalid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise _fail(path, n, "(line)", "expected a JSON object")
            cid = record.get("context_id")
            if not isinstance(cid, int) or isinstance(cid, bool):
                raise _fail(path, n, "context_id", f"expected an integer, got {cid!r}")
            text = record.get("text")
            if not isinstance(text, str) or not text.strip():
                raise _fail(path, n, "text", "expected a non-empty string")
            reasoning = record.get("reasoning")
            if reasoning is not None and not isinstance(reasoning, str):
                raise _fail(path, n, "reasoning", "expected a string or null")
            if cid in seen:
                raise _fail(path, n, "context_id", f"{cid} also on line {seen[cid]}")
            seen[cid] = n
            records.append((n, cid, text, reasoning))
    contexts = EvalContext.objects.in_bulk([cid for _, cid, _, _ in records])
    existing = set(
        Response.objects.filter(
            checkpoint=checkpoint, sampling_key=key, context_id__in=list(contexts)
        ).values_list("context_id", flat=True)
    )
    rows = []
    for n, cid, text, reasoning in records:
        if cid not in contexts:
            raise _fail(path, n, "context_id", f"no eval context with id {cid}")
        if cid in existing:
            raise _fail(
                path,
                n,
                "context_id",
                f"{checkpoint.label} already has a response for context {cid}",
            )
        provenance = {
            "imported_from": str(path),
            "line": n,
            "checkpoint": checkpoint.label,
            "imported_at": timezone.now().isoformat(),
        }
        rows.append(
            parsed_response(
                checkpoint, key, contexts[cid], text, reasoning=reasoning, provenance=provenance
            )
        )
    with transaction.atomic():
        Response.objects.bulk_create(rows)
    items = 0
    for s in Study.objects.filter(contexts__in=list(contexts)).distinct():
        if (
            s.comparisons.filter(checkpoint_a=checkpoint).exists()
            or s.comparisons.filter(checkpoint_b=checkpoint).exists()
        ):
            items += build_items(s)
    result = {"responses": len(rows), "unusable": sum(not r.usable for r in rows), "items": items}
    audit.record("import", checkpoint, actor, kind="responses", file=str(path), **result)
    return result
