"""Strategy labels: ESConv normalisation and the ExTES -> ESConv table."""

from __future__ import annotations

import json

import pytest

from training.datasets import default_data_dir
from training.datasets.strategies import (
    ESCONV_STRATEGIES,
    EXTES_STRATEGIES,
    EXTES_TO_ESCONV,
    canonical_extes_strategy,
    map_extes_strategy,
    normalize_strategy,
)


def test_esconv_strategies_are_the_split_file_spellings():
    path = default_data_dir() / "esconv" / "strategy.json"
    if not path.is_file():
        pytest.skip(f"{path} not found (set EVALSITE_DATA_DIR to the shared data dir)")
    # upstream strategy.json lists the same 8 labels, bracketed, in the same order
    assert [s[1:-1] for s in json.loads(path.read_text())] == list(ESCONV_STRATEGIES)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Question", "Question"),
        ("[Question]", "Question"),
        ("question", "Question"),
        ("Questions", "Question"),  # upstream README, FailedESConv.json
        ("Other", "Others"),
        ("[Others]", "Others"),
        ("Direct Guidance", "Providing Suggestions"),  # FailedESConv.json's older names
        ("Approval and Reassurance", "Affirmation and Reassurance"),
        ("Restatement", "Restatement or Paraphrasing"),
        ("reflection of Feelings", "Reflection of feelings"),
        ("self disclosure", "Self-disclosure"),
        ("  Providing  Suggestions ", "Providing Suggestions"),
        ("[Restatement or Paraphrasing]", "Restatement or Paraphrasing"),
    ],
)
def test_normalize_strategy_variants(label, expected):
    assert normalize_strategy(label) == expected


@pytest.mark.parametrize("label", ["Humour", "", "Emotional Validation", "[Questionnaire]"])
def test_normalize_strategy_rejects_unknown_labels(label):
    with pytest.raises(ValueError, match="unknown ESConv strategy") as excinfo:
        normalize_strategy(label)
    assert repr(label) in str(excinfo.value)
    assert "Restatement or Paraphrasing" in str(excinfo.value)  # lists what is expected


def test_normalize_strategy_rejects_non_strings():
    with pytest.raises(ValueError, match="must be a string"):
        normalize_strategy(3)  # type: ignore[arg-type]


def test_every_canonical_label_maps_to_itself():
    assert [normalize_strategy(s) for s in ESCONV_STRATEGIES] == list(ESCONV_STRATEGIES)
    assert [canonical_extes_strategy(s) for s in EXTES_STRATEGIES] == list(EXTES_STRATEGIES)


def test_extes_table_is_consistent():
    assert len(EXTES_STRATEGIES) == len(set(EXTES_STRATEGIES)) == 16
    assert set(EXTES_TO_ESCONV) <= set(EXTES_STRATEGIES)
    assert set(EXTES_TO_ESCONV.values()) <= set(ESCONV_STRATEGIES)
    # every ESConv strategy except Self-disclosure has an ExTES counterpart
    assert set(ESCONV_STRATEGIES) - set(EXTES_TO_ESCONV.values()) == {"Self-disclosure"}


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Reflective Statements", "Restatement or Paraphrasing"),
        ("Clarification", "Question"),
        ("Emotional Validation", "Reflection of feelings"),
        ("Affirmation", "Affirmation and Reassurance"),
        ("Offer Hope", "Affirmation and Reassurance"),
        ("Suggest Options", "Providing Suggestions"),
        ("Stress Management", "Providing Suggestions"),
        ("Share Information", "Information"),
        ("Others", "Others"),
        ("Reflective Statements (RS)", "Restatement or Paraphrasing"),
        ("emotional validation", "Reflection of feelings"),
        ("SI", "Information"),
        # no ESConv counterpart: kept, in the canonical ExTES spelling
        ("Empathetic Statements", "Empathetic Statements"),
        ("avoid judgement and criticism", "Avoid Judgment and Criticism"),
        ("Normalize Experiences", "Normalize Experiences"),
        # not one of the 16: kept as written
        (" Humor ", "Humor"),
    ],
)
def test_map_extes_strategy(label, expected):
    assert map_extes_strategy(label) == expected
