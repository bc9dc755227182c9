"""The long format: unblinding, validation errors that name line and field, file readers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pairwise.services.longformat import (
    LONG_COLUMNS,
    LongFormatError,
    outcome_from_choice,
    read_long,
    validate_long,
)


def _rows(n: int = 3) -> pd.DataFrame:
    """n annotators judging one item on one criterion, A shown on the right."""
    return pd.DataFrame(
        {
            "study": "s1",
            "item_id": "007",
            "comparison": "CARE vs ESConv",
            "system_a": "CARE",
            "system_b": "ESConv",
            "checkpoint_a": "ck-a",
            "checkpoint_b": "ck-b",
            "a_side": "right",
            "annotator": [f"ann{i}" for i in range(n)],
            "criterion": "Overall",
            "choice": ["right", "left", "tie", "cannot_judge"][:n],
            "outcome": ["a", "b", "tie", None][:n],
            "seconds": 12.5,
            "is_gold": False,
            "gold_expected": None,
            "simulated": False,
            "created_at": "2025-01-01T00:00:00Z",
        }
    )


@pytest.mark.parametrize(
    ("choice", "a_side", "expected"),
    [
        ("left", "left", "a"),
        ("right", "right", "a"),
        ("left", "right", "b"),
        ("right", "left", "b"),
        ("tie", "left", "tie"),
        ("cannot_judge", "right", None),
    ],
)
def test_outcome_from_choice(choice: str, a_side: str, expected: str | None) -> None:
    assert outcome_from_choice(choice, a_side) == expected


def test_outcome_from_choice_rejects_unknown_values() -> None:
    with pytest.raises(ValueError, match="choice"):
        outcome_from_choice("middle", "left")
    with pytest.raises(ValueError, match="a_side"):
        outcome_from_choice("left", "top")


def test_validate_long_normalises_a_valid_table() -> None:
    df = validate_long(_rows(4))
    assert list(df.columns) == LONG_COLUMNS
    assert df["outcome"].tolist() == ["a", "b", "tie", None]
    assert df["item_id"].iloc[0] == "007"
    assert df["is_gold"].dtype == bool and df["seconds"].dtype == float
    assert df["gold_expected"].tolist() == [None] * 4


def test_validate_long_derives_missing_outcome_column() -> None:
    df = validate_long(_rows(4).drop(columns=["outcome", "seconds", "is_gold", "gold_expected"]))
    assert df["outcome"].tolist() == ["a", "b", "tie", None]
    assert not df["is_gold"].any() and df["seconds"].isna().all()
    # files written before client_seconds and prior_exposures existed still read
    assert df["client_seconds"].isna().all() and df["client_seconds"].dtype == float
    assert df["prior_exposures"].tolist() == [0] * 4 and df["prior_exposures"].dtype == np.int64


def test_client_seconds_and_prior_exposures_are_kept() -> None:
    df = validate_long(_rows(3).assign(client_seconds=[9.5, None, 0.25], prior_exposures=[0, 2, 1]))
    assert df["client_seconds"].tolist()[::2] == [9.5, 0.25] and np.isnan(df["client_seconds"][1])
    assert df["prior_exposures"].tolist() == [0, 2, 1]
    assert df["seconds"].tolist() == [12.5] * 3  # the server's time stays apart
    # as text (CSV): empty is NaN / 0
    text = _rows(2).assign(client_seconds=["", "3"], prior_exposures=["", "2"]).astype(str)
    df = validate_long(text)
    assert np.isnan(df["client_seconds"][0]) and df["client_seconds"][1] == 3.0
    assert df["prior_exposures"].tolist() == [0, 2]


@pytest.mark.parametrize(
    ("mutate", "line", "field"),
    [
        (lambda d: d.drop(columns=["annotator"]), 1, "annotator"),
        (lambda d: d.assign(choice=["right", "up", "tie"]), 3, "choice"),
        (lambda d: d.assign(a_side=["right", "right", "centre"]), 4, "a_side"),
        (lambda d: d.assign(outcome=["a", "a", "tie"]), 3, "outcome"),  # left with A right = b
        (lambda d: d.assign(outcome=["a", "b", "draw"]), 4, "outcome"),
        (lambda d: d.assign(annotator=["x", "y", "x"]), 4, "item_id"),  # duplicate judgment
        (lambda d: d.assign(seconds=[1.0, -2.0, 3.0]), 3, "seconds"),
        (lambda d: d.assign(seconds=["1", "fast", "3"]), 3, "seconds"),
        (lambda d: d.assign(client_seconds=[1.0, 2.0, 0.0]), 4, "client_seconds"),
        (lambda d: d.assign(client_seconds=[1.0, -2.0, None]), 3, "client_seconds"),
        (lambda d: d.assign(client_seconds=["1", "2", "slow"]), 4, "client_seconds"),
        (lambda d: d.assign(prior_exposures=[0, 3, 0]), 3, "prior_exposures"),
        (lambda d: d.assign(prior_exposures=[0, 1.5, 0]), 3, "prior_exposures"),
        (lambda d: d.assign(prior_exposures=["-1", "0", "0"]), 2, "prior_exposures"),
        (lambda d: d.assign(prior_exposures=["0", "0", "twice"]), 4, "prior_exposures"),
        (lambda d: d.assign(is_gold=[False, True, False]), 3, "gold_expected"),
        (lambda d: d.assign(gold_expected=[None, None, "left"]), 4, "gold_expected"),
        (lambda d: d.assign(is_gold=["no", "maybe", "no"]), 3, "is_gold"),
        (lambda d: d.assign(system_b="CARE"), 2, "system_b"),
        (
            lambda d: d.assign(item_id=["1", "2", "3"], system_a=["CARE", "CARE", "X"]),
            4,
            "system_a",
        ),
        (lambda d: d.assign(annotator=["a", "", "c"]), 3, "annotator"),
        (
            lambda d: d.assign(comparison=["CARE vs ESConv", "CARE vs ESConv", "X vs Y"]),
            4,
            "comparison",
        ),
    ],
)
def test_validate_long_names_line_and_field(mutate, line: int, field: str) -> None:
    with pytest.raises(LongFormatError) as err:
        validate_long(mutate(_rows(3)))
    assert (err.value.row_number, err.value.field) == (line, field)
    assert f"line {line}" in str(err.value)


def test_gold_rows_validate() -> None:
    df = _rows(2).assign(is_gold=True, gold_expected="right")
    assert validate_long(df)["gold_expected"].tolist() == ["right", "right"]


def test_read_long_csv_keeps_opaque_ids_and_reports_csv_lines(tmp_path) -> None:
    path = tmp_path / "judgments.csv"
    _rows(4).to_csv(path, index=False)
    df = read_long(path)
    assert df["item_id"].tolist() == ["007"] * 4  # not the number 7
    assert df["outcome"].tolist() == ["a", "b", "tie", None]
    assert df["seconds"].tolist() == [12.5] * 4

    bad = _rows(3).assign(choice=["right", "left", "sideways"])
    bad.to_csv(path, index=False)
    with pytest.raises(LongFormatError) as err:
        read_long(path)
    # header is line 1, so the third data row is line 4 of the file
    assert (err.value.row_number, err.value.field) == (4, "choice")
    assert str(path) in str(err.value)


def test_read_long_jsonl_uses_file_lines(tmp_path) -> None:
    records = _rows(3).replace({np.nan: None}).to_dict("records")
    records[2]["outcome"] = "b"  # tie chosen, so the outcome must be "tie"
    path = tmp_path / "judgments.jsonl"
    text = json.dumps(records[0]) + "\n\n" + json.dumps(records[1]) + "\n" + json.dumps(records[2])
    path.write_text(text + "\n")
    with pytest.raises(LongFormatError) as err:
        read_long(path)
    assert (err.value.row_number, err.value.field) == (4, "outcome")

    path.write_text('{"study": "s1"\n')
    with pytest.raises(LongFormatError, match="invalid JSON") as err:
        read_long(path)
    assert err.value.row_number == 1


def test_read_long_json_and_parquet_round_trip(tmp_path) -> None:
    original = validate_long(
        _rows(4).assign(client_seconds=[4.0, None, 7.5, 1.0], prior_exposures=[0, 1, 2, 0])
    )
    json_path = tmp_path / "judgments.json"
    json_path.write_text(json.dumps(original.replace({np.nan: None}).to_dict("records")))
    parquet_path = tmp_path / "judgments.parquet"
    original.to_parquet(parquet_path)
    for path in (json_path, parquet_path):
        df = read_long(path)
        assert df["outcome"].tolist() == original["outcome"].tolist()
        assert df["choice"].tolist() == original["choice"].tolist()
        assert df["item_id"].tolist() == ["007"] * 4
        assert df["prior_exposures"].tolist() == [0, 1, 2, 0]
        pd.testing.assert_series_equal(df["client_seconds"], original["client_seconds"])


def test_read_long_rejects_unknown_extension(tmp_path) -> None:
    path = tmp_path / "judgments.xlsx"
    path.write_text("")
    with pytest.raises(ValueError, match="unsupported extension"):
        read_long(path)
