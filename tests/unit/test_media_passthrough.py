"""Bounded queues on the passthrough path (issue 13 §1, issue 15): nothing between engine and browser grows."""

from __future__ import annotations

import asyncio
import itertools
import time

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from lib.engine.packets import AUDIO, VIDEO, Subscriber, pack_message, unpack_message
from lib.live.media import passthrough
from lib.live.media.passthrough import PacketFeed, PacketQueue, PassthroughAudioTrack, PassthroughVideoTrack


def _packet(n: int) -> av.Packet:
    packet = av.Packet(bytes([n % 256]) * 10)
    packet.pts = n
    return packet


def test_a_video_queue_starts_at_a_keyframe_and_never_holds_more_than_its_depth() -> None:
    asked: list[int] = []
    queue = PacketQueue(VIDEO, 4, lambda: asked.append(1))
    queue.put(_packet(0), keyframe=False)
    assert len(queue) == 0  # undecodable without its keyframe
    queue.put(_packet(1), keyframe=True)
    for n in range(2, 200):
        queue.put(_packet(n), keyframe=False)
        assert len(queue) <= 4
    assert queue.dropped > 0


def test_a_video_queue_that_overflows_while_read_drops_to_the_next_keyframe_and_asks_for_one() -> None:
    asked: list[int] = []
    queue = PacketQueue(VIDEO, 4, lambda: asked.append(1))

    async def scenario() -> list[int]:
        queue.put(_packet(0), keyframe=True)
        first = await queue.get(timeout=1)  # a reader is there
        assert first is not None
        for n in range(1, 6):
            queue.put(_packet(n), keyframe=False)
        assert asked, "an overflow with a reader asks the engine for a keyframe"
        queue.put(_packet(6), keyframe=False)
        assert len(queue) == 0  # nothing shown until the keyframe
        queue.put(_packet(7), keyframe=True)
        got = await queue.get(timeout=1)
        return [got.pts] if got is not None else []

    assert asyncio.run(scenario()) == [7]


def test_an_audio_queue_keeps_only_the_newest_packets_and_clears_on_interrupt() -> None:
    queue = PacketQueue(AUDIO, 10, lambda: None)
    for n in range(50):
        queue.put(_packet(n), keyframe=False)
    assert len(queue) == 10 and queue.dropped == 40

    async def oldest() -> int | None:
        packet = await queue.get(timeout=1)
        return packet.pts if packet is not None else None

    assert asyncio.run(oldest()) == 40
    queue.clear()
    assert len(queue) == 0
    assert asyncio.run(queue.get(timeout=0.05)) is None


def test_an_engine_subscriber_that_falls_behind_resumes_at_a_keyframe_and_its_audio_stays_bounded() -> None:
    asked: list[int] = []
    sub = Subscriber(lambda: asked.append(1))
    sub.put(VIDEO, False, b"p")  # before its first keyframe: useless to it
    assert not sub.synced
    sub.put(VIDEO, True, b"k")
    for _ in range(100):
        sub.put(VIDEO, False, b"p")
        sub.put(AUDIO, False, b"a")
    assert asked and sub.dropped_video > 0 and sub.dropped_audio > 0
    assert len(sub._video) <= 6 and len(sub._audio) <= 25
    sub.clear_audio()
    assert len(sub._audio) == 0 and AUDIO not in sub._order


def test_a_channel_message_round_trips_its_header() -> None:
    import fractions

    message = unpack_message(pack_message(VIDEO, True, 123_456, fractions.Fraction(1, 90_000), b"data"))
    assert (message.kind, message.keyframe, message.pts, message.time_base, message.data) == (
        VIDEO,
        True,
        123_456,
        fractions.Fraction(1, 90_000),
        b"data",
    )


class InstantSilence(MediaStreamTrack):
    """A fallback that answers at once, as streamlit-webrtc's source tracks do after a stretch of not being read."""

    kind = "audio"

    async def recv(self) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
        frame.sample_rate = 48_000
        return frame


def _feed_with(count: int) -> PacketFeed:
    feed = PacketFeed({"url": "ws://127.0.0.1:9/v1/streaming.media", "token": "t"}, "s")
    for n in range(count):
        feed.audio.put(_packet(n), keyframe=False)
    feed.packets = count  # as if read from the engine's channel
    return feed


async def _departures(track: PassthroughAudioTrack, count: int) -> list[tuple[float, int | None]]:
    out = []
    for _ in range(count):
        item = await track.recv()
        out.append((time.monotonic(), item.pts))
    return out


def test_audio_packets_leave_one_slot_apart_however_they_arrive_and_a_backlog_is_not_kept() -> None:
    feed = _feed_with(10)  # queued before the browser listened
    track = PassthroughAudioTrack(InstantSilence(), lambda: feed)

    async def scenario() -> tuple[list[tuple[float, int | None]], list[tuple[float, int | None]]]:
        first = await _departures(track, 1)
        for n in range(10, 20):  # a burst (the engine caught up after a stall)
            feed.audio.put(_packet(n), keyframe=False)
        return first, await _departures(track, 4)

    first, burst = asyncio.run(scenario())
    assert len(feed.audio) <= 4  # the start's backlog went, then the burst beyond AUDIO_LAG_PACKETS
    # Only the burst was missed: the start's 9 were queued before anyone listened (the status panel said
    # "0.2 s dropped to catch up" after every START).
    assert feed.audio_stats().speech_dropped_ms == (10 - 4) * 20, feed.audio_stats()
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(first + burst)]
    assert all(gap >= 0.015 for gap in gaps), gaps  # paced, not passed on as a burst
    stamps = [pts for _, pts in first + burst]
    assert stamps == [960 * i for i in range(len(stamps))]  # continuous: dropped packets leave no gap


def test_a_stall_shows_as_a_gap_in_the_audio_timestamps_and_no_burst_follows() -> None:
    feed = _feed_with(1)
    track = PassthroughAudioTrack(InstantSilence(), lambda: feed)

    async def scenario() -> list[tuple[float, int | None]]:
        sent = await _departures(track, 1)
        await asyncio.sleep(0.2)  # the page's event loop stalled (or the engine did)
        for n in range(1, 4):
            feed.audio.put(_packet(n), keyframe=False)
        return sent + await _departures(track, 3)

    sent = asyncio.run(scenario())
    jump = sent[1][1] - sent[0][1]
    assert 0.17 * 48_000 <= jump <= 0.3 * 48_000, jump  # the timestamps say 200 ms passed, as they did
    assert all(b[0] - a[0] >= 0.015 for a, b in itertools.pairwise(sent[1:]))


def test_the_fallback_is_paced_when_the_source_track_would_hand_out_a_burst() -> None:
    track = PassthroughAudioTrack(InstantSilence(), lambda: None)

    async def scenario() -> float:
        started = time.monotonic()
        for _ in range(10):
            await track.recv()
        return time.monotonic() - started

    assert asyncio.run(scenario()) >= 9 * 0.02 * 0.9
    assert track.frames_sent == 10 and track.packets_sent == 0


class InstantPicture(MediaStreamTrack):
    kind = "video"

    async def recv(self) -> av.VideoFrame:
        return av.VideoFrame(64, 48, "yuv420p")


def test_the_video_fallback_is_paced_too_after_a_stretch_of_forwarded_packets() -> None:
    track = PassthroughVideoTrack(InstantPicture(), lambda: None)

    async def scenario() -> float:
        started = time.monotonic()
        for _ in range(6):
            await track.recv()
        return time.monotonic() - started

    assert asyncio.run(scenario()) >= 5 * 0.04 * 0.9  # each frame is encoded: a burst would cost CPU too


def test_a_track_whose_tab_is_gone_ends_and_stops_its_fallback() -> None:
    tab_open = True
    fallback = InstantPicture()
    track = PassthroughVideoTrack(fallback, lambda: None, lambda: tab_open)

    async def scenario() -> None:
        nonlocal tab_open
        await track.recv()  # the placeholder while the tab is open
        tab_open = False
        with pytest.raises(MediaStreamError):
            await track.recv()

    asyncio.run(scenario())
    assert track.readyState == "ended" and fallback.readyState == "ended"
    assert track.frames_sent == 1


def test_a_still_notice_is_sent_twice_a_second_and_a_live_picture_at_once_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(passthrough, "STILL_FRAME_PERIOD_S", 0.15)
    still = True
    track = PassthroughVideoTrack(InstantPicture(), lambda: None, still=lambda: still)

    async def timed(count: int) -> float:
        started = time.monotonic()
        for _ in range(count):
            await track.recv()
        return time.monotonic() - started

    async def scenario() -> tuple[float, float]:
        nonlocal still
        slow = await timed(4)  # the first goes at once, then one every 0.15 s
        still = False
        return slow, await timed(5)

    slow, fast = asyncio.run(scenario())
    assert slow >= 3 * 0.15 * 0.9, slow
    # The slot already set by the last still frame, then 25 fps again (still pacing would take 0.75 s).
    assert fast < 0.15 + 4 * 0.04 + 0.1, fast


def test_audio_that_overflowed_before_the_browser_listened_is_not_reported_as_dropped() -> None:
    feed = _feed_with(30)  # the session was up before the page's sender read anything: 20 overflowed
    assert feed.audio.dropped == 20 and feed.audio_stats().speech_dropped_ms == 0

    async def listen_then_overflow() -> None:
        assert await feed.audio.get(timeout=1) is not None
        for n in range(30, 45):  # 9 queued + 15 > 10: 14 go while someone listens
            feed.audio.put(_packet(n), keyframe=False)

    asyncio.run(listen_then_overflow())
    assert feed.audio_stats().speech_dropped_ms == 14 * 20
