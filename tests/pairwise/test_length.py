"""Length-controlled ranking (issue #18, section 5): Bradley-Terry with the normalised reply-length
difference as a covariate, and the share of non-tied judgments won by the longer reply.

Checked on synthetic studies drawn from the model (length alone drives the preference; one
system is better and length does not matter), against statsmodels' GLM for the same likelihood,
against `stats.bradley_terry` for the raw strengths, by a hand count for the bias share, and
through the results page, the API and the export.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from django.test import Client
from scipy.special import expit
from statsmodels.stats.proportion import proportion_confint

from pairwise.services import allocation
from pairwise.services.export import export_study, study_summary
from pairwise.services.length import (
    length_bias,
    length_controlled_bt,
    length_difference,
    reply_lengths,
    word_count,
)
from pairwise.services.longformat import validate_long
from pairwise.services.stats import bradley_terry
from tests.factories import annotator, make_study, researcher


def _synthetic(theta, mean_words, beta, *, n_items=120, k=3, criteria=("Overall",), seed=1):
    """A long table drawn from P(A wins) = sigmoid(theta_A - theta_B + beta * d), every pair of
    systems compared on `n_items` items by `k` annotators; each reply's length is uniform on
    [mean / 2, 3 mean / 2] words. Returns (long table, lengths)."""
    rng = np.random.default_rng(seed)
    names = list(theta)
    rows, lengths = [], []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for n in range(n_items):
                item = f"{a}-{b}-{n}"
                la = int(rng.integers(mean_words[a] // 2, mean_words[a] * 3 // 2 + 1))
                lb = int(rng.integers(mean_words[b] // 2, mean_words[b] * 3 // 2 + 1))
                lengths.append((item, la, lb))
                p = expit(theta[a] - theta[b] + beta * (la - lb) / (la + lb))
                for j in range(k):
                    for crit in criteria:
                        rows.append(
                            {
                                "study": "synthetic",
                                "item_id": item,
                                "comparison": f"{a} vs {b}",
                                "system_a": a,
                                "system_b": b,
                                "a_side": "left",
                                "annotator": f"u{j}",
                                "criterion": crit,
                                "choice": "left" if rng.random() < p else "right",
                            }
                        )
    return validate_long(pd.DataFrame(rows)), pd.DataFrame(
        lengths, columns=["item_id", "len_a", "len_b"]
    )


def _by_system(table: pd.DataFrame, criterion: str = "Overall") -> pd.DataFrame:
    return table[table["criterion"] == criterion].set_index("system")


def test_length_alone_drives_preference_controlled_ranking_removes_it():
    # Equally good systems; "Long" writes twice the words, and the longer reply wins about 80%
    # of the time against it (beta = 4 at d = 1/3 gives sigmoid(4/3) = 0.79).
    df, lengths = _synthetic(
        {"Long": 0.0, "S1": 0.0, "S2": 0.0}, {"Long": 120, "S1": 60, "S2": 60}, 4.0
    )
    fit = length_controlled_bt(df, lengths, seed=3, n_boot=200)
    sys = _by_system(fit.systems)
    # Raw: "Long" clearly ahead, its interval above both others'.
    assert sys.loc["Long", "raw_ci_low"] > sys.loc[["S1", "S2"], "raw_ci_high"].max()
    assert sys.loc["Long", "raw_score"] > 0.5
    # Controlled: every strength near 0, every interval covering 0, and "Long" no longer first
    # by a margin.
    assert sys["score"].abs().max() < 0.2
    assert (sys["ci_low"] < 0).all() and (sys["ci_high"] > 0).all()
    assert sys.loc["Long", "shift"] < -0.5
    coef = fit.coefficients.set_index("criterion").loc["Overall"]
    assert coef["ci_low"] > 2.0 and coef["ci_low"] < 4.0 < coef["ci_high"]
    assert coef["identified"] and coef["n_judgments"] == len(df) and coef["n_items"] == 360
    # The bias statistic sees it too: the longer reply wins well above half.
    bias = length_bias(df, lengths).set_index("criterion").loc["Overall"]
    assert bias["ci_low"] > 0.6


def test_better_system_and_independent_lengths_both_rankings_agree():
    df, lengths = _synthetic(
        {"Best": 0.8, "S1": 0.0, "S2": 0.0},
        {"Best": 80, "S1": 80, "S2": 80},
        0.0,
        criteria=("Overall", "Fluency"),
    )
    fit = length_controlled_bt(df, lengths, seed=3, n_boot=200)
    for crit in ("Overall", "Fluency"):
        sys = _by_system(fit.systems, crit)
        assert sys.index[0] == "Best"  # sorted by controlled score
        assert sys["raw_score"].idxmax() == "Best"
        assert sys.loc["Best", "ci_low"] > sys.loc[["S1", "S2"], "ci_high"].max()
        assert sys["shift"].abs().max() < 0.05
        coef = fit.coefficients.set_index("criterion").loc[crit]
        assert coef["ci_low"] < 0 < coef["ci_high"]
    bias = length_bias(df, lengths).set_index("criterion")
    assert bias.loc["(all)", "ci_low"] < 0.5 < bias.loc["(all)", "ci_high"]


def test_raw_strengths_are_stats_bradley_terry_and_controlled_fit_is_the_glm():
    df, lengths = _synthetic(
        {"A": 0.5, "B": 0.0, "C": -0.2}, {"A": 90, "B": 60, "C": 40}, 2.0, n_items=60, seed=7
    )
    # Make some judgments ties: a tie counts as half a win for each side in both models.
    df.loc[df.index % 7 == 0, ["choice", "outcome"]] = ["tie", "tie"]
    fit = length_controlled_bt(df, lengths, seed=0, n_boot=0)
    sys = _by_system(fit.systems)
    raw = bradley_terry(zip(df.system_a, df.system_b, df.outcome, strict=True), n_boot=0)
    np.testing.assert_allclose(sys.loc[raw.index, "raw_score"], raw["score"], atol=1e-6)
    assert sys["ci_low"].isna().all()  # no bootstrap asked for

    # The same likelihood in statsmodels: binomial GLM on the fraction won, B as reference.
    merged = df.merge(lengths, on="item_id")
    y = merged["outcome"].map({"a": 1.0, "b": 0.0, "tie": 0.5})
    x = pd.DataFrame(
        {
            s: (merged["system_a"] == s).astype(float) - (merged["system_b"] == s).astype(float)
            for s in ("A", "C")
        }
    )
    x["d"] = (merged["len_a"] - merged["len_b"]) / (merged["len_a"] + merged["len_b"])
    glm = sm.GLM(y, x, family=sm.families.Binomial()).fit()
    assert fit.coefficients.loc[0, "beta"] == pytest.approx(glm.params["d"], abs=1e-5)
    for s in ("A", "C"):
        diff = sys.loc[s, "score"] - sys.loc["B", "score"]
        assert diff == pytest.approx(glm.params[s], abs=1e-5)
    assert sys["score"].sum() == pytest.approx(0.0, abs=1e-9)


def test_bootstrap_is_seeded():
    df, lengths = _synthetic({"A": 0.3, "B": 0.0}, {"A": 70, "B": 50}, 1.0, n_items=40)
    one = length_controlled_bt(df, lengths, seed=5, n_boot=50)
    two = length_controlled_bt(df, lengths, seed=5, n_boot=50)
    other = length_controlled_bt(df, lengths, seed=6, n_boot=50)
    pd.testing.assert_frame_equal(one.systems, two.systems)
    assert not np.allclose(one.systems["ci_low"], other.systems["ci_low"])


def _tiny():
    """Six items by hand; lengths (A, B): i1 30/10, i2 10/30, i3 20/20, i4 5/50, i5 40/8,
    g gold 1/99."""
    rows = [
        # item, annotator, criterion, outcome
        ("i1", "u1", "Overall", "a"),  # longer (A) wins
        ("i1", "u2", "Overall", "b"),  # shorter wins
        ("i2", "u1", "Overall", "b"),  # longer (B) wins
        ("i3", "u1", "Overall", "a"),  # equal length: left out
        ("i4", "u1", "Overall", "tie"),  # tie: left out
        ("i4", "u2", "Overall", "b"),  # longer (B) wins
        ("i5", "u1", "Overall", None),  # cannot judge: left out
        ("i1", "u1", "Fluency", "b"),  # shorter wins
        ("i5", "u2", "Fluency", "a"),  # longer (A) wins
    ]
    records = [
        {
            "study": "tiny",
            "item_id": item,
            "comparison": "A vs B",
            "system_a": "A",
            "system_b": "B",
            "a_side": "left",
            "annotator": who,
            "criterion": crit,
            "choice": {"a": "left", "b": "right", "tie": "tie", None: "cannot_judge"}[out],
        }
        for item, who, crit, out in rows
    ]
    records.append(
        {
            "study": "tiny",
            "item_id": "g",
            "comparison": "gold",
            "system_a": "Ref",
            "system_b": "Ctl",
            "a_side": "left",
            "annotator": "u1",
            "criterion": "Overall",
            "choice": "right",  # the longer gold reply "wins": gold is never counted
            "is_gold": True,
            "gold_expected": "right",
        }
    )
    lengths = pd.DataFrame(
        [
            ("i1", 30, 10),
            ("i2", 10, 30),
            ("i3", 20, 20),
            ("i4", 5, 50),
            ("i5", 40, 8),
            ("g", 1, 99),
        ],
        columns=["item_id", "len_a", "len_b"],
    )
    return validate_long(pd.DataFrame(records)), lengths


def test_length_bias_share_is_the_hand_count():
    df, lengths = _tiny()
    bias = length_bias(df, lengths).set_index("criterion")
    # Overall: i1/u1 longer, i1/u2 shorter, i2 longer, i4/u2 longer -> 3 of 4.
    overall = bias.loc["Overall"]
    assert (overall["n"], overall["longer_wins"]) == (4, 3)
    assert (overall["n_equal_length"], overall["n_ties"]) == (1, 1)
    lo, hi = proportion_confint(3, 4, method="wilson")
    assert overall["share"] == 0.75
    assert (overall["ci_low"], overall["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    # Fluency: i1 shorter, i5 longer -> 1 of 2. Pooled: 4 of 6.
    assert tuple(bias.loc["Fluency", ["n", "longer_wins"]]) == (2, 1)
    assert tuple(bias.loc["(all)", ["n", "longer_wins"]]) == (6, 4)
    assert bias.loc["(all)", "unit"] == "judgments x criteria"
    # A table without the optional is_gold column counts the same non-gold rows.
    plain = df[~df["is_gold"]].drop(columns="is_gold")
    pd.testing.assert_frame_equal(length_bias(plain, lengths).set_index("criterion"), bias)


def test_normalisation_and_word_count():
    assert word_count("  I hear you.\nThat sounds\thard. ") == 6
    assert word_count(None) == 0
    np.testing.assert_allclose(length_difference([20, 0, 10], [10, 0, 0]), [1 / 3, 0.0, 1.0])


def test_bad_input_names_the_field():
    df, lengths = _tiny()
    with pytest.raises(ValueError, match="lengths: missing column"):
        length_bias(df, lengths.drop(columns="len_b"))
    with pytest.raises(ValueError, match=r"lengths: no len_a/len_b for item 'i5'"):
        length_bias(df, lengths[lengths["item_id"] != "i5"])
    bad = lengths.assign(len_a=lengths["len_a"].where(lengths["item_id"] != "i2", -1))
    with pytest.raises(ValueError, match=r"lengths.len_a: item 'i2' needs a number >= 0"):
        length_controlled_bt(df, bad, n_boot=0)
    with pytest.raises(ValueError, match=r"df: missing column\(s\) \['outcome'\]"):
        length_bias(df.drop(columns="outcome"), lengths)
    with pytest.raises(ValueError, match="df: no non-gold judgment"):
        length_controlled_bt(df[df["is_gold"]], lengths, n_boot=0)


def test_length_fixed_by_the_pair_is_flagged_not_identified():
    df, lengths = _tiny()
    same = lengths.assign(len_a=30, len_b=10)  # every A reply 3x as long: d is constant
    coef = length_controlled_bt(df, same, n_boot=0).coefficients.set_index("criterion")
    assert not coef["identified"].any()
    assert length_controlled_bt(df, lengths, n_boot=0).coefficients["identified"].all()


@pytest.mark.django_db
def test_length_section_on_results_page_api_and_export(tmp_path):
    study, checkpoints, contexts = make_study(n_contexts=8, systems=("CARE", "ESConv"), k=2)
    # CARE's replies are longer on every context, by varying amounts; the annotators always
    # prefer the longer reply.
    for i, ctx in enumerate(contexts):
        for ck, words in ((checkpoints[0], 12 + 3 * i), (checkpoints[1], 4 + i % 3)):
            ck.responses.filter(context=ctx).update(text=" ".join(["word"] * words))
    lengths = reply_lengths(study).set_index("item_id")
    assert (lengths["len_a"] > lengths["len_b"]).all() and len(lengths) == 8
    for i in range(2):
        user = annotator(study, username=f"len{i}")
        while (item := allocation.next_item(study, user)) is not None:
            choice = "left" if item.a_on_left else "right"  # A, the longer reply, wins
            allocation.submit(study, user, item.public_id, {c: choice for c in study.criteria})
    section = study_summary(study)["length"]  # the default n_boot, as the page and API use
    n_crit = len(study.criteria)
    assert {r["criterion"] for r in section["controlled"]} == set(study.criteria)
    assert len(section["controlled"]) == 2 * n_crit and len(section["coefficients"]) == n_crit
    pooled = next(r for r in section["bias"] if r["criterion"] == "(all)")
    assert (pooled["n"], pooled["longer_wins"], pooled["share"]) == (16 * n_crit, 16 * n_crit, 1.0)
    assert all(r["beta"] > 0 for r in section["coefficients"])
    assert "w_A - w_B" in section["meta"]["normalisation"]

    client = Client()
    client.force_login(researcher(study, username="len-res"))
    api = client.get(f"/api/studies/{study.pk}/results/").json()
    assert api["length"] == section
    page = client.get(f"/studies/{study.pk}/results/").content.decode()
    assert "Length-controlled ranking" in page
    table = page.split('id="length-table"')[1].split("</table>")[0]
    row = section["controlled"][0]
    assert f"{row['raw_score']:.3f}" in table and f"{row['score']:.3f}" in table
    bias_table = page.split('id="length-bias-table"')[1].split("</table>")[0]
    assert f"{16 * n_crit} / {16 * n_crit}" in bias_table and "100.0" in bias_table

    export_study(study, "json", tmp_path)
    exported = json.loads((tmp_path / "summary.json").read_text())
    assert exported["length"] == section
