"""Import the PandaLM human test set (Wang et al., ICLR 2024) into the long format.

The file (``testset-v1.json`` of WeOpenML/PandaLM) is a JSON list of 999 items with
``cmp_key = "<model of response1>_<model of response2>"`` and three annotators' labels
``annotator1..3``: 0 = tie (similar quality), 1 = response1 better, 2 = response2 better.

Conversion (one row per item x annotator, criterion "Overall"):

* ``study`` = "pandalm-v1"; ``item_id`` = the item's ``idx`` as a string;
* ``system_a`` = model of response1, ``system_b`` = model of response2, split from ``cmp_key`` at
  the one underscore that separates two known model names; ``comparison`` = "A vs B";
* ``a_side`` = "left": PandaLM showed response1 first, so response1 is the left side;
* ``choice``: 1 -> "left", 2 -> "right", 0 -> "tie"; ``outcome`` follows (a / b / tie);
* ``annotator`` = "annotator1".."annotator3"; ``seconds`` unknown (NaN); no gold items;
  ``simulated`` False; checkpoints and ``created_at`` empty (not in the source).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pairwise.services.longformat import LONG_COLUMNS, validate_long

STUDY = "pandalm-v1"
MODELS = ("bloom-7b", "cerebras-gpt-6.7B", "llama-7b", "opt-7b", "pythia-6.9b")
ANNOTATORS = ("annotator1", "annotator2", "annotator3")
LABEL_TO_CHOICE = {0: "tie", 1: "left", 2: "right"}


def split_cmp_key(cmp_key: str) -> tuple[str, str]:
    """Split ``"<model1>_<model2>"`` into the two model names.

    Model names may themselves contain underscores in other releases, so the split is the one
    whose halves are both known models; failing that, the only underscore.
    """
    for i, ch in enumerate(cmp_key):
        if ch == "_" and cmp_key[:i] in MODELS and cmp_key[i + 1 :] in MODELS:
            return cmp_key[:i], cmp_key[i + 1 :]
    parts = cmp_key.split("_")
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    raise ValueError(f"cmp_key {cmp_key!r}: expected '<model1>_<model2>'")


def pandalm_to_long(path: str | Path) -> pd.DataFrame:
    """Read PandaLM's ``testset-v1.json`` and return it as a validated long-format DataFrame."""
    path = Path(path)
    items = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a JSON list of items")
    rows = []
    for n, item in enumerate(items, start=1):
        where = f"{path}: item {n} (idx {item.get('idx')!r})"
        try:
            model1, model2 = split_cmp_key(item["cmp_key"])
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{where}: field 'cmp_key': {exc}") from None
        for ann in ANNOTATORS:
            label = item.get(ann)
            if label not in LABEL_TO_CHOICE:
                raise ValueError(f"{where}: field {ann!r}: expected 0, 1 or 2, got {label!r}")
            rows.append(
                {
                    "study": STUDY,
                    "item_id": str(item["idx"]),
                    "comparison": f"{model1} vs {model2}",
                    "system_a": model1,
                    "system_b": model2,
                    "checkpoint_a": "",
                    "checkpoint_b": "",
                    "a_side": "left",
                    "annotator": ann,
                    "criterion": "Overall",
                    "choice": LABEL_TO_CHOICE[label],
                    "seconds": np.nan,
                    "is_gold": False,
                    "gold_expected": None,
                    "simulated": False,
                    "created_at": "",
                }
            )
    df = pd.DataFrame.from_records(rows)
    # validate_long derives ``outcome`` from choice and a_side and checks the whole table.
    return validate_long(df, first_line=1)[LONG_COLUMNS]
