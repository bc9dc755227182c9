"""Teacher CARE chains: the prompt template, the endpoint check and the chain validation.

``training.enrich`` in ``mode: teacher`` sends :func:`teacher_prompt` (the versioned template
``training/templates/<name>.txt`` filled for one example) to a teacher model behind a
``models`` backend, and keeps an answer only when :func:`check_teacher_chain` accepts it.
:func:`check_teacher_endpoint` refuses, before any request, a model name the endpoint cannot know.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from models.care_format import NODES, canonical_strategy, parse_care_output

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

#: Model names the DeepSeek API accepts; it does not know hub ids such as deepseek-ai/DeepSeek-R1.
DEEPSEEK_API_MODELS = ("deepseek-reasoner", "deepseek-chat")


def check_teacher_endpoint(model: str, base_url: str | None) -> None:
    """Refuse a model name the endpoint cannot know: a hub id sent to the DeepSeek API.

    >>> check_teacher_endpoint("deepseek-reasoner", "https://api.deepseek.com/v1")
    >>> check_teacher_endpoint("deepseek-ai/DeepSeek-R1", "http://localhost:8000/v1")
    >>> check_teacher_endpoint("deepseek-ai/DeepSeek-R1", "https://api.deepseek.com/v1")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: teacher_model='deepseek-ai/DeepSeek-R1' is not a DeepSeek API model name ...
    """
    host = urlsplit(base_url or "").hostname or ""
    if (host == "deepseek.com" or host.endswith(".deepseek.com")) and model not in (
        DEEPSEEK_API_MODELS
    ):
        raise ValueError(
            f"teacher_model={model!r} is not a DeepSeek API model name (base_url {base_url}); "
            f"expected one of {', '.join(DEEPSEEK_API_MODELS)} (R1 is 'deepseek-reasoner'). "
            "Hub ids such as deepseek-ai/DeepSeek-R1 are for a local vLLM server."
        )


def load_template(name: str) -> tuple[string.Template, str]:
    """The teacher prompt ``training/templates/<name>.txt`` and its version (the file name)."""
    path = TEMPLATE_DIR / f"{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"template {name!r}: {path} does not exist")
    return string.Template(path.read_text("utf-8")), name


def _history_text(history: Sequence[Any]) -> str:
    lines = [f"{'Seeker' if t.speaker == 'seeker' else 'Supporter'}: {t.text}" for t in history]
    return "\n".join(lines) or "(the supporter speaks first)"


def teacher_prompt(template: string.Template, example: Any) -> str:
    """Fill the teacher template for one example (``$name`` placeholders)."""
    return template.safe_substitute(
        strategy=canonical_strategy(example.strategy) or example.strategy,
        problem_type=example.problem_type or "unknown",
        emotion_type=example.emotion_type or "unknown",
        situation=example.situation or "unknown",
        history=_history_text(example.history),
        response=example.target,
    )


_R1_THINK_END = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)


def check_teacher_chain(text: str, gold_strategy: str) -> tuple[dict[str, str] | None, str]:
    """Validate a teacher's chain: (nodes, "ok") or (None, reason).

    A reasoning model's own ``<think>...</think>`` (DeepSeek-R1) is dropped first: the chain is
    what follows it. The chain must hold the four nodes once each, in order, with the plan's
    strategy equal to the gold one after normalisation.
    """
    chain = _R1_THINK_END.split(text or "")[-1].strip()
    parsed = parse_care_output(f"<think>{chain}</think>\n.")
    if parsed.status != "complete":
        return None, parsed.status
    want = canonical_strategy(gold_strategy)
    if parsed.strategy is None or want is None or parsed.strategy.casefold() != want.casefold():
        return None, "wrong_strategy"
    return {n: parsed.nodes[n] for n in NODES}, "ok"
