"""Answers to ``talk``/``chat`` tasks, spoken sentence by sentence.

With a language model configured, the session's knowledge base is its system prompt and the answer
streams from an OpenAI-compatible ``/chat/completions`` endpoint (e.g. a local Ollama). Without one,
or when the model cannot be reached, the answer is the knowledge-base passage that best matches the
question (BM25), found offline in well under a millisecond.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import unicodedata
from collections import Counter, deque
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from lib.settings import Secret

log = logging.getLogger("avatar_ops.engine.responder")

HISTORY_TURNS = 6
MAX_ANSWER_CHARS = 350
MAX_ANSWER_SENTENCES = 3

SPOKEN_STYLE = (
    "You are a live video avatar and everything you write is spoken aloud. Answer briefly, in one to "
    "three plain spoken sentences. Do not use markdown, lists, headings, code, links or emoji."
)
GROUNDING = "Answer from the text above. If it does not contain the answer, say honestly that you don't know."
NO_KNOWLEDGE_BASE = "I don't have a knowledge base for this session, so I can't answer that yet."
DONT_KNOW = "I'm sorry, I don't know that. I can only answer from my knowledge base."
DIDNT_CATCH = "Sorry, I didn't catch a question there. Could you say it again?"
LLM_UNREACHABLE = "I can't reach the language model right now, so I'm answering from my knowledge base instead."
LLM_BROKE_OFF = "The language model stopped answering, so that answer may be incomplete."
LLM_SILENT = "The language model gave no answer, so I'm answering from my knowledge base instead."


@dataclass(frozen=True)
class LlmConfig:
    base_url: str
    model: str
    api_key: Secret | None = field(default=None, repr=False)
    timeout: float = 30.0

    @property
    def endpoint(self) -> str:
        base = self.base_url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --- speakable sentences ---------------------------------------------------------------------------

# Periods after these words do not end a sentence; after the soft ones, only before a capital letter.
_ABBREVIATIONS = _wordset("mr mrs ms dr prof sr jr st vs e.g i.e eg ie approx dept fig no nr tel ext ca cf resp")
_SOFT_ABBREVIATIONS = _wordset("a.m p.m etc inc ltd co")
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)")
_LINE_PREFIX = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-*+•·▪‣–]\s+|\d{1,3}[.)]\s+|\[[ xX]\]\s+)+")
_QA_PREFIX = re.compile(r"^(?:q|a|question|answer)\s*:\s*", re.IGNORECASE)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_CODE_FENCE = re.compile(r"```[\w+-]*")
_EMPHASIS = re.compile(r"\*+|~~|`+|(?<!\w)_+|_+(?!\w)")


def speakable(text: str) -> str:
    """One piece of text as a TTS engine should read it: no markdown, no bullets, tidy punctuation."""
    text = _CODE_FENCE.sub(" ", text)
    text = _QA_PREFIX.sub("", _LINE_PREFIX.sub("", text))
    text = _LINK.sub(r"\1", text)
    text = _HTML_TAG.sub(" ", text)
    text = _EMPHASIS.sub("", text).replace("|", " ").replace("#", " ")
    text = " ".join(text.split()).strip(" -–—:;,")
    if not any(ch.isalnum() for ch in text):
        return ""
    if text[-1].isalnum() or text[-1] in "%)\"'”’":
        text += "."
    return text


def _ends_sentence(text: str, match: re.Match[str], limit: int, final: bool) -> bool | None:
    """Whether the punctuation ``match`` ends a sentence; None: undecidable until more text arrives."""
    if match.group()[0] != ".":
        return True
    words = text[: match.start()].split()
    if not words:
        return True
    word = words[-1].lstrip("([\"'“‘").lower()
    if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
        return False
    if len(words) == 1 and word.isdigit():  # "1. " opening a numbered list item
        return False
    if word in _SOFT_ABBREVIATIONS:
        following = re.search(r"\S", text[match.end() : limit])
        if following is None:
            return True if final or limit < len(text) else None
        return following.group().isupper()
    return True


def _cut(text: str, final: bool) -> int | None:
    """Offset just past the first complete sentence or line in ``text``; None when there is none yet."""
    newline = text.find("\n")
    limit = newline if newline >= 0 else len(text)
    for match in _SENTENCE_END.finditer(text, 0, limit):
        verdict = _ends_sentence(text, match, limit, final)
        if verdict is None:
            return None
        if verdict:
            return match.end()
    return newline + 1 if newline >= 0 else None


def split_sentences(text: str) -> list[str]:
    """All speakable sentences of ``text``; every line break also ends a sentence."""
    sentences = []
    while text:
        cut = _cut(text, final=True)
        piece, text = (text, "") if cut is None else (text[:cut], text[cut:])
        if sentence := speakable(piece):
            sentences.append(sentence)
    return sentences


class SentenceStream:
    """Turns streamed text fragments into complete speakable sentences as soon as each one ends."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, fragment: str) -> list[str]:
        self._buffer += fragment
        sentences = []
        while (cut := _cut(self._buffer, final=False)) is not None:
            piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
            if sentence := speakable(piece):
                sentences.append(sentence)
        return sentences

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer, ""
        return split_sentences(rest)


# --- terms --------------------------------------------------------------------------------------------

_STOP_WORDS = _wordset(
    """a about above after again against all also am an and any anyone anything are aren as at be because
    been before being below between both but by can cannot could couldn did didn do does doesn doing don
    down during each either else ever every everything few for from further get gets got had hadn has hasn
    have haven having he her here hers herself hey hi him himself his hello how however i if in into is isn
    it its itself just know let like me might mine more most much must my myself need neither no nor not
    now of off ok okay on once only or other ought our ours ourselves out over own please really same shall
    she should shouldn so some something such tell than thank thanks that the their theirs them themselves
    then there these they thing things this those through to too under until up upon us very want was
    wasn we were weren what whatever when whenever where wherever whether which while who whom whose why
    will with within without won wonder wondering would wouldn yes yet you your yours yourself yourselves
    """
)
# Frequent but uninformative words that make poor "ask me about ..." topics (stems).
_GENERIC = _wordset(
    """open clos tak mak use giv com need includ provid offer keep call find work start run see look help
    day tim year week month hour minut number way lot one two thre four fiv six seven eight nine ten first
    last new good great best availabl also plea sure thank"""
)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*(?:-[^\W_]+)*")
_ANAPHORA = re.compile(
    r"^(?:it|its|it's|they|their|them|this|these|that|those|he|she|his|her|also|however|but|so|then|"
    r"otherwise|additionally|which)\b",
    re.IGNORECASE,
)


def _fold(text: str) -> str:
    if text.isascii():
        return text
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


_VOWEL = re.compile(r"[aeiouy]")


def _undouble(word: str) -> str:
    if len(word) > 2 and word[-1] == word[-2] and word[-1] not in "aeiouylsz":
        return word[:-1]
    return word


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A deliberately light English stemmer: plural -s/-es/-ies, -ing, -ed and a final -e."""
    if len(word) <= 2 or not word.isalpha():
        return word
    if len(word) <= 3:
        pass
    elif word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "ches", "shes", "xes", "zes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ing") and len(word) >= 5 and _VOWEL.search(word[:-3]):
        word = _undouble(word[:-3])
    elif word.endswith("ed") and not word.endswith("eed") and len(word) >= 4 and _VOWEL.search(word[:-2]):
        word = _undouble(word[:-2])
    if word.endswith("e") and not word.endswith("ee") and len(word) >= 3:
        word = word[:-1]
    return word


def _tokens(text: str) -> list[tuple[str, str]]:
    """(word as written, term) pairs of the content words of ``text``, in order."""
    pairs = []
    for match in _WORD.finditer(_fold(text)):
        surface = match.group().replace("’", "'").split("'")[0]
        word = surface.lower()
        parts = word.split("-")
        forms = [(surface, word)]
        if len(parts) > 1:  # "Wi-Fi" matches "wi fi" and "wifi"
            forms = [*((part, part) for part in parts), (surface, "".join(parts))]
        for shown, form in forms:
            if form.isdigit() or (len(form) > 1 and form not in _STOP_WORDS):
                pairs.append((shown, stem(form)))
    return pairs


def _terms(text: str) -> list[str]:
    return [term for _, term in _tokens(text)]


# --- the knowledge base ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sentence:
    text: str
    block: int
    question: bool
    tokens: tuple[tuple[str, str], ...]  # (word as written, term)

    @property
    def terms(self) -> list[str]:
        return [term for _, term in self.tokens]


@dataclass
class _Passage:
    sentence: int
    body: Counter[str]
    context: dict[str, float]  # terms around the sentence (headings, the question it answers) → weight


_MAX_SENTENCE_CHARS = 400
_HEADING_WEIGHT = 0.5
_QUESTION_WEIGHT = 1.0
_GENERIC_TITLES = _wordset(
    "faq faqs knowledge base information info notes document readme about questions "
    "answers frequently asked overview introduction"
)


_WELCOME = re.compile(r"^welcome to\s+", re.IGNORECASE)


def _is_list_item(line: str) -> bool:
    return bool(re.match(r"\s*(?:[-*+•·▪‣–]|\d{1,3}[.)])\s+", line))


def _is_heading(line: str) -> bool:
    """A line on its own that names what follows ("Parking", "Opening Hours", "How do refunds work?")."""
    stripped = line.strip()
    if stripped.startswith("#") or stripped.endswith((":", "?")):
        return True
    words = stripped.split()
    if _is_list_item(line) or len(words) > 6 or stripped[-1] in ".!;,":
        return False
    return len(words) <= 3 or all(w[0].isupper() for w in words if len(w) >= 4)


def _windows(sentence: str) -> list[str]:
    """Very long run-on sentences are cut into word windows, so one match does not drag in a page."""
    if len(sentence) <= _MAX_SENTENCE_CHARS:
        return [sentence]
    windows, current = [], ""
    for word in sentence.split():
        if current and len(current) + len(word) > 300:
            windows.append(current)
            current = ""
        current = f"{current} {word}".strip()
    windows.append(current)
    return [w if w[-1] in ".!?" else w + "." for w in windows]


class _Document:
    """The knowledge base split into sentences, with where each sentence sits (paragraph, section)."""

    def __init__(self, text: str) -> None:
        self.title = ""
        self.sentences: list[_Sentence] = []
        self.headings: list[str] = []  # section and label in force for each sentence
        blocks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").replace("\r", "\n"))
        section = ""
        for number, block in enumerate(blocks):
            lines = [line for line in block.split("\n") if line.strip()]
            if not lines:
                continue
            first_block = not self.sentences and not section
            if len(lines) == 1 and _is_heading(lines[0]):
                section = speakable(lines[0]).rstrip(".:")
                if first_block and not lines[0].strip().endswith("?"):
                    self.title = _WELCOME.sub("", section)
                continue
            label = ""
            units: list[tuple[str, str]] = []  # (text, the section and label it sits under)
            for line in lines:
                if line.lstrip().startswith("#"):
                    section, label = speakable(line).rstrip(".:"), ""
                    if first_block and not units:
                        self.title = _WELCOME.sub("", section)
                elif line.rstrip().endswith(":") and not _is_list_item(line) and len(line) <= 80:
                    label = speakable(line).rstrip(".:")
                elif (
                    units
                    and line.lstrip()[:1].islower()
                    and not _is_list_item(line)
                    and units[-1][0].rstrip()[-1:] not in ".!?"
                ):
                    units[-1] = (f"{units[-1][0]} {line.strip()}", units[-1][1])  # a soft-wrapped line
                else:
                    units.append((line.strip(), " ".join(p for p in (section, label) if p)))
            for unit, heading in units:
                for sentence in split_sentences(unit):
                    for window in _windows(sentence):
                        self.sentences.append(_Sentence(window, number, window.endswith("?"), tuple(_tokens(window))))
                        self.headings.append(heading)


class _Index:
    """BM25 over knowledge-base sentences, with section headings and preceding questions as context."""

    K1 = 1.5
    B = 0.75
    BIGRAM_WEIGHT = 0.5

    def __init__(self, document: _Document) -> None:
        self.doc = document
        sentences = document.sentences
        self.passages: list[_Passage] = []
        self.passage_of: dict[int, int] = {}
        question_terms: dict[str, float] = {}
        for i, sentence in enumerate(sentences):
            same_block = i + 1 < len(sentences) and sentences[i + 1].block == sentence.block
            if sentence.question and same_block:
                question_terms = {t: _QUESTION_WEIGHT for t in sentence.terms}
                continue  # a question in the text is context for its answer, never an answer itself
            if i > 0 and sentences[i - 1].block != sentence.block:
                question_terms = {}
            heading = document.headings[i]
            weight = _QUESTION_WEIGHT if heading.endswith("?") else _HEADING_WEIGHT
            context = {t: weight for t in _terms(heading)}
            if _ANAPHORA.match(sentence.text) and i > 0 and sentences[i - 1].block == sentence.block:
                context.update({t: _HEADING_WEIGHT for t in sentences[i - 1].terms})
            context.update(question_terms)
            body = Counter(sentence.terms)
            for term in body:
                context.pop(term, None)
            self.passage_of[i] = len(self.passages)
            self.passages.append(_Passage(i, body, context))

        n = len(self.passages)
        # Rarity counts where a term is written; a section heading would otherwise make its own word common.
        df: Counter[str] = Counter()
        context_df: Counter[str] = Counter()
        for p in self.passages:
            df.update(p.body)
            context_df.update(p.context)
        df.update({t: f for t, f in context_df.items() if t not in df})
        self.idf = {t: self._idf(n, f) for t, f in df.items()}
        self.unknown_idf = self._idf(n, 1)  # a word the knowledge base lacks counts like its rarest word
        avgdl = sum(sum(p.body.values()) for p in self.passages) / max(n, 1) or 1.0
        self.postings: dict[str, list[tuple[int, float]]] = {}
        self.bigrams: dict[tuple[str, str], list[int]] = {}
        for pid, p in enumerate(self.passages):
            norm = self.K1 * (1 - self.B + self.B * sum(p.body.values()) / avgdl)
            for term, tf in p.body.items():
                weight = self.idf[term] * tf * (self.K1 + 1) / (tf + norm)
                self.postings.setdefault(term, []).append((pid, weight))
            for term, w in p.context.items():
                self.postings.setdefault(term, []).append((pid, w * self.idf[term]))
            terms = sentences[p.sentence].terms
            for pair in set(pairwise(terms)):
                self.bigrams.setdefault(pair, []).append(pid)

    @staticmethod
    def _idf(n: int, df: int) -> float:
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def search(self, question: str) -> tuple[dict[int, float], float]:
        """Scores of matching passages, and how much of the question the best one covers (0–1)."""
        terms = _terms(question)
        scores: dict[int, float] = {}
        for term in dict.fromkeys(terms):
            for pid, weight in self.postings.get(term, ()):
                scores[pid] = scores.get(pid, 0.0) + weight
        for pair in set(pairwise(terms)):
            bonus = self.BIGRAM_WEIGHT * min(self.idf.get(t, 0.0) for t in pair)
            for pid in self.bigrams.get(pair, ()):
                scores[pid] = scores.get(pid, 0.0) + bonus
        if not scores:
            return scores, 0.0
        best = self.passages[max(scores, key=scores.__getitem__)]
        wanted = {t: self.idf.get(t, self.unknown_idf) for t in terms}
        found = sum(w for t, w in wanted.items() if t in best.body or t in best.context)
        return scores, found / sum(wanted.values())

    def keywords(self, count: int = 3) -> list[str]:
        """Words the knowledge base is most about, one per passage where possible, as written there."""
        seen: dict[str, tuple[int, int, int, str]] = {}  # term → (occurrences, first position, passage, word)
        position = 0
        for pid, p in enumerate(self.passages):
            for index, (surface, term) in enumerate(self.doc.sentences[p.sentence].tokens):
                position += 1
                if len(term) < 4 or not term.isalpha() or term in _GENERIC:
                    continue
                if term in seen:
                    n, first, where, word = seen[term]
                    seen[term] = (n + 1, first, where, word)
                    continue
                word = surface.lower() if index == 0 and surface[1:].islower() else surface
                seen[term] = (1, position, pid, word)
        ranked = sorted(seen.values(), key=lambda v: (-v[0], v[1]))
        chosen: list[tuple[int, int, int, str]] = []
        passages_used: set[int] = set()
        for entry in ranked:
            if entry[2] not in passages_used:
                chosen.append(entry)
                passages_used.add(entry[2])
            if len(chosen) == count:
                break
        chosen += [e for e in ranked if e not in chosen][: count - len(chosen)]
        return [e[3] for e in sorted(chosen, key=lambda v: v[1])]


# --- small talk --------------------------------------------------------------------------------------

_GREETING = (
    r"(?:hi|hello|hey|hiya|howdy|greetings|yo|hey there|good (?:morning|afternoon|evening|day))"
    r"(?: (?:there|everyone|everybody|all|friend|avatar|again))?"
)
_HOW_ARE_YOU = r"how (?:are you|are you doing|is it going|s it going|do you do)(?: today)?"
_SMALL_TALK = {
    "greeting": re.compile(rf"^{_GREETING}(?: {_HOW_ARE_YOU})?$"),
    "how_are_you": re.compile(rf"^{_HOW_ARE_YOU}$"),
    "thanks": re.compile(
        r"^(?:(?:ok|okay|great|perfect|awesome|cool|nice|good) )?(?:thanks|thank you|thx|ty|"
        r"cheers|many thanks)(?: (?:so much|very much|a lot|again))?(?: that (?:was|s) "
        r"(?:helpful|great|useful))?$"
    ),
    "bye": re.compile(
        r"^(?:(?:ok|okay|thanks|thank you) )?(?:bye|goodbye|bye bye|see you(?: later)?|"
        r"good night|farewell|take care|talk to you later)(?: (?:for now|then|now))?$"
    ),
    "identity": re.compile(
        r"^(?:who are you|what are you|what is your name|what s your name|"
        r"what can you do|what do you do|what can i ask(?: you)?(?: about)?|"
        r"what do you know(?: about)?|what can you (?:tell me|help(?: me)? with|"
        r"talk about)|how can you help(?: me)?|help|introduce yourself|"
        r"tell me about yourself)(?: please)?$"
    ),
}
_GREETING_PREFIX = re.compile(rf"^\s*{_GREETING}\b[\s,!.]*", re.IGNORECASE)
# "What can you tell me about your product?", "What does this app do?": the knowledge base's subject, which it
# rarely names that way. Only when nothing in it matches: then its opening, which says what it is about, beats
# "I don't know" (the first thing a demo audience asks).
_OVERVIEW = re.compile(
    r"\b(?:your|this|the|that|our) (?:product|company|business|service|app|application|tool|platform|dashboard"
    r"|project|offering|solution|software|system|organisation|organization|team)s?\b"
    r"|^(?:what is|what s|what does) (?:it|this)(?: do| about)?$"
)


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", _fold(text).lower().replace("’", "'")).split())


def _small_talk(question: str) -> str | None:
    said = _normalise(question)
    return next((kind for kind, pattern in _SMALL_TALK.items() if pattern.match(said)), None)


# --- the responder -----------------------------------------------------------------------------------


class _Unavailable(Exception):
    """The language model could not answer; the message is safe to log (no key, no body)."""


class _Bearer(requests.auth.AuthBase):
    def __init__(self, key: Secret) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._key.reveal()}"
        return request

    def __repr__(self) -> str:
        return "_Bearer(********)"


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def _delta_text(event: Any) -> str:
    try:
        choice = event["choices"][0]
        part = choice.get("delta") or choice.get("message") or {}
        return part.get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""


def _lines(response: requests.Response) -> Iterator[str]:
    """Lines of a streamed body as they arrive, whether or not the server uses chunked encoding."""
    raw = response.raw
    if raw.chunked:
        chunks: Iterator[bytes] = response.iter_content(chunk_size=None)
    else:  # read1 returns what has arrived; read(n) would wait for n bytes
        chunks = iter(lambda: raw.read1(8192, decode_content=True), b"")
    pending = b""
    for chunk in chunks:
        *complete, pending = (pending + chunk).split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


class Responder:
    """One session's answerer; keeps the last few turns of the conversation for the language model."""

    instant: bool

    def __init__(self, knowledge_base: str | None, llm: LlmConfig | None = None) -> None:
        self._knowledge = (knowledge_base or "").strip()
        self._llm = llm
        self.instant = llm is None
        self._index = _Index(_Document(self._knowledge))
        self._topic = self._describe_topic()
        self._history: deque[tuple[str, str]] = deque(maxlen=HISTORY_TURNS)
        self._lock = threading.Lock()
        self._http: requests.Session | None = None
        self._llm_label = _safe_url(llm.endpoint) if llm else ""
        if llm is not None:
            self._http = requests.Session()
            # Loopback needs no proxy, and .netrc must never replace the configured key.
            self._http.trust_env = not _is_loopback(llm.endpoint)

    def __repr__(self) -> str:
        mode = f"llm={self._llm_label!r}" if self._llm else "retrieval"
        return f"Responder({mode}, passages={len(self._index.passages)})"

    def answer(self, question: str) -> Iterator[str]:
        if not question.strip():
            return iter([DIDNT_CATCH])
        if self._llm is None:
            return iter(self._retrieve(question))
        return self._ask_llm(question)

    # --- retrieval ---------------------------------------------------------------------------------
    def _describe_topic(self) -> str:
        title = self._index.doc.title
        if title and not set(_normalise(title).split()) <= _GENERIC_TITLES:
            return title
        words = self._index.keywords()
        if not words:
            return ""
        listed = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
        return f"things like {listed}"

    def _small_talk_answer(self, kind: str) -> list[str]:
        topic, has_kb = self._topic, bool(self._index.passages)
        about = f"about {topic}" if topic else "from my knowledge base"
        if kind == "greeting":
            if not has_kb:
                return ["Hello!", "I don't have a knowledge base for this session yet, so I can only chat a little."]
            return ["Hello!", f"I can answer your questions {about}.", "What would you like to know?"]
        if kind == "how_are_you":
            return [
                "I'm doing well, thank you for asking.",
                f"What would you like to know {about}?" if has_kb else "How can I help?",
            ]
        if kind == "thanks":
            return ["You're welcome!", "Is there anything else you'd like to know?"]
        if kind == "bye":
            return ["Goodbye, and thanks for talking with me!"]
        if not has_kb:
            return [
                "I'm a virtual assistant for this session.",
                "I don't have a knowledge base yet, so I can't answer questions about a topic.",
            ]
        return ["I'm a virtual assistant for this session.", f"I answer questions {about}."]

    def _retrieve(self, question: str) -> list[str]:
        kind = _small_talk(question)
        if kind is None:
            rest = _GREETING_PREFIX.sub("", question, count=1)
            if rest.strip() and rest != question:
                question = rest
                kind = _small_talk(question)
        if kind is not None:
            return self._small_talk_answer(kind)
        if not self._index.passages:
            return [NO_KNOWLEDGE_BASE]
        scores, coverage = self._index.search(question)
        # An answer must be about a good part of what was asked, not one incidental shared word.
        if not scores or coverage < 0.2:
            if _OVERVIEW.search(_normalise(question)):
                return self._compose({0: 1.0})
            return [DONT_KNOW]
        return self._compose(scores)

    def _compose(self, scores: dict[int, float]) -> list[str]:
        sentences = self._index.doc.sentences
        best_pid = max(scores, key=scores.__getitem__)
        best = scores[best_pid]
        first = self._index.passages[best_pid].sentence

        def joins(i: int, anchor: int) -> bool:
            return (
                0 <= i < len(sentences) and sentences[i].block == sentences[anchor].block and not sentences[i].question
            )

        def relevant(i: int) -> bool:
            return scores.get(self._index.passage_of.get(i, -1), 0.0) >= 0.6 * best

        chosen = [first]
        if joins(first - 1, first) and (_ANAPHORA.match(sentences[first].text) or relevant(first - 1)):
            chosen.insert(0, first - 1)
        length = sum(len(sentences[i].text) + 1 for i in chosen)
        following = first + 1
        while len(chosen) < MAX_ANSWER_SENTENCES and joins(following, first):
            text = sentences[following].text
            if not (relevant(following) or _ANAPHORA.match(text)) or length + len(text) > MAX_ANSWER_CHARS:
                break
            chosen.append(following)
            length += len(text) + 1
            following += 1
        spoken = [sentences[i].text for i in chosen]
        while len(spoken) > 1 and sum(len(s) + 1 for s in spoken) > MAX_ANSWER_CHARS:
            spoken.pop()
        return [_trim(s) for s in spoken]

    # --- language model ----------------------------------------------------------------------------
    def _ask_llm(self, question: str) -> Iterator[str]:
        spoken: list[str] = []
        stream = SentenceStream()
        deltas = self._stream_deltas(question)
        try:
            with closing(deltas):
                for delta in deltas:
                    for sentence in stream.feed(delta):
                        spoken.append(sentence)
                        yield sentence
                for sentence in stream.flush():
                    spoken.append(sentence)
                    yield sentence
        except (_Unavailable, requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            reason = str(exc) if isinstance(exc, _Unavailable) else type(exc).__name__
            log.warning("Language model at %s failed (%s); answering from the knowledge base.", self._llm_label, reason)
            if spoken:
                yield from stream.flush()
                yield LLM_BROKE_OFF
            else:
                yield LLM_UNREACHABLE
                yield from self._retrieve(question)
            return
        finally:
            if spoken:
                with self._lock:
                    self._history.append((question, " ".join(spoken)))
        if not spoken:
            yield LLM_SILENT
            yield from self._retrieve(question)

    def _messages(self, question: str) -> list[dict[str, str]]:
        system = f"{self._knowledge}\n\n{SPOKEN_STYLE} {GROUNDING}" if self._knowledge else SPOKEN_STYLE
        messages = [{"role": "system", "content": system}]
        with self._lock:
            for asked, answered in self._history:
                messages.append({"role": "user", "content": asked})
                messages.append({"role": "assistant", "content": answered})
        messages.append({"role": "user", "content": question})
        return messages

    def _stream_deltas(self, question: str) -> Generator[str, None, None]:
        assert self._llm is not None and self._http is not None
        cfg = self._llm
        body = {"model": cfg.model, "messages": self._messages(question), "stream": True}
        with self._http.post(
            cfg.endpoint,
            json=body,
            stream=True,
            headers={"Accept": "text/event-stream"},
            auth=_Bearer(cfg.api_key) if cfg.api_key else None,
            timeout=(min(5.0, cfg.timeout), cfg.timeout),
        ) as response:
            if not 200 <= response.status_code < 300:
                raise _Unavailable(f"HTTP {response.status_code}")
            if "json" in response.headers.get("Content-Type", ""):  # a server that ignored stream: true
                try:
                    text = _delta_text(response.json())
                except ValueError:
                    raise _Unavailable("unreadable JSON response") from None
                yield text
                return
            for line in _lines(response):
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    event = json.loads(data)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("error"):
                    raise _Unavailable("the model reported an error")
                if text := _delta_text(event):
                    yield text


def _trim(sentence: str, limit: int = MAX_ANSWER_CHARS) -> str:
    """One over-long sentence, cut at the last clause (or word) boundary that fits."""
    if len(sentence) <= limit:
        return sentence
    head = sentence[:limit]
    cut = max(head.rfind(mark) for mark in (",", ";", ":", " –", " —"))
    if cut < limit // 2:
        cut = head.rfind(" ")
    return head[: max(cut, 1)].rstrip(" ,;:–—-") + "."
