"""Bounded queues on the passthrough path (issue 13 §1, issue 15): nothing between engine and browser grows."""

from __future__ import annotations

import asyncio

import av

from lib.engine.packets import AUDIO, VIDEO, Subscriber, pack_message, unpack_message
from lib.live.media.passthrough import PacketQueue


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
