"""Offline CARE chains: the four nodes written from a turn's annotations with templates.

``training.enrich`` in ``mode: offline`` uses :func:`offline_chain`: the chain is built from the
problem type, emotion type, gold strategy and the first 12 words of the seeker's last turn, in
short templated sentences whose wording is drawn per example from a generator seeded by (seed,
dialogue id, turn index). A run is reproducible, and different seeds give different wordings.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from models.care_format import canonical_strategy

#: The version of these templates, recorded in every offline record's provenance.
OFFLINE_TEMPLATE = "offline_v2"

# Short, regular sentences: a tiny model (about 1M parameters) learns to write the four tags
# reliably only when the chain is short; with the situation and a 30-word quote (~165 tokens)
# most of its samples were malformed (docs/training.md, "Measured at tiny scale").
_CONTEXT = (
    "The seeker is dealing with {problem}. They said: {last}",
    "The seeker talks about {problem}. They said: {last}",
    "This is about {problem}. They said: {last}",
)
_APPRAISAL = {
    "anxiety": "the situation around {problem} will turn out badly and is out of their control",
    "nervousness": "the situation around {problem} will turn out badly and is out of their control",
    "depression": "things will not get better and that their efforts with {problem} do not matter",
    "sadness": "{problem} has taken something from them that they cannot get back",
    "anger": "they have been treated unfairly in {problem}",
    "fear": "{problem} threatens their safety or their future",
    "shame": "{problem} shows that something is wrong with them",
    "guilt": "they are to blame for {problem}",
    "disgust": "what happened in {problem} is unacceptable",
    "jealousy": "others have what they lack in {problem}",
    "pain": "{problem} keeps hurting them and will not ease",
}
_COGNITION = ("They believe {appraisal}.", "They think {appraisal}.")
_EMOTION = ("They feel {emotion}.", "They are feeling {emotion}.")
_PLAN = {
    "Question": (
        "Ask an open question to learn more about {focus}.",
        "Invite them to say more, so I understand {focus} before responding further.",
    ),
    "Restatement or Paraphrasing": (
        "Restate what they said about {focus} so they know they were heard.",
        "Paraphrase their account of {focus} to check I understood it.",
    ),
    "Reflection of feelings": (
        "Name the {emotion} they are feeling so it is acknowledged.",
        "Reflect their {emotion} back to them, gently and without judging.",
    ),
    "Self-disclosure": (
        "Share a similar experience of my own so they feel less alone with {focus}.",
        "Briefly disclose that I have faced something like {focus} too.",
    ),
    "Affirmation and Reassurance": (
        "Affirm their strengths and reassure them that {focus} can get better.",
        "Reassure them that feeling {emotion} makes sense and that they are coping.",
    ),
    "Providing Suggestions": (
        "Offer a concrete, manageable suggestion for {focus}.",
        "Suggest a small next step they could take with {focus}.",
    ),
    "Information": (
        "Give useful information about {focus} that may help them.",
        "Share relevant facts about {focus} to put it in perspective.",
    ),
    "Others": (
        "Respond warmly to keep the conversation going and show I am here for them.",
        "Acknowledge their message in a friendly way and keep them talking.",
    ),
}
_PLAN_DEFAULT = ("Use the strategy {strategy} to support them with {focus}.",)


def _sentence(text: str | None, max_words: int = 40) -> str:
    words = (text or "").split()
    if not words:
        return ""
    clipped = " ".join(words[:max_words]) + (" ..." if len(words) > max_words else "")
    return clipped if clipped[-1] in ".!?\"'…" else clipped + "."


def _last_seeker_text(history: Sequence[Any]) -> str | None:
    for turn in reversed(history):
        if getattr(turn, "speaker", None) == "seeker" and turn.text.strip():
            return turn.text
    return None


def offline_chain(example: Any, *, seed: int = 0) -> dict[str, str]:
    """The four CARE nodes for a ``TurnExample``, built from its annotations with templates.

    Deterministic for a given (seed, dialogue id, turn index); the plan names the gold strategy.
    """
    if not example.strategy:
        raise ValueError(f"{example.dialogue_id}#{example.turn_index}: no gold strategy")
    strategy = canonical_strategy(example.strategy) or example.strategy
    rng = random.Random(f"{seed}:{example.dialogue_id}:{example.turn_index}")
    problem = (example.problem_type or "a difficult situation").strip().lower()
    emotion = (example.emotion_type or "distress").strip().lower()
    last = _last_seeker_text(example.history)
    context = rng.choice(_CONTEXT).format(
        problem=problem,
        last=f'"{_sentence(last, 12)}"' if last else "nothing yet; the supporter speaks first.",
    )
    appraisal = _APPRAISAL.get(emotion, "{problem} is more than they can handle alone")
    cognition = rng.choice(_COGNITION).format(appraisal=appraisal.format(problem=problem))
    emotion_node = rng.choice(_EMOTION).format(emotion=emotion, problem=problem)
    plan = rng.choice(_PLAN.get(strategy, _PLAN_DEFAULT)).format(
        focus=problem, emotion=emotion, strategy=strategy
    )
    return {
        "context": " ".join(context.split()),
        "cognition": cognition,
        "emotion": emotion_node,
        "plan": plan,
    }
