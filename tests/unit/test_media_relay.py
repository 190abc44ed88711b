"""The relay between the page's tracks and the browser's sender (issue 13 §1): nothing is pumped or queued
when the sender reads slowly or not at all."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import av
import pytest
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from streamlit.runtime import Runtime
from streamlit_webrtc import relay as webrtc_relay

from lib.live import session
from lib.live.media.passthrough import PassthroughAudioTrack, PassthroughVideoTrack
from lib.live.media.relay import SenderRelay
from ui import live


class CountingTrack(MediaStreamTrack):
    """A live source like the page's: a new 854×480 picture on every read, as fast as it is asked."""

    kind = "video"
    single_consumer = True

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def recv(self) -> av.VideoFrame:
        self.reads += 1
        await asyncio.sleep(0.005)
        return av.VideoFrame(854, 480, "yuv420p")


def wired(relay: MediaRelay, track: MediaStreamTrack) -> MediaStreamTrack:
    """What streamlit-webrtc 0.79 hands ``pc.addTrack``: the source subscribed at start, then again."""
    return relay.subscribe(relay.subscribe(track))


async def read_then_stall(relay: MediaRelay) -> tuple[CountingTrack, MediaStreamTrack]:
    source = CountingTrack()
    sent = wired(relay, source)
    for _ in range(3):
        await sent.recv()
    await asyncio.sleep(0.3)  # the sender stops reading: an overloaded encoder, or the tab is gone
    return source, sent


def test_aiortcs_relay_keeps_pumping_into_an_unbounded_queue_when_the_sender_stalls() -> None:
    """Why ``SenderRelay`` exists: with the stock relay the stall costs a picture per source frame."""

    async def scenario() -> tuple[int, int]:
        source, sent = await read_then_stall(MediaRelay())
        queued = sent._queue.qsize()  # type: ignore[attr-defined]
        sent.stop()
        source.stop()
        return source.reads, queued

    reads, queued = asyncio.run(scenario())
    assert reads > 10 and queued > 10


def test_our_tracks_are_read_only_when_the_sender_reads() -> None:
    async def scenario() -> tuple[int, MediaStreamTrack, CountingTrack]:
        source, sent = await read_then_stall(SenderRelay())
        return source.reads, sent, source

    reads, sent, source = asyncio.run(scenario())
    assert reads == 3
    assert sent is source  # no proxy, no queue
    sent.stop()  # what the worker does to its "relayed" track when the peer connection ends
    assert source.readyState == "ended"


def test_other_tracks_are_still_relayed() -> None:
    class Plain(CountingTrack):
        single_consumer = False

    track = Plain()
    assert SenderRelay().subscribe(track) is not track


def test_the_passthrough_tracks_are_handed_over_as_they_are() -> None:
    fallback = CountingTrack()
    for kind in (PassthroughVideoTrack, PassthroughAudioTrack):
        track = kind(fallback, lambda: None)
        assert SenderRelay().subscribe(track) is track


def test_streamlit_webrtc_takes_our_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = SimpleNamespace()
    monkeypatch.setattr(Runtime, "instance", classmethod(lambda cls: runtime))
    live.install_sender_relay()
    installed = webrtc_relay.get_global_relay()
    assert isinstance(installed, SenderRelay)
    live.install_sender_relay()
    assert webrtc_relay.get_global_relay() is installed  # once per process


def test_a_page_stream_that_ends_gives_memory_back_once_no_session_is_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tab's peer connection ends after its session did: the trim waits for it, and skips a busy process."""
    trims: list[float] = []
    monkeypatch.setattr(session.gc_pauses, "release_memory", lambda: trims.append(time.monotonic()) or True)
    settles: list[float] = []  # the heap is re-frozen with each trim (a real one pauses this whole process)
    monkeypatch.setattr(session.gc_pauses, "settle", lambda: settles.append(time.monotonic()) or 0)
    session._session_opened()  # another tab streams
    session.release_memory_later(delay=0.05)
    time.sleep(0.3)
    assert trims == []
    session._session_closed()  # the last session ends: trimmed at once, as before
    assert len(trims) == 1
    track = PassthroughVideoTrack(CountingTrack(), lambda: None)
    track.on("ended", lambda: session.release_memory_later(delay=0.05))
    ended = time.monotonic()
    track.stop()  # what the worker does when the peer connection ends
    time.sleep(0.3)
    assert len(trims) == 2 and trims[1] - ended >= 0.05
    assert len(settles) == 2
