"""ESConv loaders against the published numbers, and the official split against an independent
re-implementation of the upstream reformatting script."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from training.datasets import dataset_stats, default_data_dir, load_dialogues, turn_examples
from training.datasets.splits import esconv_official_split
from training.datasets.types import SEEKER, SUPPORTER

DATA = default_data_dir()
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RAW_FIXTURE = FIXTURES / "esconv_raw"

needs_data = pytest.mark.skipif(
    not (DATA / "esconv" / "train.jsonl").is_file(),
    reason=f"ESConv splits not found under {DATA} (set EVALSITE_DATA_DIR to the shared data dir)",
)

# Published in the ESConv README (strategy table) and the shared data README (sizes).
ESCONV_STRATEGY_COUNTS = {
    "Question": 3801,
    "Others": 3341,
    "Providing Suggestions": 2954,
    "Affirmation and Reassurance": 2827,
    "Self-disclosure": 1713,
    "Reflection of feelings": 1436,
    "Information": 1215,
    "Restatement or Paraphrasing": 1089,
}


@pytest.fixture(scope="module")
def esconv_all():
    return load_dialogues("esconv", data_dir=DATA)


@needs_data
def test_esconv_totals_match_published_numbers(esconv_all):
    stats = dataset_stats(esconv_all)
    assert stats["dialogues"] == 1300
    assert stats["utterances"] == 38365
    assert stats["seeker_utterances"] == 19989
    assert stats["supporter_utterances"] == 18376
    assert stats["strategies"] == ESCONV_STRATEGY_COUNTS
    assert list(stats["strategies"]) == list(ESCONV_STRATEGY_COUNTS)  # most frequent first


@needs_data
@pytest.mark.parametrize(
    ("split", "dialogues", "utterances"),
    [("train", 910, 26648), ("valid", 195, 5678), ("test", 195, 6039)],
)
def test_esconv_split_sizes(split, dialogues, utterances):
    loaded = load_dialogues("esconv", split, data_dir=DATA)
    assert len(loaded) == dialogues
    assert sum(len(d.turns) for d in loaded) == utterances
    assert {d.id.split("/")[1] for d in loaded} == {split}


@needs_data
def test_esconv_metadata_matches_published_counts(esconv_all):
    emotions = Counter(d.emotion_type for d in esconv_all)
    assert emotions.most_common(3) == [("anxiety", 354), ("depression", 334), ("sadness", 308)]
    assert Counter(d.experience_type for d in esconv_all) == {
        "Current Experience": 991,
        "Previous Experience": 309,
    }
    assert Counter(d.problem_type for d in esconv_all)["job crisis"] == 280
    assert all(d.situation for d in esconv_all)
    # survey scores are ints; 150 conversations have only the initial intensity
    only_initial = [d for d in esconv_all if set(d.survey) == {"initial_emotion_intensity"}]
    assert len(only_initial) == 150
    assert all(isinstance(v, int) and 1 <= v <= 5 for d in esconv_all for v in d.survey.values())
    # either side may open: sys opens 683 conversations, usr 617
    assert Counter(d.turns[0].speaker for d in esconv_all) == {SUPPORTER: 683, SEEKER: 617}
    assert all(t.strategy is None for d in esconv_all for t in d.turns if t.speaker == SEEKER)


@needs_data
def test_esconv_ids_are_split_and_line_index(esconv_all):
    ids = [d.id for d in esconv_all]
    assert len(set(ids)) == 1300
    assert ids[0] == "esconv/train/0" and ids[-1] == "esconv/test/194"
    test = [d for d in esconv_all if d.id.startswith("esconv/test/")]
    line17 = json.loads((DATA / "esconv" / "test.jsonl").read_text().split("\n")[17])
    d17 = next(d for d in test if d.id == "esconv/test/17")
    assert d17.situation == line17["situation"]
    assert [t.text for t in d17.turns] == [t["text"] for t in line17["dialog"]]
    # a second load gives the same ids in the same order
    assert [d.id for d in load_dialogues("esconv", data_dir=DATA)] == ids


@needs_data
def test_turn_examples_on_esconv(esconv_all):
    examples = list(turn_examples(esconv_all))
    # every supporter turn except the 683 that open a conversation
    assert len(examples) == 18376 - 683
    windowed = list(turn_examples(esconv_all, window=5))
    assert len(windowed) == len(examples)
    assert max(len(e.history) for e in windowed) == 5
    assert Counter(e.strategy for e in examples)["Question"] <= 3801


@needs_data
def test_failed_esconv_maps_older_strategy_names():
    failed = load_dialogues("esconv-failed", data_dir=DATA)
    stats = dataset_stats(failed)
    assert stats["dialogues"] == 196
    assert stats["utterances"] == 5230
    assert stats["supporter_utterances"] == 2377 and stats["unlabelled_supporter_utterances"] == 0
    # counted from the raw file: "Questions" 520 + "Question" 8, "Other" 400,
    # "Providing Suggestions" 392 + "Direct Guidance" 11, "Affirmation and Reassurance" 334 +
    # "Approval and Reassurance" 7, "Restatement or Paraphrasing" 176 + "Restatement" 3
    assert stats["strategies"] == {
        "Question": 528,
        "Providing Suggestions": 403,
        "Others": 400,
        "Affirmation and Reassurance": 341,
        "Reflection of feelings": 200,
        "Self-disclosure": 195,
        "Restatement or Paraphrasing": 179,
        "Information": 131,
    }
    assert {d.source for d in failed} == {"esconv-failed"}
    sizes = {s: len(load_dialogues("esconv-failed", s, data_dir=DATA)) for s in ("valid", "test")}
    assert sizes == {"valid": 9, "test": 9}  # int(0.05 * 196)
    assert not any("\n" in t.text for d in failed for t in d.turns)  # whitespace collapsed


def _reference_official_split(records: list) -> dict[str, list]:
    """The upstream script's steps, written independently: global seed 13, one shuffle."""
    state = random.getstate()
    try:
        data = [
            {
                "situation": r["situation"],
                "dialog": [
                    (t["speaker"], " ".join(t["content"].strip().split())) for t in r["dialog"]
                ],
            }
            for r in records
        ]
        random.seed(13)
        random.shuffle(data)
    finally:
        random.setstate(state)
    dev_size = int(0.15 * len(data))
    test_size = int(0.15 * len(data))
    return {
        "valid": data[:dev_size],
        "test": data[dev_size : dev_size + test_size],
        "train": data[dev_size + test_size :],
    }


def test_official_split_of_raw_esconv_json():
    records = json.loads((RAW_FIXTURE / "esconv" / "ESConv.json").read_text())
    expected = _reference_official_split(records)
    assert [len(expected[s]) for s in ("train", "valid", "test")] == [14, 3, 3]
    for split in ("train", "valid", "test"):
        loaded = load_dialogues("esconv", split, data_dir=RAW_FIXTURE)
        assert [d.id for d in loaded] == [f"esconv/{split}/{k}" for k in range(len(loaded))]
        assert [d.situation for d in loaded] == [r["situation"] for r in expected[split]]
        speaker = {"seeker": SEEKER, "supporter": SUPPORTER}
        assert [[(t.speaker, t.text) for t in d.turns] for d in loaded] == [
            [(speaker[s], text) for s, text in r["dialog"]] for r in expected[split]
        ]
    everything = load_dialogues("esconv", data_dir=RAW_FIXTURE)
    assert [d.id.split("/")[1] for d in everything] == ["train"] * 14 + ["valid"] * 3 + ["test"] * 3


def test_raw_schema_fields():
    dialogues = load_dialogues("esconv", data_dir=RAW_FIXTURE)
    texts = [t.text for d in dialogues for t in d.turns]
    assert not any(t != " ".join(t.split()) for t in texts)  # "\n" and double spaces collapsed
    assert all(t.strategy for d in dialogues for t in d.turns if t.speaker == SUPPORTER)
    by_situation = {d.situation: d for d in dialogues}
    first = by_situation["I might be laid off next month and I can't sleep."]
    assert first.emotion_type == "anxiety" and first.problem_type == "job crisis"
    assert first.experience_type == "Current Experience"
    assert first.survey == {
        "initial_emotion_intensity": 4,
        "empathy": 3,
        "relevance": 5,
        "final_emotion_intensity": 2,
    }
    assert first.turns[1].text == "Not well, there are rumours of layoffs at work."
    assert first.turns[3].text == "About two weeks. Nobody tells us anything."


def test_official_split_sizes_for_the_full_corpus():
    parts = esconv_official_split(1300)
    assert [len(parts[s]) for s in ("train", "valid", "test")] == [910, 195, 195]
    assert sorted(parts["train"] + parts["valid"] + parts["test"]) == list(range(1300))


@needs_data
def test_raw_esconv_json_reproduces_published_splits(tmp_path):
    """Rebuild an ESConv.json in the raw schema by undoing the official shuffle on the published
    splits (with the independent reference), then load it: same ids, texts and strategies."""
    lines = []
    for split in ("valid", "test", "train"):  # the order the script cut them from the shuffle
        lines += (DATA / "esconv" / f"{split}.jsonl").read_text().split("\n")
    shuffled = [json.loads(line) for line in lines]
    state = random.getstate()
    try:
        random.seed(13)
        order = list(range(len(shuffled)))
        random.shuffle(order)
    finally:
        random.setstate(state)
    original = [None] * len(shuffled)
    for position, index in enumerate(order):
        original[index] = shuffled[position]
    raw = [
        {
            **{k: r[k] for k in ("experience_type", "emotion_type", "problem_type", "situation")},
            "survey_score": r["survey_score"],
            "dialog": [
                {
                    "speaker": "seeker" if t["speaker"] == "usr" else "supporter",
                    "annotation": {"strategy": t["strategy"]} if t["speaker"] == "sys" else {},
                    "content": t["text"] + "\n",
                }
                for t in r["dialog"]
            ],
        }
        for r in original
    ]
    (tmp_path / "esconv").mkdir()
    (tmp_path / "esconv" / "ESConv.json").write_text(json.dumps(raw))
    from_raw = load_dialogues("esconv", data_dir=tmp_path)
    from_jsonl = load_dialogues("esconv", data_dir=DATA)
    assert from_raw == from_jsonl
