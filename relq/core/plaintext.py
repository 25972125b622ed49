"""Text that came from data, shown as plain text.

Streamlit renders the text of messages, captions and widget labels as Markdown: an imported column
header ``![b](http://…)`` would become an image every browser fetches, ``$…$`` a formula, ``:red[…]``
coloured text. :func:`plain` escapes every character Markdown (and Streamlit's own extensions)
gives a meaning, so the text reads exactly as it was written.
"""

from __future__ import annotations

import re

__all__ = ["plain"]

# Every ASCII punctuation character may be backslash-escaped in CommonMark; these are the ones with
# a meaning in Markdown, GitHub's extensions or Streamlit's (emoji and icons :x:, colours :red[], $math$).
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=^&\"'])")


def plain(text: object) -> str:
    """``text`` escaped so that Markdown shows it as written.

    >>> plain("![b](http://x.example/p.png) *bold* $x$ :red[hi]")
    '\\\\!\\\\[b\\\\]\\\\(http\\\\://x\\\\.example/p\\\\.png\\\\) \\\\*bold\\\\* \\\\$x\\\\$ \\\\:red\\\\[hi\\\\]'
    """
    return _SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")
