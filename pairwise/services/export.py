"""Exports: long-format judgments, items, ITT, summary, publication tables (imports of
outside judgments: services/imports.py).

The dashboard, the API and the export files all take their numbers from `study_summary`, which
is `stats.summarize` over `long_dataframe(study)`, plus the intention-to-treat rates
(`itt.intention_to_treat` over `comparison_availability(study)`): one function, one set of
numbers.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path

import pandas as pd
from django.db.models import Q

from pairwise.models import (
    Checkpoint,
    ComparisonItem,
    Judgment,
    Study,
)
from pairwise.services import audit, evaluators, intra, itt, length, power, stats
from pairwise.services import criteria as versions
from pairwise.services.checkpoints import check_checkpoint_ref, checkpoint_lookup
from pairwise.services.eligibility import Eligibility
from pairwise.services.errors import ServiceError
from pairwise.services.longformat import (
    LONG_COLUMNS,
    csv_safe,
    validate_long,
)
from pairwise.services.sampling import sampling_key

log = logging.getLogger(__name__)
# "preferences": preferences.jsonl for preference training (services/preferences.py)
PREFERENCES = "preferences"
# "datasheet": datasheet.json/.md/.tex only (services/datasheet.py); every format writes them too
DATASHEET = "datasheet"
FORMATS = ("csv", "json", "parquet", PREFERENCES, DATASHEET)
GOLD_COMPARISON = "gold: reference vs control"
# what annotators wrote, per judgment (repeated on its criteria's rows): after the long format's
# own columns, which validate_long keeps as they are
JUDGMENT_TEXT_COLUMNS = ("comment", "cannot_judge_reason")
# the annotator's id on the crowd platform that sent them (an invite link's ?PROLIFIC_PID=),
# empty for accounts made otherwise; last, after the texts
PARTICIPANT_COLUMN = "participant_id"
# the guidelines' hash and the criterion's version the judgment was made under
# (services/criteria.py); last, so files written before them still line up
VERSION_COLUMNS = ("guideline_sha256", "criterion_version")
EXTRA_COLUMNS = (*JUDGMENT_TEXT_COLUMNS, PARTICIPANT_COLUMN, *VERSION_COLUMNS)


def _judgment_rows(study: Study, checkpoint: str | None = None):
    qs = Judgment.objects.filter(item__study=study).select_related(
        "annotator",
        "item__response_a__checkpoint__system",
        "item__response_b__checkpoint__system",
    )
    if checkpoint:
        ids = _checkpoint_ids(checkpoint)
        qs = qs.filter(
            Q(item__response_a__checkpoint_id__in=ids) | Q(item__response_b__checkpoint_id__in=ids)
        )
    return qs.order_by("item_id", "annotator_id")


def _checkpoint_ids(ref: str) -> list[int]:
    """`ref` is a checkpoint id, a label like "CARE v2", or a system name (all its checkpoints).
    Raises ValueError naming the parameter when nothing matches."""
    try:
        ref = check_checkpoint_ref(ref)
    except ValueError as exc:
        raise ServiceError("checkpoint", str(exc)) from None
    lookup = checkpoint_lookup(ref)
    found = Checkpoint.objects.filter(**(lookup or {"system__name": ref}))
    ids = list(found.values_list("pk", flat=True))
    if not ids:
        raise ServiceError(
            "checkpoint",
            f"no checkpoint or system {ref!r}; expected an id, 'System vN' or 'System'",
        )
    return ids


def long_dataframe(study: Study, *, checkpoint: str | None = None) -> pd.DataFrame:
    """The study's judgments in the long format: one row per annotator x item x criterion."""
    from pairwise.services.access import participant_ids

    rows = []
    judgments = list(_judgment_rows(study, checkpoint))
    participants = participant_ids({j.annotator_id for j in judgments})
    for j in judgments:
        item = j.item
        ca, cb = item.response_a.checkpoint, item.response_b.checkpoint
        a_side = "left" if item.a_on_left else "right"
        comparison = GOLD_COMPARISON if item.is_gold else f"{ca.label} vs {cb.label}"
        for criterion in study.criteria:
            choice = "cannot_judge" if j.cannot_judge else j.choices.get(criterion)
            if choice is None:
                continue
            rows.append(
                {
                    "study": study.name,
                    "item_id": item.public_id,
                    "comparison": comparison,
                    "system_a": ca.label if not item.is_gold else ca.system.name,
                    "system_b": cb.label if not item.is_gold else cb.system.name,
                    "checkpoint_a": str(ca.pk),
                    "checkpoint_b": str(cb.pk),
                    "a_side": a_side,
                    "annotator": j.annotator.username,
                    "criterion": criterion,
                    "choice": choice,
                    "seconds": j.seconds,
                    "client_seconds": j.client_seconds,
                    "prior_exposures": j.prior_exposures,
                    "is_gold": item.is_gold,
                    "gold_expected": item.gold_expected or "",
                    "simulated": j.simulated,
                    "created_at": j.created_at.isoformat(),
                    "comment": j.comment,
                    "cannot_judge_reason": j.cannot_judge_reason,
                    PARTICIPANT_COLUMN: participants.get(j.annotator_id, ""),
                    "guideline_sha256": j.guideline_sha256,
                    "criterion_version": (j.criteria_versions or {}).get(criterion),
                }
            )
    columns = [c for c in LONG_COLUMNS if c != "outcome"] + list(EXTRA_COLUMNS)
    df = pd.DataFrame(rows, columns=columns)
    df["criterion_version"] = df["criterion_version"].astype("Int64")  # empty: not recorded
    if not len(df):
        return df.reindex(columns=[*LONG_COLUMNS, *EXTRA_COLUMNS])
    return validate_long(df)


def comparison_availability(
    study: Study, *, checkpoint: str | None = None
) -> list[itt.Availability]:
    """For each comparison, how many of the study's contexts have no item because A's or B's
    reply is not eligible (`eligibility.eligible_by_context`; a missing reply counts as not
    eligible), and how many have both eligible.

    A context that has an item counts as eligible whatever the rules say now: its judgments are
    in the per-protocol counts. Where a comparison's items were not made from the study's own
    replies (imported judgments: placeholder replies with sampling key "imported"), which replies
    were unusable is unknown and the availability says so (`known=False`) instead of counting
    every context as unusable. `checkpoint` keeps the comparisons of that checkpoint, as
    `study_summary` does.
    """
    key = sampling_key(study.sampling)
    context_ids = list(study.contexts.values_list("pk", flat=True))
    comparisons = study.comparisons.select_related("checkpoint_a__system", "checkpoint_b__system")
    if checkpoint:
        ids = _checkpoint_ids(checkpoint)
        comparisons = comparisons.filter(Q(checkpoint_a_id__in=ids) | Q(checkpoint_b_id__in=ids))
    eligible = Eligibility(study, key, context_ids)
    out = []
    for comparison in comparisons:
        ca, cb = comparison.checkpoint_a, comparison.checkpoint_b
        label = f"{ca.label} vs {cb.label}"
        items = comparison.items.filter(is_gold=False)
        foreign = items.exclude(response_a__sampling_key=key, response_b__sampling_key=key)
        if foreign.exists():
            keys = sorted(set(foreign.values_list("response_a__sampling_key", flat=True)))
            out.append(
                itt.Availability.unknown(
                    label,
                    ca.label,
                    cb.label,
                    f"items made from replies with sampling key {', '.join(keys)} (e.g. "
                    f"imported judgments), not the study's {key!r}: unusable replies unknown",
                )
            )
            continue
        with_item = set(items.values_list("context_id", flat=True))
        a, b = set(eligible.by_context(ca.pk)), set(eligible.by_context(cb.pk))
        rest = set(context_ids) - with_item
        out.append(
            itt.Availability(
                comparison=label,
                system_a=ca.label,
                system_b=cb.label,
                n_contexts=len(context_ids),
                both_eligible=len(with_item) + len(rest & a & b),
                only_a_unusable=len((rest & b) - a),
                only_b_unusable=len((rest & a) - b),
                both_unusable=len(rest - a - b),
                with_item=len(with_item),
            )
        )
    return out


ITT_RULE = (
    "each context without an item adds k = overlap_k virtual judgments (1 virtual item at the "
    "item level): a win for A if only B's reply was unusable, a loss if only A's was, a tie if "
    "both were; a missing reply is unusable"
)


def _with_itt(summary: dict, study: Study, checkpoint: str | None) -> dict:
    """Add `availability` and `itt` (intention-to-treat rows) to a summary."""
    availability = comparison_availability(study, checkpoint=checkpoint)
    table = itt.intention_to_treat(
        summary.get("preference", []) + summary.get("preference_items", []),
        availability,
        k=study.overlap_k,
        criteria=study.criteria,
    )
    summary["availability"] = stats._records(itt.availability_frame(availability))
    summary["itt"] = stats._records(table)
    summary.setdefault("meta", {}).update(itt_rule=ITT_RULE, itt_k=study.overlap_k)
    return summary


def study_summary(study: Study, *, checkpoint: str | None = None, n_boot: int = 1000) -> dict:
    """`stats.summarize` of the study's long table, with the intention-to-treat rates."""
    df = long_dataframe(study, checkpoint=checkpoint)
    if df.empty:
        return _with_itt({"n_judgments": 0, "n_items": 0, "empty": True}, study, checkpoint)
    summary = stats.summarize(df, seed=study.seed, n_boot=n_boot)
    summary["simulated_judgments"] = int(df.loc[df["simulated"].astype(bool), "item_id"].size)
    summary = _with_monitoring(summary, study, df)
    summary = intra.with_intra(summary, study)  # repeats: never in the preference numbers
    summary = length.with_length(summary, study, df, n_boot=n_boot)  # length control
    return _with_itt(summary, study, checkpoint)


def _with_monitoring(summary: dict, study: Study, df: pd.DataFrame) -> dict:
    """Add `monitoring`: per comparison x criterion, the anytime-valid 95% confidence sequence
    of the non-tied win rate and the items the planner still expects (services/power.py)."""
    icc = power.study_icc(df)
    rows = power.monitoring_rows(summary, k=study.overlap_k, icc=icc)
    summary["monitoring"] = stats._jsonable(rows)
    summary.setdefault("meta", {}).update(
        icc=stats._jsonable(icc), icc_estimator=power.ICC_ESTIMATOR, monitoring_rule=power.CS_RULE
    )
    return summary


def plan_defaults(study: Study) -> dict:
    """The planner's inputs that the study supplies: k, its number of comparisons, and the ICC
    estimated from its judgments (None before there are enough)."""
    icc = power.study_icc(long_dataframe(study))
    return {
        "k": study.overlap_k,
        "comparisons": max(1, study.comparisons.count()),
        "icc": stats._jsonable(icc),
    }


def itt_dataframe(summary: dict) -> pd.DataFrame:
    """The summary's intention-to-treat rows as a table (the `itt` export file)."""
    return pd.DataFrame(summary.get("itt", []), columns=itt.ITT_COLUMNS)


def items_dataframe(study: Study) -> pd.DataFrame:
    items = ComparisonItem.objects.filter(study=study).select_related(
        "context", "response_a__checkpoint__system", "response_b__checkpoint__system"
    )
    return pd.DataFrame(
        [
            {
                "item_id": i.public_id,
                "comparison": GOLD_COMPARISON
                if i.is_gold
                else f"{i.response_a.checkpoint.label} vs {i.response_b.checkpoint.label}",
                "system_a": i.response_a.checkpoint.label,
                "system_b": i.response_b.checkpoint.label,
                "a_side": "left" if i.a_on_left else "right",
                "is_gold": i.is_gold,
                "gold_expected": i.gold_expected or "",
                "judgments": i.judgment_count,
                "context_source": i.context.source,
                "dialogue_id": i.context.dialogue_id,
                "turn_index": i.context.turn_index,
                "response_a": i.response_a.text,
                "response_b": i.response_b.text,
                "gold_response": i.context.gold_response,
                "gold_strategy": i.context.gold_strategy,
            }
            for i in items
        ]
    )


def _write_table(df: pd.DataFrame, path: Path, fmt: str) -> Path:
    path = path.with_suffix(f".{fmt}")
    if fmt == "csv":
        csv_safe(df).to_csv(path, index=False)  # model text is untrusted: no formulas
    elif fmt == "json":
        df.to_json(path, orient="records", indent=1, force_ascii=False)
    else:
        df.to_parquet(path, index=False)
    return path


def export_study(
    study: Study,
    fmt: str,
    out_dir: str | Path,
    *,
    actor=None,
    keep_ties: bool = False,
    include_simulated: bool = False,
) -> list[Path]:
    """Write judgments, items, itt (intention-to-treat beside per-protocol rates), summary.json,
    and the publication table (Markdown and LaTeX); or, for fmt "preferences", preferences.jsonl
    (`preferences.write_preferences`; `keep_ties` and `include_simulated` apply to it only).
    `actor`: who exported, for the audit log."""
    written = _write_export(
        study, fmt, out_dir, keep_ties=keep_ties, include_simulated=include_simulated
    )
    audit.record("export", study, actor, format=fmt, out=str(Path(out_dir).resolve()))
    return written


def _write_export(
    study: Study,
    fmt: str,
    out_dir: str | Path,
    *,
    keep_ties: bool = False,
    include_simulated: bool = False,
) -> list[Path]:
    if fmt not in FORMATS:
        raise ValueError(f"format: {fmt!r} is not one of {list(FORMATS)}")
    if fmt != PREFERENCES and (keep_ties or include_simulated):
        raise ValueError(f"keep_ties, include_simulated: only with format {PREFERENCES!r}")
    from pairwise.services.datasheet import write_datasheet

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt in (PREFERENCES, DATASHEET):
        from pairwise.services.preferences import write_preferences

        written = []
        if fmt == PREFERENCES:
            written.append(
                write_preferences(
                    study, out, keep_ties=keep_ties, include_simulated=include_simulated
                )
            )
        written += write_datasheet(study, out)
        log.info("exported study %s %s to %s", study.pk, fmt, out)
        return written
    long_df = long_dataframe(study)
    summary = study_summary(study)
    written = [
        _write_table(long_df, out / "judgments", fmt),
        _write_table(items_dataframe(study), out / "items", fmt),
        _write_table(itt_dataframe(summary), out / "itt", fmt),
        _write_table(intra.repeats_dataframe(study), out / "repeats", fmt),
        # what each version of a criterion and of the guidelines said; who the annotators were
        _write_table(versions.criteria_dataframe(study), out / "criteria", fmt),
        _write_table(versions.guidelines_dataframe(study), out / "guidelines", fmt),
        _write_table(evaluators.annotators_dataframe(study), out / "annotators", fmt),
    ]
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str), "utf-8")
    written.append(out / "summary.json")
    if not summary.get("empty"):
        for kind, suffix in (("markdown", "md"), ("latex", "tex")):
            path = out / f"table.{suffix}"
            path.write_text(stats.publication_table(summary, fmt=kind) + "\n", "utf-8")
            written.append(path)
    written += write_datasheet(study, out, summary)
    log.info("exported study %s as %s to %s", study.pk, fmt, out)
    return written


def export_zip(study: Study, fmt: str, *, actor=None) -> io.BytesIO:
    """The export as a zip file, for a download. `actor`: who downloaded it, for the audit log."""
    import tempfile

    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp:
        files = _write_export(study, fmt, tmp)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, arcname=f"study-{study.pk}/{f.name}")
    buffer.seek(0)
    audit.record("export", study, actor, format=fmt, out="download")
    return buffer
