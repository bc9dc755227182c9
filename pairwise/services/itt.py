"""Intention-to-treat win rates beside the per-protocol ones: pure functions, no ORM.

An item (a blind pair) exists only where both systems of a comparison gave an eligible reply
(``pairwise.services.eligibility``). The per-protocol rates of ``stats.summarize`` therefore
judge a system only on its good outputs: one that often fails to produce a usable reply looks
better than it is. The intention-to-treat (ITT) rate puts the contexts without an item back in:

* each context whose reply from A is unusable and B's is not counts as a loss for A,
* each context whose reply from B is unusable and A's is not counts as a win for A,
* each context where both are unusable counts as a tie,

with the weight of a judged context: ``k`` virtual judgments (the study's ``overlap_k``) at the
judgment level, one virtual item at the item level (majority vote). A missing reply (never
generated, or generation failed) is unusable. ``docs/statistics.md`` explains the rule, its
denominators, and why both rates are reported.

Input: the per-protocol rows of ``stats.summarize`` (``preference`` and/or
``preference_items``) and an ``Availability`` per comparison, counted from the database by
``export.comparison_availability``. Output: a DataFrame, two rows (denominator "all" and
"non-tied") per comparison x criterion x unit.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields

import pandas as pd

from pairwise.services.stats import _wilson

UNITS = ("judgments", "items")
ITT_COLUMNS = [
    "comparison",
    "system_a",
    "system_b",
    "criterion",
    "unit",
    "denominator",
    "n",
    "wins",
    "ties",
    "losses",
    "win_rate",
    "tie_rate",
    "lose_rate",
    "win_rate_ties_half",
    "win_rate_wilson_low",
    "win_rate_wilson_high",
    "virtual_per_context",
    "virtual_wins",
    "virtual_ties",
    "virtual_losses",
    "n_per_protocol",
    "win_rate_per_protocol",
    "win_rate_ties_half_per_protocol",
    "n_contexts",
    "contexts_both_eligible",
    "contexts_with_item",
    "contexts_only_a_unusable",
    "contexts_only_b_unusable",
    "contexts_both_unusable",
]


@dataclass(frozen=True)
class Availability:
    """Which of a study's contexts a comparison could turn into an item.

    Every context of the study is in exactly one of ``both_eligible`` (both replies eligible, or
    the context already has an item: its judgments are in the per-protocol counts),
    ``only_a_unusable``, ``only_b_unusable`` or ``both_unusable`` (the last three have no item).
    ``with_item`` (a part of ``both_eligible``) counts the contexts that have an item already.
    ``known`` is False where the study's replies cannot tell (imported judgments: the placeholder
    replies are not the systems' outputs); the counts are then None and ``note`` says why.
    """

    comparison: str
    system_a: str
    system_b: str
    n_contexts: int | None
    both_eligible: int | None
    only_a_unusable: int | None
    only_b_unusable: int | None
    both_unusable: int | None
    with_item: int | None = None
    known: bool = True
    note: str = ""

    def __post_init__(self) -> None:
        if not self.known:
            return
        parts = [self.both_eligible, self.only_a_unusable, self.only_b_unusable, self.both_unusable]
        if any(not isinstance(p, numbers.Integral) or p < 0 for p in [*parts, self.n_contexts]):
            raise ValueError(f"{self.comparison}: availability counts must be integers >= 0")
        total = sum(p for p in parts if p is not None)
        if total != self.n_contexts:
            raise ValueError(
                f"{self.comparison}: both_eligible + only_a_unusable + only_b_unusable + "
                f"both_unusable = {total} but n_contexts = {self.n_contexts}"
            )
        if self.with_item is not None and not 0 <= self.with_item <= (self.both_eligible or 0):
            raise ValueError(
                f"{self.comparison}: with_item = {self.with_item} is not between 0 and "
                f"both_eligible = {self.both_eligible}"
            )

    @classmethod
    def unknown(cls, comparison: str, system_a: str, system_b: str, note: str) -> Availability:
        return cls(comparison, system_a, system_b, None, None, None, None, None, None, False, note)


def _rate(num: float, n: int) -> float:
    return num / n if n else math.nan


def _itt_rows(
    av: Availability, criterion: str, unit: str, pp: tuple[int, int, int], v: int
) -> list[dict]:
    """The two rows (denominator all / non-tied) of one comparison x criterion x unit.

    ``pp`` = per-protocol (wins, ties, losses); ``v`` = virtual outcomes per context."""
    w0, t0, l0 = pp
    vw, vt, vl = (v * (m or 0) for m in (av.only_b_unusable, av.both_unusable, av.only_a_unusable))
    w, t, l_ = w0 + vw, t0 + vt, l0 + vl
    rows = []
    for denom, n, n_pp in (("all", w + t + l_, w0 + t0 + l0), ("non-tied", w + l_, w0 + l0)):
        everything = denom == "all"
        low, high = _wilson(w, n)
        rows.append(
            {
                "comparison": av.comparison,
                "system_a": av.system_a,
                "system_b": av.system_b,
                "criterion": criterion,
                "unit": unit,
                "denominator": denom,
                "n": n,
                "wins": w,
                "ties": t,
                "losses": l_,
                "win_rate": _rate(w, n),
                "tie_rate": _rate(t, n) if everything else math.nan,
                "lose_rate": _rate(l_, n),
                "win_rate_ties_half": _rate(w + t / 2, n) if everything else math.nan,
                "win_rate_wilson_low": low,
                "win_rate_wilson_high": high,
                "virtual_per_context": v,
                "virtual_wins": vw,
                "virtual_ties": vt,
                "virtual_losses": vl,
                "n_per_protocol": n_pp,
                "win_rate_per_protocol": _rate(w0, n_pp),
                "win_rate_ties_half_per_protocol": (
                    _rate(w0 + t0 / 2, n_pp) if everything else math.nan
                ),
                "n_contexts": av.n_contexts,
                "contexts_both_eligible": av.both_eligible,
                "contexts_with_item": av.with_item,
                "contexts_only_a_unusable": av.only_a_unusable,
                "contexts_only_b_unusable": av.only_b_unusable,
                "contexts_both_unusable": av.both_unusable,
            }
        )
    return rows


def intention_to_treat(
    per_protocol: Iterable[dict] | pd.DataFrame,
    availability: Sequence[Availability],
    *,
    k: int,
    criteria: Sequence[str] | None = None,
    units: Sequence[str] = UNITS,
) -> pd.DataFrame:
    """ITT win / tie / lose rates per comparison x criterion x unit, with the per-protocol ones.

    ``per_protocol`` holds rows of ``summarize``'s ``preference`` (unit "judgments") and/or
    ``preference_items`` (unit "items"); only their ``denominator == "all"`` rows are read
    (``wins``, ``ties``, ``losses``). A comparison of ``availability`` without rows (nothing
    judged yet) gets ITT rows from its virtual outcomes alone; rows of a comparison that is not in
    ``availability``, or whose availability is unknown, are left out. Each context without an
    item adds ``k`` virtual judgments (unit "judgments") or one virtual item (unit "items"):
    a win for A when only B's reply was unusable, a loss when only A's was, a tie when both were.

    ``criteria`` (default: those in the rows, in order) and ``units`` choose the rows made.
    The result has ``ITT_COLUMNS``; ``denominator`` "all" has n = wins + ties + losses,
    "non-tied" n = wins + losses, as in the per-protocol tables. Wilson intervals are on the ITT
    wins out of that n.
    """
    if k < 1:
        raise ValueError(f"k (overlap per item) must be >= 1, got {k}")
    bad = [u for u in units if u not in UNITS]
    if bad:
        raise ValueError(f"units {bad} unknown; expected some of {list(UNITS)}")
    pp = pd.DataFrame(per_protocol)
    counts: dict[tuple[str, str, str], tuple[int, int, int]] = {}
    if len(pp):
        pp = pp[pp["denominator"] == "all"]
        for r in pp.itertuples(index=False):
            counts[(r.comparison, r.criterion, r.unit)] = (int(r.wins), int(r.ties), int(r.losses))
    crits = list(criteria) if criteria is not None else list(dict.fromkeys(c for _, c, _ in counts))
    rows = []
    for av in availability:
        if not av.known:
            continue
        for criterion in crits:
            for unit in units:
                pp_counts = counts.get((av.comparison, criterion, unit), (0, 0, 0))
                rows += _itt_rows(av, criterion, unit, pp_counts, k if unit == "judgments" else 1)
    return pd.DataFrame(rows, columns=ITT_COLUMNS)


def availability_frame(availability: Sequence[Availability]) -> pd.DataFrame:
    """One row per comparison: the counts of ``Availability`` (None where unknown)."""
    return pd.DataFrame(
        [asdict(a) for a in availability],
        columns=[f.name for f in fields(Availability)],
    )


__all__ = ["ITT_COLUMNS", "Availability", "availability_frame", "intention_to_treat"]
