"""The training and generation paths on a CUDA GPU, against the CPU path in the same run.

    python bench/gpu.py [--out var/gpu] [--sft-steps 150] [--grpo-steps 60] [--cpu-steps 20]

What it runs, each step through the project's own entry points:
1. the tiny Llama model and tokenizer (``training.tiny``) and 1,200 offline CARE chains
   (``training.enrich``), as the demo does;
2. CARE SFT with the tiny recipe on the GPU in bf16 (``--use_cpu false --bf16 true``), and the
   same recipe for ``--cpu-steps`` steps on the CPU in fp32: the baseline;
3. CARE GRPO from that SFT checkpoint on the GPU in bf16, with the hierarchical rewards logged;
4. generation through ``models.hf_backend`` on ESConv test contexts, on the GPU in bf16 and on
   the CPU in fp32, with the share of outputs that are a complete CARE chain and a reply.

Without a GPU it stops with a message. The last line is one JSON object: ``sft_steps_per_s``,
``sft_gpu_vs_cpu``, ``grpo_steps_per_s``, ``grpo_reward_first`` / ``grpo_reward_last`` (the
trained hierarchical reward), ``gen_tokens_per_s``, ``gen_gpu_vs_cpu``, ``gen_care_ok``, ``device``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RECIPES = REPO / "training" / "recipes"
ON_GPU = ["--use_cpu", "false"]  # the tiny recipes say CPU (and fp32)

from bench.training import steps_per_s  # noqa: E402 (needs REPO on sys.path)
from training.lineage import read_lineage  # noqa: E402


def module(name: str, *args: str) -> None:
    """Run ``python -m name args`` with its output shown; stop on failure."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", name, *args], cwd=REPO, env=env)
    if proc.returncode != 0:
        sys.exit(f"python -m {name} failed with exit status {proc.returncode}")


def metrics(checkpoint: Path) -> dict:
    return read_lineage(checkpoint)["metrics"]


def generate(checkpoint: Path, device: str, dtype: str, n: int) -> dict:
    """Greedy CARE replies to the last seeker turn of ``n`` ESConv test contexts."""
    from models.base import GenerationRequest, SamplingParams
    from models.care_format import parse_care_output
    from models.hf_backend import HFBackend
    from training.datasets import load_dialogues
    from training.datasets.examples import turn_examples
    from training.prompts import to_messages

    examples = list(turn_examples(load_dialogues("esconv", "test"), window=2))[:n]
    sampling = SamplingParams(temperature=0.0, max_new_tokens=160)
    requests = [
        GenerationRequest(to_messages(e.history, care=True), sampling, seed=i)
        for i, e in enumerate(examples)
    ]
    backend = HFBackend(checkpoint, device=device, dtype=dtype, batch_size=32)
    # Warm-up with the same batches: on CUDA the first pass over new shapes picks kernels
    # (measured on an H200: 9.8 s for the first 32 x 161-token batch, 0.64 s after).
    backend.generate(requests)
    started = time.monotonic()
    out = backend.generate(requests)
    took = time.monotonic() - started
    tokens = sum(g.completion_tokens for g in out)
    ok = sum(parse_care_output(g.text).ok for g in out)
    return {"tokens_per_s": tokens / took, "care_ok": ok / len(out), "n": len(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="var/gpu")
    parser.add_argument("--sft-steps", type=int, default=150)
    parser.add_argument("--grpo-steps", type=int, default=60)
    parser.add_argument("--cpu-steps", type=int, default=20)
    parser.add_argument("--contexts", type=int, default=128)
    parser.add_argument(
        "--grpo-bf16",
        action="store_true",
        help="GRPO in bf16 too (at the tiny recipe's learning rate it reached NaN on an H200)",
    )
    a = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: bench/gpu.py measures the GPU path (run it on a GPU machine)")
    device = torch.cuda.get_device_name(0)
    out = (REPO / a.out).resolve()
    tiny, chains = out / "tiny-xs", out / "care_offline.jsonl"
    sft_gpu, sft_cpu, grpo = out / "care-sft-gpu", out / "care-sft-cpu", out / "care-grpo-gpu"
    print(f"device: {device}; torch {torch.__version__}", flush=True)

    module("training.tiny", "--out", str(tiny), "--size", "xs")
    enrich = ["--config", str(RECIPES / "enrich_offline.yaml"), "--limit", "1200"]
    module("training.enrich", *enrich, "--out", str(chains))

    sft = ["--config", str(RECIPES / "care_sft_tiny.yaml"), "--model_name_or_path", str(tiny)]
    sft += ["--train_file", str(chains)]
    bf16 = [*ON_GPU, "--bf16", "true"]
    module(
        "training.sft", *sft, *bf16, "--max_steps", str(a.sft_steps), "--output_dir", str(sft_gpu)
    )
    module("training.sft", *sft, "--max_steps", str(a.cpu_steps), "--output_dir", str(sft_cpu))
    m_gpu, m_cpu = metrics(sft_gpu), metrics(sft_cpu)
    sft_rate, cpu_rate = steps_per_s(m_gpu), steps_per_s(m_cpu)
    print(
        f"SFT: GPU {sft_rate:.2f} steps/s (final loss {m_gpu['final_loss']:.3f}), "
        f"CPU {cpu_rate:.2f} steps/s",
        flush=True,
    )

    rl = ["--config", str(RECIPES / "care_grpo_tiny.yaml"), "--model_name_or_path", str(sft_gpu)]
    rl_gpu = [*ON_GPU, "--bf16", "true" if a.grpo_bf16 else "false"]
    module(
        "training.grpo", *rl, *rl_gpu, "--max_steps", str(a.grpo_steps), "--output_dir", str(grpo)
    )
    m_rl = metrics(grpo)
    rewards, rl_rate = m_rl.get("rewards", {}), steps_per_s(m_rl)
    print(f"GRPO: {rl_rate:.2f} steps/s; rewards {rewards}", flush=True)

    on_gpu = generate(grpo, "cuda", "bfloat16", a.contexts)
    on_cpu = generate(grpo, "cpu", "float32", a.contexts)
    print(f"generation: GPU {on_gpu}, CPU {on_cpu}", flush=True)

    care = rewards.get("care_reward", {})
    print(
        json.dumps(
            {
                "sft_steps_per_s": round(sft_rate, 2),
                "sft_cpu_steps_per_s": round(cpu_rate, 2),
                "sft_gpu_vs_cpu": round(sft_rate / cpu_rate, 2),
                "sft_final_loss": round(m_gpu["final_loss"], 3),
                "grpo_steps_per_s": round(rl_rate, 2),
                "grpo_reward_first": care.get("first"),
                "grpo_reward_last": care.get("last"),
                "gen_tokens_per_s": round(on_gpu["tokens_per_s"], 1),
                "gen_gpu_vs_cpu": round(on_gpu["tokens_per_s"] / on_cpu["tokens_per_s"], 2),
                "gen_care_ok": round(on_gpu["care_ok"], 3),
                "gen_care_ok_cpu": round(on_cpu["care_ok"], 3),
                "device": device,
            }
        )
    )


if __name__ == "__main__":
    main()
