"""Strategy accuracy, its Wilson interval and the paired gain (training/strategy_eval.py).

Published values: Newcombe (1998), "Two-sided confidence intervals for the single proportion",
Statistics in Medicine 17:857-872, Table I (Wilson score, method 3); Agresti, "An Introduction
to Categorical Data Analysis" (comparing dependent proportions): the presidential-approval survey,
n = 1600 with 150 and 86 discordant pairs, difference 0.04, SE 0.0095, 95% CI (0.021, 0.059).
"""

from __future__ import annotations

import numpy as np
import pytest

from training.strategy_eval import (
    accuracy_ci,
    heldout_examples,
    paired_gain,
    strategy_correct,
)


def flags(ones: int, n: int) -> list[int]:
    return [1] * ones + [0] * (n - ones)


@pytest.mark.parametrize(
    ("ones", "n", "low", "high"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611)],
)
def test_wilson_interval_matches_newcombe(ones, n, low, high):
    result = accuracy_ci(flags(ones, n))
    assert (result.correct, result.n) == (ones, n)
    assert result.accuracy == pytest.approx(ones / n)
    assert result.ci_low == pytest.approx(low, abs=5e-5)
    assert result.ci_high == pytest.approx(high, abs=5e-5)


def test_accuracy_rejects_bad_input():
    with pytest.raises(ValueError, match="correct: expected 0/1"):
        accuracy_ci([1, 0, 2])
    with pytest.raises(ValueError, match="correct: no contexts"):
        accuracy_ci([])


def agresti_pairs() -> tuple[np.ndarray, np.ndarray]:
    """794 approve both times, 150 first only, 86 second only, 570 neither."""
    first = np.array(flags(794, 794) + flags(150, 150) + flags(0, 86) + flags(0, 570))
    second = np.array(flags(794, 794) + flags(0, 150) + flags(86, 86) + flags(0, 570))
    return first, second


def test_wald_interval_matches_agresti():
    first, second = agresti_pairs()
    gain = paired_gain(first, second, seed=0, n_boot=2000)
    assert (gain.new_only, gain.old_only, gain.n) == (150, 86, 1600)
    assert gain.gain == pytest.approx(0.04)
    assert gain.wald_low == pytest.approx(0.021, abs=5e-4)
    assert gain.wald_high == pytest.approx(0.059, abs=5e-4)
    # With 1600 pairs the bootstrap interval is close to the normal one.
    assert gain.ci_low == pytest.approx(0.021, abs=0.004)
    assert gain.ci_high == pytest.approx(0.059, abs=0.004)


def test_paired_gain_is_seeded_and_paired():
    rng = np.random.default_rng(1)
    old = rng.integers(0, 2, 300)
    new = old.copy()
    new[:30] = 1  # new is right wherever old is, and on some more contexts
    a = paired_gain(new, old, seed=7, n_boot=500)
    b = paired_gain(new, old, seed=7, n_boot=500)
    assert a == b
    assert a.old_only == 0 and a.new_only == int((old[:30] == 0).sum())
    assert a.ci_low > 0  # never worse on any context: the interval excludes 0
    # Identical predictions: no gain and no width, whatever the accuracy.
    same = paired_gain(old, old, seed=0, n_boot=500)
    assert (same.gain, same.ci_low, same.ci_high, same.wald_low, same.wald_high) == (0, 0, 0, 0, 0)
    # An unpaired view of the same accuracies would be much wider than the paired one.
    assert a.ci_high - a.ci_low < 0.1


def test_paired_gain_needs_the_same_contexts():
    with pytest.raises(ValueError, match="correct_new has 3 contexts but correct_old has 2"):
        paired_gain([1, 0, 1], [1, 0], seed=0)
    with pytest.raises(ValueError, match="n_boot=10"):
        paired_gain([1], [0], seed=0, n_boot=10)


def test_strategy_correct_normalises_and_counts_missing_as_wrong():
    predicted = ["questions", "Reflection of Feelings", None, "Empathy", "Others"]
    gold = ["Question", "Reflection of feelings", "Others", "Others", "Information"]
    assert strategy_correct(predicted, gold) == [True, True, False, False, False]
    with pytest.raises(ValueError, match="2 predicted strategies but 1 gold"):
        strategy_correct(["Question", "Others"], ["Question"])


def test_heldout_contexts_are_reproducible_and_not_training_data():
    a = heldout_examples(256, split="valid", window=2, seed=0)
    b = heldout_examples(256, split="valid", window=8, seed=0)
    assert len(a) == 256
    assert [(x.dialogue_id, x.turn_index) for x in a] == [(x.dialogue_id, x.turn_index) for x in b]
    assert all(x.strategy and "/valid/" in x.dialogue_id for x in a)
    assert all(len(x.history) <= 2 for x in a)
    other = heldout_examples(256, split="valid", window=2, seed=1)
    assert [x.turn_index for x in other] != [x.turn_index for x in a]
    with pytest.raises(ValueError, match="split='train'"):
        heldout_examples(10, split="train")


def test_module_doctests():
    import doctest

    import training.strategy_eval

    result = doctest.testmod(training.strategy_eval)
    assert result.attempted > 0 and result.failed == 0, result


def test_strategy_recipe_parses_with_its_levers():
    from pathlib import Path

    from training.grpo import make_parser

    recipe = Path(__file__).resolve().parents[2] / "training/recipes/care_grpo_strategy_tiny.yaml"
    args, cfg = make_parser().parse_args_and_config(args=["--config", str(recipe)])
    assert args.care and args.window == 2 and args.limit == 4096
    # format, structure, strategy, care: the strategy counts on its own as well as in care
    assert cfg.reward_weights == [0.0, 0.0, 1.0, 1.0]
    assert cfg.temperature == 1.0 and cfg.num_generations == 8 and cfg.max_steps == 30
    assert cfg.mask_truncated_completions is True and cfg.use_cpu and not cfg.bf16


def test_sampled_evaluation_is_seeded_per_context_and_recorded(tiny_model_dir):
    """With a temperature (a study's sampling, as the demo's clean-chain check uses), each
    context gets its own seed, so the same run twice gives the same outputs, and the settings say
    how the outputs were made. Greedy stays the default."""
    from training.strategy_eval import evaluate_strategy

    how = dict(n=6, split="test", max_new_tokens=12, temperature=0.7, top_p=0.9, batch_size=6)
    a = evaluate_strategy(str(tiny_model_dir), **how)
    b = evaluate_strategy(str(tiny_model_dir), **how)
    assert (a.statuses, a.predicted) == (b.statuses, b.predicted)
    assert a.settings["temperature"] == 0.7 and a.settings["top_p"] == 0.9
    assert a.settings["max_new_tokens"] == 12 and a.settings["split"] == "test"
    assert 0.0 <= a.clean_share <= 1.0 and len(a.correct) == 6
    greedy = evaluate_strategy(str(tiny_model_dir), n=2, split="test", max_new_tokens=4)
    assert greedy.settings["temperature"] == 0.0
    with pytest.raises(ValueError, match="top_p=0"):
        evaluate_strategy(str(tiny_model_dir), n=2, top_p=0)


def test_bench_strategy_runs_sft_grpo_and_ends_with_the_three_numbers(tmp_path):
    """`bench/training.py --strategy` end to end at toy size (base model, enrichment, SFT,
    GRPO, both evaluations): its last line is one JSON object whose last three keys are the
    issue's names, with the gain's interval around the gain."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "bench/training.py", "--strategy", "--size", "xs", "--sft-steps", "2",
         "--grpo-steps", "1", "--contexts", "4", "--enrich-limit", "16", "--threads", "1",
         "--work", str(tmp_path)],
        cwd=repo, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(result)[-3:] == ["strategy_acc_sft", "strategy_acc_grpo", "strategy_gain_ci_low"]
    assert result["contexts"] == 4 and result["size"] == "xs"
    assert (
        result["strategy_gain_ci_low"] <= result["strategy_gain"] <= result["strategy_gain_ci_high"]
    )
    assert (tmp_path / "grpo" / "lineage.json").is_file() and (tmp_path / "result.json").is_file()
