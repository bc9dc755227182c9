"""AugESC and ExTES loaders on small fixtures in their published schemas, and our seeded split."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from training.datasets import SPLITS, dataset_stats, load_dialogues
from training.datasets.types import SEEKER, SUPPORTER

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
AUGESC = FIXTURES / "augesc"
EXTES = FIXTURES / "extes"


def _reference_derived_split(n: int) -> dict[str, list[int]]:
    """Our documented 90/5/5 split, written independently: seed 13, one shuffle, sorted parts."""
    state = random.getstate()
    try:
        order = list(range(n))
        random.seed(13)
        random.shuffle(order)
    finally:
        random.setstate(state)
    k = int(0.05 * n)
    return {
        "valid": sorted(order[:k]),
        "test": sorted(order[k : 2 * k]),
        "train": sorted(order[2 * k :]),
    }


def test_augesc_fixture():
    lines = (AUGESC / "augesc" / "augesc.txt").read_text().splitlines()
    dialogues = load_dialogues("augesc", data_dir=AUGESC)
    assert len(dialogues) == len(lines) == 8
    assert [d.id for d in dialogues] == [f"augesc/train/{i}" for i in range(8)]  # 5% of 8 is 0
    assert load_dialogues("augesc", "test", data_dir=AUGESC) == []
    for dialogue, line in zip(dialogues, lines, strict=True):
        pairs = json.loads(line)
        assert dialogue.source == "augesc"
        assert [(t.speaker, t.text) for t in dialogue.turns] == [
            (SEEKER if s == "usr" else SUPPORTER, text) for s, text in pairs
        ]
        assert all(t.strategy is None for t in dialogue.turns)
        assert dialogue.situation is None and dialogue.survey == {}
    stats = dataset_stats(dialogues)
    assert stats["strategies"] == {}
    assert stats["unlabelled_supporter_utterances"] == stats["supporter_utterances"] == 31


def test_augesc_split_is_seeded_and_documented(tmp_path):
    source = (AUGESC / "augesc" / "augesc.txt").read_text().splitlines()
    lines = [source[i % len(source)] for i in range(60)]
    (tmp_path / "augesc").mkdir()
    (tmp_path / "augesc" / "augesc.txt").write_text("\n".join(lines) + "\n")
    expected = _reference_derived_split(60)
    assert [len(expected[s]) for s in SPLITS] == [54, 3, 3]
    for split in SPLITS:
        loaded = load_dialogues("augesc", split, data_dir=tmp_path)
        assert [d.id for d in loaded] == [f"augesc/{split}/{i}" for i in expected[split]]
        assert [d.turns[0].text for d in loaded] == [
            json.loads(lines[i])[0][1] for i in expected[split]
        ]


def test_augesc_accepts_python_literal_lines(tmp_path):
    (tmp_path / "augesc").mkdir()
    (tmp_path / "augesc" / "augesc.txt").write_text(
        "[['usr', \"I can't sleep.\"], ['sys', 'What keeps you awake?']]\n"
    )
    [dialogue] = load_dialogues("augesc", data_dir=tmp_path)
    assert [t.text for t in dialogue.turns] == ["I can't sleep.", "What keeps you awake?"]


@pytest.fixture(scope="module")
def extes():
    return load_dialogues("extes", data_dir=EXTES)


def test_extes_fixture_basics(extes):
    records = json.loads((EXTES / "extes" / "ExTES.json").read_text())
    assert len(extes) == len(records) == 8
    assert [d.id for d in extes] == [f"extes/train/{i}" for i in range(8)]
    for dialogue, record in zip(extes, records, strict=True):
        assert dialogue.source == "extes"
        assert dialogue.problem_type == record["scene"]
        assert dialogue.situation == record["description"]
        assert dialogue.emotion_type is None and dialogue.survey == {}
    first = extes[0]
    assert [t.speaker for t in first.turns] == [SEEKER, SUPPORTER] * 4
    assert first.turns[1].strategy == "Empathetic Statements"


def test_extes_turn_with_both_user_and_ai(extes):
    turns = extes[1].turns
    assert len(turns) == 9  # 8 objects, one of them holding two turns
    assert (turns[2].speaker, turns[2].text) == (
        SEEKER,
        "My kids want to play and I have nothing left to give them.",
    )
    assert (turns[3].speaker, turns[3].strategy) == (SUPPORTER, "Clarification")
    assert turns[3].text.startswith("Can you tell me more")
    # two AI turns in a row stay two turns
    assert [t.speaker for t in turns[-2:]] == [SUPPORTER, SUPPORTER]


def test_extes_ai_given_as_object_with_response(extes):
    turns = extes[2].turns
    assert turns[1].text.startswith("That sounds really frightening")
    assert turns[1].strategy == "Emotional Validation"  # outer "AI Strategy"
    assert turns[3].text.startswith("You put real effort in")
    assert turns[3].strategy == "Affirmation"  # "AI Strategy" inside the object


def test_extes_empty_strategy_is_none(extes):
    turns = extes[3].turns
    assert turns[0].speaker == SUPPORTER and turns[0].strategy is None
    assert turns[-1].strategy is None
    assert turns[2].strategy == "Empathetic Statements"


def test_extes_label_variants_and_unknown_labels(extes):
    turns = extes[4].turns
    assert turns[1].strategy == "Emotional Validation"  # written "emotional validation"
    assert turns[3].strategy == "Reflective Statements"  # written "Reflective Statements (RS)"
    assert turns[5].strategy == "Humor"  # not one of the 16: kept as written ...
    assert dict(extes.report.unknown_strategies) == {"Humor": 1}  # ... and reported
    assert extes.report.skipped == []


def test_extes_stats_use_extes_labels(extes):
    stats = dataset_stats(extes)
    assert stats["dialogues"] == 8
    assert stats["utterances"] == 66
    assert stats["unlabelled_supporter_utterances"] == 2
    assert stats["strategies"]["Emotional Validation"] == 4
    assert sum(stats["strategies"].values()) == stats["supporter_utterances"] - 2
