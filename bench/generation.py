"""Generation throughput on one tiny model: vLLM against transformers, batched and one by one.

    .venv/bin/python bench/generation.py [--size s] [--n 256] [--max-new-tokens 64]

The same ``--n`` prompts (ESConv test histories, the last ``--window`` turns before each
supporter reply, through ``training.prompts.to_messages``) are generated greedily with
``--max-new-tokens`` new tokens by each backend, through the ``models`` interface the site uses.
tokens/s = completion tokens generated / wall seconds of ``generate``, after a warm-up call;
model loading is timed apart. transformers one by one runs on the first ``--one-by-one-n``
prompts only (a rate, so comparable; the JSON says how many).

Each measurement runs in its own process: vLLM's in-process engine binds OpenMP threads and
initialises torch.distributed for the whole process, which would skew anything after it.
vLLM and transformers can be measured in several configurations (``--parts``, see NOTES.md);
``vllm_tok_s`` is the backend's default (in-process, compiled, threads bound to every CPU), and
the others are reported beside it.

The last line printed is one JSON object with ``vllm_tok_s``, ``hf_batched_tok_s``,
``vllm_vs_hf_batched``, ``hf_one_by_one_tok_s``, ``hf_batched_vs_one_by_one``, every variant
and the settings used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = ROOT / "var" / "bench"

# part -> (environment overrides, backend settings). An empty value unsets the variable.
PARTS: dict[str, tuple[dict[str, str], dict]] = {
    "hf_batched": ({}, {}),
    "hf_one_by_one": ({}, {}),
    # One OpenMP thread: on a loaded machine two threads wait on each other at every op.
    "hf_batched_1thread": ({"OMP_NUM_THREADS": "1"}, {}),
    "hf_one_by_one_1thread": ({"OMP_NUM_THREADS": "1"}, {}),
    # The vLLM backend's defaults: in-process engine, compiled, threads bound to every CPU.
    "vllm": ({}, {"enforce_eager": False}),
    "vllm_eager": ({}, {"enforce_eager": True}),
    # vLLM's automatic binding: one logical CPU per physical core.
    "vllm_eager_autobind": ({"VLLM_CPU_OMP_THREADS_BIND": "auto"}, {"enforce_eager": True}),
    # vLLM's default two-process engine.
    "vllm_multiprocess": ({"VLLM_ENABLE_V1_MULTIPROCESSING": "1"}, {"enforce_eager": False}),
}
DEFAULT_PARTS = ("hf_batched", "hf_one_by_one", "vllm", "vllm_eager")


@dataclass
class Measurement:
    """One backend's run: load time, then the timed ``generate`` over all prompts."""

    name: str
    prompts: int
    completion_tokens: int
    prompt_tokens: int
    seconds: float
    load_seconds: float

    @property
    def tok_s(self) -> float:
        return self.completion_tokens / self.seconds


def _fix_sys_path() -> None:
    # Run as a script, bench/ comes first on sys.path and bench/training.py would shadow the
    # ``training`` package: put the repository root first instead.
    sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]


def build_requests(n: int, max_new_tokens: int, window: int = 10, seed: int = 0) -> list:
    """``n`` greedy requests for ESConv test histories (cycled if the split has fewer)."""
    from models.base import GenerationRequest, SamplingParams
    from training.datasets import load_dialogues, turn_examples
    from training.prompts import to_messages

    examples = list(turn_examples(load_dialogues("esconv", "test"), window=window))
    sampling = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens)
    return [
        GenerationRequest(to_messages(examples[i % len(examples)].history), sampling, seed + i)
        for i in range(n)
    ]


def measure(name: str, make_backend, requests: list, *, one_by_one: bool = False) -> Measurement:
    """Load a backend, warm it up on a few prompts, then time ``generate`` over ``requests``."""
    start = time.perf_counter()
    backend = make_backend()
    load = time.perf_counter() - start
    backend.generate(requests[:4])  # first-call costs (allocation, lazy init) stay out
    start = time.perf_counter()
    if one_by_one:
        out = [g for r in requests for g in backend.generate([r])]
    else:
        out = backend.generate(requests)
    seconds = time.perf_counter() - start
    return Measurement(
        name=name,
        prompts=len(requests),
        completion_tokens=sum(g.completion_tokens for g in out),
        prompt_tokens=sum(g.prompt_tokens for g in out),
        seconds=seconds,
        load_seconds=load,
    )


def run_part(part: str, model: Path, opts: argparse.Namespace) -> Measurement:
    """Measure one backend configuration in this process."""
    requests = build_requests(opts.n, opts.max_new_tokens, opts.window)
    settings = PARTS[part][1]
    if part.startswith("vllm"):
        from models.vllm_backend import VLLMBackend

        settings = {"dtype": "float32", "max_model_len": 1024, **settings}
        return measure(part, lambda: VLLMBackend(model, **settings), requests)
    from models.hf_backend import HFBackend

    if part.startswith("hf_batched"):
        make = lambda: HFBackend(model, dtype="float32", batch_size=opts.hf_batch_size)  # noqa: E731
        return measure(part, make, requests)
    make = lambda: HFBackend(model, dtype="float32", batch_size=1)  # noqa: E731
    return measure(part, make, requests[: opts.one_by_one_n], one_by_one=True)


def run_isolated(part: str, model: Path, argv: list[str]) -> Measurement:
    """Run one part in a fresh process and read its Measurement from its last line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for key, value in PARTS[part][0].items():
        if value:
            env[key] = value
        else:
            env.pop(key, None)
    cmd = [sys.executable, "-m", "bench.generation", *argv, "--part", part, "--model", str(model)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"part {part} exited {proc.returncode}: {tail}")
    return Measurement(**json.loads(lines[-1]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="s", help="tiny model size (training.tiny)")
    parser.add_argument("--n", type=int, default=256, help="prompts")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--window", type=int, default=10, help="history turns per prompt")
    parser.add_argument("--hf-batch-size", type=int, default=64)
    parser.add_argument("--one-by-one-n", type=int, default=16)
    parser.add_argument(
        "--parts",
        default=",".join(DEFAULT_PARTS),
        help=f"configurations to measure, comma-separated, from {', '.join(PARTS)}",
    )
    parser.add_argument("--part", help=argparse.SUPPRESS)  # internal: one measurement
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run every part in its own process, print a table, then the JSON summary last."""
    _fix_sys_path()
    argv = sys.argv[1:] if argv is None else argv
    opts = parse_args(argv)
    if opts.part:
        print(json.dumps(asdict(run_part(opts.part, opts.model, opts))))
        return

    from training.tiny import build_tiny_model

    model = build_tiny_model(DEFAULT_MODEL_DIR / f"tiny-{opts.size}", size=opts.size)
    parts = [p for p in opts.parts.split(",") if p]
    for p in parts:
        if p not in PARTS:
            raise SystemExit(f"--parts: unknown {p!r}; expected {', '.join(PARTS)}")
    results: dict[str, Measurement | str] = {}
    for part in parts:
        try:
            results[part] = run_isolated(part, model, argv)
        except RuntimeError as e:  # one broken configuration should not hide the others
            results[part] = str(e)
        r = results[part]
        if isinstance(r, Measurement):
            print(
                f"{part:22s} {r.tok_s:8.1f} tok/s  {r.completion_tokens:6d} tokens "
                f"in {r.seconds:6.2f} s over {r.prompts} prompts (load {r.load_seconds:.1f} s)",
                flush=True,
            )
        else:
            print(f"{part:22s} FAILED: {r}", flush=True)

    def rate(name: str) -> float | None:
        r = results.get(name)
        return round(r.tok_s, 1) if isinstance(r, Measurement) else None

    def ratio(a: str, b: str) -> float | None:
        x, y = rate(a), rate(b)
        return round(x / y, 2) if x and y else None

    hf_rates = [(rate(p), p) for p in parts if p.startswith("hf_batched") and rate(p)]
    best_hf = max(hf_rates)[1] if hf_rates else "hf_batched"
    summary = {
        "vllm_tok_s": rate("vllm"),
        "hf_batched_tok_s": rate("hf_batched"),
        "hf_one_by_one_tok_s": rate("hf_one_by_one"),
        "vllm_vs_hf_batched": ratio("vllm", "hf_batched"),
        "hf_batched_vs_one_by_one": ratio("hf_batched", "hf_one_by_one"),
        # Against the fastest transformers configuration measured, not just the default.
        "vllm_vs_best_hf_batched": ratio("vllm", best_hf),
        "best_hf_batched": best_hf,
        "parts": {p: {"tok_s": rate(p), "vs_hf_batched": ratio(p, "hf_batched")} for p in parts},
        "errors": {k: v for k, v in results.items() if isinstance(v, str)},
        "size": opts.size,
        "prompts": opts.n,
        "one_by_one_prompts": opts.one_by_one_n,
        "max_new_tokens": opts.max_new_tokens,
        "hf_batch_size": opts.hf_batch_size,
        "cpus": len(os.sched_getaffinity(0)),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(
        f"vLLM vs transformers batched: {summary['vllm_vs_hf_batched']}x; "
        f"batched vs one by one: {summary['hf_batched_vs_one_by_one']}x"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
