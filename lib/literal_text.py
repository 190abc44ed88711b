"""User text shown exactly as typed: in Streamlit Markdown, and without bidi controls that reorder a page.

Streamlit renders chat text as Markdown (CommonMark + GFM, plus its own ``:color[...]`` directives,
``:emoji:`` shortcodes and ``$LaTeX$``): ``**bold**`` turns bold, ``[x](url)`` and bare ``www.`` names
become links. :func:`literal_markdown` backslash-escapes every ASCII punctuation character, which CommonMark
always reads as the character itself, so no construct can start; with every colon escaped Streamlit does
not even load its emoji plugin (it looks for an unescaped ``:name:`` first). Raw HTML is shown as text too,
since ``<`` and ``&`` are escaped.

Bidi control characters (U+202E RIGHT-TO-LEFT OVERRIDE and friends) are invisible and flip the order of the
text around them, so a transcript line can be made to read differently from what was sent
(CVE-2021-42574, "Trojan Source"). :func:`without_bidi_controls` removes them; the letters of right-to-left
scripts need none of them to display correctly.

Pure functions; nothing here imports streamlit.
"""

from __future__ import annotations

import re
import string

BIDI_CONTROLS = frozenset(
    "\u061c"  # ARABIC LETTER MARK
    "\u200e\u200f"  # LEFT-TO-RIGHT / RIGHT-TO-LEFT MARK
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings, POP DIRECTIONAL FORMATTING, overrides
    "\u2066\u2067\u2068\u2069"  # isolates, POP DIRECTIONAL ISOLATE
)
_BIDI = re.compile("[" + "".join(sorted(BIDI_CONTROLS)) + "]")
_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
_LEADING_BLANKS = re.compile(r"^[ \t]+", re.MULTILINE)


def without_bidi_controls(text: str) -> str:
    """``text`` without the invisible characters that reorder what is displayed around them."""
    return _BIDI.sub("", text)


def literal_markdown(text: str) -> str:
    """Markdown that Streamlit displays as exactly ``text`` (minus bidi controls): no emphasis, links, HTML,
    headings, lists, code, colours, emoji or maths; line breaks kept as line breaks."""
    escaped = _PUNCTUATION.sub(r"\\\1", without_bidi_controls(text).replace("\r\n", "\n").replace("\r", "\n"))
    # Leading blanks would make an indented code block; no-break spaces look the same and mean nothing.
    escaped = _LEADING_BLANKS.sub(lambda m: "\u00a0" * len(m.group().expandtabs(4)), escaped)
    return escaped.replace("\n", "  \n")  # a hard line break: Markdown joins plain newlines into one line
