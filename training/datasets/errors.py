"""Errors for bad input data, and the report of what a lenient load skipped."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Where each corpus is published, for the "file not found" message.
PUBLISHED_AT: dict[str, str] = {
    "esconv": "ESConv is published at https://github.com/thu-coai/Emotional-Support-Conversation "
    "(ESConv.json; the train/valid/test .jsonl splits are the Hugging Face thu-coai/esconv files)",
    "esconv-failed": "FailedESConv.json is published at "
    "https://github.com/thu-coai/Emotional-Support-Conversation",
    "augesc": "AugESC is published on Hugging Face as dataset thu-coai/augesc (file augesc.txt)",
    "extes": "ExTES is published at https://github.com/pandazzh2020/ExTES "
    "(ExTES.json inside ExTES.zip)",
}


class DatasetError(Exception):
    """Bad or missing input data. The message is the whole user-facing explanation."""


class RecordError(DatasetError):
    """One record of a data file is invalid; ``--skip-invalid`` can skip it.

    ``where`` names the record ("line 18", "record [12]"), ``path`` the offending part of it
    ("dialog[3].speaker"), ``kind`` a short category used to count skip reasons.
    """

    def __init__(self, file: Path | str, where: str, kind: str, detail: str, path: str = ""):
        self.file = str(file)
        self.where = where
        self.kind = kind
        self.detail = detail
        location = f"{self.file}, {where}" + (f", {path}" if path else "")
        super().__init__(f"{location}: {detail}")


def missing_data_error(dataset: str, looked_at: list[Path], data_dir: Path) -> DatasetError:
    """The error for a corpus whose file is absent: where we looked and how to fix it."""
    looked = " and ".join(str(p) for p in looked_at)
    return DatasetError(
        f"{dataset} data not found: looked for {looked} (data dir {data_dir}). "
        "Set EVALSITE_DATA_DIR, or pass --data-dir (data_dir= in Python), to the folder that "
        f"holds {looked_at[0].parent.name}/. {PUBLISHED_AT[dataset]}."
    )


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A record that ``skip_invalid=True`` left out, and why."""

    file: str
    where: str  # "line 18" (1-based) or "record [12]" (0-based index in a JSON list)
    kind: str  # "invalid JSON", "unknown speaker", "unknown strategy", "empty dialogue", ...
    message: str  # the full error message a strict load would have raised


@dataclass(slots=True)
class LoadReport:
    """What one ``load_dialogues`` call read, skipped and noticed.

    ``unknown_strategies`` counts ExTES labels outside the 16, which are kept as they are.
    """

    dataset: str
    files: list[str] = field(default_factory=list)
    loaded: int = 0
    skipped: list[SkippedRecord] = field(default_factory=list)
    unknown_strategies: Counter[str] = field(default_factory=Counter)

    def skip_reasons(self) -> dict[str, int]:
        """Count of skipped records per kind of problem, most frequent first."""
        return dict(Counter(s.kind for s in self.skipped).most_common())

    def summary(self) -> str:
        """One line for logs and the CLI's stderr."""
        text = f"{self.dataset}: loaded {self.loaded} dialogues"
        if self.skipped:
            reasons = ", ".join(f"{n} {kind}" for kind, n in self.skip_reasons().items())
            text += f", skipped {len(self.skipped)} invalid records ({reasons})"
        return text

    def add_skip(self, error: RecordError) -> None:
        """Record a skipped record."""
        self.skipped.append(SkippedRecord(error.file, error.where, error.kind, str(error)))
