"""One render clock per session: every tick emits one video frame together with its own audio slice.

Pairing frames and audio slices at send time keeps lips in sync even when rendering falls behind
(fps drops instead of drift), and makes interrupts immediate: the next tick is simply idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from lib.engine.mouth import MouthShape

SAMPLE_RATE = 48_000
VIDEO_CLOCK = 90_000
AUDIO_FRAME_SAMPLES = 960  # 20 ms: what aiortc's Opus encoder consumes per packet


class FrameComposer(Protocol):
    def compose(
        self,
        mouth: MouthShape,
        openness: float,
        eyes_closed: float,
        listening: bool,
        sway: tuple[int, int] = (0, 0),
        breath: float = 0.0,
    ) -> av.VideoFrame: ...


@dataclass
class Tick:
    """What the speech side wants this frame to show and play."""

    audio: np.ndarray  # int16, exactly one frame's worth of samples
    mouth: MouthShape
    openness: float
    speaking: bool


class TickSource(Protocol):
    def next_tick(self, samples: int) -> Tick: ...


class FrameQueueTrack(MediaStreamTrack):
    """A track fed by the render clock. It keeps only the newest ``depth`` frames: a slow consumer
    (encoder behind, or not yet connected) must never build up latency."""

    def __init__(self, kind: str, depth: int) -> None:
        super().__init__()
        self.kind = kind
        self._depth = depth
        self._frames: deque[av.frame.Frame] = deque()
        self._ready = asyncio.Event()
        self.dropped = 0

    def push(self, frame: av.frame.Frame) -> None:
        if self.readyState != "live":
            return
        while len(self._frames) >= self._depth:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(frame)
        self._ready.set()

    def clear(self) -> None:
        self._frames.clear()

    async def recv(self) -> av.frame.Frame:
        while not self._frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()

    def stop(self) -> None:
        super().stop()
        self._frames.clear()
        self._ready.set()


class Blinker:
    """Natural blinks: every 1–8 s, close 50 ms, shut 100–300 ms, open 100 ms, 15 % doubles."""

    def __init__(self, fps: int, rng: random.Random) -> None:
        self._fps = fps
        self._rng = rng
        self._curve: list[float] = []
        self._next = self._frames(rng.uniform(1.0, 4.0))

    def _frames(self, seconds: float) -> int:
        return max(1, round(seconds * self._fps))

    def _blink_curve(self) -> list[float]:
        closing = [0.5, 1.0][: self._frames(0.05) + 1]
        shut = [1.0] * self._frames(self._rng.uniform(0.1, 0.3))
        opening = [0.66, 0.33][: self._frames(0.1)]
        return closing + shut + opening

    def eyes_closed(self) -> float:
        if self._curve:
            return self._curve.pop(0)
        self._next -= 1
        if self._next <= 0:
            self._curve = self._blink_curve()
            if self._rng.random() < 0.15:
                self._curve += [0.0, 0.0, *self._blink_curve()]
            self._next = self._frames(self._rng.uniform(1.0, 8.0))
            return self._curve.pop(0)
        return 0.0


class Motion:
    """Slow head sway and breathing; sway moves by even pixels so chroma planes stay aligned."""

    def __init__(self, fps: int, rng: random.Random) -> None:
        self._fps = fps
        self._phase = rng.uniform(0, 2 * math.pi)

    def at(self, n: int) -> tuple[tuple[int, int], float]:
        t = n / self._fps
        dx = 2 * round(1.6 * math.sin(2 * math.pi * t / 7.3 + self._phase))
        dy = 2 * round(0.8 * math.sin(2 * math.pi * t / 5.1 + self._phase * 0.7))
        breath = 0.5 + 0.5 * math.sin(2 * math.pi * t / 4.2 + self._phase)
        return (dx, dy), breath


@dataclass
class ClockStats:
    frames: int = 0
    late_resyncs: int = 0
    compose_ms_total: float = 0.0
    started_at: float = 0.0

    @property
    def fps(self) -> float:
        elapsed = time.monotonic() - self.started_at
        return self.frames / elapsed if elapsed > 0 else 0.0


class RenderClock:
    """Drives one session's media: ``fps`` ticks a second, each a composed frame plus its audio."""

    def __init__(
        self,
        composer: FrameComposer,
        source: TickSource,
        *,
        fps: int = 25,
        is_listening: Callable[[], bool] = lambda: False,
        seed: int | None = None,
    ) -> None:
        self.video = FrameQueueTrack("video", depth=2)
        # Audio is never dropped in normal running (a gap is audible and shortens speech); the bound only
        # matters before the peer connects, and ``peer_connected`` drops that backlog.
        self.audio = FrameQueueTrack("audio", depth=50)
        self.composer = composer
        self._source = source
        self._fps = fps
        self._samples = SAMPLE_RATE // fps
        self._is_listening = is_listening
        rng = random.Random(seed)
        self._blinker = Blinker(fps, rng)
        self._motion = Motion(fps, rng)
        self._task: asyncio.Task | None = None
        self.stats = ClockStats()
        self._audio_pts = 0
        # Called with each frame and its audio slice (lib.engine.packets: the encoded media channel).
        self.on_tick: Callable[[av.VideoFrame, list[av.AudioFrame]], None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self.stats.started_at = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="render-clock")

    def peer_connected(self) -> None:
        """Start the peer on fresh media: nothing rendered while it was still connecting."""
        self.video.clear()
        self.audio.clear()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.video.stop()
        self.audio.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        period = 1.0 / self._fps
        while True:
            delay = start + n * period - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.25:
                # The machine stalled: re-anchor instead of bursting frames the peer would show at once.
                start = loop.time() - n * period
                self.stats.late_resyncs += 1
            self.tick(n)
            n += 1

    def tick(self, n: int) -> Tick:
        tick = self._source.next_tick(self._samples)
        eyes = self._blinker.eyes_closed()
        sway, breath = self._motion.at(n)
        t0 = time.perf_counter()
        frame = self.composer.compose(tick.mouth, tick.openness, eyes, self._is_listening(), sway, breath)
        self.stats.compose_ms_total += (time.perf_counter() - t0) * 1000
        frame.pts = n * (VIDEO_CLOCK // self._fps)
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        self.video.push(frame)
        slices = []
        for offset in range(0, len(tick.audio), AUDIO_FRAME_SAMPLES):
            slices.append(_audio_frame(tick.audio[offset : offset + AUDIO_FRAME_SAMPLES], self._audio_pts))
            self.audio.push(slices[-1])
            self._audio_pts += AUDIO_FRAME_SAMPLES
        if self.on_tick is not None:
            self.on_tick(frame, slices)
        self.stats.frames += 1
        return tick


def _audio_frame(samples: np.ndarray, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    frame.pts = pts
    frame.time_base = Fraction(1, SAMPLE_RATE)
    return frame
