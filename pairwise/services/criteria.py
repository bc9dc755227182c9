"""Criteria and guidelines as versioned records (issue #18, section 1).

A study's criteria are `Criterion` rows (name, verbatim definition, version); its guidelines
are `GuidelineVersion` rows found by the SHA-256 of their text. `Study.criteria_versions`
({name: current version}) and `Study.guideline_sha256` point at the current ones: the annotator
hot path reads them from the study row it has already loaded, and every judgment copies them
(`allocation.submit`), so a judgment always names the definitions it was made under.

Editing a criterion that no judgment was made under changes it in place; once judgments exist,
the edit is a new version and the old judgments keep theirs. Creation, the study page, the API,
the `edit_criteria` command and imports all go through these functions.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterable, Mapping

from django.db import transaction
from django.db.models.fields.json import KeyTransform

from pairwise.models import DEFAULT_DEFINITIONS, Criterion, GuidelineVersion, Judgment, Study
from pairwise.services import audit
from pairwise.services.errors import ServiceError

log = logging.getLogger(__name__)

# "- **Name**: definition" bullets in a study's guidelines (the migration froze a copy of this)
BULLET = re.compile(r"^\s*[-*]\s+\*\*(?P<name>[^*]+)\*\*\s*[:\u2014-]\s*(?P<text>.+?)\s*$", re.M)
MAX_DEFINITION = 2000
# How long a process serves definitions it read before reading them again. A new version
# changes the cache key at once; an in-place edit (allowed only while no judgment used the
# version) reaches other processes within this time.
CACHE_SECONDS = 30.0
_cache: dict[tuple, tuple[float, list[dict]]] = {}


class CriteriaError(ServiceError):
    """Bad input for criteria or guidelines; the message names the field."""


def guideline_hash(text: str | None) -> str:
    """The SHA-256 (hex) of the guidelines' text, as stored on studies and judgments."""
    return hashlib.sha256((text or "").encode()).hexdigest()


def guideline_definitions(text: str | None) -> dict[str, str]:
    """The "- **Name**: definition" bullets of a study's guidelines, by name."""
    return {m["name"].strip(): m["text"] for m in BULLET.finditer(text or "")}


def parse_criteria(criteria) -> dict[str, str | None]:
    """Criteria as given to `create_study`: names, {name: definition}, or a list whose entries are
    names or {name, definition}. Returns {name: definition or None} in order; CriteriaError
    naming the field otherwise."""
    if criteria is None:
        return {}
    if isinstance(criteria, Mapping):
        entries = [{"name": k, "definition": v} for k, v in criteria.items()]
    elif isinstance(criteria, Iterable) and not isinstance(criteria, str | bytes):
        entries = list(criteria)
    else:
        raise CriteriaError(
            "criteria",
            f"expected a list of names, a list of {{name, definition}} or "
            f"{{name: definition}}, got {type(criteria).__name__}",
        )
    out: dict[str, str | None] = {}
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            name, definition = entry, None
        elif isinstance(entry, Mapping):
            unknown = set(entry) - {"name", "definition"}
            if unknown:
                raise CriteriaError("criteria", f"entry {i} has unknown keys {sorted(unknown)}")
            name, definition = entry.get("name"), entry.get("definition")
        else:
            raise CriteriaError("criteria", f"entry {i} is neither a name nor {{name, definition}}")
        if not isinstance(name, str) or not name.strip():
            raise CriteriaError("criteria", f"entry {i} has no name")
        name = name.strip()
        if name in out:
            raise CriteriaError("criteria", f"{name!r} is given twice")
        if definition is not None:
            definition = check_definition(definition, field="criteria")
        out[name] = definition
    return out


def check_definition(definition, *, field: str = "definition") -> str:
    """A definition's text, stripped; CriteriaError naming `field` if not text or too long."""
    if not isinstance(definition, str):
        raise CriteriaError(field, f"expected text, got {type(definition).__name__}")
    definition = definition.strip()
    if len(definition) > MAX_DEFINITION:
        raise CriteriaError(field, f"at most {MAX_DEFINITION} characters, got {len(definition)}")
    return definition


def version_new_study(study: Study, definitions: Mapping[str, str | None] | None = None) -> None:
    """Version 1 of each of the study's criteria and its guidelines, for a study just created.

    A criterion's definition is the one given, else its bullet in the guidelines, else the
    default criterion's, else empty."""
    definitions = definitions or {}
    written = guideline_definitions(study.guidelines)
    versions = {}
    for name in study.criteria:
        given = definitions.get(name)
        text = given if given is not None else written.get(name) or DEFAULT_DEFINITIONS.get(name)
        Criterion.objects.get_or_create(
            study=study, name=name, version=1, defaults={"definition": text or ""}
        )
        versions[name] = 1
    sha = guideline_hash(study.guidelines)
    GuidelineVersion.objects.get_or_create(
        study=study, sha256=sha, defaults={"text": study.guidelines or ""}
    )
    # update(), not save(): Study.save() resets the allocator's open-item count
    Study.objects.filter(pk=study.pk).update(guideline_sha256=sha, criteria_versions=versions)
    study.guideline_sha256, study.criteria_versions = sha, versions


def sync_study(study: Study) -> None:
    """After a study was edited outside these functions (the admin's form): guidelines whose
    hash is not the current one become a version, and a criterion without a current version
    gets one (its latest row if it had one, else version 1, defined as `version_new_study`
    does)."""
    if study.guideline_sha256 != guideline_hash(study.guidelines):
        set_guidelines(study, study.guidelines or "")
    versions = dict(study.criteria_versions or {})
    missing = [n for n in study.criteria if n not in versions]
    if not missing:
        return
    written = guideline_definitions(study.guidelines)
    for name in missing:
        latest = Criterion.objects.filter(study=study, name=name).order_by("-version").first()
        if latest is None:
            text = written.get(name) or DEFAULT_DEFINITIONS.get(name, "")
            latest = Criterion.objects.create(study=study, name=name, version=1, definition=text)
        versions[name] = latest.version
    Study.objects.filter(pk=study.pk).update(criteria_versions=versions)
    study.criteria_versions = versions
    log.info("study %s: versions for criteria %s", study.pk, missing)


def _judged_under(study: Study, name: str, version: int) -> bool:
    # KeyTransform, not a criteria_versions__<name> lookup: a name may hold "__" or spaces
    judged = Judgment.objects.filter(study=study).annotate(
        v=KeyTransform(name, "criteria_versions")
    )
    return judged.filter(v=version).exists()


def edit_criterion(study: Study, name: str, definition: str, *, actor=None) -> Criterion:
    """Give criterion `name` of `study` a new definition.

    In place while no judgment was made under its current version; otherwise a new version
    (current + 1) that new judgments record, while the old ones keep theirs. Editing to the same
    text changes nothing. A change is written to the audit log (`actor`: who made it). Returns
    the current version's row."""
    definition = check_definition(definition)
    if name not in study.criteria:
        raise CriteriaError("criterion", f"study {study.pk} has no criterion {name!r}")
    with transaction.atomic():
        # the study row locked: two edits at once make one version each, not the same twice
        locked = Study.objects.select_for_update().only("criteria_versions").get(pk=study.pk)
        versions = dict(locked.criteria_versions or {})
        current = versions.get(name)
        row = (
            Criterion.objects.filter(study=study, name=name, version=current).first()
            if current
            else None
        )
        if row is not None and row.definition == definition:
            return row
        if row is not None and not _judged_under(study, name, current):
            row.definition = definition
            row.save(update_fields=["definition"])
            log.info("study %s: criterion %s v%s edited in place", study.pk, name, current)
        else:
            latest = Criterion.objects.filter(study=study, name=name).order_by("-version").first()
            row = Criterion.objects.create(
                study=study,
                name=name,
                definition=definition,
                version=(latest.version + 1) if latest else 1,
            )
            versions[name] = row.version
            Study.objects.filter(pk=study.pk).update(criteria_versions=versions)
            log.info("study %s: criterion %s now v%s", study.pk, name, row.version)
        audit.record(
            "edit_criterion",
            study,
            actor,
            criterion=name,
            version=row.version,
            definition=definition,
        )
    study.criteria_versions = versions
    _forget(study.pk)
    return row


def set_guidelines(study: Study, text: str, *, actor=None) -> GuidelineVersion:
    """Make `text` the study's guidelines: the version with its hash (made if new) becomes
    current, and judgments from now on record it; written to the audit log (`actor`: who)."""
    if not isinstance(text, str):
        raise CriteriaError("guidelines", f"expected text, got {type(text).__name__}")
    sha = guideline_hash(text)
    with transaction.atomic():
        version, created = GuidelineVersion.objects.get_or_create(
            study=study, sha256=sha, defaults={"text": text}
        )
        Study.objects.filter(pk=study.pk).update(guidelines=text, guideline_sha256=sha)
        audit.record("set_guidelines", study, actor, sha256=sha, new=created)
    study.guidelines, study.guideline_sha256 = text, sha
    log.info("study %s: guidelines %s%s", study.pk, sha[:12], " (new)" if created else "")
    return version


def current_criteria(study: Study) -> list[Criterion]:
    """The current version of each criterion, in the study's order (a query; not for the hot
    path, which uses `definitions`)."""
    versions = study.criteria_versions or {}
    found = {
        c.name: c
        for c in Criterion.objects.filter(study=study, name__in=list(versions))
        if versions.get(c.name) == c.version
    }
    return [found[n] for n in study.criteria if n in found]


def definitions(study: Study) -> list[dict]:
    """[{name, definition}] for the study's current criteria, in order, as annotators see them.

    Cached per process by (study, criteria, versions): the annotator pages and the next-item API
    call it on every request with the study row they have loaded, and make no query while the
    cache holds (`CACHE_SECONDS`). A criterion without a row has an empty definition."""
    versions = study.criteria_versions or {}
    key = (study.pk, tuple(study.criteria), tuple(sorted(versions.items())))
    hit = _cache.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    texts = {c.name: c.definition for c in current_criteria(study)}
    value = [{"name": n, "definition": texts.get(n, "")} for n in study.criteria]
    if len(_cache) > 1000:  # studies come and go; keep the dictionary small
        _cache.clear()
    _cache[key] = (now, value)
    return value


def _forget(study_id: int) -> None:
    for key in [k for k in _cache if k[0] == study_id]:
        _cache.pop(key, None)


def criteria_table(study: Study) -> list[dict]:
    """Every version of every criterion, oldest first, with how many judgments used it: the
    study page, the API and the export's criteria file."""
    counts: dict[tuple[str, int], int] = {}
    for versions in Judgment.objects.filter(study=study).values_list(
        "criteria_versions", flat=True
    ):
        for name, version in (versions or {}).items():
            counts[(name, version)] = counts.get((name, version), 0) + 1
    current = study.criteria_versions or {}
    return [
        {
            "name": c.name,
            "version": c.version,
            "definition": c.definition,
            "current": current.get(c.name) == c.version,
            "judgments": counts.get((c.name, c.version), 0),
            "created_at": c.created_at.isoformat(),
        }
        for c in Criterion.objects.filter(study=study).order_by("name", "version")
    ]


def guideline_table(study: Study) -> list[dict]:
    """Every version of the study's guidelines (hash, text, current or not, judgments made)."""
    counts: dict[str, int] = {}
    for sha in Judgment.objects.filter(study=study).values_list("guideline_sha256", flat=True):
        counts[sha] = counts.get(sha, 0) + 1
    return [
        {
            "sha256": g.sha256,
            "text": g.text,
            "current": g.sha256 == study.guideline_sha256,
            "judgments": counts.get(g.sha256, 0),
            "created_at": g.created_at.isoformat(),
        }
        for g in GuidelineVersion.objects.filter(study=study).order_by("created_at", "pk")
    ]


def imported_versions(study: Study, rows, *, first_line: int = 2) -> tuple[str, dict]:
    """The guidelines hash and criteria versions of one imported judgment (its long-format rows,
    a DataFrame whose index is the row number): the file's `guideline_sha256` and
    `criterion_version` columns where given, else the study's current ones. A bad value raises
    LongFormatError naming the line and column."""
    import pandas as pd

    from pairwise.services.longformat import LongFormatError

    sha = study.guideline_sha256
    if "guideline_sha256" in rows.columns:
        given = [str(v).strip() for v in rows["guideline_sha256"] if pd.notna(v) and str(v).strip()]
        if given:
            if not re.fullmatch(r"[0-9a-f]{64}", given[0]):
                line = int(rows.index[0]) + first_line
                raise LongFormatError(
                    line, "guideline_sha256", f"expected 64 hex digits, got {given[0][:70]!r}"
                )
            sha = given[0]
    versions = {}
    current = study.criteria_versions or {}
    for index, row in rows.iterrows():
        name = row["criterion"]
        value = row.get("criterion_version") if "criterion_version" in rows.columns else None
        text = "" if value is None or pd.isna(value) else str(value).strip()
        if not text:
            if name in current:
                versions[name] = current[name]
            continue
        # "2" from CSV, 2 or 2.0 from JSON and parquet
        whole = re.fullmatch(r"(\d+)(\.0+)?", text)
        version = int(whole[1]) if whole else 0
        if version < 1:
            raise LongFormatError(
                int(index) + first_line,
                "criterion_version",
                f"expected a whole number >= 1 or empty, got {text[:20]!r}",
            )
        versions[name] = version
    return sha, versions


def criteria_dataframe(study: Study):
    """The export's criteria table: every version of every criterion, with its definition."""
    import pandas as pd

    columns = ["criterion", "version", "definition", "current", "judgments", "created_at"]
    rows = [{"criterion": r.pop("name"), **r} for r in criteria_table(study)]
    return pd.DataFrame(rows, columns=columns)


def guidelines_dataframe(study: Study):
    """The export's guidelines table: every version of the guidelines, by hash, with its text."""
    import pandas as pd

    columns = ["guideline_sha256", "text", "current", "judgments", "created_at"]
    rows = [{"guideline_sha256": r.pop("sha256"), **r} for r in guideline_table(study)]
    return pd.DataFrame(rows, columns=columns)
