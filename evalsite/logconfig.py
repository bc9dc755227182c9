"""Logging for a long command that a person watches (`manage.py demo`).

`settings.LOGGING` sends every INFO record to the console, right for a worker or the web server,
whose output is their log file. A person running the demo wants stage lines instead: the
allocator's "leased item ... to simulated-3" (thousands under --simulate-annotators), per-request
and per-task lines, and the services' own INFO records belong in a log file. `command_logging`
derives that configuration from `settings.LOGGING`: everything at INFO goes to ``log_file``, and
the console keeps warnings and errors, or everything again at ``--verbosity 2`` or more.
"""

from __future__ import annotations

import copy
import logging.config
from pathlib import Path
from typing import Any

# verbosity (Django's -v) from which INFO records reach the console again
CONSOLE_INFO_VERBOSITY = 2


def command_logging(base: dict[str, Any], *, log_file: Path, verbosity: int) -> dict[str, Any]:
    """A copy of ``base`` (a ``dictConfig`` dict whose root logs to a ``console`` handler) with a
    ``file`` handler on the root writing to ``log_file``, and the console at WARNING below
    verbosity 2. ``base`` is not changed."""
    if "console" not in base.get("handlers", {}):
        raise ValueError("LOGGING: no 'console' handler to quieten (handlers: console expected)")
    config = copy.deepcopy(base)
    config["disable_existing_loggers"] = False
    quiet = verbosity < CONSOLE_INFO_VERBOSITY
    config["handlers"]["console"]["level"] = "WARNING" if quiet else "NOTSET"
    formatter = config["handlers"]["console"].get("formatter")
    config["handlers"]["file"] = {
        "class": "logging.FileHandler",
        "filename": str(log_file),
        "encoding": "utf-8",
        **({"formatter": formatter} if formatter else {}),
    }
    root = config.setdefault("root", {})
    root["handlers"] = [*root.get("handlers", ["console"]), "file"]
    return config


def use_command_logging(base: dict[str, Any], *, log_file: Path, verbosity: int) -> None:
    """Apply `command_logging` to the running process (creates the log's folder)."""
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    logging.config.dictConfig(command_logging(base, log_file=log_file, verbosity=verbosity))
