"""A real aiortc receiver for engine sessions: what a viewer would get."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np

from lib.heygen.client import StreamingClient
from lib.heygen.models import NewSessionRequest
from lib.live.media.direct import DirectConnection


@dataclass
class Received:
    video: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (arrival, luma plane)
    audio: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (arrival, mono int16 samples)
    audio_rates: set[int] = field(default_factory=set)
    sizes: set[tuple[int, int]] = field(default_factory=set)
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    first_frame_at: float | None = None

    def on_video(self, frame: av.VideoFrame) -> None:
        now = time.monotonic()
        self.first_frame_at = self.first_frame_at or now
        self.sizes.add((frame.width, frame.height))
        self.video.append((now, frame.to_ndarray(format="gray")))

    def on_audio(self, frame: av.AudioFrame) -> None:
        self.audio_rates.add(frame.sample_rate)
        samples = frame.to_ndarray()
        if samples.ndim == 2 and samples.shape[0] == 1 and frame.layout.nb_channels == 2:
            samples = samples.reshape(-1, 2)[:, 0]  # packed stereo → left channel
        elif samples.ndim == 2:
            samples = samples[0]
        self.audio.append((time.monotonic(), samples.astype(np.int16)))

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.append((time.monotonic(), event))

    def fps(self, since: float) -> float:
        times = [t for t, _ in self.video if t >= since]
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0

    def audio_rms(self, start: float, end: float) -> float:
        parts = [a for t, a in self.audio if start <= t < end]
        if not parts:
            return 0.0
        data = np.concatenate(parts).astype(np.float64)
        return float(np.sqrt(np.mean(data**2)))


@dataclass
class LiveSession:
    session_id: str
    connection: DirectConnection
    received: Received
    created_at: float


async def open_session(client: StreamingClient, request: NewSessionRequest | None = None) -> LiveSession:
    loop = asyncio.get_running_loop()
    created = time.monotonic()
    session = await loop.run_in_executor(None, client.new, request or NewSessionRequest(quality="low"))
    received = Received()
    conn = DirectConnection(
        on_video=received.on_video,
        on_audio=received.on_audio,
        on_event=received.on_event,
        ice_servers=session.ice_servers,
    )
    answer = await conn.answer(session.sdp)
    await loop.run_in_executor(None, client.start, session.session_id, answer)
    return LiveSession(session.session_id, conn, received, created)


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()
