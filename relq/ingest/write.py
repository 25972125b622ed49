"""Validated rows → the database, in one transaction with the ``imports`` record and the rejects."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
from sqlalchemy import select

from relq.core.instrument import Instrument, pillar_indices
from relq.ingest.quality import QUALITY_FLAGS as FLAGS
from relq.ingest.quality import flag_responses
from relq.store import bulk_insert, read_frame, refresh_derived, schema

__all__ = ["write_rows", "existing_ids", "customer_lookup", "insert_frame"]

_ID_COLUMN = {
    "survey": schema.survey_responses.c.response_id,
    "customers": schema.customers.c.customer_id,
    "transactions": schema.transactions.c.transaction_id,
    "tickets": schema.tickets.c.ticket_id,
}
_TABLE = {
    "survey": schema.survey_responses,
    "customers": schema.customers,
    "transactions": schema.transactions,
    "tickets": schema.tickets,
}


def insert_frame(conn, table, df: pd.DataFrame) -> None:
    """Bulk insert through relq.store's native path, inside the import's transaction."""
    bulk_insert(conn, table, df)


def existing_ids(conn, column, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` are already stored in ``column`` (a semi-join in the database)."""
    from relq.store import stored_keys

    return stored_keys(conn, column, ids)


def customer_lookup(conn) -> tuple[set[str], dict[str, str], dict[str, str]]:
    """(customer ids, external_ref → id, lower(email) → id) of stored customers; where two
    customers share a reference or an email, the first one read keeps it."""
    c = schema.customers.c
    frame = read_frame(conn, select(c.customer_id, c.external_ref, c.email))
    ids = frame["customer_id"].to_numpy(dtype=object)

    def first_of(column: str, normal) -> dict[str, str]:
        values = frame[column].to_numpy(dtype=object)
        given = np.array([isinstance(v, str) and v != "" for v in values], dtype=bool)
        keys = [normal(v) for v in values[given]]
        # reversed, so the first customer holding a key is the last written and keeps it
        return dict(zip(reversed(keys), reversed(ids[given].tolist()), strict=True))

    return (
        set(ids.tolist()),
        first_of("external_ref", lambda v: v.strip()),
        first_of("email", lambda v: v.strip().lower()),
    )


def match_customers(rows: pd.DataFrame, lookup) -> pd.Series:
    """Customer id per row: by customer id, else external reference, else email (case-insensitive)."""
    ids, refs, emails = lookup
    out = pd.Series(None, index=rows.index, dtype=object)
    if "customer_id" in rows:  # a stored id as it is, else an external reference naming one
        out = _map_unique(rows["customer_id"], lambda v: v if v in ids else refs.get(str(v).strip()))
    if "email" in rows:
        by_email = _map_unique(rows["email"], lambda v: emails.get(str(v).strip().lower()))
        out = out.where(out.notna(), by_email)
    return out.where(out.notna(), None)


def _map_unique(values: pd.Series, fn) -> pd.Series:
    """``fn`` of each distinct non-missing value, computed once per value (None where missing)."""
    codes, uniques = pd.factorize(values)
    looked_up = np.array([*(fn(u) for u in uniques), None], dtype=object)
    return pd.Series(looked_up[codes], index=values.index)  # code -1 (missing) takes the None


def quality_flags(
    responses: pd.DataFrame, answers: pd.DataFrame, instrument: Instrument
) -> tuple[pd.DataFrame, str | None]:
    """Data-quality flags from relq.ingest.quality (all false, with a message, if they cannot be computed)."""
    blank = pd.DataFrame(False, index=responses.index, columns=list(FLAGS))
    if responses.empty:
        return blank, None
    try:
        with warnings.catch_warnings():  # empty slices (no durations) are expected, not news
            warnings.simplefilter("ignore", RuntimeWarning)
            flags = flag_responses(responses, answers, instrument)
    except Exception as exc:  # noqa: BLE001 - flags are advisory; the import must not fail on them
        return blank, f"Data-quality flags were not computed ({type(exc).__name__}: {exc})."
    out = blank.copy()
    for f in FLAGS:
        if f in flags:
            out[f] = pd.Series(flags[f].to_numpy(), index=responses.index).fillna(False).astype(bool)
    return out, None


def write_rows(
    conn,
    *,
    kind: str,
    import_id: int,
    rows: pd.DataFrame,
    answers: pd.DataFrame,
    extras: pd.DataFrame,
    instrument: Instrument | None,
) -> list[str]:
    """Insert the new rows of one import (ids already checked); returns messages."""
    messages: list[str] = []
    table = _TABLE[kind]
    columns = [c.name for c in table.columns]
    if kind == "survey":
        indices = (
            pillar_indices(answers, instrument)
            if instrument is not None and len(answers.columns)
            else (pd.DataFrame({p: np.nan for p in (*schema.PILLARS, "rq")}, index=rows.index))
        )
        # a frame of the rows' own columns (shared, not copied), in no particular order: the insert names them
        missing = pd.Series(np.nan, index=rows.index)
        out = pd.DataFrame({f: rows[f] if f in rows else missing for f in schema.RESPONSE_FIELDS}, copy=False)
        for p in (*schema.PILLARS, "rq"):
            out[p] = indices[p].astype(float)
        flags, note = quality_flags(out, answers, instrument)
        if note:
            messages.append(note)
        for f in FLAGS:
            out[f] = flags[f].astype(bool)
        out["import_id"] = import_id
        for c in ("nps", "csat", "ces"):
            out[c] = out[c].astype("Int64")
        out["duration"] = out["duration"].astype(float)
        insert_frame(conn, table, out)
        del out, flags, indices  # written: their memory goes before the answers are
        for part in long_answers(rows["response_id"], answers, import_id):
            insert_frame(conn, schema.survey_answers, part)
        return messages
    out = rows.reindex(columns=[c for c in columns if c != "import_id"]).copy()
    out["import_id"] = import_id
    if kind == "customers":
        for c in ("acquired_at", "churned_at"):
            out[c] = pd.to_datetime(out[c]).dt.date.astype(object).where(out[c].notna(), None)
        out["annual_value"] = out["annual_value"].astype(float)
        out = out.drop(columns=["cohort", "value_tier", "lifecycle_stage"])
    if kind == "transactions":
        out["amount"] = out["amount"].astype(float)
    insert_frame(conn, table, out.reset_index(drop=True))
    if kind == "customers" and not extras.empty:
        fields = extras.assign(customer_id=extras["row"].map(rows["customer_id"]))
        fields = fields.dropna(subset=["customer_id"]).drop_duplicates(["customer_id", "field"], keep="last")
        fields = fields[["customer_id", "field", "value"]].assign(import_id=import_id)
        insert_frame(conn, schema.customer_fields, fields.reset_index(drop=True))
    if kind in ("customers", "transactions"):
        refresh_derived(conn)
    return messages


def long_answers(
    response_ids: pd.Series, answers: pd.DataFrame, import_id: int, cells_per_part: int = 2_000_000
) -> Iterator[pd.DataFrame]:
    """survey_answers rows (response_id, item_id, value, import_id) of the answered cells of
    ``answers`` (one column per item, rows aligned with ``response_ids``), item by item, in parts of
    whole items of about ``cells_per_part`` cells: a 1M-response import's 11M answers are never
    one frame (≈250 MB).

    Built from arrays: item ids as a categorical (the items' texts, not one per answer), no melt copies."""
    ids = response_ids.to_numpy(dtype=object)
    categories = [str(c) for c in answers.columns]
    per_part = max(1, cells_per_part // max(1, len(answers)))
    for first in range(0, len(categories), per_part):
        values = answers.iloc[:, first : first + per_part].to_numpy(dtype=float).T  # item-major
        answered = ~np.isnan(values)
        items, rows = np.nonzero(answered)
        if not len(rows):
            continue
        yield pd.DataFrame(
            {
                "response_id": ids[rows],
                "item_id": pd.Categorical.from_codes(items + first, categories=categories),
                "value": values[answered],
                "import_id": np.full(len(rows), import_id, dtype=np.int64),
            },
            copy=False,
        )


def imports_row(**values) -> dict:
    values.setdefault("imported_at", dt.datetime.now(dt.UTC).replace(tzinfo=None))
    return values


def reject_records(rejects: pd.DataFrame, frame: pd.DataFrame, import_id: int) -> pd.DataFrame:
    """import_rejects rows: each problem with the whole source row as JSON."""
    if rejects.empty:
        return pd.DataFrame(columns=["import_id", "row_number", "column_name", "value", "reason", "raw"])
    rows = rejects["row"].unique()
    source = frame.loc[rows[np.isin(rows, frame.index)]].astype(object)  # the rejected rows, taken at once
    names = [str(c) for c in source.columns]
    raw = dict.fromkeys(rows)  # a row the frame does not hold (a header problem): no source row
    for row, cells in zip(source.index, source.itertuples(index=False, name=None), strict=True):
        raw[row] = json.dumps(dict(zip(names, cells, strict=True)), ensure_ascii=False)
    return pd.DataFrame(
        {
            "import_id": import_id,
            "row_number": rejects["row"].astype(int),
            "column_name": rejects["column"].astype(object),
            "value": rejects["value"].astype(object),
            "reason": rejects["reason"].astype(object),
            "raw": rejects["row"].map(raw),
        }
    )
