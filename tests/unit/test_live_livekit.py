"""LiveKit transport against fakes at the ``livekit`` boundary: a fake Room (livekit's own EventEmitter) and fake
streams, fed with real ``rtc.VideoFrame`` / ``rtc.AudioFrame`` / ``rtc.DataPacket`` objects. No LiveKit server."""

from __future__ import annotations

import asyncio
import json
import typing
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from livekit import rtc
from livekit.rtc.room import EventTypes

from lib.live.media.livekit import LiveKitConnectError, LiveKitConnection

URL = "wss://avatar-abc.livekit.cloud"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.secret-livekit-jwt"


class FakeRoom(rtc.EventEmitter):
    def __init__(self) -> None:
        super().__init__()
        self.connected_with: tuple[str, str, rtc.RoomOptions] | None = None
        self.connect_error: Exception | None = None
        self.connect_hangs = False
        self.disconnects = 0
        self.registered: list[str] = []

    def on(self, event: str, callback: Any = None) -> Any:
        self.registered.append(event)
        return super().on(event, callback)

    async def connect(self, url: str, token: str, options: rtc.RoomOptions) -> None:
        if self.connect_hangs:
            await asyncio.sleep(3600)
        if self.connect_error is not None:
            self.emit("disconnected", rtc.DisconnectReason.UNKNOWN_REASON)  # a join can end with this on the way
            raise self.connect_error
        self.connected_with = (url, token, options)

    async def disconnect(self) -> None:
        self.disconnects += 1
        if self.connected_with is not None:  # like rtc.Room: only a joined room emits on leaving
            self.connected_with = None
            self.emit("connection_state_changed", rtc.ConnectionState.CONN_DISCONNECTED)
            self.emit("disconnected", rtc.DisconnectReason.CLIENT_INITIATED)


@dataclass
class FakeTrack:
    sid: str
    kind: int


class FakeStream:
    """Like rtc.VideoStream: ``aclose`` does not wake a reader that is waiting for the next frame."""

    def __init__(self, track: FakeTrack, **kwargs: Any) -> None:
        self.track, self.kwargs = track, kwargs
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False

    def __aiter__(self) -> FakeStream:
        return self

    async def __anext__(self) -> Any:
        return await self.queue.get()

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class Harness:
    room: FakeRoom = field(default_factory=FakeRoom)
    streams: list[FakeStream] = field(default_factory=list)
    video: list[Any] = field(default_factory=list)
    audio: list[Any] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    states: list[str] = field(default_factory=list)

    def connection(self) -> LiveKitConnection:
        def stream(track: FakeTrack, **kwargs: Any) -> FakeStream:
            self.streams.append(FakeStream(track, **kwargs))
            return self.streams[-1]

        return LiveKitConnection(
            on_video=self.video.append,
            on_audio=self.audio.append,
            on_event=self.events.append,
            on_state=self.states.append,
            room_factory=lambda: self.room,
            video_stream_factory=stream,
            audio_stream_factory=stream,
        )

    def subscribe(self, sid: str, kind: int) -> FakeStream:
        self.room.emit("track_subscribed", FakeTrack(sid, kind), object(), object())
        return self.streams[-1]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
async def joined() -> AsyncIterator[tuple[Harness, LiveKitConnection]]:
    h = Harness()
    conn = h.connection()
    await conn.connect(URL, TOKEN)
    yield h, conn
    await conn.close()


def i420(width: int, height: int) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    cw, ch = (width + 1) // 2, (height + 1) // 2
    y = (np.arange(width * height) % 251).astype(np.uint8).reshape(height, width)
    u = np.full((ch, cw), 90, np.uint8)
    v = np.full((ch, cw), 200, np.uint8)
    u[0, 0] = 17
    return y.tobytes() + u.tobytes() + v.tobytes(), y, u, v


async def test_joins_with_url_and_token_and_reports_states(joined: tuple[Harness, LiveKitConnection]) -> None:
    h, conn = joined
    assert h.room.connected_with is not None
    assert h.room.connected_with[:2] == (URL, TOKEN)
    assert h.room.connected_with[2].auto_subscribe
    assert (h.states, conn.state) == (["connecting", "connected"], "connected")


def test_registers_only_events_the_real_room_emits() -> None:
    h = Harness()
    h.connection()
    assert set(h.room.registered) <= set(typing.get_args(EventTypes))
    assert {"track_subscribed", "data_received", "disconnected"} <= set(h.room.registered)


async def test_video_i420_frames_become_yuv420p_with_the_same_pixels(joined: tuple[Harness, LiveKitConnection]) -> None:
    h, _ = joined
    stream = h.subscribe("TR_video", rtc.TrackKind.KIND_VIDEO)
    assert stream.kwargs == {"format": rtc.VideoBufferType.I420}
    data, y, u, v = i420(16, 8)
    await stream.queue.put(rtc.VideoFrameEvent(rtc.VideoFrame(16, 8, rtc.VideoBufferType.I420, data), 40_000, 0))
    await settle()
    [frame] = h.video
    assert (frame.width, frame.height, frame.format.name) == (16, 8, "yuv420p")
    planes = frame.to_ndarray()
    assert np.array_equal(planes[:8], y)
    assert np.array_equal(planes[8:].ravel(), np.concatenate([u.ravel(), v.ravel()]))
    assert float(frame.pts * frame.time_base) == pytest.approx(0.04)


async def test_video_rgba_and_odd_sized_frames_are_converted(joined: tuple[Harness, LiveKitConnection]) -> None:
    h, _ = joined
    stream = h.subscribe("TR_video", rtc.TrackKind.KIND_VIDEO)
    orange = np.tile(np.array([230, 120, 30, 255], np.uint8), (6, 10, 1))
    await stream.queue.put(rtc.VideoFrameEvent(rtc.VideoFrame(10, 6, rtc.VideoBufferType.RGBA, orange.tobytes()), 0, 0))
    data, y, _, _ = i420(7, 5)
    await stream.queue.put(rtc.VideoFrameEvent(rtc.VideoFrame(7, 5, rtc.VideoBufferType.I420, data), 0, 0))
    await settle()
    rgba_frame, odd_frame = h.video
    assert (rgba_frame.width, rgba_frame.height) == (10, 6)
    assert np.abs(rgba_frame.to_ndarray(format="rgb24").astype(int) - [230, 120, 30]).max() <= 6
    assert (odd_frame.width, odd_frame.height) == (6, 4)
    assert np.array_equal(odd_frame.to_ndarray()[:4], y[:4, :6])


async def test_audio_samples_are_preserved(joined: tuple[Harness, LiveKitConnection]) -> None:
    h, _ = joined
    stream = h.subscribe("TR_audio", rtc.TrackKind.KIND_AUDIO)
    assert stream.kwargs == {"sample_rate": 48000, "num_channels": 1}
    mono = (np.sin(np.arange(480) / 7) * 12000).astype(np.int16)
    stereo = np.arange(-300, 300, dtype=np.int16)  # interleaved L/R, 300 samples per channel
    await stream.queue.put(rtc.AudioFrameEvent(rtc.AudioFrame(mono.tobytes(), 48000, 1, 480)))
    await stream.queue.put(rtc.AudioFrameEvent(rtc.AudioFrame(stereo.tobytes(), 48000, 2, 300)))
    await settle()
    first, second = h.audio
    assert (first.format.name, first.layout.name, first.sample_rate, first.samples) == ("s16", "mono", 48000, 480)
    assert np.array_equal(first.to_ndarray()[0], mono)
    assert (second.layout.name, second.samples) == ("stereo", 300)
    assert np.array_equal(second.to_ndarray()[0], stereo)
    assert (first.pts, second.pts) == (0, 480)


async def test_data_messages_become_events(joined: tuple[Harness, LiveKitConnection]) -> None:
    h, _ = joined

    def send(payload: bytes) -> None:
        h.room.emit("data_received", rtc.DataPacket(payload, rtc.DataPacketKind.KIND_RELIABLE, None, None))

    send(json.dumps({"type": "avatar_start_talking", "task_id": "t1"}).encode())
    send(b"not json")
    send(b"[1, 2]")
    send(json.dumps({"message": "no kind"}).encode())
    send(json.dumps({"event_type": "user_start", "task_id": "t2"}).encode())
    send(json.dumps({"type": "avatar_talking_message", "task_id": "t1", "message": "Héllo"}).encode())
    assert h.events == [
        {"type": "avatar_start_talking", "task_id": "t1"},
        {"event_type": "user_start", "type": "user_start", "task_id": "t2"},
        {"type": "avatar_talking_message", "task_id": "t1", "message": "Héllo"},
    ]


async def test_reconnecting_then_reconnected(joined: tuple[Harness, LiveKitConnection]) -> None:
    h, conn = joined
    h.room.emit("connection_state_changed", rtc.ConnectionState.CONN_RECONNECTING)
    assert conn.state == "disconnected"
    h.room.emit("connection_state_changed", rtc.ConnectionState.CONN_CONNECTED)
    assert h.states[-2:] == ["disconnected", "connected"]


@pytest.mark.parametrize(
    ("reason", "state"),
    [
        (rtc.DisconnectReason.ROOM_DELETED, "closed"),
        (rtc.DisconnectReason.PARTICIPANT_REMOVED, "closed"),
        (rtc.DisconnectReason.SIGNAL_CLOSE, "failed"),
    ],
)
async def test_server_side_disconnect(joined: tuple[Harness, LiveKitConnection], reason: int, state: str) -> None:
    h, conn = joined
    h.room.emit("connection_state_changed", rtc.ConnectionState.CONN_DISCONNECTED)
    h.room.emit("disconnected", reason)
    assert (conn.state, h.states[-1]) == (state, state)


async def test_close_leaves_the_room_and_stops_the_readers(joined: tuple[Harness, LiveKitConnection]) -> None:
    h, conn = joined
    video = h.subscribe("TR_video", rtc.TrackKind.KIND_VIDEO)
    audio = h.subscribe("TR_audio", rtc.TrackKind.KIND_AUDIO)
    await settle()
    readers = [task for task, _ in conn._readers.values()]
    await asyncio.wait_for(conn.close(), 2)
    assert h.room.disconnects == 1 and h.room.connected_with is None
    assert video.closed and audio.closed
    assert all(task.done() for task in readers)
    assert (conn.state, h.states[-1]) == ("closed", "closed")
    await video.queue.put(rtc.VideoFrameEvent(rtc.VideoFrame(2, 2, rtc.VideoBufferType.I420, bytes(6)), 0, 0))
    h.room.emit("track_subscribed", FakeTrack("TR_late", rtc.TrackKind.KIND_VIDEO), object(), object())
    await settle()
    await conn.close()
    assert (h.video, len(h.streams), h.room.disconnects, h.states.count("closed")) == ([], 2, 1, 1)


async def test_unsubscribed_track_stops_its_reader(joined: tuple[Harness, LiveKitConnection]) -> None:
    h, conn = joined
    track = FakeTrack("TR_video", rtc.TrackKind.KIND_VIDEO)
    h.room.emit("track_subscribed", track, object(), object())
    h.room.emit("track_unsubscribed", track, object(), object())
    await settle()
    assert h.streams[0].closed and conn._readers == {}


async def test_a_bad_frame_does_not_end_the_stream(joined: tuple[Harness, LiveKitConnection]) -> None:
    h, _ = joined
    stream = h.subscribe("TR_audio", rtc.TrackKind.KIND_AUDIO)
    await stream.queue.put(rtc.AudioFrameEvent(rtc.AudioFrame(bytes(12), 48000, 3, 2)))  # 3 channels: unsupported
    await stream.queue.put(rtc.AudioFrameEvent(rtc.AudioFrame(bytes(4), 48000, 1, 2)))
    await settle()
    assert [f.samples for f in h.audio] == [2]


async def test_refused_join_is_a_clear_error_without_the_token() -> None:
    h = Harness()
    h.room.connect_error = rtc.ConnectError(f"failed to connect to {URL}/rtc?access_token={TOKEN}: 401 Unauthorized")
    conn = h.connection()
    with pytest.raises(LiveKitConnectError) as caught:
        await conn.connect(URL, TOKEN)
    message = str(caught.value)
    assert "avatar-abc.livekit.cloud" in message and "401 Unauthorized" in message
    assert TOKEN not in message and TOKEN not in repr(caught.value)
    assert (h.states, conn.state) == (["connecting", "failed"], "failed")


async def test_join_that_never_answers_times_out() -> None:
    h = Harness()
    h.room.connect_hangs = True
    conn = h.connection()
    with pytest.raises(LiveKitConnectError, match=r"no answer within 0\.05 s"):
        await asyncio.wait_for(conn.connect(URL, TOKEN, timeout=0.05), 2)
    assert conn.state == "failed"


async def test_real_room_can_be_built_and_closed_without_a_server() -> None:
    states: list[str] = []
    conn = LiveKitConnection(on_video=print, on_audio=print, on_event=print, on_state=states.append)
    assert isinstance(conn.room, rtc.Room)
    await asyncio.wait_for(conn.close(), 2)
    assert states == ["closed"]
