"""transformers backend on the tiny model: left padding, seeds, stopping, truncation."""

from __future__ import annotations

import pytest

from models.base import BackendError, GenerationRequest, SamplingParams
from models.hf_backend import HFBackend, load_model

GREEDY = SamplingParams(temperature=0, max_new_tokens=12)


@pytest.fixture(scope="module")
def hf(tiny_model):
    return HFBackend(tiny_model, dtype="float32", batch_size=8)


def test_batched_greedy_equals_one_by_one(hf, esconv_messages):
    requests = [GenerationRequest(m, GREEDY, seed=0) for m in esconv_messages]
    batched = hf.generate(requests)
    single = [hf.generate([r])[0] for r in requests]
    assert [g.text for g in batched] == [g.text for g in single]
    # The prompts really differ in length (so padding happened) and the outputs differ.
    assert len({g.prompt_tokens for g in batched}) == len(requests)
    assert len({g.text for g in batched}) > 1
    assert all(g.completion_tokens == 12 and g.finish_reason == "length" for g in batched)


def test_prompt_tokens_match_the_chat_template(hf, tiny_model, esconv_messages):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = tokenizer.apply_chat_template(esconv_messages[0], add_generation_prompt=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    (g,) = hf.generate([GenerationRequest(esconv_messages[0], GREEDY, seed=0)])
    assert g.prompt_tokens == len(ids)


def test_sampling_is_reproducible_per_batch_seed(hf, esconv_messages):
    sampling = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=10)
    a = hf.generate([GenerationRequest(m, sampling, seed=7) for m in esconv_messages])
    b = hf.generate([GenerationRequest(m, sampling, seed=7) for m in esconv_messages])
    c = hf.generate([GenerationRequest(m, sampling, seed=8) for m in esconv_messages])
    assert [g.text for g in a] == [g.text for g in b]
    assert [g.text for g in a] != [g.text for g in c]


def test_mixed_sampling_keeps_request_order(hf, esconv_messages):
    sampled = SamplingParams(temperature=1.0, max_new_tokens=5)
    requests = [
        GenerationRequest(m, GREEDY if i % 2 else sampled, seed=i, request_id=str(i))
        for i, m in enumerate(esconv_messages)
    ]
    out = hf.generate(requests)
    greedy_alone = hf.generate([r for r in requests if r.sampling == GREEDY])
    assert [g.text for g in out[1::2]] == [g.text for g in greedy_alone]
    assert [g.completion_tokens for g in out] == [5, 12, 5, 12, 5, 12]


def test_long_history_keeps_its_last_tokens(tiny_model, esconv_messages):
    short = HFBackend(tiny_model, dtype="float32", max_model_len=64)
    (g,) = short.generate([GenerationRequest(esconv_messages[1], GREEDY, seed=0)])
    assert g.prompt_tokens == 64 - GREEDY.max_new_tokens
    with pytest.raises(BackendError, match="max_model_len=64"):
        short.generate(
            [GenerationRequest(esconv_messages[0], SamplingParams(max_new_tokens=64), 0)]
        )


def test_model_is_loaded_once_per_process(tiny_model, hf):
    assert load_model(tiny_model, "float32") == (hf.model, hf.tokenizer)
    assert HFBackend(tiny_model, dtype="float32").model is hf.model


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match=f"model={tmp_path}"):
        HFBackend(tmp_path)
