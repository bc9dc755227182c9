"""Import outside judgments in the long format (`import_judgments`; the command of that name,
or `--pandalm` after services/pandalm.py converts the PandaLM test set).

Each `study` value becomes a closed study (or reuses one), each system a checkpoint, each item
a placeholder context with empty replies, each annotator an inactive account; the columns are
the export's (services/export.py), so an export imports again.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pandas as pd
from django.contrib.auth import get_user_model
from django.db import transaction

from pairwise.models import (
    Checkpoint,
    Comparison,
    ComparisonItem,
    EvalContext,
    Judgment,
    Response,
    Study,
    System,
)
from pairwise.services import audit, counters
from pairwise.services import criteria as versions
from pairwise.services.export import JUDGMENT_TEXT_COLUMNS, PARTICIPANT_COLUMN
from pairwise.services.longformat import LongFormatError, read_long, validate_long

log = logging.getLogger(__name__)


def import_judgments(path: str | Path, *, actor=None, source: str | None = None) -> dict:
    """Import outside judgments in the long format; all or nothing.

    Creates (or reuses) a closed study per `study` value, a system and checkpoint per system
    name, a placeholder context and responses per item, and an inactive account per annotator.
    A bad row raises `LongFormatError` naming its line and field, and nothing is written.
    `actor`: who imported, for the audit log (one row per study the file touched); `source`:
    the file to name there when `path` is a conversion of it.
    """
    df = validate_long(read_long(path))
    User = get_user_model()
    counts = {"studies": 0, "items": 0, "judgments": 0}
    with transaction.atomic():
        for study_name, sdf in df.groupby("study", sort=False):
            criteria = list(dict.fromkeys(sdf["criterion"]))
            study, created = Study.objects.get_or_create(
                name=str(study_name),
                defaults={
                    "criteria": criteria,
                    "status": Study.Status.CLOSED,
                    "overlap_k": int(sdf.groupby("item_id")["annotator"].nunique().max()),
                },
            )
            counts["studies"] += created
            if created:
                versions.version_new_study(study)
            ckpts = {}
            for name in pd.unique(pd.concat([sdf["system_a"], sdf["system_b"]])):
                system, _ = System.objects.get_or_create(name=str(name))
                ckpts[name], _ = Checkpoint.objects.get_or_create(
                    system=system, version=1, defaults={"backend": "static"}
                )
            users = {}
            for name in pd.unique(sdf["annotator"]):
                users[name], new = User.objects.get_or_create(
                    username=f"import:{study_name}:{name}"[:150], defaults={"is_active": False}
                )
                if new:
                    users[name].set_unusable_password()
                    users[name].save(update_fields=["password"])
            first_line = 2 if str(path).endswith(".csv") else 1
            _import_participant_ids(sdf, users, first_line=first_line)
            for item_id, idf in sdf.groupby("item_id", sort=False):
                first = idf.iloc[0]
                item = _import_item(study, str(item_id), first, ckpts)
                counts["items"] += 1
                for annotator, adf in idf.groupby("annotator", sort=False):
                    choices = dict(zip(adf["criterion"], adf["choice"], strict=True))
                    cannot = all(c == "cannot_judge" for c in choices.values())
                    sha, made_under = versions.imported_versions(study, adf, first_line=first_line)
                    _, new = Judgment.objects.get_or_create(
                        item=item,
                        annotator=users[annotator],
                        defaults={
                            "choices": {} if cannot else choices,
                            "cannot_judge": cannot,
                            "seconds": float(adf["seconds"].iloc[0])
                            if pd.notna(adf["seconds"].iloc[0])
                            else 0.0,
                            "client_seconds": float(adf["client_seconds"].iloc[0])
                            if pd.notna(adf["client_seconds"].iloc[0])
                            else None,
                            "prior_exposures": int(adf["prior_exposures"].iloc[0]),
                            "simulated": bool(adf["simulated"].iloc[0]),
                            **{
                                c: str(adf[c].iloc[0]) if pd.notna(adf[c].iloc[0]) else ""
                                for c in JUDGMENT_TEXT_COLUMNS
                                if c in adf.columns
                            },
                            "imported": True,
                            "guideline_sha256": sha,
                            "criteria_versions": made_under,
                        },
                    )
                    counts["judgments"] += new
                counters.recount_judgments(item.pk)
            counters.forget_open_items(study.pk)
            audit.record(
                "import",
                study,
                actor,
                kind="judgments",
                file=str(source or path),
                rows=len(sdf),
                study_created=created,
            )
    log.info("imported %s from %s", counts, path)
    return counts


def _import_participant_ids(df: pd.DataFrame, users: dict, *, first_line: int) -> None:
    """Keep a `participant_id` column (our exports write one) on the imported accounts'
    profiles: the first non-empty value per annotator. `first_line`: the first row's line in
    error messages (2 for CSV)."""
    from pairwise.models import Profile

    if PARTICIPANT_COLUMN not in df.columns:
        return
    given = df[df[PARTICIPANT_COLUMN].fillna("").astype(str).str.strip() != ""]
    max_length = Profile._meta.get_field("participant_id").max_length
    for name, value in given.groupby("annotator", sort=False)[PARTICIPANT_COLUMN].first().items():
        value = str(value).strip()
        if len(value) > max_length:
            line = int(given.index[given["annotator"] == name][0]) + first_line
            raise LongFormatError(
                line, PARTICIPANT_COLUMN, f"at most {max_length} characters, got {len(value)}"
            )
        Profile.objects.update_or_create(user=users[name], defaults={"participant_id": value})


def _imported_public_id(study: Study, item_id: str) -> str:
    """The item's id on this site: "<study>-<their id>", or, when that is longer than the
    column's 32 characters, "<study>-" and a hash of their id (cutting it off would make a
    re-import miss the item, and two long ids with one prefix collide)."""
    public_id = f"{study.pk}-{item_id}"
    max_length = ComparisonItem._meta.get_field("public_id").max_length
    if len(public_id) <= max_length:
        return public_id
    digest = hashlib.sha256(item_id.encode()).hexdigest()
    return f"{study.pk}-{digest}"[:max_length]


def _import_item(study: Study, item_id: str, row, ckpts) -> ComparisonItem:
    public_id = _imported_public_id(study, item_id)
    existing = ComparisonItem.objects.filter(study=study, public_id=public_id).first()
    if existing:
        return existing
    a, b = ckpts[row["system_a"]], ckpts[row["system_b"]]
    comparison, _ = Comparison.objects.get_or_create(study=study, checkpoint_a=a, checkpoint_b=b)
    context, _ = EvalContext.objects.get_or_create(
        source=f"import:{study.name}"[:50],
        dialogue_id=item_id[:100],
        turn_index=0,
        window=0,
        defaults={"history": [], "gold_response": ""},
    )
    study.contexts.add(context)
    responses = []
    for ckpt in (a, b):
        r, _ = Response.objects.get_or_create(
            checkpoint=ckpt,
            context=context,
            sampling_key="imported",
            defaults={
                "parse_status": Response.ParseStatus.NO_REASONING,
                "provenance": {"imported_from": study.name},
            },
        )
        responses.append(r)
    return ComparisonItem.objects.create(
        public_id=public_id,
        study=study,
        comparison=comparison,
        context=context,
        response_a=responses[0],
        response_b=responses[1],
        a_on_left=row["a_side"] == "left",
        is_gold=bool(row["is_gold"]),
        order_key=0,
    )
