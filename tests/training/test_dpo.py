"""training.dpo without a model: the recipe parses, the pairs are the right rows, bad input is
named. The training run itself is in tests/pairwise/test_preferences.py (the whole loop)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.dpo import DPOArguments, build_pairs, make_parser, read_preferences

RECIPE = Path(__file__).resolve().parents[2] / "training" / "recipes" / "dpo_tiny.yaml"
PROMPT = [{"role": "user", "content": "I lost my job."}]


def _row(criterion="Overall", tie=False, margin=1.0, chosen="c", rejected="r"):
    return {
        "prompt": PROMPT,
        "chosen": chosen,
        "rejected": rejected,
        "criterion": criterion,
        "margin": margin,
        "n_annotators": 3,
        "tie": tie,
        "study": "s",
        "item": "i",
    }


def test_recipe_parses_with_overrides():
    args, cfg = make_parser().parse_args_and_config(
        args=["--config", str(RECIPE), "--beta", "0.3", "--criterion", "Comforting"]
    )
    assert (args.criterion, args.preferences_file) == ("Comforting", "var/prefs/preferences.jsonl")
    assert cfg.beta == 0.3 and cfg.use_cpu and not cfg.bf16 and cfg.max_steps == 4
    assert args.window == 2


def test_pairs_are_untied_rows_of_one_criterion():
    rows = [
        _row(chosen="keep"),
        _row(tie=True),
        _row(criterion="Fluency"),
        _row(margin=0.5, chosen="weak"),
    ]
    pairs = build_pairs(DPOArguments(preferences_file="p.jsonl"), rows)
    assert [p["chosen"] for p in pairs] == [
        [{"role": "assistant", "content": "keep"}],
        [{"role": "assistant", "content": "weak"}],
    ]
    assert pairs[0]["prompt"] == PROMPT and pairs[0]["rejected"][0]["content"] == "r"
    strict = DPOArguments(preferences_file="p.jsonl", min_margin=0.6)
    assert [p["chosen"][0]["content"] for p in build_pairs(strict, rows)] == ["keep"]
    history = [{"role": "system", "content": "s"}, *PROMPT * 3]
    cut = build_pairs(
        DPOArguments(preferences_file="p.jsonl", window=2), [{**rows[0], "prompt": history}]
    )
    assert cut[0]["prompt"] == [history[0], *PROMPT * 2]
    with pytest.raises(ValueError, match="no untied pairs for criterion='Overall'"):
        build_pairs(DPOArguments(preferences_file="p.jsonl"), [_row(tie=True)])


def test_bad_arguments_and_rows_are_named(tmp_path):
    with pytest.raises(ValueError, match="preferences_file is required"):
        DPOArguments()
    with pytest.raises(ValueError, match="window=0: expected >= 1"):
        DPOArguments(preferences_file="p.jsonl", window=0)
    with pytest.raises(ValueError, match="min_margin=2"):
        DPOArguments(preferences_file="p.jsonl", min_margin=2)
    bad = tmp_path / "preferences.jsonl"
    bad.write_text(json.dumps(_row()) + "\n" + json.dumps({"prompt": PROMPT}) + "\n")
    with pytest.raises(ValueError, match=r"preferences.jsonl:2: missing key\(s\) \['chosen'"):
        read_preferences(bad)


def test_doctests():
    # pyproject's testpaths do not list training/dpo.py
    import doctest

    import training.dpo

    result = doctest.testmod(training.dpo)
    assert result.attempted > 0 and result.failed == 0, result
