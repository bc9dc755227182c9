"""Support-strategy labels: ESConv's 8, ExTES's 16, and the mapping between them.

Every loader stores labels in one canonical spelling, so counts and prompts never split one
strategy into two. ESConv's labels are spelled as in its split files (``strategy.json`` brackets
them, the upstream README pluralises some, ``FailedESConv.json`` uses older names). ExTES keeps its
own 16 labels in ``Dialogue``; ``map_extes_strategy`` translates them to ESConv's where the meaning
matches (see docs/datasets.md for the table and the reasons).
"""

from __future__ import annotations

import re

ESCONV_STRATEGIES: tuple[str, ...] = (
    "Question",
    "Restatement or Paraphrasing",
    "Reflection of feelings",
    "Self-disclosure",
    "Affirmation and Reassurance",
    "Providing Suggestions",
    "Information",
    "Others",
)

EXTES_STRATEGIES: tuple[str, ...] = (
    "Reflective Statements",
    "Clarification",
    "Emotional Validation",
    "Empathetic Statements",
    "Affirmation",
    "Offer Hope",
    "Avoid Judgment and Criticism",
    "Suggest Options",
    "Collaborative Planning",
    "Provide Different Perspectives",
    "Reframe Negative Thoughts",
    "Share Information",
    "Normalize Experiences",
    "Promote Self-Care Practices",
    "Stress Management",
    "Others",
)

# ExTES label -> ESConv label, only where the two definitions describe the same act.
# The six ExTES labels left out have no ESConv counterpart and are kept as they are.
EXTES_TO_ESCONV: dict[str, str] = {
    "Reflective Statements": "Restatement or Paraphrasing",  # repeat/rephrase what was said
    "Clarification": "Question",  # ask for more information
    "Emotional Validation": "Reflection of feelings",  # name and acknowledge the feelings
    "Affirmation": "Affirmation and Reassurance",
    "Offer Hope": "Affirmation and Reassurance",  # reassurance that things can improve
    "Suggest Options": "Providing Suggestions",
    "Promote Self-Care Practices": "Providing Suggestions",  # suggestions of self-care acts
    "Stress Management": "Providing Suggestions",  # suggestions of coping techniques
    "Share Information": "Information",
    "Others": "Others",
}

_PUNCT = re.compile(r"[\s_\-]+")
_ABBREV = re.compile(r"\s*\([A-Za-z]{1,4}\)\s*$")  # "Reflective Statements (RS)"


def _key(label: str) -> str:
    """Comparison key: no brackets, no case, hyphens/underscores/runs of spaces as one space."""
    label = label.strip()
    if label.startswith("[") and label.endswith("]"):
        label = label[1:-1]
    return _PUNCT.sub(" ", label).strip().lower()


_ESCONV_BY_KEY: dict[str, str] = {_key(name): name for name in ESCONV_STRATEGIES}
_ESCONV_BY_KEY.update(
    {
        # upstream README and FailedESConv.json spell these differently
        "questions": "Question",
        "other": "Others",
        # FailedESConv.json was collected with an earlier version of the strategy list
        "direct guidance": "Providing Suggestions",
        "approval and reassurance": "Affirmation and Reassurance",
        "restatement": "Restatement or Paraphrasing",
        "paraphrasing": "Restatement or Paraphrasing",
        "restatement and paraphrasing": "Restatement or Paraphrasing",
        # singular/plural slips
        "reflection of feeling": "Reflection of feelings",
        "providing suggestion": "Providing Suggestions",
    }
)


def normalize_strategy(label: str) -> str:
    """Return the canonical ESConv spelling of ``label``.

    Accepts brackets, any case, hyphen/space variants, the README's plurals and
    FailedESConv's older names; raises ``ValueError`` naming the label otherwise.

    >>> normalize_strategy("[Question]"), normalize_strategy("Other")
    ('Question', 'Others')
    >>> normalize_strategy("Direct Guidance")
    'Providing Suggestions'
    >>> normalize_strategy("Humour")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown ESConv strategy 'Humour'; expected one of: Question, ..., Others
    """
    if not isinstance(label, str):
        raise ValueError(f"strategy must be a string, got {label!r}")
    try:
        return _ESCONV_BY_KEY[_key(label)]
    except KeyError:
        raise ValueError(
            f"unknown ESConv strategy {label!r}; expected one of: {', '.join(ESCONV_STRATEGIES)}"
        ) from None


_EXTES_ABBREVIATIONS = {
    "rs": "Reflective Statements",
    "cla": "Clarification",
    "ev": "Emotional Validation",
    "es": "Empathetic Statements",
    "aff": "Affirmation",
    "oh": "Offer Hope",
    "ajc": "Avoid Judgment and Criticism",
    "so": "Suggest Options",
    "cp": "Collaborative Planning",
    "pdp": "Provide Different Perspectives",
    "rnt": "Reframe Negative Thoughts",
    "si": "Share Information",
    "ne": "Normalize Experiences",
    "psp": "Promote Self-Care Practices",
    "sm": "Stress Management",
    "oth": "Others",
}
_EXTES_BY_KEY: dict[str, str] = {_key(name): name for name in EXTES_STRATEGIES}
_EXTES_BY_KEY.update(_EXTES_ABBREVIATIONS)
_EXTES_BY_KEY.update(
    {
        "other": "Others",
        "avoid judgement and criticism": "Avoid Judgment and Criticism",
        "normalise experiences": "Normalize Experiences",
        "reflective statement": "Reflective Statements",
        "empathetic statement": "Empathetic Statements",
    }
)


def canonical_extes_strategy(label: str) -> str | None:
    """Canonical spelling of an ExTES label (case, "(RS)" suffixes, abbreviations), or None.

    >>> canonical_extes_strategy("emotional validation (EV)")
    'Emotional Validation'
    >>> canonical_extes_strategy("Humour") is None
    True
    """
    key = _key(_ABBREV.sub("", label))
    return _EXTES_BY_KEY.get(key)


def map_extes_strategy(label: str) -> str:
    """Map an ExTES label to ESConv's where the meaning matches; otherwise keep it.

    A known ExTES label without an ESConv counterpart comes back in its canonical ExTES
    spelling; a label that is not one of the 16 comes back stripped but otherwise unchanged.

    >>> map_extes_strategy("Clarification"), map_extes_strategy("Offer Hope")
    ('Question', 'Affirmation and Reassurance')
    >>> map_extes_strategy("reframe negative thoughts"), map_extes_strategy(" Humour ")
    ('Reframe Negative Thoughts', 'Humour')
    """
    canonical = canonical_extes_strategy(label)
    if canonical is None:
        return label.strip()
    return EXTES_TO_ESCONV.get(canonical, canonical)
