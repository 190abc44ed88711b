"""LITE through ``LiveSession`` against the engine's twin, over real sockets: our own voice goes over ``ws_url``,
the twin lip-syncs it, and its media comes back over WebRTC (the twin's ``local`` extension).

The dashboard side synthesizes with espeak-ng here (``VoiceBank(load_piper=False)``: the same ``SpeechChunk``
path as Piper, far faster on a shared CI machine); the app uses Piper.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lib.engine import avatars
from lib.engine.liveavatar_state import SANDBOX_ENGINE_AVATAR
from lib.engine.tts import VoiceBank
from lib.live import liveavatar as live_la
from lib.live.liveavatar import LiveAvatarChoice, LiveAvatarRequest, LiveAvatarStreaming
from lib.live.session import LiveSession, SessionOptions, SessionState
from lib.liveavatar import LiveAvatarClient, SessionEndReason, SessionListType, SessionMode, VideoQuality
from lib.liveavatar.models import SANDBOX_AVATAR_ID
from lib.usage.store import EndReason

pytestmark = pytest.mark.slow

LOUD_RMS = 500.0  # int16: speech, not the room tone of silence
MOUTH_CHANGE = 1.5  # mean grey-level change of the mouth region when its shape changes (test_engine_speech)
SWAY_CHANGE = 1.0  # above this mean change of the whole picture, the head moved (idle sway), not just the mouth
LONG = " ".join(f"This is sentence number {n} of a long answer that we will cut off." for n in range(1, 9))


class Recorder:
    """What the page would get: the avatar's audio (arrival time, RMS) and its pictures (sampled every 20 ms)."""

    def __init__(self) -> None:
        self.audio: list[tuple[float, float]] = []
        self.video: list[tuple[float, np.ndarray]] = []
        self._stop = threading.Event()

    def hear(self, samples: np.ndarray) -> None:
        self.audio.append((time.monotonic(), float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))))

    def watch(self, session: LiveSession) -> None:
        def poll() -> None:
            last = None
            while not self._stop.is_set():
                frame = session.latest_frame()
                if frame is not None and frame is not last:
                    last = frame
                    self.video.append((time.monotonic(), frame.to_ndarray(format="gray").astype(np.int16)))
                time.sleep(0.02)

        threading.Thread(target=poll, daemon=True).start()

    def close(self) -> None:
        self._stop.set()

    def loud(self, start: float, end: float = float("inf")) -> list[float]:
        return [t for t, rms in self.audio if start <= t < end and rms > LOUD_RMS]

    def mouth_changes(self, start: float, end: float) -> tuple[int, int]:
        frames = [f for t, f in self.video if start <= t < end]
        if not frames:
            return 0, 0
        height, width = frames[0].shape
        x0, y0, x1, y1 = avatars.get_kit(SANDBOX_ENGINE_AVATAR, width, height).mouth_rect()
        changes = sum(
            np.abs(a[y0:y1, x0:x1] - b[y0:y1, x0:x1]).mean() > MOUTH_CHANGE and np.abs(a - b).mean() < SWAY_CHANGE
            for a, b in itertools.pairwise(frames)
        )
        return int(changes), len(frames) - 1


def wait(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def lite_session(la: LiveAvatarClient, recorder: Recorder, tmp_path: Path) -> LiveSession:
    choice = LiveAvatarChoice(SANDBOX_AVATAR_ID, mode=SessionMode.LITE, sandbox=True, quality=VideoQuality.LOW)
    request = LiveAvatarRequest(choice.config(None), choice)
    session = LiveSession(
        LiveAvatarStreaming(la), "liveavatar", None, SessionOptions(request=request), audio_out=recorder.hear
    )
    assert session.wait_connected(30), session.error
    recorder.watch(session)
    return session


@pytest.fixture(autouse=True)
def espeak_voice(monkeypatch: pytest.MonkeyPatch) -> None:
    bank = VoiceBank(load_piper=False)
    monkeypatch.setattr(live_la, "shared_voice_bank", lambda: bank)


def test_our_voice_is_heard_with_moving_lips_then_silence_closes_them(la: LiveAvatarClient, tmp_path: Path) -> None:
    recorder = Recorder()
    session = lite_session(la, recorder, tmp_path)
    try:
        assert la.get_session(session.session_id or "").mode is SessionMode.LITE
        time.sleep(1.0)
        quiet_from = time.monotonic()
        assert not recorder.loud(quiet_from - 0.8, quiet_from)  # before the message: silent
        sent = time.monotonic()
        session.send("Hello there. This is our own offline voice, and the avatar moves its lips to it.", "repeat")
        assert wait(lambda: session.speaking, 10), "no agent.speak_started from the socket"
        started = time.monotonic() - sent
        assert wait(lambda: not session.speaking, 20), "no agent.speak_ended from the socket"
        ended = time.monotonic()
        loud = recorder.loud(sent, ended + 0.5)
        assert len(loud) >= 50, len(loud)  # >= 1 s of 20 ms frames carrying speech
        moving, pairs = recorder.mouth_changes(loud[0] + 0.2, loud[-1] - 0.2)
        assert pairs >= 20 and moving / pairs > 0.3, (moving, pairs)
        time.sleep(1.5)
        still, quiet_pairs = recorder.mouth_changes(ended + 0.5, time.monotonic())
        assert quiet_pairs >= 10 and still <= 1, (still, quiet_pairs)
        turns = session.transcript()
        assert [t.role for t in turns] == ["user", "avatar"]
        assert "own offline voice" in turns[1].text and turns[1].done
        heard_ms = (loud[0] - sent) * 1000
        print(f"LITE message → avatar speaking in {started * 1000:.0f} ms; first loud audio {heard_ms:.0f} ms")
    finally:
        recorder.close()
        session.stop()
    assert session.end_reason is EndReason.STOPPED
    assert la.get_session(session.session_id or "").end_reason is SessionEndReason.USER_CLOSED


def test_interrupt_silences_the_avatar_and_drops_our_queue(la: LiveAvatarClient, tmp_path: Path) -> None:
    recorder = Recorder()
    session = lite_session(la, recorder, tmp_path)
    try:
        session.send(LONG, "repeat")
        assert wait(lambda: session.speaking, 10)
        time.sleep(1.5)
        cut = time.monotonic()
        session.interrupt()
        assert wait(lambda: not session.speaking, 3)
        time.sleep(3.0)  # long enough for any queued sentence to have come through
        late = recorder.loud(cut + 0.5)
        assert not late, f"{len(late)} loud frames after the interrupt"
        avatar = [t for t in session.transcript() if t.role == "avatar"]
        assert avatar and avatar[-1].interrupted
        assert "number 8" not in avatar[-1].text  # the rest of the answer was never synthesized nor sent
        # The session goes on: the next message is spoken.
        session.send("Still here.", "repeat")
        assert wait(lambda: session.speaking, 10)
        assert session.state is SessionState.CONNECTED
    finally:
        recorder.close()
        session.stop()
    assert not la.list_sessions(SessionListType.ACTIVE)
