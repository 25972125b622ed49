"""Bytes → rows of text: encodings, delimiters, XLSX sheets (the first step of an import).

Everything a file holds becomes a string here ('' for an empty cell); typing happens in
``relq.ingest.validate`` so that a bad value is reported with its row and column, not lost.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

from relq.exceptions import ImportRejected

__all__ = ["RawFile", "read_source", "read_rows", "list_sheets", "MAX_FILE_BYTES"]

MAX_FILE_BYTES = 200 * 1024 * 1024  # the default upload size, also .streamlit maxUploadSize
DELIMITERS = (",", ";", "\t", "|")
XLSX_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .xls

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class RawFile:
    """A file read into rows of strings, with what was detected on the way."""

    rows: list[list[str]]
    encoding: str | None  # None for XLSX
    delimiter: str | None
    sheet: str | None = None
    sheets: tuple[str, ...] = ()
    messages: tuple[str, ...] = field(default_factory=tuple)

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


def read_rows(data: bytes, file_name: str, sheet: str | int | None = None) -> RawFile:
    """Rows of strings from CSV/TSV/TXT bytes (any common encoding) or an XLSX workbook."""
    if not data or not data.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
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
    text, encoding = decode_text(data, file_name)
    delimiter = sniff_delimiter(text)
    rows = _parse_csv(text, delimiter, file_name)
    return RawFile(rows=rows, encoding=encoding, delimiter=delimiter)


def decode_text(data: bytes, file_name: str) -> tuple[str, str]:
    """Decode text: BOMs first, then UTF-8, then UTF-16 without BOM, then CP1252/Latin-1."""
    for bom, enc, label in (
        (codecs.BOM_UTF8, "utf-8-sig", "UTF-8 with BOM"),
        (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
        (codecs.BOM_UTF16_LE, "utf-16", "UTF-16 (Excel Unicode text)"),
        (codecs.BOM_UTF16_BE, "utf-16", "UTF-16 (Excel Unicode text)"),
    ):
        if data.startswith(bom):
            try:
                return _check_text(data.decode(enc), file_name), label
            except UnicodeDecodeError as exc:
                raise ImportRejected(
                    f"{file_name}: the file says it is {label} but byte {exc.start} is not valid {label}; "
                    "save it again as UTF-8 CSV."
                ) from exc
    try:
        return _check_text(data.decode("utf-8"), file_name), "UTF-8"
    except UnicodeDecodeError:
        pass
    sample = data[:4000]
    if len(sample) >= 4 and sample[1::2].count(0) > 0.4 * len(sample[1::2]) and not sample[0::2].count(0):
        try:
            return _check_text(data.decode("utf-16-le"), file_name), "UTF-16 LE (no BOM)"
        except UnicodeDecodeError:
            pass
    if b"\x00" in data:
        raise ImportRejected(
            f"{file_name}: this is not a text table (CSV/TSV) or an Excel .xlsx workbook; "
            "export the data as CSV or XLSX and upload that."
        )
    try:
        return _check_text(data.decode("cp1252"), file_name), "Windows-1252"
    except UnicodeDecodeError:
        return _check_text(data.decode("latin-1"), file_name), "Latin-1"


def _check_text(text: str, file_name: str) -> str:
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


def _parse_csv(text: str, delimiter: str, file_name: str) -> list[list[str]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return list(reader)
    except csv.Error as exc:
        raise ImportRejected(
            f"{file_name}: line {reader.line_num} cannot be read as {_delimiter_name(delimiter)}-separated "
            f"values ({exc}); check that quotes are closed and the file is not cut short."
        ) from exc


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


def _read_xlsx(data: bytes, file_name: str, sheet: str | int | None) -> RawFile:
    import openpyxl

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
        rows = [[_cell_text(v) for v in r] for r in wb[chosen].iter_rows(values_only=True)]
    except ImportRejected:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ImportRejected(
            f"{file_name}: the workbook cannot be read ({type(exc).__name__}); save it again as .xlsx or CSV."
        ) from exc
    finally:
        wb.close()
    messages = ()
    if len(names) > 1:
        messages = (
            f"Read sheet {chosen!r} of {len(names)} ({', '.join(names)}); choose another with sheet.",
        )
    return RawFile(
        rows=rows, encoding=None, delimiter=None, sheet=chosen, sheets=tuple(names), messages=messages
    )


def _sheet_has_data(ws) -> bool:
    for row in ws.iter_rows(max_row=5, values_only=True):
        if any(v not in (None, "") for v in row):
            return True
    return False
