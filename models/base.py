"""The one generation interface: a batch of chat requests in, one generation per request out.

Every backend (vLLM, transformers, an OpenAI-compatible server, the fake) takes a sequence of
``GenerationRequest`` and returns ``Generation`` objects in the same order, so the site can queue
a whole batch of contexts for one checkpoint and let vLLM schedule them together.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


class BackendError(RuntimeError):
    """A failure that will happen again on retry: bad request, bad model, malformed output."""


class TransientBackendError(BackendError):
    """A failure worth a retry with backoff: server overloaded or down, connection lost."""


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature == 0`` means greedy decoding, where seeds have no effect.

    ``max_new_tokens`` is the reply's budget. ``reasoning_tokens`` is the extra budget a
    checkpoint that writes a reasoning chain gets on top of it, so the chain does not eat the
    reply's tokens; 0 (the default) leaves the choice to the caller (the site uses
    ``pairwise.services.sampling.DEFAULT_REASONING_TOKENS``). Backends read only
    ``max_new_tokens``: the caller adds the two before sending a request.
    """

    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 128
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        # 1 and 1.0 must give the same key, so store floats as floats.
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_p", float(self.top_p))
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature={self.temperature}: expected >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingParams.top_p={self.top_p}: expected 0 < top_p <= 1")
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise ValueError(
                f"SamplingParams.max_new_tokens={self.max_new_tokens!r}: expected an integer"
            )
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingParams.max_new_tokens={self.max_new_tokens}: expected >= 1")
        if (
            isinstance(self.reasoning_tokens, bool)
            or not isinstance(self.reasoning_tokens, int)
            or self.reasoning_tokens < 0
        ):
            raise ValueError(
                f"SamplingParams.reasoning_tokens={self.reasoning_tokens!r}: expected an integer "
                ">= 0"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict[str, float | int]:
        """The fields as a dict; ``reasoning_tokens`` only when set, so a config written before
        the field existed keeps its dict, and so its :meth:`key`."""
        out = asdict(self)
        if not self.reasoning_tokens:
            del out["reasoning_tokens"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingParams:
        return cls(**data)

    def key(self) -> str:
        """A stable 16-hex-digit hash of the fields, for unique constraints and cache keys."""
        return hashlib.sha256(_canonical_json(self.to_dict()).encode()).hexdigest()[:16]


def check_messages(messages: Any) -> list[dict[str, str]]:
    """Return ``messages`` if it is a non-empty list of {"role", "content"} strings, else raise.

    The error names the index and field that is wrong, since a bad message usually comes from
    a stored context far from the code that sends it.
    """
    if not isinstance(messages, list) or not messages:
        raise BackendError(f"messages: expected a non-empty list of dicts, got {messages!r:.80}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BackendError(f"messages[{i}]: expected a dict, got {type(message).__name__}")
        for field in ("role", "content"):
            if not isinstance(message.get(field), str):
                raise BackendError(f"messages[{i}].{field}: expected a string, got {message!r:.80}")
        if message["role"] not in ("system", "user", "assistant"):
            raise BackendError(
                f"messages[{i}].role={message['role']!r}: expected system, user or assistant"
            )
    return messages


def prompt_hash(messages: Sequence[dict[str, str]]) -> str:
    """SHA-256 (hex) of the messages as canonical JSON: equal conversations, equal hashes."""
    return hashlib.sha256(_canonical_json(list(messages)).encode()).hexdigest()


@dataclass(frozen=True)
class GenerationRequest:
    """One conversation to continue. ``request_id`` is the caller's, passed through untouched."""

    messages: list[dict[str, str]]
    sampling: SamplingParams
    seed: int
    request_id: str | None = None


@dataclass(frozen=True)
class Generation:
    """One output.

    ``finish_reason`` is "stop" (end of turn) or "length" (hit max_new_tokens). ``seconds`` is this
    request's share of its batch's wall time, so the seconds of a batch add up to its wall time.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    seconds: float


class Backend(ABC):
    """A generation backend. ``name`` identifies the kind; ``version`` the library behind it."""

    name: str = "base"
    version: str = ""

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Generate one output per request, in the same order.

        Raises ``TransientBackendError`` for failures worth a retry and ``BackendError`` for
        the rest. A batch either succeeds as a whole or raises.
        """

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release what this backend holds (connections, threads). Safe to call twice."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
