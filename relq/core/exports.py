"""Downloads that are safe to open in a spreadsheet."""

from __future__ import annotations

import pandas as pd

__all__ = ["formula_safe", "to_safe_csv"]

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(value):
    """Neutralise a cell a spreadsheet would run as a formula by prefixing a single quote.

    >>> formula_safe("=HYPERLINK(\\"http://x\\")")
    '\\'=HYPERLINK("http://x")'
    >>> formula_safe(-3.5)
    -3.5
    """
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def to_safe_csv(frame: pd.DataFrame) -> bytes:
    """CSV bytes (UTF-8 with BOM, so Excel reads accents) with every text cell formula-safe."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(formula_safe)
    safe.columns = [formula_safe(str(c)) for c in safe.columns]
    # CRLF rows (RFC 4180): Python's csv module then quotes any cell holding a CR or LF, so a
    # carriage return inside a cell cannot start a new row in a spreadsheet.
    return safe.to_csv(index=False, lineterminator="\r\n").encode("utf-8-sig")
