"""SFT and GRPO scripts: recipes parse, prompts match generation, only the reply is learned,
and (slow) the whole tiny pipeline trains and leaves traceable checkpoints."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from training.enrich import EnrichConfig, enrich
from training.prompts import CARE_SYSTEM_PROMPT, SYSTEM_PROMPT

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "training" / "recipes"
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from training.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-xs", size="xs")


@pytest.fixture(scope="module")
def enriched(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "care.jsonl"
    enrich(EnrichConfig(out=str(out), limit=40, window=4))
    return out


def parse(script: str, recipe: str, *overrides: str):
    if script == "sft":
        from training.sft import make_parser
    else:
        from training.grpo import make_parser
    return make_parser().parse_args_and_config(args=["--config", str(RECIPES / recipe), *overrides])


@pytest.mark.parametrize(
    ("recipe", "dataset", "care", "system"),
    [
        ("care_sft_tiny.yaml", "care", True, "CARE-SFT"),
        ("care_sft_real.yaml", "care", True, "CARE-SFT"),
        ("baseline_esconv_tiny.yaml", "esconv", False, "ESConv"),
        ("baseline_esconv_real.yaml", "esconv", False, "ESConv"),
        ("baseline_augesc_tiny.yaml", "augesc", False, "AugESC"),
        ("baseline_augesc_real.yaml", "augesc", False, "AugESC"),
        ("baseline_extes_tiny.yaml", "extes", False, "ExTES"),
        ("baseline_extes_real.yaml", "extes", False, "ExTES"),
    ],
)
def test_sft_recipes_parse(recipe, dataset, care, system):
    # A real recipe asks for bf16 on a GPU; on this CPU-only machine parse it with use_cpu.
    cpu = ["--use_cpu", "true"] if recipe.endswith("_real.yaml") else []
    args, cfg = parse("sft", recipe, "--learning_rate", "0.5", *cpu)
    assert (args.dataset, args.care, args.system_name) == (dataset, care, system)
    assert cfg.completion_only_loss is True and cfg.learning_rate == 0.5  # CLI overrides YAML
    if recipe.endswith("_real.yaml"):
        assert args.model_name_or_path == "meta-llama/Llama-3.1-8B-Instruct" and cfg.bf16
    else:
        assert args.model_name_or_path == "var/models/tiny-xs" and cfg.use_cpu


@pytest.mark.parametrize("recipe", ["care_grpo_tiny.yaml", "care_grpo_real.yaml"])
def test_grpo_recipes_parse(recipe):
    args, cfg = parse("grpo", recipe, *(["--use_cpu", "true"] if "real" in recipe else []))
    assert args.system_name == "CARE-SFT-RL" and args.care
    assert cfg.reward_weights == [0.0, 0.0, 0.0, 1.0]
    assert cfg.use_vllm is recipe.endswith("_real.yaml")
    # a completion cut at the length limit never trains; a runaway reply loses the format reward
    assert cfg.mask_truncated_completions is True and args.max_reply_words == 200


def test_grpo_rewards_are_named_in_the_recipe(tmp_path):
    """A recipe names the rewards it trains on; TRL gets every reward, in the registry's order,
    those not named with weight 0. Unknown names and positional weights stop with an error."""
    from training.grpo import make_parser

    args, cfg = parse("grpo", "care_grpo_strategy_tiny.yaml")
    assert args.rewards == {"strategy": 1.0, "care": 1.0}
    assert cfg.reward_weights == [0.0, 0.0, 1.0, 1.0]
    _, cfg = parse("grpo", "care_grpo_tiny.yaml", "--rewards", "strategy=2,care")
    assert cfg.reward_weights == [0.0, 0.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="unknown reward 'nodes'; expected one of format, "):
        parse("grpo", "care_grpo_tiny.yaml", "--rewards", "nodes=1")
    positional = tmp_path / "positional.yaml"
    text = (RECIPES / "care_grpo_tiny.yaml").read_text()
    positional.write_text(text.replace("rewards: {care: 1.0}", "reward_weights: [0, 0, 0, 1]"))
    with pytest.raises(ValueError, match="positional weights are not read"):
        make_parser().parse_args_and_config(args=["--config", str(positional)])


def test_bad_data_arguments_are_named():
    from training.sft import DataArguments

    with pytest.raises(ValueError, match="train_file"):
        DataArguments(dataset="care")
    with pytest.raises(ValueError, match="care: false"):
        DataArguments(dataset="esconv", care=True)
    with pytest.raises(ValueError, match="dataset='nope'"):
        DataArguments(dataset="nope", care=False)


def test_care_rows_use_the_generation_prompt(enriched):
    from training.sft import DataArguments, build_examples

    rows = build_examples(DataArguments(dataset="care", train_file=str(enriched)))
    record = json.loads(enriched.read_text().splitlines()[0])
    assert len(rows) == 40
    assert rows[0]["prompt"][0] == {"role": "system", "content": CARE_SYSTEM_PROMPT}
    assert rows[0]["prompt"][-1]["role"] == "user"
    assert rows[0]["completion"] == [{"role": "assistant", "content": record["target"]}]
    plain = build_examples(DataArguments(dataset="care", train_file=str(enriched), care=False))
    assert plain[0]["prompt"][0]["content"] == SYSTEM_PROMPT
    assert plain[0]["completion"][0]["content"] == record["response"]


def test_baseline_rows_have_no_reasoning():
    from training.sft import DataArguments, build_examples

    rows = build_examples(DataArguments(dataset="esconv", care=False, limit=25, window=4))
    assert len(rows) == 25
    for row in rows:
        assert row["prompt"][0]["content"] == SYSTEM_PROMPT and len(row["prompt"]) <= 6
        assert "<think>" not in row["completion"][0]["content"]


@pytest.mark.parametrize("dataset", ["augesc", "extes"])
def test_baseline_rows_from_fixtures(dataset):
    from training.sft import DataArguments, build_examples

    data_dir = FIXTURES / dataset  # laid out like the shared data folder
    if not (data_dir / dataset).is_dir():
        pytest.skip(f"{data_dir / dataset} not written yet (datasets helper)")
    # A fixture is a handful of dialogues: read all of its splits.
    args = DataArguments(dataset=dataset, care=False, data_dir=str(data_dir), split=None)
    rows = build_examples(args)
    assert rows and all(r["completion"][0]["content"].strip() for r in rows)


def test_prompt_tokens_are_masked(tiny_model, enriched, tmp_path):
    """The collator's labels are -100 on the prompt and equal the tokens of the completion."""
    from transformers import AutoTokenizer
    from trl import SFTConfig

    from training.sft import DataArguments, build_examples, build_trainer

    args = DataArguments(
        model_name_or_path=str(tiny_model), dataset="care", train_file=str(enriched), limit=2
    )
    cfg = SFTConfig(
        output_dir=str(tmp_path / "o"), completion_only_loss=True, report_to="none", use_cpu=True
    )
    trainer = build_trainer(args, cfg)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = build_examples(args)
    for i, row in enumerate(rows):
        ids, labels = batch["input_ids"][i], batch["labels"][i]
        learned = ids[labels != -100]
        assert (labels[labels != -100] == learned).all()
        masked_text = tok.decode(ids[(labels == -100) & (batch["attention_mask"][i] == 1)])
        learned_text = tok.decode(learned)
        assert CARE_SYSTEM_PROMPT in masked_text and "<think><context>" not in masked_text
        assert masked_text.endswith("<|im_start|>assistant\n")  # the whole prompt, no more
        assert learned_text.startswith("<think><context>")
        assert learned_text.strip().endswith(row["completion"][0]["content"] + "<|im_end|>")


def test_grpo_prompts_carry_the_gold_strategy():
    from training.datasets.strategies import ESCONV_STRATEGIES
    from training.grpo import GRPOArguments, build_prompts

    rows = build_prompts(GRPOArguments(limit=12, window=4, max_reply_words=50))
    assert len(rows) == 12
    assert all(r["strategy"] in ESCONV_STRATEGIES for r in rows)
    assert all(r["max_reply_words"] == 50 for r in rows)  # a column: TRL passes it to rewards
    assert all(r["prompt"][0]["content"] == CARE_SYSTEM_PROMPT for r in rows)
    with pytest.raises(ValueError, match="gold strategies"):
        GRPOArguments(dataset="augesc")


def test_strategy_order_keeps_every_prefix_near_the_pool_shares():
    """stratified: each prefix of the prompts is within one prompt of the pool's share of every
    strategy, and no prompt is lost or repeated; balanced: the strategies in turn, equal counts;
    file: as read. Either of the first two turns TRL's shuffle off (or the order is lost)."""
    from collections import Counter

    from training.grpo import GRPOArguments, build_prompts, order_by_strategy

    rows = build_prompts(GRPOArguments(limit=400, window=2))
    pool = Counter(r["strategy"] for r in rows)
    ordered = order_by_strategy(rows, "stratified", seed=3)
    assert sorted(map(id, ordered)) == sorted(map(id, rows))
    seen: Counter = Counter()
    for n, row in enumerate(ordered, 1):
        seen[row["strategy"]] += 1
        for label, count in pool.items():
            assert abs(seen[label] - count * n / len(rows)) <= 1.0 + 1e-9, (n, label)
    assert ordered != order_by_strategy(rows, "stratified", seed=4)  # seeded within a label
    balanced = order_by_strategy(rows, "balanced")
    assert len(balanced) == len(pool) * min(pool.values())
    first = [r["strategy"] for r in balanced[: len(pool)]]
    assert sorted(first) == sorted(pool) and set(
        Counter(r["strategy"] for r in balanced).values()
    ) == {min(pool.values())}
    assert order_by_strategy(rows, "file") == rows
    with pytest.raises(ValueError, match="strategy_order='random': expected one of"):
        GRPOArguments(strategy_order="random")


def _supporter_after_supporter(rows):
    return [r for r in rows if r["prompt"][-1]["role"] == "assistant"]


def test_a_supporter_turn_after_a_supporter_turn_keeps_the_real_context():
    """The ESConv convention: no invented "..." seeker turn; the placeholder is an option."""
    from training.sft import DataArguments, build_examples

    rows = build_examples(DataArguments(dataset="esconv", care=False, limit=200, window=4))
    follow_ups = _supporter_after_supporter(rows)
    assert follow_ups, "ESConv has supporter turns right after supporter turns"
    assert not any(m["content"] == "..." for r in rows for m in r["prompt"])
    legacy = build_examples(
        DataArguments(dataset="esconv", care=False, limit=200, window=4, seeker_placeholder="...")
    )
    assert not _supporter_after_supporter(legacy)
    assert sum(r["prompt"][-1] == {"role": "user", "content": "..."} for r in legacy) == len(
        follow_ups
    )


def test_the_chat_template_answers_after_an_assistant_turn_with_a_new_one(tiny_model, tmp_path):
    """TRL renders a prompt that ends on the supporter with a fresh assistant turn (it does not
    continue the previous one), and the loss still covers exactly the completion."""
    from transformers import AutoTokenizer
    from trl import SFTConfig

    from training.sft import DataArguments, build_examples, build_trainer

    args = DataArguments(
        model_name_or_path=str(tiny_model), dataset="esconv", care=False, limit=200, window=4
    )
    rows = _supporter_after_supporter(build_examples(args))[:2]
    cfg = SFTConfig(output_dir=str(tmp_path / "o"), report_to="none", use_cpu=True)
    trainer = build_trainer(args, cfg, rows)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    tok = AutoTokenizer.from_pretrained(tiny_model)
    for i, row in enumerate(rows):
        ids, labels = batch["input_ids"][i], batch["labels"][i]
        masked = tok.decode(ids[(labels == -100) & (batch["attention_mask"][i] == 1)])
        previous = row["prompt"][-1]["content"]
        assert masked.endswith(f"{previous}<|im_end|>\n<|im_start|>assistant\n")
        learned = tok.decode(ids[labels != -100])
        assert learned.strip() == row["completion"][0]["content"] + "<|im_end|>"


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tiny_model, enriched, tmp_path):
    """tiny model -> offline enrichment (40) -> SFT (4 steps) -> GRPO (2 steps) -> lineage."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training import grpo, sft
    from training.lineage import lineage_chain, lineage_sha256, read_lineage

    sft_dir, rl_dir = tmp_path / "sft", tmp_path / "rl"
    sft.main(
        ["--config", str(RECIPES / "care_sft_tiny.yaml"), "--model_name_or_path", str(tiny_model),
         "--train_file", str(enriched), "--output_dir", str(sft_dir), "--max_steps", "4",
         "--logging_steps", "1", "--per_device_train_batch_size", "4", "--window", "4"]
    )  # fmt: skip
    grpo.main(
        ["--config", str(RECIPES / "care_grpo_tiny.yaml"), "--model_name_or_path", str(sft_dir),
         "--output_dir", str(rl_dir), "--max_steps", "2", "--limit", "8", "--window", "4",
         "--num_generations", "2", "--per_device_train_batch_size", "4",
         "--max_completion_length", "24"]
    )  # fmt: skip
    for folder in (sft_dir, rl_dir):
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert model.config.vocab_size > 100
    sft_lineage, rl_lineage = read_lineage(sft_dir), read_lineage(rl_dir)
    assert sft_lineage["system"] == "CARE-SFT" and rl_lineage["system"] == "CARE-SFT-RL"
    assert sft_lineage["parent"]["path"] == str(Path(tiny_model).resolve())
    assert rl_lineage["parent"] == {
        "path": str(sft_dir.resolve()),
        "lineage_sha256": lineage_sha256(sft_dir),
    }
    assert [r["system"] for r in lineage_chain(rl_dir)] == ["CARE-SFT-RL", "CARE-SFT"]
    assert str(Path(enriched).resolve()) in sft_lineage["data"]["files"]
    assert sft_lineage["data"]["n_examples"] == 40
    assert math.isfinite(sft_lineage["metrics"]["final_loss"])
    assert sft_lineage["metrics"]["global_step"] == 4
    rewards = rl_lineage["metrics"]["rewards"]
    assert set(rewards) == {"format_reward", "structure_reward", "strategy_reward", "care_reward"}
    assert all(0.0 <= r["mean"] <= 3.0 for r in rewards.values())
    assert rl_lineage["metrics"]["global_step"] == 2
    assert rl_lineage["config"]["GRPOConfig"]["reward_weights"] == [0.0, 0.0, 0.0, 1.0]
    # how each was prompted and how long it could write, for evaluation to do the same
    assert rl_lineage["generation"] == {
        "window": 4,
        "max_new_tokens": 24,
        "budget_from": "max_completion_length",
        "seeker_placeholder": None,
    }
    gen = sft_lineage["generation"]
    assert gen["window"] == 4 and gen["seeker_placeholder"] is None
    tok = AutoTokenizer.from_pretrained(sft_dir)
    targets = [json.loads(line)["target"] for line in enriched.read_text().splitlines()]
    longest = max(len(tok(t, add_special_tokens=False)["input_ids"]) for t in targets)
    assert gen["max_new_tokens"] == longest + 1  # the longest target and its end-of-turn token


def test_a_diverging_run_stops_at_once_naming_the_step(tiny_model, enriched, tmp_path):
    """Once the loss or gradient norm is NaN, training stops with a clear error and saves no
    checkpoint, rather than stepping on NaN weights (on a GPU, GRPO then crashed inside
    sampling with a device-side assert). A NaN in one weight stands in for the divergence."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training import sft

    broken = tmp_path / "broken"
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        model.model.norm.weight[0] = float("nan")
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(broken)
    out = tmp_path / "sft"
    named = r"step 1: (loss|grad_norm) is nan.*learning_rate"
    with pytest.raises(sft.TrainingDiverged, match=named):
        sft.main(
            ["--config", str(RECIPES / "care_sft_tiny.yaml"), "--model_name_or_path", str(broken),
             "--train_file", str(enriched), "--output_dir", str(out), "--max_steps", "5",
             "--logging_steps", "1", "--per_device_train_batch_size", "4", "--window", "4"]
        )  # fmt: skip
    assert not (out / "lineage.json").exists()
