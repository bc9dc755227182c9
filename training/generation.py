"""Response generation for evaluation: one response per ESConv turn from a checkpoint, parsed.

A checkpoint is prompted as it was trained: by default the history window, generation budget
and prompt convention recorded in its ``lineage.json`` (``training.lineage.generation_defaults``);
options override them, and :class:`EvalSettings` says what was used and where it differs from
training. Prompts come from ``training.prompts.prompt_messages`` and outputs go through
``models.care_format.parse_care_output``, the same two functions the site's generation service
(``pairwise/services/generation.py``) uses. ``training.evaluate --checkpoint`` scores the rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training.lineage import GenerationDefaults, generation_defaults, read_lineage

#: The generation budget when the checkpoint's lineage records none (a hub model, an old run).
DEFAULT_MAX_NEW_TOKENS = 256


@dataclass(frozen=True)
class EvalSettings:
    """How a checkpoint is prompted and how long it may write, and where each value came from.

    ``window`` (None: the whole history), ``max_new_tokens`` and ``seeker_placeholder`` are
    what generation uses; ``trained`` is what the checkpoint's lineage records
    (``training.lineage.generation_defaults``); ``sources`` says, per field, "explicit" (a
    command-line option), "lineage" (the trained value) or "default" (the lineage has none).
    """

    window: int | None
    max_new_tokens: int
    seeker_placeholder: str | None
    care: bool
    trained: GenerationDefaults
    sources: dict[str, str]

    def differences(self) -> list[str]:
        """One sentence per setting that differs from what the checkpoint was trained with."""
        out = []
        if self.trained.source == "none":
            return ["no lineage.json: window, budget and prompt convention are defaults"]
        if self.window != self.trained.window:
            out.append(
                f"history window {_window_text(self.window)}, trained with "
                f"{_window_text(self.trained.window)}"
            )
        if self.trained.max_new_tokens and self.max_new_tokens != self.trained.max_new_tokens:
            out.append(
                f"max_new_tokens {self.max_new_tokens}, trained with {self.trained.max_new_tokens}"
            )
        if self.seeker_placeholder != self.trained.seeker_placeholder:
            out.append(
                f"seeker placeholder {self.seeker_placeholder!r}, trained with "
                f"{self.trained.seeker_placeholder!r}"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "max_new_tokens": self.max_new_tokens,
            "seeker_placeholder": self.seeker_placeholder,
            "care": self.care,
            "sources": dict(self.sources),
            "trained": asdict(self.trained),
            "differs_from_training": self.differences(),
        }


def _window_text(window: int | None) -> str:
    return "all turns" if window is None else f"{window} turns"


_FROM_LINEAGE = object()  # "use what the checkpoint was trained with"


def evaluation_settings(
    checkpoint: str,
    *,
    window: Any = _FROM_LINEAGE,
    max_new_tokens: int | None = None,
    seeker_placeholder: Any = _FROM_LINEAGE,
    care: bool | None = None,
) -> EvalSettings:
    """The settings to evaluate ``checkpoint`` with: what its lineage records, unless given.

    ``window``: a number of turns, or None for the whole history; left out, the trained
    window. ``max_new_tokens``: left out (None), the trained budget, else
    :data:`DEFAULT_MAX_NEW_TOKENS`. ``seeker_placeholder``: a string or None; left out, the
    trained convention. ``care``: left out (None), whether the lineage says the checkpoint
    reasons.
    """
    record = None
    if Path(checkpoint, "lineage.json").is_file():
        record = read_lineage(checkpoint)
    trained = generation_defaults(record)
    sources: dict[str, str] = {}
    fallback = "lineage" if trained.source != "none" else "default"
    if window is _FROM_LINEAGE:
        window, sources["window"] = trained.window, fallback
    else:
        sources["window"] = "explicit"
    if max_new_tokens is not None:
        sources["max_new_tokens"] = "explicit"
    elif trained.max_new_tokens:
        max_new_tokens, sources["max_new_tokens"] = trained.max_new_tokens, "lineage"
    else:
        max_new_tokens, sources["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS, "default"
    if seeker_placeholder is _FROM_LINEAGE:
        seeker_placeholder, sources["seeker_placeholder"] = trained.seeker_placeholder, fallback
    else:
        sources["seeker_placeholder"] = "explicit"
    if care is None:
        hints = (record or {}).get("backend") or {}
        care = bool(hints.get("reasoning", (record or {}).get("care", False)))
        sources["care"] = "lineage" if record else "default"
    else:
        sources["care"] = "explicit"
    return EvalSettings(window, max_new_tokens, seeker_placeholder, care, trained, sources)


def generate_responses(
    checkpoint: str,
    *,
    split: str = "test",
    n: int | None = None,
    backend: str = "hf",
    settings: EvalSettings | None = None,
    seed: int = 0,
    temperature: float = 0.0,
) -> list[dict[str, Any]]:
    """Generate one response per ESConv ``split`` turn with ``checkpoint`` and parse it.

    ``settings`` (window, budget, prompt convention, CARE or not) default to what the
    checkpoint was trained with (:func:`evaluation_settings`). Rows have the
    :func:`training.evaluate.read_responses` fields plus ``raw`` (the model's whole text) and
    ``status`` (the CARE parse status). A CARE checkpoint gets the CARE system prompt; every
    output goes through ``parse_care_output``, which returns a baseline's text unchanged with
    status ``no_reasoning``.
    """
    from models.base import GenerationRequest, SamplingParams
    from models.care_format import parse_care_output
    from models.registry import get_backend
    from training.datasets import load_dialogues, turn_examples
    from training.prompts import prompt_messages

    settings = settings or evaluation_settings(checkpoint)
    dialogues = load_dialogues("esconv", split)
    examples = list(turn_examples(dialogues, window=settings.window))
    if n is not None:
        examples = examples[:n]
    care = settings.care
    # The fake backend writes CARE chains only when asked; real models do what they learned.
    engine_settings = {"reasoning": True} if backend == "fake" and care else {}
    engine = get_backend(backend, model=checkpoint, **engine_settings)
    sampling = SamplingParams(
        temperature=temperature, top_p=1.0, max_new_tokens=settings.max_new_tokens
    )
    requests = [
        GenerationRequest(
            prompt_messages(
                ex.history,
                window=settings.window,
                care=care,
                seeker_placeholder=settings.seeker_placeholder,
            ),
            sampling,
            seed,
        )
        for ex in examples
    ]
    outputs = engine.generate(requests)
    rows = []
    for ex, out in zip(examples, outputs, strict=True):
        text = out.text
        parsed = parse_care_output(text)
        rows.append(
            {
                "context_id": f"{ex.dialogue_id}#{ex.turn_index}",
                "response": parsed.response,
                "reference": ex.target,
                "pred_strategy": parsed.strategy,
                "gold_strategy": ex.strategy,
                "status": parsed.status,
                "finish_reason": out.finish_reason,
                "raw": text,
            }
        )
    return rows
