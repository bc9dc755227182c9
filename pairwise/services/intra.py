"""Intra-annotator agreement: how an annotator judges an item they already judged, shown to them
again later with the sides swapped and under a fresh id (a `Repeat`, services/repeats.py).

Pure part (no ORM): `intra_agreement(frame)` over one row per repeat and criterion, giving per
annotator, per criterion and pooled

- Cohen's kappa between the first and the second answer, both unblinded to outcomes
  ("a", "b", "tie"; `pairwise.outcomes`), and their percent agreement;
- position consistency: among the pairs where neither answer is a tie, the share where the
  annotator picked the same *system* both times (consistent) and the share where they picked
  the same *side* (position-driven). Sides are swapped, so each such pair is one or the other.

ORM part: `repeats_dataframe(study)` (the `repeats` export table), `intra_summary(study)` (the
results page, the API, the export's summary.json and the datasheet read it) and `with_intra`,
which puts it at summary["intra"].
"""

from __future__ import annotations

import pandas as pd

from pairwise.outcomes import CANNOT_JUDGE, outcome_from_choice
from pairwise.services import stats

# what `intra_agreement` needs, one row per (repeat, criterion)
INTRA_COLUMNS = (
    "annotator",
    "criterion",
    "original_choice",
    "repeat_choice",
    "original_a_side",
    "repeat_a_side",
)
POOLED = "(all)"
RULE = (
    "each repeat shows an item the annotator judged before, later, with the sides swapped and a "
    "fresh id; kappa compares the two answers as outcomes (A, B, tie), cannot-judge left out; "
    "consistent: the same system chosen both times, position-driven: the same side, among "
    "pairs where neither answer is a tie"
)


def _outcomes(frame: pd.DataFrame, choice: str, side: str) -> pd.Series:
    """Outcomes ("a", "b", "tie"; None for cannot-judge) of one answer column."""
    out = []
    for line, (c, s) in enumerate(zip(frame[choice], frame[side], strict=True), start=1):
        try:
            out.append(outcome_from_choice(c, s))
        except ValueError as exc:
            raise ValueError(f"{choice}/{side}, row {line}: {exc}") from None
    return pd.Series(out, index=frame.index, dtype=object)


def _row(pairs: pd.DataFrame) -> dict:
    """Agreement of one group of (first, second) answer pairs, cannot-judge already out."""
    n = len(pairs)
    decided = pairs[(pairs["first"] != "tie") & (pairs["second"] != "tie")]
    n_decided = len(decided)
    consistent = int((decided["first"] == decided["second"]).sum())
    same_side = int((decided["original_choice"] == decided["repeat_choice"]).sum())
    return {
        "n_pairs": n,
        "agreement": float((pairs["first"] == pairs["second"]).mean()) if n else float("nan"),
        "cohen_kappa": stats.cohen_kappa(pairs["first"], pairs["second"]),
        "n_non_tied": n_decided,
        "consistent": consistent,
        "position_driven": same_side,
        "consistent_share": consistent / n_decided if n_decided else float("nan"),
        "position_share": same_side / n_decided if n_decided else float("nan"),
    }


def intra_agreement(frame: pd.DataFrame) -> dict:
    """Intra-annotator agreement of a table with the columns `INTRA_COLUMNS` (one row per
    repeat and criterion; choices "left", "right", "tie" or "cannot_judge", sides "left" or
    "right"). Returns {"per_annotator": [...], "per_criterion": [...], "pooled": {...}}, each
    row with n_pairs, agreement, cohen_kappa (NaN when undefined), n_non_tied, consistent,
    position_driven and their shares; rows with a cannot-judge answer are counted apart
    (n_cannot_judge) and otherwise left out."""
    missing = [c for c in INTRA_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"columns: missing {missing}; expected {list(INTRA_COLUMNS)}")
    df = frame.loc[:, list(INTRA_COLUMNS)].copy()
    df["first"] = _outcomes(df, "original_choice", "original_a_side")
    df["second"] = _outcomes(df, "repeat_choice", "repeat_a_side")
    cannot = df["first"].isna() | df["second"].isna()
    pairs = df[~cannot]

    def rows(key: str) -> list[dict]:
        out = []
        for name in sorted(df[key].unique(), key=str):
            group = pairs[pairs[key] == name]
            n_cannot = int((cannot & (df[key] == name)).sum())
            out.append({key: name, **_row(group), "n_cannot_judge": n_cannot})
        return out

    pooled = {"annotator": POOLED, **_row(pairs), "n_cannot_judge": int(cannot.sum())}
    return {
        "per_annotator": rows("annotator"),
        "per_criterion": rows("criterion"),
        "pooled": pooled,
    }


# --- The study's repeats (ORM) --------------------------------------------------------------

REPEAT_COLUMNS = (
    "repeat_id",
    "item_id",
    "comparison",
    "annotator",
    "criterion",
    "original_choice",
    "original_a_side",
    "repeat_choice",
    "repeat_a_side",
    "due_after",
    "seconds",
    "client_seconds",
    "judged_at",
    "comment",
    "cannot_judge_reason",
)


def repeats_dataframe(study) -> pd.DataFrame:
    """The study's repeats, one row per repeat and criterion (the `repeats` export table):
    the first answer beside the second, each with the side A was shown on. A repeat not yet
    answered has an empty `repeat_choice` and `judged_at`."""
    from pairwise.models import Repeat

    repeats = (
        Repeat.objects.filter(study=study)
        .select_related(
            "annotator",
            "judgment__item__response_a__checkpoint__system",
            "judgment__item__response_b__checkpoint__system",
        )
        .order_by("pk")
    )
    rows = []
    for r in repeats:
        j, item = r.judgment, r.judgment.item
        label = f"{item.response_a.checkpoint.label} vs {item.response_b.checkpoint.label}"
        for criterion in study.criteria:
            first = CANNOT_JUDGE if j.cannot_judge else j.choices.get(criterion)
            if r.judged_at is None:
                second = ""
            else:
                second = CANNOT_JUDGE if r.cannot_judge else r.choices.get(criterion, "")
            if first is None:
                continue
            rows.append(
                {
                    "repeat_id": r.public_id,
                    "item_id": item.public_id,
                    "comparison": label,
                    "annotator": r.annotator.username,
                    "criterion": criterion,
                    "original_choice": first,
                    "original_a_side": "left" if item.a_on_left else "right",
                    "repeat_choice": second,
                    "repeat_a_side": "left" if r.a_on_left else "right",
                    "due_after": r.due_after,
                    "seconds": r.seconds,
                    "client_seconds": r.client_seconds,
                    "judged_at": r.judged_at.isoformat() if r.judged_at else "",
                    "comment": r.comment,
                    "cannot_judge_reason": r.cannot_judge_reason,
                }
            )
    return pd.DataFrame(rows, columns=list(REPEAT_COLUMNS))


def intra_summary(study) -> dict:
    """Intra-annotator agreement of the study's answered repeats: {"per_annotator": [...],
    "per_criterion": [...], "pooled": {...}, "n_repeats": answered repeats, "n_pending":
    repeats not answered yet, "repeat_share": the study's setting, "rule": what is computed}.
    Rows as `intra_agreement`'s, JSON-ready (NaN -> None); the lists are empty and pooled is
    {} before any repeat is answered. Study-wide (a checkpoint filter does not apply)."""
    df = repeats_dataframe(study)
    answered = df[df["repeat_choice"] != ""]
    out = {
        "per_annotator": [],
        "per_criterion": [],
        "pooled": {},
        "n_repeats": int(answered["repeat_id"].nunique()),
        "n_pending": int(df.loc[df["repeat_choice"] == "", "repeat_id"].nunique()),
        "repeat_share": study.repeat_share,
        "rule": RULE,
    }
    if not answered.empty:
        out.update(stats._jsonable(intra_agreement(answered)))
    return out


def with_intra(summary: dict, study) -> dict:
    """Add `intra` (intra_summary) to a study summary (export.study_summary)."""
    summary["intra"] = intra_summary(study)
    return summary
