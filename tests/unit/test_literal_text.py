"""lib/literal_text.py: user text displayed as typed in Markdown, and without bidi controls.

No Markdown renderer is installed here, so the tests check the two properties that make the text literal
under CommonMark: no punctuation is left unescaped (every Markdown, HTML, Streamlit directive and maths
construct needs one to start), and undoing CommonMark's escapes and hard breaks gives back what was typed.
"""

from __future__ import annotations

import re
import string

import pytest

from lib.literal_text import BIDI_CONTROLS, literal_markdown, without_bidi_controls


def as_displayed(markdown: str) -> str:
    """What CommonMark shows for text made only of escapes, hard breaks and no-break spaces."""
    text = re.sub(r"\\([" + re.escape(string.punctuation) + "])", r"\1", markdown.replace("  \n", "\n"))
    return text.replace("\u00a0", " ")


def unescaped(markdown: str) -> list[str]:
    """Punctuation a Markdown parser would read as syntax (not preceded by an escaping backslash)."""
    stripped = re.sub(r"\\[" + re.escape(string.punctuation) + "]", "", markdown)
    return re.findall("[" + re.escape(string.punctuation) + "]", stripped)


TYPED = [
    "**bold** and _italic_ and ~~gone~~",
    "[click me](https://evil.example/phish) ![img](x.png) www.example.com",
    "<b>html</b> <script>alert(1)</script> &lt;entity&gt; &amp;",
    "# not a heading",
    "- not a list\n1. nor this\n> nor a quote\n+ nor this",
    "`code` and ```fenced```",
    "a | b\n--|--\n1 | 2",
    "setext\n===",
    "<https://autolink.example> and \\*already escaped\\*",
    ":red[alert] :material/home: :smile: $x^2$ $$y$$",
]


@pytest.mark.parametrize("typed", TYPED)
def test_no_markdown_construct_can_start_and_the_text_reads_as_typed(typed: str) -> None:
    markdown = literal_markdown(typed)
    assert unescaped(markdown) == [], markdown
    assert as_displayed(markdown) == typed


def test_lines_stay_lines_and_indentation_does_not_make_a_code_block() -> None:
    markdown = literal_markdown("first\n    indented\r\nlast")
    assert markdown == "first  \n\u00a0\u00a0\u00a0\u00a0indented  \nlast"
    assert as_displayed(markdown) == "first\n    indented\nlast"


def test_streamlit_does_not_load_its_emoji_plugin_for_escaped_text() -> None:
    # Streamlit's own test (StreamlitMarkdown.tsx) for whether a source needs remark-emoji.
    needs_emoji = re.compile(r":(?!material\/|streamlit:)[\w+-][\w_+-]*:")
    assert needs_emoji.search(":smile: :+1: a:b:c")
    assert not needs_emoji.search(literal_markdown(":smile: :+1: a:b:c"))


def test_every_ascii_punctuation_character_is_escaped_once() -> None:
    assert literal_markdown(string.punctuation) == "".join("\\" + c for c in string.punctuation)


def test_right_to_left_override_cannot_flip_the_transcript() -> None:
    typed = "pay \u202eylno 01$\u202c today \u2067hidden\u2069 \u200fmark\u200e \u202aa\u202b\u202d\u061c"
    assert without_bidi_controls(typed) == "pay ylno 01$ today hidden mark a"
    assert not BIDI_CONTROLS & set(literal_markdown(typed))
    assert {"\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f"} <= BIDI_CONTROLS


def test_right_to_left_letters_and_plain_text_are_kept() -> None:
    assert without_bidi_controls("שלום مرحبا") == "שלום مرحبا"
    assert literal_markdown("שלום مرحبا") == "שלום مرحبا"
    assert literal_markdown("Hello there how are you") == "Hello there how are you"
