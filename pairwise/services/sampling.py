"""A study's sampling config, as the backends' SamplingParams and its stable key.

`max_new_tokens` is the reply's budget. A checkpoint that writes a reasoning chain
(`Checkpoint.reasoning`) gets `reasoning_tokens` more on top, so that the chain does not eat
the reply's tokens and get cut off; a study that does not set it gets
DEFAULT_REASONING_TOKENS. A config without `reasoning_tokens` keeps the key it had before the
field existed, so responses stored under it still count.
"""

from __future__ import annotations

from dataclasses import replace

from models.base import SamplingParams

# Room for a CARE chain (four short nodes, each a sentence or two) at 7B scale, with margin; the
# tiny demo model's chains are shorter (docs/training.md: chain + reply p90 ~145 tokens).
DEFAULT_REASONING_TOKENS = 256
FIELDS = ("temperature", "top_p", "max_new_tokens", "reasoning_tokens")


def sampling_params(sampling: dict | None) -> SamplingParams:
    """The study's stored sampling dict as SamplingParams; unknown fields are an error."""
    try:
        return SamplingParams(**(sampling or {}))
    except TypeError as exc:
        raise ValueError(f"sampling: {exc}; allowed fields are {', '.join(FIELDS)}") from exc


def sampling_key(sampling: dict | None) -> str:
    return sampling_params(sampling).key()


def reasoning_budget(params: SamplingParams, *, reasoning: bool) -> int:
    """The tokens a checkpoint gets for its reasoning chain on top of the reply's budget."""
    if not reasoning:
        return 0
    return params.reasoning_tokens or DEFAULT_REASONING_TOKENS


def backend_params(params: SamplingParams, *, reasoning: bool) -> SamplingParams:
    """What the backend is sent: one `max_new_tokens` for chain and reply together."""
    budget = reasoning_budget(params, reasoning=reasoning)
    if not budget:
        return params
    return replace(params, max_new_tokens=params.max_new_tokens + budget, reasoning_tokens=0)
