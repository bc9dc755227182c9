"""``lineage.json``: where a checkpoint came from, so every result can be traced back.

Every checkpoint folder written by ``training.sft`` or ``training.grpo`` (CARE and the baselines)
carries a ``lineage.json`` with these keys:

``system``        the system name shown in results, e.g. "CARE-SFT", "CARE-SFT-RL", "ESConv"
``config``        the resolved config (script arguments and trainer arguments)
``data``          ``{"files": {path: sha256}, "examples_sha256": sha256}``: the dataset file(s)
                  and the serialised training examples actually used
``parent``        ``{"path": ..., "lineage_sha256": ... | None}`` or ``None`` for a base model
``git_commit``    ``git rev-parse HEAD`` of this repository, or "unknown"
``metrics``       training metrics: final loss, and for GRPO the mean reward per component
``created_at``    UTC time, ISO 8601
``backend``       generation hints for the site, e.g. ``{"backend": "vllm"}``
``generation``    how the checkpoint was prompted and how long its completions could be:
                  ``{"window": 8, "max_new_tokens": 1024, "budget_from": ...,
                  "seeker_placeholder": None}``. Evaluation (``training.evaluate``, the site's
                  generation and ``score_study``) uses these by default; see
                  :func:`generation_defaults`
``schema``        the version of this layout (1)

:func:`lineage_sha256` is the sha256 of a ``lineage.json`` file's bytes; a child records its
parent's, so an edited or swapped parent is detectable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LINEAGE_FILE = "lineage.json"
SCHEMA_VERSION = 1
REQUIRED_KEYS = ("system", "config", "data", "parent", "git_commit", "metrics", "created_at")
_REPO_ROOT = Path(__file__).resolve().parent.parent


class LineageError(ValueError):
    """A ``lineage.json`` is missing, unreadable, or lacks a required key."""


def sha256_file(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_examples(examples: Iterable[Any]) -> str:
    """The sha256 of examples serialised as canonical JSON lines (sorted keys), in order.

    >>> sha256_examples([{"b": 1, "a": 2}]) == sha256_examples([{"a": 2, "b": 1}])
    True
    """
    digest = hashlib.sha256()
    for example in examples:
        line = json.dumps(example, sort_keys=True, ensure_ascii=False, default=str)
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def git_commit(repo: str | Path = _REPO_ROOT) -> str:
    """``git rev-parse HEAD`` in ``repo``; "unknown" outside a repository or before a commit."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else "unknown"


def _lineage_path(path: str | Path) -> Path:
    path = Path(path)
    return path / LINEAGE_FILE if path.is_dir() or path.suffix != ".json" else path


def lineage_sha256(path: str | Path) -> str | None:
    """The sha256 of a checkpoint's ``lineage.json`` (folder or file path), or None if absent."""
    file = _lineage_path(path)
    return sha256_file(file) if file.is_file() else None


def parent_info(model_path: str | Path | None) -> dict[str, Any] | None:
    """The ``parent`` entry for a checkpoint trained from ``model_path`` (None for no parent).

    A local folder is recorded by absolute path with its lineage hash (None for a base model
    without one); a hub name is recorded as given.
    """
    if model_path is None:
        return None
    local = Path(model_path)
    if local.exists():
        return {"path": str(local.resolve()), "lineage_sha256": lineage_sha256(local)}
    return {"path": str(model_path), "lineage_sha256": None}


@dataclass(frozen=True)
class GenerationDefaults:
    """How a checkpoint was trained to be prompted, for evaluating it the same way.

    ``window``: history turns per prompt (None: the whole history, or not known).
    ``max_new_tokens``: the completion budget it trained with (GRPO's ``max_completion_length``,
    SFT's longest target in tokens), None when not known. ``seeker_placeholder``: the synthetic
    seeker turn after a supporter turn (``training.prompts.to_messages``), None for the ESConv
    convention. ``source``: "lineage" (the ``generation`` key), "legacy" (a lineage written
    before that key: window and budget read from its config; every checkpoint of that time was
    trained with the "..." placeholder) or "none" (no lineage at all).
    """

    window: int | None = None
    max_new_tokens: int | None = None
    seeker_placeholder: str | None = None
    source: str = "none"


def _data_arguments(record: dict[str, Any]) -> dict[str, Any]:
    config = record.get("config") or {}
    return next(
        (v for k, v in config.items() if k.endswith("Arguments") and isinstance(v, dict)), {}
    )


def generation_defaults(record: dict[str, Any] | None) -> GenerationDefaults:
    """The :class:`GenerationDefaults` recorded in a lineage record (``read_lineage``'s dict).

    >>> generation_defaults({"generation": {"window": 8, "max_new_tokens": 1024}})
    GenerationDefaults(window=8, max_new_tokens=1024, seeker_placeholder=None, source='lineage')
    >>> generation_defaults({"config": {"GRPOArguments": {"window": 2},
    ...                                 "GRPOConfig": {"max_completion_length": 160}}})
    GenerationDefaults(window=2, max_new_tokens=160, seeker_placeholder='...', source='legacy')
    >>> generation_defaults(None).source
    'none'
    """
    if not record:
        return GenerationDefaults()
    gen = record.get("generation")
    if isinstance(gen, dict):
        return GenerationDefaults(
            window=_positive_or_none(gen.get("window")),
            max_new_tokens=_positive_or_none(gen.get("max_new_tokens")),
            seeker_placeholder=gen.get("seeker_placeholder"),
            source="lineage",
        )
    from training.prompts import LEGACY_SEEKER_PLACEHOLDER

    grpo = (record.get("config") or {}).get("GRPOConfig") or {}
    return GenerationDefaults(
        window=_positive_or_none(_data_arguments(record).get("window")),
        max_new_tokens=_positive_or_none(grpo.get("max_completion_length")),
        seeker_placeholder=LEGACY_SEEKER_PLACEHOLDER,
        source="legacy",
    )


def _positive_or_none(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def checkpoint_generation_defaults(path: str | Path) -> GenerationDefaults:
    """:func:`generation_defaults` of a checkpoint folder (or a hub name): ``source="none"``
    when it has no ``lineage.json``; a lineage that is there but unreadable raises
    :class:`LineageError`."""
    if not _lineage_path(path).is_file():
        return GenerationDefaults()
    return generation_defaults(read_lineage(path))


def write_lineage(out_dir: str | Path, **fields: Any) -> Path:
    """Write ``out_dir/lineage.json`` from ``fields`` and return its path.

    ``system`` is required. ``git_commit``, ``created_at`` and ``schema`` are filled in when not
    given; ``config``, ``data``, ``metrics`` default to empty and ``parent`` to None. Values that
    JSON cannot encode are written with ``str``.
    """
    if not fields.get("system"):
        raise LineageError(f"write_lineage({out_dir}): field 'system' is required")
    record: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "config": {},
        "data": {},
        "parent": None,
        "metrics": {},
        "backend": {"backend": "vllm"},
        **fields,
    }
    record.setdefault("git_commit", git_commit())
    record.setdefault("created_at", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LINEAGE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n", "utf-8")
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path


def read_lineage(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint's lineage (its folder, or the ``lineage.json`` path itself).

    Raises :class:`LineageError` naming the file when it is missing, is not a JSON object, or
    lacks a required key.
    """
    file = _lineage_path(path)
    if not file.is_file():
        raise LineageError(f"{file}: no lineage.json; was this checkpoint written by training/?")
    try:
        record = json.loads(file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LineageError(f"{file}: unreadable lineage.json ({exc})") from exc
    if not isinstance(record, dict):
        raise LineageError(f"{file}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise LineageError(f"{file}: missing required key(s) {missing}")
    return record


def lineage_chain(path: str | Path) -> list[dict[str, Any]]:
    """The lineage of a checkpoint followed by its ancestors' (as far as they have one)."""
    chain = [read_lineage(path)]
    seen = {str(_lineage_path(path).resolve())}
    while (parent := chain[-1].get("parent")) and parent.get("lineage_sha256"):
        file = _lineage_path(parent["path"])
        if str(file.resolve()) in seen or not file.is_file():
            break
        seen.add(str(file.resolve()))
        chain.append(read_lineage(file))
    return chain


def register_with_site(path: str | Path, *, system: str | None = None) -> str:
    """Register a finished checkpoint with the evaluation site (training's opt-in `register`).

    Runs `manage.py register_checkpoint` in a subprocess, so training never imports Django; the
    site reads the same lineage.json. Raises LineageError with the command's message on failure.
    """
    import sys

    cmd = [sys.executable, str(_REPO_ROOT / "manage.py"), "register_checkpoint", str(path)]
    if system:
        cmd += ["--system", system]
    out = subprocess.run(cmd, cwd=_REPO_ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        message = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise LineageError(f"registering {path} with the site failed: {message}")
    print(out.stdout.strip())
    return out.stdout.strip()
