"""transformers backend: batched ``generate`` with left padding and the model's chat template.

Seeds: transformers samples a whole batch from one random generator, so per-request seeds are
approximated by one seed per batch, derived from the seeds of the requests in it. Batches hold
requests with equal sampling settings, sorted by prompt length (less padding). The same list of
requests gives the same texts; the same request in a different list may not. Use vLLM where
per-request seeds matter. Greedy decoding (temperature 0) ignores seeds.

A model is loaded once per (path, dtype, device) per process and shared by every backend
instance that asks for it.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.base import (
    Backend,
    BackendError,
    Generation,
    GenerationRequest,
    SamplingParams,
    check_messages,
)

_MODELS: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_MODELS_LOCK = threading.Lock()


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _torch_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":  # bf16 where it is fast, fp32 on CPU where it is not
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            dtype
        ]
    except KeyError:
        raise BackendError(
            f"dtype={dtype!r}: expected auto, float32, bfloat16 or float16"
        ) from None


def load_model(model: str | Path, dtype: str = "auto", device: str = "auto") -> tuple[Any, Any]:
    """Return (model, tokenizer) for a folder or hub id, loading it once per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = _resolve_device(device)
    key = (str(model), dtype, device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(str(model))
                lm = AutoModelForCausalLM.from_pretrained(
                    str(model), dtype=_torch_dtype(dtype, device)
                )
            except (OSError, ValueError) as e:  # missing folder, or no weights/tokenizer in it
                raise BackendError(f"model={model!s}: cannot load a causal LM ({e})") from e
            lm.to(device).eval()
            if tokenizer.chat_template is None:
                raise BackendError(f"model={model!s}: the tokenizer has no chat template")
            _MODELS[key] = (lm, tokenizer)
        return _MODELS[key]


def _batch_seed(seeds: Sequence[int]) -> int:
    digest = hashlib.sha256(",".join(map(str, seeds)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class HFBackend(Backend):
    """Generate with transformers, ``batch_size`` prompts at a time."""

    name = "hf"

    def __init__(
        self,
        model: str | Path,
        *,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int = 16,
        max_model_len: int | None = None,
    ) -> None:
        """``max_model_len`` caps prompt + new tokens (default: the model's max positions);
        longer prompts keep their last tokens, like vLLM's left truncation."""
        import transformers

        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: expected >= 1")
        self.version = transformers.__version__
        self.model_path = str(model)
        self.batch_size = batch_size
        self.model, self.tokenizer = load_model(model, dtype, device)
        self.max_model_len = max_model_len or getattr(
            self.model.config, "max_position_embeddings", 2048
        )
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = next(iter(self.eos_ids))
        # One generate at a time per model: torch modules are not safe to share across threads.
        self._lock = threading.Lock()

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            check_messages(request.messages), tokenize=False, add_generation_prompt=True
        )
        # The template writes any bos itself; vLLM tokenises the same way.
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        budget = self.max_model_len - request.sampling.max_new_tokens
        if budget < 1:
            raise BackendError(
                f"max_new_tokens={request.sampling.max_new_tokens} leaves no room for a prompt "
                f"within max_model_len={self.max_model_len}"
            )
        return ids[-budget:]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        # Tokenise everything first: a bad request fails the batch before any compute.
        prompts = [self._prompt_ids(r) for r in requests]
        results: list[Generation | None] = [None] * len(requests)
        # A generate call takes one sampling config: batch requests that share one, and batch
        # prompts of similar length together so little compute goes on padding.
        groups: dict[SamplingParams, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.sampling, []).append(i)
        with self._lock:
            for sampling, indices in groups.items():
                indices.sort(key=lambda i: len(prompts[i]))
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start : start + self.batch_size]
                    outs = self._generate_batch(
                        [prompts[i] for i in chunk], [requests[i].seed for i in chunk], sampling
                    )
                    for i, out in zip(chunk, outs, strict=True):
                        results[i] = out
        return results  # type: ignore[return-value]

    def _generate_batch(
        self, prompts: list[list[int]], seeds: list[int], sampling: SamplingParams
    ) -> list[Generation]:
        import torch

        start = time.perf_counter()
        width = max(map(len, prompts))
        # Left padding: every prompt ends at the same column, so new tokens line up.
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "pad_token_id": self.pad_id,
            "eos_token_id": sorted(self.eos_ids),
        }
        if sampling.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            # top_k off, as in vLLM and the OpenAI API: only temperature and top_p shape it.
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
            kwargs["top_k"] = 0
        device = self.model.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(_batch_seed(seeds))
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs
                )
        new = out[:, width:].tolist()
        share = (time.perf_counter() - start) / len(prompts)
        generations = []
        for ids, tokens in zip(prompts, new, strict=True):
            stop = next((j for j, t in enumerate(tokens) if t in self.eos_ids), None)
            if stop is None:  # ran to max_new_tokens (rows that stopped early are padded after eos)
                completion, finish = tokens, "length"
            else:
                completion, finish = tokens[: stop + 1], "stop"  # count the eos, as vLLM does
            text = self.tokenizer.decode(completion, skip_special_tokens=True)
            generations.append(
                Generation(
                    text=text,
                    prompt_tokens=len(ids),
                    completion_tokens=len(completion),
                    finish_reason=finish,
                    seconds=share,
                )
            )
        return generations
