"""Statistics of pairwise human evaluation: pure functions, no ORM.

A package: ``agreement`` (kappas, alpha), ``preference`` (win rates), ``ranking``
(Bradley-Terry), ``bootstrap`` (the item bootstrap), ``quality`` (position bias, speed, gold),
``tables`` (the publication table), ``summary`` (``summarize``), over the codes of ``encoding``
and the helpers of ``common``. The public functions are importable from here.

Input is the long format (``pairwise.services.longformat``): one row per annotator x item x
criterion. ``summarize`` computes everything the dashboard, the JSON export and the publication
table show, as one JSON-serialisable dict. The methods, rules and their sources are described in
``docs/statistics.md``; every random step takes a ``seed``.

Conventions used throughout:

* Preference statistics and agreement use non-gold judgments with an outcome ("a", "b",
  "tie"); ``cannot_judge`` answers are counted separately and otherwise treated as missing.
* A bootstrap resamples *items* (the unit that was sampled), never single judgments, except in
  ``bradley_terry`` which only sees a list of comparisons. Intervals are percentile intervals.
* Every table names its ``unit`` ("judgments" or "items") and its ``denominator``.
"""

from pairwise.outcomes import OUTCOMES
from pairwise.services.stats.agreement import (
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
)
from pairwise.services.stats.common import (
    ALL,
    LOW_GOLD_MIN_N,
    LOW_GOLD_RATE,
    OVERALL,
    TOO_FAST_FLOOR_S,
    TOO_FAST_FRACTION,
    _holm,
    _jsonable,
    _records,
    _wilson,
)
from pairwise.services.stats.ranking import bradley_terry
from pairwise.services.stats.summary import summarize
from pairwise.services.stats.tables import publication_table

__all__ = [
    "ALL",
    "LOW_GOLD_MIN_N",
    "LOW_GOLD_RATE",
    "OUTCOMES",
    "OVERALL",
    "TOO_FAST_FLOOR_S",
    "TOO_FAST_FRACTION",
    "_holm",
    "_jsonable",
    "_records",
    "_wilson",
    "bradley_terry",
    "cohen_kappa",
    "fleiss_kappa",
    "krippendorff_alpha",
    "publication_table",
    "summarize",
]
