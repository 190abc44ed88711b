"""The local engine's encoded media, forwarded to the browser without decoding or encoding it (issue 15).

``PacketFeed`` reads the engine's media channel (``lib.engine.packets``: VP8 + Opus packets over a WebSocket)
on the media loop into two bounded queues. The page's tracks (``PassthroughVideoTrack``/``PassthroughAudioTrack``)
hand those packets to streamlit-webrtc's peer connection, whose ``RTCRtpSender`` packs an ``av.Packet`` as it is
(``Vp8Encoder.pack``/``OpusEncoder.pack`` in aiortc 1.16): no codec runs in the dashboard for such a session.
Before a session is live (and for providers that only hand decoded frames, e.g. LiveKit) the tracks fall back
to the page's frame sources, which the sender encodes as before.

A browser's keyframe request (RTCP PLI/FIR) reaches ``RTCRtpSender._send_keyframe``, which only flags its own
encoder; ``install_keyframe_forwarding`` makes it also tell the passthrough track, which asks the engine.

Every queue is bounded. Video that falls behind is dropped up to the next keyframe (and one is asked for);
audio keeps at most ``AUDIO_CAP_MS``. ``PASSTHROUGH_ENV=0`` turns the whole path off (decode + encode as before).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import av
from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from lib.engine.packets import AUDIO, VIDEO, unpack_message
from lib.event_wait import wait_event
from lib.live.media.playout import PlayoutStats

log = logging.getLogger("avatar_ops.live")

PASSTHROUGH_ENV = "AVATAR_OPS_MEDIA_PASSTHROUGH"
VIDEO_DEPTH = 4  # frames: 160 ms at 25 fps; more means the browser is shown the past
AUDIO_CAP_MS = 200
AUDIO_PACKET_MS = 20
# Audio queued here beyond this much is delay the browser would keep for the rest of the session: its jitter
# buffer only drains slowly (time-stretching), and it holds the video back by as much to keep them in sync.
AUDIO_LAG_PACKETS = 4
LATE_S = 0.06  # a departure this late starts a new schedule instead of a catch-up burst
VIDEO_FALLBACK_FPS = 25
# A notice that stays until the user acts ("Session ended…"): each frame is still encoded, 17-23 % of a core at
# 25 fps for a tab left open after its session ended. Chromium keeps showing the last frame in between.
STILL_FRAME_PERIOD_S = 0.5
CONSUMER_GONE_S = 0.5  # a queue nobody read for this long asks for no keyframes when it overflows
AUDIO_WAIT_S = 0.1  # no audio packet for this long while live: send silence, so the browser's clock keeps going
VIDEO_CLOCK = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
AUDIO_TIME_BASE = fractions.Fraction(1, 48_000)
# A 20 ms Opus packet of digital silence (TOC 0xF8: CELT fullband 20 ms, mono): what a silent tick carries.
OPUS_SILENCE = b"\xf8\xff\xfe"


def passthrough_enabled() -> bool:
    """Forward the local engine's packets (default), unless ``AVATAR_OPS_MEDIA_PASSTHROUGH=0``."""
    return os.environ.get(PASSTHROUGH_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class PacketQueue:
    """A bounded, thread-safe packet queue: the media loop fills it, Streamlit's loop (the page's peer
    connection) drains it. Video: overflow drops everything queued and waits for the next keyframe."""

    def __init__(self, kind: int, depth: int, on_keyframe_needed: Callable[[], None]) -> None:
        self.kind = kind
        self._depth = depth
        self._items: deque[av.Packet] = deque()
        self._lock = threading.Lock()
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._keyframe_needed = on_keyframe_needed
        self.synced = kind != VIDEO  # video starts at a keyframe
        self.dropped = 0
        # Only these were missed by someone: what overflowed before the first read was queued for nobody (the
        # status panel said "0.2 s dropped to catch up" after every START).
        self.dropped_while_read = 0
        self.max_level = 0
        self._read_at = float("-inf")

    def put(self, packet: av.Packet, keyframe: bool) -> None:
        need_keyframe = False
        with self._lock:
            if self.kind == VIDEO:
                if not self.synced and not keyframe:
                    self._drop(1)
                    return
                if len(self._items) >= self._depth:
                    self._drop(len(self._items))
                    self._items.clear()
                    if not keyframe:
                        self.synced = False
                        self._drop(1)
                        # Only a reader needs the picture back soon; a new reader asks for its own keyframe.
                        need_keyframe = time.monotonic() - self._read_at < CONSUMER_GONE_S
                self.synced = self.synced or keyframe
            elif len(self._items) >= self._depth:
                self._items.popleft()
                self._drop(1)
            if self.synced:
                self._items.append(packet)
                self.max_level = max(self.max_level, len(self._items))
            waiter = self._waiter
        if need_keyframe:
            self._keyframe_needed()
            return
        if waiter is not None:
            loop, event = waiter
            with contextlib.suppress(RuntimeError):  # the consumer's loop is closed: nobody waits any more
                loop.call_soon_threadsafe(event.set)

    def resync(self) -> None:
        """A new consumer (or a lost packet): show nothing until the next keyframe."""
        with self._lock:
            self._items.clear()
            self.synced = self.kind != VIDEO

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def trim(self, keep: int) -> None:
        """Keep only the newest ``keep`` packets (audio: what is older would only add delay)."""
        with self._lock:
            while len(self._items) > keep:
                self._items.popleft()
                self._drop(1)

    def _drop(self, count: int) -> None:
        """Under the lock."""
        self.dropped += count
        if self._read_at > float("-inf"):
            self.dropped_while_read += count

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    async def get(self, timeout: float | None = None) -> av.Packet | None:
        """The next packet, or None after ``timeout`` seconds without one."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._lock:
                self._read_at = time.monotonic()
                if self._items:
                    return self._items.popleft()
                if self._waiter is None or self._waiter[0] is not loop:
                    self._waiter = (loop, asyncio.Event())
                event = self._waiter[1]
                event.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            await wait_event(event, remaining)


class PacketFeed:
    """One live session's media channel, read on the media loop."""

    def __init__(
        self,
        channel: dict[str, str],
        session_id: str,
        *,
        on_video: Callable[[], None] = lambda: None,
        on_audio: Callable[[], None] = lambda: None,
    ) -> None:
        self._url = f"{channel['url']}?session_id={session_id}"
        self._token = channel["token"]
        self.video_codec = channel.get("video_codec", "VP8")
        self._on_video = on_video
        self._on_audio = on_audio
        self.video = PacketQueue(VIDEO, VIDEO_DEPTH, self.request_keyframe)
        self.audio = PacketQueue(AUDIO, AUDIO_CAP_MS // AUDIO_PACKET_MS, lambda: None)
        self._ws: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: asyncio.Task | None = None
        self.packets = 0
        self.bytes = 0
        self.keyframes_requested = 0
        self.keyframes_received = 0
        self.silence_sent_ms = 0.0  # audio gaps filled while live (the engine fell behind)
        self.closed = False

    async def connect(self, timeout: float = 5.0) -> None:
        from websockets.asyncio.client import connect  # only the dashboard needs a WebSocket client

        self._loop = asyncio.get_running_loop()
        self._ws = await asyncio.wait_for(
            connect(
                self._url,
                additional_headers={"Authorization": f"Bearer {self._token}"},
                max_size=4 * 1024 * 1024,
                compression=None,  # packets are compressed already
                open_timeout=timeout,
            ),
            timeout,
        )
        self._reader = self._loop.create_task(self._read(), name="media-channel")

    async def _read(self) -> None:
        ws = self._ws
        with contextlib.suppress(Exception):
            async for message in ws:
                if not isinstance(message, bytes):
                    continue
                item = unpack_message(message)
                packet = av.Packet(item.data)
                packet.pts = item.pts
                packet.time_base = item.time_base
                self.packets += 1
                self.bytes += len(item.data)
                if item.kind == VIDEO:
                    if item.keyframe:
                        self.keyframes_received += 1
                    self.video.put(packet, item.keyframe)
                    self._on_video()
                else:
                    self.audio.put(packet, False)
                    self._on_audio()
        self.closed = True

    def request_keyframe(self) -> None:
        """Ask the engine for a keyframe; callable from any thread."""
        loop, ws = self._loop, self._ws
        if loop is None or ws is None or self.closed:
            return
        self.keyframes_requested += 1
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self._send({"type": "keyframe"}), loop)

    async def _send(self, message: dict[str, str]) -> None:
        with contextlib.suppress(Exception):
            await self._ws.send(json.dumps(message))

    def clear_audio(self) -> None:
        """An interrupt: what the browser has not heard yet must not play."""
        self.audio.clear()

    def audio_stats(self) -> PlayoutStats:
        level = len(self.audio) * AUDIO_PACKET_MS
        return PlayoutStats(
            level_ms=float(level),
            max_level_ms=float(self.audio.max_level * AUDIO_PACKET_MS),
            speech_dropped_ms=float(self.audio.dropped_while_read * AUDIO_PACKET_MS),
            underrun_ms=self.silence_sent_ms,
        )

    async def close(self) -> None:
        self.closed = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self.video.clear()
        self.audio.clear()


FeedSource = Callable[[], PacketFeed | None]


class Pacer:
    """Departures one ``period`` apart on the wall clock. A late departure goes at once and the schedule catches
    up; one later than ``LATE_S`` (a stall) starts a new schedule, so what follows is never a burst."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._next_at: float | None = None

    def reset(self) -> None:
        self._next_at = None

    async def wait(self, period: float | None = None) -> float:
        """Sleep until the next slot; returns how long a stall just skipped (0.0 when on time). ``period``: the
        next slot's distance, when it is not the usual one."""
        now = time.monotonic()
        skipped = 0.0
        if self._next_at is None:
            self._next_at = now
        elif now - self._next_at > LATE_S:
            skipped, self._next_at = now - self._next_at, now
        elif self._next_at > now:
            await asyncio.sleep(self._next_at - now)
        self._next_at += self.period if period is None else period
        return skipped


class _PassthroughTrack(MediaStreamTrack):
    """Packets from the current feed when there is one, else the fallback track's frames.

    ``wanted`` says whether anybody can still be shown this track (False once its tab is gone): the track then
    ends, so its sender stops. A closed tab's peer connection is only closed when ICE gives up on it, about
    30 s later; until then its sender would encode the placeholder 25 times a second for nobody (a fifth of a
    core per closed tab at 480p, taken from the sessions still live)."""

    # Read by one sender, straight (lib.live.media.relay): its pace pulls the media; nothing queues in between.
    single_consumer = True

    def __init__(
        self, kind: str, fallback: MediaStreamTrack, feed: FeedSource, wanted: Callable[[], bool] = lambda: True
    ) -> None:
        super().__init__()
        self.kind = kind
        self._fallback = fallback
        self._feed = feed
        self._wanted = wanted
        self.packets_sent = 0
        self.frames_sent = 0  # fallback frames: the sender encodes these

    def stop(self) -> None:
        super().stop()
        self._fallback.stop()  # made for this track only: it ends with it

    def _check_live(self) -> None:
        if self.readyState == "live" and self._fallback.readyState == "live" and not self._wanted():
            log.info("the %s track's tab is gone: it stops sending", self.kind)
            self.stop()
        if self.readyState != "live" or self._fallback.readyState != "live":
            self.stop()
            raise MediaStreamError

    def request_keyframe(self) -> None:
        feed = self._feed()
        if feed is not None:
            feed.request_keyframe()


class PassthroughVideoTrack(_PassthroughTrack):
    """``still`` says the fallback's picture is a notice that stays as it is: it is then sent twice a second."""

    def __init__(
        self,
        fallback: MediaStreamTrack,
        feed: FeedSource,
        wanted: Callable[[], bool] = lambda: True,
        still: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__("video", fallback, feed, wanted)
        self._still = still
        self._started = time.monotonic()
        self._last_pts = -1
        self._current: PacketFeed | None = None
        # streamlit-webrtc's source tracks pace themselves from their first frame on: after a stretch of
        # forwarded packets they would hand out every frame they "missed" at once, each one encoded.
        self._fallback_pacer = Pacer(1 / VIDEO_FALLBACK_FPS)

    def _pts(self) -> int:
        # One wall-clock timeline for fallback frames and forwarded packets alike: the browser sees a steady
        # clock across the switch, and each packet's time is the time it was forwarded (send-time sync).
        pts = max(self._last_pts + 1, int((time.monotonic() - self._started) * VIDEO_CLOCK))
        self._last_pts = pts
        return pts

    async def recv(self) -> av.Packet | av.frame.Frame:
        self._check_live()
        feed = self._feed()
        # Until the engine's first keyframe arrives (the session is still being set up) the placeholder plays:
        # the browser gets a picture at once instead of waiting on a stream that has not started.
        while feed is not None and not feed.closed and feed.keyframes_received:
            if feed is not self._current:
                self._current = feed
                feed.video.resync()  # this consumer starts at a keyframe
                feed.request_keyframe()
            packet = await feed.video.get(timeout=0.5)
            self._check_live()
            if packet is not None:
                packet.pts = self._pts()
                packet.time_base = VIDEO_TIME_BASE
                self.packets_sent += 1
                return packet
            # Nothing new: the browser keeps the last picture; the page says "no media for N s".
            feed = self._feed() if self._feed() is feed else None
        if self._current is not None:
            self._current = None
            self._fallback_pacer.reset()
        await self._fallback_pacer.wait(STILL_FRAME_PERIOD_S if self._still() else None)
        frame = await self._fallback.recv()
        frame.pts = self._pts()
        frame.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        return frame


class PassthroughAudioTrack(_PassthroughTrack):
    """Forwards the engine's Opus packets one 20 ms slot apart, as a microphone would send them.

    The engine renders 40 ms at a time, so its packets arrive in pairs, and in bursts after a stall; passed on
    as they come, that jitter makes Chromium's jitter buffer (and, through lip sync, the video) wait 150–250 ms.
    Paced, a late packet goes out at once and the schedule catches up; a backlog past ``AUDIO_LAG_PACKETS`` is
    dropped rather than turned into lasting delay. Timestamps follow the wall clock (a stall shows as a gap of
    its length), as the browser's lip sync assumes.
    """

    def __init__(self, fallback: MediaStreamTrack, feed: FeedSource, wanted: Callable[[], bool] = lambda: True) -> None:
        super().__init__("audio", fallback, feed, wanted)
        # One sample count for fallback frames and packets: the Opus encoder stamps the frames it encodes by
        # the samples it has encoded, so packets continue that count and the browser sees no jump.
        self._samples = 0
        self._pacer = Pacer(AUDIO_PACKET_MS / 1000)
        self._current: PacketFeed | None = None

    def _stamp(self, packet: av.Packet) -> av.Packet:
        packet.pts = self._samples
        packet.time_base = AUDIO_TIME_BASE
        self._samples += 960
        self.packets_sent += 1
        return packet

    async def recv(self) -> av.Packet | av.frame.Frame:
        self._check_live()
        feed = self._feed()
        if feed is not None and not feed.closed and feed.packets:
            if feed is not self._current:
                self._current = feed
                feed.audio.trim(1)  # queued before anyone listened: the browser would start that far behind
                self._pacer.reset()
            skipped = await self._pacer.wait()
            self._samples += round(skipped * 1000 / AUDIO_PACKET_MS) * 960
            feed.audio.trim(AUDIO_LAG_PACKETS)
            packet = await feed.audio.get(timeout=AUDIO_WAIT_S)
            self._check_live()
            if packet is not None:
                return self._stamp(packet)
            if self._feed() is feed:
                feed.silence_sent_ms += AUDIO_PACKET_MS
                return self._stamp(av.Packet(OPUS_SILENCE))
        if self._current is not None:
            self._current = None
            self._pacer.reset()
        await self._pacer.wait()  # the source track would catch up on what it "missed" in one burst
        frame = await self._fallback.recv()
        self._samples += 960
        self.frames_sent += 1
        return frame


def _passthrough_source(track: Any) -> _PassthroughTrack | None:
    """The passthrough track behind a sender's track (streamlit-webrtc relays source tracks via MediaRelay)."""
    for _ in range(4):
        if isinstance(track, _PassthroughTrack):
            return track
        track = getattr(track, "_source", None)
        if track is None:
            return None
    return None


_installed = False


def install_keyframe_forwarding() -> None:
    """Make a browser's PLI/FIR on a passthrough track ask the engine for a keyframe (idempotent)."""
    global _installed
    if _installed:
        return
    original = RTCRtpSender._send_keyframe

    def _send_keyframe(self: RTCRtpSender) -> None:
        original(self)
        source = _passthrough_source(self.track)
        if source is not None:
            source.request_keyframe()

    RTCRtpSender._send_keyframe = _send_keyframe  # type: ignore[method-assign]
    _installed = True
