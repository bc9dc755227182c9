"""Human preferences you can train on: one row per item and criterion, from the majority vote.

`preference_rows` is a pure function (the long-format judgments and the items' texts in,
records out); `study_preferences` feeds it from the database and `write_preferences` writes
``preferences.jsonl``, which ``datasets.load_dataset("json", data_files=...)`` reads and
``training.dpo`` trains on.

Each row: ``prompt`` (the history as chat messages, `training.prompts.to_messages`, the plain
prompt SFT builds), ``chosen`` and ``rejected`` (the reply texts), ``criterion``, ``margin`` (the
share of the item's annotators who agree with the majority), ``n_annotators``, ``tie``,
``study``, ``item``, and ``checkpoint_chosen`` / ``checkpoint_rejected`` (labels such as
"CARE v2") with their ids (``checkpoint_chosen_id`` / ``checkpoint_rejected_id``).

Left out: gold items, cannot-judge judgments, simulated judgments (unless
``include_simulated``), and tied items (unless ``keep_ties``: a kept tie has chosen = A,
rejected = B and ``tie`` true). An item is tied when "tie" is the most common answer or when no
answer is the most common alone (e.g. one vote for A, one for B).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from pairwise.outcomes import outcome_from_choice

PREFERENCES_FILE = "preferences.jsonl"
ROW_KEYS = (
    "prompt",
    "chosen",
    "rejected",
    "criterion",
    "margin",
    "n_annotators",
    "tie",
    "study",
    "item",
    "checkpoint_chosen",
    "checkpoint_rejected",
    "checkpoint_chosen_id",
    "checkpoint_rejected_id",
)


def majority(outcomes: Iterable[str]) -> tuple[str, float, int]:
    """The majority outcome of one item and criterion, the share agreeing with it, and the
    number of votes. The outcome is "tie" when "tie" is the most common answer or when the most
    common answer is not alone.

    >>> majority(["a", "a", "b"])
    ('a', 0.6666666666666666, 3)
    >>> majority(["a", "b"])
    ('tie', 0.5, 2)
    >>> majority(["tie", "tie", "a"])
    ('tie', 0.6666666666666666, 3)
    """
    counts = Counter(outcomes)
    n = sum(counts.values())
    if not n:
        raise ValueError("majority: no votes")
    top = counts.most_common()
    best, count = top[0]
    if len(top) > 1 and top[1][1] == count:
        best = "tie"
    return best, count / n, n


def preference_rows(
    judgments: pd.DataFrame,
    items: Mapping[str, Mapping[str, Any]],
    *,
    keep_ties: bool = False,
    include_simulated: bool = False,
) -> list[dict[str, Any]]:
    """Preference records from long-format judgments (`export.long_dataframe`: ``item_id``,
    ``criterion``, ``choice``, ``a_side``, ``is_gold``, ``simulated``, ``study``, ``system_a``,
    ``system_b``, ``checkpoint_a``, ``checkpoint_b``) and ``items``: per item id, ``prompt``
    (chat messages), ``text_a`` and ``text_b`` (the replies). Rows come in the judgments' item
    order, then criterion order."""
    if judgments.empty:
        return []
    df = judgments[~judgments["is_gold"].astype(bool)]
    if not include_simulated:
        df = df[~df["simulated"].astype(bool)]
    outcomes = [outcome_from_choice(c, s) for c, s in zip(df["choice"], df["a_side"], strict=True)]
    df = df.assign(_outcome=outcomes).dropna(subset=["_outcome"])
    rows = []
    for (item_id, criterion), group in df.groupby(["item_id", "criterion"], sort=False):
        winner, margin, n = majority(group["_outcome"])
        tie = winner == "tie"
        if tie and not keep_ties:
            continue
        if str(item_id) not in items:
            raise ValueError(f"item: {item_id!r} has judgments but no texts in `items`")
        item, first = items[str(item_id)], group.iloc[0]
        a = (item["text_a"], first["system_a"], int(first["checkpoint_a"]))
        b = (item["text_b"], first["system_b"], int(first["checkpoint_b"]))
        chosen, rejected = (b, a) if winner == "b" else (a, b)
        rows.append(
            {
                "prompt": item["prompt"],
                "chosen": chosen[0],
                "rejected": rejected[0],
                "criterion": criterion,
                "margin": margin,
                "n_annotators": n,
                "tie": tie,
                "study": first["study"],
                "item": str(item_id),
                "checkpoint_chosen": chosen[1],
                "checkpoint_rejected": rejected[1],
                "checkpoint_chosen_id": chosen[2],
                "checkpoint_rejected_id": rejected[2],
            }
        )
    return rows


def study_preferences(
    study, *, keep_ties: bool = False, include_simulated: bool = False
) -> list[dict[str, Any]]:
    """`preference_rows` of a study's judgments, prompts built as SFT builds them."""
    from pairwise.models import ComparisonItem
    from pairwise.services.export import long_dataframe
    from training.datasets.types import Turn
    from training.prompts import to_messages

    items = {
        i.public_id: {
            "prompt": to_messages([Turn.from_dict(t) for t in i.context.history]),
            "text_a": i.response_a.text,
            "text_b": i.response_b.text,
        }
        for i in ComparisonItem.objects.filter(study=study, is_gold=False).select_related(
            "context", "response_a", "response_b"
        )
    }
    return preference_rows(
        long_dataframe(study), items, keep_ties=keep_ties, include_simulated=include_simulated
    )


def write_preferences(
    study, out_dir: str | Path, *, keep_ties: bool = False, include_simulated: bool = False
) -> Path:
    """Write ``out_dir/preferences.jsonl`` (one JSON object a line) and return its path."""
    rows = study_preferences(study, keep_ties=keep_ties, include_simulated=include_simulated)
    path = Path(out_dir) / PREFERENCES_FILE
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
