"""ExTES (Zheng et al., 2023/2024): ``extes/ExTES.json``.

A JSON list of ``{"scene", "description", "content": [{"User": text} |
{"AI": text, "AI Strategy": name}, ...]}``. ``scene`` becomes ``problem_type`` and
``description`` becomes ``situation``. The irregularities of the published file are handled so:

* a turn object with both ``User`` and ``AI`` gives two turns, the seeker's first;
* ``AI`` given as an object holds its text under ``Response`` (and may hold its own
  ``AI Strategy``, used when the outer one is absent);
* an empty or missing ``AI Strategy`` gives ``strategy=None`` (greetings, closings);
* a label in another spelling of the 16 (case, "(RS)" suffix, abbreviation) is canonicalised;
  a label outside the 16 is kept as written (stripped) and counted in
  ``LoadReport.unknown_strategies``: it is data, not an error, and dropping it would hide it.

Labels stay ExTES's own; ``strategies.map_extes_strategy`` gives the ESConv ones. ExTES has no
official split; we split it 90/5/5 with seed 13 over the list (``splits.derived_split``), and
ids are ``extes/<split>/<index in the JSON list>``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from training.datasets.errors import LoadReport, RecordError, missing_data_error
from training.datasets.reading import json_type, read_json_list
from training.datasets.splits import derived_split
from training.datasets.strategies import canonical_extes_strategy
from training.datasets.types import SEEKER, SUPPORTER, Dialogue, Turn

SOURCE = "extes"
STRATEGY_KEY = "AI Strategy"


def record_to_dialogue(
    record: object, dialogue_id: str, path: Path, where: str, report: LoadReport
) -> Dialogue:
    """Convert one ExTES record, or raise a RecordError naming the bad field."""

    def error(kind: str, detail: str, at: str = "") -> RecordError:
        return RecordError(path, where, kind, detail, at)

    if not isinstance(record, dict):
        raise error("bad record", f"expected a JSON object, got {json_type(record)}")
    content = record.get("content")
    if not isinstance(content, list):
        raise error("bad record", f"'content' must be a list of turns, got {json_type(content)}")
    if not content:
        raise error("empty dialogue", "'content' is empty; a dialogue needs at least one turn")
    turns: list[Turn] = []
    unknown: list[str] = []  # merged into the report only if the whole record is valid
    for j, item in enumerate(content):
        at = f"content[{j}]"
        if not isinstance(item, dict):
            raise error("bad record", f"a turn must be an object, got {json_type(item)}", at)
        if "User" not in item and "AI" not in item:
            raise error(
                "unknown speaker",
                f"turn has keys {sorted(item)}; expected 'User' and/or 'AI'",
                at,
            )
        if "User" in item:
            text = item["User"]
            if not isinstance(text, str):
                raise error("bad record", f"must be a string, got {json_type(text)}", at + ".User")
            turns.append(Turn(SEEKER, text.strip()))
        if "AI" in item:
            ai = item["AI"]
            label = item.get(STRATEGY_KEY)
            if isinstance(ai, dict):
                text = ai.get("Response")
                if label is None:
                    label = ai.get(STRATEGY_KEY)
                text_at = at + ".AI.Response"
            else:
                text, text_at = ai, at + ".AI"
            if not isinstance(text, str):
                raise error("bad record", f"must be a string, got {json_type(text)}", text_at)
            turns.append(Turn(SUPPORTER, text.strip(), _strategy(label, at, error, unknown)))
    scene, description = record.get("scene"), record.get("description")
    for key, value in (("scene", scene), ("description", description)):
        if value is not None and not isinstance(value, str):
            raise error("bad record", f"must be a string, got {json_type(value)}", key)
    report.unknown_strategies.update(unknown)
    return Dialogue(dialogue_id, SOURCE, tuple(turns), situation=description, problem_type=scene)


def _strategy(label: object, at: str, error: Callable, unknown: list[str]) -> str | None:
    if label is None:
        return None
    if not isinstance(label, str):
        raise error(
            "unknown strategy",
            f"strategy must be a string, got {json_type(label)}",
            f"{at}.{STRATEGY_KEY}",
        )
    label = label.strip()
    if not label:
        return None
    canonical = canonical_extes_strategy(label)
    if canonical is None:
        unknown.append(label)
        return label
    return canonical


def load_extes(
    data_dir: Path, splits: Sequence[str], report: LoadReport, skip_invalid: bool = False
) -> list[Dialogue]:
    """The given splits of ``extes/ExTES.json``."""
    path = data_dir / "extes" / "ExTES.json"
    if not path.is_file():
        raise missing_data_error(SOURCE, [path], data_dir)
    records = read_json_list(path, "ExTES dialogues")
    report.files.append(str(path))
    parts = derived_split(len(records))
    out: list[Dialogue] = []
    for split in splits:
        for index in parts[split]:
            where = f"record [{index}]"
            try:
                out.append(
                    record_to_dialogue(
                        records[index], f"{SOURCE}/{split}/{index}", path, where, report
                    )
                )
            except RecordError as e:
                if not skip_invalid:
                    raise
                report.add_skip(e)
    return out
