"""The media relay against a real local engine: frames, audio and events arrive; nothing leaks."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from lib.heygen.client import StreamingClient
from lib.heygen.errors import MissingParameter
from lib.heygen.models import NewSession, NewSessionRequest
from lib.live.session import LiveSession, SessionOptions, SessionState, to_mono_s16
from lib.usage.store import EndReason, UsageLog


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


def _live(client, usage, audio=None, **options) -> LiveSession:
    request = NewSessionRequest(quality="low", avatar_id=client.avatars()[0].avatar_id)
    return LiveSession(
        client,
        "local",
        usage,
        SessionOptions(request=request, **options),
        audio_out=audio.push if audio else None,
        audio_clear=audio.clear if audio else None,
    )


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.05)
    return predicate()


def test_a_live_session_relays_video_audio_events_and_stops(client, usage):
    audio = AudioCollector()
    live = _live(client, usage, audio)
    assert live.wait_connected(20), live.error
    assert live.first_frame_ms is not None and live.first_frame_ms < 5000
    frame = live.latest_frame()
    assert (frame.width, frame.height) == (854, 480)
    before = live.frames_received
    time.sleep(1.0)
    assert live.frames_received - before >= 20
    with pytest.raises(MissingParameter, match="Type a message for the avatar first"):
        live.send("   ", "repeat")
    assert live.transcript() == []  # a refused message leaves no (empty) bubble
    live.send("Hello there, nice to meet you.", "repeat")
    assert _wait(lambda: any(t.role == "avatar" and t.done for t in live.transcript()), 15)
    assert [t.text for t in live.transcript() if t.role == "user"] == ["Hello there, nice to meet you."]
    said = [t.text for t in live.transcript() if t.role == "avatar"]
    assert said == ["Hello there, nice to meet you."]
    assert live.last_task_to_talk_ms is not None and live.last_task_to_talk_ms < 2000
    speech = np.concatenate(audio.chunks).astype(float)
    rms = np.sqrt(np.mean(speech**2))
    # The avatar's voice reached the audio source at speech level: not silent, not clipped noise.
    assert 100 < rms < 8000, rms
    assert np.mean(np.abs(speech) > 32000) < 0.001
    session_id = live.session_id
    live.stop()
    assert live.state is SessionState.CLOSED
    assert session_id not in {s.session_id for s in client.list()}
    row = usage.get_session(session_id)
    assert row.end_reason == "stopped" and row.connected_at is not None and row.provider == "local"
    kinds = [kind for _, kind, _ in usage.events(session_id)]
    assert kinds[:2] == ["created", "connected"] and "task" in kinds and kinds[-1] == "closed"


def test_audio_frames_become_mono_int16():
    import av

    stereo = np.array([[1000, -2000, 300, 500, -7, -9]], dtype=np.int16)  # packed L/R pairs
    frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    frame.sample_rate = 48000
    assert to_mono_s16(frame).tolist() == [-500, 400, -8]
    mono = av.AudioFrame.from_ndarray(np.array([[5, -6]], dtype=np.int16), format="s16", layout="mono")
    mono.sample_rate = 48000
    assert to_mono_s16(mono).tolist() == [5, -6]


def test_interrupt_clears_local_audio_too(client, usage):
    audio = AudioCollector()
    live = _live(client, usage, audio)
    assert live.wait_connected(20), live.error
    live.send("This sentence is long enough to be interrupted while the avatar is still talking.", "repeat")
    assert _wait(lambda: live.speaking, 10)
    live.interrupt()
    assert audio.cleared == 1
    assert _wait(lambda: not live.speaking, 2)
    # What the avatar had begun to say stays in the conversation, marked as cut off.
    [answer] = [t for t in live.transcript() if t.role == "avatar"]
    assert answer.text.startswith("This sentence") and answer.interrupted and answer.done
    live.send("Short one.", "repeat")
    assert _wait(lambda: sum(t.done for t in live.transcript() if t.role == "avatar") == 2, 10)
    assert not live.transcript()[-1].interrupted
    live.stop()


def test_unknown_avatar_fails_with_a_clear_message(client, usage):
    live = LiveSession(client, "local", usage, SessionOptions(request=NewSessionRequest(avatar_id="nobody")))
    assert not live.wait_connected(20)
    assert live.state is SessionState.FAILED
    assert "was not found" in live.error and "nobody" in live.error
    assert client.list() == []


def test_nobody_watching_stops_the_session(client, usage):
    live = _live(client, usage, watcher_timeout=1.0, heartbeat_every=0.2)
    assert live.wait_connected(20), live.error
    session_id = live.session_id
    assert live.finished.wait(6)
    assert live.state is SessionState.CLOSED
    assert session_id not in {s.session_id for s in client.list()}
    assert usage.get_session(session_id).end_reason == "watcher_gone"


def test_stop_while_connecting_leaks_nothing(client, usage):
    live = _live(client, usage)
    live.stop()
    time.sleep(1.5)
    assert client.list() == []


class FakeHeyGen:
    """HeyGen's v2 answers, from their documented shapes: a LiveKit room instead of an SDP offer."""

    provider_label = "HeyGen"
    endpoint = "https://api.heygen.com#key-0123456789ab"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def new(self, request):
        from lib.heygen.models import NewSession

        self.calls.append(("new", request.version))
        return NewSession(
            session_id="hg-1",
            access_token="lk-jwt",
            url="wss://example.livekit.cloud",
            sdp=None,
            ice_servers=[],
            session_duration_limit=600,
            is_paid=True,
        )

    def start(self, session_id, sdp_answer=None):
        self.calls.append(("start", session_id, sdp_answer))

    def stop(self, session_id):
        self.calls.append(("stop", session_id))

    def keep_alive(self, session_id):
        self.calls.append(("keep_alive", session_id))


def test_heygen_v2_session_joins_the_livekit_room(monkeypatch, usage):
    import av

    from lib.live.media import livekit as livekit_transport

    rooms = []

    class FakeRoom:
        def __init__(self, on_video, on_audio, on_event, on_state, only_participant=None):
            self.on_video, self.on_event = on_video, on_event
            self.only_participant = only_participant  # HeyGen's room: every participant's tracks are read
            self.closed = False
            rooms.append(self)

        async def connect(self, url, token, timeout):
            self.joined = (url, token)
            self.on_video(av.VideoFrame(1280, 720, "yuv420p"))
            self.on_event({"type": "avatar_start_talking", "task_id": "t1"})

        async def close(self):
            self.closed = True

    monkeypatch.setattr(livekit_transport, "LiveKitConnection", FakeRoom)
    client = FakeHeyGen()
    live = LiveSession(client, "heygen", usage, SessionOptions(request=NewSessionRequest(quality="high", version="v2")))
    assert live.wait_connected(5), live.error
    assert rooms[0].joined == ("wss://example.livekit.cloud", "lk-jwt")
    assert ("start", "hg-1", None) in client.calls  # streaming.start without an SDP answer
    assert live.latest_frame().width == 1280 and live.speaking
    live.stop()
    assert rooms[0].closed and ("stop", "hg-1") in client.calls
    assert usage.get_session("hg-1").end_reason == "stopped"


def test_duration_cap_stops_the_session(client, usage):
    live = _live(client, usage, max_duration=1.5, heartbeat_every=0.2)
    assert live.wait_connected(20), live.error
    assert 0 < live.seconds_left() <= 1.5
    session_id = live.session_id
    assert live.finished.wait(6)
    assert session_id not in {s.session_id for s in client.list()}
    assert usage.get_session(session_id).end_reason == "duration_cap"


def test_reconnects_by_itself_after_the_engine_restarts(tmp_path, usage):
    from lib.engine.launcher import free_port, start_engine
    from lib.heygen.client import StreamingClient
    from lib.settings import Secret

    port, key = free_port(), Secret("reconnect-test-key-0123456789")
    args = ["--no-voices", "--history-db", str(tmp_path / "history.db")]
    first = start_engine(port=port, api_key=key, extra_args=args)
    second = None
    try:
        with StreamingClient(first.url, key, backoff=0, retries=0) as client:
            live = LiveSession(
                client,
                "local",
                usage,
                SessionOptions(request=NewSessionRequest(quality="low"), video_stall_timeout=1.5),
            )
            assert live.wait_connected(20), live.error
            old = live.session_id
            first.process.kill()
            killed_at = time.monotonic()
            first.process.wait()
            assert _wait(lambda: live.state is SessionState.RECONNECTING, 6)
            assert live.error and "video" in live.error
            second = start_engine(port=port, api_key=key, extra_args=args)
            assert _wait(lambda: live.state is SessionState.CONNECTED, 40), live.error
            picture_gone_s = time.monotonic() - killed_at
            assert live.session_id != old and live.reconnects == 1
            # The dashboard cap counts the whole conversation; the provider's limit only the new session.
            assert live.session_age_seconds() < live.age_seconds() - 1.0
            before = live.frames_received
            assert _wait(lambda: live.frames_received > before + 10, 5)
            assert usage.get_session(old).end_reason == "disconnected"
            reconnect = [d for _, kind, d in usage.events(live.session_id) if kind == "reconnect"]
            assert reconnect and reconnect[0]["previous_session_id"] == old
            # Downtime runs from the last frame received (before the kill), not from when the loss was noticed.
            assert reconnect[0]["downtime_ms"] >= (picture_gone_s - 0.5) * 1000, (reconnect, picture_gone_s)
            live.stop()
            assert client.list() == []
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_a_force_stop_elsewhere_is_not_undone_by_a_reconnect(client, usage):
    """The Sessions page (or the command line) stops a session a Live chat tab is showing."""
    from lib import ops
    from lib.access import LOCAL_OPERATOR
    from lib.accounts import StreamingAccount
    from lib.capabilities import CAPABILITIES, ProviderKind
    from lib.usage.credits import PRESETS, Pricing

    live = _live(client, usage, video_stall_timeout=1.5)
    assert live.wait_connected(20), live.error
    session_id = live.session_id
    account, caps = StreamingAccount(client), CAPABILITIES[ProviderKind.LOCAL]
    snapshot = ops.take_snapshot(account, usage, caps, Pricing(PRESETS["heygen_current"]))
    results = ops.force_stop(account, usage, "local", snapshot.by_id([session_id]), identity=LOCAL_OPERATOR)
    assert [r.outcome for r in results] == ["stopped"]

    assert _wait(lambda: live.state is SessionState.DISCONNECTED, 15), (live.state, live.error)
    assert "force-stopped" in (live.error or "")
    assert live.finished.wait(5)
    time.sleep(1.5)  # long enough for a reconnect to have opened a new session
    assert live.session_id == session_id and live.reconnects == 0
    assert client.list() == []
    assert usage.was_force_stopped(session_id)
    assert usage.open_sessions() == []


def test_connection_quality_is_measured_from_webrtc_stats(client, usage):
    live = _live(client, usage)
    assert live.wait_connected(20), live.error
    assert _wait(lambda: live.quality is not None, 8)
    q = live.quality
    assert 15 < q.fps < 35
    assert q.bitrate_kbps is not None and q.bitrate_kbps > 20
    assert q.loss_pct is not None and q.loss_pct < 5
    live.stop()


class GatedClient(StreamingClient):
    """The real client; once ``hold`` is set, the next ``new`` waits at the gate (a slow provider) and then
    creates the session at the engine all the same."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold = False
        self.waiting = threading.Event()
        self.gate = threading.Event()
        self.made: list[str] = []

    def new(self, request: NewSessionRequest | None = None) -> NewSession:
        if self.hold:
            self.hold = False
            self.waiting.set()
            self.gate.wait(20)
        session = super().new(request)
        self.made.append(session.session_id)
        return session


def test_a_session_made_after_its_reconnect_was_abandoned_is_logged_and_stopped(engine, usage):
    """The tab closes while a reconnect waits for the provider to create the new session: the provider makes it
    anyway, and nobody would ever stop it (it ran on, billed, until the idle timeout, and was not in the log)."""
    with GatedClient(engine.url, engine.api_key, backoff=0) as client:
        live = _live(client, usage)
        assert live.wait_connected(20), live.error
        first = live.session_id
        client.hold = True
        client.stop(first)  # the provider ends it under the dashboard: the dashboard reconnects
        assert client.waiting.wait(15), (live.state, live.error)
        live.stop(EndReason.RELEASED)  # the tab closed meanwhile
        client.gate.set()
        assert _wait(lambda: len(client.made) == 2, 10)
        late = client.made[1]
        assert _wait(lambda: client.list() == [], 10), client.list()
        # The log's close follows the provider's stop (the engine lists it gone a moment before it is written).
        assert _wait(lambda: (row := usage.get_session(late)) is not None and row.end_reason is not None, 10)
        row = usage.get_session(late)
        assert row is not None and row.end_reason == "released", row
        assert usage.open_sessions() == []
