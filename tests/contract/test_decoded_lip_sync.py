"""Lip sync on the decoded leg (LiveKit's, and the local engine's with packet forwarding off), against the real
engine: the page's sender reads the avatar's sound and picture from ``LiveChat`` as ui/live.py's frame sources
do, 20 ms of audio and one picture per tick. The sound waits in the playout buffer and in aiortc's jitter
buffer on its way; the picture must wait as long, or the browser shows the lips before their sound (it did:
190 ms before, bench_browser ``--decoded``)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator

import av
import numpy as np
import pytest

from lib.engine import avatars
from lib.guards import Admission
from lib.heygen.client import StreamingClient
from lib.live.controller import ChatSetup, ComponentState, LiveChat, Services
from lib.live.media.passthrough import PASSTHROUGH_ENV
from lib.usage.store import UsageLog

pytestmark = pytest.mark.slow

TICK_S = 0.02  # the audio sender's pace; a picture every other tick (25 fps)
LOUD_RMS = 500.0  # int16: speech, not the silence between answers
MOUTH_CHANGE = 1.5  # mean grey-level change of the mouth region when its shape changes (test_engine_speech)
SWAY_CHANGE = 1.0  # above this mean change of the whole picture, the head moved (idle sway), not just the mouth
# ITU-R BT.1359 sign: + = sound ahead of the picture. The engine itself sends the first lip frame 30–40 ms
# before the first speech packet (bench_speech av_offset_at_sender); before the picture waited for its sound,
# the sender read it 0.1 s and more before it.
WORST_MEDIAN_OFFSET_MS = -80.0
TEXTS = ["Hello there, nice to meet you.", "Good morning to you all.", "Welcome back to the demo."]


class Sender:
    """Reads the chat's media as the page's peer connection does and notes when the sound and the lips start."""

    def __init__(self, chat: LiveChat, mouth: tuple[int, int, int, int]) -> None:
        self._chat = chat
        self._mouth = mouth
        self.sound: list[tuple[float, float]] = []  # (read at, RMS)
        self.lips: list[float] = []  # read times of pictures whose mouth changed (the head still)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        previous: av.VideoFrame | None = None
        previous_gray: np.ndarray | None = None
        tick = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            samples = self._chat.audio_frame(tick * 960, None).to_ndarray().astype(np.float64)
            self.sound.append((now, float(np.sqrt(np.mean(samples**2)))))
            if tick % 2 == 0:
                frame = self._chat.frame()
                if frame is not previous:
                    gray = frame.to_ndarray(format="gray").astype(np.int16)
                    if previous_gray is not None and gray.shape == previous_gray.shape:
                        x0, y0, x1, y1 = self._mouth
                        moved = np.abs(gray[y0:y1, x0:x1] - previous_gray[y0:y1, x0:x1]).mean()
                        if moved > MOUTH_CHANGE and np.abs(gray - previous_gray).mean() < SWAY_CHANGE:
                            self.lips.append(now)
                    previous, previous_gray = frame, gray
            tick += 1
            next_at += TICK_S
            time.sleep(max(0.0, next_at - time.monotonic()))

    def first_sound(self, after: float) -> float | None:
        return next((t for t, rms in list(self.sound) if t > after and rms > LOUD_RMS), None)

    def first_lips(self, after: float) -> float | None:
        return next((t for t in list(self.lips) if t > after), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


@pytest.fixture
def decoded_chat(client: StreamingClient, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LiveChat, str]]:
    monkeypatch.setenv(PASSTHROUGH_ENV, "0")
    usage = UsageLog(tmp_path / "usage.db")
    chat = LiveChat(lambda: Services("local", client, usage, 120, 45, lambda provider, override: Admission(True)))
    avatar_id = client.avatars()[0].avatar_id
    try:
        yield chat, avatar_id
    finally:
        chat.close()
        usage.close()


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    return bool(predicate())


def test_the_sender_reads_the_lips_together_with_their_sound(decoded_chat: tuple[LiveChat, str]) -> None:
    chat, avatar_id = decoded_chat
    chat.component(
        ComponentState(playing=False, signalling=True), ChatSetup(avatar_id, None, "low", "VP8", "repeat", "")
    )
    session = chat.session
    assert session is not None and session.wait_connected(20), session and session.error
    assert session.media_feed() is None  # decoded here, not forwarded
    chat.component(
        ComponentState(playing=True, signalling=False), ChatSetup(avatar_id, None, "low", "VP8", "repeat", "")
    )
    frame = session.latest_frame()
    assert frame is not None
    sender = Sender(chat, avatars.get_kit(avatar_id, frame.width, frame.height).mouth_rect())
    offsets: list[float] = []
    try:
        time.sleep(1.0)  # the playout buffer settles on its level
        for text in TEXTS:
            sent = time.monotonic()
            chat.message(text)
            assert _wait(lambda sent=sent: sender.first_sound(sent) and sender.first_lips(sent), 10), text
            sound, lips = sender.first_sound(sent), sender.first_lips(sent)
            assert sound is not None and lips is not None
            offsets.append((lips - sound) * 1000)
            assert _wait(lambda: not session.speaking, 15)
            time.sleep(0.8)  # silence again before the next answer: its first sound is a clean start
    finally:
        sender.close()
    print(f"lips − sound as the sender reads them (+ = sound ahead): {[round(o) for o in offsets]} ms")
    assert statistics.median(offsets) >= WORST_MEDIAN_OFFSET_MS, offsets
    assert statistics.median(offsets) <= 60.0, offsets  # nor held back so long that the sound comes first
