"""Identity reveals: a reply that names a system, its checkpoint or its backbone is never shown.

After Chatbot Arena, which voids a vote when a model gives itself away: annotators judge blind,
and "As a Llama model, ..." or "I'm CARE-SFT-RL" breaks the blinding whatever the side. Such
replies are kept out of items by `eligibility.eligible_by_context` (so the intention-to-treat
statistics count them as their system's loss) and listed for researchers by
`flagged_responses`. Nothing is stored: the patterns can change, and the check runs again.

The patterns of a study (`study_patterns`):

- the names of its systems (the model checkpoints of its comparisons);
- the last path component of each checkpoint's `path` and of its `backend_config["model"]`,
  and of the models named in its lineage and its ancestors' (`lineage.json`: the
  `model_name_or_path` of the training config, the parent's path), e.g. "care-sft-rl" or
  "Llama-3.1-8B-Instruct";
- families: a Hub id ("meta-llama/Llama-3.1-8B-Instruct") gives the leading letters of its
  name ("Llama"); any name gives its leading acronym ("CARE" from "CARE-SFT-RL", "GPT" from
  "GPT-4o");
- the study's own `identity_patterns`: regular expressions, matched as written (add `(?i)`
  to ignore case), checked at study creation by `check_identity_patterns`.

How a name matches (so that a system called CARE does not flag "I care about you"):

- on word boundaries: "Llama" matches "a Llama model" and "Llama-3", not "Llamas";
- case-insensitively, except a name written all in capitals (an acronym: CARE, GPT,
  CARE-SFT-RL), which matches only as written;
- separators are interchangeable: "Llama-3.1-8B" also matches "Llama 3.1 8B";
- too common to be a name, and skipped: names under 3 characters, and a folder or model name
  that is one plain lower-case word ("final", "merged", "model").

Gold items' reference and control replies (static checkpoints of the REFERENCE and CONTROL
systems) are never filtered, and their systems' names are not patterns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pairwise.models import Checkpoint, Response, Study, System
from pairwise.services.errors import ServiceError

MIN_NAME_LENGTH = 3
_SEPARATORS = re.compile(r"[\s_.\-]+")
_PLAIN_WORD = re.compile(r"[a-z]+")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+")  # owner/name, nothing more
_LEADING_LETTERS = re.compile(r"[A-Za-z]+")
_LEADING_ACRONYM = re.compile(r"([A-Z]{3,})(?![a-z])")


@dataclass(frozen=True)
class IdentityPattern:
    """One compiled pattern; `source` is what a researcher reads (the name or the regex)."""

    source: str
    regex: re.Pattern[str]


def name_pattern(name: str) -> IdentityPattern:
    """The pattern for a name, by the rule in the module docstring.

    >>> p = name_pattern("CARE")
    >>> bool(p.regex.search("I care about you")), bool(p.regex.search("I am CARE."))
    (False, True)
    >>> bool(name_pattern("Llama").regex.search("as a llama model")), name_pattern("x").source
    (True, 'x')
    """
    tokens = [re.escape(t) for t in _SEPARATORS.split(name.strip()) if t]
    body = r"[\s_.\-]+".join(tokens)
    acronym = any(c.isalpha() for c in name) and name == name.upper()
    flags = 0 if acronym else re.IGNORECASE
    return IdentityPattern(name, re.compile(rf"(?<!\w){body}(?!\w)", flags))


def check_identity_patterns(patterns) -> list[str]:
    """The researcher's extra patterns, validated: a list of regular expressions, each of which
    compiles and none of which matches an empty text (it would flag every reply).

    Raises ValueError naming the pattern that is wrong."""
    if patterns is None:
        return []
    if not isinstance(patterns, list | tuple):
        raise ServiceError(
            "identity_patterns", f"expected a list of regular expressions, got {patterns!r:.80}"
        )
    out = []
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern.strip():
            raise ServiceError(
                f"identity_patterns[{i}]",
                f"expected a non-empty regular expression, got {pattern!r:.80}",
            )
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ServiceError(
                f"identity_patterns[{i}]", f"{pattern!r} is not a valid regular expression ({exc})"
            ) from None
        if compiled.search("") is not None:
            raise ServiceError(
                f"identity_patterns[{i}]",
                f"{pattern!r} matches an empty text, so it would flag every reply",
            )
        out.append(pattern)
    return out


def _last_component(model: str) -> str:
    return re.split(r"[\\/]", model.strip().rstrip("/\\"))[-1]


def _model_names(model: str) -> list[str]:
    """Names for a model path or Hub id: its last component, and a Hub id's family."""
    if not isinstance(model, str) or not model.strip():
        return []
    model = model.strip()
    last = _last_component(model)
    names = [] if _PLAIN_WORD.fullmatch(last) else [last]
    if _HUB_ID.fullmatch(model) and not model.startswith((".", "~")):
        family = _LEADING_LETTERS.match(last)
        if family and len(family.group(0)) >= MIN_NAME_LENGTH:
            names.append(family.group(0))
    return names


def _lineage_models(lineage: dict) -> list[str]:
    """Model paths and ids named in a lineage.json record (training/lineage.py)."""
    if not isinstance(lineage, dict):
        return []
    found = []
    parent = lineage.get("parent")
    if isinstance(parent, dict) and isinstance(parent.get("path"), str):
        found.append(parent["path"])
    config = lineage.get("config")
    sections = [config, *config.values()] if isinstance(config, dict) else []
    for section in sections:  # the scripts nest their dataclasses by class name
        if isinstance(section, dict) and isinstance(section.get("model_name_or_path"), str):
            found.append(section["model_name_or_path"])
    if isinstance(lineage.get("system"), str):
        found.append(lineage["system"])
    return found


def is_model(checkpoint: Checkpoint) -> bool:
    """A generating model's checkpoint, not a gold item's static reference or control."""
    return checkpoint.backend != "static" and checkpoint.system.kind == System.Kind.MODEL


def _model_checkpoints(study: Study) -> list[Checkpoint]:
    ids = set()
    for a, b in study.comparisons.values_list("checkpoint_a_id", "checkpoint_b_id"):
        ids.update((a, b))
    checkpoints = Checkpoint.objects.filter(pk__in=ids).select_related("system", "parent")
    return [c for c in checkpoints if is_model(c)]


def _names(checkpoints: Iterable[Checkpoint]) -> list[str]:
    names: list[str] = []
    for checkpoint in checkpoints:
        names.append(checkpoint.system.name)
        node, seen = checkpoint, set()
        while node is not None and node.pk not in seen:  # the checkpoint and its ancestors
            seen.add(node.pk)
            models = [node.path, (node.backend_config or {}).get("model")]
            for model in [*models, *_lineage_models(node.lineage or {})]:
                names.extend(_model_names(model) if isinstance(model, str) else [])
            node = node.parent
    for name in list(names):
        acronym = _LEADING_ACRONYM.match(name)
        if acronym and acronym.group(1) != name:
            names.append(acronym.group(1))
    out, seen_names = [], set()
    for name in names:
        name = name.strip()
        if len(name) >= MIN_NAME_LENGTH and name not in seen_names:
            seen_names.add(name)
            out.append(name)
    return out


def study_patterns(study: Study) -> list[IdentityPattern]:
    """Every pattern that reveals a system of `study`: names first, then the study's own."""
    patterns = [name_pattern(n) for n in _names(_model_checkpoints(study))]
    # Checked at creation; checked again because the admin can edit them later.
    for pattern in check_identity_patterns(study.identity_patterns or []):
        patterns.append(IdentityPattern(pattern, re.compile(pattern)))
    return patterns


def first_match(patterns: Iterable[IdentityPattern], text: str) -> str | None:
    """The source of the first pattern found in `text`, or None."""
    for pattern in patterns:
        if pattern.regex.search(text or ""):
            return pattern.source
    return None


def reveals(study: Study, text: str) -> str | None:
    """The pattern by which `text` reveals a system of `study`, or None when it reveals none."""
    return first_match(study_patterns(study), text)


def flagged_responses(study: Study) -> list[dict]:
    """The study's usable responses that reveal a system, for researchers to read."""
    from pairwise.services.sampling import sampling_key

    checkpoints = _model_checkpoints(study)
    patterns = study_patterns(study)
    if not patterns or not checkpoints:
        return []
    labels = {c.pk: c.label for c in checkpoints}
    rows = Response.objects.filter(
        checkpoint__in=checkpoints,
        sampling_key=sampling_key(study.sampling),
        context__studies=study,
        usable=True,
    ).order_by("checkpoint_id", "context_id")
    out = []
    for pk, checkpoint_id, context_id, text in rows.values_list(
        "pk", "checkpoint_id", "context_id", "text"
    ):
        pattern = first_match(patterns, text)
        if pattern is not None:
            out.append(
                {
                    "response_id": pk,
                    "checkpoint": labels[checkpoint_id],
                    "context_id": context_id,
                    "pattern": pattern,
                    "text": text,
                }
            )
    return out
