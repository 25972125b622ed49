"""Text that came from data, shown as plain text.

Streamlit renders the text of messages, captions and widget labels as Markdown: an imported column
header ``![b](http://…)`` would become an image every browser fetches, ``$…$`` a formula, ``:red[…]``
coloured text. :func:`plain` escapes every character Markdown (and Streamlit's own extensions)
gives a meaning, so the text reads exactly as it was written.
"""

from __future__ import annotations

import re

__all__ = ["plain"]

# Characters with a meaning anywhere in a line: emphasis, code, links and images ([…] and ![…]: the
# parentheses after them mean nothing once the brackets are escaped), raw HTML, tables,
# strikethrough, headings, math ($…$) and Streamlit's :icon: / :colour[…] directives. Every ASCII
# punctuation character may be backslash-escaped in CommonMark, so escaping shows them as written.
_SPECIAL = re.compile(r"([\\`*_\[\]<>!$:#|~])")
# Characters with a meaning only where a line starts: lists (-, +, 1.) and block quotes (>).
_LINE_START = re.compile(r"^(\s*\d*)([-+=.)])")


def plain(text: object) -> str:
    """``text`` escaped so that Markdown shows it as written (on one line).

    >>> plain("![b](http://x.example/p.png) *bold* $x$ :red[hi]")
    '\\\\!\\\\[b\\\\](http\\\\://x.example/p.png) \\\\*bold\\\\* \\\\$x\\\\$ \\\\:red\\\\[hi\\\\]'
    >>> plain("boss@example.com"), plain("- not a list")
    ('boss@example.com', '\\\\- not a list')
    """
    text = _SPECIAL.sub(r"\\\1", str(text).replace("\n", " ").replace("\r", " "))
    start = _LINE_START.match(text)
    if start and (start.group(1).strip() or start.group(2) in "-+="):  # "1." or a bare "-", "+", "="
        text = start.group(1) + "\\" + text[len(start.group(1)) :]
    return text
