"""LiveAvatar's LiveKit leg through ``LiveSession``: a fake room made of the ``livekit`` package's real frame and
packet types, and a fake LiveAvatar REST client. No LiveKit server, no network.

Checks the contract (``docs/liveavatar-api.md`` §4, §5.1): commands go out on ``agent-control`` as reliable JSON,
``agent-response`` events build the transcript and end the session with the provider's reason, keep-alives follow
their cadence only while a page watches, and every end stops the session with ``USER_CLOSED``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from livekit import rtc

from lib.guards import Admission
from lib.live import liveavatar as live_la
from lib.live.controller import ChatSetup, ComponentState, LiveChat, Services
from lib.live.liveavatar import AgentEvents, LiveAvatarChoice, LiveAvatarRequest, LiveAvatarStreaming
from lib.live.media import livekit as livekit_media
from lib.live.media import loop as media_loop
from lib.live.session import LiveSession, SessionOptions, SessionState
from lib.liveavatar import errors as la_errors
from lib.liveavatar.models import (
    SANDBOX_AVATAR_ID,
    Interactivity,
    SessionEndReason,
    SessionEntry,
    SessionMode,
    SessionSource,
    SessionToken,
    StartedSession,
)
from lib.settings import Secret
from lib.usage.store import EndReason, UsageLog

SID = "5b7c2a9e-0000-4000-8000-00000000abcd"
URL = "wss://liveavatar-room.livekit.cloud"
ROOM_TOKEN = "eyJ.room-client-token"
SESSION_TOKEN = "la-session-token-secret"


@dataclass
class FakeLiveAvatar:
    """The REST calls ``LiveAvatarStreaming`` makes, recorded (``LiveAvatarClient``'s methods and shapes)."""

    base_url: str = "https://api.liveavatar.com"
    endpoint: str = "https://api.liveavatar.com#key-0123456789ab"
    calls: list[tuple[str, Any]] = field(default_factory=list)
    keep_alives: list[float] = field(default_factory=list)
    start_error: Exception | None = None
    ended: SessionEndReason | None = None

    def create_session_token(self, config: Any) -> SessionToken:
        self.calls.append(("token", config.to_json()))
        return SessionToken(SID, Secret(SESSION_TOKEN))

    def start_session(self, token: SessionToken) -> StartedSession:
        self.calls.append(("start", token.session_id))
        if self.start_error is not None:
            raise self.start_error
        return StartedSession(SID, URL, ROOM_TOKEN, max_session_duration=60)

    def keep_alive(self, session_id: str) -> None:
        self.keep_alives.append(time.monotonic())

    def stop_session(self, session_id: str, reason: SessionEndReason = SessionEndReason.USER_CLOSED) -> None:
        self.calls.append(("stop", (session_id, reason)))
        if self.ended is not None:
            raise la_errors.SessionAlreadyStopped(session_id=session_id)

    def get_session(self, session_id: str) -> SessionEntry:
        now = datetime.now(UTC)
        return SessionEntry(
            session_id,
            now,
            now,
            1,
            SessionSource.API,
            SessionMode.FULL,
            True,
            0.0,
            now if self.ended else None,
            self.ended,
        )

    def credits_left(self) -> Decimal:
        return Decimal("1.5")


class FakeParticipant:
    def __init__(self) -> None:
        self.published: list[tuple[bytes, bool, str]] = []

    async def publish_data(self, payload: bytes, *, reliable: bool = True, topic: str = "") -> None:
        self.published.append((payload, reliable, topic))


class FakeRoom(rtc.EventEmitter):
    def __init__(self) -> None:
        super().__init__()
        self.local_participant = FakeParticipant()
        self.joined: tuple[str, str] | None = None
        self.log: list[str] = []

    async def connect(self, url: str, token: str, options: rtc.RoomOptions) -> None:
        self.joined = (url, token)

    async def disconnect(self) -> None:
        self.log.append("disconnect")
        self.joined = None


@dataclass
class Identity:
    identity: str


@dataclass
class FakeTrack:
    sid: str
    kind: int


class FakeStream:
    def __init__(self, track: FakeTrack, **kwargs: Any) -> None:
        self.track = track
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def __aiter__(self) -> FakeStream:
        return self

    async def __anext__(self) -> Any:
        return await self.queue.get()

    async def aclose(self) -> None:
        pass


@dataclass
class Harness:
    la: FakeLiveAvatar
    room: FakeRoom
    streams: list[FakeStream]
    tmp: Path

    def session(self, choice: LiveAvatarChoice | None = None, **options: Any) -> LiveSession:
        choice = choice or LiveAvatarChoice(SANDBOX_AVATAR_ID, sandbox=True, context_id=None)
        client = LiveAvatarStreaming(self.la)  # type: ignore[arg-type]  # the fake has the calls it makes
        self.usage = UsageLog(self.tmp / "usage.db")
        request = LiveAvatarRequest(choice.config(None), choice)
        return LiveSession(client, "liveavatar", self.usage, SessionOptions(request=request, **options))

    def run(self, fn: Any, *args: Any) -> None:
        async def call() -> None:
            fn(*args)
            for _ in range(5):
                await asyncio.sleep(0)

        media_loop.run(call(), timeout=5)

    def show_avatar(self) -> None:
        """The room's avatar participant publishes video; its first frame arrives (and an agent's track is ignored)."""
        assert wait(lambda: self.room.joined is not None)
        self.run(
            self.room.emit, "track_subscribed", FakeTrack("TR_agent", rtc.TrackKind.KIND_AUDIO), None, Identity("agent")
        )
        assert not self.streams  # only participant "heygen" is shown
        self.run(
            self.room.emit,
            "track_subscribed",
            FakeTrack("TR_video", rtc.TrackKind.KIND_VIDEO),
            None,
            Identity("heygen"),
        )
        frame = rtc.VideoFrame(4, 4, rtc.VideoBufferType.I420, bytes(24))
        self.run(self.streams[0].queue.put_nowait, rtc.VideoFrameEvent(frame, 0, 0))

    def event(self, **data: Any) -> None:
        payload = json.dumps({"event_id": "e", "session_id": SID, **data}).encode()
        self.run(
            self.room.emit,
            "data_received",
            rtc.DataPacket(payload, rtc.DataPacketKind.KIND_RELIABLE, None, "agent-response"),
        )

    def commands(self) -> list[dict[str, Any]]:
        out = []
        for payload, reliable, topic in self.room.local_participant.published:
            assert reliable and topic == "agent-control"
            out.append(json.loads(payload))
        return out


def wait(condition: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return value


@pytest.fixture
def h(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Harness]:
    room = FakeRoom()
    streams: list[FakeStream] = []

    def stream(track: FakeTrack, **kwargs: Any) -> FakeStream:
        streams.append(FakeStream(track, **kwargs))
        return streams[-1]

    real = livekit_media.LiveKitConnection

    def connection(**kwargs: Any) -> Any:
        return real(**kwargs, room_factory=lambda: room, video_stream_factory=stream, audio_stream_factory=stream)

    monkeypatch.setattr(livekit_media, "LiveKitConnection", connection)
    yield Harness(FakeLiveAvatar(), room, streams, tmp_path)


def connected(h: Harness, **options: Any) -> LiveSession:
    session = h.session(**options)
    h.show_avatar()
    assert session.wait_connected(5), session.error
    return session


def test_start_mints_the_token_then_joins_the_room_it_names(h: Harness) -> None:
    session = connected(h)
    assert [kind for kind, _ in h.la.calls] == ["token", "start"]
    body = h.la.calls[0][1]
    assert body["avatar_id"] == SANDBOX_AVATAR_ID and body["is_sandbox"] and body["max_session_duration"] == 60
    assert h.room.joined == (URL, ROOM_TOKEN)
    assert session.provider_session is not None and session.provider_session.session_duration_limit == 60
    session.stop()


def test_commands_go_out_on_agent_control_as_the_contract_json(h: Harness) -> None:
    session = connected(h)
    repeat = session.send("Say exactly this.", "repeat")
    answer = session.send("What does it cost?", "talk")
    session.interrupt()
    sent = h.commands()
    assert [c["event_type"] for c in sent] == ["avatar.speak_text", "avatar.speak_response", "avatar.interrupt"]
    assert sent[0] == {
        "event_id": repeat.task_id,
        "event_type": "avatar.speak_text",
        "session_id": SID,
        "text": "Say exactly this.",
    }
    assert sent[1]["text"] == "What does it cost?" and sent[1]["event_id"] == answer.task_id
    assert set(sent[2]) == {"event_id", "event_type", "session_id"}
    assert all(SESSION_TOKEN.encode() not in p for p, _, _ in h.room.local_participant.published)
    session.stop()


def test_agent_response_events_build_the_transcript_and_the_speaking_state(h: Harness) -> None:
    session = connected(h)
    task = session.send("What does it cost?", "talk").task_id
    h.event(event_type="avatar.speak_started", source_event_id=task)
    assert session.speaking and not session.awaiting_answer
    h.event(event_type="avatar.transcription.chunk", text="Two credits")
    h.event(event_type="avatar.transcription.chunk", text="a minute.")
    assert [(t.role, t.text, t.done) for t in session.transcript()][-1] == ("avatar", "Two credits a minute.", False)
    h.event(event_type="avatar.transcription", text="Two credits a minute in FULL.")
    h.event(event_type="avatar.speak_ended", source_event_id=task)
    h.event(event_type="user.transcription", text="What does it cost?")  # our own message, echoed: shown once
    h.event(event_type="user.transcription", text="And in LITE?")  # spoken into the room: a new user turn
    h.event(event_type="no.such_event")
    h.room.emit  # noqa: B018
    turns = [(t.role, t.text, t.done) for t in session.transcript()]
    assert turns == [
        ("user", "What does it cost?", False),
        ("avatar", "Two credits a minute in FULL.", True),
        ("user", "And in LITE?", True),
    ]
    assert not session.speaking
    session.stop()


def test_session_stopped_ends_the_session_with_the_providers_reason(h: Harness) -> None:
    session = connected(h)
    h.la.ended = SessionEndReason.MAX_DURATION_REACHED
    h.event(event_type="session.stopped", end_reason="MAX_DURATION_REACHED")
    assert session.finished.wait(5)
    assert session.state is SessionState.CLOSED and session.end_reason is EndReason.PROVIDER_ENDED
    assert session.provider_end_reason == "MAX_DURATION_REACHED"
    assert "MAX_DURATION_REACHED" in (session.error or "")
    row = h.usage.get_session(SID)
    assert row is not None and row.end_reason == "provider_ended"
    assert any(
        kind == "closed" and details == {"provider_end_reason": "MAX_DURATION_REACHED"}
        for _, kind, details in h.usage.events(SID)
    )
    assert h.room.log == ["disconnect"]


def test_keep_alives_follow_their_cadence_while_watched_then_the_session_stops(h: Harness) -> None:
    session = connected(h, keep_alive_every=0.2, watcher_timeout=1.0)
    started = time.monotonic()
    while time.monotonic() - started < 0.9:
        session.watched()
        time.sleep(0.05)
    count = len(h.la.keep_alives)
    assert 3 <= count <= 5, h.la.keep_alives
    gaps = [b - a for a, b in zip(h.la.keep_alives, h.la.keep_alives[1:], strict=False)]
    assert all(0.15 < gap < 0.35 for gap in gaps), gaps
    # Nobody watches any more: no keep-alive holds it open; it is stopped at the provider as USER_CLOSED.
    assert session.finished.wait(3)
    assert session.end_reason is EndReason.WATCHER_GONE
    assert ("stop", (SID, SessionEndReason.USER_CLOSED)) in h.la.calls
    assert len(h.la.keep_alives) <= count + 5


def test_release_stops_at_the_provider_before_leaving_the_room(h: Harness) -> None:
    session = connected(h)
    original = h.room.disconnect

    async def disconnect() -> None:
        h.room.log.append(f"disconnect after {len([c for c in h.la.calls if c[0] == 'stop'])} stop")
        await original()

    h.room.disconnect = disconnect  # type: ignore[method-assign]
    session.stop(EndReason.RELEASED)
    assert session.end_reason is EndReason.RELEASED
    assert h.la.calls[-1] == ("stop", (SID, SessionEndReason.USER_CLOSED))
    assert h.room.log[0] == "disconnect after 1 stop"
    with pytest.raises(RuntimeError):
        session.send("anyone there?")


def test_refusals_reach_the_page_as_kinds_it_can_act_on(h: Harness) -> None:
    h.la.start_error = la_errors.InsufficientCredits(None, 403)
    session = h.session()
    assert session.finished.wait(5)
    assert session.state is SessionState.FAILED and session.error_kind == "InsufficientCredits"
    assert "Credits left: 1.5" in (session.error or "")
    assert h.la.calls[-1] == ("stop", (SID, SessionEndReason.USER_CLOSED))  # the minted token is discarded
    h.la.calls.clear()
    h.la.start_error = la_errors.ConcurrencyLimit(None, 403)
    session = h.session()
    assert session.finished.wait(5)
    assert session.error_kind == "ConcurrencyLimit"


def test_agent_events_ignore_commands_and_malformed_packets() -> None:
    events = AgentEvents()
    assert events.translate({"event_type": "avatar.speak_text", "text": "x", "topic": "agent-control"}) == []
    assert events.translate({"event_type": 5}) == []
    assert events.translate({"event_type": "avatar.speak_started"}) == [
        {"type": "avatar_start_talking", "task_id": None}
    ]
    assert live_la.KEEP_ALIVE_SECONDS == 60.0


def voice_chat(h: Harness, interactivity: Interactivity) -> tuple[LiveChat, LiveSession]:
    """Live chat's controller on the real ``LiveSession``, as the page runs it with the microphone on."""
    h.usage = UsageLog(h.tmp / "usage.db")
    choice = LiveAvatarChoice(SANDBOX_AVATAR_ID, sandbox=True, interactivity=interactivity)
    client = LiveAvatarStreaming(h.la)  # type: ignore[arg-type]  # the fake has the calls it makes
    services = Services("liveavatar", client, h.usage, 300, 45.0, lambda name, override: Admission(True))
    chat = LiveChat(lambda: services)
    chat.component(
        ComponentState(playing=True, signalling=False),
        ChatSetup(None, None, "low", "VP8", "talk", "", liveavatar=choice),
    )
    assert chat.session is not None
    h.show_avatar()
    assert chat.session.wait_connected(5), chat.session.error
    return chat, chat.session


def command_types(h: Harness) -> list[str]:
    return [c["event_type"] for c in h.commands()]


@pytest.mark.parametrize(
    ("interactivity", "on", "off"),
    [
        (Interactivity.CONVERSATIONAL, ["avatar.start_listening"], ["avatar.stop_listening"]),
        (
            Interactivity.PUSH_TO_TALK,
            ["user.start_push_to_talk", "avatar.start_listening"],
            ["avatar.stop_listening", "user.stop_push_to_talk"],
        ),
    ],
)
def test_the_users_speech_sets_the_listening_pose_and_the_push_to_talk_window(
    h: Harness, interactivity: Interactivity, on: list[str], off: list[str]
) -> None:
    chat, session = voice_chat(h, interactivity)
    chat._on_speech_end()  # an end with no start heard (the mic began mid-sentence): nothing to close
    chat._on_speech_start()  # what the microphone listener calls on its VAD thread
    assert wait(lambda: command_types(h) == on), command_types(h)
    chat._on_speech_end()
    assert wait(lambda: command_types(h) == on + off), command_types(h)
    sent = h.commands()
    assert all(set(c) == {"event_id", "event_type", "session_id"} and c["session_id"] == SID for c in sent)
    assert len({c["event_id"] for c in sent}) == len(sent)
    chat.close()
    assert session.end_reason is EndReason.RELEASED


def test_a_refused_push_to_talk_window_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    events = AgentEvents()
    with caplog.at_level("WARNING", logger="avatar_ops.live"):
        assert events.translate({"event_type": "user.push_to_talk_started"}) == []
        assert not caplog.records
        assert events.translate({"event_type": "user.push_to_talk_start_failed"}) == []
    assert [r.getMessage() for r in caplog.records] == ["LiveAvatar refused to open the push-to-talk window"]
