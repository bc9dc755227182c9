"""The doctests of training modules that pyproject's testpaths do not list (it lists only
training/rewards.py and models/care_format.py), so that bin/test runs them too."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "training.lineage",
        "training.prompts",
        "training.teacher",
        "training.metrics",
        "training.grpo",
    ],
)
def test_module_doctests(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0, result
