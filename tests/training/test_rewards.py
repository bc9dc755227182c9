"""Reward functions: every edge case, strings and TRL's conversational completions."""

from __future__ import annotations

import pytest

from training.rewards import (
    DEFAULT_MAX_REPLY_WORDS,
    MAX_CARE_REWARD,
    care_reward,
    completion_text,
    format_reward,
    strategy_reward,
    structure_reward,
)

C, G, E = "<context>c</context>", "<cognition>g</cognition>", "<emotion>e</emotion>"


def plan(strategy: str = "Question") -> str:
    return f'<plan strategy="{strategy}">p</plan>'


def out(*parts: str, reply: str = "How are you holding up?") -> str:
    return "<think>" + "".join(parts) + "</think>" + reply


CASES = {
    # name: (text, gold, (format, structure, strategy, care))
    "complete, gold strategy": (out(C, G, E, plan()), "Question", (1, 1, 1, 3)),
    "complete, wrong strategy": (out(C, G, E, plan("Others")), "Question", (1, 1, 0, 2)),
    "strategy in another case": (out(C, G, E, plan("QUESTION")), "question", (1, 1, 1, 3)),
    "strategy synonym": (out(C, G, E, plan("Questions")), "[Question]", (1, 1, 1, 3)),
    "old synonym": (out(C, G, E, plan("Direct Guidance")), "Providing Suggestions", (1, 1, 1, 3)),
    "unknown strategy": (out(C, G, E, plan("Humour")), "Question", (1, 1, 0, 2)),
    "plan without strategy": (out(C, G, E, "<plan>p</plan>"), "Question", (1, 1, 0, 2)),
    # the strategy counts alone but not in the total, which needs the structure first
    "missing node": (out(C, E, plan()), "Question", (1, 0, 1, 1)),
    "wrong order": (out(G, C, E, plan()), "Question", (1, 0, 1, 1)),
    "duplicated node": (out(C, G, G, E, plan()), "Question", (1, 0, 1, 1)),
    "reply missing": (out(C, G, E, plan(), reply=""), "Question", (0, 0, 0, 0)),
    "unclosed think": ("<think>" + C + G + E + plan(), "Question", (0, 0, 0, 0)),
    "nested tags": (out(C, "<cognition>" + E + "</cognition>", plan()), "Question", (0, 0, 0, 0)),
    "empty output": ("", "Question", (0, 0, 0, 0)),
    "baseline reply": ("I hear you.", "Question", (0, 0, 0, 0)),
    # our rules (docs/training.md): the reply is one turn, of at most DEFAULT_MAX_REPLY_WORDS
    # words; breaking either loses the format reward and with it the whole hierarchical total
    "invented next turn": (out(C, G, E, plan(), reply="I'm here.\nUser: thanks"), "Question",
                           (0, 1, 1, 0)),
    "invented turn, any case": (out(C, G, E, plan(), reply="Ok.\n\n**SEEKER**: fine"),
                                "Question", (0, 1, 1, 0)),
    "speaker word inside a line": (out(C, G, E, plan(), reply="As your supporter: how?"),
                                   "Question", (1, 1, 1, 3)),
    "reply over the word limit": (out(C, G, E, plan(), reply="so " * (DEFAULT_MAX_REPLY_WORDS + 1)),
                                  "Question", (0, 1, 1, 0)),
    "reply at the word limit": (out(C, G, E, plan(), reply="so " * DEFAULT_MAX_REPLY_WORDS),
                                "Question", (1, 1, 1, 3)),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_each_component_and_the_total(name):
    text, gold, (fmt, struct, strat, care) = CASES[name]
    assert format_reward([text]) == [fmt]
    assert structure_reward([text]) == [struct]
    assert strategy_reward([text], strategy=[gold]) == [strat]
    assert care_reward([text], strategy=[gold]) == [care]


def test_conversational_completions_score_like_strings():
    texts = [CASES[n][0] for n in CASES]
    gold = [CASES[n][1] for n in CASES]
    convo = [[{"role": "assistant", "content": t}] for t in texts]
    assert care_reward(convo, strategy=gold) == care_reward(texts, strategy=gold)
    assert (
        completion_text([{"role": "assistant", "content": "a"}, {"role": "tool", "content": "x"}])
        == "a"
    )


def test_total_is_bounded_and_hierarchical():
    texts = [CASES[n][0] for n in CASES]
    gold = [CASES[n][1] for n in CASES]
    fmt, struct = format_reward(texts), structure_reward(texts)
    strat, care = strategy_reward(texts, strategy=gold), care_reward(texts, strategy=gold)
    for f, s, g, c in zip(fmt, struct, strat, care, strict=True):
        assert 0.0 <= c <= MAX_CARE_REWARD
        assert c == f + f * (s + s * g)


def test_trl_extra_kwargs_are_ignored_and_gold_is_checked():
    text = out(C, G, E, plan())
    kwargs = {"prompts": ["p"], "completion_ids": [[1]], "trainer_state": None, "log_metric": None}
    assert care_reward([text], strategy=["Question"], **kwargs) == [3.0]
    with pytest.raises(ValueError, match="strategy"):
        strategy_reward([text])
    with pytest.raises(ValueError, match="2 labels for 1"):
        care_reward([text], strategy=["Question", "Others"])
    assert strategy_reward([text], strategy=[None]) == [0.0]


def test_the_word_limit_comes_from_the_dataset_column_per_completion():
    """GRPO passes the recipe's ``max_reply_words`` as a column: one value per completion."""
    text = out(C, G, E, plan(), reply="one two three four")
    assert care_reward([text, text], strategy="Question", max_reply_words=[4, 3]) == [3.0, 0.0]
    assert format_reward([text], max_reply_words=4) == [1.0]
    with pytest.raises(ValueError, match="2 values for 1 completions"):
        format_reward([text], max_reply_words=[4, 4])
    with pytest.raises(ValueError, match="expected a positive integer, got '4'"):
        care_reward([text], strategy="Question", max_reply_words=["4"])
