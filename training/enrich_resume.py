"""The bookkeeping around ``training.enrich``'s output file: resume, dropped examples, stats.

On start, :func:`scan_output` keeps every valid record of ``out`` (its id is then skipped) and
moves every line that is not a record to ``<out>.corrupt``; :func:`check_resume` stops a resume
whose template, teacher or seed differ from the records already there. ``<out>.dropped.jsonl``
lists the examples earlier runs dropped (:func:`read_dropped`), and :func:`accumulate_stats` adds
each run to ``<out>.stats.json``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.enrich import EnrichConfig

# The records of a run are logged under the command's name, as before the split.
logger = logging.getLogger("training.enrich")


def example_id(example: Any) -> str:
    """The stable id of a turn example: ``<dialogue_id>#<turn_index>``."""
    return f"{example.dialogue_id}#{example.turn_index}"


class ResumeError(ValueError):
    """Resuming ``out`` would mix records made differently (template, teacher or seed)."""


def _record_error(record: Any) -> str | None:
    """Why a parsed line is not an enrichment record, or None when it is one."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    for key, kind in (("id", str), ("target", str), ("history", list), ("provenance", dict)):
        if not isinstance(record.get(key), kind):
            return f"field {key!r} missing or not a {kind.__name__}"
    return None


@dataclass
class OutputScan:
    """What a resume finds in ``out``: the ids written, how they were made, and bad lines."""

    done: set[str] = field(default_factory=set)
    made_with: Counter = field(default_factory=Counter)  # (teacher, template, seed) -> records
    corrupt: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


def scan_output(out: Path) -> OutputScan:
    """Read ``out`` for a resume; keep every valid record, move every other line aside.

    A line that is not a record (cut short by a crash, invalid JSON, a wrong shape), wherever
    it is, goes to ``<out>.corrupt`` with its line number and reason, and ``out`` is rewritten
    (atomically) without it: the valid lines after it are kept, and appending starts on a
    fresh line.
    """
    scan = OutputScan()
    if not out.exists():
        return scan
    good: list[bytes] = []
    bad: list[dict[str, Any]] = []
    with out.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                reason = _record_error(record)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                reason = f"not JSON ({exc.__class__.__name__}: {exc})"
                if not raw.endswith(b"\n"):
                    reason = "cut short (no end of line: a crash mid-write?)"
            if reason is not None:
                scan.corrupt.append((lineno, reason))
                text = raw.decode("utf-8", "replace").rstrip("\n")
                bad.append({"line": lineno, "reason": reason, "text": text})
                continue
            scan.done.add(record["id"])
            prov = record["provenance"]
            scan.made_with[(prov.get("teacher"), prov.get("template"), prov.get("seed"))] += 1
            good.append(raw if raw.endswith(b"\n") else raw + b"\n")
    if bad or (good and b"".join(good) != out.read_bytes()):
        if bad:
            with open(f"{out}.corrupt", "a", encoding="utf-8") as fh:
                for entry in bad:
                    fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            logger.warning(
                "%s: %d line(s) are not records, moved to %s.corrupt: %s",
                out,
                len(bad),
                out,
                "; ".join(f"line {n}: {why}" for n, why in scan.corrupt[:5]),
            )
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(b"".join(good))
        tmp.replace(out)
    return scan


def check_resume(cfg: EnrichConfig, out: Path, scan: OutputScan) -> None:
    """Stop (``ResumeError``) when ``out`` holds records made with another template, teacher or
    seed than ``cfg``'s, unless ``cfg.force``."""
    want = cfg.provenance()
    mine = (want["teacher"], want["template"], want["seed"])
    others = {k: n for k, n in scan.made_with.items() if k != mine}
    if not others or cfg.force:
        if others:
            logger.warning("%s: --force: adding %s records to %s", out, mine, dict(others))
        return
    found = "; ".join(
        f"{n} record(s) with teacher={t!r}, template={tp!r}, seed={sd!r}"
        for (t, tp, sd), n in sorted(others.items(), key=str)
    )
    raise ResumeError(
        f"{out}: this run would write teacher={mine[0]!r}, template={mine[1]!r}, "
        f"seed={mine[2]!r}, but the file holds {found}. Write to another --out, or pass "
        "--force true to mix them."
    )


def read_dropped(out: Path) -> dict[str, dict[str, Any]]:
    """The examples earlier runs dropped (``<out>.dropped.jsonl``), by id; bad lines skipped."""
    path = Path(f"{out}.dropped.jsonl")
    dropped: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return dropped
    for lineno, line in enumerate(path.read_text("utf-8", errors="replace").splitlines(), 1):
        try:
            entry = json.loads(line)
            dropped[entry["id"]] = entry
        except (json.JSONDecodeError, KeyError, TypeError):
            if line.strip():
                logger.warning("%s:%d: not a dropped-example line, skipped", path, lineno)
    return dropped


def _read_stats(path: Path) -> dict[str, Any]:
    """The stats of earlier runs; a file from before ``runs`` existed counts as one run."""
    if not path.exists():
        return {"runs": []}
    try:
        stats = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("%s: unreadable (%s); counting from this run on", path, exc)
        return {"runs": []}
    if not isinstance(stats, dict):
        return {"runs": []}
    if "runs" not in stats:  # one run, written before the stats accumulated
        stats = {"runs": [{k: v for k, v in stats.items() if k not in ("out", "mode")}]}
    return stats


RUN_COUNTS = ("generated", "retried", "dropped", "corrupt_lines")


def accumulate_stats(path: Path, run: dict[str, Any], records: int, dropped_ids: int) -> dict:
    """Add this run to ``<out>.stats.json`` and return the whole file's content."""
    stats = _read_stats(path)
    runs = [*stats.get("runs", []), run]
    totals: dict[str, Any] = {k: sum(int(r.get(k) or 0) for r in runs) for k in RUN_COUNTS}
    rejections: Counter[str] = Counter()
    for r in runs:
        rejections.update(r.get("rejections") or {})
    merged = {
        "out": run["out"],
        "mode": run["mode"],
        **totals,
        "rejections": dict(rejections),
        "records": records,
        "dropped_pending": dropped_ids,
        "runs": runs,
    }
    path.write_text(json.dumps(merged, indent=2, default=str) + "\n", "utf-8")
    return merged
