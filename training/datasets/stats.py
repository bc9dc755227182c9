"""Corpus statistics: the numbers ``python -m training.datasets stats`` prints."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from training.datasets.types import SUPPORTER, Dialogue


def dataset_stats(dialogues: Iterable[Dialogue]) -> dict:
    """Counts of dialogues, utterances by speaker, and supporter utterances per strategy.

    ``strategies`` maps each label to its count of supporter utterances, most frequent first;
    supporter utterances without a label are counted in ``unlabelled_supporter_utterances``.
    """
    n_dialogues = n_utterances = n_supporter = n_unlabelled = 0
    strategies: Counter[str] = Counter()
    for dialogue in dialogues:
        n_dialogues += 1
        n_utterances += len(dialogue.turns)
        for turn in dialogue.turns:
            if turn.speaker == SUPPORTER:
                n_supporter += 1
                if turn.strategy is None:
                    n_unlabelled += 1
                else:
                    strategies[turn.strategy] += 1
    return {
        "dialogues": n_dialogues,
        "utterances": n_utterances,
        "seeker_utterances": n_utterances - n_supporter,
        "supporter_utterances": n_supporter,
        "unlabelled_supporter_utterances": n_unlabelled,
        "strategies": dict(sorted(strategies.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
