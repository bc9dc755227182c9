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
link, e.g. Prolific's PID; empty otherwise). Extra columns are kept as they are, and
``import_judgments`` stores these three when present.

CSV files written by the platform escape text cells that a spreadsheet would run as a formula
(OWASP: a leading ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a single quote in
front, ``csv_safe``); ``read_long`` takes the quote off again (``csv_unescape``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

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
SIDES = ("left", "right")
CHOICES = ("left", "right", "tie", "cannot_judge")
OUTCOMES = ("a", "b", "tie")

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


class LongFormatError(ValueError):
    """A long-format table is malformed at a given data line and field.

    ``row_number`` is 1-based and counts the header: in a CSV file the first data row is line 2.
    For JSON Lines it is the line of the file; for a JSON list or parquet it is the record
    number (first record = 1). Line 1 with a column name means a missing column.
    """

    def __init__(self, row_number: int, field: str, message: str) -> None:
        self.row_number = row_number
        self.field = field
        self.message = message
        super().__init__(f"line {row_number}, field {field!r}: {message}")


def outcome_from_choice(choice: str, a_side: str) -> str | None:
    """Unblind one answer: the outcome from system A's side.

    >>> outcome_from_choice("left", "left"), outcome_from_choice("left", "right")
    ('a', 'b')
    >>> outcome_from_choice("tie", "right"), outcome_from_choice("cannot_judge", "left")
    ('tie', None)
    """
    if a_side not in SIDES:
        raise ValueError(f"a_side must be one of {SIDES}, got {a_side!r}")
    if choice == "tie":
        return "tie"
    if choice == "cannot_judge":
        return None
    if choice in SIDES:
        return "a" if choice == a_side else "b"
    raise ValueError(f"choice must be one of {CHOICES}, got {choice!r}")


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
    Raises ``LongFormatError(row_number, field, message)`` at the first problem found.
    """
    n = len(df)
    lines = (
        np.asarray(line_numbers)
        if line_numbers is not None
        else np.arange(first_line, first_line + n, dtype=np.int64)
    )
    for col in REQUIRED_COLUMNS:
        if col not in df.columns:
            raise LongFormatError(1, col, f"required column missing; expected {REQUIRED_COLUMNS}")
    df = df.reset_index(drop=True)
    out = pd.DataFrame(index=pd.RangeIndex(n))
    cols: dict[str, _Column] = {}
    for col in _STR_COLUMNS:
        if col not in df.columns:
            out[col] = ""
            continue
        s = df[col]
        c = cols[col] = _Column(s)
        if col in REQUIRED_COLUMNS:
            _fail_first(c.missing, lines, col, "is empty", df)
        if c.missing.any() or not pd.api.types.is_string_dtype(s):
            # astype(str) would turn a missing value into "nan"; keep it as "".
            s = s.astype(object).where(~c.missing, "").astype(str)
        out[col] = s

    side = cols["a_side"].code_map({"left": 0, "right": 1})
    choice = cols["choice"].code_map({c: i for i, c in enumerate(CHOICES)})
    _fail_first(side < 0, lines, "a_side", lambda r: f"expected left|right, got {r.a_side!r}", df)
    _fail_first(
        choice < 0,
        lines,
        "choice",
        lambda r: f"expected one of {'|'.join(CHOICES)}, got {r.choice!r}",
        df,
    )

    ca, cb = cols["system_a"], cols["system_b"]
    pair = ca.codes.astype(np.int64) * (len(cb.values) + 1) + cb.codes
    uniq_pairs, first = np.unique(pair, return_index=True)
    same = [str(ca.values[ca.codes[i]]) == str(cb.values[cb.codes[i]]) for i in first]
    _fail_first(
        np.isin(pair, uniq_pairs[np.array(same, dtype=bool)]),
        lines,
        "system_b",
        "system_b equals system_a; a comparison needs two different systems",
        df,
    )

    # Unblind: choosing the side A was shown on is a win for A. Codes: 0 a, 1 b, 2 tie, -1 none.
    expected = np.where(choice == 2, 2, np.where(choice == 3, -1, np.where(choice == side, 0, 1)))
    if "outcome" in df.columns:
        given = _Column(df["outcome"]).code_map({o: i for i, o in enumerate(OUTCOMES)})
        _fail_first(
            given == -2,
            lines,
            "outcome",
            lambda r: f"expected a|b|tie or empty, got {r.outcome!r}",
            df,
        )
        _fail_first(
            given != expected,
            lines,
            "outcome",
            lambda r: (
                f"outcome {r.outcome!r} disagrees with choice {r.choice!r} and a_side "
                f"{r.a_side!r} (expected "
                f"{outcome_from_choice(r.choice, r.a_side) or 'empty'})"
            ),
            df,
        )
    out["outcome"] = pd.Series(np.array([*OUTCOMES, None], dtype=object)[expected], dtype=object)

    out["seconds"] = _numbers(df, "seconds", lines)
    _fail_first((out["seconds"] < 0).to_numpy(), lines, "seconds", "expected seconds >= 0", df)
    client = _numbers(df, "client_seconds", lines)
    _fail_first(
        (client.notna() & ~(np.isfinite(client) & (client > 0))).to_numpy(),
        lines,
        "client_seconds",
        lambda r: f"expected a number of seconds > 0 or empty, got {r['client_seconds']!r}",
        df,
    )
    out["client_seconds"] = client
    prior = _numbers(df, "prior_exposures", lines).fillna(0.0)
    _fail_first(
        ~prior.isin([0.0, 1.0, 2.0]).to_numpy(),
        lines,
        "prior_exposures",
        lambda r: f"expected 0, 1 or 2 (replies seen before), got {r['prior_exposures']!r}",
        df,
    )
    out["prior_exposures"] = prior.astype(np.int64)

    for col in ("is_gold", "simulated"):
        out[col] = _to_bool(df[col], lines, col) if col in df.columns else np.zeros(n, dtype=bool)

    if "gold_expected" in df.columns:
        g = _Column(df["gold_expected"])
        g_code = g.code_map({"left": 0, "right": 1})
        _fail_first(
            g_code == -2,
            lines,
            "gold_expected",
            lambda r: f"expected left|right or empty, got {r.gold_expected!r}",
            df,
        )
    else:
        g_code = np.full(n, -1)
    is_gold = out["is_gold"].to_numpy()
    _fail_first(
        is_gold & (g_code < 0),
        lines,
        "gold_expected",
        "gold item without gold_expected; expected left|right",
        df,
    )
    _fail_first(
        ~is_gold & (g_code >= 0),
        lines,
        "gold_expected",
        "gold_expected set on a row with is_gold false",
        df,
    )
    out["gold_expected"] = pd.Series(
        np.array(["left", "right", None], dtype=object)[g_code], dtype=object
    )

    # One item, one comparison, and one (system_a, system_b) per comparison: anything else is
    # a merge error upstream and would silently mix two pairs in one row of the results.
    for key, field in (
        ("item_id", "comparison"),
        ("comparison", "system_a"),
        ("comparison", "system_b"),
    ):
        key_codes, field_codes = cols[key].codes, cols[field].codes
        first_row = np.unique(key_codes, return_index=True)[1]
        first_of_key = np.empty(key_codes.max() + 1 if n else 0, dtype=np.int64)
        first_of_key[key_codes[first_row]] = field_codes[first_row]
        _fail_first(
            field_codes != first_of_key[key_codes],
            lines,
            field,
            lambda r, k=key, f=field: f"{k} {r[k]!r} appears with more than one {f}",
            df,
        )
    item_c, ann_c, crit_c = (
        cols[c].codes.astype(np.int64) for c in ("item_id", "annotator", "criterion")
    )
    n_ann, n_crit = len(cols["annotator"].values), len(cols["criterion"].values)
    dup = pd.Series((item_c * n_ann + ann_c) * n_crit + crit_c).duplicated(keep="first")
    _fail_first(
        dup.to_numpy(),
        lines,
        "item_id",
        lambda r: (
            f"duplicate judgment: item {r.item_id!r}, annotator {r.annotator!r}, "
            f"criterion {r.criterion!r} already appeared on an earlier line"
        ),
        df,
    )

    extras = [c for c in df.columns if c not in LONG_COLUMNS]
    result = out[LONG_COLUMNS]
    if extras:
        result = pd.concat([result, df[extras]], axis=1)
    return result


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
