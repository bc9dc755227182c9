"""Training speed on CPU with the tiny model: SFT steps/s, GRPO steps/s, and GRPO with vLLM
generation against transformers generation.

    .venv/bin/python bench/training.py [--size xs] [--sft-steps 10] [--grpo-steps 3]

Each run is a separate ``python -m training.sft|grpo`` process (vLLM keeps global state), timed
by the trainer's own ``train_runtime``, so model loading and tokenisation are left out. The last
line printed is one JSON object: ``sft_steps_per_s``, ``grpo_steps_per_s``,
``grpo_vllm_steps_per_s``, ``grpo_vllm_vs_plain`` (vLLM steps/s over plain steps/s; null with a
``grpo_vllm_error`` when vLLM GRPO does not run), plus the settings used.

    .venv/bin/python bench/training.py --strategy [--size s] [--grpo-recipe RECIPE.yaml]

``--strategy`` instead asks whether GRPO teaches the tiny model its strategy (issue #20, item
7): SFT then GRPO on the ``s`` size, each checkpoint scored greedily on the same held-out
ESConv contexts (``training.strategy_eval``; 256 valid turns by default). It prints each
stage's wall and CPU seconds, then one JSON object whose last keys are ``strategy_acc_sft``,
``strategy_acc_grpo`` and ``strategy_gain_ci_low`` (the lower end of the 95% paired-bootstrap
interval of GRPO - SFT; the target is > 0). ``--sft-checkpoint DIR`` reuses a trained SFT
model; ``--grpo-set KEY=VALUE`` (repeatable) overrides a recipe value for an experiment.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
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
    parser.add_argument("--size", default=None, help="tiny size (default xs; s with --strategy)")
    parser.add_argument("--sft-steps", type=int, default=None, help="default 10; --strategy: 150")
    parser.add_argument("--grpo-steps", type=int, default=None, help="default 3; else recipe")
    parser.add_argument("--completion-length", type=int, default=64)
    parser.add_argument("--strategy", action="store_true", help="held-out strategy accuracy mode")
    parser.add_argument("--grpo-recipe", default="care_grpo_strategy_tiny.yaml")
    parser.add_argument("--sft-checkpoint", type=Path, help="reuse this SFT model (--strategy)")
    parser.add_argument("--grpo-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--enrich-limit", type=int, default=1200)
    parser.add_argument("--contexts", type=int, default=256)
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, help="folder for data, checkpoints and logs")
    opts = parser.parse_args()

    # Run as a script, this file's folder comes first on sys.path and this file would shadow
    # the ``training`` package: put the repository root first instead.
    sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
    if opts.strategy:
        strategy_main(opts)
        return
    opts.size = opts.size or "xs"
    opts.sft_steps = 10 if opts.sft_steps is None else opts.sft_steps
    opts.grpo_steps = 3 if opts.grpo_steps is None else opts.grpo_steps
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


class Stage:
    """Wall and CPU seconds of one stage: this process's CPU plus its finished children's."""

    def __init__(self, name: str, timings: dict[str, dict[str, float]]) -> None:
        self.name, self.timings = name, timings

    @staticmethod
    def _cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def __enter__(self) -> Stage:
        self.wall, self.cpu = time.monotonic(), self._cpu()
        print(f"{self.name} ...", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        wall, cpu = time.monotonic() - self.wall, self._cpu() - self.cpu
        self.timings[self.name] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
        print(f"{self.name}: {wall:.0f}s wall, {cpu:.0f}s CPU (load {os.getloadavg()[0]:.1f})")


def strategy_main(opts: argparse.Namespace) -> None:
    """SFT, then GRPO, on the tiny model; held-out strategy accuracy of both and the gain."""
    import torch

    from training.enrich import EnrichConfig, enrich
    from training.strategy_eval import compare, evaluate_strategy
    from training.tiny import build_tiny_model

    torch.set_num_threads(opts.threads)
    os.environ["OMP_NUM_THREADS"] = str(opts.threads)  # the training subprocesses
    size = opts.size or "s"
    work = opts.work or Path(tempfile.mkdtemp(prefix="bench-strategy-"))
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, dict[str, float]] = {}
    sft_dir = opts.sft_checkpoint
    if sft_dir is None:
        sft_steps = 150 if opts.sft_steps is None else opts.sft_steps
        with Stage("base model and data", timings):
            model = build_tiny_model(ROOT / "var" / "models" / f"tiny-{size}", size=size)
            data = work / "care.jsonl"
            enrich(EnrichConfig(out=str(data), limit=opts.enrich_limit, window=2))
        sft_dir = work / "sft"
        with Stage("SFT", timings):
            _run(
                "training.sft",
                ["--config", str(RECIPES / "care_sft_tiny.yaml"), "--model_name_or_path",
                 str(model), "--train_file", str(data), "--output_dir", str(sft_dir),
                 "--max_steps", str(sft_steps)],
                work / "sft.log",
            )  # fmt: skip
    grpo_args = ["--config", str(RECIPES / opts.grpo_recipe), "--model_name_or_path",
                 str(sft_dir), "--output_dir", str(work / "grpo")]  # fmt: skip
    if opts.grpo_steps is not None:
        grpo_args += ["--max_steps", str(opts.grpo_steps)]
    for setting in opts.grpo_set:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise SystemExit(f"--grpo-set {setting!r}: expected KEY=VALUE")
        grpo_args += [f"--{key}", *value.split()]  # e.g. "rewards=strategy=1,care=1"
    with Stage("GRPO", timings):
        grpo = _run("training.grpo", grpo_args, work / "grpo.log")
    evals = {}
    for name, ckpt in (("sft", sft_dir), ("grpo", work / "grpo")):
        with Stage(f"eval {name}", timings):
            evals[name] = evaluate_strategy(str(ckpt), n=opts.contexts, split=opts.split)
        acc = evals[name].accuracy
        print(
            f"  {name}: strategy {acc.correct}/{acc.n} = {acc.accuracy:.3f} "
            f"[{acc.ci_low:.3f}, {acc.ci_high:.3f}], clean chains {evals[name].clean_share:.2f}, "
            f"predicted {evals[name].summary()['predicted']}"
        )
    gain = compare(evals["grpo"], evals["sft"], seed=0)
    print(
        f"GRPO - SFT: {gain.gain:+.3f} [{gain.ci_low:+.3f}, {gain.ci_high:+.3f}] "
        f"(GRPO only {gain.new_only}, SFT only {gain.old_only}; "
        f"Wald [{gain.wald_low:+.3f}, {gain.wald_high:+.3f}])"
    )
    train_cpu = sum(t["cpu_s"] for k, t in timings.items() if not k.startswith("eval"))
    result = {
        "size": size,
        "grpo_recipe": opts.grpo_recipe,
        "grpo_set": opts.grpo_set,
        "sft_checkpoint": str(sft_dir),
        "split": opts.split,
        "contexts": opts.contexts,
        "threads": opts.threads,
        "timings": timings,
        "train_cpu_s": round(train_cpu, 1),
        "total_cpu_s": round(sum(t["cpu_s"] for t in timings.values()), 1),
        "total_wall_s": round(sum(t["wall_s"] for t in timings.values()), 1),
        "grpo_rewards": grpo.get("rewards"),
        "strategy_acc_sft_ci": [round(evals["sft"].accuracy.ci_low, 4),
                                round(evals["sft"].accuracy.ci_high, 4)],
        "strategy_acc_grpo_ci": [round(evals["grpo"].accuracy.ci_low, 4),
                                 round(evals["grpo"].accuracy.ci_high, 4)],
        "care_clean_share_sft": round(evals["sft"].clean_share, 4),
        "care_clean_share_grpo": round(evals["grpo"].clean_share, 4),
        "strategy_gain": round(gain.gain, 4),
        "strategy_gain_ci_high": round(gain.ci_high, 4),
        "strategy_gain_wald": [round(gain.wald_low, 4), round(gain.wald_high, 4)],
        "logs": str(work),
        # The three headline numbers, last.
        "strategy_acc_sft": round(evals["sft"].accuracy.accuracy, 4),
        "strategy_acc_grpo": round(evals["grpo"].accuracy.accuracy, 4),
        "strategy_gain_ci_low": round(gain.ci_low, 4),
    }  # fmt: skip
    (work / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
