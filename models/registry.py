"""Backends by name, one instance per (name, settings) per process.

    backend = get_backend("vllm", model="var/models/care-sft", dtype="float32")

A Celery worker calls this for every task; the cache makes the second task reuse the loaded
model (vLLM and transformers models also have their own per-process caches underneath).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import threading
from pathlib import Path
from typing import Any

from models.base import Backend, BackendError

# name -> (module, class, the third-party package it needs)
_BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "fake": ("models.fake", "FakeBackend", None),
    "hf": ("models.hf_backend", "HFBackend", "transformers"),
    "http": ("models.http_backend", "HTTPBackend", "httpx"),
    "vllm": ("models.vllm_backend", "VLLMBackend", "vllm"),
}
_CACHE: dict[tuple, Backend] = {}
_LOCK = threading.Lock()


def available_backends() -> list[str]:
    """Names whose third-party package is installed here, sorted."""
    return sorted(
        name
        for name, (_, _, package) in _BACKENDS.items()
        if package is None or importlib.util.find_spec(package) is not None
    )


def _freeze(value: Any) -> Any:
    """A hashable, order-independent form of a settings value, for the cache key."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return tuple(sorted(_freeze(v) for v in value))
    if isinstance(value, Path):
        return str(value)
    return value


def get_backend(name: str, **settings: Any) -> Backend:
    """Return the backend ``name`` built with ``settings``, creating it once per process."""
    if name not in _BACKENDS:
        raise ValueError(
            f"unknown backend {name!r}: expected one of {', '.join(sorted(_BACKENDS))}"
        )
    module_name, class_name, package = _BACKENDS[name]
    key = (name, _freeze(settings))
    with _LOCK:
        backend = _CACHE.get(key)
        if backend is None:
            if package is not None and importlib.util.find_spec(package) is None:
                raise BackendError(
                    f"backend {name!r} needs the {package!r} package, which is not installed "
                    f"(available here: {', '.join(available_backends())})"
                )
            cls = getattr(importlib.import_module(module_name), class_name)
            try:
                inspect.signature(cls).bind(**settings)
            except TypeError as e:  # a misspelt or missing setting
                raise BackendError(f"backend {name!r}: bad settings {settings!r} ({e})") from e
            backend = cls(**settings)
            _CACHE[key] = backend
        return backend


def clear_backends() -> None:
    """Close and forget every cached backend (tests; a worker shutting down)."""
    with _LOCK:
        backends = list(_CACHE.values())
        _CACHE.clear()
    for backend in backends:
        backend.close()
