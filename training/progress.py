"""Training progress that another process can show: one JSON line per update.

A training script run by `manage.py demo` writes its progress, through the callback below, to the
file named by ``TRAINING_PROGRESS_FILE``; the demo reads that file while the run lasts and keeps
one live line on the console (``LiveLine``)::

      sft care  step 12/40  loss 2.31  0:42 elapsed  ETA 1:50

A record is ``{"step": 12, "max_steps": 40, "loss": 2.31, "elapsed": 42.0, "done": false}``:
``elapsed`` counts seconds since training began (model loading excluded), ``loss`` is the last
logged training loss (None before the first log). Without the variable the callback is not
added, so a script run by hand behaves as before.

No Django imports; transformers is imported only when the callback is built.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

ENV_VAR = "TRAINING_PROGRESS_FILE"
# a record at least this often while steps end (every log and the last step are always written)
MIN_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Progress:
    """One progress record of a training run."""

    step: int
    max_steps: int
    loss: float | None
    elapsed: float
    done: bool = False

    @classmethod
    def from_json(cls, line: str) -> Progress:
        """Parse one line that the callback wrote; ValueError names the missing field."""
        data = json.loads(line)
        for key in ("step", "max_steps", "elapsed"):
            if key not in data:
                raise ValueError(f"progress record: field {key!r} is missing in {line!r}")
        loss = data.get("loss")
        return cls(
            step=int(data["step"]),
            max_steps=int(data["max_steps"]),
            loss=None if loss is None else float(loss),
            elapsed=float(data["elapsed"]),
            done=bool(data.get("done", False)),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "step": self.step,
                "max_steps": self.max_steps,
                "loss": self.loss,
                "elapsed": round(self.elapsed, 3),
                "done": self.done,
            }
        )


def clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour: 42 -> ``0:42``, 3725 -> ``1:02:05``."""
    if seconds < 0:
        raise ValueError(f"seconds: must be >= 0, got {seconds}")
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def eta_seconds(step: int, max_steps: int, elapsed: float) -> float | None:
    """Seconds left at the mean pace so far; None before the first step or without a total."""
    if step <= 0 or max_steps <= 0:
        return None
    return max(0, max_steps - step) * elapsed / step


def format_line(label: str, p: Progress) -> str:
    """``  sft care  step 12/40  loss 2.31  0:42 elapsed  ETA 1:50`` (no loss before the first
    log; no ETA before the first step; ``done`` instead of the ETA at the end)."""
    parts = [f"  {label}", f"step {p.step}/{p.max_steps}"]
    if p.loss is not None:
        parts.append(f"loss {p.loss:.2f}")
    parts.append(f"{clock(p.elapsed)} elapsed")
    if p.done:
        parts.append("done")
    else:
        eta = eta_seconds(p.step, p.max_steps, p.elapsed)
        if eta is not None:
            parts.append(f"ETA {clock(eta)}")
    return "  ".join(parts)


class LiveLine:
    """Shows a run's progress records as one line.

    On a terminal the line is rewritten in place (carriage return) at every record. Elsewhere (a
    pipe, a CI log) a line is printed at most every ``interval`` seconds, and whenever the run
    passes 25, 50, 75 or 100% of its steps, so a log stays short.
    """

    def __init__(
        self,
        label: str,
        out: TextIO,
        *,
        tty: bool | None = None,
        interval: float = 10.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.out, self.interval, self.now = label, out, interval, now
        self.tty = out.isatty() if tty is None else tty
        self.last_printed: float | None = None
        self.quarter = 0  # quarters of the run already announced (non-terminal output)
        self.width = 0  # of the line on screen (terminal), to blank what a shorter one leaves

    def update(self, p: Progress) -> None:
        text = format_line(self.label, p)
        if self.tty:
            self.out.write("\r" + text.ljust(self.width))
            self.width = len(text)
            self.out.flush()
            return
        if not p.done and 0 < p.max_steps <= p.step:
            return  # 100% is announced by the final record, "done" rather than "ETA 0:00"
        quarter = 4 if p.done else 4 * p.step // p.max_steps if p.max_steps > 0 else 0
        t = self.now()
        due = self.last_printed is None or t - self.last_printed >= self.interval
        if quarter > self.quarter or due:
            self.out.write(text + "\n")
            self.out.flush()
            self.last_printed = t
            self.quarter = max(self.quarter, quarter)

    def close(self) -> None:
        """End the line (terminal) so that the next output starts on its own line."""
        if self.tty and self.width:
            self.out.write("\n")
            self.out.flush()
            self.width = 0


class ProgressReader:
    """Reads the records a run appends to its progress file, a complete line at a time."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.partial = Path(path), 0, ""

    def read(self) -> list[Progress]:
        """The records written since the last call (none while the file does not exist)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                f.seek(self.offset)
                chunk = f.read()
                self.offset = f.tell()
        except FileNotFoundError:
            return []
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()  # an unfinished last line waits for the next call
        return [Progress.from_json(line) for line in lines if line.strip()]


def progress_callbacks(path: str | os.PathLike | None = None) -> list[Any]:
    """``[callback]`` writing progress records to ``path`` (default: ``$TRAINING_PROGRESS_FILE``),
    or ``[]`` when neither is set; add it to a trainer's ``callbacks``."""
    path = path or os.environ.get(ENV_VAR)
    return [progress_callback(Path(path))] if path else []


def progress_callback(path: Path, *, clock_fn: Callable[[], float] = time.monotonic):
    """A ``TrainerCallback`` that appends one ``Progress`` JSON line to ``path`` at the start,
    at every log (with its loss), at most every ``MIN_INTERVAL_S`` seconds in between, and at
    the end. Only the main process writes."""
    from transformers import TrainerCallback

    class ProgressFile(TrainerCallback):
        def __init__(self) -> None:
            self.t0: float | None = None
            self.loss: float | None = None
            self.last_write = float("-inf")

        def _write(self, state, *, done: bool = False) -> None:
            if not state.is_world_process_zero:
                return
            t = clock_fn()
            record = Progress(
                step=int(state.global_step),
                max_steps=int(state.max_steps or 0),
                loss=self.loss,
                elapsed=t - (self.t0 if self.t0 is not None else t),
                done=done,
            )
            with open(path, "a", encoding="utf-8") as f:
                f.write(record.to_json() + "\n")
            self.last_write = t

        def on_train_begin(self, args, state, control, **kwargs):
            self.t0 = clock_fn()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write(state)

        def on_step_end(self, args, state, control, **kwargs):
            last = state.max_steps and state.global_step >= state.max_steps
            if last or clock_fn() - self.last_write >= MIN_INTERVAL_S:
                self._write(state)

        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is not None:
                self.loss = float(loss)
                self._write(state)

        def on_train_end(self, args, state, control, **kwargs):
            self._write(state, done=True)

    return ProgressFile()
