"""Statistics checked against published values and hand-checkable cases.

Sources of the reference values:
* Fleiss' kappa: Fleiss (1971), worked example on Wikipedia "Fleiss' kappa": 10 subjects,
  14 raters, 5 categories, P-bar = 0.378, P-bar_e = 0.213, kappa = 0.210.
* Krippendorff's alpha: Krippendorff, "Computing Krippendorff's Alpha-Reliability" (2011), the
  4 observers x 12 units example with missing values: nominal 0.743, interval 0.849.
* Cohen's kappa: Wikipedia "Cohen's kappa", 50 grant proposals (20/5/10/15): kappa = 0.4.
* Wilson interval: Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3:
  81/263 -> 0.2553-0.3662, 15/148 -> 0.0624-0.1605, 0/20 -> 0-0.1611, 1/29 -> 0.0061-0.1718.
* Sign test: 7 successes of 10, two-sided exact p = 2 x 176/1024 = 0.34375.
* Holm: Wikipedia "Holm-Bonferroni method" example, p = (0.01, 0.04, 0.03, 0.005).
* Bradley-Terry: Agresti, Categorical Data Analysis (2nd ed. 2002), Sec. 10.6, Table 10.11:
  1987 American League East, log-strengths relative to Baltimore: Milwaukee 1.58, Detroit 1.44,
  Toronto 1.29, New York 1.25, Boston 1.11, Cleveland 0.68.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from pairwise.services import stats
from pairwise.services.itt import Availability, intention_to_treat
from pairwise.services.longformat import validate_long
from pairwise.services.stats import (
    bradley_terry,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    publication_table,
    summarize,
)

FLEISS_1971 = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]
N = math.nan
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
]
# Agresti (2002) Table 10.10: wins of the row team against the column team (13 games a pair).
TEAMS = ["Milwaukee", "Detroit", "Toronto", "New York", "Boston", "Cleveland", "Baltimore"]
BASEBALL_WINS = [
    [0, 7, 9, 7, 7, 9, 11],
    [6, 0, 7, 5, 11, 9, 9],
    [4, 6, 0, 7, 7, 8, 12],
    [6, 8, 6, 0, 6, 7, 10],
    [6, 2, 6, 7, 0, 7, 12],
    [4, 4, 5, 6, 6, 0, 6],
    [2, 4, 1, 3, 1, 7, 0],
]
AGRESTI_VS_BALTIMORE = {
    "Milwaukee": 1.58,
    "Detroit": 1.44,
    "Toronto": 1.29,
    "New York": 1.25,
    "Boston": 1.11,
    "Cleveland": 0.68,
}


def long_df(judgments: list[tuple], **extra) -> pd.DataFrame:
    """Long table from (comparison, item, annotator, criterion, outcome) tuples; A shown left."""
    rows = []
    for comparison, item, annotator, criterion, outcome in judgments:
        a, b = comparison.split(" vs ")
        choice = {"a": "left", "b": "right", "tie": "tie", None: "cannot_judge"}[outcome]
        rows.append(
            {
                "study": "test",
                "item_id": f"{comparison}/{item}",
                "comparison": comparison,
                "system_a": a,
                "system_b": b,
                "a_side": "left",
                "annotator": annotator,
                "criterion": criterion,
                "choice": choice,
                "seconds": 30.0,
                **extra,
            }
        )
    return validate_long(pd.DataFrame(rows))


def counts_df(comparison: str, wins: int, losses: int, ties: int = 0, criterion="Overall"):
    """One judgment per item: `wins` a, `losses` b and `ties` tie outcomes."""
    outcomes = ["a"] * wins + ["b"] * losses + ["tie"] * ties
    return [(comparison, i, "ann1", criterion, o) for i, o in enumerate(outcomes)]


def row(summary: dict, key: str, **match) -> dict:
    found = [r for r in summary[key] if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (key, match, found)
    return found[0]


# ---------------------------------------------------------------------- agreement coefficients


def test_fleiss_kappa_fleiss_1971_example() -> None:
    assert fleiss_kappa(FLEISS_1971) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_rejects_unequal_numbers_of_ratings() -> None:
    with pytest.raises(ValueError, match="same number of ratings"):
        fleiss_kappa([[1, 2], [2, 2]])


def test_krippendorff_alpha_2011_example() -> None:
    assert krippendorff_alpha(KRIPPENDORFF_2011) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(KRIPPENDORFF_2011, level="interval") == pytest.approx(0.849, abs=5e-4)


def test_krippendorff_alpha_undefined_with_one_value() -> None:
    assert math.isnan(krippendorff_alpha([[1, 1, N], [1, 1, 1]]))


def test_cohen_kappa_wikipedia_proposals() -> None:
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10
    pairs += [("no", "no")] * 15
    r1, r2 = zip(*pairs, strict=True)
    assert cohen_kappa(r1, r2) == pytest.approx(0.4, abs=1e-12)
    # missing labels drop the pair, they are not a category
    assert cohen_kappa([*r1, None, "yes"], [*r2, "no", float("nan")]) == pytest.approx(0.4)


def test_cohen_kappa_edge_cases() -> None:
    assert cohen_kappa(["a", "b", "a"], ["a", "b", "a"]) == 1.0
    assert math.isnan(cohen_kappa(["a", "a"], ["a", "a"]))  # chance agreement is 1
    with pytest.raises(ValueError, match="labels2 has 1"):
        cohen_kappa(["a", "b"], ["a"])


# -------------------------------------------------------------------- preference and its tests


@pytest.mark.parametrize(
    ("wins", "n", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_newcombe_1998(wins: int, n: int, low: float, high: float) -> None:
    # ties are added to check they are outside the non-tied denominator
    s = summarize(long_df(counts_df("X vs Y", wins, n - wins, ties=7)), n_boot=0)
    r = row(s, "preference", denominator="non-tied")
    assert r["n"] == n and r["wins"] == wins and r["ties"] == 7
    assert r["win_rate_wilson_low"] == pytest.approx(low, abs=5e-5)
    assert r["win_rate_wilson_high"] == pytest.approx(high, abs=5e-5)


def test_rates_two_ways_and_sign_test() -> None:
    s = summarize(long_df(counts_df("X vs Y", 7, 3, ties=2)), n_boot=0)
    all_ = row(s, "preference", denominator="all")
    nt = row(s, "preference", denominator="non-tied")
    assert (all_["unit"], all_["n"], nt["n"]) == ("judgments", 12, 10)
    assert all_["win_rate"] == pytest.approx(7 / 12)
    assert all_["tie_rate"] == pytest.approx(2 / 12)
    assert all_["win_rate_ties_half"] == pytest.approx(8 / 12)  # (7 + 2/2) / 12
    assert nt["win_rate"] == pytest.approx(0.7) and nt["tie_rate"] is None
    assert all_["sign_test_p"] == nt["sign_test_p"] == pytest.approx(0.34375)


def test_holm_wikipedia_example() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06
    assert stats._holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats._holm([0.5, math.nan])[0] == 0.5


def test_holm_across_comparisons_per_criterion() -> None:
    # exact two-sided p: 7/10 -> 352/1024, 9/10 -> 22/1024, 10/10 -> 2/1024
    judgments = counts_df("A vs B", 7, 3) + counts_df("A vs C", 9, 1) + counts_df("A vs D", 10, 0)
    judgments += counts_df("A vs B", 10, 0, criterion="Empathy")  # its own family of one
    s = summarize(long_df(judgments), n_boot=0)
    holm = {
        r["comparison"]: r["sign_test_p_holm"]
        for r in s["preference"]
        if r["criterion"] == "Overall" and r["denominator"] == "all"
    }
    assert holm["A vs D"] == pytest.approx(3 * 2 / 1024)
    assert holm["A vs C"] == pytest.approx(2 * 22 / 1024)
    assert holm["A vs B"] == pytest.approx(352 / 1024)
    emp = row(s, "preference", criterion="Empathy", denominator="all")
    assert emp["sign_test_p_holm"] == pytest.approx(2 / 1024)


def test_majority_vote_per_item_and_exclusions() -> None:
    j = [
        ("A vs B", 1, "r1", "Overall", "a"),
        ("A vs B", 1, "r2", "Overall", "a"),
        ("A vs B", 1, "r3", "Overall", "b"),  # item 1: a
        ("A vs B", 2, "r1", "Overall", "tie"),
        ("A vs B", 2, "r2", "Overall", "tie"),
        ("A vs B", 2, "r3", "Overall", "a"),  # item 2: tie
        ("A vs B", 3, "r1", "Overall", "a"),
        ("A vs B", 3, "r2", "Overall", "b"),
        ("A vs B", 3, "r3", "Overall", "tie"),  # item 3: no majority
        ("A vs B", 4, "r1", "Overall", "b"),
        ("A vs B", 4, "r2", "Overall", None),  # cannot_judge: missing
        ("A vs B", 4, "r3", "Overall", "b"),  # item 4: b
    ]
    s = summarize(long_df(j), n_boot=50)
    items = row(s, "preference_items", denominator="all")
    assert (items["unit"], items["n"], items["n_excluded"]) == ("items", 3, 1)
    assert (items["wins"], items["ties"], items["losses"]) == (1, 1, 1)
    judg = row(s, "preference", denominator="all")
    assert (judg["n"], judg["wins"], judg["ties"], judg["losses"]) == (11, 4, 3, 4)
    assert judg["n_excluded"] == 1  # the cannot_judge answer
    assert s["counts"]["cannot_judge"] == 1


# ---------------------------------------------------------------------- intention-to-treat

# The worked example of docs/statistics.md, section 3a: k = 3, 10 contexts, 6 items judged
# 3 times each; 2 contexts with only B's reply unusable, 1 with only A's, 1 with both.
ITT_ITEMS = {  # item: outcomes of its 3 judgments -> majority
    0: ["a", "a", "a"],  # a
    1: ["a", "a", "a"],  # a
    2: ["a", "a", "b"],  # a
    3: ["a", "a", "tie"],  # a
    4: ["tie", "tie", "b"],  # tie
    5: ["b", "b", "b"],  # b
}
ITT_AVAILABILITY = Availability(
    comparison="CARE vs ESConv",
    system_a="CARE",
    system_b="ESConv",
    n_contexts=10,
    both_eligible=6,
    only_a_unusable=1,
    only_b_unusable=2,
    both_unusable=1,
    with_item=6,
)


def test_intention_to_treat_hand_computed_example() -> None:
    j = [
        ("CARE vs ESConv", item, f"r{i}", "Overall", o)
        for item, outcomes in ITT_ITEMS.items()
        for i, o in enumerate(outcomes)
    ]
    s = summarize(long_df(j), n_boot=0)
    pp = row(s, "preference", denominator="all")
    assert (pp["wins"], pp["ties"], pp["losses"]) == (10, 3, 5)  # the per-protocol input
    table = intention_to_treat(
        s["preference"] + s["preference_items"], [ITT_AVAILABILITY], k=3
    ).set_index(["unit", "denominator"])
    assert len(table) == 4
    r = table.loc[("judgments", "all")]
    # wins 10 + 3 x 2, ties 3 + 3 x 1, losses 5 + 3 x 1
    assert (r["n"], r["wins"], r["ties"], r["losses"]) == (30, 16, 6, 8)
    assert (r["virtual_wins"], r["virtual_ties"], r["virtual_losses"]) == (6, 3, 3)
    assert r["win_rate"] == pytest.approx(16 / 30)
    assert r["tie_rate"] == pytest.approx(6 / 30) and r["lose_rate"] == pytest.approx(8 / 30)
    assert r["win_rate_ties_half"] == pytest.approx(19 / 30)
    # Wilson 95% for 16/30, by hand: centre 0.5295, half-width 0.1681
    assert r["win_rate_wilson_low"] == pytest.approx(0.3614, abs=5e-5)
    assert r["win_rate_wilson_high"] == pytest.approx(0.6977, abs=5e-5)
    assert r["n_per_protocol"] == 18 and r["win_rate_per_protocol"] == pytest.approx(10 / 18)
    assert r["win_rate_ties_half_per_protocol"] == pytest.approx(11.5 / 18)
    assert (r["n_contexts"], r["contexts_only_b_unusable"], r["contexts_with_item"]) == (10, 2, 6)
    r = table.loc[("judgments", "non-tied")]
    assert (r["n"], r["win_rate"], r["n_per_protocol"]) == (24, pytest.approx(16 / 24), 15)
    assert math.isnan(r["tie_rate"]) and r["win_rate_per_protocol"] == pytest.approx(10 / 15)
    assert r["win_rate_wilson_low"] == pytest.approx(0.4671, abs=5e-5)
    # items: majority a 4, tie 1, b 1; one virtual item per context without an item
    r = table.loc[("items", "all")]
    assert (r["n"], r["wins"], r["ties"], r["losses"], r["virtual_per_context"]) == (10, 6, 2, 2, 1)
    assert r["win_rate"] == pytest.approx(0.6) and r["n_per_protocol"] == 6


def test_intention_to_treat_without_judgments_and_with_unknown_availability() -> None:
    lost = Availability("A vs C", "A", "C", 4, 0, 4, 0, 0, with_item=0)  # A never usable
    imported = Availability.unknown("A vs B", "A", "B", "imported")
    t = intention_to_treat([], [lost, imported], k=2, criteria=["Overall"], units=["judgments"])
    assert t["comparison"].unique().tolist() == ["A vs C"]  # unknown: no ITT rows
    r = t.set_index("denominator").loc["all"]
    assert (r["n"], r["wins"], r["losses"], r["win_rate"]) == (8, 0, 8, 0.0)
    assert r["n_per_protocol"] == 0 and math.isnan(r["win_rate_per_protocol"])


def test_availability_counts_must_add_up() -> None:
    with pytest.raises(ValueError, match="n_contexts = 5"):
        Availability("A vs B", "A", "B", 5, 2, 1, 1, 0)
    with pytest.raises(ValueError, match=">= 0"):
        Availability("A vs B", "A", "B", 1, 2, -1, 0, 0)
    with pytest.raises(ValueError, match="k"):
        intention_to_treat([], [ITT_AVAILABILITY], k=0)


def test_gold_items_are_left_out_of_preference() -> None:
    df = pd.concat(
        [
            long_df(counts_df("X vs Y", 3, 1)),
            long_df([("X vs Y", 99, "ann1", "Overall", "b")], is_gold=True, gold_expected="right"),
        ],
        ignore_index=True,
    )
    s = summarize(df, n_boot=0)
    assert row(s, "preference", denominator="all")["n"] == 4
    assert s["n_items"] == 4 and s["counts"]["gold_items"] == 1
    assert row(s, "annotators", annotator="ann1")["gold_pass_rate"] == 1.0


def test_bootstrap_interval_is_seeded_and_covers_the_estimate() -> None:
    rng = np.random.default_rng(1)
    j = [
        ("A vs B", i, f"r{k}", "Overall", rng.choice(["a", "b", "tie"], p=[0.5, 0.3, 0.2]))
        for i in range(200)
        for k in range(3)
    ]
    df = long_df(j)
    s1, s2 = summarize(df, seed=3, n_boot=300), summarize(df, seed=3, n_boot=300)
    s3 = summarize(df, seed=4, n_boot=300)
    r1 = row(s1, "preference", denominator="non-tied")
    r3 = row(s3, "preference", denominator="non-tied")
    assert s1 == s2
    assert r1["win_rate_boot_low"] != r3["win_rate_boot_low"]
    assert r1["win_rate_boot_low"] < r1["win_rate"] < r1["win_rate_boot_high"]
    # Independent judgments: resampling items gives about the Wilson interval.
    assert r1["win_rate_boot_low"] == pytest.approx(r1["win_rate_wilson_low"], abs=0.03)
    ag = row(s1, "agreement", criterion="Overall")
    assert ag["fleiss_ci_low"] < ag["fleiss_kappa"] < ag["fleiss_ci_high"]
    json.dumps(s1)  # JSON-serialisable


# ------------------------------------------------------------------------- agreement in summary


def _labels_df(labels: np.ndarray, comparison: str = "A vs B") -> pd.DataFrame:
    """Long table from an items x annotators array of codes 0 a, 1 b, 2 tie (-1 missing)."""
    names = np.array(["a", "b", "tie"])
    return long_df(
        [
            (comparison, i, f"r{k}", "Overall", names[v] if v >= 0 else None)
            for i, item in enumerate(labels)
            for k, v in enumerate(item)
        ]
    )


def test_agreement_matches_statsmodels_and_krippendorff_on_raw_labels() -> None:
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 3, 150)
    labels = np.where(rng.random((150, 3)) < 0.7, truth[:, None], rng.integers(0, 3, (150, 3)))
    labels[:10, 2] = -1  # 10 items rated by two annotators only
    s = summarize(_labels_df(labels), n_boot=0)
    ag = row(s, "agreement", criterion="Overall")
    full = labels[10:]
    table, _ = aggregate_raters(full, n_cat=3)
    assert (ag["n_items"], ag["n_raters_per_item"], ag["n_items_excluded"]) == (140, 3, 10)
    assert ag["fleiss_kappa"] == pytest.approx(sm_fleiss_kappa(table))
    reliability = np.where(labels < 0, np.nan, labels).T.astype(float)
    assert ag["krippendorff_alpha"] == pytest.approx(krippendorff_alpha(reliability))
    # percent agreement: share of agreeing rater pairs within each item, averaged
    pa = [
        np.mean([x == y for i, x in enumerate(v) for y in v[i + 1 :]])
        for v in ([x for x in item if x >= 0] for item in labels)
    ]
    assert ag["percent_agreement"] == pytest.approx(np.mean(pa))
    kappa_01 = cohen_kappa(labels[:, 0], labels[:, 1])
    assert row(s, "pairwise_kappa", annotator_1="r0", annotator_2="r1")["cohen_kappa"] == (
        pytest.approx(kappa_01)
    )


def test_annotator_vs_majority_of_others() -> None:
    # r2 agrees with the others' majority on items 0 and 1, not on item 2; item 3's others split.
    labels = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 1], [0, 1, 2]])
    s = summarize(_labels_df(labels), n_boot=0)
    r2 = row(s, "annotator_vs_majority", annotator="r2", criterion="Overall")
    assert (r2["n"], r2["agreement"]) == (3, pytest.approx(2 / 3))
    r0 = row(s, "annotator_vs_majority", annotator="r0", criterion="Overall")
    # r0's others: (0,0) (1,1) (0,1 split) (1,2 split) -> 2 judgments, both agree
    assert (r0["n"], r0["agreement"]) == (2, 1.0)


# ----------------------------------------------------------------------- bias and quality


def test_position_bias_binomial_test() -> None:
    # 8 left of 10 non-tie choices: two-sided p = 2 x 56/1024 = 0.109375
    j = [("A vs B", i, "r1", "Overall", "a" if i < 8 else "b") for i in range(10)]
    j += [("A vs B", 10, "r1", "Overall", "tie")]
    s = summarize(long_df(j), n_boot=0)
    overall = row(s, "position_bias", annotator="(all)", criterion="(all)")
    assert (overall["n"], overall["n_left"]) == (10, 8)
    assert overall["p_value"] == pytest.approx(0.109375)
    assert row(s, "position_bias", annotator="r1")["left_share"] == 0.8


def test_too_fast_rule_and_gold_pass_rate() -> None:
    j = [("A vs B", i, a, "Overall", "a") for i in range(6) for a in ("slow", "fast", "mid")]
    df = long_df(j)
    secs = {"slow": 60.0, "fast": 2.5, "mid": 12.0}
    df["seconds"] = df["annotator"].map(secs)
    gold = long_df(
        [("A vs B", 100 + i, "fast", "Overall", "a" if i < 2 else "b") for i in range(5)],
        is_gold=True,
        gold_expected="left",
    )
    s = summarize(pd.concat([df, gold], ignore_index=True), n_boot=0)
    # study median of per-item seconds is 12 (gold items count); threshold max(3, 0.25 x 12) = 3
    assert s["meta"]["too_fast_threshold_seconds"] == 3.0
    flags = {r["annotator"]: r["too_fast"] for r in s["annotators"]}
    assert flags == {"slow": False, "fast": True, "mid": False}
    fast = row(s, "annotators", annotator="fast")
    assert (fast["n_gold"], fast["gold_pass_rate"], fast["low_gold"]) == (5, 0.4, True)
    assert fast["median_seconds_per_item"] == 2.5


# ------------------------------------------------------------------------------ Bradley-Terry


def _baseball() -> list[tuple[str, str, str]]:
    out = []
    for i, a in enumerate(TEAMS):
        for j, b in enumerate(TEAMS):
            out += [(a, b, "a")] * BASEBALL_WINS[i][j]
    return out


def test_bradley_terry_agresti_baseball() -> None:
    bt = bradley_terry(_baseball(), n_boot=100, seed=1)
    assert list(bt.index) == list(AGRESTI_VS_BALTIMORE) + ["Baltimore"]
    assert bt["score"].sum() == pytest.approx(0.0, abs=1e-9)
    for team, published in AGRESTI_VS_BALTIMORE.items():
        diff = bt.at[team, "score"] - bt.at["Baltimore", "score"]
        assert round(diff, 2) == published
    assert (bt["ci_low"] < bt["score"]).all() and (bt["score"] < bt["ci_high"]).all()
    assert bt["n_comparisons"].tolist() == [78] * 7


def test_bradley_terry_recovers_simulated_strengths() -> None:
    rng = np.random.default_rng(0)
    true = np.array([0.8, 0.3, 0.0, -0.4, -0.7])
    true -= true.mean()
    a, b = rng.integers(0, 5, (2, 60_000))
    keep = a != b
    a, b = a[keep], b[keep]
    p = 1 / (1 + np.exp(-(true[a] - true[b])))
    outcome = np.where(rng.random(a.size) < p, "a", "b")
    names = [f"s{i}" for i in range(5)]
    bt = bradley_terry(
        zip([names[i] for i in a], [names[i] for i in b], outcome, strict=True), n_boot=50
    )
    est = bt["score"].reindex(names).to_numpy()
    assert np.abs(est - true).max() < 0.05
    assert ((bt["ci_low"].reindex(names) < true) & (true < bt["ci_high"].reindex(names))).all()


def test_bradley_terry_ties_are_half_wins() -> None:
    bt = bradley_terry([("x", "y", "tie")] * 10 + [("x", "z", "a"), ("z", "x", "a")], n_boot=0)
    assert bt["score"].to_numpy() == pytest.approx([0, 0, 0], abs=1e-6)
    # one win + two ties against y: 2 of 3 "wins" -> log(2) apart, centred
    bt = bradley_terry([("x", "y", "a"), ("x", "y", "tie"), ("y", "x", "tie")], n_boot=0)
    assert bt.at["x", "score"] - bt.at["y", "score"] == pytest.approx(math.log(2), abs=1e-5)


def test_bradley_terry_stays_finite_when_a_system_never_wins() -> None:
    bt = bradley_terry([("x", "y", "a")] * 5 + [("y", "z", "a")] * 5 + [("z", "y", "a")], n_boot=20)
    assert np.isfinite(bt.to_numpy(dtype=float)).all()
    assert list(bt.index) == ["x", "y", "z"]


def test_bradley_terry_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="outcome must be"):
        bradley_terry([("x", "y", "win")])
    with pytest.raises(ValueError, match="itself"):
        bradley_terry([("x", "x", "a")])


def test_summary_ranking_uses_overall_criterion() -> None:
    j = counts_df("A vs B", 9, 3) + counts_df("A vs B", 0, 12, criterion="Empathy")
    s = summarize(long_df(j), n_boot=20)
    assert {r["criterion"] for r in s["ranking"]} == {"Overall"}
    assert [r["system"] for r in s["ranking"]] == ["A", "B"]
    assert s["ranking"][0]["score"] == pytest.approx(math.log(3) / 2, abs=1e-5)


# ------------------------------------------------------------------------- publication table


def test_publication_table_markdown_and_latex() -> None:
    j = counts_df("CARE vs ESConv", 6, 2, ties=2) + counts_df("CARE vs Base", 5, 5)
    j += counts_df("CARE vs ESConv", 1, 1, criterion="Empathy")
    s = summarize(long_df(j), n_boot=0)
    md = publication_table(s)
    assert "Unit: judgments; denominator: all judgments" in md.splitlines()[0]
    assert "| CARE vs ESConv | 60.0 | 20.0 | 20.0 |" in md
    assert "| CARE vs Base | 50.0 | 0.0 | 50.0 |" in md
    only = publication_table(s, criteria=["Overall"])
    assert "Empathy" not in only
    tex = publication_table(s, fmt="latex")
    assert r"\multicolumn{4}{c}{Overall}" in tex and r"\caption{" in tex
    assert "CARE vs ESConv & 60.0 & 20.0 & 20.0" in tex
    with pytest.raises(ValueError, match="not in the summary"):
        publication_table(s, criteria=["Safety"])


def test_summarize_requires_one_study() -> None:
    df = long_df(counts_df("A vs B", 1, 1))
    df.loc[0, "study"] = "other"
    with pytest.raises(ValueError, match="one study"):
        summarize(df)


def test_stats_module_does_not_import_django() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pairwise.services.stats, pairwise.services.longformat, "
        "pairwise.services.pandalm, pairwise.services.itt; sys.exit('django' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_docs_example_runs(capsys) -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "statistics.md").read_text()
    code = doc.split("```python\n")[1].split("```")[0]
    exec(compile(code, "docs/statistics.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["0.21", "0.743", "0.5"]
