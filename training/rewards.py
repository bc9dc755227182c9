"""Rewards for CARE's GRPO stage: pure functions ``(completions, **kwargs) -> list[float]``.

Each completion is parsed once with :func:`models.care_format.parse_care_output`.
``completions`` may be plain strings or TRL's conversational form (a list of message dicts per
completion; the ``content`` of its assistant messages is scored).

Components, each 0.0 or 1.0:

* ``format_reward``: the text parses: a ``<think>`` block whose tags are well formed, followed by a
  non-empty reply (status ``complete``, ``missing_node`` or ``out_of_order``). Nodes without
  ``<think>`` (``unwrapped``, even with a clean reply) and reasoning tags that leak into the
  reply (``tag_leak``) earn nothing: the site could not have shown such text as produced.
  Two more rules close loopholes (our choices, not the paper's; docs/training.md):

  - the reply must be one turn: a line of it that starts with a speaker label (``User:``,
    ``Seeker:``, ``Supporter:``, ``Assistant:``, ``Human:``, ``System:``, ``Help-seeker:``,
    any case, optionally in Markdown emphasis) means the model went on to invent the next
    turn (:func:`invents_turn`);
  - the reply must be at most ``kwargs["max_reply_words"]`` words (a dataset column the GRPO
    recipe sets; :data:`DEFAULT_MAX_REPLY_WORDS` when absent).
* ``structure_reward``: all four nodes (context, cognition, emotion, plan), each exactly once,
  in that order, each with text (status ``complete``).
* ``strategy_reward``: the plan's strategy equals the gold ESConv strategy
  (``kwargs["strategy"]``, one label per completion), after normalising case and synonyms with
  ``normalize_strategy``. It needs a plan that parsed, so a malformed output scores 0.

The training signal is ``care_reward``, the components combined hierarchically, so that a later
component counts only when the earlier ones hold::

    care = 1.0 * format + format * (1.0 * structure + structure * 1.0 * strategy)

i.e. 0 (does not parse), 1 (parses), 2 (complete chain), 3 (complete chain with the gold
strategy). A GRPO recipe names the rewards it trains on (``rewards: {care: 1.0}``, checked by
:func:`reward_weights`); GRPO passes all four functions (:data:`REWARDS`), those not named with
weight 0, so the three components are logged (``rewards/<name>/mean``) but only the combined
reward trains. The weights
(1/1/1) and the gating are our reading of "hierarchical rewards", not numbers from the paper.

>>> good = ('<think><context>c</context><cognition>b</cognition><emotion>e</emotion>'
...         '<plan strategy="Question">p</plan></think>How are you?')
>>> care_reward([good, good.replace("Question", "reflection of feelings"), ""],
...             strategy=["question", "Question", "Question"])
[3.0, 2.0, 0.0]

A completion cut off at the length limit is not visible here (a reward sees text only): the
GRPO recipes set ``mask_truncated_completions: true``, so TRL leaves such completions out of
the loss.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from models.care_format import ParsedOutput, canonical_strategy, parse_care_output

FORMAT_WEIGHT = 1.0
STRUCTURE_WEIGHT = 1.0
STRATEGY_WEIGHT = 1.0
MAX_CARE_REWARD = FORMAT_WEIGHT + STRUCTURE_WEIGHT + STRATEGY_WEIGHT
#: Our guess, not the paper's: above the longest ESConv train reply (166 words; p99 is 71), so
#: no gold-like reply is penalised, while a runaway reply is.
DEFAULT_MAX_REPLY_WORDS = 200
_PARSES = frozenset({"complete", "missing_node", "out_of_order"})
# A speaker label at the start of a line: the model writing the next turn itself.
_SPEAKER_LABEL = re.compile(
    r"^[ \t]*[*_]*[ \t]*(?:user|seeker|help[- ]?seeker|supporter|assistant|human|system)"
    r"[ \t]*[*_]*[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or the assistant content of TRL message dicts.

    >>> completion_text([{"role": "assistant", "content": "hi"}])
    'hi'
    >>> completion_text(None)
    ''
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, Sequence):
        parts = [
            str(m.get("content") or "")
            for m in completion
            if isinstance(m, dict) and m.get("role", "assistant") == "assistant"
        ]
        return "".join(parts)
    return str(completion)


def invents_turn(reply: str | None) -> bool:
    """Whether a reply holds a line that starts with a speaker label (a turn it invented).

    >>> invents_turn("I'm here for you.\\nUser: thanks, that helps")
    True
    >>> invents_turn("I hear you.\\n\\n  **SEEKER**: ok")
    True
    >>> invents_turn("As a user of the gym, I know: it helps. My supporter: my sister.")
    False
    """
    return bool(reply) and _SPEAKER_LABEL.search(reply) is not None


def _parse_all(completions: Sequence[Any]) -> list[ParsedOutput]:
    return [parse_care_output(completion_text(c)) for c in completions]


def _gold(kwargs: dict, n: int) -> list[str | None]:
    gold = kwargs.get("strategy")
    if gold is None:
        raise ValueError("strategy_reward: kwargs['strategy'] (the gold strategies) is required")
    if isinstance(gold, str):
        gold = [gold] * n
    if len(gold) != n:
        raise ValueError(
            f"strategy_reward: kwargs['strategy'] has {len(gold)} labels for {n} completions"
        )
    return list(gold)


def _limits(kwargs: dict, n: int) -> list[int]:
    limit = kwargs.get("max_reply_words")
    if limit is None:
        return [DEFAULT_MAX_REPLY_WORDS] * n
    limits = [limit] * n if isinstance(limit, int) else list(limit)
    if len(limits) != n:
        raise ValueError(f"kwargs['max_reply_words'] has {len(limits)} values for {n} completions")
    for value in limits:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"kwargs['max_reply_words']: expected a positive integer, got {value!r}"
            )
    return limits


def _format(p: ParsedOutput, max_words: int = DEFAULT_MAX_REPLY_WORDS) -> float:
    if p.status not in _PARSES or not p.response:
        return 0.0
    if invents_turn(p.response) or len(p.response.split()) > max_words:
        return 0.0
    return 1.0


def _structure(p: ParsedOutput) -> float:
    return 1.0 if p.status == "complete" else 0.0


def _strategy(p: ParsedOutput, gold: str | None) -> float:
    if p.status not in _PARSES or p.strategy is None or gold is None:
        return 0.0
    want = canonical_strategy(gold)
    return 1.0 if want is not None and p.strategy.casefold() == want.casefold() else 0.0


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 when the completion is a well-formed ``<think>`` block followed by a reply.

    >>> format_reward(["<think><context>x</context></think>Hello", "Hello", "<think>x", ""])
    [1.0, 0.0, 0.0, 0.0]

    No ``<think>`` around the nodes (``unwrapped``), or tags leaking into the reply in any
    spelling (``tag_leak``, or ``malformed`` after a ``<think>`` block): no reward.

    >>> format_reward(["<context>x</context>Hello", "Hi <think/>", "Hi &lt;/plan&gt;",
    ...                "<think><context>x</context></think>Hi < / Plan >"])
    [0.0, 0.0, 0.0, 0.0]

    The reply must be one turn: an invented next turn, a speaker label at the start of any
    line in any case, loses the reward; a label inside a sentence does not.

    >>> chain = "<think><context>x</context></think>"
    >>> format_reward([chain + "I'm here.\\nUser: thanks", chain + "I'm here.\\nseeker : ok",
    ...                chain + "Supporter: I'm here.", chain + "Ask the user: what helps?"])
    [0.0, 0.0, 0.0, 1.0]

    A reply longer than ``max_reply_words`` (default :data:`DEFAULT_MAX_REPLY_WORDS`) loses it:

    >>> format_reward([chain + "word " * 20_000, chain + "one two three"], max_reply_words=3)
    [0.0, 1.0]
    >>> format_reward([chain + "word " * 201, chain + "word " * 200])
    [0.0, 1.0]
    >>> format_reward([chain + "hi"], max_reply_words=0)
    Traceback (most recent call last):
    ...
    ValueError: kwargs['max_reply_words']: expected a positive integer, got 0
    """
    parsed = _parse_all(completions)
    limits = _limits(kwargs, len(parsed))
    return [_format(p, n) for p, n in zip(parsed, limits, strict=True)]


def structure_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 when all four nodes occur once each, in order, with text, before a reply.

    >>> c, g, e = "<context>c</context>", "<cognition>g</cognition>", "<emotion>e</emotion>"
    >>> p = '<plan strategy="Question">p</plan>'
    >>> structure_reward([f"<think>{c}{g}{e}{p}</think>Hi",   # complete
    ...                   f"<think>{c}{e}{p}</think>Hi",      # missing node
    ...                   f"<think>{g}{c}{e}{p}</think>Hi",   # wrong order
    ...                   f"<think>{c}{c}{g}{e}{p}</think>Hi",  # duplicated node
    ...                   f"<think>{c}{g}{e}{p}</think>"])    # no reply after the chain
    [1.0, 0.0, 0.0, 0.0, 0.0]
    """
    return [_structure(p) for p in _parse_all(completions)]


def strategy_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 when the plan's strategy equals the gold one (``kwargs["strategy"]``), any case/synonym.

    >>> c = '<think><plan strategy="{}">p</plan></think>Hi'
    >>> strategy_reward([c.format("QUESTION"), c.format("Questions"), c.format("Others")],
    ...                 strategy=["Question", "Question", "Question"])
    [1.0, 1.0, 0.0]
    """
    parsed = _parse_all(completions)
    gold = _gold(kwargs, len(parsed))
    return [_strategy(p, g) for p, g in zip(parsed, gold, strict=True)]


def care_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """The hierarchical total: format, then structure if format holds, then strategy if both do.

    >>> chain = ('<think><context>c</context><cognition>g</cognition><emotion>e</emotion>'
    ...          '<plan strategy="Others">p</plan></think>{}')
    >>> care_reward([chain.format("Hi"), chain.format(""), "<think><plan>p</plan></think>Hi"],
    ...             strategy=["others", "Others", "Others"])
    [3.0, 0.0, 1.0]

    A complete chain without ``<think>`` (``unwrapped``) scores nothing, strategy included:

    >>> unwrapped = chain.format("Hi").removeprefix("<think>").replace("</think>", " ")
    >>> care_reward([unwrapped, "&lt;think&gt;" + chain.format("Hi")], strategy="Others")
    [0.0, 0.0]

    Losing the format loses everything after it: a perfect chain whose reply goes on with an
    invented seeker turn, or runs past the word limit, scores 0.

    >>> care_reward([chain.format("Hi.\\nUser: thanks!"), chain.format("so " * 50)],
    ...             strategy="Others", max_reply_words=[40, 40])
    [0.0, 0.0]
    """
    parsed = _parse_all(completions)
    gold = _gold(kwargs, len(parsed))
    limits = _limits(kwargs, len(parsed))
    rewards = []
    for p, g, n in zip(parsed, gold, limits, strict=True):
        fmt, struct, strat = _format(p, n), _structure(p), _strategy(p, g)
        rewards.append(
            FORMAT_WEIGHT * fmt
            + fmt * (STRUCTURE_WEIGHT * struct + struct * STRATEGY_WEIGHT * strat)
        )
    return rewards


#: The rewards a GRPO recipe can name, in the order GRPO passes them to TRL. Every one is
#: passed, so TRL logs each one's mean (``rewards/<function>/mean``); the recipe's ``rewards``
#: gives the weights, and a reward it does not name gets weight 0 (logged, not trained on).
REWARDS = {
    "format": format_reward,
    "structure": structure_reward,
    "strategy": strategy_reward,
    "care": care_reward,
}
REWARD_FUNCS = tuple(REWARDS.values())


def parse_rewards(value: Any) -> dict[str, float]:
    """A recipe's ``rewards`` as ``{name: weight}``: a YAML mapping, a list of names (weight 1
    each) or, from the command line, a JSON object or ``name=weight,name`` text.

    >>> parse_rewards({"care": 1})
    {'care': 1.0}
    >>> parse_rewards("strategy=2,care")
    {'strategy': 2.0, 'care': 1.0}
    >>> parse_rewards('{"care": 1.0}')
    {'care': 1.0}
    >>> parse_rewards({"care": "high"})
    Traceback (most recent call last):
    ...
    ValueError: rewards: care='high': expected a number as its weight
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"rewards: {value!r} is not a JSON object ({exc.msg})") from exc
        else:
            value = dict(
                (part.partition("=")[0].strip(), part.partition("=")[2].strip() or 1.0)
                for part in text.split(",")
                if part.strip()
            )
    elif isinstance(value, (list, tuple)):
        value = dict.fromkeys(value, 1.0)
    if not isinstance(value, Mapping):
        raise ValueError(f"rewards: expected a mapping of reward names to weights, got {value!r}")
    out = {}
    for name, weight in value.items():
        try:
            out[str(name)] = float(weight)
        except (TypeError, ValueError):
            raise ValueError(
                f"rewards: {name}={weight!r}: expected a number as its weight"
            ) from None
    return out


def reward_weights(rewards: Mapping[str, float]) -> list[float]:
    """TRL's ``reward_weights`` for the named rewards: one per :data:`REWARD_FUNCS`, in that
    order, 0 for a reward not named. An unknown name is an error naming the known ones.

    >>> reward_weights({"care": 1.0})
    [0.0, 0.0, 0.0, 1.0]
    >>> reward_weights({"strategy": 1.0, "care": 1.0})
    [0.0, 0.0, 1.0, 1.0]
    >>> reward_weights({"nodes": 1.0})
    Traceback (most recent call last):
    ...
    ValueError: rewards: unknown reward 'nodes'; expected one of format, structure, strategy, care
    """
    unknown = [name for name in rewards if name not in REWARDS]
    if unknown:
        raise ValueError(
            f"rewards: unknown reward {unknown[0]!r}; expected one of {', '.join(REWARDS)}"
        )
    if not rewards:
        raise ValueError("rewards: name at least one reward, e.g. {care: 1.0}")
    return [float(rewards.get(name, 0.0)) for name in REWARDS]
