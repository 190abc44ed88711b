"""Decoded pictures kept to be shown in step with their sound (lib.live.media.frame_history)."""

from __future__ import annotations

import av
import numpy as np

from lib.live.media.frame_history import MAX_HOLD_S, FrameHistory


def picture() -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")


def test_the_picture_shown_is_the_newest_one_old_enough_to_meet_its_sound():
    history = FrameHistory()
    frames = [picture() for _ in range(5)]
    for k, frame in enumerate(frames):
        history.add(frame, at=10.0 + 0.04 * k)  # 25 fps: 10.00 … 10.16
    now = 10.17
    assert history.behind(0.0, now) is frames[4]
    assert history.behind(0.05, now) is frames[3]  # arrived 10.12, the newest at or before 10.12
    assert history.behind(0.1, now) is frames[1]  # 10.07 → 10.04
    assert history.behind(5.0, now) is frames[0]  # the oldest kept: never nothing once a picture came


def test_the_first_picture_of_a_stream_shows_at_once():
    history = FrameHistory()
    assert history.behind(0.1) is None
    first = picture()
    history.add(first)
    assert history.behind(0.1) is first


def test_a_hold_is_capped_and_the_history_bounded():
    history = FrameHistory(size=4)
    frames = [picture() for _ in range(10)]
    for k, frame in enumerate(frames):
        history.add(frame, at=float(k))
    assert history.behind(0.3, now=6.2) is frames[6]  # only the last 4 are kept: the oldest of them
    history = FrameHistory()
    old, new = picture(), picture()
    history.add(old, at=0.0)
    history.add(new, at=1.0)
    assert history.behind(10.0, now=1.0 + MAX_HOLD_S + 0.01) is new  # a long hold is lip sync no more
