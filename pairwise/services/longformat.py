"""The long format: one row per annotator x item x criterion.

This is the contract between the platform's exports, its imports and ``pairwise.services.stats``.
No Django here: the module reads and validates plain files and DataFrames.

Columns (``LONG_COLUMNS``, in this order):

=============== ======== =============================================================
column          required meaning
=============== ======== =============================================================
study           yes      study name
item_id         yes      opaque item identifier (kept as a string: "007" stays "007")
comparison      yes      label of the pair, e.g. "CARE vs ESConv"
system_a        yes      the system the outcome is expressed for ("A")
system_b        yes      the other system ("B", the baseline)
checkpoint_a    no       checkpoint id of system A ("" when unknown)
checkpoint_b    no       checkpoint id of system B
a_side          yes      "left" or "right": where system A was shown
annotator       yes      annotator id
criterion       yes      criterion name, e.g. "Overall"
choice          yes      blinded answer: "left", "right", "tie" or "cannot_judge"
outcome         no       unblinded answer from A's side: "a", "b", "tie"; empty for
                         cannot_judge. Derived from choice and a_side when absent;
                         checked against them when present.
seconds         no       seconds the annotator spent on the item (NaN when unknown); on
                         this platform the server's time from lease to submit
client_seconds  no       seconds the annotator's browser reported for the item, kept apart
                         from ``seconds``; empty (NaN) when unknown, else a number > 0
prior_exposures no       how many of the item's two replies (0, 1 or 2) the annotator had
                         already seen in another item when it was shown; default 0
is_gold         no       the item is a gold (attention-check) item; default False
gold_expected   no       "left" or "right" for gold items, empty otherwise
simulated       no       the judgment was simulated (load tests, demos); default False
created_at      no       ISO 8601 timestamp ("" when unknown)
=============== ======== =============================================================

The platform's exports add three columns after these, repeated on each criterion's row of a
judgment: ``comment`` and ``cannot_judge_reason`` (what the annotator wrote) and
``participant_id`` (the annotator's id on the crowd platform that sent them through an invite
link, e.g. Prolific's PID; empty otherwise), then ``guideline_sha256`` and
``criterion_version`` (the guidelines and the criterion's definition the judgment was made
under, services/criteria.py). Extra columns are kept as they are, and ``import_judgments``
stores these five when present (rows without versions get the study's current ones).

CSV files written by the platform escape text cells that a spreadsheet would run as a formula
(OWASP: a leading ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a single quote in
front, ``csv_safe``); ``read_long`` takes the quote off again (``csv_unescape``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pairwise.outcomes import LONG_CHOICES as CHOICES
from pairwise.outcomes import OUTCOMES, outcome_from_choice
from pairwise.services.errors import ServiceError

LONG_COLUMNS: list[str] = [
    "study",
    "item_id",
    "comparison",
    "system_a",
    "system_b",
    "checkpoint_a",
    "checkpoint_b",
    "a_side",
    "annotator",
    "criterion",
    "choice",
    "outcome",
    "seconds",
    "client_seconds",
    "prior_exposures",
    "is_gold",
    "gold_expected",
    "simulated",
    "created_at",
]
REQUIRED_COLUMNS: list[str] = [
    "study",
    "item_id",
    "comparison",
    "system_a",
    "system_b",
    "a_side",
    "annotator",
    "criterion",
    "choice",
]

_STR_COLUMNS = [
    "study",
    "item_id",
    "comparison",
    "system_a",
    "system_b",
    "checkpoint_a",
    "checkpoint_b",
    "a_side",
    "annotator",
    "criterion",
    "choice",
    "created_at",
]
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n", ""}


# OWASP's CSV injection rule: a cell that begins with one of these is a formula to a
# spreadsheet; it is written with a leading single quote, which a reader here takes off again.
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` whose text cells cannot run as spreadsheet formulas (numbers stay)."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(
                lambda v: f"'{v}" if isinstance(v, str) and v.startswith(CSV_FORMULA_STARTS) else v
            )
    return out


def csv_unescape(df: pd.DataFrame) -> pd.DataFrame:
    """Undo `csv_safe` on a table read as text."""
    quoted = tuple(f"'{c}" for c in CSV_FORMULA_STARTS)
    return df.apply(
        lambda s: s.map(lambda v: v[1:] if isinstance(v, str) and v.startswith(quoted) else v)
    )


class LongFormatError(ServiceError):
    """A long-format table is malformed at a given data line and field.

    ``row_number`` is 1-based and counts the header: in a CSV file the first data row is line 2.
    For JSON Lines it is the line of the file; for a JSON list or parquet it is the record
    number (first record = 1). Line 1 with a column name means a missing column.
    """

    def __init__(self, row_number: int, field: str, message: str) -> None:
        super().__init__(field, message)
        self.row_number = row_number
        self.args = (row_number, field, message)

    def __str__(self) -> str:
        return f"line {self.row_number}, field {self.field!r}: {self.message}"


class _Column:
    """A column factorized once: integer codes, the distinct values, and which rows are empty.

    Checking the few distinct values and mapping the verdict back through the codes is what
    keeps validation of a million rows fast (no per-row Python, no object-array copies).
    """

    def __init__(self, s: pd.Series) -> None:
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        self.codes = codes
        self.values = list(uniques)
        # code -1 (NA) indexes the trailing True
        self.missing = self.lookup(lambda u: u == "" or (isinstance(u, float) and np.isnan(u)))
        self.missing = self.missing | (codes < 0)

    def lookup(self, fn, na=True) -> np.ndarray:
        """Apply ``fn`` to each distinct value and spread the result over the rows."""
        table = np.array([bool(fn(u)) for u in self.values] + [na], dtype=bool)
        return table[self.codes]

    def code_map(self, mapping: dict[str, int]) -> np.ndarray:
        """Integer code per row from ``mapping``; -1 for empty, -2 for an unknown value."""
        table = np.array(
            [
                -1 if u == "" else mapping.get(u, -2) if isinstance(u, str) else -2
                for u in self.values
            ]
            + [-1],
            dtype=np.int64,
        )
        return table[self.codes]


def _fail_first(mask: np.ndarray, lines: np.ndarray, field: str, message, df: pd.DataFrame):
    """Raise a LongFormatError for the first True row of ``mask`` (no-op if none)."""
    bad = np.flatnonzero(mask)
    if bad.size:
        i = int(bad[0])
        msg = message(df.iloc[i]) if callable(message) else message
        extra = f" ({bad.size} rows in all)" if bad.size > 1 else ""
        raise LongFormatError(int(lines[i]), field, msg + extra)


def _to_bool(s: pd.Series, lines: np.ndarray, field: str) -> np.ndarray:
    """Parse a boolean column written as bool, 0/1 or true/false text; empty means False."""
    if s.dtype == bool:
        return s.to_numpy()
    values = s.to_numpy(dtype=object)
    parsed: dict[object, bool] = {}
    # Map the few distinct values once instead of testing a million cells one by one.
    for v in pd.unique(values):
        if isinstance(v, (bool, np.bool_)):
            parsed[v] = bool(v)
        elif v is None or (isinstance(v, float) and np.isnan(v)):
            parsed[v] = False
        elif isinstance(v, (int, np.integer, float)) and v in (0, 1):
            parsed[v] = bool(v)
        elif isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
            parsed[v] = v.strip().lower() in _TRUE
        else:
            i = int(np.flatnonzero(values == v)[0])
            raise LongFormatError(int(lines[i]), field, f"expected true/false, got {v!r}")
    return pd.Series(values).map(parsed).to_numpy(dtype=bool)


def _numbers(df: pd.DataFrame, col: str, lines: np.ndarray) -> pd.Series:
    """An optional numeric column as floats, NaN where empty or absent; text that is not a
    number is an error naming the line."""
    if col not in df.columns:
        return pd.Series(np.nan, index=pd.RangeIndex(len(df)), dtype=float)
    raw = df[col]
    numeric = pd.api.types.is_numeric_dtype(raw)
    raw_missing = raw.isna().to_numpy() if numeric else _Column(raw).missing
    values = pd.to_numeric(raw.where(~raw_missing, np.nan), errors="coerce").astype(float)
    _fail_first(
        values.isna().to_numpy() & ~raw_missing,
        lines,
        col,
        lambda r: f"expected a number, got {r[col]!r}",
        df,
    )
    return values


@dataclass
class _Table:
    """What the validation rules share: the input (index reset), the normalised output being
    built, each row's line number, and the parsed text columns."""

    df: pd.DataFrame
    lines: np.ndarray
    out: pd.DataFrame
    cols: dict[str, _Column] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.df)

    def fail(self, mask: np.ndarray, field: str, message) -> None:
        _fail_first(mask, self.lines, field, message, self.df)


def validate_long(
    df: pd.DataFrame, *, first_line: int = 2, line_numbers: np.ndarray | None = None
) -> pd.DataFrame:
    """Check a long-format table and return a normalised copy.

    Checks: required columns present; allowed values of ``a_side``, ``choice``, ``outcome`` and
    ``gold_expected``; ``outcome`` agrees with ``choice`` and ``a_side``; ``seconds`` is a
    non-negative number; ``client_seconds`` is empty or a number > 0; ``prior_exposures`` is
    0, 1 or 2 (empty = 0); gold rows name a ``gold_expected`` side and non-gold rows do not;
    ``system_a != system_b``; each item belongs to one comparison and one (system_a, system_b);
    no duplicate (item_id, annotator, criterion).

    The result has the ``LONG_COLUMNS`` first, in order (extra columns are kept after them),
    text columns as ``str``, ``outcome``/``gold_expected`` as ``None`` where empty, ``seconds`` and
    ``client_seconds`` as float (NaN where empty), ``prior_exposures`` as int and
    ``is_gold``/``simulated`` as bool.

    ``first_line`` is the line of the first data row in error messages (2 for CSV, whose header is
    line 1); ``line_numbers`` gives every row's line explicitly instead (used for JSON Lines).
    Raises ``LongFormatError(row_number, field, message)`` at the first problem found: the rules
    below run in this order, each one small function.
    """
    n = len(df)
    lines = (
        np.asarray(line_numbers)
        if line_numbers is not None
        else np.arange(first_line, first_line + n, dtype=np.int64)
    )
    _check_required_columns(df)
    t = _Table(df.reset_index(drop=True), lines, pd.DataFrame(index=pd.RangeIndex(n)))
    _check_text_columns(t)
    side, choice = _check_sides_and_choices(t)
    _check_two_systems(t)
    _check_outcomes(t, side, choice)
    _check_times(t)
    _check_flags(t)
    _check_gold(t)
    _check_one_pair_per_item(t)
    _check_no_duplicates(t)
    extras = [c for c in t.df.columns if c not in LONG_COLUMNS]
    result = t.out[LONG_COLUMNS]
    if extras:
        result = pd.concat([result, t.df[extras]], axis=1)
    return result


def _check_required_columns(df: pd.DataFrame) -> None:
    for col in REQUIRED_COLUMNS:
        if col not in df.columns:
            raise LongFormatError(1, col, f"required column missing; expected {REQUIRED_COLUMNS}")


def _check_text_columns(t: _Table) -> None:
    """Required text columns are not empty; text columns become str ("" where empty)."""
    for col in _STR_COLUMNS:
        if col not in t.df.columns:
            t.out[col] = ""
            continue
        s = t.df[col]
        c = t.cols[col] = _Column(s)
        if col in REQUIRED_COLUMNS:
            t.fail(c.missing, col, "is empty")
        if c.missing.any() or not pd.api.types.is_string_dtype(s):
            # astype(str) would turn a missing value into "nan"; keep it as "".
            s = s.astype(object).where(~c.missing, "").astype(str)
        t.out[col] = s


def _check_sides_and_choices(t: _Table) -> tuple[np.ndarray, np.ndarray]:
    """a_side is left|right and choice one of CHOICES; returns their codes."""
    side = t.cols["a_side"].code_map({"left": 0, "right": 1})
    choice = t.cols["choice"].code_map({c: i for i, c in enumerate(CHOICES)})
    t.fail(side < 0, "a_side", lambda r: f"expected left|right, got {r.a_side!r}")
    t.fail(choice < 0, "choice", lambda r: f"expected one of {'|'.join(CHOICES)}, got {r.choice!r}")
    return side, choice


def _check_two_systems(t: _Table) -> None:
    """system_a differs from system_b (compared once per distinct pair)."""
    ca, cb = t.cols["system_a"], t.cols["system_b"]
    pair = ca.codes.astype(np.int64) * (len(cb.values) + 1) + cb.codes
    uniq_pairs, first = np.unique(pair, return_index=True)
    same = [str(ca.values[ca.codes[i]]) == str(cb.values[cb.codes[i]]) for i in first]
    t.fail(
        np.isin(pair, uniq_pairs[np.array(same, dtype=bool)]),
        "system_b",
        "system_b equals system_a; a comparison needs two different systems",
    )


def _check_outcomes(t: _Table, side: np.ndarray, choice: np.ndarray) -> None:
    """outcome, when given, is a|b|tie or empty and agrees with choice and a_side; it is derived."""
    # Unblind: choosing the side A was shown on is a win for A. Codes: 0 a, 1 b, 2 tie, -1 none.
    expected = np.where(choice == 2, 2, np.where(choice == 3, -1, np.where(choice == side, 0, 1)))
    if "outcome" in t.df.columns:
        given = _Column(t.df["outcome"]).code_map({o: i for i, o in enumerate(OUTCOMES)})
        t.fail(given == -2, "outcome", lambda r: f"expected a|b|tie or empty, got {r.outcome!r}")
        t.fail(
            given != expected,
            "outcome",
            lambda r: (
                f"outcome {r.outcome!r} disagrees with choice {r.choice!r} and a_side "
                f"{r.a_side!r} (expected "
                f"{outcome_from_choice(r.choice, r.a_side) or 'empty'})"
            ),
        )
    t.out["outcome"] = pd.Series(np.array([*OUTCOMES, None], dtype=object)[expected], dtype=object)


def _check_times(t: _Table) -> None:
    """seconds >= 0; client_seconds empty or > 0; prior_exposures 0, 1 or 2 (empty = 0)."""
    t.out["seconds"] = _numbers(t.df, "seconds", t.lines)
    t.fail((t.out["seconds"] < 0).to_numpy(), "seconds", "expected seconds >= 0")
    client = _numbers(t.df, "client_seconds", t.lines)
    t.fail(
        (client.notna() & ~(np.isfinite(client) & (client > 0))).to_numpy(),
        "client_seconds",
        lambda r: f"expected a number of seconds > 0 or empty, got {r['client_seconds']!r}",
    )
    t.out["client_seconds"] = client
    prior = _numbers(t.df, "prior_exposures", t.lines).fillna(0.0)
    t.fail(
        ~prior.isin([0.0, 1.0, 2.0]).to_numpy(),
        "prior_exposures",
        lambda r: f"expected 0, 1 or 2 (replies seen before), got {r['prior_exposures']!r}",
    )
    t.out["prior_exposures"] = prior.astype(np.int64)


def _check_flags(t: _Table) -> None:
    """is_gold and simulated are booleans (absent = False)."""
    for col in ("is_gold", "simulated"):
        t.out[col] = (
            _to_bool(t.df[col], t.lines, col) if col in t.df.columns else np.zeros(t.n, dtype=bool)
        )


def _check_gold(t: _Table) -> None:
    """gold_expected is left|right on gold rows and empty on the others."""
    if "gold_expected" in t.df.columns:
        g_code = _Column(t.df["gold_expected"]).code_map({"left": 0, "right": 1})
        t.fail(
            g_code == -2,
            "gold_expected",
            lambda r: f"expected left|right or empty, got {r.gold_expected!r}",
        )
    else:
        g_code = np.full(t.n, -1)
    is_gold = t.out["is_gold"].to_numpy()
    t.fail(
        is_gold & (g_code < 0),
        "gold_expected",
        "gold item without gold_expected; expected left|right",
    )
    t.fail(
        ~is_gold & (g_code >= 0), "gold_expected", "gold_expected set on a row with is_gold false"
    )
    t.out["gold_expected"] = pd.Series(
        np.array(["left", "right", None], dtype=object)[g_code], dtype=object
    )


def _check_one_pair_per_item(t: _Table) -> None:
    """One item, one comparison, and one (system_a, system_b) per comparison: anything else is
    a merge error upstream and would silently mix two pairs in one row of the results."""
    for key, field_ in (
        ("item_id", "comparison"),
        ("comparison", "system_a"),
        ("comparison", "system_b"),
    ):
        key_codes, field_codes = t.cols[key].codes, t.cols[field_].codes
        first_row = np.unique(key_codes, return_index=True)[1]
        first_of_key = np.empty(key_codes.max() + 1 if t.n else 0, dtype=np.int64)
        first_of_key[key_codes[first_row]] = field_codes[first_row]
        t.fail(
            field_codes != first_of_key[key_codes],
            field_,
            lambda r, k=key, f=field_: f"{k} {r[k]!r} appears with more than one {f}",
        )


def _check_no_duplicates(t: _Table) -> None:
    """No (item_id, annotator, criterion) twice."""
    item_c, ann_c, crit_c = (
        t.cols[c].codes.astype(np.int64) for c in ("item_id", "annotator", "criterion")
    )
    n_ann, n_crit = len(t.cols["annotator"].values), len(t.cols["criterion"].values)
    dup = pd.Series((item_c * n_ann + ann_c) * n_crit + crit_c).duplicated(keep="first")
    t.fail(
        dup.to_numpy(),
        "item_id",
        lambda r: (
            f"duplicate judgment: item {r.item_id!r}, annotator {r.annotator!r}, "
            f"criterion {r.criterion!r} already appeared on an earlier line"
        ),
    )


def read_long(path: str | Path) -> pd.DataFrame:
    """Read and validate a long-format file: ``.csv``, ``.json`` (a list of records),
    ``.jsonl`` (one record per line) or ``.parquet``.

    Errors name the file and the line (CSV: header = line 1; JSONL: the file's line; JSON and
    parquet: the record number, first = 1).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # Everything as text first: opaque ids must not become numbers ("007" -> 7).
            try:  # pyarrow's reader is about 1.6x faster on large exports
                df = pd.read_csv(path, dtype=str, keep_default_na=False, engine="pyarrow")
            except Exception:  # malformed file: the C reader's error names the bad line
                df = pd.read_csv(path, dtype=str, keep_default_na=False)
            return validate_long(csv_unescape(df), first_line=2)
        if suffix == ".jsonl":
            records, lines = [], []
            with path.open(encoding="utf-8") as fh:
                for lineno, text in enumerate(fh, start=1):
                    if not text.strip():
                        continue
                    try:
                        records.append(json.loads(text))
                    except json.JSONDecodeError as exc:
                        raise LongFormatError(lineno, "", f"invalid JSON: {exc.msg}") from None
                    lines.append(lineno)
            return validate_long(pd.DataFrame.from_records(records), line_numbers=np.array(lines))
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise LongFormatError(1, "", "expected a JSON list of records")
            return validate_long(pd.DataFrame.from_records(data), first_line=1)
        if suffix == ".parquet":
            return validate_long(pd.read_parquet(path), first_line=1)
    except LongFormatError as exc:
        raise LongFormatError(exc.row_number, exc.field, f"{path}: {exc.message}") from None
    raise ValueError(
        f"{path}: unsupported extension {suffix!r}; expected .csv .json .jsonl .parquet"
    )
