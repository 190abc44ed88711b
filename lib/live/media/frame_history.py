"""The last few decoded pictures with their arrival times, so a picture can be shown in step with its sound.

On the decoded leg (LiveKit, or ``AVATAR_OPS_MEDIA_PASSTHROUGH=0``) the sound waits in the playout buffer and,
on direct WebRTC, in aiortc's jitter buffer, while the newest picture would go to the browser at once: the lips
moved up to 0.2 s before their sound (bench_browser ``--decoded``: sound 190 ms behind at the browser).
"""

from __future__ import annotations

import time
from collections import deque

import av

# 0.4 s at 30 fps: 9–22 MB of pictures at 480p–720p for one session.
RECENT_FRAMES = 12
MAX_HOLD_S = 0.3  # more would be a late picture, not lip sync: the audio sheds delay past its target


class FrameHistory:
    """Appended on the media loop, read by the browser's sender thread."""

    def __init__(self, size: int = RECENT_FRAMES) -> None:
        self._frames: deque[tuple[float, av.VideoFrame]] = deque(maxlen=size)

    def add(self, frame: av.VideoFrame, at: float | None = None) -> None:
        self._frames.append((time.monotonic() if at is None else at, frame))

    def behind(self, seconds: float, now: float | None = None) -> av.VideoFrame | None:
        """The newest picture that arrived at least ``seconds`` ago (at most ``MAX_HOLD_S``). Until one is that
        old, the oldest kept: the first picture of a stream shows at once."""
        cutoff = (time.monotonic() if now is None else now) - min(max(seconds, 0.0), MAX_HOLD_S)
        frames = tuple(self._frames)  # taken whole: the media loop appends meanwhile
        for arrived, frame in reversed(frames):
            if arrived <= cutoff:
                return frame
        return frames[0][1] if frames else None
