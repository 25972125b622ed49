"""Mapped text columns → typed rows, and every problem as (row, column, value, reason).

Rules: an empty cell is a missing value; a value that cannot be read, or lies outside its scale,
rejects its whole row (stored in ``import_rejects`` with the reason). Dates are read day-first
or month-first as the data shows; when no value can tell, the caller must choose (``date_order``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from relq.core.instrument import Instrument
from relq.exceptions import ImportRejected
from relq.ingest.detect import Table
from relq.ingest.mapping import AGREEMENT_LABELS, AGREEMENT_LABELS_5, CES_LABELS, CSAT_LABELS, EXTRA_PREFIX

__all__ = [
    "AmbiguousDates",
    "Validated",
    "validate",
    "parse_dates",
    "parse_numbers",
    "parse_scale",
    "DATE_TARGETS",
]

DATE_TARGETS = {
    "survey": ("submitted_at", "started_at"),
    "customers": ("acquired_at", "churned_at"),
    "transactions": ("occurred_at",),
    "tickets": ("opened_at", "first_response_at", "resolved_at"),
}
NUMBER_TARGETS = {"duration", "annual_value", "amount", "first_response_minutes"}
SCALES = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
ID_TARGETS = {
    "survey": "response_id",
    "customers": "customer_id",
    "transactions": "transaction_id",
    "tickets": "ticket_id",
}
MAX_NUMBER = 1e15
DATE_ORDERS = {
    "dmy": "dmy",
    "day-first": "dmy",
    "dayfirst": "dmy",
    "mdy": "mdy",
    "month-first": "mdy",
    "monthfirst": "mdy",
    "ymd": "ymd",
    "year-first": "ymd",
}

_TIME = (
    r"(?:[T ,]+(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,]\d+)?)?\s*(?P<ampm>[AaPp]\.?[Mm]\.?)?)?"
    r"\s*(?:Z|UTC|GMT|(?:GMT|UTC)?\s*[+-]\d{1,2}(?::?\d{2})?)?\s*$"
)
_ISO = re.compile(r"^\s*(?P<y>\d{4})[-/.](?P<a>\d{1,2})[-/.](?P<b>\d{1,2})" + _TIME)
_XYZ = re.compile(r"^\s*(?P<a>\d{1,2})[-/.](?P<b>\d{1,2})[-/.](?P<y>\d{4}|\d{2})" + _TIME)
_DOT_NUMBER = re.compile(r"^[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?$")
_COMMA_NUMBER = re.compile(r"^[-+]?(?:\d{1,3}(?:\.\d{3})+|\d+)?(?:,\d+)?$")
_STRIP_NUMBER = re.compile(r"[\s\u00a0\u202f$€£¥']|(?:USD|EUR|GBP)$|^(?:USD|EUR|GBP)")
_LEADING = re.compile(r"^\s*([-+]?\d+(?:[.,]\d+)?)\s*(?:[-–—:=.)]+\s*\S.*|\s+[^\d\s].*)$")
_TRAILING = re.compile(r"^\s*[^\d\s].*?[-–—:=(]\s*([-+]?\d+(?:[.,]\d+)?)\)?\s*$")


class AmbiguousDates(ImportRejected):
    """Dates that read both day-first and month-first; the user must choose ``date_order``."""


@dataclass(frozen=True)
class Validated:
    rows: pd.DataFrame  # every data row, typed target columns, index = data row number
    answers: pd.DataFrame  # survey: item columns (float), same index; empty otherwise
    extras: pd.DataFrame  # customers: long (row, field, value) of extra:<name> columns
    rejects: pd.DataFrame  # row, column, value, reason
    rejected_rows: frozenset[int]
    date_order: str | None
    messages: tuple[str, ...] = field(default_factory=tuple)

    @property
    def valid(self) -> pd.DataFrame:
        if not self.rejected_rows:
            return self.rows  # read-only use by every caller; no million-row copy
        return self.rows[~self.rows.index.isin(list(self.rejected_rows))]


class _Problems:
    def __init__(self) -> None:
        self.parts: list[pd.DataFrame] = []

    def add(self, mask: pd.Series, column: str, values: pd.Series, reasons) -> None:
        if not mask.any():
            return
        idx = mask[mask].index
        reason = reasons[mask] if isinstance(reasons, pd.Series) else reasons
        self.parts.append(
            pd.DataFrame(
                {
                    "row": idx.astype(int),
                    "column": column,
                    "value": values[mask].astype(str).to_numpy(),
                    "reason": reason,
                }
            )
        )

    def frame(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame(
                {
                    "row": pd.Series(dtype=int),
                    "column": pd.Series(dtype=object),
                    "value": pd.Series(dtype=object),
                    "reason": pd.Series(dtype=object),
                }
            )
        return (
            pd.concat(self.parts, ignore_index=True).sort_values("row", kind="stable").reset_index(drop=True)
        )


def _factorized(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """(codes, unique texts): each cell's text ('' for empty) as a code into its unique texts.

    An export repeats a handful of answer texts over a million rows; parsing the unique texts
    once and spreading the results by code replaces a million-cell string pass per column."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    texts = pd.Series(uniques, dtype=object).astype(str)
    if (codes < 0).any():  # missing cells read as empty text
        codes = np.where(codes < 0, len(texts), codes)
        texts = pd.concat([texts, pd.Series([""], dtype=object)], ignore_index=True)
    return codes, texts


def _spread(per_text: pd.Series, codes: np.ndarray, index: pd.Index) -> pd.Series:
    """Per-unique-text results back to one per cell."""
    return pd.Series(per_text.to_numpy()[codes], index=index)


def _stripped(values: pd.Series) -> pd.Series:
    """The cells' texts without surrounding space ('' for empty), as Python's ``str.strip`` gives
    them. One pass over the cells: ids and emails are (nearly) all distinct, so finding the
    distinct texts first would only add a hash of each."""
    cells = values.to_numpy(dtype=object, na_value="")
    stripped = np.array([c.strip() if isinstance(c, str) else str(c).strip() for c in cells], dtype=object)
    return pd.Series(stripped, index=values.index)


def _year(y: pd.Series) -> pd.Series:
    y = pd.to_numeric(y, errors="coerce")
    return y.where(y >= 100, np.where(y < 69, 2000 + y, 1900 + y))


def _assemble(parts: pd.DataFrame, month: pd.Series, day: pd.Series) -> pd.Series:
    hour = pd.to_numeric(parts["H"], errors="coerce").fillna(0)
    ampm = parts["ampm"].fillna("").str.lower().str[:1]
    bad_hour = (ampm != "") & ((hour < 1) | (hour > 12))
    hour = hour.where(~((ampm == "p") & (hour < 12)), hour + 12)
    hour = hour.where(~((ampm == "a") & (hour == 12)), 0)
    frame = pd.DataFrame(
        {
            "year": _year(parts["y"]),
            "month": pd.to_numeric(month, errors="coerce"),
            "day": pd.to_numeric(day, errors="coerce"),
            "hour": hour,
            "minute": pd.to_numeric(parts["M"], errors="coerce").fillna(0),
            "second": pd.to_numeric(parts["S"], errors="coerce").fillna(0),
        }
    )
    ok = frame.notna().all(axis=1) & frame["month"].between(1, 12) & frame["day"].between(1, 31)
    ok &= frame["hour"].between(0, 23) & frame["minute"].between(0, 59) & frame["second"].between(0, 59)
    ok &= ~bad_hour
    out = pd.Series(pd.NaT, index=parts.index, dtype="datetime64[ns]")
    if ok.any():
        out[ok] = pd.to_datetime(frame[ok].astype(int), errors="coerce")
    return out


def decide_date_order(columns: dict[str, pd.Series]) -> tuple[str | None, str | None]:
    """('dmy'|'mdy'|None, example) from day/month positions in non-ISO dates of all columns.

    None with an example means the values could be read either way.
    """
    day_first = month_first = 0
    example = None
    for values in columns.values():
        parts = values[values != ""].str.extract(_XYZ)
        parts = parts.dropna(subset=["a"])
        if parts.empty:
            continue
        a, b = pd.to_numeric(parts["a"]), pd.to_numeric(parts["b"])
        day_first += int(((a > 12) & (b <= 12)).sum())
        month_first += int(((b > 12) & (a <= 12)).sum())
        differ = a != b
        if example is None and differ.any():
            example = values[parts.index[differ.to_numpy()][0]]
    if day_first or month_first:
        return ("dmy" if day_first >= month_first else "mdy"), None
    return None, example


def _iso_dates(values: pd.Series) -> pd.Series | None:
    """Every filled cell in one ISO form, read by pandas' C parser; None when they are not.

    Exports usually write one ISO form throughout: a million are read in well under a second,
    where the regex path of parse_dates takes ~8 s; and no day/month order needs deciding."""
    for text in (values, None):  # as written, then stripped of surrounding space
        text = _stripped(values) if text is None else text.fillna("")
        filled = text != ""
        if not filled.any():
            return None
        for form in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
            quick = pd.to_datetime(text.where(filled), format=form, errors="coerce")
            if quick[filled].notna().all():
                return quick.astype("datetime64[ns]")
    return None


def parse_dates(values: pd.Series, order: str | None) -> tuple[pd.Series, pd.Series]:
    """(datetimes, bad mask): ISO dates, d/m/y or m/d/y as ``order`` says, then any form pandas reads."""
    quick = _iso_dates(values)
    if quick is not None:
        return quick, pd.Series(False, index=values.index)
    values = _stripped(values)
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    iso = values.str.extract(_ISO)
    has_iso = iso["y"].notna()
    if has_iso.any():
        out[has_iso] = _assemble(iso[has_iso], iso.loc[has_iso, "a"], iso.loc[has_iso, "b"])
    xyz = values.str.extract(_XYZ)
    has_xyz = xyz["y"].notna() & ~has_iso
    if has_xyz.any():
        x = xyz[has_xyz]
        if order == "ymd":  # e.g. 24/03/05: two-digit year first
            out[has_xyz] = _assemble(x.assign(y=x["a"]), x["b"], x["y"])
        else:
            month, day = (x["b"], x["a"]) if order == "dmy" else (x["a"], x["b"])
            out[has_xyz] = _assemble(x, month, day)
    rest = (values != "") & ~has_iso & ~has_xyz
    if rest.any():
        uniq = pd.unique(values[rest])
        parsed = {}
        for v in uniq:
            if not re.search(r"[A-Za-z]{3}", v) or not re.search(r"\d", v):
                parsed[v] = pd.NaT
                continue
            try:
                ts = pd.to_datetime(v, dayfirst=(order == "dmy"))
                parsed[v] = ts.tz_convert(None) if ts.tzinfo is not None else ts
            except (ValueError, TypeError, OverflowError):
                parsed[v] = pd.NaT
        out[rest] = pd.to_datetime(values[rest].map(parsed), errors="coerce")
    bad = (values != "") & out.isna()
    return out, bad


def parse_numbers(values: pd.Series, comma_decimal_hint: bool = False) -> tuple[pd.Series, pd.Series, str]:
    """(floats, bad mask, reason) reading 1,234.5 / 1.234,5 / 12,5 / $1,200 / 1e3 forms."""
    codes, texts = _factorized(values)
    weight = np.bincount(codes, minlength=len(texts))  # how many cells hold each unique text
    number, bad, reasons = _parse_number_texts(texts, weight, comma_decimal_hint)
    return (
        _spread(number, codes, values.index).astype(float),
        _spread(bad, codes, values.index).astype(bool),
        _spread(reasons, codes, values.index).astype(object),
    )


def _parse_number_texts(
    text: pd.Series, weight: np.ndarray, comma_decimal_hint: bool
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """parse_numbers on unique texts; ``weight`` counts the cells holding each text."""
    text = text.str.strip()
    text = text.str.replace(_STRIP_NUMBER, "", regex=True)
    filled = text != ""
    dot = text.str.fullmatch(_DOT_NUMBER) & filled
    comma = text.str.fullmatch(_COMMA_NUMBER) & filled
    comma_only = int(weight[(comma & ~dot).to_numpy()].sum())
    dot_only = int(weight[(dot & ~comma).to_numpy()].sum())
    use_comma = comma_only > dot_only or (comma_only == dot_only == 0 and comma_decimal_hint)
    if use_comma:
        converted = text.where(
            ~comma, text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        )
        ok = comma
    else:
        converted = text.where(~dot, text.str.replace(",", "", regex=False))
        ok = dot
    number = pd.to_numeric(converted.where(ok), errors="coerce")
    overflow = ok & number.isna()  # well-formed yet unreadable: 1e400 and the like
    if overflow.any():
        number[overflow] = converted[overflow].map(_float_or_nan)
    bad_form = filled & number.isna()
    too_big = filled & number.notna() & ~(number.abs() <= MAX_NUMBER)
    reasons = pd.Series("not a number", index=text.index, dtype=object)
    reasons[too_big] = f"number too large (more than {MAX_NUMBER:.0e} in size)"
    number = number.where(~too_big)
    return number.astype(float), bad_form | too_big, reasons


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except (ValueError, OverflowError):
        return math.nan


def _scale_value(
    text: str, labels: dict[str, float | None], defaults: dict[str, float]
) -> tuple[bool, float]:
    """(known, value) for one answer text; value NaN means 'no answer'."""
    key = text.strip().lower()
    if key == "":
        return True, math.nan
    if key in labels:
        v = labels[key]
        return True, math.nan if v is None else float(v)
    if key in defaults:
        return True, float(defaults[key])
    for pattern in (re.compile(r"^\s*([-+]?\d+(?:[.,]\d+)?)\s*$"), _LEADING, _TRAILING):
        m = pattern.match(text)
        if m:
            try:
                return True, float(m.group(1).replace(",", "."))
            except ValueError:
                break
    return False, math.nan


def parse_scale(
    values: pd.Series,
    lo: float,
    hi: float,
    labels: dict[str, float | None],
    defaults: dict[str, float],
    integer: bool = False,
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(numbers, bad mask, reasons) for answers on a lo–hi scale given as numbers or words."""
    codes, texts = _factorized(values)
    read = [_scale_value(u, labels, defaults) for u in texts]
    ok = pd.Series(np.array([k for k, _ in read], dtype=bool)[codes], index=values.index)
    out = pd.Series(np.array([v for _, v in read], dtype=float)[codes], index=values.index)
    span = f"{lo:g}–{hi:g}"
    reasons = pd.Series("", index=values.index, dtype=object)
    not_read = ~ok
    reasons[not_read] = (
        f"not an answer on the {span} scale; if it means no answer, map it to missing (null) in the labels"
    )
    outside = ok & out.notna() & ((out < lo) | (out > hi))
    reasons[outside] = f"outside the {span} scale"
    fraction = ok & out.notna() & ~outside & integer & (out != np.floor(out))
    if integer:
        reasons[fraction] = f"not a whole number on the {span} scale"
    bad = not_read | outside | fraction
    return out.where(~bad), bad, reasons


def _norm_for_hash(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT:
        return ""
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, float):
        return repr(round(v, 9))
    return str(v).strip().lower()


def content_hash(frame: pd.DataFrame) -> pd.Series:
    """sha1 of each row's normalised values (columns sorted by name): the id of an id-less row."""
    cols = sorted(frame.columns)
    records = frame[cols].astype(object).to_numpy()
    return pd.Series(
        [hashlib.sha1(json.dumps([_norm_for_hash(v) for v in r]).encode()).hexdigest() for r in records],
        index=frame.index,
        dtype=object,
    )


def validate(
    table: Table,
    kind: str,
    applied: dict[str, str],
    instrument: Instrument | None,
    labels: dict[str, float | None],
    date_order: str | None,
    file_name: str,
    comma_decimal_hint: bool = False,
) -> Validated:
    """Type every mapped column; collect each unreadable or out-of-range value as a reject."""
    frame = table.frame
    by_target = {t: s for s, t in applied.items() if not t.startswith(EXTRA_PREFIX)}
    _require(kind, by_target, instrument, table, file_name)
    problems = _Problems()
    labels_lc = {str(k).strip().lower(): v for k, v in (labels or {}).items()}
    rows = pd.DataFrame(index=frame.index)
    messages: list[str] = []

    if table.wide_rows:
        wide = pd.Series(False, index=frame.index)
        counts = pd.Series("", index=frame.index, dtype=object)
        for r, n in table.wide_rows.items():
            if r in wide.index:
                wide[r] = True
                counts[r] = f"{n} fields"
        problems.add(
            wide, "(row)", counts, f"the row has more fields than the {len(table.columns)} column names"
        )

    # dates, with one day/month order for the whole file
    date_cols = {t: frame[by_target[t]] for t in DATE_TARGETS[kind] if t in by_target}
    order = DATE_ORDERS.get(str(date_order).lower()) if date_order else None
    if date_order and order is None:
        raise ImportRejected(
            f"{file_name}: date_order {date_order!r} is not 'dmy' (day-first), 'mdy' (month-first) or 'ymd'."
        )
    iso = {t: _iso_dates(v) for t, v in date_cols.items()}
    if order is None and date_cols and any(v is None for v in iso.values()):
        order, example = decide_date_order(date_cols)
        if order is None and example is not None:
            raise AmbiguousDates(
                f"{file_name}: dates such as {example.strip()!r} can be read day-first or month-first and no "
                "value in the file tells which; choose date_order 'dmy' (day-first) or 'mdy' (month-first)."
            )
    for target, values in date_cols.items():
        if iso[target] is not None:
            rows[target] = iso[target]
            continue
        parsed, bad = parse_dates(values, order)
        problems.add(
            bad,
            by_target[target],
            values,
            "not a date"
            + (
                " (read as day-first)"
                if order == "dmy"
                else " (read as month-first)"
                if order == "mdy"
                else ""
            ),
        )
        rows[target] = parsed

    for target in NUMBER_TARGETS & set(by_target):
        number, bad, reasons = parse_numbers(frame[by_target[target]], comma_decimal_hint)
        problems.add(bad, by_target[target], frame[by_target[target]], reasons)
        if target in ("duration", "first_response_minutes"):
            negative = number < 0
            problems.add(
                negative, by_target[target], frame[by_target[target]], "a duration cannot be negative"
            )
        rows[target] = number

    answers = pd.DataFrame(index=frame.index)
    if kind == "survey":
        for target, (lo, hi) in SCALES.items():
            if target in by_target:
                defaults = {"nps": {}, "csat": CSAT_LABELS, "ces": CES_LABELS}[target]
                number, bad, reasons = parse_scale(
                    frame[by_target[target]], lo, hi, labels_lc, defaults, True
                )
                problems.add(bad, by_target[target], frame[by_target[target]], reasons)
                rows[target] = number.astype("Int64")
        if instrument is not None:
            lo, hi = instrument.scale_min, instrument.scale_max
            defaults = (
                AGREEMENT_LABELS if (lo, hi) == (1, 7) else AGREEMENT_LABELS_5 if (lo, hi) == (1, 5) else {}
            )
            for item_id in instrument.item_ids:
                if item_id in by_target:
                    src = by_target[item_id]
                    number, bad, reasons = parse_scale(frame[src], lo, hi, labels_lc, defaults)
                    problems.add(bad, src, frame[src], reasons)
                    answers[item_id] = number
        if "duration" not in rows and "submitted_at" in rows and "started_at" in rows:
            seconds = (rows["submitted_at"] - rows["started_at"]).dt.total_seconds()
            rows["duration"] = seconds.where(seconds >= 0)

    text_targets = [t for t in by_target if t not in rows.columns and t not in answers.columns]
    for target in text_targets:
        values = _stripped(frame[by_target[target]])
        rows[target] = values.where(values != "", None)
    if kind == "customers" and "name" not in rows and ("first_name" in rows or "last_name" in rows):
        first = rows.get("first_name", pd.Series(None, index=frame.index)).fillna("")
        last = rows.get("last_name", pd.Series(None, index=frame.index)).fillna("")
        name = (first + " " + last).str.strip()
        rows["name"] = name.where(name != "", None)
    if kind == "tickets" and "first_response_at" not in rows and "first_response_minutes" in rows:
        rows["first_response_at"] = rows["opened_at"] + pd.to_timedelta(
            rows["first_response_minutes"], unit="m"
        )

    # required per-row values
    for target in _row_required(kind):
        if target in rows and rows[target].isna().any():
            missing = rows[target].isna() & ~_stripped(frame[by_target[target]]).ne("")
            problems.add(missing, by_target[target], frame[by_target[target]], f"{target} is empty")
    if kind in ("transactions", "tickets"):
        has_cust = pd.Series(False, index=frame.index)
        for t in ("customer_id", "email"):
            if t in rows:
                has_cust |= rows[t].notna()
        src = by_target.get("customer_id") or by_target.get("email")
        problems.add(~has_cust, src, frame[src], "no customer id or email")

    if kind == "survey" and not answers.empty:
        none_answered = answers.isna().all(axis=1)
        for t in SCALES:
            if t in rows:
                none_answered &= rows[t].isna()
        src = next(iter(by_target[t] for t in list(answers.columns) + list(SCALES) if t in by_target))
        problems.add(none_answered, src, frame[src], "no question is answered")

    rejects = problems.frame()
    rejected = frozenset(int(r) for r in rejects["row"].unique())

    id_target = ID_TARGETS[kind]
    if id_target not in rows or rows[id_target].isna().any():
        basis = pd.concat([rows.drop(columns=[id_target], errors="ignore"), answers], axis=1)
        basis = basis.drop(columns=[c for c in ("first_response_minutes",) if c in basis.columns])
        hashed = content_hash(basis) if len(basis.columns) else pd.Series("", index=frame.index)
        if id_target in rows:
            rows[id_target] = rows[id_target].where(rows[id_target].notna(), hashed)
        else:
            rows[id_target] = hashed
            messages.append(f"No {id_target} column: each row's id is a hash of its content.")

    extras = pd.DataFrame(columns=["row", "field", "value"])
    if kind == "customers":
        parts = []
        for source, target in applied.items():
            if target.startswith(EXTRA_PREFIX):
                values = frame[source].fillna("").astype(str).str.strip()
                keep = values != ""
                parts.append(
                    pd.DataFrame(
                        {
                            "row": values.index[keep],
                            "field": target[len(EXTRA_PREFIX) :].strip() or source,
                            "value": values[keep].to_numpy(),
                        }
                    )
                )
        if parts:
            extras = pd.concat(parts, ignore_index=True)
    return Validated(rows, answers, extras, rejects, rejected, order, tuple(messages))


def _row_required(kind: str) -> tuple[str, ...]:
    return {
        "survey": ("submitted_at",),
        "customers": ("customer_id",),
        "transactions": ("occurred_at", "amount"),
        "tickets": ("opened_at",),
    }[kind]


_DESCRIBE = {
    "submitted_at": "when the response was submitted",
    "customer_id": "the customer's id",
    "occurred_at": "the date of the purchase",
    "amount": "the amount",
    "opened_at": "when the ticket was opened",
}


def _require(
    kind: str, by_target: dict[str, str], instrument: Instrument | None, table: Table, file_name: str
):
    missing = [t for t in _row_required(kind) if t not in by_target]
    if kind in ("transactions", "tickets") and "customer_id" not in by_target and "email" not in by_target:
        missing.append("customer_id")
    names = ", ".join(repr(c.name) for c in table.columns[:12]) + (", …" if len(table.columns) > 12 else "")
    if missing:
        t = missing[0]
        raise ImportRejected(
            f"{file_name}: no column holds {t} ({_DESCRIBE.get(t, t)}) for a {kind} import; the columns are "
            f'{names}. Name a column {t!r} or map one to it in the mapping (columns: {{"<column>": "{t}"}}).'
        )
    if kind == "survey":
        measures = set(SCALES) | set(instrument.item_ids if instrument else ())
        if not measures & set(by_target):
            raise ImportRejected(
                f"{file_name}: no column holds an answer (an instrument item, nps, csat or ces); the columns are "
                f"{names}. Map the question columns to item ids in the mapping."
            )
