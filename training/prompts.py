"""Chat messages for a dialogue history: one function, shared by training and generation.

The seeker is the chat "user" and the supporter the "assistant", so a model's reply is the next
supporter turn. Consecutive turns by the same speaker are joined, since chat templates expect
alternating roles.

When the history ends on a supporter turn (the supporter speaks twice in a row: 17% of ESConv
train turns, 18% of test turns), the messages end on that assistant message and the model's
reply is a new assistant message after it. This keeps the real context, as the ESConv authors'
code does (their context for a turn is every earlier utterance). Checkpoints trained before
this convention saw a synthetic seeker turn ``"..."`` there instead; ``seeker_placeholder``
reproduces that (``LEGACY_SEEKER_PLACEHOLDER``), and their lineage says so
(``training.lineage.generation_defaults``).

>>> from training.datasets.types import Turn
>>> history = [Turn("seeker", "I lost my job."), Turn("supporter", "I'm sorry.")]
>>> [m["role"] for m in to_messages(history)]
['system', 'user', 'assistant']
>>> to_messages(history, seeker_placeholder="...")[-1]
{'role': 'user', 'content': '...'}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from training.datasets.types import SUPPORTER, Turn

SYSTEM_PROMPT = (
    "You are a supportive listener in an emotional-support conversation. "
    "Reply to the help-seeker with one short, warm, helpful message."
)
CARE_SYSTEM_PROMPT = (
    SYSTEM_PROMPT + " Before replying, reason inside <think>...</think> with four nodes in order: "
    "<context> (the seeker's situation and emotional cues), <cognition> (their beliefs about it), "
    '<emotion> (what those beliefs make them feel) and <plan strategy="..."> (the support '
    "strategy and intention of your reply). Then write the reply."
)
#: The synthetic seeker turn that checkpoints trained before the ESConv convention saw after a
#: supporter turn. Only for evaluating those checkpoints as they were trained.
LEGACY_SEEKER_PLACEHOLDER = "..."


def to_messages(
    history: Iterable[Turn], *, care: bool = False, seeker_placeholder: str | None = None
) -> list[dict[str, str]]:
    """Map a history of turns to chat messages, starting with the system prompt.

    A history that ends on the supporter ends on that assistant message (the ESConv
    convention: the real context, nothing invented); with ``seeker_placeholder`` a seeker
    turn with that text is appended instead, as older checkpoints were trained.
    """
    messages: list[dict[str, str]] = [
        {"role": "system", "content": CARE_SYSTEM_PROMPT if care else SYSTEM_PROMPT}
    ]
    for turn in history:
        role = "assistant" if turn.speaker == SUPPORTER else "user"
        if len(messages) > 1 and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n" + turn.text
        else:
            messages.append({"role": role, "content": turn.text})
    if seeker_placeholder is not None and messages[-1]["role"] != "user":
        messages.append({"role": "user", "content": seeker_placeholder})
    return messages


def prompt_messages(
    history: Sequence[Turn],
    *,
    window: int | None,
    care: bool,
    seeker_placeholder: str | None,
) -> list[dict[str, str]]:
    """The prompt a checkpoint is generated with: the last ``window`` turns of ``history``
    (None: all of them) as :func:`to_messages` builds them. One function for the site's
    generation service and ``training.generation``, so both prompt a checkpoint alike.

    >>> from training.datasets.types import Turn
    >>> history = [Turn("seeker", "Hi."), Turn("supporter", "Hello."), Turn("seeker", "Sad.")]
    >>> [m["content"] for m in prompt_messages(history, window=1, care=False,
    ...                                        seeker_placeholder=None)][1:]
    ['Sad.']
    """
    turns = history[-window:] if window else history
    return to_messages(turns, care=care, seeker_placeholder=seeker_placeholder)
