"""Live chat's state machine: one controller per browser tab, plain code, every collaborator passed in.

Inputs are what the video component reports (``component``), what the user does (``stop``, ``interrupt``,
``reconnect``, ``override_budget``, ``message``, the script controls), and what the live session reports
(it runs its own provider/media life: connected, events, media lost, force-stopped elsewhere, cost guards,
watcher timeout). The page draws what the controller says and forwards events; it never sets its flags.

A session starts with the component's offer (START) and ends only on a user action, a cost guard, the
provider, or the watcher timeout. A state of the video component that can be transient (not playing and not
signalling before it first plays) never ends one: a component that was reported *playing* for this session and
is then reported stopped is the user's STOP (streamlit-webrtc's frontend sends ``playing: false`` only from its
stop path: the STOP button, ``desired_playing_state=False``, or its own peer connection closing); one that
offered and never played ends its session only after reporting neither for ``ABANDONED_START_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, NamedTuple

import av
import numpy as np

from lib.access import LOCAL_OPERATOR, Action, Identity, NotAllowed, require_operator
from lib.guards import Admission
from lib.heygen.client import StreamingClient
from lib.heygen.errors import HeyGenError
from lib.heygen.models import NewSessionRequest
from lib.live.liveavatar import KEEP_ALIVE_SECONDS, NO_CONTEXT_WARNING, LiveAvatarChoice, LiveAvatarRequest
from lib.live.media.passthrough import passthrough_enabled
from lib.live.media.playout import PlayoutBuffer
from lib.live.placeholder import placeholder_frame
from lib.live.session import LIVE_STATES, LiveSession, SessionOptions, SessionState
from lib.live.traits import ProviderTraits
from lib.scripts import MAX_SEGMENT_CHARS, TERMINAL_STATES, RunnerState, RunnerStatus, ScriptRunner, parse_script
from lib.usage.store import EndReason, EventKind, UsageLog
from lib.voice import Transcript, VoiceListener

log = logging.getLogger(__name__)

AUDIO_RATE = 48_000
AUDIO_FRAME_SAMPLES = 960  # the 20 ms frames streamlit-webrtc's audio source pulls
# Spoken words final before the avatar is connected wait for it: its connect timeout, plus this.
VOICE_CONNECT_SLACK_S = 5.0
VOICE_CONNECT_POLL_S = 0.05
# A component that offered (START) and reports neither offering nor playing for this long, having never played,
# was given up; shorter, it is one of the library's passing reports.
ABANDONED_START_S = 3.0

Quality = Literal["low", "medium", "high"]
Encoding = Literal["VP8", "H264"]

# The provider refused or was unreachable: these are worth offering the local engine for.
FALLBACK_ERRORS = {
    "ProviderUnavailable",
    "Unauthorized",
    "NoApiAccess",
    "Forbidden",
    "ConcurrencyLimit",
    "RateLimited",
    "ConnectionError",
    "InsufficientCredits",  # LiveAvatar: the balance cannot pay a minute
    None,
}


@dataclass(frozen=True)
class ChatSetup:
    """What the user chose for the next session."""

    avatar_id: str | None
    voice_id: str | None
    quality: Quality
    video_encoding: Encoding
    task_type: str
    knowledge_base: str
    max_minutes: float = 0.0  # 0: no dashboard cap
    liveavatar: LiveAvatarChoice | None = None  # the LiveAvatar set-up (mode, context, sandbox, …)

    def request(self, idle_timeout: int, traits: ProviderTraits) -> NewSessionRequest | LiveAvatarRequest:
        if traits.liveavatar:
            if self.liveavatar is None:
                raise ValueError("a LiveAvatar session needs its LiveAvatar set-up")
            # The dashboard cap is also LiveAvatar's own max_session_duration: the provider ends it even if we
            # could not (a crashed dashboard leaves no session billing beyond the cap).
            cap = round(self.max_minutes * 60) if self.max_minutes else None
            return LiveAvatarRequest(self.liveavatar.config(cap), self.liveavatar)
        return NewSessionRequest(
            avatar_id=self.avatar_id,
            voice_id=self.voice_id,
            quality=self.quality,
            video_encoding=self.video_encoding,
            knowledge_base=self.knowledge_base or None,
            activity_idle_timeout=idle_timeout,
            version="v2" if traits.livekit else None,
        )


@dataclass(frozen=True)
class Services:
    """Everything the controller needs from outside, looked up at each START (the provider can change)."""

    provider_name: str
    client: StreamingClient
    usage: UsageLog | None
    idle_timeout: int
    watcher_timeout: float
    admit: Callable[[str, bool], Admission]  # (provider name, override) -> may a new session start?
    # Creates the live session (provider session + media link); the default is the real one.
    new_session: Callable[..., LiveSession] = LiveSession
    # Who presses START: only an operator may start a session (a session spends credits). The default is the
    # local operator of an app without sign-in.
    identity: Identity = LOCAL_OPERATOR


SessionView = tuple[SessionState, str | None] | None  # a session's state and error, as a page draws them


class ComponentState(NamedTuple):
    """What the video component last reported (``ctx.state`` of streamlit-webrtc)."""

    playing: bool
    signalling: bool


class PageAction(StrEnum):
    NONE = "none"
    REDRAW = "redraw"  # the page must rerun to draw the component's START again


class MessageOutcome(StrEnum):
    SENT = "sent"
    TOO_LONG = "too_long"  # longer than one task holds: hand it to Script mode


class LiveChat:
    """Lives as long as the browser tab's Streamlit session; stops its avatar when that ends."""

    def __init__(self, services: Callable[[], Services]) -> None:
        self._services = services
        self._lock = threading.Lock()
        self.session: LiveSession | None = None
        self.setup: ChatSetup | None = None
        self.traits: ProviderTraits | None = None
        # The component was reported playing for the current claim: its next "stopped" is the user's STOP.
        self._component_playing = False
        self._claimed = False  # an offering or playing component has its session: never start a second one
        self._offer_gone_at: float | None = None  # claimed, never played, and reported neither since then
        self._stop_asked = False  # Stop session: the component is told to stop until it reports stopped
        # The tab is gone: a page run still under way (the tab closed mid-run) must not start a session that
        # nobody would ever stop.
        self._closed = False
        self._drawn: SessionView = None
        self.refused: str | None = None  # why the budget guard refused the last start
        self.listener: VoiceListener | None = None
        self.runner: ScriptRunner | None = None  # Script mode: delivers a script on self.session
        self.barge_in = True
        self.voice_error: str | None = None
        self.last_voice_end: float | None = None
        # Voice turns call the provider (blocking HTTP): one at a time, off the listener's threads.
        self._voice_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voice-turns")
        # The listening pose on its own thread: a pose call never delays the words that follow it.
        self._pose_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voice-pose")
        self._posed: LiveSession | None = None  # the session told "listening" (pose thread only)
        self.playout = PlayoutBuffer(AUDIO_RATE)

    # --- what the page reads ------------------------------------------------------------------
    @property
    def live(self) -> bool:
        """A session is running or being set up: the setup is locked."""
        return self.session is not None and self.session.live

    @property
    def picture_still(self) -> bool:
        """The video shows a notice that stays until the user acts (the session is over, failed or was refused):
        the browser needs it now and then, not 25 times a second. Not before a session exists: START's
        placeholder must give way to the avatar's first frame at once."""
        session = self.session
        if session is None:
            return self.refused is not None
        return session.state not in LIVE_STATES

    @property
    def closed(self) -> bool:
        """The browser session ended (its tab is gone): nothing is shown to it any more."""
        return self._closed

    @property
    def connected(self) -> bool:
        return self.session is not None and self.session.state is SessionState.CONNECTED

    @property
    def desired_playing(self) -> bool | None:
        """What the video component is told: False after Stop session, until it reports stopped."""
        return False if self._stop_asked else None

    @property
    def can_reconnect(self) -> bool:
        return self.session is not None and self.session.state in (SessionState.FAILED, SessionState.DISCONNECTED)

    @property
    def too_many_sessions(self) -> bool:
        """The provider refused for its concurrency limit: stopping other sessions (Sessions page) helps."""
        return self.session is not None and self.session.error_kind == "ConcurrencyLimit"

    @staticmethod
    def start_warning(setup: ChatSetup, traits: ProviderTraits) -> str | None:
        """What the page says before START about a set-up that works but surprises (FULL without a context)."""
        choice = setup.liveavatar
        if traits.liveavatar and choice is not None and choice.silent:
            return NO_CONTEXT_WARNING
        return None

    def sandbox_seconds_left(self) -> float | None:
        """The sandbox minute's countdown while a sandbox session is connected (None otherwise)."""
        session = self.session
        request = session.options.request if session is not None else None
        if session is None or not isinstance(request, LiveAvatarRequest) or not request.choice.sandbox:
            return None
        if session.state is not SessionState.CONNECTED or session.provider_session is None:
            return None
        limit = session.provider_session.session_duration_limit or request.config.max_session_duration
        return max(0.0, (limit or 0) - session.session_age_seconds())

    def offers_local_fallback(self, provider_name: str) -> bool:
        """Offer "Continue on the local engine": a hosted provider refused or could not be reached."""
        if not ProviderTraits.of(provider_name).hosted:
            return False
        session = self.session
        return session is None or (session.error is not None and session.error_kind in FALLBACK_ERRORS)

    def view(self) -> SessionView:
        """What the page's state-dependent parts (buttons, chat box) are drawn from."""
        session = self.session
        return (session.state, session.error) if session is not None else None

    def mark_drawn(self, view: SessionView) -> None:
        """The page got through a whole run drawn from ``view``."""
        self._drawn = view

    def changed_since_drawn(self) -> bool:
        """The session moved on since the last whole run of the page: it must be redrawn."""
        return self.view() != self._drawn

    # --- the video component ------------------------------------------------------------------
    def component(self, state: ComponentState, setup: ChatSetup) -> PageAction:
        """Forwarded on every run of the page with what the component reports."""
        if state.playing or state.signalling:
            # The session starts with the offer (START), not once the video plays: it sets up while the browser
            # connects, so the avatar is ready when the connection is (issue 15: START -> avatar).
            self._offer_gone_at = None
            if state.playing:
                self._component_playing = True
            if not self._claimed:
                self._claimed = True
                self._start(setup, override=False)
            return PageAction.NONE
        if not self._component_playing and not (self._claimed and self._stop_asked):
            if self._claimed:
                # Offered, never played, now neither: a report that passes, or START given up before the video
                # came up (its STOP, a failed connection). Only the second lasts.
                self._end_claim_unless_offered_again()
            return PageAction.NONE
        # Reported playing (or told to stop), now stopped: the user's STOP (or Stop session, below).
        self._component_playing = False
        self._claimed = False
        self._release(EndReason.STOPPED)
        if self._stop_asked:
            self._stop_asked = False
            return PageAction.REDRAW  # the component hides START while told to stop: draw it again
        return PageAction.NONE

    # --- user actions -------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop session: end the session now, and have the video component stop too."""
        self._release(EndReason.STOPPED)
        if self._claimed:
            self._stop_asked = True

    def reconnect(self, setup: ChatSetup) -> None:
        """A new session on the playing component (the last one failed or could not reconnect)."""
        if self._component_playing:
            self._start(setup, override=False)

    def override_budget(self, setup: ChatSetup) -> None:
        """Start once despite the monthly budget (logged on the new session); the refusal came with START's
        offer, so the video may still be connecting."""
        if self._claimed:
            self._start(setup, override=True)

    def interrupt(self, script_mode: bool) -> None:
        """Cut the avatar off. In Script mode the runner keeps its place: Resume says this segment again."""
        session = self._require_connected()
        runner = self._runner_of(session)
        if script_mode and runner is not None:
            runner.interrupt()
        else:
            session.interrupt()

    def message(self, text: str) -> MessageOutcome:
        """A typed message: sent as a task, or too long for one (the page hands it to Script mode)."""
        if len(text) > MAX_SEGMENT_CHARS:
            return MessageOutcome.TOO_LONG
        session = self._require_connected()
        session.send(text, self.setup.task_type if self.setup else "talk")
        return MessageOutcome.SENT

    def watched(self) -> None:
        """The page shows the session right now (keep-alives stop when nobody does)."""
        if self.session is not None:
            self.session.watched()

    def release(self, reason: EndReason) -> None:
        """End the session for a reason outside Live chat (left the page, switched provider)."""
        self._release(reason)

    def close(self) -> None:
        """The browser session ended: stop the avatar and the microphone listener; start nothing after."""
        with self._lock:
            self._closed = True
        self._release(EndReason.RELEASED)
        if self.listener is not None:
            self.listener.close()
        self._voice_pool.shutdown(wait=False, cancel_futures=True)
        self._pose_pool.shutdown(wait=False, cancel_futures=True)

    # --- script mode --------------------------------------------------------------------------
    def script_status(self) -> RunnerStatus | None:
        """The runner of the current session (a runner of an earlier session is not shown as current)."""
        runner = self._runner_of(self.session)
        return runner.status() if runner is not None else None

    def script_start(self, text: str, pause_s: float) -> None:
        """Start (or Resume a paused) script; raises ValueError when the script cannot be read."""
        runner = self._runner_of(self.session)
        if runner is not None and runner.state is RunnerState.PAUSED:
            runner.resume()
            return
        session = self._require_connected()
        segments = parse_script(text)
        self.runner = ScriptRunner(session, segments, default_pause_s=pause_s)
        self.runner.start()

    def script_pause(self) -> None:
        if (runner := self._runner_of(self.session)) is not None:
            runner.pause()

    def script_skip(self) -> None:
        if (runner := self._runner_of(self.session)) is not None:
            runner.skip()

    def script_restart(self) -> None:
        if (runner := self._runner_of(self.session)) is not None and self.connected:
            runner.restart()

    def script_stop(self) -> None:
        if (runner := self._runner_of(self.session)) is not None and runner.state not in TERMINAL_STATES:
            runner.stop()

    # --- voice input --------------------------------------------------------------------------
    def voice_listener(self, make: Callable[..., VoiceListener]) -> VoiceListener:
        """The microphone listener of this tab, created on first use by ``make`` (the page's STT model)."""
        if self.listener is None:
            self.listener = make(
                on_transcript=self._on_transcript,
                on_speech_start=self._on_speech_start,
                on_speech_end=self._on_speech_end,
                interim=True,
            )
        return self.listener

    def voice_options(self, *, barge_in: bool) -> None:
        """The user's voice settings: does speaking interrupt the avatar."""
        self.barge_in = barge_in

    def listen(self, talking: bool) -> None:
        """The microphone counts while a session is live and the user talks (always, hands-free)."""
        if self.listener is not None:
            self.listener.set_enabled(talking and self.live)

    def hearing(self) -> str | None:
        """What the microphone user is saying right now, before it is final (None when nobody speaks)."""
        return self.listener.partial if self.listener is not None and self.listener.enabled else None

    def _on_transcript(self, transcript: Transcript) -> None:
        self._voice_pool.submit(self._voice_turn, transcript)

    def _on_speech_start(self) -> None:
        self._voice_pool.submit(self._barge_in)
        self._pose_pool.submit(self._listening, True)

    def _on_speech_end(self) -> None:
        self._pose_pool.submit(self._listening, False)

    def _listening(self, on: bool) -> None:
        """The avatar's listening pose while the user speaks (on LiveAvatar push-to-talk, also the talk window).
        A pose that cannot be set is logged, not shown: the words still go through."""
        session = self.session
        if session is None or session.state is not SessionState.CONNECTED or session.session_id is None:
            self._posed = None
            return
        if not on and self._posed is not session:
            return  # only where "listening" was said: a push-to-talk stop without its start is refused
        self._posed = session if on else None
        try:
            set_pose = session.client.start_listening if on else session.client.stop_listening
            set_pose(session.session_id)
        except (HeyGenError, RuntimeError) as exc:
            log.warning("the listening pose could not be %s: %s", "set" if on else "cleared", exc)

    def _voice_turn(self, transcript: Transcript) -> None:
        session = self._connected_for_voice(transcript)
        if session is None or self.setup is None:
            return
        try:
            session.send(transcript.text, self.setup.task_type)
        except (HeyGenError, RuntimeError) as exc:
            self.voice_error = str(exc)
            return
        self.last_voice_end = transcript.ended_at
        session.record(
            EventKind.VOICE_TURN,
            {
                "chars": len(transcript.text),
                "audio_ms": round(transcript.audio_ms),
                "stt_latency_ms": round(transcript.latency_ms),
            },
        )

    def _connected_for_voice(self, transcript: Transcript) -> LiveSession | None:
        """The session to send spoken words to. The microphone counts from START, so words can be final while
        the avatar is still connecting (seconds on a loaded machine): they wait for it, on this voice-turn
        thread, as long as its connection may take. Words no session can take are reported, never dropped
        silently."""
        session = self.session
        if session is None:
            return None
        deadline = time.monotonic() + session.options.connect_timeout + VOICE_CONNECT_SLACK_S
        while session.state is SessionState.CONNECTING and session is self.session and time.monotonic() < deadline:
            time.sleep(VOICE_CONNECT_POLL_S)
        if session is self.session and session.state is SessionState.CONNECTED:
            return session
        if session is self.session and session.state is not SessionState.CLOSED:  # not replaced nor stopped
            self.voice_error = f"“{transcript.text}” was not sent: the avatar is not connected ({session.state})."
        log.warning("a voice turn was not sent: the session is %s", session.state)
        return None

    def _barge_in(self) -> None:
        session = self.session
        if session is None or not self.barge_in or session.state is not SessionState.CONNECTED:
            return
        # Also while an answer is still on its way: the user has moved on, drop it before it starts.
        if session.speaking or session.awaiting_answer:
            try:
                session.interrupt()
            except (HeyGenError, RuntimeError) as exc:
                self.voice_error = str(exc)

    # --- media to the browser -----------------------------------------------------------------
    def audio_frame(self, pts: int, time_base: object) -> av.AudioFrame:
        """The browser's next 20 ms of the avatar's voice (silence when there is no session)."""
        samples = self.playout.read(AUDIO_FRAME_SAMPLES)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        return frame

    def frame(self) -> av.VideoFrame:
        session = self.session
        if session is None:
            if self.refused:
                return placeholder_frame("Monthly budget reached - see the message on the page")
            return placeholder_frame("Press START to bring the avatar in")
        # The sound waits in the playout buffer (and, on direct WebRTC, in aiortc's jitter buffer) while the
        # picture would go out at once: the browser would show the lips up to 0.2 s before their sound.
        latest = session.latest_frame(behind_s=self.playout.stats.hold_ms / 1000 + session.audio_lag_s)
        if session.state is SessionState.CONNECTED and latest is not None:
            return latest
        if session.state is SessionState.CONNECTING:
            return placeholder_frame("Connecting to the avatar…")
        if session.state is SessionState.RECONNECTING:
            return placeholder_frame("Connection lost - reconnecting…")
        if session.state is SessionState.FAILED:
            return placeholder_frame("The avatar could not start - see the message on the page")
        if self.can_reconnect:  # the page offers Reconnect and its message says so: one instruction, not two
            return placeholder_frame("Session ended - press Reconnect below for a new one")
        return placeholder_frame("Session ended - press STOP, then START for a new one")

    # --- inside -------------------------------------------------------------------------------
    def _start(self, setup: ChatSetup, *, override: bool) -> None:
        """A new session, unless the monthly budget guard refuses it (then ``refused`` says why)."""
        self._release(EndReason.REPLACED)
        services = self._services()
        try:
            require_operator(services.identity, Action.BUDGET_OVERRIDE if override else Action.START_SESSION)
            admission = services.admit(services.provider_name, override)
        except NotAllowed as exc:  # nothing was created: the page shows why, as for a budget refusal
            self.refused = str(exc)
            return
        if not admission.allowed:
            self.refused = admission.message
            return
        self.refused = None
        traits = ProviderTraits.of(services.provider_name)
        options = SessionOptions(
            request=setup.request(services.idle_timeout, traits),
            # LiveAvatar's idle timeout is 5 min: one keep-alive a minute (only while a page watches).
            keep_alive_every=KEEP_ALIVE_SECONDS if traits.liveavatar else SessionOptions.keep_alive_every,
            watcher_timeout=services.watcher_timeout,
            max_duration=setup.max_minutes * 60 if setup.max_minutes else None,
            open_events=admission.open_events,
            passthrough=passthrough_enabled(),
        )
        with self._lock:
            if self._closed:
                return
            self.setup = setup
            self.traits = traits
            self.playout = PlayoutBuffer(AUDIO_RATE)  # fresh figures for the status panel, too
            self.session = services.new_session(
                services.client,
                services.provider_name,
                services.usage,
                options,
                audio_out=self.playout.push,
                audio_clear=self.playout.clear,
            )

    def _end_claim_unless_offered_again(self) -> None:
        if self._offer_gone_at is not None:
            return
        self._offer_gone_at = time.monotonic()
        timer = threading.Timer(ABANDONED_START_S, self._end_abandoned_claim, args=(self.session,))
        timer.daemon = True
        timer.start()

    def _end_abandoned_claim(self, claimed: LiveSession | None) -> None:
        with self._lock:
            abandoned = (
                self._claimed
                and not self._component_playing
                and self._offer_gone_at is not None
                and time.monotonic() - self._offer_gone_at >= ABANDONED_START_S * 0.99  # else a later timer's
                and self.session is claimed
            )
            if abandoned:
                self._claimed = False
                self._offer_gone_at = None
        if abandoned:
            log.info("START was given up before the video played: its session ends")
            self._release(EndReason.STOPPED)

    def _release(self, reason: EndReason) -> None:
        if self.runner is not None:
            self.runner.stop()
        with self._lock:
            session = self.session
        if session is not None and session.end_reason is None:
            session.stop(reason)
        if self.listener is not None:
            self.listener.set_enabled(False)

    def _require_connected(self) -> LiveSession:
        session = self.session
        if session is None or session.state is not SessionState.CONNECTED:
            raise RuntimeError("The avatar session is not connected.")
        return session

    def _runner_of(self, session: LiveSession | None) -> ScriptRunner | None:
        runner = self.runner
        return runner if runner is not None and session is not None and runner.session is session else None
