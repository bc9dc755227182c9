"""Score responses with the automatic metrics and write the tables across systems.

``python -m training.evaluate --responses FILE.jsonl --out-dir DIR`` scores responses that
already exist (for instance those the site generated); ``python -m training.evaluate
--checkpoint DIR --split test --out-dir DIR`` first generates one response per ESConv test turn
(``training.generation``), then scores it. Both write ``results.md``, ``results.csv`` and
``results.json`` across systems, with the paper's CARE (SFT-RL) row beside them as a reference.
The metrics themselves are ``training.metrics`` (docs/metrics.md).

Generation (``--checkpoint``) uses, by default, the history window, generation budget and
prompt convention recorded in the checkpoint's ``lineage.json``; options override them, and
``results.json`` / ``results.md`` say what was used and where it differs from training.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from training.generation import DEFAULT_MAX_NEW_TOKENS, evaluation_settings, generate_responses
from training.metrics import (
    DEFAULT_BERTSCORE_LAYERS,
    METRIC_KEYS,
    compute_metrics,
    default_bertscore_model,
    format_value,
    meteor_synonyms,
)

logger = logging.getLogger(__name__)

#: CARE (SFT-RL) on the ESConv test set, as the paper reports it (arXiv 2510.05122); None where
#: the paper gives no number. Its BERTScore comes from a different encoder than ours.
PAPER_CARE_SFT_RL: dict[str, float | None] = {
    "B-1": 15.01,
    "B-2": 6.03,
    "B-4": None,
    "R-L": 16.79,
    "METEOR": 14.56,
    "BERTScore": 16.75,
    "D-1": 4.73,
    "D-2": 27.80,
    "Len": None,
    "ACC_Stra": 30.29,
    "F1_Stra": None,
    "Unk_Stra": None,
}
PAPER_ROW_NAME = "CARE (SFT-RL), paper-reported [reference]"

# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def results_table(
    rows: dict[str, dict[str, float | None]],
    *,
    fmt: str = "markdown",
    reference_row: bool = True,
    notes: Sequence[str] = (),
) -> str:
    """A table of systems by :data:`METRIC_KEYS`, with the paper's CARE row as a reference.

    ``fmt`` is ``"markdown"`` (two decimals, ``—`` for N/A) or ``"csv"`` (full precision,
    empty for N/A). The paper's row is last and named :data:`PAPER_ROW_NAME`. ``notes``
    (markdown only) are printed under the table, e.g. a checkpoint evaluated with another
    window than it was trained with.
    """
    all_rows = dict(rows)
    if reference_row:
        all_rows[PAPER_ROW_NAME] = PAPER_CARE_SFT_RL
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["system", *METRIC_KEYS, "reference"])
        for name, metrics in all_rows.items():
            values = [metrics.get(k) for k in METRIC_KEYS]
            writer.writerow(
                [name, *("" if v is None else repr(float(v)) for v in values)]
                + ["yes" if name == PAPER_ROW_NAME else "no"]
            )
        return buf.getvalue()
    if fmt != "markdown":
        raise ValueError(f"fmt must be 'markdown' or 'csv', got {fmt!r}")
    lines = [
        "| System | " + " | ".join(METRIC_KEYS) + " |",
        "|---|" + "---:|" * len(METRIC_KEYS),
    ]
    for name, metrics in all_rows.items():
        cells = [format_value(k, metrics.get(k)) for k in METRIC_KEYS]
        label = f"*{name}*" if name == PAPER_ROW_NAME else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "All scores x100 except Len (mean tokens per response) and Unk_Stra (predicted "
        "strategies outside ESConv's eight, counted as wrong in ACC_Stra and F1_Stra); — = not "
        "applicable or not reported.",
        "BERTScore here is raw F1 with a local encoder (default all-MiniLM-L6-v2, layer 5; "
        "results.json names it): not comparable with the paper's roberta-large number "
        "(rescaled with a baseline).",
    ]
    if reference_row:
        lines.append(
            f"*{PAPER_ROW_NAME}*: numbers copied from the CARE paper (arXiv 2510.05122), "
            "not computed here."
        )
    if not meteor_synonyms():
        lines.append("METEOR computed WITHOUT WordNet synonyms (no WordNet data installed).")
    lines += [f"Note: {note}" for note in notes]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Responses files
# --------------------------------------------------------------------------------------------


def read_responses(path: str | Path) -> list[dict[str, Any]]:
    """Read a responses JSONL file: one object per line with at least ``context_id``,
    ``response`` (string or null) and ``reference``; ``pred_strategy`` and ``gold_strategy``
    are optional."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object")
            for key in ("context_id", "response", "reference"):
                if key not in row:
                    raise ValueError(f"{path}:{lineno}: missing field {key!r}")
            if row["response"] is not None and not isinstance(row["response"], str):
                raise ValueError(f"{path}:{lineno}: field 'response' must be a string or null")
            if not isinstance(row["reference"], str):
                raise ValueError(f"{path}:{lineno}: field 'reference' must be a string")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no responses")
    return rows


def score_rows(
    rows: list[dict[str, Any]],
    *,
    bertscore: bool = True,
    bertscore_model: str | None = None,
    strategy_map: Callable[[str], str | None] | None = None,
) -> dict[str, float | None]:
    """:func:`compute_metrics` over rows as :func:`read_responses` returns them."""
    has_strategy = any(r.get("pred_strategy") for r in rows)
    return compute_metrics(
        [r["response"] or "" for r in rows],
        [r["reference"] for r in rows],
        pred_strategies=[r.get("pred_strategy") for r in rows] if has_strategy else None,
        gold_strategies=[r.get("gold_strategy") for r in rows] if has_strategy else None,
        bertscore=bertscore,
        bertscore_model=bertscore_model,
        strategy_map=strategy_map,
    )


def _strategy_map_by_name(name: str | None) -> Callable[[str], str | None] | None:
    if name in (None, "none"):
        return None
    if name == "extes":
        from training.datasets.strategies import map_extes_strategy

        return map_extes_strategy
    raise ValueError(f"--strategy-map must be 'none' or 'extes', got {name!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: score responses files and/or a checkpoint, write the tables."""
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__)
    parser.add_argument("--responses", action="append", default=[], metavar="FILE.jsonl")
    parser.add_argument(
        "--name",
        action="append",
        default=[],
        help="system name for each --responses file, in order (default: the file stem)",
    )
    parser.add_argument("--checkpoint", help="generate with this model folder, then score")
    parser.add_argument("--checkpoint-name", help="system name for --checkpoint (default: stem)")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--n", type=int, help="only the first N turns of the split")
    parser.add_argument("--backend", default="hf", choices=["hf", "vllm", "fake"])
    parser.add_argument(
        "--care",
        action=argparse.BooleanOptionalAction,
        help="the checkpoint is a CARE model (default: what its lineage.json says)",
    )
    parser.add_argument(
        "--window",
        type=int,
        help="history turns per prompt, 0 for the whole history (default: the window the "
        "checkpoint was trained with, from its lineage.json; a different one is noted)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        help="generation budget (default: the one the checkpoint was trained with, else "
        f"{DEFAULT_MAX_NEW_TOKENS})",
    )
    parser.add_argument(
        "--seeker-placeholder",
        help="seeker turn inserted after a supporter turn; 'none' for the ESConv convention "
        "(default: the convention the checkpoint was trained with)",
    )
    parser.add_argument("--strategy-map", choices=["none", "extes"], default="none")
    parser.add_argument("--bertscore-model", help="local encoder folder (default: MiniLM-L6)")
    parser.add_argument("--no-bertscore", action="store_true")
    parser.add_argument("--no-reference-row", action="store_true")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    if not args.responses and not args.checkpoint:
        parser.error("give --responses FILE and/or --checkpoint DIR")
    if args.name and len(args.name) != len(args.responses):
        parser.error(f"{len(args.name)} --name for {len(args.responses)} --responses files")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    smap = _strategy_map_by_name(args.strategy_map)

    systems: dict[str, list[dict[str, Any]]] = {}
    evaluation: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for i, path in enumerate(args.responses):
        name = args.name[i] if args.name else Path(path).stem
        systems[name] = read_responses(path)
    if args.checkpoint:
        name = args.checkpoint_name or Path(args.checkpoint.rstrip("/")).name
        overrides: dict[str, Any] = {"care": args.care, "max_new_tokens": args.max_new_tokens}
        if args.window is not None:
            if args.window < 0:
                parser.error(f"--window {args.window}: expected 0 (whole history) or more turns")
            overrides["window"] = args.window or None
        if args.seeker_placeholder is not None:
            placeholder = args.seeker_placeholder
            overrides["seeker_placeholder"] = None if placeholder.lower() == "none" else placeholder
        settings = evaluation_settings(args.checkpoint, **overrides)
        evaluation[name] = settings.as_dict()
        for difference in settings.differences():
            logger.warning("%s: evaluated with %s", name, difference)
            notes.append(f"{name}: evaluated with {difference}.")
        rows = generate_responses(
            args.checkpoint,
            split=args.split,
            n=args.n,
            backend=args.backend,
            settings=settings,
            seed=args.seed,
        )
        resp_path = out_dir / f"{name}.responses.jsonl"
        with open(resp_path, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        logger.info("wrote %d responses of %s to %s", len(rows), name, resp_path)
        systems[name] = rows

    results: dict[str, dict[str, float | None]] = {}
    for name, rows in systems.items():
        results[name] = score_rows(
            rows,
            bertscore=not args.no_bertscore,
            bertscore_model=args.bertscore_model,
            strategy_map=smap,
        )
        logger.info("scored %s on %d responses", name, len(rows))
    ref = not args.no_reference_row
    (out_dir / "results.md").write_text(
        results_table(results, reference_row=ref, notes=notes), "utf-8"
    )
    (out_dir / "results.csv").write_text(
        results_table(results, fmt="csv", reference_row=ref), "utf-8"
    )
    meta = {
        "systems": {k: len(v) for k, v in systems.items()},
        "bertscore_model": None
        if args.no_bertscore
        else (args.bertscore_model or default_bertscore_model()),
        "bertscore_layers": DEFAULT_BERTSCORE_LAYERS,
        "meteor_wordnet_synonyms": meteor_synonyms(),
        "evaluation": evaluation,
        "results": results,
        "paper_reference": PAPER_CARE_SFT_RL,
    }
    (out_dir / "results.json").write_text(json.dumps(meta, indent=2) + "\n", "utf-8")
    sys.stdout.write(results_table(results, reference_row=ref, notes=notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
