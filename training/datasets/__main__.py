"""Command line: ``python -m training.datasets stats esconv [--split test] [--data-dir D]``.

Prints one JSON object. On bad data it prints one ``error: ...`` line and exits with 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from training.datasets import DATASETS, SPLITS, DatasetError, dataset_stats, load_dialogues

EXIT_DATA_ERROR = 2
_MAX_LISTED_SKIPS = 20


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one subcommand, ``stats``)."""
    parser = argparse.ArgumentParser(prog="python -m training.datasets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    stats = commands.add_parser("stats", help="count dialogues, utterances and strategies")
    stats.add_argument("dataset", choices=DATASETS)
    stats.add_argument("--split", choices=SPLITS, help="one split (default: all of them)")
    stats.add_argument(
        "--data-dir", help="folder holding esconv/, augesc/, extes/ (default: $EVALSITE_DATA_DIR)"
    )
    stats.add_argument(
        "--skip-invalid",
        action="store_true",
        help="leave invalid records out and report them, instead of stopping at the first",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        dialogues = load_dialogues(
            args.dataset, args.split, data_dir=args.data_dir, skip_invalid=args.skip_invalid
        )
    except DatasetError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_DATA_ERROR
    report = dialogues.report
    result = {"dataset": args.dataset, "split": args.split or "all", **dataset_stats(dialogues)}
    if report.unknown_strategies:
        result["unknown_strategies"] = dict(report.unknown_strategies.most_common())
    if args.skip_invalid:
        result["skipped"] = len(report.skipped)
        result["skip_reasons"] = report.skip_reasons()
        result["skipped_records"] = [s.message for s in report.skipped[:_MAX_LISTED_SKIPS]]
        print(report.summary(), file=sys.stderr)
    result["files"] = report.files
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
