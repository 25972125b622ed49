"""Bytes → rows of text: encodings, delimiters, XLSX sheets (the first step of an import).

Everything a file holds becomes a string here ('' for an empty cell); typing happens in
``relq.ingest.validate`` so that a bad value is reported with its row and column, not lost.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relq.exceptions import ImportRejected

__all__ = [
    "RawFile",
    "read_source",
    "read_rows",
    "list_sheets",
    "MAX_FILE_BYTES",
    "MAX_COLUMNS",
    "MAX_CELLS",
    "MAX_XLSX_CELLS",
    "MAX_CELL_CHARS",
    "MAX_XLSX_UNPACKED_BYTES",
]

# Limits on what a file may hold or declare (README → Limits). Each is checked before the file is
# parsed whole, and a file over one is refused with a sentence naming it.
MAX_FILE_BYTES = 200 * 1024 * 1024  # the default upload size, also .streamlit maxUploadSize
MAX_COLUMNS = 1_000  # columns of a table (a wide Qualtrics export has a few hundred)
MAX_CELLS = 50_000_000  # rows × columns of a CSV/TSV/TXT table (a 1M-row survey export has ~25M)
MAX_XLSX_CELLS = 5_000_000  # rows × columns of a workbook sheet, as declared and as read
MAX_CELL_CHARS = 32_767  # characters in one cell: Excel's own limit
MAX_XLSX_UNPACKED_BYTES = 1024 * 1024 * 1024  # a workbook's XML once unzipped (zip bombs)
DELIMITERS = (",", ";", "\t", "|")
XLSX_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .xls

# One cell longer than the limit stops the parser at once (and names its line).
csv.field_size_limit(MAX_CELL_CHARS)


@dataclass(frozen=True)
class RawFile:
    """A file read into rows of strings, with what was detected on the way."""

    rows: list[list[str]]  # [] when ``columns`` holds the records
    encoding: str | None  # None for XLSX
    delimiter: str | None
    sheet: str | None = None
    sheets: tuple[str, ...] = ()
    messages: tuple[str, ...] = field(default_factory=tuple)
    columns: Any = None  # a pyarrow.Table of text columns: every record of a plain UTF-8 CSV

    @property
    def records(self):
        """What :func:`relq.ingest.detect.build_table` reads: the Arrow columns, else the rows."""
        return self.columns if self.columns is not None else self.rows

    @property
    def container(self) -> str:
        return "xlsx" if self.sheet is not None else "csv"


def read_source(path_or_bytes) -> bytes:
    """The bytes of a path, bytes object or binary file-like object."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes)
    if isinstance(path_or_bytes, (str, Path)):
        path = Path(path_or_bytes)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ImportRejected(f"{path.name}: the file cannot be opened ({exc.strerror or exc}).") from exc
        if size > MAX_FILE_BYTES:
            raise ImportRejected(
                f"{path.name}: the file is {size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES / 2**20:.0f} MB."
            )
        return path.read_bytes()
    if hasattr(path_or_bytes, "read"):
        data = path_or_bytes.read()
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    raise TypeError(f"expected a path, bytes or a binary file, got {type(path_or_bytes).__name__}")


def list_sheets(data: bytes) -> list[str]:
    """Sheet names of an XLSX workbook ([] for anything else)."""
    if not data.startswith(XLSX_MAGIC):
        return []
    try:
        import openpyxl

        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            return list(wb.sheetnames)
        finally:
            wb.close()
    except Exception:  # noqa: BLE001 - any unreadable zip is reported by read_rows
        return []


# A byte that is not blank, a NUL or part of a byte-order mark: the file is not empty.
_SOMETHING = re.compile(rb"[^ \t\r\n\x00\xef\xbb\xbf\xff\xfe]")


def read_rows(data: bytes, file_name: str, sheet: str | int | None = None) -> RawFile:
    """Rows of strings from CSV/TSV/TXT bytes (any common encoding) or an XLSX workbook."""
    if not _SOMETHING.search(data):  # (a search: strip() would copy the whole file)
        raise ImportRejected(f"{file_name}: the file is empty.")
    if len(data) > MAX_FILE_BYTES:
        raise ImportRejected(
            f"{file_name}: the file is {len(data) / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES / 2**20:.0f} MB."
        )
    if data.startswith(OLE_MAGIC):
        raise ImportRejected(
            f"{file_name}: this is an old Excel .xls workbook; save it as .xlsx or CSV and upload that."
        )
    if data.startswith(XLSX_MAGIC):
        return _read_xlsx(data, file_name, sheet)
    text, encoding, messages = decode_text(data, file_name)
    delimiter = sniff_delimiter(text)
    width = _check_declared_size(text, delimiter, file_name)
    if encoding in ("UTF-8", "UTF-8 with BOM") and not messages and "\x00" not in text:
        columns = _parse_columns(data, width, delimiter)
        if columns is not None:
            return RawFile(rows=[], encoding=encoding, delimiter=delimiter, columns=columns)
    rows = _parse_csv(text, delimiter, file_name)
    if "\x00" in text:  # one search of the text; the cells are looked at only to say where
        _refuse_nul(rows, file_name)
    return RawFile(rows=rows, encoding=encoding, delimiter=delimiter, messages=messages)


def _check_declared_size(text: str, delimiter: str, file_name: str) -> int:
    """Refuse a table wider or larger than the limits from its first lines, before parsing it.
    Returns the number of fields of the first record (0 when the csv module cannot read them)."""
    head = text[: 256 * 1024]
    lines = head.splitlines()[:60]
    if len(head) < len(text) and len(lines) > 1:
        lines = lines[:-1]
    try:
        widths = [len(r) for r in csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)]
        first = len(next(csv.reader(_lines(text), delimiter=delimiter), []))  # a whole first record
        widths.append(first)
    except csv.Error:
        first = 0
        widths = [line.count(delimiter) + 1 for line in lines]
    width = max(widths, default=1)
    if width > MAX_COLUMNS:
        raise ImportRejected(
            f"{file_name}: the table has {width:,} columns; RelQ reads at most {MAX_COLUMNS:,} columns "
            "(README → Limits). Keep the columns you need and import that."
        )
    cells = (text.count("\n") + 1) * width
    if cells > MAX_CELLS:
        raise ImportRejected(
            f"{file_name}: the table has about {cells:,} cells (rows × columns); RelQ reads at most "
            f"{MAX_CELLS:,} cells from one file (README → Limits). Split it into smaller files."
        )
    return first


def _refuse_nul(rows: list[list[str]], file_name: str) -> None:
    """A NUL character (byte 0) is not text and no database column can store it (PostgreSQL
    refuses it): the same clear refusal on every engine, naming where it is."""
    for number, row in enumerate(rows, start=1):
        for index, cell in enumerate(row):
            if "\x00" in cell:
                header = rows[0][index] if number > 1 and index < len(rows[0]) else f"number {index + 1}"
                raise ImportRejected(
                    f"{file_name}: row {number:,}, column {header!r} holds a NUL character (byte 0), "
                    "which is not text and cannot be stored; remove it (or export the file again) and "
                    "import it again."
                )


def decode_text(data: bytes, file_name: str) -> tuple[str, str, tuple[str, ...]]:
    """Decode text, deciding the encoding from the file's own evidence; returns (text, encoding
    label, messages).

    BOMs first; then UTF-8. A file that is UTF-8 except for a few lines (a stray Windows-1252
    byte pasted in) is read as UTF-8, those lines as Windows-1252, and a message names them — the
    rest is not garbled. A file with no UTF-8 sequence at all is a legacy single-byte file
    (Windows-1252, else the encoding charset-normalizer finds most coherent)."""
    for bom, enc, label in (
        (codecs.BOM_UTF8, "utf-8-sig", "UTF-8 with BOM"),
        (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
        (codecs.BOM_UTF16_LE, "utf-16", "UTF-16 (Excel Unicode text)"),
        (codecs.BOM_UTF16_BE, "utf-16", "UTF-16 (Excel Unicode text)"),
    ):
        if data.startswith(bom):
            if enc == "utf-8-sig":
                text, label, messages = _utf8_with_stray_lines(data[len(bom) :], file_name, label)
                if text is not None:
                    return _check_text(text, file_name), label, messages
            try:
                return _check_text(data.decode(enc), file_name), label, ()
            except UnicodeDecodeError as exc:
                raise ImportRejected(
                    f"{file_name}: the file says it is {label} but byte {exc.start} is not valid {label}; "
                    "save it again as UTF-8 CSV."
                ) from exc
    try:
        return _check_text(data.decode("utf-8"), file_name), "UTF-8", ()
    except UnicodeDecodeError:
        pass
    sample = data[:4000]
    if len(sample) >= 4 and sample[1::2].count(0) > 0.4 * len(sample[1::2]) and not sample[0::2].count(0):
        try:
            return _check_text(data.decode("utf-16-le"), file_name), "UTF-16 LE (no BOM)", ()
        except UnicodeDecodeError:
            pass
    if data.count(b"\x00") > max(2, len(data) // 100):
        raise ImportRejected(
            f"{file_name}: this is not a text table (CSV/TSV) or an Excel .xlsx workbook; "
            "export the data as CSV or XLSX and upload that."
        )
    text, label, messages = _utf8_with_stray_lines(data, file_name, "UTF-8")
    if text is not None:
        return _check_text(text, file_name), label, messages
    text, label = _legacy(data)
    return _check_text(text, file_name), label, ()


# A multi-byte UTF-8 sequence: evidence that a file was written as UTF-8.
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def _utf8_with_stray_lines(data: bytes, file_name: str, label: str):
    """(text, label, messages) when ``data`` is UTF-8 with a few lines that are not; else (None, …).

    Evidence: the file holds valid multi-byte UTF-8 sequences, and at least as many of them as
    lines that do not decode. Those lines are read as Windows-1252 (else Latin-1) and named."""
    lines = data.split(b"\n")
    bad = []
    for number, line in enumerate(lines, start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(number)
    if not bad:
        return data.decode("utf-8"), label, ()
    if len(_UTF8_SEQUENCE.findall(data, 0, 4 * 1024 * 1024)) < len(bad):
        return None, label, ()
    stray = set(bad)
    decoded = [
        _decode_legacy_line(line) if number in stray else line.decode("utf-8")
        for number, line in enumerate(lines, start=1)
    ]
    named = ", ".join(f"{n:,}" for n in bad[:10]) + (f" and {len(bad) - 10:,} more" if len(bad) > 10 else "")
    message = (
        f"{file_name} is UTF-8 except line(s) {named}, which are not valid UTF-8 and were read as "
        "Windows-1252: check those rows in the preview."
    )
    return "\n".join(decoded), f"{label}, {len(bad):,} line(s) Windows-1252", (message,)


def _decode_legacy_line(line: bytes) -> str:
    try:
        return line.decode("cp1252")
    except UnicodeDecodeError:
        return line.decode("latin-1")


def _legacy(data: bytes) -> tuple[str, str]:
    """A file with no UTF-8 in it: Windows-1252 when it decodes, else what charset-normalizer
    finds most coherent among the common single-byte and East Asian encodings, else Latin-1."""
    try:
        return data.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(
            data[: 1024 * 1024],
            cp_isolation=[
                "cp1250",
                "cp1251",
                "cp1253",
                "cp1254",
                "cp1257",
                "iso8859_2",
                "iso8859_15",
                "mac_roman",
                "cp850",
                "shift_jis",
                "gb18030",
                "big5",
                "euc_kr",
            ],
        ).best()
        if best is not None:
            return data.decode(best.encoding), best.encoding.replace("_", "-").upper()
    except (UnicodeDecodeError, LookupError):
        pass
    return data.decode("latin-1"), "Latin-1"


def _check_text(text: str, file_name: str) -> str:
    """``text``, unless it is mostly control characters (binary data): then a refusal."""
    sample = text[:20000]
    controls = sum(1 for ch in sample if (ord(ch) < 32 and ch not in "\t\r\n") or 0x7F <= ord(ch) < 0xA0)
    if sample and controls > max(2, 0.01 * len(sample)):
        raise ImportRejected(
            f"{file_name}: this is not a text table (CSV/TSV) or an Excel .xlsx workbook "
            "(it holds binary data); export the data as CSV or XLSX and upload that."
        )
    return text


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first lines into the most, most consistent fields."""
    head = text[: 64 * 1024]
    lines = head.splitlines()[:60]
    if len(head) == len(text) or not lines:
        pass
    elif len(lines) > 1:
        lines = lines[:-1]  # the last line of a cut sample may be partial
    best, best_score = ",", (-1.0, 0)
    sample = "\n".join(lines)
    for delim in DELIMITERS:
        try:
            widths = [
                len(r) for r in csv.reader(io.StringIO(sample), delimiter=delim) if any(c.strip() for c in r)
            ]
        except csv.Error:
            continue
        if not widths:
            continue
        top = max(set(widths), key=widths.count)
        if top < 2:
            continue
        score = (widths.count(top) / len(widths), top)
        if score > best_score:
            best, best_score = delim, score
    return best


def _lines(text: str, chunk: int = 1 << 20):
    """The lines of ``text`` as ``io.StringIO(text, newline="")`` gives them, a megabyte at a time:
    a StringIO over the whole text holds it again as four bytes a character (≈700 MB for a 1M-row
    export). Each piece ends just after a "\\n", which always ends a line (a "\\r\\n" stays whole)."""
    start, end_of_text = 0, len(text)
    while start < end_of_text:
        end = text.find("\n", start + chunk)
        end = end_of_text if end < 0 else end + 1
        yield from io.StringIO(text[start:end], newline="")
        start = end


def _parse_columns(data: bytes, width: int, delimiter: str):
    """Every record of a UTF-8 CSV as Arrow text columns, parsed by pyarrow's CSV reader (in C++,
    on both cores, no Python string per cell: a 1M-row export in about a second, and ~300 MB
    instead of ~1 GB) — or None when that reader cannot give exactly what Python's csv module gives:
    records of different widths than the first (``width`` fields; 0: unreadable), a quote never
    closed, a cell over the length limit. The caller then parses the text with :func:`_parse_csv`,
    whose messages name the line."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    if not width:
        return None
    body = pa.py_buffer(data)
    if data.startswith(codecs.BOM_UTF8):
        body = body.slice(len(codecs.BOM_UTF8))
    names = [f"c{i}" for i in range(width)]
    try:
        table = pacsv.read_csv(
            pa.BufferReader(body),
            read_options=pacsv.ReadOptions(column_names=names, block_size=4 << 20),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.large_string()),
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowException:
        return None
    for column in table.columns:
        if table.num_rows and pc.max(pc.utf8_length(column)).as_py() > MAX_CELL_CHARS:
            return None
    return table


def _parse_csv(text: str, delimiter: str, file_name: str) -> list[list[str]]:
    reader = csv.reader(_lines(text), delimiter=delimiter)
    rows: list[list[str]] = []
    try:
        for row in reader:
            if len(row) > MAX_COLUMNS:
                raise ImportRejected(
                    f"{file_name}: line {reader.line_num:,} has {len(row):,} columns; RelQ reads at most "
                    f"{MAX_COLUMNS:,} columns (README → Limits)."
                )
            rows.append(row)
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise ImportRejected(
                f"{file_name}: line {reader.line_num:,} holds a cell longer than {MAX_CELL_CHARS:,} characters, "
                "the most one cell may hold (README → Limits); often a quote that is never closed."
            ) from exc
        raise ImportRejected(
            f"{file_name}: line {reader.line_num} cannot be read as {_delimiter_name(delimiter)}-separated "
            f"values ({exc}); check that quotes are closed and the file is not cut short."
        ) from exc
    return rows


def _delimiter_name(delimiter: str | None) -> str:
    return {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}.get(delimiter or ",", repr(delimiter))


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def _check_workbook_size(data: bytes, file_name: str) -> None:
    """Refuse a workbook whose XML would unpack to more than the limit (a zip bomb), unopened."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # openpyxl's own refusal names the problem
    if unpacked > MAX_XLSX_UNPACKED_BYTES:
        raise ImportRejected(
            f"{file_name}: the workbook unpacks to {unpacked / 2**20:,.0f} MB; RelQ opens workbooks of at "
            f"most {MAX_XLSX_UNPACKED_BYTES / 2**20:,.0f} MB unpacked (README → Limits). Save it as CSV."
        )


def _sheet_rows(ws, file_name: str) -> list[list[str]]:
    """The sheet's rows as text, streamed (openpyxl read-only): the declared size is checked first,
    then every row as it is read, so no declared or real size beyond the limits is ever held."""
    rows_declared, cols_declared = ws.max_row or 0, ws.max_column or 0
    if cols_declared > MAX_COLUMNS or rows_declared * cols_declared > MAX_XLSX_CELLS:
        raise ImportRejected(
            f"{file_name}: sheet {ws.title!r} declares {rows_declared:,} rows × {cols_declared:,} columns; "
            f"RelQ reads at most {MAX_COLUMNS:,} columns and {MAX_XLSX_CELLS:,} cells from a workbook "
            "(README → Limits). Save the data as CSV, or keep the cells you need."
        )
    ws.reset_dimensions()  # rows come as written: no padding to a declared size
    rows: list[list[str]] = []
    width = 0
    for number, values in enumerate(ws.iter_rows(values_only=True), start=1):
        width = max(width, len(values))
        if width > MAX_COLUMNS or number * width > MAX_XLSX_CELLS:
            raise ImportRejected(
                f"{file_name}: sheet {ws.title!r} holds more than "
                + (f"{MAX_COLUMNS:,} columns" if width > MAX_COLUMNS else f"{MAX_XLSX_CELLS:,} cells")
                + f" (row {number:,}); that is the most RelQ reads from a workbook (README → Limits). "
                "Save the data as CSV, or keep the cells you need."
            )
        row = [_cell_text(v) for v in values]
        for index, cell in enumerate(row):
            if len(cell) > MAX_CELL_CHARS:
                raise ImportRejected(
                    f"{file_name}: sheet {ws.title!r}, row {number:,}, column {index + 1:,} holds "
                    f"{len(cell):,} characters; one cell may hold at most {MAX_CELL_CHARS:,} (README → Limits)."
                )
        rows.append(row)
    return [r + [""] * (width - len(r)) if len(r) < width else r for r in rows]


def _read_xlsx(data: bytes, file_name: str, sheet: str | int | None) -> RawFile:
    import openpyxl

    _check_workbook_size(data, file_name)
    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - zip/xml errors of every kind mean "not a workbook"
        raise ImportRejected(
            f"{file_name}: the file looks like an Excel workbook but cannot be opened ({type(exc).__name__}); "
            "save it again as .xlsx or CSV."
        ) from exc
    try:
        names = list(wb.sheetnames)
        if sheet is None:
            chosen = next((n for n in names if (wb[n].max_row or 0) > 0 and _sheet_has_data(wb[n])), names[0])
        elif isinstance(sheet, int) and not isinstance(sheet, bool):
            if not 0 <= sheet < len(names):
                raise ImportRejected(
                    f"{file_name}: there is no sheet number {sheet}; it has {len(names)} sheets."
                )
            chosen = names[sheet]
        elif sheet in names:
            chosen = sheet
        else:
            raise ImportRejected(
                f"{file_name}: there is no sheet named {sheet!r}; the sheets are {', '.join(map(repr, names))}."
            )
        rows = _sheet_rows(wb[chosen], file_name)
    except ImportRejected:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ImportRejected(
            f"{file_name}: the workbook cannot be read ({type(exc).__name__}); save it again as .xlsx or CSV."
        ) from exc
    finally:
        wb.close()
    _refuse_nul(rows, file_name)
    messages = ()
    if len(names) > 1:
        messages = (
            f"Read sheet {chosen!r} of {len(names)} ({', '.join(names)}); choose another with sheet.",
        )
    return RawFile(
        rows=rows, encoding=None, delimiter=None, sheet=chosen, sheets=tuple(names), messages=messages
    )


def _sheet_has_data(ws) -> bool:
    for row in ws.iter_rows(
        max_row=5, max_col=min(ws.max_column or MAX_COLUMNS, MAX_COLUMNS), values_only=True
    ):
        if any(v not in (None, "") for v in row):
            return True
    return False
