"""The browser-bound audio buffer keeps latency bounded without cutting speech."""

from __future__ import annotations

import threading

import numpy as np

from lib.live.media.playout import PlayoutBuffer, PlayoutStats
from lib.live.status import audio_leg_summary

FRAME = 960  # 20 ms at 48 kHz


def speech(frames: int = 1, start: int = 1) -> np.ndarray:
    return (np.arange(FRAME * frames, dtype=np.int64) % 2000 + start).astype(np.int16)


def silence(frames: int = 1) -> np.ndarray:
    return np.zeros(FRAME * frames, dtype=np.int16)


def test_samples_come_out_in_order_in_fixed_frames():
    buf = PlayoutBuffer()
    pushed = speech(3)
    for part in np.array_split(pushed, 7):  # pushes of odd sizes
        buf.push(part)
    out = np.concatenate([buf.read(FRAME) for _ in range(3)])
    assert np.array_equal(out, pushed)
    assert buf.stats.level_ms == 0


def test_underrun_pads_with_silence_and_is_counted():
    buf = PlayoutBuffer()
    buf.push(speech(1)[:480])
    buf.read(240)
    out = buf.read(FRAME)
    assert out.shape == (FRAME,) and not out[240:].any()
    assert buf.stats.underrun_ms == 15.0


def test_a_burst_of_silence_after_a_stall_does_not_become_permanent_delay():
    """A stall upstream, then 500 ms of idle audio at once: a plain FIFO would now be 500 ms late."""
    buf = PlayoutBuffer(target_ms=60)
    for _ in range(25):
        buf.push(silence())
    assert buf.stats.level_ms <= 60
    assert buf.stats.silence_shed_ms >= 440
    # Speech that follows is heard within the target, not after the burst.
    buf.push(speech())
    reads = 0
    while not buf.read(FRAME).any():
        reads += 1
    assert reads * 20 <= 60


def test_speech_is_never_shed_below_the_cap():
    buf = PlayoutBuffer(target_ms=60, cap_ms=300)
    words = speech(10)
    buf.push(words)  # 200 ms of speech arriving at once: all of it is kept
    assert buf.stats.speech_dropped_ms == 0
    assert np.array_equal(np.concatenate([buf.read(FRAME) for _ in range(10)]), words)


def test_past_the_cap_the_oldest_audio_goes_and_latency_returns_to_target():
    buf = PlayoutBuffer(target_ms=60, cap_ms=300)
    buf.push(speech(20))  # 400 ms at once
    assert buf.stats.speech_dropped_ms == 340
    assert buf.stats.level_ms == 60
    assert buf.read(FRAME).any()
    assert buf.stats.level_ms == 40


def test_clear_silences_at_once():
    buf = PlayoutBuffer()
    buf.push(speech(5))
    buf.clear()
    assert not buf.read(FRAME).any()
    assert buf.stats.level_ms == 0


def test_push_and_read_from_two_threads_lose_nothing():
    buf = PlayoutBuffer(cap_ms=10_000)
    pushed = speech(200)
    got: list[np.ndarray] = []

    def reader() -> None:
        while sum(int(np.count_nonzero(a)) for a in got) < pushed.size:  # speech() has no zero sample
            got.append(buf.read(FRAME))

    t = threading.Thread(target=reader)
    t.start()
    for part in np.array_split(pushed, 333):
        buf.push(part)
    t.join(10)
    assert not t.is_alive()
    out = np.concatenate(got)
    assert np.array_equal(out[out != 0], pushed[pushed != 0])


def test_status_panel_summarises_the_audio_leg():
    assert audio_leg_summary(PlayoutStats(level_ms=40, max_level_ms=120)) == "40 ms buffered (max 120)"
    text = audio_leg_summary(PlayoutStats(level_ms=20, max_level_ms=300, underrun_ms=1500, speech_dropped_ms=240))
    assert "1.5 s of gaps" in text and "0.2 s dropped" in text


def test_the_hold_follows_how_long_audio_waits_here_without_jumping_with_each_read():
    buf = PlayoutBuffer()
    buf.push(speech(5))  # 100 ms queued, then one 20 ms frame in and one out per tick
    first = None
    for tick in range(60):
        buf.read(FRAME)
        buf.push(speech(1))
        if tick == 0:
            first = buf.stats.hold_ms
    assert first is not None and 0 < first < 20  # one read in: far from the level yet
    assert 75 <= buf.stats.hold_ms <= 85  # 80 ms wait after each read, once settled
    buf.clear()
    buf.read(FRAME)
    assert buf.stats.hold_ms < 80  # an interrupt's empty buffer pulls it down, gradually
