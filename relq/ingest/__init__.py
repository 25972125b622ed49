"""Import survey and CRM exports: detect → map → validate → write.

``import_file`` is what ``python -m relq import`` and the Upload page call. A file that cannot
be used raises :class:`relq.exceptions.ImportRejected` with one clear sentence and leaves the
database unchanged; otherwise the valid rows, the ``imports`` record and every rejected row (with
its reason) land in one transaction.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from relq.core.exports import to_safe_csv
from relq.core.instrument import Instrument, load_instrument
from relq.exceptions import ImportRejected, RelqError
from relq.ingest.detect import LAYOUT_LABEL, Table, build_table
from relq.ingest.mapping import (
    KINDS,
    Mapping,
    Suggestion,
    find_template,
    list_templates,
    load_mapping,
    mapping_from_dict,
    resolve_mapping,
    save_template,
    targets_for,
)
from relq.ingest.read import list_sheets, read_rows, read_source
from relq.ingest.validate import ID_TARGETS, AmbiguousDates, Validated, validate
from relq.ingest.write import (
    _ID_COLUMN,
    customer_lookup,
    existing_ids,
    imports_row,
    insert_frame,
    match_customers,
    reject_records,
    write_rows,
)
from relq.store import audit_row, import_transaction, new_import, note_data_change, schema

__all__ = [
    "ImportResult",
    "PreparedImport",
    "AmbiguousDates",
    "Mapping",
    "Suggestion",
    "KINDS",
    "import_file",
    "prepare_import",
    "write_import",
    "store_import",
    "finish_import",
    "release_unused_memory",
    "column_summary",
    "preview_rows",
    "safe_csv",
    "rejects_csv",
    "mapping_table",
    "mapping_from_table",
    "label_table",
    "label_choices",
    "labels_from_table",
    "import_history",
    "list_sheets",
    "load_mapping",
    "mapping_from_dict",
    "save_template",
    "find_template",
    "list_templates",
    "targets_for",
]


@dataclass(frozen=True)
class ImportResult:
    import_id: int
    kind: str
    detected_format: str
    rows_total: int
    rows_imported: int
    rows_rejected: int
    rows_duplicate: int
    rows_unmatched: int
    rejects: pd.DataFrame  # row, column, value, reason
    messages: tuple[str, ...] = ()
    follow_up: tuple[str, ...] = ()  # what the ``after`` step did (cases opened, alerts fired)


# What may run once an import is committed: (engine, import_id, user) → sentences.
AfterImport = Callable[[Any, int, "str | None"], Sequence[str]]

# Kinds whose writing can reject a checked row (its customer is not stored, by id or email).
REJECTED_WHEN_WRITTEN = ("transactions", "tickets")


@dataclass(frozen=True)
class PreparedImport:
    """A file read, mapped and validated — everything the page previews before writing.

    The file's cells are not kept once checked (a 1M-row export's are ≈350 MB, held for as long as
    the Upload page shows the check): ``table`` keeps the columns and layout with an empty frame,
    ``summary`` the per-column counts taken from the cells, and ``source_rows`` the cells of the
    rows a reject can cite — the rows validation rejected, or every row of purchases and tickets,
    whose writing rejects a row whose customer is not stored.
    """

    file_name: str
    file_hash: str
    kind: str
    detected_format: str
    layout: str
    encoding: str | None
    delimiter: str | None
    sheet: str | None
    sheets: tuple[str, ...]
    table: Table
    applied: dict[str, str]
    suggestions: tuple[Suggestion, ...]
    mapping: Mapping
    template: str | None
    validated: Validated
    instrument: Instrument | None
    rows_total: int
    summary: pd.DataFrame | None  # column_summary's table (None when not asked for)
    source_rows: pd.DataFrame  # text cells of the rows a reject can cite, indexed by data row
    messages: tuple[str, ...] = field(default_factory=tuple)

    @property
    def rejects(self) -> pd.DataFrame:
        return self.validated.rejects


def _coerce_mapping(mapping) -> Mapping | None:
    if mapping is None or isinstance(mapping, Mapping):
        return mapping
    if isinstance(mapping, (str, Path)):
        return load_mapping(mapping)
    return mapping_from_dict(mapping)


def _describe(raw, table: Table) -> str:
    parts = [LAYOUT_LABEL.get(table.layout, table.layout)]
    if raw.sheet is not None:
        parts.append(f"XLSX sheet {raw.sheet!r}")
    else:
        parts.append(raw.encoding or "")
        parts.append(
            {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}.get(raw.delimiter, "?") + "-separated"
        )
    if table.footer_dropped:
        parts.append(f"{table.footer_dropped} footer lines dropped")
    return ", ".join(p for p in parts if p)


def _choose_kind(table: Table, instrument, mapping: Mapping | None, file_name: str) -> str:
    if table.kind:
        return table.kind
    scores = []
    for kind in KINDS:
        applied, _, _ = resolve_mapping(table, kind, mapping, instrument)
        real = [t for t in applied.values() if not t.startswith("extra:")]
        if len(real) < 2:
            # one recognised column (say customer_id) says nothing about what the rest are:
            # guessing would file an invoice list as customer fields, so ask instead
            continue
        try:
            validate_requirements(table, kind, applied, instrument, file_name)
        except ImportRejected:
            continue
        scores.append((len(real), -KINDS.index(kind), kind))
    if not scores:
        names = ", ".join(repr(c.name) for c in table.columns[:12])
        raise ImportRejected(
            f"{file_name}: cannot tell whether this is a survey, customers, transactions or tickets file "
            f"(columns {names}); choose the kind and map the columns."
        )
    return max(scores)[2]


def validate_requirements(table, kind, applied, instrument, file_name) -> None:
    from relq.ingest.validate import _require

    by_target = {t: s for s, t in applied.items() if not t.startswith("extra:")}
    _require(kind, by_target, instrument, table, file_name)


def prepare_import(
    path_or_bytes,
    *,
    file_name: str,
    kind: str = "auto",
    mapping: Mapping | dict | str | Path | None = None,
    instrument: Instrument | None = None,
    sheet=None,
    date_order: str | None = None,
    templates_dir: Path | None = None,
    summarise: bool = True,
) -> PreparedImport:
    """Read, detect, map and validate a file without touching the database. Without ``summarise``
    the per-column summary the Upload page shows is not taken (an import from the command line
    writes at once: 1–2 s saved on a 1M-row export)."""
    data = read_source(path_or_bytes)
    file_hash = hashlib.sha1(data).hexdigest()
    raw = read_rows(data, file_name, sheet)
    del data  # a 1M-row export is ~180 MB of bytes, no longer needed once read
    table = build_table(raw.records, file_name)
    raw = dataclasses.replace(raw, rows=[], columns=None)  # the frame holds the cells; drop the records
    mapping = _coerce_mapping(mapping)
    if instrument is None:
        instrument = load_instrument()
    if kind not in ("auto", *KINDS):
        raise ImportRejected(f"{file_name}: kind {kind!r} is not one of auto, {', '.join(KINDS)}.")
    messages = list(raw.messages)
    template = None
    if mapping is None:
        found = find_template(table, None if kind == "auto" else kind, templates_dir)
        if found:
            template, mapping = found
            messages.append(f"Applied the saved template {template!r}.")
    if kind == "auto" and mapping is not None and mapping.kind in KINDS:
        kind = mapping.kind
    if kind == "auto":
        kind = _choose_kind(table, instrument, mapping, file_name)
    applied, suggestions, notes = resolve_mapping(table, kind, mapping, instrument)
    messages += notes
    counts = None
    if summarise:  # before validation holds its rows: a lower peak
        counts = _column_counts(table, applied)
        release_unused_memory()
    labels = dict(mapping.labels) if mapping else {}
    validated = validate(
        table,
        kind,
        applied,
        instrument if kind == "survey" else None,
        labels,
        date_order,
        file_name,
        comma_decimal_hint=raw.delimiter == ";",
    )
    messages += validated.messages
    if table.footer_dropped:
        messages.append(f"Dropped {table.footer_dropped} footer lines (report totals and notices).")
    applied_mapping = Mapping(kind, dict(applied), labels)
    frame = table.frame
    cited = frame if kind in REJECTED_WHEN_WRITTEN else frame.loc[frame.index.isin(validated.rejects["row"])]
    prepared = PreparedImport(
        file_name=file_name,
        file_hash=file_hash,
        kind=kind,
        detected_format=_describe(raw, table),
        layout=table.layout,
        encoding=raw.encoding,
        delimiter=raw.delimiter,
        sheet=raw.sheet,
        sheets=raw.sheets,
        # taken, not sliced: a slice of Arrow columns would keep every cell's buffer alive
        table=dataclasses.replace(table, frame=frame.iloc[[]]),
        applied=applied,
        suggestions=tuple(suggestions),
        mapping=applied_mapping,
        template=template,
        validated=validated,
        instrument=instrument,
        rows_total=len(frame),
        summary=_column_summary(counts, validated.rejects) if counts is not None else None,
        source_rows=cited,
        messages=tuple(messages),
    )
    del table, frame, cited
    release_unused_memory()
    return prepared


def release_unused_memory() -> None:
    """Give the memory freed since back to the system: Arrow's, and the C library's heap.

    Arrow's allocator keeps what it freed for its next allocation; a 1M-row export's cells and their
    column summary are ≈1 GB of it, which would otherwise stay with the dashboard's process as long
    as it runs. The C heap likewise keeps the space of the check's many small values (the rows'
    texts) once they are freed (glibc's ``malloc_trim``; elsewhere nothing more is done)."""
    pa.default_memory_pool().release_unused()
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def write_import(
    engine,
    prepared: PreparedImport,
    *,
    user: str | None = None,
    after: AfterImport | None = None,
    themes: bool = True,
) -> ImportResult:
    """Write a prepared import in one transaction: imports row, new rows, rejects and the audit
    row saying who imported it. With ``themes`` (the default) the new comments are then read for
    comment themes; without, the next refresh reads them (the benchmark times the two apart).

    ``after`` runs once the import is committed (the case rules and alerts of
    :func:`relq.outputs.followup.follow_up_import`); its sentences land in ``follow_up``. If it
    fails, the import stays and a sentence says what did not follow.
    """
    stored = store_import(engine, prepared, user=user)
    return finish_import(engine, stored, user=user, after=after, themes=themes)


def store_import(engine, prepared: PreparedImport, *, user: str | None = None) -> ImportResult:
    """The write of :func:`write_import` alone, committed; :func:`finish_import` does the rest.
    Between the two the caller can let go of the checked file (the Upload page does: a 1M-row
    export's check is half a gigabyte, and reading the comments for themes needs as much again)."""
    kind = prepared.kind
    v = prepared.validated
    id_name = ID_TARGETS[kind]
    valid = v.valid
    answers = _rows_of(v.answers, valid.index) if len(v.answers.columns) else v.answers.iloc[0:0]
    rejects = v.rejects
    messages = list(prepared.messages)
    # imports take turns, so none collides or duplicates; on ClickHouse a failure removes what was written
    with import_transaction(engine, f"The import of {prepared.file_name}") as conn:
        dup_in_file = valid[id_name].duplicated(keep="first")
        stored = existing_ids(conn, _ID_COLUMN[kind], valid[id_name])
        duplicate = dup_in_file | valid[id_name].isin(stored)
        new = valid[~duplicate] if duplicate.any() else valid  # not changed in place: see _with
        unmatched = 0
        extra_rejects = []
        if kind in ("survey", *REJECTED_WHEN_WRITTEN) and not new.empty:
            lookup = customer_lookup(conn)
            matched = match_customers(new, lookup)
            if kind == "survey":
                unmatched = int(matched.isna().sum())
                new = _with(new, customer_id=matched)
            else:
                given = (
                    new["customer_id"]
                    if "customer_id" in new
                    else pd.Series(None, index=new.index, dtype=object)
                )
                resolved = matched.where(matched.notna(), given)
                unmatched = int(matched.isna().sum())
                lost = resolved.isna()
                if lost.any():
                    src = prepared.mapping.columns
                    email_col = next((s for s, t in src.items() if t == "email"), "email")
                    for r in new.index[lost]:
                        extra_rejects.append(
                            {
                                "row": int(r),
                                "column": email_col,
                                "value": str(new.at[r, "email"]),
                                "reason": "no stored customer has this email",
                            }
                        )
                    new = new[~lost]
                    unmatched -= int(lost.sum())
                    resolved = resolved[~lost]
                new = _with(new, customer_id=resolved)
        if extra_rejects:
            rejects = (
                pd.concat([rejects, pd.DataFrame(extra_rejects)], ignore_index=True)
                .sort_values("row", kind="stable")
                .reset_index(drop=True)
            )
        n_rejected = int(rejects["row"].nunique()) if not rejects.empty else 0
        import_id = new_import(
            conn,
            **imports_row(
                file_name=prepared.file_name,
                file_hash=prepared.file_hash,
                kind=kind,
                detected_format=prepared.detected_format,
                mapping=prepared.mapping.to_json(),
                rows_total=prepared.rows_total,
                rows_imported=len(new),
                rows_rejected=n_rejected,
                rows_duplicate=int(duplicate.sum()),
                rows_unmatched=unmatched,
                imported_by=user,
                is_demo=False,
            ),
        )
        messages += write_rows(
            conn,
            kind=kind,
            import_id=import_id,
            rows=new,
            answers=_rows_of(answers, new.index) if len(answers.columns) else answers,
            extras=v.extras[v.extras["row"].isin(new.index)] if not v.extras.empty else v.extras,
            instrument=prepared.instrument,
        )
        insert_frame(conn, schema.import_rejects, reject_records(rejects, prepared.source_rows, import_id))
        # Who imported what, in the import's own transaction: no import without its audit row.
        note_data_change(conn, "import")
        audit_row(
            conn,
            user,
            "import",
            {"import_id": int(import_id), "file": prepared.file_name, "kind": kind, "rows": len(new)},
        )
    if int(duplicate.sum()):
        messages.append(
            f"{int(duplicate.sum())} rows were already stored (or repeated in the file) and were skipped."
        )
    return ImportResult(
        import_id=int(import_id),
        kind=kind,
        detected_format=prepared.detected_format,
        rows_total=prepared.rows_total,
        rows_imported=len(new),
        rows_rejected=n_rejected,
        rows_duplicate=int(duplicate.sum()),
        rows_unmatched=unmatched,
        rejects=rejects.reset_index(drop=True),
        messages=tuple(messages),
    )


def finish_import(
    engine,
    stored: ImportResult,
    *,
    user: str | None = None,
    after: AfterImport | None = None,
    themes: bool = True,
    theme_sums: bool = True,
) -> ImportResult:
    """What follows a committed import (:func:`store_import`): its comments read for themes, then
    ``after``; the result with their sentences. Without ``theme_sums`` the themes' stored month sums
    are left to the rebuild of the stored tables the caller starts next (see
    :func:`relq.ingest.themes.refresh_themes`)."""
    messages = list(stored.messages)
    if stored.kind == "survey" and stored.rows_imported and themes:
        messages.append(_refresh_themes_after_import(engine, user, theme_sums))
    follow_up: tuple[str, ...] = ()
    if after is not None:
        try:
            follow_up = tuple(after(engine, stored.import_id, user))
        except (RelqError, SQLAlchemyError, OSError) as exc:
            follow_up = (
                f"The import is stored, but the case rules and alerts that follow it stopped: {exc}. "
                "Run `python -m relq alerts run` to evaluate the alerts again.",
            )
    return dataclasses.replace(stored, messages=tuple(messages), follow_up=follow_up)


def _refresh_themes_after_import(engine, user: str | None, sums: bool = True) -> str:
    """Comment themes for the new comments, once the import has committed: the import stands
    whatever happens here, and comments not read now are read by the next refresh."""
    from relq.ingest.themes import refresh_themes

    try:
        return refresh_themes(engine, user=user, sums=sums).sentence()
    except (RelqError, SQLAlchemyError, ValueError, MemoryError) as exc:
        return (
            f"The import is stored, but comment themes were not refreshed ({exc}); the next import "
            "or the Comment themes page will read the new comments."
        )


def _with(frame: pd.DataFrame, **columns: pd.Series) -> pd.DataFrame:
    """``frame`` with ``columns`` set, sharing its other columns instead of copying them (a 1M-row
    import's checked rows are ≈300 MB; the check itself stays as it was)."""
    return pd.DataFrame({**{c: frame[c] for c in frame.columns}, **columns}, copy=False)


def _rows_of(frame: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """``frame``'s rows at ``index`` (the frame itself when that is all of them, uncopied)."""
    return frame if frame.index.equals(index) else frame.loc[index]


def import_file(
    engine,
    path_or_bytes,
    *,
    file_name: str,
    kind: str = "auto",
    mapping: Mapping | dict | str | Path | None = None,
    instrument: Instrument | None = None,
    user: str | None = None,
    sheet=None,
    date_order: str | None = None,
    templates_dir: Path | None = None,
    after: AfterImport | None = None,
    themes: bool = True,
) -> ImportResult:
    """Import one file (see module docstring); raises ImportRejected when it cannot be used.
    ``after`` and ``themes`` run once it is committed (see :func:`write_import`)."""
    prepared = prepare_import(
        path_or_bytes,
        file_name=file_name,
        kind=kind,
        mapping=mapping,
        instrument=instrument,
        sheet=sheet,
        date_order=date_order,
        templates_dir=templates_dir,
        summarise=False,
    )
    return write_import(engine, prepared, user=user, after=after, themes=themes)


def preview_rows(prepared: PreparedImport, limit: int = 50) -> pd.DataFrame:
    """The first rows as they will be stored (valid rows only), answers included."""
    v = prepared.validated
    valid = v.valid.head(limit)
    out = valid.copy()
    if len(v.answers.columns):
        out = out.join(v.answers.loc[valid.index])
    out.index.name = "row"
    return out


def column_summary(prepared: PreparedImport) -> pd.DataFrame:
    """Per mapped column: target, filled and empty counts, problems, an example value."""
    if prepared.summary is None:
        raise ValueError(f"{prepared.file_name} was checked without its column summary (summarise=False).")
    return prepared.summary


def _column_counts(table: Table, applied: dict[str, str]) -> pd.DataFrame:
    """Per column of a file: its target, filled and empty cells, distinct values, an example."""
    frame = table.frame
    records = []
    for col in table.columns:
        # counted in Arrow, with str.strip()'s own whitespace: a Python string per cell would leave
        # a 1M-row export's page a gigabyte larger (the freed strings' memory stays with the process)
        cells = pa.array(frame[col.name].fillna(""), type=pa.large_string(), from_pandas=True)
        values = pc.utf8_trim(cells, characters=_WHITESPACE)
        filled = pc.filter(values, pc.not_equal(values, ""))
        records.append(
            {
                "column": col.name,
                "target": applied.get(col.name, ""),
                "filled": len(filled),
                "empty": len(values) - len(filled),
                "distinct": pc.count_distinct(filled).as_py(),
                "example": filled[0].as_py() if len(filled) else "",
            }
        )
    return pd.DataFrame.from_records(
        records, columns=["column", "target", "filled", "empty", "distinct", "example"]
    )


def _column_summary(counts: pd.DataFrame, rejects: pd.DataFrame) -> pd.DataFrame:
    """The column summary of a checked file: its counts with each column's problems."""
    problems = rejects.groupby("column").size() if not rejects.empty else pd.Series(dtype=int)
    out = counts.copy()
    out.insert(4, "problems", [int(problems.get(c, 0)) for c in counts["column"]])
    return out


# The characters Python's str.strip() removes (str.isspace()), for Arrow's trim to remove the same.
_WHITESPACE = "".join(chr(code) for code in range(0x3001) if chr(code).isspace())


def safe_csv(frame: pd.DataFrame) -> bytes:
    """CSV bytes with formula-looking cells neutralised (relq.core.exports.to_safe_csv)."""
    return to_safe_csv(frame)


def rejects_csv(rejects: pd.DataFrame) -> bytes:
    return safe_csv(rejects)


def import_history(engine, limit: int = 50) -> pd.DataFrame:
    """The latest imports, newest first."""
    i = schema.imports.c
    query = (
        select(
            i.import_id,
            i.file_name,
            i.kind,
            i.detected_format,
            i.rows_total,
            i.rows_imported,
            i.rows_rejected,
            i.rows_duplicate,
            i.rows_unmatched,
            i.imported_by,
            i.imported_at,
            i.is_demo,
        )
        .order_by(i.import_id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in query.selected_columns])


def stored_rejects(engine, import_id: int) -> pd.DataFrame:
    r = schema.import_rejects.c
    query = (
        select(r.row_number, r.column_name, r.value, r.reason, r.raw)
        .where(r.import_id == import_id)
        .order_by(r.row_number)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame(
        [dict(x) for x in rows], columns=["row_number", "column_name", "value", "reason", "raw"]
    )


def mapping_json(prepared: PreparedImport) -> str:
    return json.dumps(prepared.mapping.to_dict(), indent=2, ensure_ascii=False)


REJECT = "reject the row"
MISSING = "no answer (missing)"


def mapping_table(prepared: PreparedImport) -> pd.DataFrame:
    """One row per source column: question text, suggestion with confidence, applied target."""
    records = []
    for s in prepared.suggestions:
        records.append(
            {
                "column": s.source,
                "question": s.text if s.text != s.source else "",
                "suggested": s.target or "",
                "confidence": round(float(s.confidence), 2),
                "target": prepared.applied.get(s.source, ""),
            }
        )
    return pd.DataFrame.from_records(
        records, columns=["column", "question", "suggested", "confidence", "target"]
    )


def mapping_from_table(kind: str, table: pd.DataFrame, labels: dict | None = None) -> Mapping:
    """The mapping-file form of an edited mapping table (an empty target ignores the column)."""
    columns = {}
    for column, target in zip(table["column"], table["target"], strict=False):
        target = (
            "" if target is None or (isinstance(target, float) and pd.isna(target)) else str(target).strip()
        )
        columns[str(column)] = target or None
    return Mapping(kind, columns, dict(labels or {}))


def label_table(prepared: PreparedImport) -> pd.DataFrame:
    """Answer texts that could not be read as numbers, with how often they occur and their label."""
    rejects = prepared.rejects
    unread = (
        rejects[rejects["reason"].str.startswith("not an answer on", na=False)]
        if not rejects.empty
        else rejects
    )
    counts = unread.groupby("value").size() if not unread.empty else pd.Series(dtype=int)
    records = [
        {"answer": answer, "rows": int(n), "meaning": REJECT}
        for answer, n in counts.sort_values(ascending=False).items()
    ]
    for answer, value in prepared.mapping.labels.items():
        records.append({"answer": answer, "rows": 0, "meaning": MISSING if value is None else f"{value:g}"})
    return pd.DataFrame.from_records(records, columns=["answer", "rows", "meaning"]).drop_duplicates("answer")


def label_choices(prepared: PreparedImport) -> list[str]:
    """Meanings an answer text can be given: reject, missing, or a scale point."""
    hi = int(prepared.instrument.scale_max) if prepared.instrument else 7
    lo = int(prepared.instrument.scale_min) if prepared.instrument else 1
    return [REJECT, MISSING] + [str(v) for v in range(min(0, lo), max(10, hi) + 1)]


def labels_from_table(table: pd.DataFrame) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for answer, meaning in zip(table["answer"], table["meaning"], strict=False):
        if meaning == MISSING:
            out[str(answer)] = None
        elif meaning not in (None, "", REJECT):
            try:
                out[str(answer)] = float(meaning)
            except (TypeError, ValueError):
                continue
    return out
