"""Reading data files, turning OS, encoding and JSON failures into clear DatasetErrors."""

from __future__ import annotations

import json
from pathlib import Path

from training.datasets.errors import DatasetError


def read_text(path: Path) -> str:
    """The file's text (UTF-8, BOM tolerated); unreadable or undecodable -> DatasetError."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DatasetError(
            f"{path}, line {line}: not valid UTF-8 (byte offset {e.start}); "
            "the data files are expected in UTF-8"
        ) from None


def read_lines(path: Path) -> list[str]:
    """The file's lines without line endings; a final newline adds no empty line."""
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_json_list(path: Path, what: str) -> list:
    """Parse a file that holds one JSON list; bad JSON names the line and column."""
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetError(
            f"{path}, line {e.lineno}, column {e.colno}: invalid JSON ({e.msg}); "
            f"expected one JSON list of {what}"
        ) from None
    if not isinstance(data, list):
        raise DatasetError(
            f"{path}: expected one JSON list of {what}, got a JSON {json_type(data)}"
        )
    return data


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )
