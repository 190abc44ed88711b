"""The media relay against a real local engine: frames, audio and events arrive; nothing leaks."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lib.bridge.link import AvatarLink, LinkOptions, LinkState
from lib.heygen.models import NewSessionRequest
from lib.usage.store import UsageLog


class AudioCollector:
    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.cleared = 0

    def push(self, samples: np.ndarray) -> None:
        self.chunks.append(samples)

    def clear(self) -> None:
        self.cleared += 1


@pytest.fixture
def usage(tmp_path):
    log = UsageLog(tmp_path / "usage.db")
    yield log
    log.close()


def _link(client, usage, audio=None, **options) -> AvatarLink:
    request = NewSessionRequest(quality="low", avatar_id=client.avatars()[0].avatar_id)
    return AvatarLink(client, "local", usage, LinkOptions(request=request, **options),
                      audio_out=audio.push if audio else None, audio_clear=audio.clear if audio else None)


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.05)
    return predicate()


def test_link_relays_video_audio_events_and_stops(client, usage):
    audio = AudioCollector()
    link = _link(client, usage, audio)
    assert link.wait_connected(20), link.error
    assert link.first_frame_ms is not None and link.first_frame_ms < 5000
    frame = link.latest_frame()
    assert (frame.width, frame.height) == (854, 480)
    before = link.frames_received
    time.sleep(1.0)
    assert link.frames_received - before >= 20
    link.send("Hello there, nice to meet you.", "repeat")
    assert _wait(lambda: any(t.role == "avatar" and t.done for t in link.transcript()), 15)
    said = [t.text for t in link.transcript() if t.role == "avatar"]
    assert said == ["Hello there, nice to meet you."]
    assert link.last_task_to_talk_ms is not None and link.last_task_to_talk_ms < 2000
    speech = np.concatenate(audio.chunks).astype(float)
    assert np.sqrt(np.mean(speech**2)) > 100  # the avatar's voice reached the audio source
    session_id = link.session_id
    link.stop()
    assert link.state is LinkState.CLOSED
    assert session_id not in {s.session_id for s in client.list()}
    row = usage.get_session(session_id)
    assert row.end_reason == "stopped" and row.connected_at is not None and row.provider == "local"
    kinds = [kind for _, kind, _ in usage.events(session_id)]
    assert kinds[:2] == ["created", "connected"] and "task" in kinds and kinds[-1] == "closed"


def test_interrupt_clears_local_audio_too(client, usage):
    audio = AudioCollector()
    link = _link(client, usage, audio)
    assert link.wait_connected(20), link.error
    link.send("This sentence is long enough to be interrupted while the avatar is still talking.", "repeat")
    assert _wait(lambda: link.speaking, 10)
    link.interrupt()
    assert audio.cleared == 1
    assert _wait(lambda: not link.speaking, 2)
    link.stop()


def test_unknown_avatar_fails_with_a_clear_message(client, usage):
    link = AvatarLink(client, "local", usage, LinkOptions(request=NewSessionRequest(avatar_id="nobody")))
    assert not link.wait_connected(20)
    assert link.state is LinkState.FAILED
    assert "was not found" in link.error and "nobody" in link.error
    assert client.list() == []


def test_nobody_watching_stops_the_session(client, usage):
    link = _link(client, usage, watcher_timeout=1.0, heartbeat_every=0.2)
    assert link.wait_connected(20), link.error
    session_id = link.session_id
    assert link.finished.wait(6)
    assert link.state is LinkState.CLOSED
    assert session_id not in {s.session_id for s in client.list()}
    assert usage.get_session(session_id).end_reason == "watcher_gone"


def test_stop_while_connecting_leaks_nothing(client, usage):
    link = _link(client, usage)
    link.stop()
    time.sleep(1.5)
    assert client.list() == []
