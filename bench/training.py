"""Training speed on CPU with the tiny model: SFT steps/s, GRPO steps/s, and GRPO with vLLM
generation against transformers generation.

    .venv/bin/python bench/training.py [--size xs] [--sft-steps 10] [--grpo-steps 3]

Each run is a separate ``python -m training.sft|grpo`` process (vLLM keeps global state), timed
by the trainer's own ``train_runtime``, so model loading and tokenisation are left out. The last
line printed is one JSON object: ``sft_steps_per_s``, ``grpo_steps_per_s``,
``grpo_vllm_steps_per_s``, ``grpo_vllm_vs_plain`` (vLLM steps/s over plain steps/s; null with a
``grpo_vllm_error`` when vLLM GRPO does not run), plus the settings used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "training" / "recipes"


def _run(module: str, args: list[str], log: Path) -> dict:
    """Run ``python -m module args``; return the checkpoint's lineage metrics."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log.open("w") as fh:
        proc = subprocess.run(
            [sys.executable, "-m", module, *args], cwd=ROOT, env=env, stdout=fh, stderr=fh
        )
    out = Path(args[args.index("--output_dir") + 1])
    if not (out / "lineage.json").is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{module} exited {proc.returncode}: {' | '.join(tail)}")
    return json.loads((out / "lineage.json").read_text())["metrics"]


def steps_per_s(metrics: dict) -> float:
    """Optimizer steps per second of training, from a checkpoint's lineage metrics."""
    return metrics["global_step"] / metrics["train_runtime_s"]


def main() -> None:
    """Run the benchmark and print the JSON summary last."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="xs")
    parser.add_argument("--sft-steps", type=int, default=10)
    parser.add_argument("--grpo-steps", type=int, default=3)
    parser.add_argument("--completion-length", type=int, default=64)
    opts = parser.parse_args()

    # Run as a script, this file's folder comes first on sys.path and this file would shadow
    # the ``training`` package: put the repository root first instead.
    sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
    from training.enrich import EnrichConfig, enrich
    from training.tiny import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    model = build_tiny_model(ROOT / "var" / "models" / f"tiny-{opts.size}", size=opts.size)
    data = work / "care.jsonl"
    enrich(EnrichConfig(out=str(data), limit=200, window=4))

    sft = _run(
        "training.sft",
        ["--config", str(RECIPES / "care_sft_tiny.yaml"), "--model_name_or_path", str(model),
         "--train_file", str(data), "--output_dir", str(work / "sft"), "--window", "4",
         "--max_steps", str(opts.sft_steps), "--logging_steps", "1"],
        work / "sft.log",
    )  # fmt: skip
    grpo_args = [
        "--config", str(RECIPES / "care_grpo_tiny.yaml"), "--model_name_or_path", str(work / "sft"),
        "--max_steps", str(opts.grpo_steps), "--limit", "64", "--window", "4",
        "--max_completion_length", str(opts.completion_length),
    ]  # fmt: skip
    plain = _run("training.grpo", [*grpo_args, "--output_dir", str(work / "plain")], work / "p.log")
    result = {
        "sft_steps_per_s": round(steps_per_s(sft), 4),
        "grpo_steps_per_s": round(steps_per_s(plain), 4),
        "grpo_vllm_steps_per_s": None,
        "grpo_vllm_vs_plain": None,
    }
    try:
        vllm = _run(
            "training.grpo",
            [*grpo_args, "--output_dir", str(work / "vllm"), "--use_vllm", "true",
             "--vllm_gpu_memory_utilization", "0.3"],
            work / "v.log",
        )  # fmt: skip
        result["grpo_vllm_steps_per_s"] = round(steps_per_s(vllm), 4)
        result["grpo_vllm_vs_plain"] = round(steps_per_s(vllm) / steps_per_s(plain), 3)
    except RuntimeError as exc:
        result["grpo_vllm_error"] = str(exc)
    result.update(
        size=opts.size,
        sft_steps=opts.sft_steps,
        sft_batch=8,
        grpo_steps=opts.grpo_steps,
        grpo_batch="2 prompts x 4 generations",
        max_completion_length=opts.completion_length,
        cpus=os.cpu_count(),
        logs=str(work),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
