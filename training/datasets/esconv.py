"""ESConv (Liu et al., ACL 2021): the published splits, the original ESConv.json, FailedESConv.

Three files can hold ESConv conversations:

* ``esconv/{train,valid,test}.jsonl`` (the default): one conversation a line, ``dialog`` items
  ``{"text", "speaker": "usr"|"sys", "strategy"}``. Dialogue ids are ``esconv/<split>/<line>``
  (0-based line index).
* ``esconv/ESConv.json``, the single upstream file in the raw schema (``content``,
  ``annotation.strategy``, speakers ``seeker``/``supporter``). Used for a split whose ``.jsonl``
  file is absent, split the official way (``splits.esconv_official_split``) and with whitespace
  collapsed as the official script does, so it yields the same ids, texts and order as the
  ``.jsonl`` files.
* ``esconv/FailedESConv.json``: 196 conversations rejected during collection, source
  ``esconv-failed``, raw schema with speakers ``speaker``/``listener`` and older strategy names.
  It has no published split, so it gets our 90/5/5 one; ids are
  ``esconv-failed/<split>/<index in the JSON list>``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from training.datasets.errors import LoadReport, RecordError, missing_data_error
from training.datasets.reading import json_type, read_json_list, read_lines
from training.datasets.splits import derived_split, esconv_official_split
from training.datasets.strategies import ESCONV_STRATEGIES, normalize_strategy
from training.datasets.types import SEEKER, SUPPORTER, Dialogue, Turn

SOURCE = "esconv"
FAILED_SOURCE = "esconv-failed"

_SPLIT_SPEAKERS = {"usr": SEEKER, "sys": SUPPORTER}
# ESConv.json says seeker/supporter, FailedESConv.json says speaker/listener.
_RAW_SPEAKERS = {"seeker": SEEKER, "supporter": SUPPORTER, "speaker": SEEKER, "listener": SUPPORTER}
_METADATA = ("situation", "emotion_type", "problem_type", "experience_type")

# Raw label -> canonical label. Filled lazily, so the hot loop is one dict lookup per turn.
_strategy_cache: dict[str, str] = {name: name for name in ESCONV_STRATEGIES}


def _canonical(label: str) -> str:
    try:
        return _strategy_cache[label]
    except KeyError:
        canonical = _strategy_cache[label] = normalize_strategy(label)
        return canonical


def _survey(record: dict) -> dict:
    """Seeker survey scores as ints ("3" -> 3); absent scores are simply left out."""
    score = record.get("survey_score")
    seeker = score.get("seeker") if score else None
    return {key: int(value) for key, value in seeker.items()} if seeker else {}


def _metadata(record: dict) -> tuple:
    values = tuple(record.get(key) for key in _METADATA)
    for value in values:
        if value is not None and value.__class__ is not str:
            raise TypeError("metadata must be a string")
    return values


def split_record_to_dialogue(record: dict, dialogue_id: str, source: str = SOURCE) -> Dialogue:
    """Convert one record of a ``.jsonl`` split file. Raises on bad input; callers diagnose."""
    turns = []
    append = turns.append
    for item in record["dialog"]:
        text = item["text"]
        if text.__class__ is not str:
            raise TypeError("text must be a string")
        if _SPLIT_SPEAKERS[item["speaker"]] is SUPPORTER:
            label = item.get("strategy")
            append(Turn(SUPPORTER, text, None if label is None else _canonical(label)))
        else:
            append(Turn(SEEKER, text))
    if not turns:
        raise ValueError("empty dialogue")
    situation, emotion, problem, experience = _metadata(record)
    return Dialogue(
        dialogue_id, source, tuple(turns), situation, emotion, problem, experience, _survey(record)
    )


def raw_record_to_dialogue(record: dict, dialogue_id: str, source: str) -> Dialogue:
    """Convert one record in the raw upstream schema, collapsing whitespace like the official
    reformatting script (``" ".join(text.split())``)."""
    turns = []
    append = turns.append
    for item in record["dialog"]:
        text = " ".join(item["content"].split())
        if _RAW_SPEAKERS[item["speaker"]] is SUPPORTER:
            annotation = item.get("annotation")
            label = annotation.get("strategy") if annotation is not None else None
            append(Turn(SUPPORTER, text, None if label is None else _canonical(label)))
        else:
            append(Turn(SEEKER, text))
    if not turns:
        raise ValueError("empty dialogue")
    situation, emotion, problem, experience = _metadata(record)
    return Dialogue(
        dialogue_id, source, tuple(turns), situation, emotion, problem, experience, _survey(record)
    )


def diagnose(record: object, file: Path, where: str, *, raw: bool) -> RecordError:
    """Walk a record that failed conversion and name exactly what is wrong with it."""

    def error(kind: str, detail: str, path: str = "") -> RecordError:
        return RecordError(file, where, kind, detail, path)

    text_key = "content" if raw else "text"
    speakers = _RAW_SPEAKERS if raw else _SPLIT_SPEAKERS
    if not isinstance(record, dict):
        return error("bad record", f"expected a JSON object, got a JSON {json_type(record)}")
    dialog = record.get("dialog")
    if not isinstance(dialog, list):
        return error("bad record", f"'dialog' must be a list of turns, got {json_type(dialog)}")
    if not dialog:
        return error("empty dialogue", "'dialog' is empty; a dialogue needs at least one turn")
    for j, item in enumerate(dialog):
        path = f"dialog[{j}]"
        if not isinstance(item, dict):
            return error("bad record", f"a turn must be an object, got {json_type(item)}", path)
        speaker = item.get("speaker")
        if not isinstance(speaker, str) or speaker not in speakers:
            expected = " or ".join(repr(s) for s in speakers)
            return error(
                "unknown speaker", f"unknown speaker {speaker!r}; expected {expected}", path
            )
        text = item.get(text_key)
        if not isinstance(text, str):
            return error(
                "bad record", f"'{text_key}' must be a string, got {json_type(text)}", path
            )
        if speakers[speaker] is SUPPORTER:
            if raw:
                annotation = item.get("annotation")
                if annotation is not None and not isinstance(annotation, dict):
                    return error("bad record", "'annotation' must be an object", path)
                label = annotation.get("strategy") if annotation else None
                label_path = path + ".annotation.strategy"
            else:
                label, label_path = item.get("strategy"), path + ".strategy"
            if label is not None:
                try:
                    normalize_strategy(label)
                except ValueError as e:
                    return error("unknown strategy", str(e), label_path)
    for key in _METADATA:
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            return error("bad record", f"must be a string, got {json_type(value)}", key)
    score = record.get("survey_score")
    if score is not None and not isinstance(score, dict):
        return error("bad record", f"must be an object, got {json_type(score)}", "survey_score")
    seeker = (score or {}).get("seeker")
    if seeker is not None and not isinstance(seeker, dict):
        return error(
            "bad record", f"must be an object, got {json_type(seeker)}", "survey_score.seeker"
        )
    for key, value in (seeker or {}).items():
        if not (isinstance(value, int | str) and str(value).strip().isdigit()):
            return error(
                "bad record",
                f"must be an integer score, got {value!r}",
                f"survey_score.seeker.{key}",
            )
    return error("bad record", "the record does not follow the ESConv schema")


def _convert(
    record: object, dialogue_id: str, source: str, file: Path, where: str, raw: bool
) -> Dialogue:
    try:
        if raw:
            return raw_record_to_dialogue(record, dialogue_id, source)  # type: ignore[arg-type]
        return split_record_to_dialogue(record, dialogue_id, source)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise diagnose(record, file, where, raw=raw) from None


def load_split_file(
    path: Path, split: str, report: LoadReport, skip_invalid: bool = False
) -> list[Dialogue]:
    """Load one ``<split>.jsonl`` file; blank lines are ignored but keep their index."""
    report.files.append(str(path))
    out: list[Dialogue] = []
    prefix = f"{SOURCE}/{split}/"
    loads = json.loads
    for index, line in enumerate(read_lines(path)):
        if not line or line.isspace():
            continue
        try:
            try:
                record = loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(
                    path,
                    f"line {index + 1}",
                    "invalid JSON",
                    f"invalid JSON ({e.msg}, column {e.colno}); expected one JSON object a line",
                ) from None
            out.append(
                _convert(record, prefix + str(index), SOURCE, path, f"line {index + 1}", False)
            )
        except RecordError as e:
            if not skip_invalid:
                raise
            report.add_skip(e)
    return out


def load_json_list(
    records: list,
    indices: Sequence[int],
    ids: Sequence[str],
    path: Path,
    source: str,
    report: LoadReport,
    skip_invalid: bool = False,
) -> list[Dialogue]:
    """Convert the raw-schema records at ``indices`` of a parsed JSON list, with given ids."""
    out: list[Dialogue] = []
    for index, dialogue_id in zip(indices, ids, strict=True):
        try:
            out.append(
                _convert(records[index], dialogue_id, source, path, f"record [{index}]", True)
            )
        except RecordError as e:
            if not skip_invalid:
                raise
            report.add_skip(e)
    return out


def load_official_split(
    path: Path, splits: Sequence[str], report: LoadReport, skip_invalid: bool = False
) -> list[Dialogue]:
    """Read an original ``ESConv.json`` and return the given splits of the official split.

    Ids are ``esconv/<split>/<position in the split>``, the line the conversation has in the
    published ``<split>.jsonl`` file.
    """
    records = read_json_list(path, "ESConv conversations")
    report.files.append(str(path))
    parts = esconv_official_split(len(records))
    out: list[Dialogue] = []
    for split in splits:
        indices = parts[split]
        ids = [f"{SOURCE}/{split}/{k}" for k in range(len(indices))]
        out += load_json_list(records, indices, ids, path, SOURCE, report, skip_invalid)
    return out


def load_esconv(
    data_dir: Path, splits: Sequence[str], report: LoadReport, skip_invalid: bool = False
) -> list[Dialogue]:
    """ESConv's splits, each from its ``.jsonl`` file, else from ``ESConv.json``."""
    folder = data_dir / "esconv"
    raw_path = folder / "ESConv.json"
    jsonl = {split: folder / f"{split}.jsonl" for split in splits}
    from_raw = [split for split in splits if not jsonl[split].is_file()]
    if from_raw and not raw_path.is_file():
        raise missing_data_error(SOURCE, [jsonl[from_raw[0]], raw_path], data_dir)
    raw = load_official_split(raw_path, from_raw, report, skip_invalid) if from_raw else []
    out: list[Dialogue] = []
    for split in splits:
        if split in from_raw:
            out += [d for d in raw if d.id.startswith(f"{SOURCE}/{split}/")]
        else:
            out += load_split_file(jsonl[split], split, report, skip_invalid)
    return out


def load_failed(
    data_dir: Path, splits: Sequence[str], report: LoadReport, skip_invalid: bool = False
) -> list[Dialogue]:
    """FailedESConv.json, split 90/5/5 (seed 13); ids use the index in the JSON list."""
    path = data_dir / "esconv" / "FailedESConv.json"
    if not path.is_file():
        raise missing_data_error(FAILED_SOURCE, [path], data_dir)
    records = read_json_list(path, "ESConv conversations")
    report.files.append(str(path))
    parts = derived_split(len(records))
    out: list[Dialogue] = []
    for split in splits:
        ids = [f"{FAILED_SOURCE}/{split}/{i}" for i in parts[split]]
        out += load_json_list(records, parts[split], ids, path, FAILED_SOURCE, report, skip_invalid)
    return out
