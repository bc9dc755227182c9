"""A study's sampling config, as the backends' SamplingParams and its stable key.

`max_new_tokens` is the reply's budget, the same for every system of a study. A checkpoint that
writes a reasoning chain (`Checkpoint.reasoning`) gets `reasoning_tokens` more on top, so that
the chain does not eat the reply's tokens and get cut off. A study that does not set
`reasoning_tokens` gives it the completion budget the checkpoint was trained with (its
lineage's `generation.max_new_tokens`: GRPO's `max_completion_length`, or SFT's longest
target), so chain and reply are never cut shorter than training allowed; a checkpoint whose
lineage records none gets DEFAULT_REASONING_TOKENS. A config without `reasoning_tokens` keeps
the key it had before the field existed, so responses stored under it still count.
"""

from __future__ import annotations

from dataclasses import replace

from models.base import SamplingParams
from pairwise.services.errors import ServiceError

# Room for a CARE chain (four short nodes, each a sentence or two) at 7B scale, with margin; the
# tiny demo model's chains are shorter (docs/training.md: chain + reply p90 ~145 tokens).
DEFAULT_REASONING_TOKENS = 256
FIELDS = ("temperature", "top_p", "max_new_tokens", "reasoning_tokens")


def sampling_params(sampling: dict | None) -> SamplingParams:
    """The study's stored sampling dict as SamplingParams; unknown fields are an error."""
    try:
        return SamplingParams(**(sampling or {}))
    except TypeError as exc:
        raise ServiceError("sampling", f"{exc}; allowed fields are {', '.join(FIELDS)}") from exc
    except ValueError as exc:  # a value out of range ("SamplingParams.top_p=2.0: expected ...")
        raise ServiceError("sampling", str(exc)) from exc


def sampling_key(sampling: dict | None) -> str:
    return sampling_params(sampling).key()


def reasoning_budget_source(
    params: SamplingParams, *, reasoning: bool, trained_budget: int | None = None
) -> str:
    """Where a checkpoint's reasoning budget comes from: "none" (it does not reason), "study"
    (the study sets `reasoning_tokens`), "checkpoint" (its trained budget) or "default"."""
    if not reasoning:
        return "none"
    if params.reasoning_tokens:
        return "study"
    return "checkpoint" if trained_budget else "default"


def reasoning_budget(
    params: SamplingParams, *, reasoning: bool, trained_budget: int | None = None
) -> int:
    """The tokens a checkpoint gets for its reasoning chain on top of the reply's budget."""
    source = reasoning_budget_source(params, reasoning=reasoning, trained_budget=trained_budget)
    return {
        "none": 0,
        "study": params.reasoning_tokens,
        "checkpoint": trained_budget or 0,
        "default": DEFAULT_REASONING_TOKENS,
    }[source]


def backend_params(
    params: SamplingParams, *, reasoning: bool, trained_budget: int | None = None
) -> SamplingParams:
    """What the backend is sent: one `max_new_tokens` for chain and reply together."""
    budget = reasoning_budget(params, reasoning=reasoning, trained_budget=trained_budget)
    if not budget:
        return params
    return replace(params, max_new_tokens=params.max_new_tokens + budget, reasoning_tokens=0)
