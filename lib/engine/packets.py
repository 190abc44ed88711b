"""Encoded media channel (local engine extension): a session's VP8/H264 + Opus packets over a WebSocket.

A WebRTC receiver always decodes, so a dashboard that relays the avatar to a browser through its own peer
connection would decode the engine's media and encode it again (1.6x the engine's CPU, issue 15). Instead the
engine encodes each session once, in its render loop, and hands the packets out as they are; the dashboard
forwards them to the browser unchanged (aiortc's ``RTCRtpSender`` packs an ``av.Packet`` without encoding).

Protocol (``GET /v1/streaming.media?session_id=...`` upgraded to a WebSocket):

* Authentication: ``Authorization: Bearer <media token>``, the per-session secret given in ``streaming.new``'s
  ``media_channel`` (``{"url", "token", "video_codec", "audio_codec"}``); anything else is closed with 4401.
* Engine → client, one binary message per packet: the header ``HEADER`` (kind 0 = video, 1 = audio; flags
  bit 0 = keyframe; pts; time base numerator and denominator), then the encoded bytes. Video pts are on the
  90 kHz clock, audio on 48 kHz; each video frame is sent together with its own audio slice (one render clock),
  so the receiver keeps them in sync by forwarding both as they arrive.
* Client → engine, text: ``{"type": "keyframe"}`` asks for a keyframe (a browser's PLI, or a receiver that
  dropped packets). The first packet a new subscriber gets is always a keyframe.
* Every queue is bounded: when a subscriber cannot keep up, its queued video is dropped and the stream resumes
  at the next keyframe (asked for at once); old audio is dropped past ``AUDIO_DEPTH``. The encoder itself skips
  a frame when the previous one is still being encoded rather than queueing it.

While a session has a media-channel subscriber, the dashboard answers the SDP offer with inactive media, so the
engine's peer connection (kept for events and liveness) sends no media and encodes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import hmac
import json
import logging
import struct
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
from starlette.websockets import WebSocket, WebSocketDisconnect

from lib.engine.codecs import X264_OPTIONS

log = logging.getLogger("avatar_ops.engine")

HEADER = struct.Struct("!BBqII")  # kind, flags, pts, time_base numerator, time_base denominator
VIDEO, AUDIO = 0, 1
KEYFRAME = 1
VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48_000)
VIDEO_DEPTH = 6  # frames (240 ms at 25 fps) queued for one subscriber before its video is cut to the next keyframe
AUDIO_DEPTH = 25  # 20 ms packets (500 ms)


def pack_message(kind: int, keyframe: bool, pts: int, time_base: fractions.Fraction, data: bytes) -> bytes:
    return HEADER.pack(kind, KEYFRAME if keyframe else 0, pts, time_base.numerator, time_base.denominator) + data


@dataclass(frozen=True)
class Message:
    kind: int
    keyframe: bool
    pts: int
    time_base: fractions.Fraction
    data: bytes


def unpack_message(message: bytes) -> Message:
    kind, flags, pts, num, den = HEADER.unpack_from(message)
    return Message(kind, bool(flags & KEYFRAME), pts, fractions.Fraction(num, den), message[HEADER.size :])


def _video_codec(name: str, width: int, height: int, bitrate: int) -> av.VideoCodecContext:
    if name == "H264":
        codec = av.CodecContext.create("libx264", "w")
        codec.options = dict(X264_OPTIONS)
        codec.profile = "Baseline"
    else:
        # aiortc's own VP8 settings (aiortc/codecs/vpx.py): real-time CBR the browsers decode well.
        codec = av.CodecContext.create("libvpx", "w")
        codec.gop_size = 3000
        codec.qmin, codec.qmax = 2, 56
        codec.options = {
            "bufsize": str(bitrate),
            "cpu-used": "-6",
            "deadline": "realtime",
            "lag-in-frames": "0",
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "noise-sensitivity": "4",
            "overshoot-pct": "15",
            "partitions": "0",
            "static-thresh": "1",
            "undershoot-pct": "100",
        }
        codec.thread_count = 1  # the engine runs several sessions on few cores: one thread each
    codec.width, codec.height = width, height
    codec.bit_rate = bitrate
    codec.pix_fmt = "yuv420p"
    codec.framerate = fractions.Fraction(25, 1)
    codec.time_base = VIDEO_TIME_BASE
    return codec


def _audio_codec() -> av.AudioCodecContext:
    # As aiortc's Opus encoder: 48 kHz stereo, 20 ms packets, voip tuning.
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = 96_000
    codec.format = "s16"
    codec.layout = "stereo"
    codec.sample_rate = 48_000
    codec.time_base = AUDIO_TIME_BASE
    codec.options = {"application": "voip"}
    return codec


class Subscriber:
    """One media-channel client: a bounded queue of messages the sender task drains."""

    def __init__(self, on_keyframe_needed: Callable[[], None]) -> None:
        self._video: deque[bytes] = deque()
        self._audio: deque[bytes] = deque()
        self._order: deque[int] = deque()  # kinds in arrival order: keep a frame next to its audio slice
        self._ready = asyncio.Event()
        self._keyframe_needed = on_keyframe_needed
        self.synced = False  # until its first keyframe, video packets are useless to it
        self.dropped_video = 0
        self.dropped_audio = 0
        self.closed = False

    def put(self, kind: int, keyframe: bool, message: bytes) -> None:
        if kind == VIDEO:
            if not self.synced and not keyframe:
                return
            if len(self._video) >= VIDEO_DEPTH:
                # Behind: what is queued is stale, and later frames depend on it. Resume at the next keyframe.
                self.dropped_video += len(self._video)
                self._video.clear()
                self._order = deque(k for k in self._order if k == AUDIO)
                self.synced = False
                self._keyframe_needed()
                if not keyframe:
                    return
            self.synced = True
            self._video.append(message)
        else:
            if len(self._audio) >= AUDIO_DEPTH:
                self._audio.popleft()
                self._order.remove(AUDIO)
                self.dropped_audio += 1
            self._audio.append(message)
        self._order.append(kind)
        self._ready.set()

    def clear_audio(self) -> None:
        self._audio.clear()
        self._order = deque(k for k in self._order if k == VIDEO)

    async def get(self) -> bytes | None:
        while not self._order:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        kind = self._order.popleft()
        return (self._video if kind == VIDEO else self._audio).popleft()

    def close(self) -> None:
        self.closed = True
        self._ready.set()


class PacketStream:
    """Encodes one session's frames once and fans the packets out to its media-channel subscribers.

    Nothing is encoded while nobody subscribes. Video is encoded on a worker thread (libvpx releases the GIL,
    the render loop keeps its clock); audio is cheap and encoded in place.
    """

    def __init__(self, video_codec: str, width: int, height: int, bitrate: int) -> None:
        self.video_codec = "H264" if video_codec == "H264" else "VP8"
        self._size = (width, height)
        self._bitrate = bitrate
        self._video: av.VideoCodecContext | None = None
        self._audio: av.AudioCodecContext | None = None
        self._resampler: av.AudioResampler | None = None
        self._audio_pts = 0
        self._subscribers: list[Subscriber] = []
        self._encoding = False
        self._force_keyframe = True
        self._executor: ThreadPoolExecutor | None = None
        self.encoded_frames = 0
        self.skipped_frames = 0  # the encoder was still busy with the previous frame

    @property
    def active(self) -> bool:
        return bool(self._subscribers)

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber(self.request_keyframe)
        self._subscribers.append(subscriber)
        self.request_keyframe()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscriber.close()
        with contextlib.suppress(ValueError):
            self._subscribers.remove(subscriber)

    def request_keyframe(self) -> None:
        self._force_keyframe = True

    def clear_audio(self) -> None:
        """An interrupt: speech encoded but not yet sent must not play."""
        for subscriber in self._subscribers:
            subscriber.clear_audio()

    def on_tick(self, frame: av.VideoFrame, audio: list[av.AudioFrame]) -> None:
        """Called by the render clock (event loop) with each frame and its audio slice."""
        if not self._subscribers:
            return
        if self._encoding:
            self.skipped_frames += 1  # dropping a raw frame costs nothing: the next one refers to the last sent
        else:
            self._encoding = True
            force, self._force_keyframe = self._force_keyframe, False
            loop = asyncio.get_running_loop()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="packet-encoder")
            future = loop.run_in_executor(self._executor, self._encode_video, frame, force)
            future.add_done_callback(self._video_done)
        for slice_ in audio:
            for packet in self._encode_audio(slice_):
                self._fan_out(AUDIO, False, packet.pts or 0, AUDIO_TIME_BASE, bytes(packet))

    def _encode_video(self, frame: av.VideoFrame, force_keyframe: bool) -> list[tuple[bool, int, bytes]]:
        if self._video is None:
            self._video = _video_codec(self.video_codec, *self._size, self._bitrate)
            force_keyframe = True
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        frame.pict_type = av.video.frame.PictureType.I if force_keyframe else av.video.frame.PictureType.NONE
        out = []
        for packet in self._video.encode(frame):
            out.append((bool(packet.is_keyframe), frame.pts or 0, bytes(packet)))
        return out

    def _video_done(self, future: asyncio.Future[list[tuple[bool, int, bytes]]]) -> None:
        self._encoding = False
        if future.cancelled():
            return
        try:
            packets = future.result()
        except Exception:
            log.exception("encoding a video frame for the media channel failed")
            return
        for keyframe, pts, data in packets:
            self.encoded_frames += 1
            self._fan_out(VIDEO, keyframe, pts, VIDEO_TIME_BASE, data)

    def _encode_audio(self, frame: av.AudioFrame) -> list[av.Packet]:
        if self._audio is None:
            self._audio = _audio_codec()
            self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=48_000, frame_size=960)
        assert self._resampler is not None
        packets: list[av.Packet] = []
        for resampled in self._resampler.resample(frame):
            resampled.pts = self._audio_pts
            resampled.time_base = AUDIO_TIME_BASE
            self._audio_pts += resampled.samples
            packets += self._audio.encode(resampled)
        return packets

    def _fan_out(self, kind: int, keyframe: bool, pts: int, time_base: fractions.Fraction, data: bytes) -> None:
        message = pack_message(kind, keyframe, pts, time_base, data)
        for subscriber in self._subscribers:
            subscriber.put(kind, keyframe, message)

    def close(self) -> None:
        for subscriber in list(self._subscribers):
            self.unsubscribe(subscriber)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        # The encoders own native threads (libvpx/x264) and buffers: they go with the session, not with the
        # last reference to it (an encode still running keeps its own until it returns).
        self._video = self._audio = None
        self._resampler = None


async def serve(websocket: WebSocket, stream: PacketStream, token: str) -> None:
    """One media-channel connection: check its token, then send packets and take keyframe requests."""
    auth = websocket.headers.get("authorization", "")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        await websocket.close(code=4401)
        return
    await websocket.accept()
    subscriber = stream.subscribe()

    async def listen() -> None:
        while True:
            text = await websocket.receive_text()
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                if json.loads(text).get("type") == "keyframe":
                    stream.request_keyframe()

    listener = asyncio.get_running_loop().create_task(listen())
    try:
        while (message := await subscriber.get()) is not None:
            await websocket.send_bytes(message)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away
    finally:
        stream.unsubscribe(subscriber)
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
            await listener
        with contextlib.suppress(RuntimeError, OSError):
            await websocket.close()
