"""Shared fixtures. Unit tests run Celery eagerly; tests marked `integration` never do."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_CACHE = REPO / "var" / "test-cache"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _eager_celery_for_unit_tests(request):
    """Unit tests run tasks in-process; integration tests use a real worker and broker."""
    if request.node.get_closest_marker("integration"):
        yield
        return
    from evalsite.celery import app

    old = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = old


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_throttle_counters(settings):
    """Each test starts with no API throttle history (ids and addresses repeat across tests)."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The smallest tiny model, built once and cached across test runs."""
    from training.tiny import build_tiny_model

    return build_tiny_model(TEST_CACHE / "tiny-xs", size="xs")


@pytest.fixture
def counters_agree(db):
    """For the allocation and import tests: after the test, every cached counter
    (judgment_count, open_items) equals a recount of the rows."""
    yield
    from pairwise.services import counters

    assert counters.drift() == []


@pytest.fixture
def annotators(db):
    from tests.factories import annotator

    return [annotator(username=f"ann{i}") for i in range(5)]
