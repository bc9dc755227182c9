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

The ``pipeline`` part measures the Celery pipeline's overhead: the end-to-end generation time of
a study (``studies.open_study`` until every GenerationBatch is done, through the embedded broker,
a real ``--pool solo`` generation worker and a throwaway SQLite database) against calling the
same backend directly on the same batches (same contexts, ``GENERATION_BATCH_SIZE``, sampling
and seeds). The study compares two registrations of the bench's model folder (backend
``vllm``, the same engine settings as the direct side), so both checkpoints generate, share the
worker's one engine, and items are built, as in a real study; the direct side generates the same
batches for both. Both engines are warmed first (the worker's through a small study of its own),
and they never generate at the same time: each repetition runs one side, then the other,
alternating the order. ``pipeline_overhead`` = best pipeline seconds / best direct seconds over
``--pipeline-reps`` repetitions; target at most 1.2. The direct side runs in a different process
from the worker, so on a busy machine the two engines' speeds differ by more than the pipeline
costs; ``pipeline_overhead_in_worker`` divides by the worker's own ``generate`` time instead
(from the responses' provenance), which isolates the queueing, database and item work.

The last line printed is one JSON object with ``vllm_tok_s``, ``hf_batched_tok_s``,
``vllm_vs_hf_batched``, ``hf_one_by_one_tok_s``, ``hf_batched_vs_one_by_one``,
``pipeline_overhead``, ``pipeline_seconds``, ``direct_seconds``,
``pipeline_overhead_in_worker``, every variant and the settings used.

    .venv/bin/python bench/generation.py --parts pipeline      # just the pipeline overhead
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
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
    # A study generated through Celery against direct calls, with the backend's defaults (the
    # fastest engine, so the overhead share is the largest) or eager.
    "pipeline": ({}, {"enforce_eager": False}),
    "pipeline_eager": ({}, {"enforce_eager": True}),
}
DEFAULT_PARTS = ("hf_batched", "hf_one_by_one", "vllm", "vllm_eager", "pipeline")


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


def run_part(part: str, model: Path, opts: argparse.Namespace) -> Measurement | dict:
    """Measure one backend configuration (or the pipeline) in this process."""
    requests = build_requests(opts.n, opts.max_new_tokens, opts.window)
    settings = PARTS[part][1]
    if part.startswith("pipeline"):
        return run_pipeline(part, model, opts)
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


# --- The Celery pipeline against direct calls (helpers: generation_pipeline.py) ----------


def run_pipeline(part: str, model: Path, opts: argparse.Namespace) -> dict:
    """Time a study through Celery against direct ``generate`` calls on the same batches."""
    from bench.generation_pipeline import (
        batch_generate_seconds,
        direct_batches,
        make_contexts,
        make_study,
        pipeline_setup,
        time_direct,
        wait_generated,
        worker_breakdown,
    )
    from evalsite.embedded import ProcessGroup, celery_worker_argv, start_embedded_redis

    def _stop(signum, frame):
        raise KeyboardInterrupt  # so ``finally`` stops the worker and the broker

    signal.signal(signal.SIGTERM, _stop)
    var = Path(tempfile.mkdtemp(prefix="bgp-", dir="/tmp"))  # unix socket paths are short
    group = ProcessGroup()
    ok = False
    try:
        worker_env = pipeline_setup(var, opts)
        from django.conf import settings

        from models.base import prompt_hash
        from pairwise.models import Response
        from pairwise.services import generation
        from pairwise.services.sampling import sampling_key
        from pairwise.services.studies import open_study

        config = {"dtype": "float32", "max_model_len": 1024, **PARTS[part][1]}
        sampling = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": opts.max_new_tokens}
        batch_size = settings.GENERATION_BATCH_SIZE
        contexts = make_contexts(opts.n, opts.window)
        expected = [prompt_hash(r.messages) for r in build_requests(opts.n, 1, opts.window)]

        group.adopt(
            "broker", start_embedded_redis(settings.VAR_DIR, settings.EMBEDDED_REDIS_SOCKET)
        )
        log = var / "worker.log"
        worker = group.start(
            "worker",
            celery_worker_argv("bench", "generation,default", "--pool", "solo"),
            env=worker_env,
            log=log,
        )
        # Warm-ups, untimed and one after the other: the worker's engine (start-up, compile)
        # through a small study of its own, then this process's engine with the same settings.
        start = time.perf_counter()
        warm = make_study(
            "warmup", contexts[:4], 1, model, config, {**sampling, "max_new_tokens": 8}
        )
        open_study(warm)
        wait_generated(warm, worker, log, opts.pipeline_timeout)
        worker_warm_s = time.perf_counter() - start
        start = time.perf_counter()
        backend = generation.backend_for(warm.comparisons.first().checkpoint_a)
        backend.generate(direct_batches(warm, batch_size)[0][2])
        direct_warm_s = time.perf_counter() - start
        print(
            f"warm-up: worker {worker_warm_s:.1f} s, direct {direct_warm_s:.1f} s",
            file=sys.stderr,
            flush=True,
        )

        reps = []
        for rep in range(opts.pipeline_reps):
            study = make_study(f"timed-{rep}", contexts, rep + 1, model, config, sampling)
            batches = direct_batches(study, batch_size)
            hashes = [
                prompt_hash(r.messages) for _, _, rs in batches[: len(batches) // 2] for r in rs
            ]
            if hashes != expected:
                raise RuntimeError("the study's prompts differ from build_requests' prompts")
            # One side after the other, never two engines generating at once; the order
            # alternates between repetitions so a drift in machine load favours neither side.
            load_1m = {}
            for side in ("direct", "pipeline") if rep % 2 == 0 else ("pipeline", "direct"):
                load_1m[side] = round(os.getloadavg()[0], 2)
                if side == "direct":
                    direct_s, direct_batch_s, direct_texts = time_direct(backend, batches)
                else:
                    start = time.perf_counter()
                    opened = open_study(study)
                    end = wait_generated(study, worker, log, opts.pipeline_timeout)
                    pipeline_s = end - start
            rows = list(
                Response.objects.filter(
                    checkpoint__in={c.pk for c, _, _ in batches},
                    sampling_key=sampling_key(study.sampling),
                ).values_list("checkpoint_id", "context_id", "raw_output", "provenance")
            )
            same = sum(direct_texts.get((ck, ctx)) == text for ck, ctx, text, _ in rows)
            # provenance["seconds"]: each response's share of its batch's ``generate`` call
            worker_generate_s = sum(p["seconds"] for *_, p in rows)
            rep_result = {
                "direct_s": round(direct_s, 3),
                "pipeline_s": round(pipeline_s, 3),
                "ratio": round(pipeline_s / direct_s, 3),
                "worker_generate_s": round(worker_generate_s, 3),
                # the same engine's own generate time as the baseline: immune to the machine
                # running one process faster than the other
                "ratio_in_worker": round(pipeline_s / worker_generate_s, 3),
                **worker_breakdown(study),
                "batches": opened["batches"],
                "responses": len(rows),
                "same_text_as_direct": same,
                "completion_tokens": sum(p["completion_tokens"] for *_, p in rows),
                "order": list(load_1m),
                "load_1m_direct": load_1m["direct"],
                "load_1m_pipeline": load_1m["pipeline"],
                "direct_batch_s": direct_batch_s,
                "worker_batch_generate_s": batch_generate_seconds(rows, batches),
            }
            print(f"pipeline rep {rep}: {json.dumps(rep_result)}", file=sys.stderr, flush=True)
            reps.append(rep_result)
        ok = True
    finally:
        group.stop()
        if ok:
            shutil.rmtree(var, ignore_errors=True)
        else:
            print(f"pipeline: kept {var} (worker.log, redis.log)", file=sys.stderr, flush=True)
    pipeline_best = min(r["pipeline_s"] for r in reps)
    direct_best = min(r["direct_s"] for r in reps)
    return {
        "pipeline_seconds": pipeline_best,
        "direct_seconds": direct_best,
        "pipeline_overhead": round(pipeline_best / direct_best, 3),
        # pipeline seconds / the worker's own generate seconds, in the best pipeline repetition
        "pipeline_overhead_in_worker": min(r["ratio_in_worker"] for r in reps),
        "reps": reps,
        "worker_warmup_s": round(worker_warm_s, 1),
        "direct_warmup_s": round(direct_warm_s, 1),
        "prompts": opts.n,
        "checkpoints": 2,
        "batch_size": batch_size,
        "engine": config,
        "sampling": sampling,
    }


def run_isolated(part: str, model: Path, argv: list[str]) -> dict:
    """Run one part in a fresh process and read its result (a JSON object) from its last line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for key, value in PARTS[part][0].items():
        if value:
            env[key] = value
        else:
            env.pop(key, None)
    cmd = [sys.executable, "-m", "bench.generation", *argv, "--part", part, "--model", str(model)]
    # A session of its own: with the kernel's autogroup scheduling (on here), CPU is shared
    # between sessions, and the pipeline's worker has a session of its own too (as under serve).
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate()
    except KeyboardInterrupt:  # SIGTERM lets the part stop what it started (a worker, a broker)
        proc.terminate()
        proc.wait(timeout=60)
        raise
    lines = stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = " | ".join(stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"part {part} exited {proc.returncode}: {tail}")
    return json.loads(lines[-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="s", help="tiny model size (training.tiny)")
    parser.add_argument("--n", type=int, default=256, help="prompts")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--window", type=int, default=10, help="history turns per prompt")
    parser.add_argument("--hf-batch-size", type=int, default=64)
    parser.add_argument("--one-by-one-n", type=int, default=16)
    parser.add_argument(
        "--pipeline-reps", type=int, default=2, help="pipeline: repetitions (best of)"
    )
    parser.add_argument(
        "--pipeline-timeout", type=float, default=1800, help="pipeline: seconds per study"
    )
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
        result = run_part(opts.part, opts.model, opts)
        print(json.dumps(result if isinstance(result, dict) else asdict(result)))
        return

    from training.tiny import build_tiny_model

    model = build_tiny_model(DEFAULT_MODEL_DIR / f"tiny-{opts.size}", size=opts.size)
    parts = [p for p in opts.parts.split(",") if p]
    for p in parts:
        if p not in PARTS:
            raise SystemExit(f"--parts: unknown {p!r}; expected {', '.join(PARTS)}")
    results: dict[str, Measurement | str] = {}
    pipelines: dict[str, dict | str] = {}
    for part in parts:
        if part.startswith("pipeline"):
            try:
                pipelines[part] = p = run_isolated(part, model, argv)
            except RuntimeError as e:
                pipelines[part] = str(e)
                print(f"{part:22s} FAILED: {e}", flush=True)
                continue
            print(
                f"{part:22s} {p['pipeline_overhead']:.3f}x: study {p['pipeline_seconds']:.2f} s "
                f"through Celery against {p['direct_seconds']:.2f} s direct "
                f"(best of {len(p['reps'])}; {p['prompts']} prompts x {p['checkpoints']} "
                f"checkpoints in batches of {p['batch_size']}); against the worker's own "
                f"generate time: {p['pipeline_overhead_in_worker']:.3f}x",
                flush=True,
            )
            for i, r in enumerate(p["reps"]):
                print(
                    f"{'':22s} rep {i}: direct {r['direct_s']:.2f} s, "
                    f"study {r['pipeline_s']:.2f} s "
                    f"({r['ratio']:.3f}x, {r['ratio_in_worker']:.3f}x in-worker); "
                    f"worker: generate {r['worker_generate_s']:.2f} s, "
                    f"batches {r['worker_batches_s']:.2f} s, span {r['worker_span_s']:.2f} s; "
                    f"load {r['load_1m_direct']}/{r['load_1m_pipeline']}",
                    flush=True,
                )
            continue
        try:
            results[part] = Measurement(**run_isolated(part, model, argv))
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

    pipeline = next((v for v in pipelines.values() if isinstance(v, dict)), {})
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
        # the first pipeline part measured (``pipeline`` by default); all of them under "pipelines"
        "pipeline_overhead": pipeline.get("pipeline_overhead"),
        "pipeline_seconds": pipeline.get("pipeline_seconds"),
        "direct_seconds": pipeline.get("direct_seconds"),
        "pipeline_overhead_in_worker": pipeline.get("pipeline_overhead_in_worker"),
        "parts": {
            p: {"tok_s": rate(p), "vs_hf_batched": ratio(p, "hf_batched")}
            for p in parts
            if not p.startswith("pipeline")
        },
        "pipelines": {k: v for k, v in pipelines.items() if isinstance(v, dict)},
        "errors": {k: v for k, v in {**results, **pipelines}.items() if isinstance(v, str)},
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
        f"batched vs one by one: {summary['hf_batched_vs_one_by_one']}x; "
        f"pipeline overhead: {summary['pipeline_overhead']}x (target <= 1.2)"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
