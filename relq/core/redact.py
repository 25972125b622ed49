"""Personal data inside free text: emails, phone numbers and the names the CRM knows, masked for
roles that may not see personal data (pure Python; the names come from the store).

>>> masker = NameMasker(["Jane Doe", "Liam O'Connor"])
>>> masker.mask("Please call Jane Doe at jane.doe@acme.example or +44 20 7946 0958. Liam was great.")
'Please call [name] at [email] or [phone]. [name] was great.'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["EMAIL", "PHONE", "NameMasker", "mask_text"]

EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
# Seven or more digits, optionally with +, spaces, dots, dashes, slashes and brackets between them.
PHONE = re.compile(r"(?<![\w.])\+?\(?\d(?:[\d ()./-]*\d){6,}(?![\w])")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?$")
_WORD = re.compile(r"[^\W\d_](?:[\w'’-]*[^\W_])?")


def _phone(match: re.Match) -> str:
    text = match.group(0)
    if _ISO_DATE.match(text.strip()):
        return text  # a date, not a phone number
    return "[phone]"


class NameMasker:
    """Masks the given names (e.g. customers' and account owners' names from the CRM) in text.

    A whole name is masked wherever it appears, in any case; a single word of a person's name
    (first name or surname) is masked where it is written with a capital letter, as names are.
    """

    def __init__(self, names: Iterable[str] = ()):
        self._full: dict[str, list[tuple[str, ...]]] = {}
        self._parts: set[str] = set()
        for name in names:
            words = tuple(w.lower() for w in _WORD.findall(str(name or "")))
            if not words:
                continue
            self._full.setdefault(words[0], []).append(words)
            if len(words) > 1:  # a person's name: its parts are names too
                self._parts.update(w for w in words if len(w) > 1)
        for options in self._full.values():
            options.sort(key=len, reverse=True)

    def __len__(self) -> int:
        return sum(len(v) for v in self._full.values())

    def mask(self, text: str | None) -> str | None:
        """``text`` with emails, phone numbers and known names replaced by [email], [phone], [name]."""
        if text is None:
            return None
        text = EMAIL.sub("[email]", str(text))
        text = PHONE.sub(_phone, text)
        if not self._full:
            return text
        words = list(_WORD.finditer(text))
        spans: list[tuple[int, int]] = []
        i = 0
        while i < len(words):
            low = words[i].group(0).lower()
            matched = 0
            for option in self._full.get(low, ()):
                n = len(option)
                if tuple(w.group(0).lower() for w in words[i : i + n]) == option:
                    matched = n
                    break
            if not matched and words[i].group(0)[0].isupper() and low in self._parts:
                matched = 1
            if matched:
                spans.append((words[i].start(), words[i + matched - 1].end()))
                i += matched
            else:
                i += 1
        for start, end in reversed(spans):
            text = text[:start] + "[name]" + text[end:]
        return text


def mask_text(text: str | None, names: Iterable[str] = ()) -> str | None:
    """One text masked (see :class:`NameMasker`); build a NameMasker once for many texts.

    >>> mask_text("Order 2024-05-01, ring 0049 (0)30 1234567, mail bo@x.example")
    'Order 2024-05-01, ring [phone], mail [email]'
    """
    return NameMasker(names).mask(text)
