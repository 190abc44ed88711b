"""The LITE driver on its own: audio format and conversion, chunking, and its behaviour against a scripted
socket server (queues until ``connected``, paces chunks, interrupt drops our queue, keep-alive, events)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from lib.liveavatar.lite import (
    BYTES_PER_SECOND,
    AudioFormatError,
    LiteError,
    LiteEventType,
    LitePcm,
    LiteSession,
    LiteSessionThread,
    LiteState,
    chunk_sizes,
    parse_message,
    to_lite_pcm,
)
from lib.liveavatar.models import SessionEndReason


def _tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _pcm(seconds: float) -> LitePcm:
    return to_lite_pcm(_tone(seconds, 24_000), 24_000)


# --- audio --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "rate", "message"),
    [
        (np.zeros(100, np.int16), 22_050, "must be 24000 Hz; this is 22050 Hz"),
        (np.zeros(100, np.int16), 48_000, "must be 24000 Hz; this is 48000 Hz"),
        (np.zeros(100, np.float32), 24_000, "16-bit integer samples; this is float32"),
        (np.zeros((100, 2), np.int16), 24_000, "must be mono"),
    ],
)
def test_audio_in_another_format_is_refused_naming_what_it_is(samples, rate, message):
    with pytest.raises(AudioFormatError, match=message):
        LitePcm.from_samples(samples, rate)


def test_raw_bytes_must_be_whole_16_bit_samples():
    with pytest.raises(AudioFormatError, match="3 bytes"):
        LitePcm(b"abc")
    assert LitePcm(b"abcd").seconds == pytest.approx(4 / BYTES_PER_SECOND)


@pytest.mark.parametrize("rate", [22_050, 48_000, 16_000])
def test_piper_float_audio_and_the_engines_48k_int16_become_24k_s16_at_the_same_pitch(rate):
    tone = _tone(1.0, rate, freq=500.0)
    for samples in (tone, (tone * 32767).astype(np.int16)):
        pcm = to_lite_pcm(samples, rate)
        out = np.frombuffer(pcm.data, "<i2")
        assert abs(len(out) - 24_000) <= 48  # one second stays one second
        spectrum = np.abs(np.fft.rfft(out[2000:22000]))
        assert np.argmax(spectrum) * 24_000 / 20_000 == pytest.approx(500.0, abs=2.0)
        assert 0.4 * 32767 < np.abs(out).max() <= 32767  # loudness kept, no wrap-around


def test_float_audio_beyond_full_scale_is_clipped_not_wrapped():
    out = np.frombuffer(to_lite_pcm(np.full(2400, 1.7, np.float32), 24_000).data, "<i2")
    assert out.min() > 30_000


def test_an_utterance_is_cut_600_ms_first_then_whole_seconds():
    assert chunk_sizes(round(2.9 * BYTES_PER_SECOND)) == [28_800, 48_000, 48_000, 14_400]
    assert chunk_sizes(1000) == [1000]
    assert chunk_sizes(0) == []


def test_server_messages_parse_into_events():
    stopped = parse_message('{"type": "session.stopped", "end_reason": "IDLE_TIMEOUT"}')
    assert (stopped.type, stopped.end_reason) == (LiteEventType.SESSION_STOPPED, SessionEndReason.IDLE_TIMEOUT)
    started = parse_message('{"type": "agent.speak_started", "event_id": "e", "task": {"id": "t"}}')
    assert (started.event_id, started.task_id) == ("e", "t")
    assert parse_message('{"type": "session.state_updated", "state": "connected"}').state is LiteState.CONNECTED
    assert parse_message('{"type": "agent.something_new"}').type == "agent.something_new"
    for bad in ("nope", "[1]", '{"state": "connected"}'):
        with pytest.raises(ValueError):
            parse_message(bad)


# --- against a scripted server ------------------------------------------------------------------


@dataclass
class FakeServer:
    """A LITE server that says ``connected`` only when told to and records every message after that."""

    url: str = ""
    before_connected: list[dict] = field(default_factory=list)
    received: list[tuple[float, dict]] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    socket: ServerConnection | None = None
    on_message: Callable[[dict], list[dict]] = lambda _m: []

    async def handler(self, ws: ServerConnection) -> None:
        self.socket = ws
        await ws.send(json.dumps({"type": "session.state_updated", "state": "connecting"}))
        reader = asyncio.ensure_future(self._read(ws))
        ready = asyncio.ensure_future(self.connected.wait())
        await asyncio.wait({reader, ready}, return_when=asyncio.FIRST_COMPLETED)  # the client may leave first
        if ready.done():
            await ws.send(json.dumps({"type": "session.state_updated", "state": "connected"}))
        ready.cancel()
        await reader

    async def _read(self, ws: ServerConnection) -> None:
        async for text in ws:
            message = json.loads(text)
            if not self.connected.is_set():
                self.before_connected.append(message)
                continue
            self.received.append((time.monotonic(), message))
            for reply in self.on_message(message):
                await ws.send(json.dumps(reply))


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    async with serve(fake.handler, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        fake.url = f"ws://127.0.0.1:{port}/v1/lite/s?token=secret-token-123"
        yield fake


async def _wait(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        await asyncio.sleep(0.01)
    return predicate()


async def test_speech_before_connected_is_queued_and_sent_once_connected(server):
    session = LiteSession(server.url)
    connecting = asyncio.ensure_future(session.connect(timeout=5))
    await asyncio.sleep(0.2)
    event_id = session.speak(_pcm(0.5))
    await asyncio.sleep(0.2)
    assert not connecting.done() and session.state is LiteState.CONNECTING
    server.connected.set()
    await connecting
    assert await _wait(lambda: len(server.received) == 2)
    assert server.before_connected == []  # nothing the server would have dropped
    kinds = [(m["type"], m["event_id"]) for _, m in server.received]
    assert kinds == [("agent.speak", event_id), ("agent.speak_end", event_id)]
    await session.close()


async def test_chunks_share_the_event_id_and_are_600_ms_then_one_second(server):
    server.connected.set()
    session = LiteSession(server.url, lead_seconds=10)
    await session.connect()
    event_id = session.speak(_pcm(2.9))
    assert await _wait(lambda: any(m["type"] == "agent.speak_end" for _, m in server.received))
    speaks = [m for _, m in server.received if m["type"] == "agent.speak"]
    assert {m["event_id"] for m in speaks} == {event_id}
    assert [len(base64.b64decode(m["audio"])) for m in speaks] == chunk_sizes(round(2.9 * BYTES_PER_SECOND))
    assert server.received[-1][1] == {"type": "agent.speak_end", "event_id": event_id}
    await session.close()


async def test_chunks_are_paced_to_stay_a_little_ahead_of_real_time(server):
    server.connected.set()
    session = LiteSession(server.url, lead_seconds=1.0, first_chunk_seconds=0.5, chunk_seconds=0.5)
    await session.connect()
    session.speak(_pcm(3.0))
    assert await _wait(lambda: any(m["type"] == "agent.speak_end" for _, m in server.received), 6)
    times = [t for t, m in server.received if m["type"] == "agent.speak"]
    # 3 s of audio, at most 1 s ahead: the last chunk leaves about 1.5 s after the first, not at once.
    assert 1.2 < times[-1] - times[0] < 2.5, times
    await session.close()


async def test_interrupt_drops_what_is_queued_here_and_tells_the_server(server):
    server.connected.set()
    session = LiteSession(server.url, lead_seconds=0.5)
    await session.connect()
    long_one = session.speak(_pcm(10.0))
    queued = session.speak(_pcm(2.0))
    await asyncio.sleep(0.3)
    assert session.queued_seconds > 8
    dropped = await session.interrupt()
    assert dropped == 2 and session.queued_seconds == 0
    await asyncio.sleep(0.5)
    after = [m for t, m in server.received if m["type"] == "agent.interrupt"]
    assert len(after) == 1
    sent_after = [m for m in [m for _, m in server.received][[m for _, m in server.received].index(after[0]) :]]
    assert all(m["type"] == "agent.interrupt" for m in sent_after)  # no chunk and no speak_end after it
    assert not any(m.get("event_id") == queued for _, m in server.received)
    assert sum(m["type"] == "agent.speak" and m["event_id"] == long_one for _, m in server.received) <= 2
    # the driver keeps working after an interrupt
    next_id = session.speak(_pcm(0.3))
    assert await _wait(lambda: server.received[-1][1] == {"type": "agent.speak_end", "event_id": next_id})
    await session.close()


async def test_keep_alive_is_sent_on_its_cadence(server):
    server.connected.set()
    session = LiteSession(server.url, keep_alive_seconds=0.2)
    await session.connect()
    await asyncio.sleep(1.1)
    times = [t for t, m in server.received if m["type"] == "session.keep_alive"]
    assert 4 <= len(times) <= 6, times
    assert all(0.15 < b - a < 0.35 for a, b in itertools.pairwise(times))
    await session.close()


async def test_events_update_state_and_reach_the_callback_and_the_session_stopped_reason(server):
    server.connected.set()
    seen: list[str] = []
    server.on_message = lambda m: (
        [{"type": "agent.speak_started", "event_id": m["event_id"], "task": {"id": "t1"}}]
        if m["type"] == "agent.speak_end"
        else []
    )
    session = LiteSession(server.url, on_event=lambda e: seen.append(e.type))
    await session.connect()
    session.speak(_pcm(0.2))
    assert await _wait(lambda: session.speaking)
    assert server.socket is not None
    await server.socket.send(json.dumps({"type": "session.stopped", "end_reason": "MAX_DURATION_REACHED"}))
    await server.socket.close()
    assert await session.wait_closed(5)
    assert session.end_reason is SessionEndReason.MAX_DURATION_REACHED
    await asyncio.sleep(0.05)
    assert all(task.done() for task in session._tasks)  # no keep-alive left ticking for a closed socket
    assert not session.speaking and session.state is LiteState.CLOSED
    assert seen[-3:] == [LiteEventType.SPEAK_STARTED, LiteEventType.SESSION_STOPPED, LiteEventType.DISCONNECTED]


async def test_a_server_that_never_says_connected_fails_without_the_token_in_the_message(server):
    session = LiteSession(server.url)
    with pytest.raises(LiteError) as caught:
        await session.connect(timeout=0.5)
    assert "did not report 'connected'" in str(caught.value)
    assert "secret-token-123" not in str(caught.value) and "token" not in str(caught.value)


async def test_nothing_listening_is_a_lite_error_without_the_url():
    session = LiteSession("ws://127.0.0.1:9/v1/lite/s?token=secret-token-123")
    with pytest.raises(LiteError) as caught:
        await session.connect(timeout=2)
    assert "secret-token-123" not in str(caught.value)


async def test_the_thread_driver_can_be_used_from_plain_threads(server):
    server.connected.set()
    loop = asyncio.get_running_loop()
    driver = await loop.run_in_executor(None, LiteSessionThread, server.url)
    try:
        await loop.run_in_executor(None, driver.connect, 5.0)
        assert driver.state is LiteState.CONNECTED
        event_id = await loop.run_in_executor(None, driver.begin)
        for _ in range(3):
            driver.add(event_id, _pcm(0.3))
        driver.end(event_id)
        assert await _wait(lambda: any(m["type"] == "agent.speak_end" for _, m in server.received))
        total = sum(len(base64.b64decode(m["audio"])) for _, m in server.received if m["type"] == "agent.speak")
        assert total == 3 * len(_pcm(0.3).data)
        assert driver.events.get(timeout=1).type == LiteEventType.STATE_UPDATED
    finally:
        await loop.run_in_executor(None, driver.close)


def test_the_twins_socket_address_follows_the_engines_scheme():
    from lib.engine.liveavatar_lite import ws_url

    assert ws_url("http://127.0.0.1:8765/", "s1", "tok") == "ws://127.0.0.1:8765/v1/lite/s1?token=tok"
    assert ws_url("https://engine.example:443", "s1", "tok") == "wss://engine.example:443/v1/lite/s1?token=tok"
