"""Time the main job: `manage.py demo` from nothing (fresh var dir, no cached models), then again
with everything cached. Targets (issue 10): first run <= 15 min, re-run ready in < 1 min.

    python bench/demo.py [--contexts 100] [--size xs] [--fast]

Both runs use --no-serve, so "ready" is the moment the site would start serving. The last line
is one JSON object with `first_run_seconds`, `rerun_seconds`, `rerun_vs_first` and
`care_clean_share`: the share of the study's CARE outputs that parse as a complete four-node
chain with a non-empty reply (issue #20, item 7: the target is >= 0.95).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(var: Path, args: list[str]) -> tuple[float, str]:
    env = {
        **os.environ,
        "EVALSITE_VAR_DIR": str(var),
        "HF_HUB_OFFLINE": "1",
        "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}",
    }
    env.pop("CELERY_BROKER_URL", None)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "manage.py", "demo", "--no-serve", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"demo failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return took, proc.stdout


def care_clean_share(db: Path) -> float | None:
    """Share of the CARE (reasoning) checkpoints' responses whose parse is `complete` with a
    non-empty reply, from the demo's SQLite database; None when there are none."""
    with sqlite3.connect(db) as conn:
        clean, total = conn.execute(
            "SELECT SUM(r.parse_status = 'complete' AND r.text <> ''), COUNT(*) "
            "FROM pairwise_response r JOIN pairwise_checkpoint c ON r.checkpoint_id = c.id "
            "WHERE c.reasoning"
        ).fetchone()
    return round(clean / total, 4) if total else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contexts", type=int, default=100)
    parser.add_argument("--size", default="xs")
    parser.add_argument("--fast", action="store_true")
    a = parser.parse_args()
    args = ["--contexts", str(a.contexts), "--size", a.size] + (["--fast"] if a.fast else [])
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        first, out = run(Path(tmp), args)
        steps = [line.strip() for line in out.splitlines() if "done in" in line]
        clean = care_clean_share(Path(tmp) / "db.sqlite3")
        print(f"first run: {first:.0f}s (load {load:.1f}); CARE clean chains: {clean}")
        for line in steps:
            print("   ", line)
        again, _ = run(Path(tmp), args)
        print(f"re-run with everything cached: {again:.1f}s")
    print(
        json.dumps(
            {
                "first_run_seconds": round(first, 1),
                "rerun_seconds": round(again, 1),
                "rerun_vs_first": round(again / first, 3),
                "contexts": a.contexts,
                "size": a.size,
                "fast": a.fast,
                "load_avg_1m": round(load, 2),
                "care_clean_share": clean,
            }
        )
    )


if __name__ == "__main__":
    main()
