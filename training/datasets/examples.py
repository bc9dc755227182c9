"""Turn examples: (history, gold supporter reply, gold strategy), shared by training and the
site's evaluation contexts so both cut dialogues the same way."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from training.datasets.types import SUPPORTER, Dialogue, TurnExample


def turn_examples(
    dialogues: Iterable[Dialogue], *, window: int | None = None
) -> Iterator[TurnExample]:
    """Yield one example per supporter turn that has at least one turn before it.

    ``history`` is the last ``window`` turns before the target (all of them when ``window`` is
    None), of either speaker, in order. A supporter turn that opens a dialogue has nothing to
    answer and gives no example.
    """
    if window is not None and (not isinstance(window, int) or window < 1):
        raise ValueError(f"window must be a positive number of turns or None, got {window!r}")
    for dialogue in dialogues:
        turns = dialogue.turns
        for index in range(1, len(turns)):
            turn = turns[index]
            if turn.speaker != SUPPORTER:
                continue
            start = 0 if window is None else max(0, index - window)
            yield TurnExample(
                dialogue_id=dialogue.id,
                source=dialogue.source,
                turn_index=index,
                history=turns[start:index],
                target=turn.text,
                strategy=turn.strategy,
                situation=dialogue.situation,
                emotion_type=dialogue.emotion_type,
                problem_type=dialogue.problem_type,
            )
