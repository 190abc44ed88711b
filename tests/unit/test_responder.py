from __future__ import annotations

import json
import logging
import random
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lib.engine.responder import (
    DONT_KNOW,
    LLM_BROKE_OFF,
    LLM_SILENT,
    LLM_UNREACHABLE,
    MAX_ANSWER_CHARS,
    NO_KNOWLEDGE_BASE,
    SPOKEN_STYLE,
    LlmConfig,
    Responder,
    SentenceStream,
    split_sentences,
)
from lib.settings import Secret

KB = """# Acme Help Desk

Our office opens at 9 am. The Wi-Fi password is sunflower42. Refunds take five business days.

## Parking
Visitors can park in the garage on Elm Street. It is free for the first two hours.

Q: Do you ship abroad?
A: Yes, we ship to all EU countries and the UK.

Opening hours:
- **Monday to Friday:** 9 am to 5 pm
- *Saturday:* 10 am to 2 pm
"""
UNTITLED_KB = "Our office opens at 9 am.\nThe Wi-Fi password is sunflower42.\nRefunds take five business days.\n"
KEY = "sk-test-7f3a9c1e5b"


def spoken(responder: Responder, question: str) -> str:
    return " ".join(responder.answer(question))


# --- retrieval -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "expected", "unwanted"),
    [
        ("What time does the office open?", "9 am", ["sunflower42", "Refunds"]),
        ("What's the Wi-Fi password?", "sunflower42", ["9 am", "Refunds"]),
        ("what is the wifi password", "sunflower42", ["9 am", "Refunds"]),
        ("Could you please tell me the password for the wireless network here?", "sunflower42", ["9 am"]),
        ("How long do refunds take?", "five business days", ["sunflower42", "9 am"]),
        ("Where can visitors park?", "Elm Street", ["sunflower42"]),
        ("Is parking free?", "free for the first two hours", ["sunflower42"]),
        ("Do you ship to other countries?", "EU countries", ["abroad", "Q:", "A:"]),
        ("Are you open on Saturday?", "10 am to 2 pm", ["*", "- ", "sunflower42"]),
    ],
)
def test_each_fact_is_answered_with_its_own_passage(question: str, expected: str, unwanted: list[str]) -> None:
    answer = spoken(Responder(KB), question)
    assert expected in answer
    for text in unwanted:
        assert text not in answer


def test_facts_on_separate_lines_are_found_too() -> None:
    responder = Responder(UNTITLED_KB)
    assert spoken(responder, "When does the office open?") == "Our office opens at 9 am."
    assert spoken(responder, "How many days until I get my refund?") == "Refunds take five business days."


@pytest.mark.parametrize(
    "question", ["What is the capital of Mongolia?", "Who won the football world cup in 1998?", "Sing me a song"]
)
def test_unrelated_question_gets_an_honest_dont_know(question: str) -> None:
    answer = list(Responder(KB).answer(question))
    assert answer == [DONT_KNOW]
    assert "don't know" in DONT_KNOW


def test_one_incidental_shared_word_does_not_make_an_answer() -> None:
    question = "Which famous architect designed the Eiffel Tower and the garage of the Louvre museum in Paris?"
    assert list(Responder(KB).answer(question)) == [DONT_KNOW]


@pytest.mark.parametrize("greeting", ["hi", "Hello there!", "Good morning", "hey", "Hi, how are you?"])
def test_greeting_is_answered_with_a_greeting_naming_the_topic(greeting: str) -> None:
    answer = list(Responder(KB).answer(greeting))
    assert answer[0] == "Hello!"
    assert "Acme Help Desk" in " ".join(answer)


def test_greeting_without_a_title_offers_the_main_keywords() -> None:
    answer = spoken(Responder(UNTITLED_KB), "hello")
    assert answer.startswith("Hello!")
    assert "office" in answer and "Wi-Fi" in answer and "refunds" in answer
    assert "sunflower42" not in answer


def test_greeting_followed_by_a_question_answers_the_question() -> None:
    assert "sunflower42" in spoken(Responder(KB), "Hey, what's the wifi password?")


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("Thanks!", "You're welcome!"),
        ("thank you so much", "You're welcome!"),
        ("Bye", "Goodbye"),
        ("ok goodbye", "Goodbye"),
        ("Who are you?", "virtual assistant"),
        ("What can you do?", "Acme Help Desk"),
    ],
)
def test_small_talk_is_answered_politely(said: str, expected: str) -> None:
    answer = spoken(Responder(KB), said)
    assert expected in answer
    assert DONT_KNOW not in answer


@pytest.mark.parametrize("knowledge_base", [None, "", "  \n\n  "])
def test_without_a_knowledge_base_the_avatar_says_so(knowledge_base: str | None) -> None:
    responder = Responder(knowledge_base)
    assert list(responder.answer("What time does the office open?")) == [NO_KNOWLEDGE_BASE]
    greeting = spoken(responder, "hi")
    assert greeting.startswith("Hello!") and "knowledge base" in greeting


def test_answer_yields_whole_sentences_one_by_one() -> None:
    pieces = list(Responder(KB).answer("Is parking free?"))
    assert pieces == ["Visitors can park in the garage on Elm Street.", "It is free for the first two hours."]


def test_a_long_paragraph_is_answered_with_at_most_three_sentences_under_the_limit() -> None:
    sentences = [
        f"The glacier tour number {i} leaves from the north pier and lasts about {i + 2} hours, "
        f"weather permitting, with hot drinks served on board."
        for i in range(1, 9)
    ]
    run_on = "The museum " + ", ".join(f"room {i} shows artefacts from the bronze age" for i in range(40)) + "."
    responder = Responder(" ".join(sentences) + "\n\n" + run_on)
    for question in ("How long is the glacier tour?", "What does the museum show?"):
        pieces = list(responder.answer(question))
        assert 1 <= len(pieces) <= 3
        assert len(" ".join(pieces)) <= MAX_ANSWER_CHARS
        assert all(p.endswith(".") for p in pieces)


def test_markdown_in_the_knowledge_base_is_not_spoken() -> None:
    responder = Responder("## Support\n\n- **Email:** help@acme.test\n- Call `555 0100` any weekday\n")
    answer = spoken(responder, "What number can I call?")
    assert answer == "Call 555 0100 any weekday."


def test_a_50_kb_knowledge_base_answers_within_5_ms() -> None:
    rng = random.Random(7)
    teams = ["sales", "marketing", "finance", "legal", "design", "support", "research", "security"]
    things = ["printer", "projector", "whiteboard", "kettle", "fridge", "locker", "bicycle", "badge"]
    paragraphs = []
    while sum(map(len, paragraphs)) < 50_000:
        room, day = rng.randint(100, 999), rng.choice(["Monday", "Friday"])
        paragraphs.append(
            f"Room {room} on floor {rng.randint(1, 9)} is booked by the {rng.choice(teams)} team. "
            f"The {rng.choice(things)} in room {room} is checked every {day}."
        )
    paragraphs.insert(len(paragraphs) // 2, "The Wi-Fi password is sunflower42.")
    start = time.perf_counter()
    responder = Responder("\n\n".join(paragraphs))
    build = time.perf_counter() - start

    timings = []
    for question in ["What is the Wi-Fi password?", "When is the kettle checked?", "Where is Mongolia?"] * 20:
        start = time.perf_counter()
        answer = list(responder.answer(question))
        timings.append(time.perf_counter() - start)
    assert spoken(responder, "What is the Wi-Fi password?") == "The Wi-Fi password is sunflower42."
    assert answer == [DONT_KNOW]
    assert statistics.median(timings) < 0.005
    assert build < 2.0
    assert responder.instant


def test_sentences_are_split_at_real_sentence_ends_only() -> None:
    text = "We open at 9 a.m. every day. Dr. Lee helps e.g. with visas! Why?\n1. Bring your ID\n2. Sign in"
    assert split_sentences(text) == [
        "We open at 9 a.m. every day.",
        "Dr. Lee helps e.g. with visas!",
        "Why?",
        "Bring your ID.",
        "Sign in.",
    ]


def test_sentence_stream_releases_each_sentence_as_soon_as_it_ends() -> None:
    stream = SentenceStream()
    assert stream.feed("**Hello** there") == []
    assert stream.feed(".") == []  # "." may still turn out to be "...", or a decimal point
    assert stream.feed(" How are") == ["Hello there."]
    assert stream.feed(" you? I'm") == ["How are you?"]
    assert stream.feed(" fine") == []
    assert stream.flush() == ["I'm fine."]


# --- language model ------------------------------------------------------------------------------------


def sse(text: str) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}) + "\n\n"


DONE = "data: [DONE]\n\n"


class FakeLlm(ThreadingHTTPServer):
    """An OpenAI-compatible chat endpoint on loopback that streams a scripted answer."""

    daemon_threads = True

    def __init__(self, chunked: bool = True) -> None:
        handler = _ChunkedHandler if chunked else _PlainHandler
        super().__init__(("127.0.0.1", 0), handler)
        self.chunked = chunked
        self.script: list[str | threading.Event] = [sse("Hello."), DONE]
        self.status = 200
        self.error_body = ""
        self.content_type = "text/event-stream"
        self.seen: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.waits: list[bool] = []
        self.events: list[threading.Event] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up is expected here
            super().handle_error(request, client_address)

    def hold(self) -> threading.Event:
        event = threading.Event()
        self.events.append(event)
        return event


class _ChunkedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeLlm

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((dict(self.headers), body))
        if self.server.status != 200:
            payload = self.server.error_body.encode()
            self.send_response(self.server.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", self.server.content_type)
        if self.server.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for step in self.server.script:
                if isinstance(step, threading.Event):
                    self.server.waits.append(step.wait(5))
                else:
                    self._write(step.encode())
            if self.server.chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up: an interrupted answer

    def _write(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self.server.chunked else data)
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _PlainHandler(_ChunkedHandler):
    protocol_version = "HTTP/1.0"  # no chunking: the body simply ends when the connection closes


@pytest.fixture
def fake_llm() -> Iterator[FakeLlm]:
    server = FakeLlm()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    for event in server.events:
        event.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def plain_llm() -> Iterator[FakeLlm]:
    server = FakeLlm(chunked=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    for event in server.events:
        event.set()
    server.shutdown()
    server.server_close()


def llm_for(server: FakeLlm, timeout: float = 5.0) -> LlmConfig:
    return LlmConfig(server.url, "llama3.2:1b", Secret(KEY), timeout=timeout)


@pytest.mark.parametrize("server_name", ["fake_llm", "plain_llm"])
def test_llm_sentences_are_spoken_before_the_stream_ends(server_name: str, request: pytest.FixtureRequest) -> None:
    server: FakeLlm = request.getfixturevalue(server_name)
    rest_of_answer = server.hold()
    server.script = [
        sse("**Our office**"),
        sse(" opens at 9 am. The Wi"),
        rest_of_answer,
        sse("-Fi password is `sunflower42`.\n- Refunds"),
        sse(" take five days"),
        DONE,
    ]
    responder = Responder(KB, llm_for(server))
    assert not responder.instant

    answer = responder.answer("Tell me the basics.")
    start = time.perf_counter()
    first = next(answer)
    waited = time.perf_counter() - start
    rest_of_answer.set()
    rest = list(answer)

    assert first == "Our office opens at 9 am."
    assert server.waits == [True]  # the server was still holding the rest when the first sentence came out
    assert waited < 2.0
    assert rest == ["The Wi-Fi password is sunflower42.", "Refunds take five days."]


def test_llm_request_has_bearer_key_knowledge_base_and_short_history(fake_llm: FakeLlm) -> None:
    responder = Responder(KB, llm_for(fake_llm))
    for turn in range(8):
        fake_llm.script = [sse(f"Answer number {turn}."), DONE]
        assert list(responder.answer(f"Question number {turn}?")) == [f"Answer number {turn}."]

    headers, first = fake_llm.seen[0]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert first["model"] == "llama3.2:1b" and first["stream"] is True
    system = first["messages"][0]
    assert system["role"] == "system"
    assert "The Wi-Fi password is sunflower42." in system["content"] and "markdown" in system["content"]
    assert first["messages"][1:] == [{"role": "user", "content": "Question number 0?"}]

    _, second = fake_llm.seen[1]
    assert second["messages"][1:] == [
        {"role": "user", "content": "Question number 0?"},
        {"role": "assistant", "content": "Answer number 0."},
        {"role": "user", "content": "Question number 1?"},
    ]
    _, last = fake_llm.seen[-1]
    assert len(last["messages"]) == 1 + 2 * 6 + 1
    assert last["messages"][1] == {"role": "user", "content": "Question number 1?"}


def test_llm_down_gives_an_honest_notice_then_the_knowledge_base_answer(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = LlmConfig(f"http://127.0.0.1:{port}/v1", "llama3.2:1b", Secret(KEY), timeout=2.0)
    start = time.perf_counter()
    answer = list(Responder(KB, config).answer("What time does the office open?"))
    assert answer == [LLM_UNREACHABLE, "Our office opens at 9 am."]
    assert "language model" in LLM_UNREACHABLE and "knowledge base" in LLM_UNREACHABLE
    assert time.perf_counter() - start < 2.0
    assert f"127.0.0.1:{port}" in caplog.text
    assert KEY not in caplog.text


@pytest.mark.parametrize("status", [401, 500, 503])
def test_llm_error_status_falls_back_without_leaking_the_key(
    status: int, fake_llm: FakeLlm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_llm.status = status
    fake_llm.error_body = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}"}})
    answer = list(Responder(KB, llm_for(fake_llm)).answer("What's the wifi password?"))
    assert answer == [LLM_UNREACHABLE, "The Wi-Fi password is sunflower42."]
    assert f"HTTP {status}" in caplog.text
    assert KEY not in caplog.text


@pytest.mark.parametrize(
    ("stream", "notice"),
    [
        ([DONE], LLM_SILENT),
        (['data: {"error": {"message": "model \'llama3.2:1b\' not found"}}\n\n'], LLM_UNREACHABLE),
    ],
)
def test_llm_without_an_answer_falls_back(stream: list[str], notice: str, fake_llm: FakeLlm) -> None:
    fake_llm.script = stream
    answer = list(Responder(KB, llm_for(fake_llm)).answer("What's the wifi password?"))
    assert answer == [notice, "The Wi-Fi password is sunflower42."]


def test_llm_without_knowledge_base_gets_only_the_spoken_style(fake_llm: FakeLlm) -> None:
    list(Responder(None, llm_for(fake_llm)).answer("hi"))
    _, body = fake_llm.seen[0]
    assert body["messages"][0]["content"] == SPOKEN_STYLE


def test_llm_that_stops_sending_times_out_into_the_fallback(fake_llm: FakeLlm) -> None:
    fake_llm.script = [fake_llm.hold()]
    start = time.perf_counter()
    answer = list(Responder(KB, llm_for(fake_llm, timeout=0.3)).answer("How long do refunds take?"))
    assert answer == [LLM_UNREACHABLE, "Refunds take five business days."]
    assert time.perf_counter() - start < 3.0


def test_llm_that_breaks_off_mid_answer_says_the_answer_is_incomplete(fake_llm: FakeLlm) -> None:
    fake_llm.script = [sse("Our office opens at 9 am. On Sat"), fake_llm.hold()]
    answer = list(Responder(KB, llm_for(fake_llm, timeout=0.3)).answer("When are you open?"))
    assert answer == ["Our office opens at 9 am.", "On Sat.", LLM_BROKE_OFF]


def test_interrupting_an_llm_answer_stops_waiting_and_keeps_what_was_said(fake_llm: FakeLlm) -> None:
    fake_llm.script = [sse("Our office opens at 9 am. "), fake_llm.hold(), sse("More later."), DONE]
    responder = Responder(KB, llm_for(fake_llm))
    answer = responder.answer("When do you open?")
    assert next(answer) == "Our office opens at 9 am."
    start = time.perf_counter()
    answer.close()
    assert time.perf_counter() - start < 0.5

    fake_llm.script = [sse("Yes."), DONE]
    assert list(responder.answer("Every day?")) == ["Yes."]
    _, body = fake_llm.seen[-1]
    assert {"role": "assistant", "content": "Our office opens at 9 am."} in body["messages"]


def test_llm_server_that_ignores_streaming_still_answers(fake_llm: FakeLlm) -> None:
    fake_llm.content_type = "application/json"
    fake_llm.script = [json.dumps({"choices": [{"message": {"content": "# Hi!\nWe open at *nine*. Bye."}}]})]
    assert list(Responder(KB, llm_for(fake_llm)).answer("hi")) == ["Hi!", "We open at nine.", "Bye."]


def test_llm_key_stays_out_of_reprs_and_answers(fake_llm: FakeLlm) -> None:
    config = llm_for(fake_llm)
    responder = Responder(KB, config)
    fake_llm.script = [sse("Fine."), DONE]
    assert KEY not in repr(config) and KEY not in str(config)
    assert KEY not in repr(responder)
    assert KEY not in " ".join(responder.answer("How are you?"))


@pytest.mark.parametrize(
    "question",
    ["Hello! What can you tell me about your product?", "What does this app do?", "Tell me about the company"],
)
def test_a_question_about_the_subject_itself_gets_the_knowledge_base_opening_not_a_dont_know(question: str) -> None:
    # The knowledge base never says "product" or "app": it names its subject ("Avatar Ops").
    kb = (
        "Avatar Ops is a dashboard for running real-time streaming avatars. It can start a live avatar and chart "
        "usage and credits. A session costs credits until it is stopped."
    )
    answer = list(Responder(kb).answer(question))
    assert answer[0] == "Avatar Ops is a dashboard for running real-time streaming avatars."
    assert DONT_KNOW not in answer
    assert list(Responder(kb).answer("What is the capital of Mongolia?")) == [DONT_KNOW]  # still honest
