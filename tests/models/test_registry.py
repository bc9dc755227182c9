"""Backends by name: one per (name, settings) per process, clear errors otherwise."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from models.base import BackendError, GenerationRequest, SamplingParams
from models.fake import FakeBackend
from models.registry import available_backends, clear_backends, get_backend


@pytest.fixture(autouse=True)
def _fresh_registry():
    clear_backends()
    yield
    clear_backends()


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(
        ValueError, match=r"unknown backend 'openai': expected one of fake, hf, http, vllm"
    ):
        get_backend("openai")


def test_same_settings_same_instance_in_any_order():
    a = get_backend("fake", model="m", reasoning=True)
    assert isinstance(a, FakeBackend) and a.reasoning
    assert get_backend("fake", reasoning=True, model="m") is a
    assert get_backend("fake", model="m") is not a
    assert get_backend("fake", model="other", reasoning=True) is not a


def test_paths_and_strings_share_a_cache_entry(tiny_model):
    a = get_backend("hf", model=str(tiny_model), dtype="float32")
    assert get_backend("hf", model=Path(tiny_model), dtype="float32") is a
    (g,) = a.generate(
        [GenerationRequest([{"role": "user", "content": "hi"}], SamplingParams(0, 1, 2), 0)]
    )
    assert g.completion_tokens == 2


def test_misspelt_setting_is_a_clear_error():
    with pytest.raises(BackendError, match=r"backend 'fake': bad settings .*reasonning"):
        get_backend("fake", reasonning=True)
    with pytest.raises(BackendError, match="backend 'http': bad settings"):
        get_backend("http", base_url="http://127.0.0.1:1/v1")  # model missing


def test_available_backends_reflect_installed_packages():
    names = available_backends()
    assert {"fake", "hf", "http"} <= set(names)
    assert ("vllm" in names) == (importlib.util.find_spec("vllm") is not None)


def test_clear_closes_backends():
    b = get_backend("http", base_url="http://127.0.0.1:1/v1", model="x")
    clear_backends()
    with pytest.raises(BackendError, match="after close"):
        b.generate([GenerationRequest([{"role": "user", "content": "hi"}], SamplingParams(), 0)])
    assert get_backend("http", base_url="http://127.0.0.1:1/v1", model="x") is not b
