"""Command-line plumbing shared by the training scripts (``training.sft``, ``training.grpo``,
``training.dpo``).

Each script builds a ``TrlParser`` for its dataclasses (``make_parser``) and hands it, with its
``train`` function, to :func:`run_cli`: ``--config recipe.yaml`` plus ``--flag value``
overrides, then train, save, and register with the site when the recipe sets ``register``.
:func:`resolved_config` is what the parsed recipe looked like, as ``lineage.json`` records it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from training.lineage import register_with_site


def resolved_config(*configs: Any) -> dict[str, Any]:
    """The script's dataclasses as one JSON-able dict, keyed by class name."""
    out = {}
    for cfg in configs:
        out[type(cfg).__name__] = cfg.to_dict() if hasattr(cfg, "to_dict") else asdict(cfg)
    return json.loads(json.dumps(out, default=str))


def run_cli(parser: Any, train_fn: Callable[[Any, Any], Path], argv: list[str] | None) -> Path:
    """Shared by the training scripts: ``--config recipe.yaml`` plus ``--flag value``
    overrides; train, save, and register with the site when ``register`` is set."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(
        level=os.environ.get("LOGLEVEL", "INFO"), format="%(levelname)s %(message)s"
    )
    args, training_args = parser.parse_args_and_config(args=argv)
    out = train_fn(args, training_args)
    print(f"saved {out}")
    if args.register:
        register_with_site(out)
    return out
