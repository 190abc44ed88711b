"""The local engine's encoded media forwarded as it is (issue 15), against a real engine.

The "browser" here is an aiortc peer connection that receives what the page's tracks send; the dashboard
side must not run a single encoder or decoder for the session's media.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import av
import numpy as np
import psutil
import pytest
from aiortc import RTCPeerConnection
from aiortc.codecs import h264, opus, vpx
from aiortc.mediastreams import MediaStreamTrack

from lib.heygen.models import NewSessionRequest
from lib.live.media import loop as media_loop
from lib.live.media.passthrough import (
    PassthroughAudioTrack,
    PassthroughVideoTrack,
    install_keyframe_forwarding,
)
from lib.live.session import LiveSession, SessionOptions, SessionState
from lib.usage.store import UsageLog


class CodecCalls:
    """Counts every encode and decode aiortc runs in this process, per codec class."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: dict[str, int] = {}
        for cls in (vpx.Vp8Encoder, vpx.Vp8Decoder, opus.OpusEncoder, opus.OpusDecoder, h264.H264Encoder):
            for name in ("encode", "decode"):
                if hasattr(cls, name):
                    monkeypatch.setattr(cls, name, self._counting(f"{cls.__name__}.{name}", getattr(cls, name)))

    def _counting(self, label: str, original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.calls[label] = self.calls.get(label, 0) + 1
            return original(*args, **kwargs)

        return wrapper

    def snapshot(self) -> dict[str, int]:
        return dict(self.calls)


class Silence(MediaStreamTrack):
    """A fallback that must not be used while the session is live."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.pulled = 0

    async def recv(self) -> av.frame.Frame:
        self.pulled += 1
        await asyncio.sleep(0.04)
        if self.kind == "video":
            frame = av.VideoFrame(64, 48, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            return frame
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
        frame.sample_rate = 48_000
        frame.pts = (self.pulled - 1) * 960  # as a page's source track stamps them (the Opus encoder needs it)
        return frame


@pytest.fixture
def usage(tmp_path) -> Iterator[UsageLog]:
    log = UsageLog(tmp_path / "usage.db")
    yield log
    log.close()


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.05)
    return predicate()


def _passthrough_session(client, usage) -> LiveSession:
    request = NewSessionRequest(quality="low", avatar_id=client.avatars()[0].avatar_id)
    return LiveSession(client, "local", usage, SessionOptions(request=request, passthrough=True))


class Browser:
    """Stand-in for the page's peer connection (sending the passthrough tracks) and the browser (receiving)."""

    def __init__(self, live: LiveSession) -> None:
        self.fallbacks = {"video": Silence("video"), "audio": Silence("audio")}
        self.video = PassthroughVideoTrack(self.fallbacks["video"], live.media_feed)
        self.audio = PassthroughAudioTrack(self.fallbacks["audio"], live.media_feed)
        self.frames: list[av.VideoFrame] = []
        self.audio_frames = 0
        self.page = RTCPeerConnection()
        self.browser = RTCPeerConnection()
        self._readers: list[asyncio.Task] = []

    async def open(self) -> None:
        self.page.addTrack(self.video)
        self.page.addTrack(self.audio)
        self.browser.on("track", self._track)
        await self.page.setLocalDescription(await self.page.createOffer())
        await self.browser.setRemoteDescription(self.page.localDescription)
        await self.browser.setLocalDescription(await self.browser.createAnswer())
        await self.page.setRemoteDescription(self.browser.localDescription)

    def _track(self, track: MediaStreamTrack) -> None:
        self._readers.append(asyncio.get_running_loop().create_task(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            frame = await track.recv()
            if track.kind == "video":
                self.frames.append(frame)
            else:
                self.audio_frames += 1

    async def ask_keyframe(self) -> None:
        receiver = next(r for r in self.browser.getReceivers() if r.track.kind == "video")
        sender = next(s for s in self.page.getSenders() if s.track is not None and s.track.kind == "video")
        await receiver._send_rtcp_pli(sender._ssrc)

    async def close(self) -> None:
        for task in self._readers:
            task.cancel()
        await self.page.close()
        await self.browser.close()


def test_a_local_engine_session_reaches_the_browser_without_any_codec_in_the_dashboard(client, usage, monkeypatch):
    install_keyframe_forwarding()
    codecs = CodecCalls(monkeypatch)
    live = _passthrough_session(client, usage)
    try:
        assert live.wait_connected(20), live.error
        feed = live.media_feed()
        assert feed is not None
        time.sleep(1.0)
        assert live.frames_received >= 5
        assert codecs.snapshot() == {}  # the session's media arrives and nothing in this process decodes it
        assert live.latest_frame() is None
        browser = Browser(live)
        media_loop.run(browser.open(), timeout=10)
        try:
            assert _wait(lambda: len(browser.frames) >= 25, 15), len(browser.frames)
            assert (browser.frames[-1].width, browser.frames[-1].height) == (854, 480)
            assert _wait(lambda: browser.audio_frames >= 25, 10)
            calls = codecs.snapshot()
            # The page's side encodes nothing: only the browser stand-in decodes (and it plays the media).
            assert not {k: v for k, v in calls.items() if k.endswith(".encode")}, calls
            assert calls.get("Vp8Decoder.decode", 0) > 0 and calls.get("OpusDecoder.decode", 0) > 0
            assert browser.video.packets_sent > 0 and browser.video.frames_sent == 0
            assert browser.audio.packets_sent > 0 and browser.audio.frames_sent == 0

            # A browser-side keyframe request (PLI) reaches the engine, and a keyframe comes back.
            asked, keyframes = feed.keyframes_requested, feed.keyframes_received
            media_loop.run(browser.ask_keyframe(), timeout=5)
            assert _wait(lambda: feed.keyframes_requested > asked, 5)
            assert _wait(lambda: feed.keyframes_received > keyframes, 5)

            # Speech reaches the browser; an interrupt clears what was not yet forwarded.
            live.send("Hello there, this is a fairly long sentence to be interrupted.", "repeat")
            assert _wait(lambda: live.speaking, 10)
            live.interrupt()
            assert len(feed.audio) <= 2
        finally:
            media_loop.run(browser.close(), timeout=10)
    finally:
        live.stop()
    assert live.state is SessionState.CLOSED


def test_the_engine_sends_a_keyframe_first_and_on_request_only(client, usage):
    live = _passthrough_session(client, usage)
    try:
        assert live.wait_connected(20), live.error
        feed = live.media_feed()
        assert feed is not None
        first = media_loop.run(feed.video.get(timeout=5), timeout=10)
        assert first is not None
        assert feed.keyframes_received >= 1  # the queue only accepts video from a keyframe on
        time.sleep(1.0)
        settled = feed.keyframes_received
        time.sleep(1.0)
        assert feed.keyframes_received == settled  # no keyframe unless asked (gop of 3000 frames)
        feed.request_keyframe()
        assert _wait(lambda: feed.keyframes_received > settled, 5)
    finally:
        live.stop()


def test_a_closed_sessions_encoders_and_their_threads_go_with_it(engine, client, usage):
    process = psutil.Process(engine.process.pid)

    def cycle() -> None:
        live = _passthrough_session(client, usage)
        try:
            assert live.wait_connected(20), live.error
            feed = live.media_feed()
            assert feed is not None and _wait(lambda: feed.keyframes_received > 0, 5)  # the engine encoded
        finally:
            live.stop()
        assert _wait(lambda: not client.list(), 10)

    cycle()  # pools and caches of a first session stay for the next: the baseline is taken after one
    baseline = process.num_threads()
    for _ in range(3):
        cycle()
    # libvpx runs threads of its own per encoder: 4 more per session while a closed session kept its encoder.
    assert _wait(lambda: process.num_threads() <= baseline + 2, 10), (baseline, process.num_threads())
