"""turn_examples: which turns become examples and how much history each carries."""

from __future__ import annotations

import pytest

from training.datasets import Dialogue, Turn, turn_examples
from training.datasets.types import SEEKER, SUPPORTER

DIALOGUE = Dialogue(
    id="esconv/test/0",
    source="esconv",
    situation="lost my job",
    emotion_type="anxiety",
    problem_type="job crisis",
    turns=(
        Turn(SUPPORTER, "Hi, how are you?", "Question"),  # opens: nothing to answer, no example
        Turn(SEEKER, "Not good."),
        Turn(SUPPORTER, "What happened?", "Question"),
        Turn(SEEKER, "I lost my job."),
        Turn(SEEKER, "Today."),
        Turn(SUPPORTER, "That is hard.", "Reflection of feelings"),
        Turn(SUPPORTER, "Maybe call a friend tonight?", "Providing Suggestions"),
    ),
)


def test_one_example_per_supporter_turn_with_history():
    examples = list(turn_examples([DIALOGUE]))
    assert [e.turn_index for e in examples] == [2, 5, 6]
    assert [e.target for e in examples] == [
        "What happened?",
        "That is hard.",
        "Maybe call a friend tonight?",
    ]
    assert [e.strategy for e in examples] == [
        "Question",
        "Reflection of feelings",
        "Providing Suggestions",
    ]
    assert examples[1].history == DIALOGUE.turns[:5]
    assert examples[2].history[-1].text == "That is hard."  # supporter turns stay in history
    e = examples[0]
    assert (e.dialogue_id, e.source, e.situation, e.emotion_type, e.problem_type) == (
        "esconv/test/0",
        "esconv",
        "lost my job",
        "anxiety",
        "job crisis",
    )


@pytest.mark.parametrize(
    ("window", "lengths"), [(None, [2, 5, 6]), (1, [1, 1, 1]), (2, [2, 2, 2]), (4, [2, 4, 4])]
)
def test_window_keeps_the_last_turns(window, lengths):
    examples = list(turn_examples([DIALOGUE], window=window))
    assert [len(e.history) for e in examples] == lengths
    for e in examples:
        assert e.history == DIALOGUE.turns[e.turn_index - len(e.history) : e.turn_index]


def test_seeker_only_and_single_turn_dialogues_give_nothing():
    lone = Dialogue("augesc/train/0", "augesc", (Turn(SUPPORTER, "Hello"),))
    seeker_only = Dialogue("augesc/train/1", "augesc", (Turn(SEEKER, "a"), Turn(SEEKER, "b")))
    assert list(turn_examples([lone, seeker_only])) == []


@pytest.mark.parametrize("window", [0, -3, 2.5])
def test_bad_window_is_rejected(window):
    with pytest.raises(ValueError, match="window"):
        list(turn_examples([DIALOGUE], window=window))
