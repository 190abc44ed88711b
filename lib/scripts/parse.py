"""Parse a pasted training script into segments the avatar says one after another.

Formats ``parse_script`` understands (they can be mixed in one script):

* plain text — one segment per paragraph (paragraphs are separated by blank lines);
* a Markdown list (``- item``, ``* item``, ``1. item``, ``1) item``) — one segment per item;
* a YAML-like list — ``- say: Welcome.`` optionally followed by an indented ``pause: 2`` (seconds);
* pause markers anywhere — ``[pause 3s]``, ``<pause 2>``, ``[pause 500ms]`` — add a pause after the
  segment before them.

Headings (``# Title``) are titles, not lines to say, and are skipped; Markdown emphasis, inline code and
links are reduced to their text. Segments longer than the API's 10,000 characters are split at sentence
boundaries.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

MAX_SEGMENT_CHARS = 10_000  # the streaming API's limit for one task's text
MAX_PAUSE_S = 600.0


@dataclass(frozen=True)
class Segment:
    text: str
    pause_after_s: float | None = None  # None: the runner's default pause


_PAUSE_MARKER = re.compile(
    r"[\[<]\s*pause\s*[:=]?\s*(?:(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?)?)?\s*[\]>]", re.IGNORECASE
)
_PAUSE_KEY = re.compile(r"^pause\s*:\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?)?\s*$", re.IGNORECASE)
_SAY_KEY = re.compile(r"^(?:say|text)\s*:\s*(.*)$", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+(?:\[[ xX]\]\s+)?(.*)$")
_HEADING = re.compile(r"^\s*#{1,6}(?:\s|$)")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")

_EMPHASIS = (
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # image → its alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # link → its text
    (re.compile(r"`([^`]*)`"), r"\1"),
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])"), r"\1"),
)


def strip_markdown(text: str) -> str:
    """The words of a line of Markdown, as the avatar should say them."""
    for pattern, repl in _EMPHASIS:
        text = pattern.sub(repl, text)
    return " ".join(text.split())


def _seconds(number: str | None, unit: str | None) -> float | None:
    if number is None:
        return None
    value = float(number) / (1000.0 if (unit or "").lower() == "ms" else 1.0)
    if value > MAX_PAUSE_S:
        raise ValueError(f"A pause of {value:g} s is too long: the longest pause is {MAX_PAUSE_S:g} s.")
    return value


def _unquote(value: str) -> str:
    value = value.strip()
    if value in ("|", ">", "|-", ">-"):  # YAML block scalar: the text follows on indented lines
        return ""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


class _Builder:
    """Collects lines into segments; a pause applies to the last segment started."""

    def __init__(self) -> None:
        self.parts: list[list[str]] = []
        self.pauses: list[float | None] = []
        self.open = False

    def start(self, text: str) -> None:
        self.parts.append([text] if text else [])
        self.pauses.append(None)
        self.open = True

    def add(self, text: str) -> None:
        if not text:
            return
        if self.open:
            self.parts[-1].append(text)
        else:
            self.start(text)

    def close(self) -> None:
        self.open = False

    def pause(self, seconds: float | None) -> None:
        self.close()
        if not self.pauses or seconds is None:
            return  # a pause before the first segment, or a bare marker: nothing to add
        self.pauses[-1] = (self.pauses[-1] or 0.0) + seconds

    def segments(self) -> list[Segment]:
        out: list[Segment] = []
        for parts, pause in zip(self.parts, self.pauses, strict=True):
            text = strip_markdown(" ".join(parts))
            if text:
                out.extend(split_long(text, pause))
            elif pause is not None and out:  # a say-less item with a pause still pauses
                out[-1] = replace(out[-1], pause_after_s=(out[-1].pause_after_s or 0.0) + pause)
        return out


def parse_script(text: str) -> list[Segment]:
    """Segments of a training script, in order. Raises ValueError when there is nothing to say."""
    builder = _Builder()
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        if not line:
            builder.close()
            continue
        if _HEADING.match(line):
            builder.close()
            continue
        line = re.sub(r"^(?:>\s?)+", "", line)  # blockquote
        item = _LIST_ITEM.match(raw)
        if item:
            builder.close()
            line = item.group(1).strip()
        _parse_line(builder, line, new_item=bool(item))
    segments = builder.segments()
    if not segments:
        raise ValueError("The script is empty: write at least one paragraph or list item for the avatar to say.")
    return segments


def _parse_line(builder: _Builder, line: str, *, new_item: bool) -> None:
    pause = _PAUSE_KEY.match(line)
    if pause:
        builder.pause(_seconds(pause.group(1), pause.group(2)))
        return
    say = _SAY_KEY.match(line)
    if say:
        builder.close()
        builder.start(_unquote(say.group(1)))
        return
    if new_item:
        builder.start("")
    pos = 0
    for marker in _PAUSE_MARKER.finditer(line):
        builder.add(line[pos : marker.start()].strip())
        builder.pause(_seconds(marker.group(1), marker.group(2)))
        pos = marker.end()
    builder.add(line[pos:].strip())


def split_long(text: str, pause_after_s: float | None = None, limit: int = MAX_SEGMENT_CHARS) -> list[Segment]:
    """``text`` as segments of at most ``limit`` characters, cut at sentence ends (else at spaces).
    The pieces follow each other without a pause; the last one keeps ``pause_after_s``."""
    if len(text) <= limit:
        return [Segment(text, pause_after_s)]
    pieces: list[str] = []
    current = ""
    for sentence in _sentences(text, limit):
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return [Segment(p, 0.0) for p in pieces[:-1]] + [Segment(pieces[-1], pause_after_s)]


def _sentences(text: str, limit: int) -> list[str]:
    out: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit + 1)
            cut = cut if cut > 0 else limit
            out.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            out.append(sentence)
    return out


def decode_script(data: bytes) -> str:
    """The text of an uploaded script file (UTF-8, with or without BOM, or UTF-16 with BOM)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError("The script file is not UTF-8 text. Save it as UTF-8 and upload it again.") from exc


def estimate_seconds(segments: list[Segment], default_pause_s: float = 1.0, chars_per_second: float = 14.0) -> float:
    """Rough running time of a script (speech at the local voice's rate plus pauses), for the page."""
    speech = sum(len(s.text) for s in segments) / chars_per_second
    pauses = sum(default_pause_s if s.pause_after_s is None else s.pause_after_s for s in segments[:-1])
    return math.ceil(speech + pauses)
