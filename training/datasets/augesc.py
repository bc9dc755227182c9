"""AugESC (Zheng et al., Findings of ACL 2023): ``augesc/augesc.txt``.

One dialogue a line, written as a list of ``[speaker, text]`` pairs with speaker ``usr``
(seeker) or ``sys`` (supporter). Lines are JSON; a line that is not JSON but is a Python literal
(single quotes, as ``ast.literal_eval`` reads upstream) is accepted too. There are no strategy
labels and no metadata. AugESC ships as one training set; we split it 90/5/5 with seed 13
(``splits.derived_split``) over its non-blank lines, and ids are ``augesc/<split>/<line>``
(0-based line index in the file).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from pathlib import Path

from training.datasets.errors import LoadReport, RecordError, missing_data_error
from training.datasets.reading import json_type, read_lines
from training.datasets.splits import derived_split
from training.datasets.types import SEEKER, SUPPORTER, Dialogue, Turn

SOURCE = "augesc"
_SPEAKERS = {"usr": SEEKER, "sys": SUPPORTER}


def _parse(line: str, path: Path, where: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        try:
            return ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise RecordError(
                path,
                where,
                "invalid JSON",
                f"invalid JSON ({e.msg}, column {e.colno}); "
                "expected a list of [speaker, text] pairs on each line",
            ) from None


def record_to_dialogue(record: object, dialogue_id: str, path: Path, where: str) -> Dialogue:
    """Convert one parsed line to a Dialogue, or raise a RecordError naming the bad turn."""

    def error(kind: str, detail: str, at: str = "") -> RecordError:
        return RecordError(path, where, kind, detail, at)

    if not isinstance(record, list):
        raise error(
            "bad record", f"expected a list of [speaker, text] pairs, got {json_type(record)}"
        )
    if not record:
        raise error("empty dialogue", "the dialogue has no turns")
    turns = []
    for j, pair in enumerate(record):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise error(
                "bad record", f"expected a [speaker, text] pair, got {pair!r:.80}", f"[{j}]"
            )
        speaker, text = pair
        role = _SPEAKERS.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            raise error(
                "unknown speaker", f"unknown speaker {speaker!r}; expected 'usr' or 'sys'", f"[{j}]"
            )
        if not isinstance(text, str):
            raise error("bad record", f"text must be a string, got {json_type(text)}", f"[{j}]")
        turns.append(Turn(role, text.strip()))
    return Dialogue(dialogue_id, SOURCE, tuple(turns))


def load_augesc(
    data_dir: Path, splits: Sequence[str], report: LoadReport, skip_invalid: bool = False
) -> list[Dialogue]:
    """The given splits of ``augesc/augesc.txt``; only lines of those splits are parsed."""
    path = data_dir / "augesc" / "augesc.txt"
    if not path.is_file():
        raise missing_data_error(SOURCE, [path], data_dir)
    lines = read_lines(path)
    report.files.append(str(path))
    # The split is drawn over every non-blank line, valid or not, so that skipping invalid
    # records never moves a dialogue to another split.
    line_of = [i for i, line in enumerate(lines) if line and not line.isspace()]
    parts = derived_split(len(line_of))
    out: list[Dialogue] = []
    for split in splits:
        for k in parts[split]:
            index = line_of[k]
            where = f"line {index + 1}"
            try:
                record = _parse(lines[index], path, where)
                out.append(record_to_dialogue(record, f"{SOURCE}/{split}/{index}", path, where))
            except RecordError as e:
                if not skip_invalid:
                    raise
                report.add_skip(e)
    return out
