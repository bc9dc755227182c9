"""OpenAI-compatible HTTP backend: ``POST {base_url}/chat/completions`` on ``vllm serve`` or alike.

``base_url`` includes the API prefix, as in the OpenAI client: ``http://host:8000/v1``.
A batch is sent as concurrent requests (at most ``concurrency`` in flight), and the server
batches them. Connection errors, timeouts, 429 and 5xx are retried with exponential backoff
(honouring ``Retry-After``); other 4xx are the caller's fault and are not retried. Seeds are
passed through: vLLM honours them per request, other servers may not.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import httpx

from models.base import (
    Backend,
    BackendError,
    Generation,
    GenerationRequest,
    TransientBackendError,
    check_messages,
)

_RETRY_STATUSES = frozenset({408, 429})


def _is_transient(status: int) -> bool:
    return status in _RETRY_STATUSES or status >= 500


def _finish_reason(reported: Any, completion_tokens: int, max_tokens: int) -> str:
    """The OpenAI finish reason, "length" whenever the limit was hit: some servers say
    "max_tokens", and some say nothing (then the token count tells)."""
    if reported in ("length", "max_tokens"):
        return "length"
    if reported:
        return str(reported)
    return "length" if completion_tokens >= max_tokens else "stop"


class HTTPBackend(Backend):
    """Chat completions over HTTP, with retries and a concurrency limit per batch."""

    name = "http"
    version = httpx.__version__

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        concurrency: int = 8,
    ) -> None:
        """``max_retries`` counts retries after the first attempt; the wait before retry n is
        ``backoff * 2**n`` seconds with jitter, capped at ``max_backoff``."""
        if concurrency < 1:
            raise ValueError(f"concurrency={concurrency}: expected >= 1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.concurrency = concurrency
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="http-gen")
        self._closed = threading.Event()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        if self._closed.is_set():
            raise BackendError(f"http backend for {self.base_url}: generate() after close()")
        for r in requests:
            check_messages(r.messages)
        start = time.perf_counter()
        futures = [self._pool.submit(self._one, r) for r in requests]
        results, errors = [], []
        for future in futures:  # wait for all, so no request is left running after we raise
            try:
                results.append(future.result())
            except BackendError as e:
                errors.append(e)
        if errors:
            # A permanent error wins: retrying the batch would fail again.
            raise next((e for e in errors if not isinstance(e, TransientBackendError)), errors[0])
        share = (time.perf_counter() - start) / max(len(results), 1)
        return [replace(g, seconds=share) for g in results]

    def _payload(self, request: GenerationRequest) -> dict[str, Any]:
        s = request.sampling
        return {
            "model": self.model,
            "messages": request.messages,
            "temperature": s.temperature,
            "top_p": 1.0 if s.greedy else s.top_p,
            "max_tokens": s.max_new_tokens,
            "seed": request.seed,
        }

    def _sleep_before_retry(self, attempt: int, response: httpx.Response | None) -> None:
        delay = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
        if response is not None and "retry-after" in response.headers:
            try:
                delay = min(self.max_backoff, float(response.headers["retry-after"]))
            except ValueError:
                pass  # an HTTP date: keep our own backoff
        time.sleep(delay)

    def _one(self, request: GenerationRequest) -> Generation:
        url = f"{self.base_url}/chat/completions"
        payload = self._payload(request)
        for attempt in range(self.max_retries + 1):
            response = None
            try:
                response = self._client.post(url, json=payload)
            except httpx.TransportError as e:  # connect error, timeout, reset
                problem = f"{type(e).__name__}: {e}"
            else:
                if response.status_code == 200:
                    return self._parse(response, request)
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if not _is_transient(response.status_code):
                    raise BackendError(f"POST {url} (request_id={request.request_id}): {problem}")
            if attempt < self.max_retries:
                self._sleep_before_retry(attempt, response)
        raise TransientBackendError(
            f"POST {url} (request_id={request.request_id}): {problem}, "
            f"still failing after {self.max_retries + 1} attempts"
        )

    def _parse(self, response: httpx.Response, request: GenerationRequest) -> Generation:
        try:
            body = response.json()
            choice = body["choices"][0]
            text = choice["message"]["content"]
            usage = body.get("usage") or {}
            if not isinstance(text, str):
                raise TypeError(f"choices[0].message.content is {type(text).__name__}")
            completion_tokens = int(usage.get("completion_tokens", 0))
            return Generation(
                text=text,
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=completion_tokens,
                finish_reason=_finish_reason(
                    choice.get("finish_reason"), completion_tokens, request.sampling.max_new_tokens
                ),
                seconds=0.0,  # set per batch by generate()
            )
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise BackendError(
                f"POST {response.request.url}: not an OpenAI chat completion "
                f"({type(e).__name__}: {e}); body starts {response.text[:200]!r}"
            ) from e

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._pool.shutdown(wait=True)
            self._client.close()
