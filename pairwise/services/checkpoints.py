"""Registering checkpoints written by training/: immutable, with their lineage."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from django.db import IntegrityError, transaction
from django.db.models import Max

from pairwise.models import Checkpoint, System
from pairwise.services import audit
from pairwise.services.errors import ServiceError
from training.lineage import LineageError, lineage_sha256, read_lineage

log = logging.getLogger(__name__)
BACKENDS = ("vllm", "hf", "http", "fake")


class CheckpointError(ServiceError):
    """Bad input for registration; the message starts with the field that is wrong."""


def check_checkpoint_folder(path: Path) -> dict:
    """Validate a checkpoint folder and return its lineage record."""
    if not path.is_dir():
        raise CheckpointError("path", f"no checkpoint folder at {path}")
    config = path / "config.json"
    try:
        json.loads(config.read_text("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            "path", f"{config} is missing; expected a Hugging Face model folder"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError("path", f"{config} is unreadable ({exc})") from exc
    try:
        return read_lineage(path)
    except LineageError as exc:
        raise CheckpointError("path", str(exc)) from exc


def register_checkpoint(
    path: str | Path,
    *,
    system: str | None = None,
    backend: str | None = None,
    version: int | None = None,
    backend_config: dict | None = None,
    actor=None,
) -> Checkpoint:
    """Register the checkpoint folder at `path` as the next version of `system`.

    Reads lineage.json (written by the training scripts) for the system name, parent, metrics and
    whether the model writes a reasoning chain. The same folder cannot be registered twice.
    `actor`: the user who registered it, for the audit log.
    """
    folder = Path(path).resolve()
    lineage = check_checkpoint_folder(folder)
    system_name = system or lineage.get("system")
    if not system_name:
        raise CheckpointError("system", "not given, and lineage.json names none")
    backend = backend or (lineage.get("backend") or {}).get("backend") or "vllm"  # a hint
    if backend not in BACKENDS:
        raise CheckpointError("backend", f"{backend!r} is not one of {list(BACKENDS)}")
    digest = lineage_sha256(folder)
    duplicate = Checkpoint.objects.filter(path=str(folder)).select_related("system").first()
    if duplicate is not None and duplicate.lineage.get("sha256") == digest:
        raise CheckpointError("path", f"{folder} is already registered as {duplicate.label}")
    parent = None
    parent_path = (lineage.get("parent") or {}).get("path")
    if parent_path:
        parent = Checkpoint.objects.filter(path=str(Path(parent_path).resolve())).first()
    hints = lineage.get("backend") or {}
    config = lineage.get("config") or {}
    # the training scripts nest their dataclasses by name: DataArguments (SFT), GRPOArguments
    data_args = next(
        (v for k, v in config.items() if k.endswith("Arguments") and isinstance(v, dict)), config
    )
    reasoning = bool(hints.get("reasoning", lineage.get("care", data_args.get("care", False))))
    # prompt the model with as many turns as it was trained on (the context shown to annotators
    # keeps its whole history window)
    backend_config = dict(backend_config or {})
    if data_args.get("window"):
        backend_config.setdefault("prompt_window", int(data_args["window"]))
    with transaction.atomic():
        sys_row, _ = System.objects.get_or_create(name=system_name)
        if version is None:
            version = (sys_row.checkpoints.aggregate(v=Max("version"))["v"] or 0) + 1
        elif sys_row.checkpoints.filter(version=version).exists():
            raise CheckpointError("version", f"{system_name} v{version} exists already")
        try:
            checkpoint = Checkpoint.objects.create(
                system=sys_row,
                version=version,
                path=str(folder),
                backend=backend,
                backend_config=backend_config,
                parent=parent,
                reasoning=reasoning,
                lineage={**lineage, "sha256": digest},
                metrics=lineage.get("metrics") or {},
            )
        except IntegrityError as exc:
            raise CheckpointError("version", f"{system_name} v{version} exists already") from exc
    log.info("registered %s from %s", checkpoint.label, folder)
    audit.record("register", checkpoint, actor, path=str(folder), sha256=digest)
    return checkpoint


def check_checkpoint_ref(ref) -> str:
    """A checkpoint reference as a person typed it, stripped. ValueError for a NUL character:
    PostgreSQL refuses to compare one with text (a 500 instead of "no such checkpoint")."""
    ref = str(ref).strip()
    if "\x00" in ref:
        raise ValueError("contains a NUL character; expected an id, 'System vN' or 'System'")
    return ref


def checkpoint_lookup(ref) -> dict | None:
    """Filter arguments for a checkpoint reference: an id, or 'System vN'; None for a bare
    system name (the caller decides: its latest, or all its checkpoints). A number that no
    bigint holds looks up nothing, without reaching the database. ValueError: see
    `check_checkpoint_ref`."""
    ref = check_checkpoint_ref(ref)
    if ref.isascii() and ref.isdigit():  # not "²": str.isdigit takes it, int() does not
        return {"pk": int(ref)} if int(ref) < 2**63 else {"pk__in": []}
    system, sep, version = ref.rpartition(" v")
    if sep and version.isascii() and version.isdigit():
        return (
            {"system__name": system, "version": int(version)}
            if len(version) < 10
            else {"pk__in": []}
        )
    return None


def resolve_checkpoint(ref) -> Checkpoint:
    """A checkpoint id, 'System', 'System vN', or 'System@latest'."""
    name = str(ref).strip().removesuffix("@latest")
    lookup = checkpoint_lookup(name)
    if lookup is not None:
        found = Checkpoint.objects.filter(**lookup).first()
        if found is None:
            what = f"with id {name}" if name.isdigit() else repr(name)
            raise ValueError(f"no checkpoint {what}")
        return found
    from pairwise.services.studies import StudyError, latest_checkpoint

    try:
        return latest_checkpoint(name)
    except StudyError as exc:
        raise ValueError(exc.message) from None
