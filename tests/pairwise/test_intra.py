"""Intra-annotator agreement (services/intra.py): Cohen's kappa and position consistency of an
annotator's first and repeated answers, against hand-computed and published values."""

import math

import pandas as pd
import pytest

from pairwise.services.intra import INTRA_COLUMNS, intra_agreement


def frame(rows):
    return pd.DataFrame(rows, columns=list(INTRA_COLUMNS))


# The first answers had A on the left, the repeats A on the right (sides swapped).
# u1's outcome pairs (first, repeat): (a,a) (a,a) (b,b) (tie,a) (b,a)
U1 = [
    ("u1", "Overall", "left", "right", "left", "right"),  # a, a
    ("u1", "Overall", "left", "right", "left", "right"),  # a, a
    ("u1", "Overall", "right", "left", "left", "right"),  # b, b
    ("u1", "Overall", "tie", "right", "left", "right"),  # tie, a
    ("u1", "Overall", "right", "right", "left", "right"),  # b, a: the same side twice
]
# u2's: (a,b) (b,a) (a,a) (tie,tie), and one repeat answered "cannot judge"
U2 = [
    ("u2", "Fluency", "left", "left", "left", "right"),  # a, b
    ("u2", "Fluency", "right", "right", "left", "right"),  # b, a
    ("u2", "Overall", "left", "right", "left", "right"),  # a, a
    ("u2", "Overall", "tie", "tie", "left", "right"),  # tie, tie
    ("u2", "Overall", "left", "cannot_judge", "left", "right"),
]


def test_kappa_and_position_consistency_per_annotator_match_hand_computed_values():
    out = intra_agreement(frame(U1 + U2))
    u1, u2 = out["per_annotator"]
    # u1: p_o = 3/5; margins first (a2, b2, tie1), repeat (a4, b1, tie0): p_e = 10/25;
    # kappa = (0.6 - 0.4) / (1 - 0.4) = 1/3
    assert u1["annotator"] == "u1" and u1["n_pairs"] == 5
    assert u1["agreement"] == pytest.approx(0.6)
    assert u1["cohen_kappa"] == pytest.approx(1 / 3)
    # non-tied pairs: 4; the same system in 3, the same side in 1
    assert (u1["n_non_tied"], u1["consistent"], u1["position_driven"]) == (4, 3, 1)
    assert u1["consistent_share"] == pytest.approx(0.75)
    assert u1["position_share"] == pytest.approx(0.25)
    # u2: p_o = 2/4; margins (a2, b1, tie1) both: p_e = 6/16; kappa = 0.125 / 0.625 = 0.2
    assert u2["n_pairs"] == 4 and u2["n_cannot_judge"] == 1
    assert u2["cohen_kappa"] == pytest.approx(0.2)
    assert (u2["n_non_tied"], u2["consistent"], u2["position_driven"]) == (3, 1, 2)
    assert u2["position_share"] == pytest.approx(2 / 3)


def test_pooled_kappa_over_all_annotators_matches_hand_computed_value():
    pooled = intra_agreement(frame(U1 + U2))["pooled"]
    # 9 pairs, 5 agree; margins first (a4, b3, tie2), repeat (a6, b2, tie1):
    # p_e = (24 + 6 + 2) / 81 = 32/81, kappa = (45/81 - 32/81) / (49/81) = 13/49
    assert pooled["n_pairs"] == 9 and pooled["n_cannot_judge"] == 1
    assert pooled["agreement"] == pytest.approx(5 / 9)
    assert pooled["cohen_kappa"] == pytest.approx(13 / 49)
    assert (pooled["n_non_tied"], pooled["consistent"], pooled["position_driven"]) == (7, 4, 3)


def test_per_criterion_rows():
    rows = {r["criterion"]: r for r in intra_agreement(frame(U1 + U2))["per_criterion"]}
    assert rows["Fluency"]["n_pairs"] == 2 and rows["Fluency"]["consistent"] == 0
    assert rows["Overall"]["n_pairs"] == 7


def test_kappa_matches_the_published_two_rater_example():
    # Cohen's kappa, Wikipedia's example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> 0.4
    # (as an annotator answering the same item twice, A on the left both times)
    rows = (
        [("u", "c", "left", "left", "left", "left")] * 20
        + [("u", "c", "left", "right", "left", "left")] * 5
        + [("u", "c", "right", "left", "left", "left")] * 10
        + [("u", "c", "right", "right", "left", "left")] * 15
    )
    out = intra_agreement(frame(rows))
    assert out["pooled"]["cohen_kappa"] == pytest.approx(0.4)
    assert out["per_annotator"][0]["agreement"] == pytest.approx(0.7)


def test_always_left_is_position_driven_and_kappa_undefined_or_negative():
    # an annotator who always clicks "left": with sides swapped, never the same system
    rows = [("u", "c", "left", "left", "left", "right")] * 3 + [
        ("u", "c", "left", "left", "right", "left")
    ] * 3
    row = intra_agreement(frame(rows))["per_annotator"][0]
    assert row["consistent_share"] == 0 and row["position_share"] == 1
    assert row["agreement"] == 0 and row["cohen_kappa"] == pytest.approx(-1.0)


def test_only_ties_leave_position_consistency_undefined():
    row = intra_agreement(frame([("u", "c", "tie", "tie", "left", "right")]))["pooled"]
    assert row["n_non_tied"] == 0 and math.isnan(row["consistent_share"])
    assert math.isnan(row["cohen_kappa"])  # one category only


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match="columns: missing"):
        intra_agreement(pd.DataFrame({"annotator": ["u"]}))
    with pytest.raises(ValueError, match=r"repeat_choice/repeat_a_side, row 1"):
        intra_agreement(frame([("u", "c", "left", "left", "left", "middle")]))
    with pytest.raises(ValueError, match=r"original_choice/original_a_side, row 1"):
        intra_agreement(frame([("u", "c", "up", "left", "left", "right")]))
