"""The shared interface: sampling keys, prompt hashes and message validation."""

from __future__ import annotations

import hashlib

import pytest

from models.base import BackendError, SamplingParams, check_messages, prompt_hash


def test_sampling_key_is_a_hash_of_canonical_json():
    expected = hashlib.sha256(b'{"max_new_tokens":128,"temperature":0.7,"top_p":0.9}').hexdigest()
    assert SamplingParams().key() == expected[:16]
    assert SamplingParams().to_dict() == {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 128}


def test_sampling_key_equal_values_equal_keys():
    assert SamplingParams(temperature=1, top_p=1).key() == SamplingParams(1.0, 1.0).key()
    keys = {
        SamplingParams().key(),
        SamplingParams(temperature=0).key(),
        SamplingParams(top_p=0.95).key(),
        SamplingParams(max_new_tokens=64).key(),
    }
    assert len(keys) == 4
    assert SamplingParams.from_dict(SamplingParams(0.3, 0.5, 7).to_dict()) == SamplingParams(
        0.3, 0.5, 7
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 2.5}, "max_new_tokens"),
    ],
)
def test_sampling_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=f"SamplingParams.{field}="):
        SamplingParams(**kwargs)


def test_prompt_hash_is_sha256_of_canonical_json():
    messages = [{"role": "user", "content": "Je suis épuisée"}]
    canonical = '[{"content":"Je suis épuisée","role":"user"}]'.encode()
    assert prompt_hash(messages) == hashlib.sha256(canonical).hexdigest()
    assert prompt_hash([{"content": "Je suis épuisée", "role": "user"}]) == prompt_hash(messages)
    assert prompt_hash([{"role": "user", "content": "Je suis épuisé"}]) != prompt_hash(messages)


@pytest.mark.parametrize(
    ("messages", "where"),
    [
        ([], "messages:"),
        ("hello", "messages:"),
        ([{"role": "user", "content": "hi"}, "x"], r"messages\[1\]"),
        ([{"role": "user"}], r"messages\[0\]\.content"),
        ([{"role": "robot", "content": "hi"}], r"messages\[0\]\.role='robot'"),
    ],
)
def test_check_messages_names_the_bad_field(messages, where):
    with pytest.raises(BackendError, match=where):
        check_messages(messages)
