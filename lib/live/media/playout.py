"""The avatar's audio on its way to the browser: a small FIFO that never lets latency build up.

The provider leg delivers audio in bursts (network, decoding, a busy loop); the browser leg pulls one
20 ms frame at a steady pace. A plain FIFO keeps every burst as permanent delay: after a 300 ms stall
the avatar is heard 300 ms late for the rest of the session, and Chromium delays the picture to match.
This buffer sheds the excess, silently where it can: idle audio is digital silence, so silence that
arrives while enough is buffered is simply not queued. Speech is only dropped past a hard cap.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class PlayoutStats:
    level_ms: float = 0.0  # buffered now
    max_level_ms: float = 0.0
    silence_shed_ms: float = 0.0  # idle audio not queued because enough was buffered
    speech_dropped_ms: float = 0.0  # audio dropped past the hard cap: audible, should stay 0
    underrun_ms: float = 0.0  # padded with silence because nothing had arrived
    hold_ms: float = 0.0  # how long audio waits here, smoothed: the picture is held back as long (lip sync)


# Per 20 ms read: the hold follows the level over ~0.2 s, so the picture's delay does not jump with each
# packet's arrival (a jump shows as a repeated or skipped frame).
HOLD_SMOOTHING = 0.1


class PlayoutBuffer:
    """s16 mono samples in, fixed-size frames out. ``push`` and ``read`` may run on different threads."""

    def __init__(self, sample_rate: int = 48_000, target_ms: float = 60.0, cap_ms: float = 300.0) -> None:
        self._rate = sample_rate
        self._target = int(sample_rate * target_ms / 1000)
        self._cap = int(sample_rate * cap_ms / 1000)
        self._chunks: deque[np.ndarray] = deque()
        self._level = 0
        self._lock = threading.Lock()
        self._stats = PlayoutStats()

    def push(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.int16).reshape(-1)
        if not samples.size:
            return
        with self._lock:
            if self._level >= self._target and not samples.any():
                self._stats.silence_shed_ms += self._ms(samples.size)
                return
            self._chunks.append(samples)
            self._level += samples.size
            if self._level > self._cap:
                self._stats.speech_dropped_ms += self._ms(self._discard(self._level - self._target))
            self._stats.level_ms = self._ms(self._level)
            self._stats.max_level_ms = max(self._stats.max_level_ms, self._stats.level_ms)

    def read(self, n: int) -> np.ndarray:
        """Exactly ``n`` samples: the oldest buffered ones, padded with silence on an underrun."""
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        with self._lock:
            while filled < n and self._chunks:
                head = self._chunks[0]
                take = min(n - filled, head.size)
                out[filled : filled + take] = head[:take]
                filled += take
                if take == head.size:
                    self._chunks.popleft()
                else:
                    self._chunks[0] = head[take:]
            self._level -= filled
            if filled < n and self._stats.level_ms > 0:  # ran dry while audio was flowing, not before it began
                self._stats.underrun_ms += self._ms(n - filled)
            self._stats.level_ms = self._ms(self._level)
            self._stats.hold_ms += HOLD_SMOOTHING * (self._stats.level_ms - self._stats.hold_ms)
        return out

    def clear(self) -> None:
        """Drop everything not yet played (an interrupt: the browser must fall silent at once)."""
        with self._lock:
            self._chunks.clear()
            self._level = 0
            self._stats.level_ms = 0.0

    @property
    def stats(self) -> PlayoutStats:
        with self._lock:
            return PlayoutStats(**vars(self._stats))

    def _discard(self, count: int) -> int:
        dropped = 0
        while dropped < count and self._chunks:
            head = self._chunks[0]
            take = min(count - dropped, head.size)
            if take == head.size:
                self._chunks.popleft()
            else:
                self._chunks[0] = head[take:]
            dropped += take
        self._level -= dropped
        return dropped

    def _ms(self, samples: int) -> float:
        return samples * 1000.0 / self._rate
