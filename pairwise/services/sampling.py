"""A study's sampling config, as the backends' SamplingParams and its stable key."""

from __future__ import annotations

from models.base import SamplingParams


def sampling_params(sampling: dict | None) -> SamplingParams:
    """The study's stored sampling dict as SamplingParams; unknown fields are an error."""
    try:
        return SamplingParams(**(sampling or {}))
    except TypeError as exc:
        raise ValueError(
            f"sampling: {exc}; allowed fields are temperature, top_p, max_new_tokens"
        ) from exc


def sampling_key(sampling: dict | None) -> str:
    return sampling_params(sampling).key()
