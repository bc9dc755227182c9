"""Emotional-support corpora (ESConv, FailedESConv, AugESC, ExTES) as one ``Dialogue`` type.

    from training.datasets import load_dialogues, turn_examples
    test = load_dialogues("esconv", "test")            # 195 Dialogues, ids "esconv/test/<line>"
    examples = list(turn_examples(test, window=10))    # one per supporter reply

Every bad input raises ``DatasetError`` with the whole explanation in its message. With
``skip_invalid=True`` invalid records are left out instead; the returned list's ``.report``
(a ``LoadReport``) says which and why. See docs/datasets.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from training.datasets import augesc, esconv, extes
from training.datasets.errors import DatasetError, LoadReport, RecordError, SkippedRecord
from training.datasets.examples import turn_examples
from training.datasets.splits import SPLITS
from training.datasets.stats import dataset_stats
from training.datasets.types import Dialogue, Turn, TurnExample

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "SPLITS",
    "DatasetError",
    "Dialogue",
    "DialogueList",
    "LoadReport",
    "RecordError",
    "SkippedRecord",
    "Turn",
    "TurnExample",
    "dataset_stats",
    "default_data_dir",
    "load_dialogues",
    "load_dialogues_with_report",
    "turn_examples",
]

DATA_DIR_ENV = "EVALSITE_DATA_DIR"

_Loader = Callable[[Path, Sequence[str], LoadReport, bool], list[Dialogue]]
_LOADERS: dict[str, _Loader] = {
    "esconv": esconv.load_esconv,
    "esconv-failed": esconv.load_failed,
    "augesc": augesc.load_augesc,
    "extes": extes.load_extes,
}
DATASETS: tuple[str, ...] = tuple(_LOADERS)


class DialogueList(list):
    """A list of Dialogues that also carries the ``LoadReport`` of the load that made it."""

    report: LoadReport


def default_data_dir() -> Path:
    """``$EVALSITE_DATA_DIR`` if set, else ``<repo root>/../shared/data``."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def load_dialogues_with_report(
    dataset: str,
    split: str | None = None,
    *,
    data_dir: Path | str | None = None,
    skip_invalid: bool = False,
) -> tuple[list[Dialogue], LoadReport]:
    """Like ``load_dialogues``, returning the ``LoadReport`` beside the dialogues."""
    dialogues = load_dialogues(dataset, split, data_dir=data_dir, skip_invalid=skip_invalid)
    return dialogues, dialogues.report


def load_dialogues(
    dataset: str,
    split: str | None = None,
    *,
    data_dir: Path | str | None = None,
    skip_invalid: bool = False,
) -> DialogueList:
    """Load one corpus split (or all splits, in train/valid/test order, when ``split`` is None).

    ``dataset`` is one of ``DATASETS``; ``data_dir`` defaults to ``default_data_dir()``.
    Raises ``DatasetError`` on a missing file or any invalid record, unless ``skip_invalid``,
    which leaves invalid records out and lists them in the result's ``.report.skipped`` (a file
    that is not JSON at all, or missing, still raises).
    """
    loader = _LOADERS.get(dataset)
    if loader is None:
        raise DatasetError(f"unknown dataset {dataset!r}; expected one of: {', '.join(DATASETS)}")
    if split is not None and split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")
    if data_dir is None:
        origin = f"from {DATA_DIR_ENV}" if os.environ.get(DATA_DIR_ENV) else "the default"
        root = default_data_dir()
    else:
        origin, root = "given as data_dir", Path(data_dir).expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"data dir {root} ({origin}) does not exist or is not a folder. Set {DATA_DIR_ENV}, "
            "or pass --data-dir (data_dir= in Python), to the folder that holds esconv/, "
            "augesc/ and extes/ (see docs/datasets.md for where each corpus is published)."
        )
    report = LoadReport(dataset)
    result = DialogueList(loader(root, SPLITS if split is None else (split,), report, skip_invalid))
    report.loaded = len(result)
    result.report = report
    return result
