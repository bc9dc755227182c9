"""The demo's console: the allocator's per-lease INFO lines go to the demo's log file, not the
console, at verbosity 1; at verbosity 2 they reach the console too (evalsite/logconfig.py)."""

from __future__ import annotations

import logging

import pytest
from django.conf import settings

from evalsite.logconfig import command_logging, use_command_logging
from pairwise.services import allocation
from tests.factories import make_study


@pytest.fixture
def restore_logging():
    """Put the root logger's handlers back (pytest's capture among them) after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_config_adds_a_file_and_quietens_the_console_without_changing_settings(tmp_path):
    before = repr(settings.LOGGING)
    quiet = command_logging(settings.LOGGING, log_file=tmp_path / "demo.log", verbosity=1)
    loud = command_logging(settings.LOGGING, log_file=tmp_path / "demo.log", verbosity=2)
    assert quiet["handlers"]["console"]["level"] == "WARNING"
    assert loud["handlers"]["console"]["level"] == "NOTSET"
    for config in (quiet, loud):
        assert config["handlers"]["file"]["filename"] == str(tmp_path / "demo.log")
        assert config["root"]["handlers"] == ["console", "file"]
    assert repr(settings.LOGGING) == before


def test_a_config_without_a_console_handler_is_refused(tmp_path):
    with pytest.raises(ValueError, match="console"):
        command_logging({"version": 1, "handlers": {}}, log_file=tmp_path / "x.log", verbosity=1)


@pytest.mark.django_db
@pytest.mark.parametrize("verbosity", [0, 1, 2, 3])
def test_lease_lines_reach_the_console_only_at_verbosity_2(
    verbosity, annotators, tmp_path, capsys, restore_logging
):
    study, _, _ = make_study(n_contexts=2)
    log_file = tmp_path / "logs" / "demo.log"
    use_command_logging(settings.LOGGING, log_file=log_file, verbosity=verbosity)
    item = allocation.next_item(study, annotators[0])
    logging.getLogger("pairwise.services.allocation").warning("a warning always shows")
    for handler in logging.getLogger().handlers:
        handler.flush()
    console = capsys.readouterr().err
    lease_line = f"leased item {item.public_id} to {annotators[0].username}"
    assert "a warning always shows" in console
    assert (lease_line in console) is (verbosity >= 2)
    written = log_file.read_text()
    assert lease_line in written and "a warning always shows" in written
