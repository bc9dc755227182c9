"""The researcher's item browser: a study's items with their context, both replies (system,
checkpoint, CARE reasoning nodes and parse status) and every judgment, filtered and paginated.

The study page (`/studies/<id>/items/`) and the API (`/api/studies/<id>/items/`) both call
`browse_items`. Annotators never reach it: it names systems and shows reasoning chains.

Filters (each optional; a bad value raises `BrowseError` naming the parameter):

- ``comparison``: the id of one of the study's comparisons, or ``gold`` for gold items;
- ``outcome``: the item's majority outcome on ``criterion`` (`OUTCOMES`);
- ``agreement``: how far the item's annotators agree on ``criterion`` (`AGREEMENT_LEVELS`);
- ``has_comment``: some judgment of the item carries a comment (true) or none does (false).

The outcome and agreement of an item come from `item_outcome` over its judgments' answers on the
criterion, seen from A's side (cannot-judge judgments and answers to other criteria left out).
Queries are bounded: a page is read with a fixed number of queries whatever its size; only the
outcome and agreement filters read the study's answers (one compact query) to select the page.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from django.db.models import Exists, OuterRef, Prefetch, Q

from models.care_format import NODES, parse_care_output
from pairwise.models import ComparisonItem, Judgment, Response, Study
from pairwise.outcomes import outcome_from_choice
from pairwise.services.errors import ServiceError

PAGE_SIZE = 25
GOLD = "gold"
OUTCOMES = ("a", "b", "tie", "no_majority", "unjudged")
OUTCOME_LABELS = {
    "a": "A wins",
    "b": "B wins",
    "tie": "tie",
    "no_majority": "no majority",
    "unjudged": "not judged",
}
AGREEMENT_LEVELS = ("unanimous", "majority", "split", "single", "unjudged")
NODE_LABELS = {
    "context": "Context",
    "cognition": "Cognition",
    "emotion": "Emotion",
    "plan": "Support Plan",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class BrowseError(ServiceError):
    """A bad filter value; the message starts with the parameter's name ("outcome: ...")."""


def _shown(value: Any) -> str:
    return repr(str(value)[:40])


# --- Pure parts --------------------------------------------------------------------------------


def item_outcome(outcomes: Iterable[str]) -> dict[str, Any]:
    """The majority outcome of one item on one criterion, from its annotators' answers seen from
    A's side ("a", "b" or "tie"), and how far they agree.

    ``outcome``: the answer given by more than half of the annotators, else ``no_majority``
    (``unjudged`` with no answers). ``agreement``: the share giving the most common answer.
    ``level``: ``unanimous`` (two or more, all agree), ``majority`` (more than half, not all),
    ``split`` (no answer has more than half), ``single`` (one answer) or ``unjudged``.

    >>> r = item_outcome(["a", "a", "b"])
    >>> r["outcome"], round(r["agreement"], 3), r["level"], r["n"]
    ('a', 0.667, 'majority', 3)
    >>> r = item_outcome(["a", "b", "tie"])
    >>> r["outcome"], round(r["agreement"], 3), r["level"]
    ('no_majority', 0.333, 'split')
    >>> [item_outcome(x)["level"] for x in (["tie", "tie"], ["b"], ["a", "b"], [])]
    ['unanimous', 'single', 'split', 'unjudged']
    """
    counts = Counter(outcomes)
    votes = {k: counts.get(k, 0) for k in ("a", "b", "tie")}
    unknown = set(counts) - set(votes)
    if unknown:
        raise ValueError(f"outcomes: expected 'a', 'b' or 'tie', got {sorted(unknown)[:3]}")
    n = sum(votes.values())
    if n == 0:
        return {"outcome": "unjudged", "agreement": None, "level": "unjudged", "n": 0, **votes}
    top, count = counts.most_common(1)[0]
    majority = 2 * count > n
    if n == 1:
        level = "single"
    elif count == n:
        level = "unanimous"
    else:
        level = "majority" if majority else "split"
    return {
        "outcome": top if majority else "no_majority",
        "agreement": count / n,
        "level": level,
        "n": n,
        **votes,
    }


def answer_from_a(choice: str | None, a_on_left: bool) -> str | None:
    """An annotator's blinded answer ("left", "right", "tie") as "a", "b" or "tie"; None for
    no (or an unknown) answer.

    >>> answer_from_a("left", False), answer_from_a("right", False), answer_from_a("tie", True)
    ('b', 'a', 'tie')
    """
    if choice not in ("left", "right", "tie"):
        return None
    return outcome_from_choice(choice, "left" if a_on_left else "right")


def _votes(judgments: Iterable[tuple[Mapping, bool]], criterion: str, a_on_left: bool) -> list:
    """(choices, cannot_judge) pairs -> the answers on `criterion` from A's side."""
    out = []
    for choices, cannot_judge in judgments:
        if cannot_judge or not isinstance(choices, Mapping):
            continue
        answer = answer_from_a(choices.get(criterion), a_on_left)
        if answer is not None:
            out.append(answer)
    return out


def care_reasoning(raw_output: str, reasoning: str, parse_status: str) -> dict[str, Any]:
    """The four CARE nodes of a reply (each with its text, None when missing), read by the
    one parser (`models.care_format.parse_care_output`), with the stored parse status.

    The nodes come from the raw output; for a reply imported with its chain stored apart, from
    the stored chain. ``raw`` is the chain as stored, for outputs too broken to split.

    >>> r = care_reasoning('<think><context>c</context><emotion>e</emotion></think> Hi',
    ...                    "", "missing_node")
    >>> [(n["name"], n["text"]) for n in r["nodes"]], r["status"]
    ([('context', 'c'), ('cognition', None), ('emotion', 'e'), ('plan', None)], 'missing_node')
    """
    parsed = parse_care_output(raw_output or "")
    if not parsed.nodes and reasoning.strip():
        parsed = parse_care_output(f"<think>{reasoning}</think>\n.")
    status_labels = dict(Response.ParseStatus.choices)
    return {
        "status": parse_status,
        "status_label": status_labels.get(parse_status, parse_status),
        "strategy": parsed.strategy,
        "nodes": [
            {"name": n, "label": NODE_LABELS[n], "text": parsed.nodes.get(n) or None} for n in NODES
        ],
        "raw": reasoning or parsed.reasoning or "",
    }


# --- Validation --------------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _whole(text: str) -> bool:
    """ASCII digits only, short enough for a database integer ("²" and 5000 digits are not)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def check_filters(
    study: Study,
    *,
    comparison: Any = None,
    outcome: Any = None,
    agreement: Any = None,
    has_comment: Any = None,
    criterion: Any = None,
    page: Any = 1,
) -> dict[str, Any]:
    """Validate the browser's filters (strings from a query string, or typed values) and
    return them normalised; BrowseError naming the first bad parameter."""
    out: dict[str, Any] = {}
    if _blank(comparison):
        out["comparison"] = None
    elif str(comparison).strip().lower() == GOLD:
        out["comparison"] = GOLD
    else:
        ids = list(study.comparisons.order_by("pk").values_list("pk", flat=True))
        text = str(comparison).strip()
        if not _whole(text) or int(text) not in ids:
            raise BrowseError(
                "comparison",
                f"expected the id of one of this study's comparisons {ids[:20]} "
                f"or {GOLD!r}, got {_shown(comparison)}",
            )
        out["comparison"] = int(text)
    for name, value, allowed in (
        ("outcome", outcome, OUTCOMES),
        ("agreement", agreement, AGREEMENT_LEVELS),
    ):
        if _blank(value):
            out[name] = None
        elif str(value).strip().lower() in allowed:
            out[name] = str(value).strip().lower()
        else:
            raise BrowseError(name, f"expected one of {list(allowed)}, got {_shown(value)}")
    if _blank(has_comment):
        out["has_comment"] = None
    elif isinstance(has_comment, bool):
        out["has_comment"] = has_comment
    elif str(has_comment).strip().lower() in _TRUE | _FALSE:
        out["has_comment"] = str(has_comment).strip().lower() in _TRUE
    else:
        raise BrowseError("has_comment", f"expected true or false, got {_shown(has_comment)}")
    criteria = list(study.criteria or [])
    if _blank(criterion):
        out["criterion"] = default_criterion(study)
    elif str(criterion) in criteria:
        out["criterion"] = str(criterion)
    else:
        raise BrowseError("criterion", f"expected one of {criteria}, got {_shown(criterion)}")
    text = "1" if _blank(page) else str(page).strip()
    if isinstance(page, bool) or not _whole(text) or not 1 <= int(text) <= 10**9:
        raise BrowseError("page", f"expected a whole number from 1, got {_shown(page)}")
    out["page"] = int(text)
    return out


def default_criterion(study: Study) -> str | None:
    """ "Overall" when the study has it, else its last criterion (None without criteria)."""
    criteria = list(study.criteria or [])
    if "Overall" in criteria:
        return "Overall"
    return criteria[-1] if criteria else None


# --- The query ---------------------------------------------------------------------------------


def _comparison_label(item: ComparisonItem) -> str:
    if item.comparison is None:
        return GOLD
    return f"{item.comparison.checkpoint_a.label} vs {item.comparison.checkpoint_b.label}"


def _reply(response: Response) -> dict[str, Any]:
    ck = response.checkpoint
    has_chain = (
        ck.reasoning
        or bool(response.reasoning.strip())
        or response.parse_status != Response.ParseStatus.NO_REASONING
    )
    return {
        "response_id": response.pk,
        "system": ck.system.name,
        "checkpoint": ck.label,
        "checkpoint_id": ck.pk,
        "text": response.text,
        "strategy": response.strategy,
        "parse_status": response.parse_status,
        "usable": response.usable,
        "truncated": response.truncated,
        "reasoning": (
            care_reasoning(response.raw_output, response.reasoning, response.parse_status)
            if has_chain
            else None
        ),
    }


def _judgment(j: Judgment, a_on_left: bool, criteria: list[str]) -> dict[str, Any]:
    choices = j.choices if isinstance(j.choices, Mapping) else {}
    answers = {c: answer_from_a(choices.get(c), a_on_left) for c in choices}
    ordered = {c: answers[c] for c in criteria if c in answers}
    ordered.update({c: v for c, v in answers.items() if c not in ordered})
    return {
        "annotator": j.annotator.username,
        "choices": {} if j.cannot_judge else ordered,
        "cannot_judge": j.cannot_judge,
        "cannot_judge_reason": j.cannot_judge_reason,
        "comment": j.comment,
        "seconds": j.seconds,
        "simulated": j.simulated,
        "created_at": j.created_at,
    }


def _item(item: ComparisonItem, criterion: str | None, criteria: list[str]) -> dict[str, Any]:
    judgments = list(item.judgments.all())  # prefetched, in id order
    ctx = item.context
    summary = item_outcome(
        _votes(((j.choices, j.cannot_judge) for j in judgments), criterion, item.a_on_left)
        if criterion
        else []
    )
    return {
        "id": item.public_id,
        "comparison": {"id": item.comparison_id, "label": _comparison_label(item)},
        "is_gold": item.is_gold,
        "a_side": "left" if item.a_on_left else "right",
        "context": {
            "id": ctx.pk,
            "source": ctx.source,
            "dialogue_id": ctx.dialogue_id,
            "turn_index": ctx.turn_index,
            "history": [
                {
                    "speaker": str(turn.get("speaker") or ""),
                    "text": str(turn.get("text") or ""),
                    "strategy": turn.get("strategy") or None,
                }
                for turn in (ctx.history or [])
                if isinstance(turn, Mapping)
            ],
            "gold_response": ctx.gold_response,
            "gold_strategy": ctx.gold_strategy,
        },
        "reply_a": _reply(item.response_a),
        "reply_b": _reply(item.response_b),
        "summary": {"criterion": criterion, "label": OUTCOME_LABELS[summary["outcome"]], **summary},
        "judgments": [_judgment(j, item.a_on_left, criteria) for j in judgments],
    }


def _selected_ids(study: Study, f: dict[str, Any]) -> list[int]:
    """The ids of the items passing the filters, in id order."""
    items = ComparisonItem.objects.filter(study=study)
    if f["comparison"] == GOLD:
        items = items.filter(is_gold=True)
    elif f["comparison"] is not None:
        items = items.filter(comparison_id=f["comparison"])
    if f["has_comment"] is not None:
        commented = Judgment.objects.filter(item=OuterRef("pk")).filter(~Q(comment=""))
        items = items.alias(commented=Exists(commented)).filter(commented=f["has_comment"])
    if f["outcome"] is None and f["agreement"] is None:
        return list(items.order_by("pk").values_list("pk", flat=True))
    sides = dict(items.order_by("pk").values_list("pk", "a_on_left"))
    answers: dict[int, list] = {pk: [] for pk in sides}
    rows = Judgment.objects.filter(item__in=items).values_list("item_id", "choices", "cannot_judge")
    for item_id, choices, cannot_judge in rows.iterator(chunk_size=2000):
        answers[item_id].append((choices, cannot_judge))
    out = []
    for pk, a_on_left in sides.items():
        summary = item_outcome(_votes(answers[pk], f["criterion"], a_on_left))
        if f["outcome"] is not None and summary["outcome"] != f["outcome"]:
            continue
        if f["agreement"] is not None and summary["level"] != f["agreement"]:
            continue
        out.append(pk)
    return out


def browse_items(
    study: Study,
    *,
    comparison: Any = None,
    outcome: Any = None,
    agreement: Any = None,
    has_comment: Any = None,
    criterion: Any = None,
    page: Any = 1,
) -> dict[str, Any]:
    """One page (`PAGE_SIZE` items) of `study`'s items passing the filters, for researchers.

    Each item: ``id`` (public id), ``comparison`` ({id, label}; id None and label "gold" for
    gold items), ``is_gold``, ``a_side`` (where A was shown), ``context`` (history turns, gold
    reply), ``reply_a`` and ``reply_b`` (system, checkpoint, text, parse status, and for a
    reasoning model the four CARE nodes), ``summary`` (majority outcome and agreement on the
    criterion, `item_outcome`) and ``judgments`` (each annotator's answers as A/B/tie, comment,
    seconds). ``criterion`` defaults to "Overall", else the study's last criterion. Raises
    BrowseError naming the parameter for a bad filter or a page past the last."""
    f = check_filters(
        study,
        comparison=comparison,
        outcome=outcome,
        agreement=agreement,
        has_comment=has_comment,
        criterion=criterion,
        page=page,
    )
    ids = _selected_ids(study, f)
    num_pages = max(1, math.ceil(len(ids) / PAGE_SIZE))
    if f["page"] > num_pages:
        raise BrowseError("page", f"expected 1 to {num_pages}, got {f['page']}")
    start = (f["page"] - 1) * PAGE_SIZE
    page_ids = ids[start : start + PAGE_SIZE]
    rows = (
        ComparisonItem.objects.filter(pk__in=page_ids)
        .select_related(
            "context",
            "comparison__checkpoint_a__system",
            "comparison__checkpoint_b__system",
            "response_a__checkpoint__system",
            "response_b__checkpoint__system",
        )
        .prefetch_related(
            Prefetch(
                "judgments",
                queryset=Judgment.objects.select_related("annotator").order_by("pk"),
            )
        )
        .order_by("pk")
    )
    criteria = list(study.criteria or [])
    comparisons = study.comparisons.select_related(
        "checkpoint_a__system", "checkpoint_b__system"
    ).order_by("pk")
    return {
        "study": study.pk,
        "criterion": f["criterion"],
        "criteria": criteria,
        "filters": {k: f[k] for k in ("comparison", "outcome", "agreement", "has_comment")},
        "comparisons": [{"id": c.pk, "label": str(c)} for c in comparisons],
        "count": len(ids),
        "page": f["page"],
        "num_pages": num_pages,
        "page_size": PAGE_SIZE,
        "items": [_item(item, f["criterion"], criteria) for item in rows],
    }


def page_context(found: dict[str, Any]) -> dict[str, Any]:
    """What the item browser page adds to a `browse_items` result: the filter choices, the
    previous and next pages' query strings (filters kept), and per item its replies as (A, B)
    pairs and each judgment's answers in the criteria's order (a template cannot look up a
    dict by a variable)."""
    kept = {k: v for k, v in found["filters"].items() if v is not None}
    if "has_comment" in kept:
        kept["has_comment"] = "true" if kept["has_comment"] else "false"
    kept["criterion"] = found["criterion"] or ""

    def link(page: int) -> str | None:
        if not 1 <= page <= found["num_pages"]:
            return None
        return "?" + urlencode({**kept, "page": page})

    cards = []
    for item in found["items"]:
        judgments = [
            {**j, "answers": [j["choices"].get(c) for c in found["criteria"]]}
            for j in item["judgments"]
        ]
        replies = [("A", item["reply_a"]), ("B", item["reply_b"])]
        cards.append({**item, "replies": replies, "judgments": judgments})
    return {
        "cards": cards,
        "outcome_choices": list(OUTCOME_LABELS.items()),
        "agreement_choices": AGREEMENT_LEVELS,
        "prev_query": link(found["page"] - 1),
        "next_query": link(found["page"] + 1),
    }
