"""Fixtures for the backends: one tiny model per session, and real ESConv histories."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path) -> Path:
    """The xs tiny model, built once under var/test-cache/ by the root conftest and reused."""
    return tiny_model_dir


@pytest.fixture(scope="session")
def esconv_messages() -> list[list[dict[str, str]]]:
    """Chat messages for six real ESConv test histories of different lengths (1 to 15 turns)."""
    from training.datasets import load_dialogues, turn_examples
    from training.prompts import to_messages

    examples = list(turn_examples(load_dialogues("esconv", "test")[:6], window=15))
    picked = [examples[i] for i in (0, 5, 11, 23, 37, 52)]
    return [to_messages(e.history) for e in picked]
