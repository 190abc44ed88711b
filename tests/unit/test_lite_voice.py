"""LITE mode's own voice (``LiteVoice``) with the real Piper voice and a recording stand-in for the LITE socket
(the socket itself is covered against the engine's twin in tests/contract/test_live_liveavatar_lite.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lib.engine.responder import Responder
from lib.engine.synthesis_stop import SynthesisCancelled
from lib.engine.tts import SpeechChunk, VoiceBank
from lib.live.lite_voice import LiteVoice

# Its first piece is "Hello there."; the next one (up to 60 characters) takes Piper 0.15 s or more.
ANSWER = (
    "Hello there. I don't have a knowledge base yet, so I can't answer questions about a topic you may have in mind."
)


class _Outbox:
    queued_seconds = 0.0  # the socket never holds speech back here: every piece goes as soon as it is made


class RecordingLink:
    """What ``LiteVoice`` tells the LITE socket, in order, with the time of each call."""

    def __init__(self, ws_url: str, *, on_event: Any) -> None:
        self.session = _Outbox()
        self.calls: list[tuple[str, str, float]] = []
        self._changed = threading.Condition()

    def _record(self, what: str, task_id: str = "") -> None:
        with self._changed:
            self.calls.append((what, task_id, time.monotonic()))
            self._changed.notify_all()

    def wait_for(self, what: str, task_id: str, timeout: float = 20.0) -> float:
        with self._changed:
            assert self._changed.wait_for(lambda: self.first(what, task_id) is not None, timeout), self.calls
        found = self.first(what, task_id)
        assert found is not None
        return found

    def first(self, what: str, task_id: str) -> float | None:
        return next((t for w, i, t in self.calls if w == what and i == task_id), None)

    def count(self, what: str, task_id: str) -> int:
        return sum(1 for w, i, _ in self.calls if w == what and i == task_id)

    def connect(self, timeout: float) -> None:
        self._record("connect")

    def begin(self, task_id: str) -> None:
        self._record("begin", task_id)

    def add(self, task_id: str, pcm: bytes) -> None:
        self._record("add", task_id)

    def end(self, task_id: str) -> None:
        self._record("end", task_id)

    def interrupt(self) -> None:
        self._record("interrupt")

    def listening(self, on: bool) -> None:
        self._record("listening")

    def close(self) -> None:
        self._record("close")


class WatchedBank:
    """The real voice bank; records how each piece's synthesis ended and how long it took."""

    def __init__(self, bank: VoiceBank) -> None:
        self._bank = bank
        self.pieces: list[tuple[str, str, float]] = []  # (outcome, piece or "", seconds)

    def synthesize(self, *args: Any, **kwargs: Any) -> Iterator[SpeechChunk]:
        chunks = self._bank.synthesize(*args, **kwargs)
        while True:
            started = time.monotonic()
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except SynthesisCancelled:
                self.pieces.append(("cancelled", "", time.monotonic() - started))
                raise
            self.pieces.append(("done", chunk.text, time.monotonic() - started))
            yield chunk


@pytest.fixture(scope="module")
def bank() -> VoiceBank:
    return VoiceBank(varied=False)


def test_an_interrupt_ends_the_piece_being_synthesized_and_the_next_message_is_spoken(
    bank: VoiceBank, caplog: pytest.LogCaptureFixture
) -> None:
    watched = WatchedBank(bank)
    events: list[dict[str, Any]] = []
    voice = LiteVoice(
        "ws://unused", voices=watched, responder=Responder(None), on_event=events.append, link_factory=RecordingLink
    )
    link: RecordingLink = voice.link
    try:
        with caplog.at_level(logging.ERROR, logger="avatar_ops.live"):
            first = voice.say(ANSWER, "repeat")
            link.wait_for("add", first)  # "Hello there." is out; Piper is on the next piece now
            time.sleep(0.02)
            cut = time.monotonic()
            voice.interrupt()
            second = voice.say("Still here.", "repeat")
            heard_again = link.wait_for("add", second) - cut
            link.wait_for("end", second)
        assert [p[0] for p in watched.pieces[:2]] == ["done", "cancelled"], watched.pieces
        assert watched.pieces[0][1] == "Hello there."
        assert watched.pieces[-1][:2] == ("done", "Still here."), watched.pieces
        assert link.count("add", first) == 1  # nothing of the cut answer reached the socket after the interrupt
        assert link.first("end", first) is not None  # its utterance was closed on the socket
        assert not caplog.records, [r.getMessage() for r in caplog.records]  # a stop, not a failed answer
        print(f"interrupt → next message's first words on the socket: {heard_again * 1000:.0f} ms")
    finally:
        voice.close()


def test_a_message_queued_before_an_interrupt_is_never_spoken(bank: VoiceBank) -> None:
    voice = LiteVoice(
        "ws://unused", voices=bank, responder=Responder(None), on_event=lambda e: None, link_factory=RecordingLink
    )
    link: RecordingLink = voice.link
    try:
        first = voice.say(ANSWER, "repeat")
        queued = voice.say("This was queued behind the first answer.", "repeat")
        link.wait_for("add", first)
        voice.interrupt()
        after = voice.say("Still here.", "repeat")
        link.wait_for("end", after)
        assert link.first("begin", queued) is None, link.calls
    finally:
        voice.close()
