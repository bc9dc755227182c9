"""The CARE output format: a reasoning chain inside ``<think>`` followed by the reply.

This module is the contract between enrichment (which writes targets), SFT (which learns them),
the rewards (which score samples) and the evaluation site (which stores the chain apart from the
reply and shows annotators only the reply). A model's text looks like::

    <think><context>...</context><cognition>...</cognition><emotion>...</emotion>
    <plan strategy="Question">...</plan></think>
    How long have you been feeling this way?

Model output is untrusted: :func:`parse_care_output` only runs regular expressions over the string,
never evaluates anything, and returns a :class:`ParsedOutput` for every possible input.

Statuses, checked in this order:

``no_reasoning``
    Neither ``<think>`` nor ``</think>`` occurs, and no other reasoning tag either (a baseline's
    output). ``response`` is the whole stripped text, or ``None`` when that is empty. Text
    without ``<think>`` that holds a reasoning tag is ``unwrapped`` or ``tag_leak`` (below).
``malformed``
    The ``<think>`` block is broken: ``<think>`` without ``</think>`` (or the reverse), more than
    one of either, ``</think>`` before ``<think>``, text before ``<think>``, a node tag that is not
    closed, closed twice, nested in another node, or written after ``</think>``, non-blank text
    inside ``<think>`` but outside any node, or an empty reply after ``</think>``.
    ``response`` is still recovered when a *clean* reply exists: exactly one ``</think>``
    and, after it, non-empty text with no reasoning tag in it (:func:`has_reasoning_tag`).
    Otherwise it is ``None``.
``out_of_order``
    The tags are well formed, but a node occurs twice, or the nodes found are not in the order
    context, cognition, emotion, plan. A duplicate is *not* malformed: the text is still
    parseable and the reply is clean, only the structure is wrong, so the format reward holds
    and the structure reward does not. ``nodes`` keeps the first occurrence of each node;
    ``order`` keeps every occurrence, so duplicates are visible.
``missing_node``
    Well formed and in order, but fewer than four nodes, or a node whose text is blank.
``complete``
    All four nodes, each once, in order, each with text, and a non-empty reply.
``unwrapped``
    Neither ``<think>`` nor ``</think>``, but the text is node blocks (well formed, as inside
    ``<think>``) followed by a reply: ``<context>a</context><plan strategy="Question">b</plan>
    How are you?``. ``reasoning`` is the node part, ``response`` the clean text after the last
    node, ``nodes``/``order``/``strategy`` as read. It earns no format reward: the chain is not
    in ``<think>``.
``tag_leak``
    No ``<think>`` block, and a reasoning tag somewhere that cannot be split off cleanly (text
    before the first node, a broken node, a tag in what would be the reply, a self-closing
    ``<think/>``, an HTML-escaped tag). ``response`` is ``None``: nothing is shown.

The tag rule has one home, :func:`has_reasoning_tag`: a think (or ``thinking``) tag or a CARE
node tag, in any case, with any spacing (``< / Plan >``), with attributes, self-closing
(``<think/>``), left open at the end of the text, HTML-escaped (``&lt;think&gt;``,
``&#60;/plan&#62;``, twice-escaped ``&amp;lt;``), JSON-escaped (``\\u003cthink\\u003e``) or
written with full-width brackets.
``parse_care_output`` never returns a ``response`` for which it is true (a final guard turns
one into ``tag_leak``).

Tags are matched case-insensitively and may contain spaces (``< plan strategy='X' >``);
``nodes`` and ``order`` use lower-case names. The plan's ``strategy`` attribute may be quoted with
either quote or unquoted; it is normalised to one of ESConv's eight labels when
:func:`training.datasets.strategies.normalize_strategy` knows it, else kept raw (stripped).
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field, replace

NODES = ("context", "cognition", "emotion", "plan")
STATUSES = (
    "complete",
    "missing_node",
    "out_of_order",
    "malformed",
    "no_reasoning",
    "unwrapped",
    "tag_leak",
)

_THINK_OPEN = re.compile(r"<\s*think\s*>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)
# Any CARE tag, opening or closing, with optional attributes (only the plan's are read).
_TAG = re.compile(r"<\s*(/?)\s*(think|context|cognition|emotion|plan)\b([^<>]*)>", re.IGNORECASE)
_STRATEGY_ATTR = re.compile(
    r"""strategy\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE
)
# The guard: anything that reads as a reasoning tag once decoded, closed or left open at the end.
_TAG_LIKE = re.compile(
    r"<\s*/?\s*(?:think(?:ing)?|context|cognition|emotion|plan)\b[^<>]*(?:>|$)", re.IGNORECASE
)
_JSON_BRACKET = re.compile(r"\\u003([ce])", re.IGNORECASE)


def _decoded(text: str) -> str:
    """The text as a browser (or a reader) would see it: entities and look-alikes decoded."""
    out = unicodedata.normalize("NFKC", text)  # full-width < > and friends become ASCII
    out = _JSON_BRACKET.sub(lambda m: "<" if m.group(1).lower() == "c" else ">", out)
    for _ in range(3):  # &amp;lt; takes two rounds; stop once nothing changes
        decoded = html.unescape(out)
        if decoded == out:
            break
        out = decoded
    return out


def has_reasoning_tag(text: str | None) -> bool:
    """Whether ``text`` holds a think tag or a CARE node tag, however it is written.

    The one home of the rule that keeps reasoning out of what annotators see.

    >>> has_reasoning_tag("I hear you. <3 What happened?")
    False
    >>> has_reasoning_tag("Take care of yourself. I plan to listen.")
    False
    >>> [has_reasoning_tag(t) for t in ("< / Plan >", "<THINK/>", "&lt;context&gt;",
    ...                                 "&#60;/emotion&#62;", "&amp;lt;think&amp;gt;",
    ...                                 "Hi <cognition", "\uff1cthink\uff1e")]
    [True, True, True, True, True, True, True]
    """
    return bool(text) and _TAG_LIKE.search(_decoded(text)) is not None


@dataclass(frozen=True)
class ParsedOutput:
    """What :func:`parse_care_output` found in a model's text."""

    status: str  # one of STATUSES
    response: str | None  # the reply after </think>, stripped; None when no clean reply exists
    nodes: dict[str, str] = field(default_factory=dict)  # node name -> stripped text (first seen)
    order: tuple[str, ...] = ()  # node names in the order found, duplicates kept
    strategy: str | None = None  # the plan's strategy, normalised when possible, else raw
    reasoning: str | None = None  # the raw text inside <think>...</think>

    @property
    def ok(self) -> bool:
        """True when the output is a complete CARE chain followed by a reply."""
        return self.status == "complete"


def canonical_strategy(label: str | None) -> str | None:
    """Normalise a strategy label to ESConv's eight when possible, else return it stripped.

    >>> canonical_strategy(None) is None
    True
    """
    if label is None:
        return None
    raw = label.strip()
    if not raw:
        return None
    from training.datasets.strategies import normalize_strategy  # the one home of the synonyms

    try:
        return normalize_strategy(raw)
    except (ValueError, KeyError):  # unknown label: keep it so a caller can still show it
        return raw


def _clean_reply(after: str) -> str | None:
    reply = after.strip()
    if not reply or has_reasoning_tag(reply):
        return None
    return reply


@dataclass
class _Nodes:
    nodes: dict[str, str]
    order: list[str]
    strategy: str | None
    end: int  # end of the last closing tag


def _scan_nodes(segment: str) -> _Nodes | None:
    """Read consecutive node blocks from the start of ``segment``; None when they are broken.

    Broken: a think tag, a node nested in another, closed without being open or with
    attributes, left open, or non-blank text before a node. The text after the last node is
    the caller's to judge."""
    nodes: dict[str, str] = {}
    order: list[str] = []
    strategy: str | None = None
    current: str | None = None  # the node whose opening tag we are inside
    content_start = 0
    last_end = 0  # end of the last closing tag: text between nodes must be blank
    for m in _TAG.finditer(segment):
        closing, name, attrs = m.group(1) == "/", m.group(2).lower(), m.group(3)
        if name == "think":
            return None
        if not closing:
            if current is not None or segment[last_end : m.start()].strip():
                return None  # nested node, or stray text between nodes
            current, content_start = name, m.end()
            if name == "plan" and "plan" not in nodes:
                attr = _STRATEGY_ATTR.search(attrs)
                if attr:
                    raw = next(g for g in attr.groups() if g is not None)
                    strategy = canonical_strategy(raw)
            continue
        if current != name or attrs.strip():
            return None  # closes a node that is not open
        order.append(name)
        nodes.setdefault(name, segment[content_start : m.start()].strip())
        current, last_end = None, m.end()
    if current is not None:
        return None
    return _Nodes(nodes, order, strategy, last_end)


def _without_think(text: str) -> ParsedOutput:
    """No <think> and no </think>: a baseline's reply, an unwrapped chain, or a leak."""
    stripped = text.strip()
    if not has_reasoning_tag(stripped):
        return ParsedOutput(status="no_reasoning", response=stripped or None)
    found = _scan_nodes(stripped)
    reply = _clean_reply(stripped[found.end :]) if found and found.order else None
    if reply is None:
        return ParsedOutput(status="tag_leak", response=None)
    return ParsedOutput(
        status="unwrapped",
        response=reply,
        nodes=found.nodes,
        order=tuple(found.order),
        strategy=found.strategy,
        reasoning=stripped[: found.end],
    )


def _malformed(text: str, reasoning: str | None) -> ParsedOutput:
    closes = list(_THINK_CLOSE.finditer(text))
    response = _clean_reply(text[closes[0].end() :]) if len(closes) == 1 else None
    return ParsedOutput(status="malformed", response=response, reasoning=reasoning)


def parse_care_output(text: str) -> ParsedOutput:
    """Split a model's text into its CARE nodes, plan strategy and reply; never raises.

    >>> p = parse_care_output('<think><context>a</context><cognition>b</cognition>'
    ...     '<emotion>c</emotion><plan strategy="question">d</plan></think> Why? ')
    >>> p.status, p.response, p.strategy, p.order
    ('complete', 'Why?', 'Question', ('context', 'cognition', 'emotion', 'plan'))
    >>> parse_care_output("I hear you.").status
    'no_reasoning'
    >>> parse_care_output("<think><context>a</context>").status  # never closed
    'malformed'
    >>> p = parse_care_output('<context>a</context><plan strategy="Question">b</plan> How are you?')
    >>> p.status, p.response, p.strategy, p.order
    ('unwrapped', 'How are you?', 'Question', ('context', 'plan'))
    >>> [parse_care_output(t).status for t in ("Sure. <context>a</context> Hi", "Hi &lt;/plan&gt;")]
    ['tag_leak', 'tag_leak']
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    parsed = _parse(text)
    if parsed.response is not None and has_reasoning_tag(parsed.response):
        # The final guard: whatever the path above, no reasoning tag is ever a reply.
        return replace(parsed, status="tag_leak", response=None)
    return parsed


def _parse(text: str) -> ParsedOutput:
    opens = list(_THINK_OPEN.finditer(text))
    closes = list(_THINK_CLOSE.finditer(text))
    if not opens and not closes:
        return _without_think(text)
    if len(opens) != 1 or len(closes) != 1 or closes[0].start() < opens[0].end():
        return _malformed(text, None)
    open_m, close_m = opens[0], closes[0]
    reasoning = text[open_m.end() : close_m.start()]
    if text[: open_m.start()].strip():
        return _malformed(text, reasoning)
    response = _clean_reply(text[close_m.end() :])
    if response is None:
        return ParsedOutput(status="malformed", response=None, reasoning=reasoning)
    found = _scan_nodes(reasoning)
    if found is None or reasoning[found.end :].strip():
        return _malformed(text, reasoning)
    order = found.order
    ranks = [NODES.index(n) for n in order]
    if len(set(order)) != len(order) or ranks != sorted(ranks):
        status = "out_of_order"
    elif len(order) < len(NODES) or not all(found.nodes.values()):
        status = "missing_node"
    else:
        status = "complete"
    return ParsedOutput(
        status=status,
        response=response,
        nodes=found.nodes,
        order=tuple(order),
        strategy=found.strategy,
        reasoning=reasoning,
    )


def format_care_output(
    *, context: str, cognition: str, emotion: str, strategy: str, plan: str, response: str
) -> str:
    """Write a CARE target; :func:`parse_care_output` reads it back as ``complete``.

    Raises ``ValueError`` naming the field when a field is blank, contains a CARE tag (which
    would make the text ambiguous), or the strategy contains a double quote.

    >>> text = format_care_output(context="a", cognition="b", emotion="c", strategy="Question",
    ...                           plan="d", response="Why?")
    >>> text[:71]
    '<think><context>a</context><cognition>b</cognition><emotion>c</emotion>'
    >>> text[71:]
    '<plan strategy="Question">d</plan></think>\\nWhy?'
    """
    fields = {
        "context": context,
        "cognition": cognition,
        "emotion": emotion,
        "strategy": strategy,
        "plan": plan,
        "response": response,
    }
    for name, value in fields.items():
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"format_care_output: field {name!r} must be a non-blank string")
        if has_reasoning_tag(value):
            raise ValueError(f"format_care_output: field {name!r} contains a CARE tag: {value!r}")
    if '"' in strategy:
        raise ValueError(
            f"format_care_output: field 'strategy' contains a double quote: {strategy!r}"
        )
    s = {k: v.strip() for k, v in fields.items()}
    return (
        f"<think><context>{s['context']}</context><cognition>{s['cognition']}</cognition>"
        f'<emotion>{s["emotion"]}</emotion><plan strategy="{s["strategy"]}">{s["plan"]}</plan>'
        f"</think>\n{s['response']}"
    )
