"""Chat messages for a dialogue history: one function, shared by training and generation.

The seeker is the chat "user" and the supporter the "assistant", so a model's reply is the next
supporter turn. Consecutive turns by the same speaker are joined, since chat templates expect
alternating roles.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def to_messages(history: Iterable[Turn], *, care: bool = False) -> list[dict[str, str]]:
    """Map a history of turns to chat messages, starting with the system prompt."""
    messages: list[dict[str, str]] = [
        {"role": "system", "content": CARE_SYSTEM_PROMPT if care else SYSTEM_PROMPT}
    ]
    for turn in history:
        role = "assistant" if turn.speaker == SUPPORTER else "user"
        if len(messages) > 1 and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n" + turn.text
        else:
            messages.append({"role": role, "content": turn.text})
    # A chat model answers a user turn: if the history ends on the supporter, the seeker's
    # turn is absent, so add an empty user turn rather than continuing the assistant's text.
    if messages[-1]["role"] != "user":
        messages.append({"role": "user", "content": "..."})
    return messages
