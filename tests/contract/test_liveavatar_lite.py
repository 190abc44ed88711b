"""LITE against the engine twin over real sockets: the ``ws_url`` WebSocket (lib/engine/liveavatar_lite.py)
driven by the LITE driver (lib/liveavatar/lite.py), with the avatar's media received over WebRTC.

One engine for the module, its own history DB, no voices (LITE brings the audio), a 4-second idle timeout so
keep-alive is testable: sessions that must not idle out send a keep-alive every second.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect

from lib.engine import avatars
from lib.engine.launcher import EngineProcess, start_engine
from lib.heygen.client import StreamingClient
from lib.live.media.direct import DirectConnection
from lib.liveavatar import LiteSessionConfig, LiveAvatarClient, SessionEndReason, StartedSession
from lib.liveavatar.lite import (
    BYTES_PER_SECOND,
    LiteError,
    LiteEvent,
    LiteEventType,
    LiteSession,
    LiteState,
    chunk_sizes,
    to_lite_pcm,
)
from tests.support.liveavatar import la_client, stop_all
from tests.support.rtc import Received, wait_for

IDLE_TIMEOUT = 4
SPEECH_RMS = 300  # received int16 RMS: the test tone is in the thousands, idle audio is exact zeros
# Interrupt → last loud packet heard here: the socket round trip plus this process's WebRTC receive backlog;
# a broken interrupt keeps playing the rest of an 8-second utterance.
STOP_WITHIN_S = 0.5
MOUTH_CHANGE = 1.5  # mean grey-level change of the mouth region when its shape changes (test_engine_speech)
SWAY_CHANGE = 1.0


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    history: Path = tmp_path_factory.mktemp("la-lite") / "history.db"
    args = ["--history-db", str(history), "--no-voices", "--session-budget", "4"]
    proc = start_engine(extra_args=[*args, "--liveavatar-idle-timeout", str(IDLE_TIMEOUT)])
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def la(twin: EngineProcess) -> Iterator[LiveAvatarClient]:
    with la_client(twin) as client:
        yield client
    stop_all(twin)


def _start(la: LiveAvatarClient) -> StartedSession:
    avatar = la.avatars()[0].id
    token = la.create_session_token(LiteSessionConfig(avatar_id=avatar, video_quality="low"))  # type: ignore[arg-type]
    return la.start_session(token)


@dataclass
class Lite:
    started: StartedSession
    session: LiteSession
    events: list[tuple[float, LiteEvent]]

    def kinds(self) -> list[str]:
        return [e.type for _, e in self.events]

    def first(self, kind: str, event_id: str | None = None) -> float | None:
        return next(
            (t for t, e in self.events if e.type == kind and (event_id is None or e.event_id == event_id)), None
        )


async def _open(la: LiveAvatarClient, keep_alive: float = 1.0, **options) -> Lite:
    started = await asyncio.get_running_loop().run_in_executor(None, _start, la)
    assert started.ws_url
    events: list[tuple[float, LiteEvent]] = []
    session = LiteSession(
        started.ws_url,
        on_event=lambda e: events.append((time.monotonic(), e)),
        keep_alive_seconds=keep_alive,
        **options,
    )
    await session.connect(timeout=15)
    return Lite(started, session, events)


@dataclass
class Media:
    received: Received
    connection: DirectConnection


@pytest.fixture
async def media_for() -> AsyncIterator:
    """Attach a WebRTC viewer to a started session (the twin's local ``direct-webrtc`` extension)."""
    opened: list[DirectConnection] = []

    async def attach(started: StartedSession) -> Media:
        local = started.local_media or {}
        received = Received()
        conn = DirectConnection(on_video=received.on_video, on_audio=received.on_audio, on_event=received.on_event)
        opened.append(conn)
        answer = await conn.answer(local["offer"])
        loop = asyncio.get_running_loop()
        with StreamingClient(local["base_url"], token=local["token"], backoff=0) as streaming:
            await loop.run_in_executor(None, streaming.start, local["engine_session_id"], answer)
        assert await wait_for(lambda: len(received.video) > 10, timeout=20)
        return Media(received, conn)

    yield attach
    for conn in opened:
        await conn.close()


def _speech(seconds: float, amp: float = 0.45, syllables_hz: float = 3.0) -> np.ndarray:
    """A loud 220 Hz voice-like tone whose loudness rises and falls like syllables (float at 48 kHz)."""
    t = np.arange(round(seconds * 48_000)) / 48_000
    return (amp * np.sin(2 * np.pi * 220 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * syllables_hz * t))).astype(np.float32)


def _loud_times(received: Received, since: float) -> list[float]:
    return [t for t, a in received.audio if t >= since and np.sqrt(np.mean(a.astype(np.float64) ** 2)) > SPEECH_RMS]


def _mouth_changes(received: Received, start: float, end: float) -> tuple[int, int]:
    """(frame pairs where only the mouth changed, all frame pairs) between two arrival times."""
    x0, y0, x1, y1 = avatars.get_kit(avatars.AVATARS[0].avatar_id, 854, 480).mouth_rect()
    frames = [f.astype(np.int16) for t, f in received.video if start <= t < end]
    changes = 0
    for a, b in itertools.pairwise(frames):
        if np.abs(a[y0:y1, x0:x1] - b[y0:y1, x0:x1]).mean() > MOUTH_CHANGE and np.abs(a - b).mean() < SWAY_CHANGE:
            changes += 1
    return changes, max(0, len(frames) - 1)


def _first_mouth_change(received: Received, since: float) -> float:
    """Arrival time of the first frame after ``since`` whose mouth differs from the frame before it."""
    x0, y0, x1, y1 = avatars.get_kit(avatars.AVATARS[0].avatar_id, 854, 480).mouth_rect()
    frames = [(t, f.astype(np.int16)) for t, f in received.video if t >= since]
    for (_, a), (t, b) in itertools.pairwise(frames):
        if np.abs(a[y0:y1, x0:x1] - b[y0:y1, x0:x1]).mean() > MOUTH_CHANGE and np.abs(a - b).mean() < SWAY_CHANGE:
            return t
    raise AssertionError("the mouth never moved")


# --- connecting ---------------------------------------------------------------------------------


async def test_a_lite_session_has_a_ws_url_on_the_engine_that_reports_connecting_then_connected(twin, la):
    lite = await _open(la)
    try:
        url = lite.started.ws_url or ""
        assert url.startswith(twin.url.replace("http://", "ws://") + f"/v1/lite/{lite.started.session_id}?token=")
        states = [e.state for _, e in lite.events if e.type == LiteEventType.STATE_UPDATED]
        assert states == [LiteState.CONNECTING, LiteState.CONNECTED]
        assert lite.session.state is LiteState.CONNECTED
    finally:
        await lite.session.close()


async def test_a_full_session_has_no_ws_url(la):
    from lib.liveavatar import FullSessionConfig

    loop = asyncio.get_running_loop()
    avatar = (await loop.run_in_executor(None, la.avatars))[0].id
    config = FullSessionConfig(avatar_id=avatar, video_quality="low")  # type: ignore[arg-type]
    started = await loop.run_in_executor(None, lambda: la.start_session(la.create_session_token(config)))
    assert started.ws_url is None


async def test_a_wrong_token_and_a_second_socket_are_refused_without_the_token_in_the_message(twin, la):
    lite = await _open(la)
    try:
        url = lite.started.ws_url or ""
        token = url.split("token=")[1]
        for bad in (url.replace(token, "x" + token[1:]), url.split("?")[0], url):  # wrong, missing, second socket
            with pytest.raises(LiteError, match="HTTP 403") as caught:
                await LiteSession(bad).connect(timeout=5)
            assert token not in str(caught.value)
        assert token not in twin.log_tail(200)
    finally:
        await lite.session.close()


# --- audio format and chunking ------------------------------------------------------------------


async def test_the_twin_reports_audio_it_cannot_play_and_a_declared_wrong_format(la):
    started = await asyncio.get_running_loop().run_in_executor(None, _start, la)
    async with connect(started.ws_url or "") as ws:

        async def until(kind: str) -> dict:
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message["type"] == kind:
                    return message

        assert (await until("session.state_updated"))["state"] == "connecting"
        assert (await until("session.state_updated"))["state"] == "connected"
        await ws.send(json.dumps({"type": "agent.speak", "event_id": "a", "audio": base64.b64encode(b"abc").decode()}))
        assert "whole 16-bit samples; got 3 bytes" in (await until("error"))["message"]
        await ws.send(json.dumps({"type": "agent.speak", "event_id": "a", "audio": "not base64!"}))
        assert "not base64" in (await until("error"))["message"]
        await ws.send(json.dumps({"type": "start", "encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1}))
        assert "16000 Hz" in (await until("error"))["message"]
        pcm = to_lite_pcm(_speech(0.3), 48_000).data
        await ws.send(json.dumps({"type": "agent.speak", "event_id": "b", "audio": base64.b64encode(pcm).decode()}))
        refused = await until("error")
        assert refused["event_id"] == "b" and "LITE takes pcm_s16le 24000 Hz mono" in refused["message"]
        await ws.send(json.dumps({"type": "start", "encoding": "pcm_s16le", "sample_rate": 24000, "channels": 1}))
        await ws.send(json.dumps({"type": "agent.speak", "event_id": "c", "audio": base64.b64encode(pcm).decode()}))
        await ws.send(json.dumps({"type": "agent.speak_end", "event_id": "c"}))
        assert (await until("agent.speak_started"))["event_id"] == "c"
        await ws.send(json.dumps({"type": "agent.dance"}))
        assert "Unknown message type 'agent.dance'" in (await until("error"))["message"]


async def test_speech_goes_in_600_ms_then_1_s_chunks_and_speak_started_and_ended_name_its_event_id(la):
    lite = await _open(la, lead_seconds=10)
    try:
        seconds = 2.5
        sent_at = time.monotonic()
        event_id = lite.session.speak(to_lite_pcm(_speech(seconds), 48_000))
        assert await wait_for(lambda: lite.first(LiteEventType.SPEAK_ENDED) is not None, timeout=15)
        speaks = [m for m in lite.session.sent if m["type"] == "agent.speak"]
        sizes = [int(m["audio"].split()[0][1:]) * 3 // 4 for m in speaks]  # "<N base64 chars>"
        assert sizes == chunk_sizes(round(seconds * BYTES_PER_SECOND))
        assert {m["event_id"] for m in speaks} == {event_id}
        assert lite.session.sent[len(speaks)] == {"type": "agent.speak_end", "event_id": event_id}
        started, ended = (
            lite.first(LiteEventType.SPEAK_STARTED, event_id),
            lite.first(LiteEventType.SPEAK_ENDED, event_id),
        )
        assert started is not None and ended is not None
        assert started - sent_at < 1.0, f"speak → speak_started took {started - sent_at:.3f} s"
        # Played in real time at the engine's 25 fps: 2.5 s, more only when this machine stalls the clock.
        assert seconds - 0.1 < ended - started < seconds + 1.5, ended - started
        task = next(e for _, e in lite.events if e.type == LiteEventType.SPEAK_STARTED)
        assert task.task_id and not lite.session.speaking
        print(f"LITE speak → agent.speak_started: {(started - sent_at) * 1000:.0f} ms")
    finally:
        await lite.session.close()


# --- lips and interrupt (over WebRTC) -------------------------------------------------------------


async def test_lips_move_while_the_audio_is_loud_and_stay_shut_in_silence(la, media_for):
    lite = await _open(la)
    try:
        media = await media_for(lite.started)
        audio = np.concatenate([_speech(1.5), np.zeros(72_000, np.float32), _speech(1.5)])  # loud, 1.5 s silent, loud
        sent_at = time.monotonic()
        event_id = lite.session.speak(to_lite_pcm(audio, 48_000))
        assert await wait_for(lambda: lite.first(LiteEventType.SPEAK_ENDED, event_id) is not None, timeout=20)
        await asyncio.sleep(0.3)
        received = media.received
        loud = _loud_times(received, sent_at)
        assert loud, "no speech was heard"
        gaps = [(a, b) for a, b in itertools.pairwise(loud) if b - a > 1.0]
        assert len(gaps) == 1, f"expected one silence inside the speech, got {gaps}"
        silence_from, silence_to = gaps[0]
        first_part, second_part = (loud[0], silence_from), (silence_to, loud[-1])
        for start, end in (first_part, second_part):
            moving, pairs = _mouth_changes(received, start, end)
            assert pairs > 20 and moving > pairs / 5, (moving, pairs)
        # The jaw eases shut within a few frames of the silence, then stays still.
        still, pairs = _mouth_changes(received, silence_from + 0.3, silence_to - 0.1)
        assert pairs > 15 and still <= 1, (still, pairs)
        first_lip = _first_mouth_change(received, sent_at)
        # Same pitch as sent: 24 kHz in, played at 48 kHz — a rate mix-up would shift it an octave.
        heard = np.concatenate([a for t, a in received.audio if first_part[0] <= t < first_part[1]])
        rate = next(iter(received.audio_rates))
        spectrum = np.abs(np.fft.rfft(heard.astype(np.float64)))
        assert np.argmax(spectrum) * rate / len(heard) == pytest.approx(220.0, abs=5.0)
        audio_ms, lip_ms = (loud[0] - sent_at) * 1000, (first_lip - sent_at) * 1000
        print(f"LITE speak → first loud audio {audio_ms:.0f} ms, → first lip frame {lip_ms:.0f} ms")
    finally:
        await lite.session.close()


async def test_interrupt_stops_the_audio_at_once_and_drops_what_is_queued_here(la, media_for):
    lite = await _open(la, lead_seconds=1.0)
    try:
        media = await media_for(lite.started)
        sent_at = time.monotonic()
        event_id = lite.session.speak(to_lite_pcm(_speech(8.0), 48_000))
        following = lite.session.speak(to_lite_pcm(_speech(2.0), 48_000))
        assert await wait_for(lambda: len(_loud_times(media.received, sent_at)) > 25, timeout=15)  # ~1 s heard
        assert lite.session.queued_seconds > 4  # paced: most of it still here
        interrupted_at = time.monotonic()
        dropped = await lite.session.interrupt()
        assert dropped == 2 and lite.session.queued_seconds == 0
        assert await wait_for(lambda: lite.first(LiteEventType.SPEAK_ENDED, event_id) is not None, timeout=5)
        await asyncio.sleep(1.5)
        loud = _loud_times(media.received, sent_at)
        assert loud[-1] - interrupted_at < STOP_WITHIN_S, f"audio went on {loud[-1] - interrupted_at:.3f} s"
        assert media.received.audio_rms(interrupted_at + STOP_WITHIN_S, time.monotonic()) < 50
        assert lite.first(LiteEventType.SPEAK_STARTED, following) is None  # never reached the engine
        ended = lite.first(LiteEventType.SPEAK_ENDED, event_id) or 0.0
        last_ms, ended_ms = (loud[-1] - interrupted_at) * 1000, (ended - interrupted_at) * 1000
        print(f"LITE interrupt → last loud packet {last_ms:.0f} ms, → speak_ended {ended_ms:.0f} ms")
        # The session goes on: the next utterance plays.
        again = lite.session.speak(to_lite_pcm(_speech(0.5), 48_000))
        assert await wait_for(lambda: lite.first(LiteEventType.SPEAK_ENDED, again) is not None, timeout=10)
    finally:
        await lite.session.close()


async def test_our_own_voice_streamed_sentence_by_sentence_is_heard_in_full_with_moving_lips(la, media_for):
    from lib.engine.tts import TARGET_RATE, VoiceBank

    voices = VoiceBank(load_piper=False)  # espeak-ng: the same SpeechChunk path as piper, 500x real time
    lite = await _open(la)
    try:
        media = await media_for(lite.started)
        sent_at = time.monotonic()
        utt = lite.session.begin()
        total = 0
        text = "Hello there. This answer is spoken by our own voice, sent over the LITE socket."
        for chunk in voices.synthesize(text, "espeak-en-us-male"):
            utt.add(to_lite_pcm(chunk.audio, TARGET_RATE))  # the engine's 48 kHz int16 → 24 kHz s16
            total += len(chunk.audio)
            await asyncio.sleep(0)
        utt.end()
        assert await wait_for(lambda: lite.first(LiteEventType.SPEAK_ENDED, utt.event_id) is not None, timeout=30)
        await asyncio.sleep(0.3)
        loud = _loud_times(media.received, sent_at)
        spoken = total / TARGET_RATE
        assert loud and abs((loud[-1] - loud[0]) - spoken) < 0.5, (loud[-1] - loud[0], spoken)
        moving, pairs = _mouth_changes(media.received, loud[0], loud[-1])
        assert pairs > 25 and moving > pairs / 5, (moving, pairs)
    finally:
        await lite.session.close()


# --- keep-alive and the end of the session ------------------------------------------------------


async def test_keep_alive_holds_the_session_and_without_it_the_socket_hears_idle_timeout(la):
    kept = await _open(la, keep_alive=1.0)
    left = await _open(la, keep_alive=3600)
    try:
        assert await left.session.wait_closed(IDLE_TIMEOUT + 6)
        assert left.session.end_reason is SessionEndReason.IDLE_TIMEOUT
        assert left.kinds()[-2:] == [LiteEventType.STATE_UPDATED, LiteEventType.DISCONNECTED]
        assert kept.session.connected and kept.session.end_reason is None
        assert any(m["type"] == "session.keep_alive" for m in kept.session.sent)
        entry = await asyncio.get_running_loop().run_in_executor(None, la.get_session, left.started.session_id)
        assert entry.end_reason is SessionEndReason.IDLE_TIMEOUT
    finally:
        await kept.session.close()
        await left.session.close()


async def test_stopping_the_session_closes_the_socket_after_session_stopped(la):
    lite = await _open(la)
    await asyncio.get_running_loop().run_in_executor(None, la.stop_session, lite.started.session_id)
    assert await lite.session.wait_closed(10)
    tail = [(e.type, e.state or e.end_reason) for _, e in lite.events][-4:]
    assert tail == [
        (LiteEventType.STATE_UPDATED, LiteState.CLOSING),
        (LiteEventType.SESSION_STOPPED, SessionEndReason.USER_CLOSED),
        (LiteEventType.STATE_UPDATED, LiteState.CLOSED),
        (LiteEventType.DISCONNECTED, None),
    ]
    assert lite.events[-1][1].message.startswith("1000")
    with pytest.raises(LiteError, match="HTTP 403"):
        await LiteSession(lite.started.ws_url or "").connect(timeout=5)


async def test_closing_our_socket_leaves_the_session_running_and_a_new_socket_can_take_over(la):
    lite = await _open(la)
    await lite.session.close()
    await asyncio.sleep(0.3)
    entry = await asyncio.get_running_loop().run_in_executor(None, la.get_session, lite.started.session_id)
    assert entry.end_at is None
    again = LiteSession(lite.started.ws_url or "")
    await again.connect(timeout=10)
    try:
        assert again.state is LiteState.CONNECTED
    finally:
        await again.close()
