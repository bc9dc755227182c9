"""vLLM backend on the tiny model on CPU: equals transformers greedy, per-request seeds, reuse."""

from __future__ import annotations

import threading

import pytest

from models.base import GenerationRequest, SamplingParams

pytest.importorskip("vllm")

from models import vllm_backend  # noqa: E402
from models.hf_backend import HFBackend  # noqa: E402
from models.vllm_backend import VLLMBackend  # noqa: E402

GREEDY = SamplingParams(temperature=0, max_new_tokens=12)
SAMPLED = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=10)
# Eager: the engine starts in seconds. fp32: the same arithmetic as the HF backend.
SETTINGS = {"dtype": "float32", "enforce_eager": True, "max_model_len": 1024}


@pytest.fixture(scope="module")
def vllm(tiny_model):
    yield VLLMBackend(tiny_model, **SETTINGS)
    # Later tests in this session must not inherit the engine or torch.distributed.
    vllm_backend.shutdown_engines()
    import torch.distributed

    assert not torch.distributed.is_initialized()


def test_greedy_equals_transformers_greedy(vllm, tiny_model, esconv_messages):
    requests = [GenerationRequest(m, GREEDY, seed=0) for m in esconv_messages]
    ours = vllm.generate(requests)
    theirs = HFBackend(tiny_model, dtype="float32").generate(requests)
    assert [g.text for g in ours] == [g.text for g in theirs]
    assert [g.prompt_tokens for g in ours] == [g.prompt_tokens for g in theirs]
    assert [(g.completion_tokens, g.finish_reason) for g in ours] == [(12, "length")] * 6
    assert len({g.text for g in ours}) > 1


def test_each_request_keeps_its_own_seed(vllm, esconv_messages):
    batch = [GenerationRequest(m, SAMPLED, seed=i) for i, m in enumerate(esconv_messages)]
    full = [g.text for g in vllm.generate(batch)]
    # Alone, reversed or in a smaller batch, a request's seed gives the same text.
    assert [vllm.generate([r])[0].text for r in batch[:2]] == full[:2]
    assert [g.text for g in vllm.generate(batch[::-1])] == full[::-1]
    reseeded = vllm.generate([GenerationRequest(esconv_messages[0], SAMPLED, seed=99)])
    assert reseeded[0].text != full[0]


def test_engine_is_created_once_and_reused(vllm, tiny_model, esconv_messages):
    loads = vllm_backend.engine_loads
    again = VLLMBackend(tiny_model, **SETTINGS)
    assert again.engine is vllm.engine
    assert vllm_backend.engine_loads == loads
    assert again.version == vllm.version and again.version


def test_threads_share_the_engine_safely(vllm, esconv_messages):
    requests = [GenerationRequest(m, GREEDY, seed=0) for m in esconv_messages]
    expected = [g.text for g in vllm.generate(requests)]
    results: dict[int, list[str]] = {}

    def work(i: int) -> None:
        mine = requests[i:] + requests[:i]
        results[i] = [g.text for g in vllm.generate(mine)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == {i: expected[i:] + expected[:i] for i in range(3)}


def test_a_full_batch_of_long_seeded_prompts_generates(vllm):
    """Regression: 32 sampled requests whose prompts fill the model's context used to fail on
    CPU with "CPU Generator does not use offset" (chunked prefill + per-request seeds)."""
    long = " ".join(["I feel so sad and lost about my job and my family"] * 120)
    sampling = SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=160)
    batch = [
        GenerationRequest([{"role": "user", "content": f"{long} {i}"}], sampling, seed=i)
        for i in range(32)
    ]
    out = vllm.generate(batch)
    assert len(out) == 32
    assert all(g.prompt_tokens == 1024 - 160 for g in out)  # kept the most recent tokens
    assert all(g.completion_tokens >= 1 for g in out)
