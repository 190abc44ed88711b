"""Live chat's controller: event sequences replayed through it, with a fake live session (no engine, no page)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from lib.access import LOCAL_OPERATOR, Identity, Role
from lib.guards import Admission
from lib.heygen.models import NewSession, TaskResult
from lib.live import controller
from lib.live.controller import (
    ChatSetup,
    ComponentState,
    LiveChat,
    MessageOutcome,
    PageAction,
    Services,
)
from lib.live.liveavatar import LiveAvatarChoice, LiveAvatarRequest
from lib.live.placeholder import placeholder_frame
from lib.live.session import SessionOptions, SessionState
from lib.live.traits import ProviderTraits
from lib.liveavatar.models import SANDBOX_AVATAR_ID, Interactivity, SessionMode, VideoQuality
from lib.scripts import MAX_SEGMENT_CHARS, RunnerState
from lib.usage.store import EndReason
from lib.voice import Transcript

IDLE = ComponentState(playing=False, signalling=False)
SIGNALLING = ComponentState(playing=False, signalling=True)
PLAYING = ComponentState(playing=True, signalling=False)
SETUP = ChatSetup("avatar", "voice", "low", "VP8", "talk", "kb", max_minutes=0)


class FakeSession:
    """Stands in for ``LiveSession``: records what the controller asks of it; tests move its state."""

    def __init__(self, client: Any, provider: str, usage: Any, options: SessionOptions, **_: Any) -> None:
        self.provider = provider
        self.options = options
        self.state = SessionState.CONNECTING
        self.end_reason: EndReason | None = None
        self.error: str | None = None
        self.error_kind: str | None = None
        self.speaking = False
        self.awaiting_answer = False
        self.sent: list[str] = []
        self.interrupts = 0
        self.watched_calls = 0

    @property
    def live(self) -> bool:
        return self.state in (SessionState.CONNECTING, SessionState.CONNECTED, SessionState.RECONNECTING)

    def stop(self, reason: EndReason = EndReason.STOPPED) -> None:
        if self.end_reason is None:
            self.end_reason = reason
            self.state = SessionState.CLOSED

    def send(self, text: str, task_type: str = "talk") -> TaskResult:
        self.sent.append(text)
        return TaskResult(task_id=f"t{len(self.sent)}", duration_ms=None)

    def interrupt(self) -> None:
        self.interrupts += 1

    def events(self) -> list[tuple[float, dict[str, Any]]]:
        return []

    def watched(self) -> None:
        self.watched_calls += 1

    audio_lag_s = 0.0

    def latest_frame(self, behind_s: float = 0.0) -> None:
        return None

    def record(self, kind: str, details: dict[str, Any] | None = None) -> None:
        pass


class World:
    """The controller's collaborators, with knobs: which provider, is the budget spent."""

    def __init__(self) -> None:
        self.provider = "local"
        self.over_budget = False
        self.sessions: list[FakeSession] = []
        self.overrides: list[bool] = []
        self.identity = LOCAL_OPERATOR

    def admit(self, provider: str, override: bool) -> Admission:
        self.overrides.append(override)
        if self.over_budget and not override:
            return Admission(False, "budget reached")
        return Admission(True, open_events=(("budget_override", {"used_credits": 1.0}),) if override else ())

    def new_session(self, *args: Any, **kwargs: Any) -> FakeSession:
        session = FakeSession(*args, **kwargs)
        self.sessions.append(session)
        return session

    def services(self) -> Services:
        return Services(
            provider_name=self.provider,
            client=None,  # type: ignore[arg-type]  # the fake session never calls it
            usage=None,
            idle_timeout=120,
            watcher_timeout=45,
            admit=self.admit,
            new_session=self.new_session,  # type: ignore[arg-type]
            identity=self.identity,
        )


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def chat(world: World) -> LiveChat:
    return LiveChat(world.services)


def _eventually(condition: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(condition())


def replay(chat: LiveChat, *states: ComponentState) -> list[PageAction]:
    return [chat.component(state, SETUP) for state in states]


def test_states_that_pass_between_start_and_playing_start_one_session_and_end_none(
    chat: LiveChat, world: World
) -> None:
    # Page runs before START, the offer, a run where the component reports neither, the offer again, playing.
    replay(chat, IDLE, IDLE, SIGNALLING, IDLE, SIGNALLING, IDLE, PLAYING, PLAYING, PLAYING)
    assert len(world.sessions) == 1
    assert world.sessions[0].end_reason is None and chat.live


def test_the_session_starts_with_the_offer_and_sets_up_while_the_browser_connects(chat: LiveChat, world: World) -> None:
    replay(chat, IDLE, SIGNALLING)
    assert len(world.sessions) == 1 and chat.live  # before the video plays (issue 15: START -> avatar)
    replay(chat, SIGNALLING, PLAYING, PLAYING)
    assert len(world.sessions) == 1 and world.sessions[0].end_reason is None


def test_a_start_given_up_before_the_video_played_ends_its_session(
    chat: LiveChat, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(controller, "ABANDONED_START_S", 0.1)
    replay(chat, SIGNALLING, IDLE)  # STOP (or a failed connection) before the first frame
    assert world.sessions[0].end_reason is None  # not yet: such a report can pass
    assert _eventually(lambda: world.sessions[0].end_reason is EndReason.STOPPED)
    replay(chat, IDLE, SIGNALLING)  # START again: a new session
    assert len(world.sessions) == 2 and world.sessions[1].end_reason is None


def test_a_neither_report_that_passes_while_connecting_ends_nothing(
    chat: LiveChat, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(controller, "ABANDONED_START_S", 0.2)
    replay(chat, SIGNALLING, IDLE)
    time.sleep(0.1)
    replay(chat, SIGNALLING, IDLE)  # the first report's wait ends while this one's still runs
    time.sleep(0.15)
    assert world.sessions[0].end_reason is None
    replay(chat, PLAYING)
    time.sleep(0.2)
    assert len(world.sessions) == 1 and world.sessions[0].end_reason is None


def test_stop_session_before_the_video_plays_stops_the_component_too(chat: LiveChat, world: World) -> None:
    replay(chat, SIGNALLING)
    chat.stop()
    assert world.sessions[0].end_reason is EndReason.STOPPED
    assert chat.desired_playing is False
    replay(chat, SIGNALLING, PLAYING)  # the component had not heard yet: still no second session
    assert len(world.sessions) == 1
    assert replay(chat, IDLE) == [PageAction.REDRAW]
    assert chat.desired_playing is None
    replay(chat, SIGNALLING)
    assert len(world.sessions) == 2


def test_a_session_outlives_component_reports_that_pass_while_it_connects(chat: LiveChat, world: World) -> None:
    replay(chat, PLAYING)
    world.sessions[0].state = SessionState.CONNECTED
    replay(chat, PLAYING, PLAYING)
    assert world.sessions[0].end_reason is None
    assert chat.connected


def test_the_components_stop_after_playing_is_the_users_stop(chat: LiveChat, world: World) -> None:
    replay(chat, SIGNALLING, PLAYING)
    world.sessions[0].state = SessionState.CONNECTED
    assert replay(chat, IDLE) == [PageAction.NONE]
    assert world.sessions[0].end_reason is EndReason.STOPPED
    # START again in the same tab: a new session.
    replay(chat, SIGNALLING, PLAYING)
    assert len(world.sessions) == 2 and world.sessions[1].end_reason is None


def test_stop_while_connecting_stops_the_session_at_once(chat: LiveChat, world: World) -> None:
    replay(chat, SIGNALLING, PLAYING)
    assert world.sessions[0].state is SessionState.CONNECTING
    replay(chat, IDLE)  # the user pressed STOP before the avatar's first frame
    assert world.sessions[0].end_reason is EndReason.STOPPED
    assert not chat.live


def test_stop_session_tells_the_component_to_stop_and_redraws_start_once_it_has(chat: LiveChat, world: World) -> None:
    replay(chat, SIGNALLING, PLAYING)
    world.sessions[0].state = SessionState.CONNECTED
    chat.stop()
    assert world.sessions[0].end_reason is EndReason.STOPPED
    assert chat.desired_playing is False
    # The component has not stopped yet: still playing, and that must not start a second session.
    replay(chat, PLAYING)
    assert len(world.sessions) == 1
    assert replay(chat, IDLE) == [PageAction.REDRAW]
    assert chat.desired_playing is None
    replay(chat, SIGNALLING, PLAYING)
    assert len(world.sessions) == 2


def test_a_playing_component_never_starts_a_second_session(chat: LiveChat, world: World) -> None:
    replay(chat, PLAYING, PLAYING, PLAYING)
    world.sessions[0].state = SessionState.FAILED
    replay(chat, PLAYING)
    assert len(world.sessions) == 1  # a failed session is replaced only by Reconnect


def test_reconnect_replaces_a_failed_session_on_the_playing_component(chat: LiveChat, world: World) -> None:
    replay(chat, PLAYING)
    world.sessions[0].state = SessionState.FAILED
    world.sessions[0].end_reason = EndReason.ERROR
    assert chat.can_reconnect
    chat.reconnect(SETUP)
    assert len(world.sessions) == 2 and chat.session is world.sessions[1]


def test_a_force_stopped_session_says_on_the_video_what_the_page_offers(chat: LiveChat, world: World) -> None:
    replay(chat, PLAYING)
    world.sessions[0].state = SessionState.DISCONNECTED  # stopped from the Sessions page: Reconnect is offered
    assert chat.can_reconnect
    shown = chat.frame().to_ndarray(format="rgb24")
    assert np.array_equal(shown, placeholder_frame("Session ended - press Reconnect below for a new one").to_ndarray())
    world.sessions[0].state = SessionState.CLOSED  # no Reconnect for a session the user stopped
    shown = chat.frame().to_ndarray(format="rgb24")
    assert np.array_equal(shown, placeholder_frame("Session ended - press STOP, then START for a new one").to_ndarray())


def test_reconnect_without_a_playing_component_does_nothing(chat: LiveChat, world: World) -> None:
    chat.reconnect(SETUP)
    assert world.sessions == []


def test_the_budget_refuses_and_an_override_starts_once_with_the_override_logged(chat: LiveChat, world: World) -> None:
    world.over_budget = True
    replay(chat, SIGNALLING)
    assert world.sessions == [] and chat.refused == "budget reached"  # refused with START's offer
    chat.override_budget(SETUP)  # clicked while the video still connects: it counts
    assert len(world.sessions) == 1 and chat.refused is None
    assert world.sessions[0].options.open_events[0][0] == "budget_override"
    assert world.overrides == [False, True]  # the override is one call, not a flag left on
    replay(chat, PLAYING)
    assert len(world.sessions) == 1


def test_a_message_too_long_for_one_task_is_not_sent(chat: LiveChat, world: World) -> None:
    replay(chat, PLAYING)
    world.sessions[0].state = SessionState.CONNECTED
    assert chat.message("x" * (MAX_SEGMENT_CHARS + 1)) is MessageOutcome.TOO_LONG
    assert chat.message("Hello") is MessageOutcome.SENT
    assert world.sessions[0].sent == ["Hello"]


def test_a_message_before_the_session_is_connected_is_refused(chat: LiveChat, world: World) -> None:
    replay(chat, PLAYING)
    with pytest.raises(RuntimeError):
        chat.message("Hello")


def test_interrupt_in_script_mode_keeps_the_scripts_place(chat: LiveChat, world: World) -> None:
    replay(chat, PLAYING)
    session = world.sessions[0]
    session.state = SessionState.CONNECTED
    chat.script_start("First line.\n\nSecond line.", 0.0)
    status = chat.script_status()
    assert status is not None and status.state in (RunnerState.RUNNING, RunnerState.FINISHED)
    chat.interrupt(script_mode=True)
    chat.interrupt(script_mode=False)
    chat.script_stop()
    assert chat.runner is not None and chat.runner.wait(5)
    assert session.interrupts >= 1


def test_an_unreadable_script_is_an_error_for_the_user(chat: LiveChat, world: World) -> None:
    replay(chat, PLAYING)
    world.sessions[0].state = SessionState.CONNECTED
    with pytest.raises(ValueError):
        chat.script_start("   ", 1.0)


def test_a_new_session_ends_the_scripts_runner_of_the_last_one(chat: LiveChat, world: World) -> None:
    replay(chat, PLAYING)
    world.sessions[0].state = SessionState.CONNECTED
    chat.script_start("One.\n\nTwo.\n\nThree.", 5.0)
    world.sessions[0].state = SessionState.FAILED
    chat.reconnect(SETUP)
    assert chat.script_status() is None  # the old runner is not shown as the new session's
    assert chat.runner is not None and chat.runner.wait(5)


def test_the_watcher_is_fed_only_through_the_controller(chat: LiveChat, world: World) -> None:
    chat.watched()  # no session: nothing to do, no error
    replay(chat, PLAYING)
    chat.watched()
    assert world.sessions[0].watched_calls == 1


def test_the_page_is_redrawn_until_a_whole_run_has_drawn_the_sessions_state(chat: LiveChat, world: World) -> None:
    chat.mark_drawn(chat.view())
    assert not chat.changed_since_drawn()
    replay(chat, PLAYING)
    assert chat.changed_since_drawn()
    view = chat.view()  # a run starts drawing the connecting session …
    world.sessions[0].state = SessionState.CONNECTED  # … the session connects while it draws …
    chat.mark_drawn(view)  # … and the run ends: what it drew is already old
    assert chat.changed_since_drawn()
    # A run cut short (a rerun came first) records nothing: the status panel keeps asking for a redraw.
    assert chat.changed_since_drawn()
    chat.mark_drawn(chat.view())
    assert not chat.changed_since_drawn()


def test_only_a_hosted_provider_gets_livekit_and_the_local_fallback(chat: LiveChat, world: World) -> None:
    replay(chat, PLAYING)
    assert world.sessions[0].options.request.version is None
    assert not chat.offers_local_fallback("local")
    chat.stop()
    replay(chat, IDLE)
    world.provider = "heygen"
    replay(chat, SIGNALLING, PLAYING)
    assert world.sessions[1].options.request.version == "v2"
    world.sessions[1].error, world.sessions[1].error_kind = "refused", "Unauthorized"
    assert chat.offers_local_fallback("heygen")


def test_closing_the_tab_releases_the_session(chat: LiveChat, world: World) -> None:
    replay(chat, PLAYING)
    chat.close()
    assert world.sessions[0].end_reason is EndReason.RELEASED


def test_a_page_run_still_going_when_the_tab_closed_starts_nothing(chat: LiveChat, world: World) -> None:
    """The run had read "playing" before the tab closed; it reaches the controller after the close."""
    chat.close()
    assert replay(chat, PLAYING) == [PageAction.NONE]
    chat.reconnect(SETUP)
    chat.override_budget(SETUP)
    assert world.sessions == [] and not chat.live


class FakeListener:
    def __init__(self, **callbacks: Any) -> None:
        self.callbacks = callbacks
        self.enabled = True
        self.partial: str | None = None
        self.closed = False

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled

    def close(self) -> None:
        self.closed = True


def test_the_microphone_counts_only_while_a_session_is_live(chat: LiveChat, world: World) -> None:
    listener = chat.voice_listener(FakeListener)
    assert chat.voice_listener(FakeListener) is listener  # one per tab
    chat.listen(True)
    assert listener.enabled is False  # nothing to talk to yet
    replay(chat, PLAYING)
    chat.listen(True)
    assert listener.enabled is True
    chat.listen(False)  # push-to-talk released
    assert listener.enabled is False
    chat.listen(True)
    chat.stop()
    assert listener.enabled is False
    chat.close()
    assert listener.closed


def test_speech_interrupts_a_speaking_avatar_only_with_barge_in_on(chat: LiveChat, world: World) -> None:
    replay(chat, PLAYING)
    session = world.sessions[0]
    session.state = SessionState.CONNECTED
    session.awaiting_answer = True  # an answer is on its way: the user has moved on
    chat.voice_options(barge_in=False)
    chat._barge_in()
    assert session.interrupts == 0
    chat.voice_options(barge_in=True)
    chat._barge_in()
    assert session.interrupts == 1


def _said(text: str) -> Transcript:
    return Transcript(text, started_at=1.0, ended_at=2.0, transcribed_at=2.5, audio_ms=1500.0)


def test_words_said_while_the_avatar_connects_are_sent_once_it_is_connected(chat: LiveChat, world: World) -> None:
    # The microphone counts from START (the page says "just speak"), but on a loaded machine the avatar can
    # take seconds to connect: a question finished before that must reach it, not be dropped.
    chat.voice_listener(FakeListener)
    replay(chat, PLAYING)
    session = world.sessions[0]
    assert session.state is SessionState.CONNECTING
    chat._on_transcript(_said("What is the Wi-Fi password?"))
    time.sleep(0.3)
    assert session.sent == []  # not to a session that cannot take it yet
    session.state = SessionState.CONNECTED
    deadline = time.monotonic() + 5
    while not session.sent and time.monotonic() < deadline:
        time.sleep(0.02)
    assert session.sent == ["What is the Wi-Fi password?"]
    assert chat.voice_error is None


def test_words_for_an_avatar_that_never_connects_are_reported_not_sent(chat: LiveChat, world: World) -> None:
    chat.voice_listener(FakeListener)
    replay(chat, PLAYING)
    session = world.sessions[0]
    chat._on_transcript(_said("Hello?"))
    time.sleep(0.2)
    session.state = SessionState.FAILED
    deadline = time.monotonic() + 5
    while chat.voice_error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert session.sent == []
    assert chat.voice_error is not None and "Hello?" in chat.voice_error


def test_a_concurrency_refusal_points_to_the_sessions_page(chat: LiveChat, world: World) -> None:
    replay(chat, PLAYING)
    assert not chat.too_many_sessions
    world.sessions[0].state = SessionState.FAILED
    world.sessions[0].error, world.sessions[0].error_kind = "Too many sessions", "ConcurrencyLimit"
    assert chat.too_many_sessions


@pytest.mark.parametrize("role", [Role.VIEWER, Role.NONE])
def test_only_an_operator_starts_a_session_a_viewers_start_creates_nothing(
    chat: LiveChat, world: World, role: Role
) -> None:
    world.identity = Identity("vera@example.com", role, signed_in=True)
    replay(chat, SIGNALLING, PLAYING, PLAYING)
    assert world.sessions == [] and world.overrides == []  # not even the budget was asked
    assert not chat.live
    assert chat.refused is not None and "may not start a session" in chat.refused
    world.over_budget = True
    chat.override_budget(SETUP)
    assert world.sessions == [] and "may not override the budget" in (chat.refused or "")

    world.identity = Identity("otto@example.com", Role.OPERATOR, signed_in=True)
    chat.reconnect(SETUP)  # the same playing component, now an operator: a session starts (past the budget)
    chat.override_budget(SETUP)
    assert len(world.sessions) == 1 and chat.live and chat.refused is None


# --- LiveAvatar ------------------------------------------------------------------------------------

OWN_AVATAR = "8f3b6c1e-1111-4222-8333-444455556666"
CONTEXT = "0c7a5d2e-7777-4888-9999-aaaabbbbcccc"


def la_setup(choice: LiveAvatarChoice, max_minutes: float = 0) -> ChatSetup:
    return ChatSetup(choice.avatar_id, choice.voice_id, "low", "VP8", "talk", "", max_minutes, liveavatar=choice)


def test_liveavatar_start_sends_the_page_choice_with_the_dashboard_cap_and_60_s_keep_alives(world: World) -> None:
    world.provider = "liveavatar"
    chat = LiveChat(world.services)
    choice = LiveAvatarChoice(
        OWN_AVATAR,
        context_id=CONTEXT,
        language="de",
        quality=VideoQuality.VERY_HIGH,
        interactivity=Interactivity.PUSH_TO_TALK,
    )
    chat.component(PLAYING, la_setup(choice, max_minutes=10))
    options = world.sessions[-1].options
    assert isinstance(options.request, LiveAvatarRequest)
    body = options.request.config.to_json()
    assert body["mode"] == "FULL" and body["avatar_id"] == OWN_AVATAR and not body["is_sandbox"]
    assert body["max_session_duration"] == 600  # the dashboard cap is LiveAvatar's own limit too
    assert body["avatar_persona"] == {"language": "de", "context_id": CONTEXT}
    assert body["video_settings"] == {"quality": "very_high", "encoding": "VP8"}
    assert body["interactivity_type"] == "PUSH_TO_TALK"
    assert options.keep_alive_every == 60.0
    assert options.request.quality == "high"  # the usage log's scale: 1080p is "high"


def test_liveavatar_sandbox_runs_wayne_for_at_most_a_minute(world: World) -> None:
    world.provider = "liveavatar"
    chat = LiveChat(world.services)
    chat.component(PLAYING, la_setup(LiveAvatarChoice(OWN_AVATAR, sandbox=True), max_minutes=10))
    request = world.sessions[-1].options.request
    assert isinstance(request, LiveAvatarRequest)
    body = request.config.to_json()
    assert body["avatar_id"] == SANDBOX_AVATAR_ID and body["is_sandbox"] and body["max_session_duration"] == 60


def test_liveavatar_lite_sends_no_persona(world: World) -> None:
    world.provider = "liveavatar"
    chat = LiveChat(world.services)
    chat.component(PLAYING, la_setup(LiveAvatarChoice(OWN_AVATAR, mode=SessionMode.LITE, context_id=CONTEXT)))
    request = world.sessions[-1].options.request
    assert isinstance(request, LiveAvatarRequest)
    body = request.config.to_json()
    assert body["mode"] == "LITE" and "avatar_persona" not in body and "max_session_duration" not in body


def test_full_without_a_context_is_warned_about_before_start() -> None:
    la, local = ProviderTraits.of("liveavatar"), ProviderTraits.of("local")
    silent = la_setup(LiveAvatarChoice(OWN_AVATAR))
    assert LiveChat.start_warning(silent, la) is not None and "silent" in (LiveChat.start_warning(silent, la) or "")
    assert LiveChat.start_warning(la_setup(LiveAvatarChoice(OWN_AVATAR, context_id=CONTEXT)), la) is None
    assert LiveChat.start_warning(la_setup(LiveAvatarChoice(OWN_AVATAR, mode=SessionMode.LITE)), la) is None
    assert LiveChat.start_warning(SETUP, local) is None


@pytest.mark.parametrize(
    ("kind", "fallback", "sessions_link"),
    [
        ("InsufficientCredits", True, False),
        ("ConcurrencyLimit", True, True),
        ("ProviderUnavailable", True, False),
        ("SandboxLimit", False, False),
        ("AvatarNotFound", False, False),
    ],
)
def test_liveavatar_refusals_offer_what_helps(world: World, kind: str, fallback: bool, sessions_link: bool) -> None:
    world.provider = "liveavatar"
    chat = LiveChat(world.services)
    chat.component(PLAYING, la_setup(LiveAvatarChoice(OWN_AVATAR, context_id=CONTEXT)))
    session = world.sessions[-1]
    session.state, session.error, session.error_kind = SessionState.FAILED, "refused", kind
    assert chat.offers_local_fallback("liveavatar") is fallback
    assert chat.too_many_sessions is sessions_link


def test_the_sandbox_countdown_runs_only_for_a_connected_sandbox_session(world: World) -> None:
    world.provider = "liveavatar"
    chat = LiveChat(world.services)
    chat.component(PLAYING, la_setup(LiveAvatarChoice(OWN_AVATAR, sandbox=True)))
    session = world.sessions[-1]
    assert chat.sandbox_seconds_left() is None  # still connecting
    session.state = SessionState.CONNECTED
    session.provider_session = NewSession("s", session_duration_limit=60)  # type: ignore[attr-defined]
    session.session_age_seconds = lambda: 21.5  # type: ignore[attr-defined]
    assert chat.sandbox_seconds_left() == 38.5
    session.session_age_seconds = lambda: 75.0  # type: ignore[attr-defined]
    assert chat.sandbox_seconds_left() == 0.0
    chat.stop()
    chat.component(IDLE, la_setup(LiveAvatarChoice(OWN_AVATAR, context_id=CONTEXT)))
    assert chat.sandbox_seconds_left() is None


def test_the_picture_is_still_only_once_a_session_is_over_or_refused(chat: LiveChat, world: World) -> None:
    assert not chat.picture_still  # before START: the placeholder must give way to the avatar at once
    replay(chat, PLAYING)
    assert not chat.picture_still  # connecting
    world.sessions[0].state = SessionState.CONNECTED
    assert not chat.picture_still
    world.sessions[0].state = SessionState.CLOSED  # e.g. the idle timeout, with the tab still open
    assert chat.picture_still
