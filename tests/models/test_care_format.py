"""The CARE output contract: statuses, recovery of the reply, round trips, and robustness."""

from __future__ import annotations

import random

import pytest

from models.care_format import (
    NODES,
    STATUSES,
    ParsedOutput,
    format_care_output,
    has_reasoning_tag,
    parse_care_output,
)

C, G, E = "<context>ctx</context>", "<cognition>cog</cognition>", "<emotion>emo</emotion>"
P = '<plan strategy="Question">ask</plan>'


def chain(*parts: str, reply: str = "How long has this been going on?") -> str:
    return "<think>" + "".join(parts) + "</think>" + reply


def test_complete_chain_round_trips_every_field():
    text = format_care_output(
        context="She lost her job last week.",
        cognition="She believes she will never find another.",
        emotion="Anxious and ashamed.",
        strategy="Reflection of feelings",
        plan="Name her anxiety gently.",
        response="  It sounds like you're scared about what comes next.  ",
    )
    p = parse_care_output(text)
    assert p.status == "complete" and p.ok
    assert p.order == NODES
    assert p.nodes == {
        "context": "She lost her job last week.",
        "cognition": "She believes she will never find another.",
        "emotion": "Anxious and ashamed.",
        "plan": "Name her anxiety gently.",
    }
    assert p.strategy == "Reflection of feelings"
    assert p.response == "It sounds like you're scared about what comes next."
    assert p.reasoning.startswith("<context>She lost")


def test_baseline_output_is_no_reasoning_with_whole_text():
    p = parse_care_output("  I'm sorry to hear that. What happened?\n")
    assert p == ParsedOutput(
        status="no_reasoning", response="I'm sorry to hear that. What happened?"
    )
    assert parse_care_output("").response is None
    assert parse_care_output("   ").status == "no_reasoning"


@pytest.mark.parametrize(
    "text",
    [
        "<think><context>x</context> and then it stops",  # <think> never closed
        "<think><think>" + C + "</think></think>Hi",  # nested think
        "</think>Hi<think>" + C,  # closing before opening
        chain(C, G, E, P, reply=""),  # empty reply after the chain
        chain(C, G, E, P, reply="   \n "),
        chain("<context>x", G, E, P),  # node never closed
        chain("<context><emotion>e</emotion></context>", G, P),  # node nested in another
        chain(C, "</cognition>", E, P),  # closing tag without opening
        chain(C, "stray words", G, E, P),  # text outside any node
        chain(C, G, E, '<plan strategy="Question">ask</emotion>'),  # mismatched close
    ],
)
def test_malformed(text):
    assert parse_care_output(text).status == "malformed"


def test_malformed_keeps_a_clean_reply_but_drops_a_dirty_one():
    # Stray text before <think>: the reply after the single </think> is still clean.
    p = parse_care_output("Sure! " + chain(C, G, E, P, reply=" I hear you. "))
    assert p.status == "malformed" and p.response == "I hear you."
    # DeepSeek-R1 style: the template opened <think>, the output only closes it.
    p = parse_care_output("the seeker is sad</think>\nThat sounds painful.")
    assert p.status == "malformed" and p.response == "That sounds painful."
    # Reply containing CARE tags is not clean.
    p = parse_care_output(chain(C, G, E, P, reply="Hi <plan>more</plan>"))
    assert p.status == "malformed" and p.response is None
    # Two </think>: no way to tell which reply is the real one.
    p = parse_care_output(chain(C, G, E, P) + "</think>Again")
    assert p.status == "malformed" and p.response is None
    # Unclosed: no reply at all.
    assert parse_care_output("<think>" + C + G).response is None


def test_missing_node_and_blank_node():
    p = parse_care_output(chain(C, E, P))
    assert p.status == "missing_node" and p.order == ("context", "emotion", "plan")
    assert p.response == "How long has this been going on?"
    assert parse_care_output(chain(C, "<cognition>  </cognition>", E, P)).status == "missing_node"
    # Free-form reasoning without any node: reasoning present, nodes missing.
    p = parse_care_output("<think>Let me think about this.</think>Okay.")
    assert p.status == "malformed"  # non-blank text outside nodes
    p = parse_care_output("<think>  </think>Okay.")
    assert p.status == "missing_node" and p.nodes == {} and p.response == "Okay."


def test_wrong_order_and_duplicates_are_out_of_order():
    p = parse_care_output(chain(G, C, E, P))
    assert p.status == "out_of_order" and p.order == ("cognition", "context", "emotion", "plan")
    # Duplicates are well-formed text with a wrong structure: out_of_order, and visible in order.
    p = parse_care_output(chain(C, "<context>again</context>", G, E, P))
    assert p.status == "out_of_order"
    assert p.order == ("context", "context", "cognition", "emotion", "plan")
    assert p.nodes["context"] == "ctx"  # the first occurrence
    # Out of order takes precedence over missing.
    assert parse_care_output(chain(P, C)).status == "out_of_order"


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ('<plan strategy="question">', "Question"),
        ("<plan strategy='Questions'>", "Question"),  # README plural, single quotes
        ("<plan strategy=[Others]>", "Others"),  # unquoted, bracketed as in strategy.json
        ('< PLAN  Strategy = "reflection-of-feelings" >', "Reflection of feelings"),
        ('<plan strategy="Humour">', "Humour"),  # unknown: kept raw
        ("<plan>", None),
    ],
)
def test_plan_strategy_is_normalised(tag, expected):
    p = parse_care_output(chain(C, G, E, f"{tag}p</plan>"))
    assert p.status == "complete" and p.strategy == expected


def test_tags_are_case_insensitive():
    text = (
        "<THINK><Context>a</Context><cognition>b</COGNITION><emotion>c</emotion>"
        '<plan strategy="Others">d</plan></Think>Hey'
    )
    p = parse_care_output(text)
    assert p.status == "complete" and p.nodes["context"] == "a" and p.response == "Hey"


def test_format_rejects_ambiguous_fields():
    ok = dict(context="a", cognition="b", emotion="c", strategy="Question", plan="d", response="e")
    for name, bad in [("plan", "x </plan> y"), ("response", "<think>"), ("context", " ")]:
        with pytest.raises(ValueError, match=name):
            format_care_output(**{**ok, name: bad})
    with pytest.raises(ValueError, match="strategy"):
        format_care_output(**{**ok, "strategy": 'Qu"estion'})


def test_fuzz_random_strings_never_raise():
    """Random strings made of tag fragments and text: the parser always returns a valid result."""
    pieces = [
        "<think>", "</think>", "<context>", "</context>", "<cognition>", "</cognition>",
        "<emotion>", "</emotion>", '<plan strategy="Question">', "<plan strategy='x>", "</plan>",
        "<", ">", "/", '"', "=", "strategy", "hello", " ", "\n", "é", "\x00", "{", "}", "<3",
    ]  # fmt: skip
    rng = random.Random(1234)
    for _ in range(3000):
        if rng.random() < 0.2:
            text = "".join(chr(rng.randrange(0, 0x2FFF)) for _ in range(rng.randrange(40)))
        else:
            text = "".join(rng.choice(pieces) for _ in range(rng.randrange(25)))
        p = parse_care_output(text)
        assert p.status in STATUSES
        assert p.response is None or (p.response == p.response.strip() and p.response)
        if p.status == "complete":
            assert p.order == NODES and set(p.nodes) == set(NODES)
        if p.status in ("malformed", "no_reasoning"):
            assert p.nodes == {}
    assert parse_care_output(None).status == "no_reasoning"  # type: ignore[arg-type]


# --- No reasoning tag ever reaches a shown reply ----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I hear you < / Plan > really",  # spacing
        "<think/> I hear you.",  # self-closing
        "<Think />I hear you.",
        "I hear you. &lt;think&gt;",  # HTML-escaped
        "I hear you. &lt;/context&gt;",
        "I hear you. &#60;/plan&#62;",  # numeric escapes
        "I hear you. &#x3C;emotion&#x3E;",
        "I hear you. &amp;lt;cognition&amp;gt;",  # escaped twice
        "I hear you. \\u003cthink\\u003e",  # JSON escape written out
        "I hear you. \uff1cplan\uff1e",  # full-width brackets
        "I hear you. <thinking>hmm</thinking>",
        'I hear you. <plan strategy="Question"',  # left open at the end
        "Sure. <context>a</context> How are you?",  # text before the first node
        "<context>a</context><cognition>b How are you?",  # a node never closed
        "<context>a</context>",  # nodes and no reply
        "<context>a</context> How are you? </plan>",  # a tag in what would be the reply
        "<context>a<emotion>b</emotion></context> Hi",  # nested
    ],
)
def test_a_reasoning_tag_without_a_proper_chain_is_a_leak(text):
    p = parse_care_output(text)
    assert p.status == "tag_leak" and p.response is None, p
    assert has_reasoning_tag(text)


def test_a_stray_think_tag_is_malformed_and_never_in_the_reply():
    for text in ("How are you? <think>", "<THINK>", "Hi <think> there </Think>"):
        p = parse_care_output(text)
        assert p.status == "malformed" and p.response is None, text
    # R1 style (the template opened <think>): what follows the only </think> is the reply
    p = parse_care_output("Hi </Think> there")
    assert p.status == "malformed" and p.response == "there"


@pytest.mark.parametrize(
    "text",
    [
        "I care about you, and I plan to listen.",
        "Context matters; your emotions are valid. <3",
        "a < b and c > d",
        "Think about what would help <em>you</em>.",
        "&lt;3 thinking of you",
    ],
)
def test_ordinary_replies_are_not_leaks(text):
    assert not has_reasoning_tag(text)
    assert parse_care_output(text).status == "no_reasoning"


def test_nodes_without_think_are_unwrapped_and_split():
    p = parse_care_output('<context>a</context><plan strategy="Question">b</plan> How are you?')
    assert p.status == "unwrapped" and not p.ok
    assert p.response == "How are you?"
    assert p.reasoning == '<context>a</context><plan strategy="Question">b</plan>'
    assert (p.strategy, p.order, p.nodes) == (
        "Question",
        ("context", "plan"),
        {"context": "a", "plan": "b"},
    )
    # any case and spacing; all four nodes
    p = parse_care_output(
        "\n<CONTEXT>a</ Context >\n<cognition>b</cognition><emotion>c</emotion>\n"
        "< plan strategy='reflection of feelings' >d</PLAN>\n  That sounds lonely.  "
    )
    assert p.status == "unwrapped" and p.response == "That sounds lonely."
    assert p.order == NODES and p.strategy == "Reflection of feelings"


def test_a_chain_followed_by_an_escaped_tag_has_no_reply():
    p = parse_care_output(chain(C, G, E, P, reply="Hi &lt;/plan&gt;"))
    assert p.status == "malformed" and p.response is None
    p = parse_care_output(chain(C, G, E, P, reply="Hi <Think/>"))
    assert p.status == "malformed" and p.response is None


def test_new_statuses_are_listed():
    assert STATUSES[-2:] == ("unwrapped", "tag_leak")


def test_fuzz_no_reply_ever_holds_a_reasoning_tag():
    pieces = [
        "<think>", "</think>", "<think/>", "<context>", "</context>", "< / Plan >", "<plan>",
        "</plan>", "<emotion>", "</emotion>", "&lt;", "&gt;", "&#60;", "&amp;", "think",
        "context", "/", "<", ">", " ", "\n", "Hi.", "care", "\uff1c",
    ]  # fmt: skip
    rng = random.Random(99)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(20)))
        p = parse_care_output(text)
        assert p.status in STATUSES
        assert p.response is None or not has_reasoning_tag(p.response), text
