"""The tiny offline model: a real Hugging Face folder that transformers loads and runs."""

from __future__ import annotations

import json
import os

import pytest

from training.tiny import SIZES, build_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MESSAGES = [
    {"role": "system", "content": "You are a supportive listener."},
    {"role": "user", "content": "I'm feeling anxious that I am going to lose my job."},
]


@pytest.fixture(scope="module")
def tiny_xs(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "xs", size="xs", seed=0)


def test_loads_and_generates_with_chat_template(tiny_xs):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_xs)
    model = AutoModelForCausalLM.from_pretrained(tiny_xs)
    assert model.config.head_dim == 64  # vLLM's CPU attention needs head_dim >= 64
    assert len(tokenizer) == SIZES["xs"].vocab_size

    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|bos|><|im_start|>system\nYou are a supportive listener.<|im_end|>\n")
    assert text.endswith(
        "<|im_start|>user\nI'm feeling anxious that I am going to lose my job."
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    no_prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    assert not no_prompt.endswith("assistant\n")

    # Special tokens are single ids, and BPE learnt English from ESConv: a common sentence
    # takes far fewer tokens than its bytes.
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_end|>")) == 2
    assert len(ids) < len(text.encode()) / 2.5
    assert tokenizer.decode(ids) == text

    inputs = torch.tensor([ids])
    out = model.generate(inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > inputs.shape[1]
    assert out[0, : inputs.shape[1]].tolist() == ids


def test_build_is_cached_and_deterministic(tiny_xs, tmp_path):
    meta = json.loads((tiny_xs / "tiny.json").read_text())
    assert (meta["size"], meta["seed"]) == ("xs", 0)
    weights = (tiny_xs / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(tiny_xs, size="xs", seed=0) == tiny_xs
    assert (tiny_xs / "model.safetensors").stat().st_mtime_ns == weights  # not rebuilt

    # Same seed elsewhere: identical weights and tokenizer; the marker is what makes it complete.
    again = build_tiny_model(tmp_path / "again", size="xs", seed=0)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (again / name).read_bytes() == (tiny_xs / name).read_bytes()

    # A different seed in the same folder replaces the build.
    build_tiny_model(again, size="xs", seed=1)
    assert json.loads((again / "tiny.json").read_text())["seed"] == 1
    assert (again / "model.safetensors").read_bytes() != (
        tiny_xs / "model.safetensors"
    ).read_bytes()


def test_unknown_size_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="expected one of"):
        build_tiny_model(tmp_path, size="xl")
