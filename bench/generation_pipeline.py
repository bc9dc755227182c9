"""The pipeline part of bench/generation.py: a throwaway site, its contexts and study, the
direct side's batches, and waiting on and reading back the worker's rows. The measurement
itself (`run_pipeline`) and what it reports stay in generation.py."""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

PIPELINE_POLL_SECONDS = 0.05


def pipeline_setup(var: Path, opts: argparse.Namespace) -> dict[str, str]:
    """Point this process at a throwaway var dir and SQLite database, set Django up, migrate.

    Returns the environment a worker needs to see the same database and embedded broker."""
    env = {
        "DJANGO_SETTINGS_MODULE": "evalsite.settings",
        "EVALSITE_VAR_DIR": str(var),
        "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # the engine runs inside the solo worker
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    os.environ.pop("CELERY_BROKER_URL", None)  # the default is the embedded broker under var/
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # this process's stdout ends with the JSON
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return {**env, "LOG_LEVEL": "INFO"}


def make_contexts(n: int, window: int) -> list:
    """EvalContexts for the same ESConv histories as ``build_requests``, in the same order."""
    from pairwise.models import EvalContext
    from training.datasets import load_dialogues, turn_examples

    examples = list(turn_examples(load_dialogues("esconv", "test"), window=window))
    if n > len(examples):
        raise SystemExit(
            f"--n: the pipeline needs distinct contexts; ESConv test has "
            f"{len(examples)} examples at --window {window}, got --n {n}"
        )
    return [
        EvalContext.objects.create(
            source=e.source,
            dialogue_id=e.dialogue_id,
            turn_index=e.turn_index,
            window=window,
            history=[t.to_dict() for t in e.history],
            gold_response=e.target,
            gold_strategy=e.strategy or "",
        )
        for e in examples[:n]
    ]


def make_study(name: str, contexts: list, version: int, model: Path, config: dict, sampling):
    """A study with one comparison between two registrations of the same model folder."""
    from pairwise.models import Checkpoint, System
    from pairwise.services.studies import create_study

    pair = []
    for side in ("A", "B"):
        system, _ = System.objects.get_or_create(name=f"bench {name.split('-')[0]} {side}")
        pair.append(
            Checkpoint.objects.create(
                system=system,
                version=version,
                backend="vllm",
                path=str(model),
                backend_config=config,
                reasoning=False,
            )
        )
    return create_study(
        name, contexts=contexts, pairs=[tuple(pair)], overlap_k=1, sampling=sampling
    )


def direct_batches(study, batch_size: int) -> list[tuple]:
    """(checkpoint, contexts, requests) exactly as ``queue_study`` + ``run_batch`` make them."""
    from models.base import GenerationRequest
    from pairwise.services import generation
    from pairwise.services.sampling import sampling_params
    from training.datasets.types import Turn
    from training.prompts import to_messages

    params = sampling_params(study.sampling)
    contexts = list(study.contexts.order_by("pk"))
    out = []
    for checkpoint in generation.study_checkpoints(study):
        for i in range(0, len(contexts), batch_size):
            chunk = contexts[i : i + batch_size]
            requests = [
                GenerationRequest(
                    to_messages([Turn.from_dict(t) for t in c.history], care=checkpoint.reasoning),
                    params,
                    generation._seed(study, c.pk),
                )
                for c in chunk
            ]
            out.append((checkpoint, chunk, requests))
    return out


def wait_generated(study, worker: subprocess.Popen, log: Path, timeout: float) -> float:
    """Poll the database until every batch of ``study`` is done; the perf_counter then."""
    from pairwise.models import GenerationBatch

    done, failed = GenerationBatch.Status.DONE, GenerationBatch.Status.FAILED
    batches = GenerationBatch.objects.filter(study=study)
    deadline = time.monotonic() + timeout
    while True:
        statuses = set(batches.values_list("status", flat=True))
        if statuses and statuses <= {done, failed}:
            end = time.perf_counter()
            if failed in statuses:
                errors = list(batches.filter(status=failed).values_list("error", flat=True))
                raise RuntimeError(f"study {study.name}: batches failed: {errors[:3]}")
            return end
        if worker.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker exited with {worker.returncode}; {log}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"study {study.name}: not generated after {timeout:.0f}s; see {log}")
        time.sleep(PIPELINE_POLL_SECONDS)


def worker_breakdown(study) -> dict:
    """Where the pipeline's time went inside the worker, from the rows it wrote."""
    from pairwise.models import GenerationBatch

    rows = list(
        GenerationBatch.objects.filter(study=study).values_list("started_at", "finished_at")
    )
    first, last = min(s for s, _ in rows), max(f for _, f in rows)
    return {
        # claimed -> done: generate, plus the batch's DB work and build_items
        "worker_batches_s": round(sum((f - s).total_seconds() for s, f in rows), 3),
        # first claim -> last done: adds the hand-over between batches
        "worker_span_s": round((last - first).total_seconds(), 3),
    }


def time_direct(backend, batches: list) -> tuple[float, list[float], dict]:
    """Call ``backend.generate`` on each batch: total seconds, seconds per batch, the texts."""
    texts: dict[tuple[int, int], str] = {}
    per_batch = []
    start = time.perf_counter()
    for checkpoint, chunk, requests in batches:
        t = time.perf_counter()
        out = backend.generate(requests)
        per_batch.append(round(time.perf_counter() - t, 3))
        texts.update(((checkpoint.pk, c.pk), g.text) for c, g in zip(chunk, out, strict=True))
    return time.perf_counter() - start, per_batch, texts


def batch_generate_seconds(rows: list, batches: list) -> list[float]:
    """Each batch's ``generate`` seconds in the worker (the shares of its responses, summed)."""
    seconds = {(ck, ctx): p["seconds"] for ck, ctx, _, p in rows}
    return [
        round(sum(seconds.get((checkpoint.pk, c.pk), 0.0) for c in chunk), 3)
        for checkpoint, chunk, _ in batches
    ]
