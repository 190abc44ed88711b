"""Client side of the LiveKit transport (HeyGen's ``version: "v2"`` sessions).

``streaming.new`` returns a LiveKit server ``url`` and an ``access_token``; we join that room as a
viewer, read the avatar's video and audio tracks and its JSON events (LiveKit data messages), and hand
them on as ``av`` frames and event dicts, exactly like ``DirectConnection`` does for direct WebRTC.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterable, Callable
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

import av
import numpy as np
from livekit import rtc

log = logging.getLogger("avatar_ops.live")

FrameCallback = Callable[[av.frame.Frame], None]
EventCallback = Callable[[dict[str, Any]], None]
StateCallback = Callable[[str], None]

AUDIO_RATE = 48000
# A room the server ends on purpose is "closed"; one lost to the network or a refused join is "failed".
FAILURE_REASONS = frozenset(
    {
        rtc.DisconnectReason.JOIN_FAILURE,
        rtc.DisconnectReason.SIGNAL_CLOSE,
        rtc.DisconnectReason.STATE_MISMATCH,
        rtc.DisconnectReason.CONNECTION_TIMEOUT,
        rtc.DisconnectReason.MEDIA_FAILURE,
    }
)


class LiveKitConnectError(ConnectionError):
    """The avatar's LiveKit room could not be joined. The message never contains the access token."""


def video_frame_to_av(frame: rtc.VideoFrame, timestamp_us: int | None = None) -> av.VideoFrame:
    """Any LiveKit frame → a yuv420p ``av.VideoFrame`` (an odd last row/column is dropped: yuv420p needs even sizes)."""
    if frame.type != rtc.VideoBufferType.I420:
        frame = frame.convert(rtc.VideoBufferType.I420)
    width, height = frame.width, frame.height
    chroma_w, chroma_h = (width + 1) // 2, (height + 1) // 2
    even_w, even_h = width & ~1, height & ~1
    y, u, v = (np.frombuffer(frame.get_plane(i) or b"", dtype=np.uint8) for i in range(3))
    planes = (
        y.reshape(height, width)[:even_h, :even_w],
        u.reshape(chroma_h, chroma_w)[: even_h // 2, : even_w // 2],
        v.reshape(chroma_h, chroma_w)[: even_h // 2, : even_w // 2],
    )
    packed = np.concatenate([p.ravel() for p in planes]).reshape(even_h * 3 // 2, even_w)
    out = av.VideoFrame.from_ndarray(packed, format="yuv420p")
    if timestamp_us is not None:
        out.pts, out.time_base = timestamp_us, Fraction(1, 1_000_000)
    return out


def audio_frame_to_av(frame: rtc.AudioFrame, pts: int | None = None) -> av.AudioFrame:
    """LiveKit's interleaved int16 PCM → a packed s16 ``av.AudioFrame`` (mono or stereo)."""
    if frame.num_channels not in (1, 2):
        raise ValueError(f"unsupported channel count {frame.num_channels}")
    count = frame.samples_per_channel * frame.num_channels
    samples = np.frombuffer(frame.data, dtype=np.int16, count=count).reshape(1, count)
    out = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono" if frame.num_channels == 1 else "stereo")
    out.sample_rate = frame.sample_rate
    if pts is not None:
        out.pts, out.time_base = pts, Fraction(1, frame.sample_rate)
    return out


def parse_event(payload: bytes | str) -> dict[str, Any] | None:
    """A data message → an event dict keyed by ``type`` (HeyGen uses ``type`` or ``event_type``), else None."""
    try:
        message = json.loads(payload)
    except (TypeError, ValueError):
        return None
    if not isinstance(message, dict):
        return None
    kind = message.get("type") or message.get("event_type")
    if not isinstance(kind, str) or not kind:
        return None
    return {**message, "type": kind}


class LiveKitConnection:
    """One LiveKit room joined to watch an avatar. Construct and use it on the loop that runs it."""

    def __init__(
        self,
        *,
        on_video: FrameCallback,
        on_audio: FrameCallback,
        on_event: EventCallback,
        on_state: StateCallback | None = None,
        room_factory: Callable[[], Any] = rtc.Room,
        video_stream_factory: Callable[..., Any] = rtc.VideoStream,
        audio_stream_factory: Callable[..., Any] = rtc.AudioStream,
        only_participant: str | None = None,
    ) -> None:
        # LiveAvatar's room also holds its agent: only the avatar participant's (``heygen``) media is shown.
        self._only_participant = only_participant
        self._on_video = on_video
        self._on_audio = on_audio
        self._on_event = on_event
        self._on_state = on_state or (lambda state: None)
        self._video_stream_factory = video_stream_factory
        self._audio_stream_factory = audio_stream_factory
        self._state = "new"
        self._closing = False
        self._readers: dict[str, tuple[asyncio.Task, Any]] = {}
        self.room = room_factory()
        self.room.on("track_subscribed", self._track_subscribed)
        self.room.on("track_unsubscribed", self._track_unsubscribed)
        self.room.on("data_received", self._data_received)
        self.room.on("connection_state_changed", self._connection_state_changed)
        self.room.on("disconnected", self._disconnected)

    @property
    def state(self) -> str:
        return self._state

    async def connect(self, url: str, token: str, *, timeout: float = 15.0) -> None:
        self._set_state("connecting")
        try:
            await asyncio.wait_for(self.room.connect(url, token, rtc.RoomOptions(auto_subscribe=True)), timeout)
        except Exception as exc:
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {timeout:g} s"
            else:
                reason = str(getattr(exc, "message", None) or exc) or type(exc).__name__
            if token:  # LiveKit's errors can quote the signalling URL, which carries the token
                reason = reason.replace(token, "<token>")
            self._set_state("failed")
            with contextlib.suppress(Exception):
                await self.room.disconnect()
            raise LiveKitConnectError(
                f"Could not join the avatar's LiveKit room at {urlsplit(url).netloc or url!r}: {reason}"
            ) from None
        self._set_state("connected")

    async def close(self) -> None:
        """Stop the stream readers and leave the room. Safe to call twice."""
        if self._closing:
            return
        self._closing = True
        for sid in list(self._readers):
            await self._stop_reader(sid)
        with contextlib.suppress(Exception):
            await self.room.disconnect()
        self._set_state("closed")

    async def publish(self, payload: bytes, topic: str) -> None:
        """Send one reliable data message to the room (LiveAvatar's commands on ``agent-control``)."""
        if self._closing or self._state != "connected":
            raise ConnectionError("The avatar's LiveKit room is not connected.")
        await self.room.local_participant.publish_data(payload, reliable=True, topic=topic)

    def _set_state(self, state: str) -> None:
        if state == self._state or (self._state == "closed" and state != "closed"):
            return
        self._state = state
        self._on_state(state)

    # --- room events (synchronous: livekit's emitter does not await handlers) --------------------
    def _track_subscribed(self, track: Any, publication: Any, participant: Any) -> None:
        if self._closing or track.sid in self._readers:
            return
        if self._only_participant is not None and getattr(participant, "identity", None) != self._only_participant:
            return
        if track.kind == rtc.TrackKind.KIND_VIDEO:
            stream = self._video_stream_factory(track, format=rtc.VideoBufferType.I420)
            reader = self._read_video(stream)
        elif track.kind == rtc.TrackKind.KIND_AUDIO:
            stream = self._audio_stream_factory(track, sample_rate=AUDIO_RATE, num_channels=1)
            reader = self._read_audio(stream)
        else:
            return
        log.debug(
            "reading %s track %s of %s",
            "video" if track.kind == rtc.TrackKind.KIND_VIDEO else "audio",
            track.sid,
            getattr(participant, "identity", "?"),
        )
        self._readers[track.sid] = (asyncio.get_running_loop().create_task(reader), stream)

    def _track_unsubscribed(self, track: Any, publication: Any, participant: Any) -> None:
        if track.sid in self._readers:
            asyncio.get_running_loop().create_task(self._stop_reader(track.sid))

    def _data_received(self, packet: rtc.DataPacket) -> None:
        event = parse_event(packet.data)
        if event is None:
            log.debug("ignoring a data message that is not a JSON event (topic %r)", packet.topic)
            return
        if packet.topic and "event_type" in event:
            event["topic"] = packet.topic  # LiveAvatar's events say which topic they came on
        self._on_event(event)

    def _connection_state_changed(self, state: int) -> None:
        if state == rtc.ConnectionState.CONN_CONNECTED and self._state in ("connecting", "disconnected"):
            self._set_state("connected")
        elif state == rtc.ConnectionState.CONN_RECONNECTING:
            self._set_state("disconnected")  # like ICE "disconnected": may still recover

    def _disconnected(self, reason: int = rtc.DisconnectReason.UNKNOWN_REASON) -> None:
        if self._state in ("connecting", "failed"):
            return  # a refused join is reported by connect() itself
        self._set_state("failed" if reason in FAILURE_REASONS and not self._closing else "closed")

    # --- readers -------------------------------------------------------------------------------
    async def _read_video(self, stream: AsyncIterable[Any]) -> None:
        async for event in stream:
            self._deliver(self._on_video, video_frame_to_av, event.frame, getattr(event, "timestamp_us", None))

    async def _read_audio(self, stream: AsyncIterable[Any]) -> None:
        pts = 0
        async for event in stream:
            self._deliver(self._on_audio, audio_frame_to_av, event.frame, pts)
            pts += event.frame.samples_per_channel

    @staticmethod
    def _deliver(
        sink: FrameCallback, convert: Callable[[Any, int | None], av.frame.Frame], frame: Any, pts: int | None
    ) -> None:
        try:
            sink(convert(frame, pts))
        except Exception:  # one bad frame must not end the stream
            log.exception("dropping a LiveKit %s", type(frame).__name__)

    async def _stop_reader(self, sid: str) -> None:
        task, stream = self._readers.pop(sid, (None, None))
        if task is None or stream is None:
            return
        task.cancel()
        await asyncio.wait({task}, timeout=2.0)  # unlike awaiting the task, this never swallows our own cancellation
        # livekit's VideoStream does not wake a blocked reader on close, hence cancel first, then aclose
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stream.aclose(), 2.0)
