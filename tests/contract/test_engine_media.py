"""Media: a real aiortc viewer receives the engine's video, audio and data channel."""

from __future__ import annotations

import asyncio
import itertools
import time

import numpy as np
import pytest

from lib.heygen.models import NewSessionRequest
from tests.support.rtc import open_session, wait_for


@pytest.mark.parametrize(("quality", "size"), [("low", (854, 480)), ("medium", (1280, 720))])
async def test_video_at_requested_resolution_and_25fps(client, quality, size):
    live = await open_session(client, NewSessionRequest(quality=quality))
    try:
        assert await wait_for(lambda: live.received.first_frame_at is not None, 10)
        start = time.monotonic()
        await asyncio.sleep(3.0)
        assert live.received.sizes == {size}
        assert live.received.fps(start) >= 22
        assert live.received.audio_rates == {48000}
        # Idle: the audio is silence.
        assert live.received.audio_rms(start, time.monotonic()) < 50
        status = {s.session_id: s.status for s in client.list()}[live.session_id]
        assert status == "connected"
    finally:
        await live.connection.close()


async def test_idle_frames_change_over_time(client):
    live = await open_session(client)
    try:
        assert await wait_for(lambda: len(live.received.video) > 150, 12)
        frames = [f for _, f in live.received.video[-150:]]
        diffs = [np.abs(a.astype(np.int16) - b).mean() for a, b in itertools.pairwise(frames)]
        # Blinks and sway: the picture is alive, not a still image...
        assert sum(d > 0.05 for d in diffs) >= 5
        # ...but calm: no frame jumps wildly.
        assert max(diffs) < 20
    finally:
        await live.connection.close()


async def test_h264_session_streams(client):
    live = await open_session(client, NewSessionRequest(quality="low", video_encoding="H264"))
    try:
        assert await wait_for(lambda: len(live.received.video) > 25, 10)
        assert "H264" in live.connection.pc.remoteDescription.sdp
    finally:
        await live.connection.close()


async def test_stop_closes_the_peer_connection(client):
    live = await open_session(client)
    try:
        assert await wait_for(lambda: live.received.first_frame_at is not None, 10)
        await asyncio.get_running_loop().run_in_executor(None, client.stop, live.session_id)
        assert await wait_for(lambda: live.connection.state in ("closed", "failed"), 10)
        assert live.session_id not in {s.session_id for s in client.list()}
    finally:
        await live.connection.close()
