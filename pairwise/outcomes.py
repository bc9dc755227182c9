"""The vocabulary of a judgment, in one place: what an annotator answers, and what it means for
the systems compared. No Django here: the statistics (pure functions) import it too.

An annotator sees two replies, left and right, and answers each criterion with a *choice*:
"left", "right" or "tie" (or says they cannot judge the item). Unblinded with the side that
system A was shown on, a choice becomes an *outcome*: "a", "b" or "tie".
"""

from __future__ import annotations

SIDES = ("left", "right")
CHOICES = (*SIDES, "tie")  # what a judgment's `choices` hold per criterion
CANNOT_JUDGE = "cannot_judge"
LONG_CHOICES = (*CHOICES, CANNOT_JUDGE)  # the long format's `choice` column
OUTCOMES = ("a", "b", "tie")


def outcome_from_choice(choice: str, a_side: str) -> str | None:
    """Unblind one answer: the outcome from system A's side.

    >>> outcome_from_choice("left", "left"), outcome_from_choice("left", "right")
    ('a', 'b')
    >>> outcome_from_choice("tie", "right"), outcome_from_choice("cannot_judge", "left")
    ('tie', None)
    """
    if a_side not in SIDES:
        raise ValueError(f"a_side must be one of {SIDES}, got {a_side!r}")
    if choice == "tie":
        return "tie"
    if choice == CANNOT_JUDGE:
        return None
    if choice in SIDES:
        return "a" if choice == a_side else "b"
    raise ValueError(f"choice must be one of {LONG_CHOICES}, got {choice!r}")
