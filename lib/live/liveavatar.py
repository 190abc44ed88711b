"""Live chat on LiveAvatar: the set-up a page chooses, and a client that lets ``LiveSession`` drive it unchanged.

:class:`LiveAvatarStreaming` is shaped like the HeyGen-style :class:`StreamingClient` (``new``, ``start``,
``task``, ``interrupt``, ``keep_alive``, ``stop``) so :class:`~lib.live.session.LiveSession` runs a LiveAvatar
session with the same life (watcher, caps, reconnect, usage log). Underneath:

* **START**: the session token is minted server side with the API key (``POST /v1/sessions/token``), then
  ``POST /v1/sessions/start`` with that Bearer token. The key and the tokens stay in this process: the browser
  only ever gets the relayed media from streamlit-webrtc.
* **Media.** Against LiveAvatar the answer names a LiveKit room: ``LiveSession`` joins it with the ``livekit``
  package and shows participant ``heygen``'s video and audio (:data:`AVATAR_PARTICIPANT`). Against the engine's
  twin no LiveKit server runs, so ``/start`` adds the documented ``local`` extension: a direct-WebRTC offer of
  the engine session that plays the avatar, answered like the local engine's own sessions.
* **Commands.** FULL on LiveKit: :mod:`lib.liveavatar.events` commands on data topic ``agent-control``
  (``avatar.speak_text`` for "the avatar repeats it", ``avatar.speak_response`` for "the avatar answers",
  ``avatar.interrupt``, ``avatar.start_listening``/``stop_listening`` while the user speaks, wrapped in
  ``user.start_push_to_talk``/``stop_push_to_talk`` when the session's interactivity is push-to-talk). On the
  twin the same intents go through the engine's task API with the ``local`` token, which is scoped to that one
  engine session: speak_text is a ``repeat`` task, speak_response a ``talk`` task (the engine's responder
  answers from the chosen context's prompt), interrupt is ``/v1/streaming.interrupt``, the listening pose
  ``/v1/streaming.start_listening``/``stop_listening`` (no data channel offline, so no push-to-talk window);
  its events come back on the WebRTC data channel.
* **LITE**: the speech is ours (:mod:`lib.live.lite_voice`): our responder answers, our offline Piper voice
  speaks, and the PCM goes over the session's ``ws_url`` socket; its speaking events drive the status. This is
  the same against LiveAvatar and the twin (the twin implements the socket and lip-syncs the audio); the
  listening pose is the socket's ``agent.start_listening``/``stop_listening``.
* **Events** from ``agent-response`` are turned into the session's own vocabulary by :class:`AgentEvents`
  (speaking state, avatar words, the user's words, and ``session.stopped`` with its ``end_reason``).
* **Keep-alive and stop**: ``POST /v1/sessions/keep-alive`` (every 60 s, see :data:`KEEP_ALIVE_SECONDS`) and
  ``POST /v1/sessions/stop`` with reason ``USER_CLOSED`` for every way a session ends here.

Errors leave as :class:`~lib.heygen.errors.HeyGenError` subclasses (what ``LiveSession`` and the controller
catch); the class name is the kind a page acts on (``InsufficientCredits``, ``ConcurrencyLimit``,
``SandboxLimit``, ``AvatarNotFound``, ``ProviderUnavailable``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from lib.engine.responder import LlmConfig, Responder
from lib.heygen import errors as hg
from lib.heygen.client import EMPTY_MESSAGE, StreamingClient
from lib.heygen.models import Avatar as HgAvatar
from lib.heygen.models import NewSession, TaskResult
from lib.heygen.models import Voice as HgVoice
from lib.live.lite_voice import EventSink, LiteVoice, shared_voice_bank
from lib.live.media import loop as media_loop
from lib.liveavatar import errors as la
from lib.liveavatar import events as la_events
from lib.liveavatar.client import LiveAvatarClient
from lib.liveavatar.models import (
    SANDBOX_AVATAR_ID,
    SANDBOX_MAX_DURATION,
    ContextSummary,
    FullSessionConfig,
    Interactivity,
    LiteSessionConfig,
    SessionConfig,
    SessionEndReason,
    SessionMode,
    StartedSession,
    VideoEncoding,
    VideoQuality,
)

log = logging.getLogger("avatar_ops.live")

AVATAR_PARTICIPANT = "heygen"  # the room participant whose tracks are the avatar (LiveAvatar's SDK)
KEEP_ALIVE_SECONDS = 60.0
QUALITY_LABELS = {
    VideoQuality.VERY_HIGH: "Very high · 1080p",
    VideoQuality.HIGH: "High · 720p",
    VideoQuality.MEDIUM: "Medium · 480p",
    VideoQuality.LOW: "Low · 360p",
}
# What the usage log's quality column holds (the dashboard's three-step scale).
LOG_QUALITY = {
    VideoQuality.VERY_HIGH: "high",
    VideoQuality.HIGH: "medium",
    VideoQuality.MEDIUM: "low",
    VideoQuality.LOW: "low",
}
SANDBOX_NOTE = (
    f"Sandbox: free, only the avatar Wayne, and LiveAvatar ends it after about {SANDBOX_MAX_DURATION} seconds."
)
NO_CONTEXT_WARNING = (
    "FULL without a context is a silent avatar: it repeats what you type but never answers, and LiveAvatar "
    "reports no error. Pick a context or create one below."
)


# --- errors --------------------------------------------------------------------------------------


class InsufficientCredits(hg.HeyGenError):
    """LiveAvatar refused the start: the balance cannot pay one minute of this mode."""


class SandboxLimit(hg.HeyGenError):
    """A sandbox rule was broken: only Wayne, at most about a minute, one at a time."""


def _translate(exc: la.LiveAvatarError, credits: Callable[[], Decimal] | None = None) -> hg.HeyGenError:
    message = str(exc)
    if isinstance(exc, la.InsufficientCredits):
        if credits is not None:
            with contextlib.suppress(la.LiveAvatarError):
                message = f"{message.rstrip('.')}. Credits left: {credits():g}."
        return InsufficientCredits(exc.status, message, user_message=message)
    if isinstance(exc, la.ConcurrencyLimit):
        return hg.ConcurrencyLimit(exc.status, message, user_message=message)
    if isinstance(exc, la.SessionNotFound):
        return hg.SessionNotFound(exc.status, message, user_message=message)
    if isinstance(exc, la.NotFound):
        return hg.AvatarNotFound(exc.status, message, user_message=message)
    if isinstance(exc, la.Unauthorized):
        return hg.Unauthorized(exc.status, message, user_message=message)
    if isinstance(exc, la.ProviderUnavailable | la.UnexpectedResponse):
        return hg.ProviderUnavailable(exc.status, message, user_message=message)
    if "sandbox" in message.lower():
        return SandboxLimit(exc.status, message, user_message=message)
    if isinstance(exc, la.ValidationFailed):
        return hg.InvalidParameter(exc.status, message, user_message=message)
    return hg.HeyGenError(exc.status, message, user_message=message)


# --- the page's set-up ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveAvatarChoice:
    """What the user chose on the Live chat page for a LiveAvatar session."""

    avatar_id: str
    mode: SessionMode = SessionMode.FULL
    sandbox: bool = False
    voice_id: str | None = None
    context_id: str | None = None
    language: str = "en"
    quality: VideoQuality = VideoQuality.HIGH
    encoding: VideoEncoding = VideoEncoding.VP8
    interactivity: Interactivity = Interactivity.CONVERSATIONAL

    @property
    def silent(self) -> bool:
        """FULL with no context: LiveAvatar's "restricted mode", an avatar that never answers."""
        return self.mode is SessionMode.FULL and self.context_id is None

    def config(self, max_duration_s: int | None) -> SessionConfig:
        """The token body; ``max_duration_s`` is the dashboard cap (a sandbox allows at most a minute)."""
        avatar = SANDBOX_AVATAR_ID if self.sandbox else self.avatar_id
        if self.sandbox:
            max_duration_s = min(max_duration_s or SANDBOX_MAX_DURATION, SANDBOX_MAX_DURATION)
        common: dict[str, Any] = {
            "avatar_id": avatar,
            "is_sandbox": self.sandbox,
            "video_quality": self.quality,
            "video_encoding": self.encoding,
            "max_session_duration": max_duration_s,
        }
        if self.mode is SessionMode.LITE:
            return LiteSessionConfig(**common)
        return FullSessionConfig(
            **common,
            voice_id=self.voice_id,
            context_id=self.context_id,
            language=self.language,
            interactivity_type=self.interactivity,
        )


@dataclass(frozen=True)
class LiveAvatarRequest:
    """What ``LiveSession`` hands to :meth:`LiveAvatarStreaming.new`; the other fields feed the usage log."""

    config: SessionConfig
    choice: LiveAvatarChoice

    @property
    def avatar_id(self) -> str:
        return self.config.avatar_id

    avatar_name: str | None = None

    @property
    def voice_id(self) -> str | None:
        return self.choice.voice_id

    @property
    def quality(self) -> str:
        return LOG_QUALITY[self.choice.quality]

    @property
    def video_encoding(self) -> str:
        return str(self.choice.encoding)

    @property
    def activity_idle_timeout(self) -> None:
        """LiveAvatar's idle timeout is fixed (5 min) and our keep-alives hold it off while a page watches."""
        return None


# --- agent-response events -----------------------------------------------------------------------


class AgentEvents:
    """LiveAvatar's ``agent-response`` events → the live session's events (HeyGen's names, plus three).

    ``avatar.speak_started``/``ended`` → ``avatar_start_talking``/``avatar_stop_talking`` with the command's
    ``source_event_id`` as ``task_id``; ``avatar.transcription.chunk`` → ``avatar_talking_message``; the final
    ``avatar.transcription`` → ``avatar_transcript`` (the whole text: it replaces the chunks);
    ``user.transcription`` → ``user_transcript``; ``session.stopped`` → ``provider_stopped`` with ``end_reason``;
    a refused push-to-talk window is logged.
    """

    def __init__(self) -> None:
        self._task: str | None = None  # the command the avatar is speaking for

    def translate(self, packet: dict[str, Any]) -> list[dict[str, Any]]:
        if packet.get("topic") == la_events.AGENT_CONTROL_TOPIC:
            return []  # a command, not an event
        try:
            event = la_events.parse_event(packet)
        except la_events.MalformedEvent:
            return []
        if isinstance(event, la_events.SpeakStarted) and event.speaker is la_events.Speaker.AVATAR:
            self._task = event.source_event_id or self._task
            return [{"type": "avatar_start_talking", "task_id": self._task}]
        if isinstance(event, la_events.SpeakEnded) and event.speaker is la_events.Speaker.AVATAR:
            task, self._task = event.source_event_id or self._task, None
            return [{"type": "avatar_stop_talking", "task_id": task}]
        if isinstance(event, la_events.Transcription):
            if event.speaker is la_events.Speaker.USER:
                return [] if event.partial else [{"type": "user_transcript", "message": event.text}]
            kind = "avatar_talking_message" if event.partial else "avatar_transcript"
            return [{"type": kind, "message": event.text, "task_id": event.source_event_id or self._task}]
        if isinstance(event, la_events.SessionStopped):
            return [{"type": "provider_stopped", "end_reason": str(event.end_reason)}]
        if isinstance(event, la_events.PushToTalkAck) and not event.ok:
            # The words still arrive (our own recognition); only what LiveAvatar itself hears is affected.
            log.warning("LiveAvatar refused to %s the push-to-talk window", "open" if event.started else "close")
        return []


# --- the client ------------------------------------------------------------------------------------


@dataclass
class _Live:
    """One started LiveAvatar session as this process drives it."""

    started: StartedSession = field(repr=False)
    mode: SessionMode
    push_to_talk: bool = False  # FULL with interactivity PUSH_TO_TALK: LiveAvatar hears only inside the window
    engine: StreamingClient | None = None  # the twin's engine session (local extension)
    engine_session_id: str | None = None
    room: Any = None  # the LiveKitConnection LiveSession joined (real service)
    voice: LiteVoice | None = None  # LITE: our own speech over ws_url
    events: EventSink | None = None  # the live session's event sink (LITE's speaking events go there)

    def emit(self, event: dict[str, Any]) -> None:
        if self.events is not None:
            self.events(event)


class LiveAvatarStreaming(StreamingClient):
    """LiveAvatar behind the streaming-client shape ``LiveSession`` drives; one per provider, many sessions."""

    def __init__(self, client: LiveAvatarClient, *, command_timeout: float = 5.0, llm: LlmConfig | None = None) -> None:
        super().__init__(client.base_url, provider_label="LiveAvatar")
        self.la = client
        self.llm = llm  # LITE's answers: the configured LLM, else retrieval from the context's prompt
        self.command_timeout = command_timeout
        self._live: dict[str, _Live] = {}
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return self.la.endpoint

    def __repr__(self) -> str:
        return f"LiveAvatarStreaming({self.la.base_url!r})"

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except la.LiveAvatarError as exc:
            raise _translate(exc, self.la.credits_left) from None

    # --- catalogue (the page's set-up) -------------------------------------------------------
    def avatars(self) -> list[HgAvatar]:
        """The account's own avatars, then the public ones (each with its preview)."""
        with self._errors():
            found = [*self.la.avatars(), *self.la.public_avatars()]
        return [
            HgAvatar(
                avatar_id=a.id,
                pose_name=f"{a.name} (public)" if a.is_public else a.name,
                preview_url=a.preview_url,
                default_voice=a.default_voice_id,
                is_public=a.is_public,
                status=a.status,
            )
            for a in found
        ]

    def voices(self) -> list[HgVoice]:
        with self._errors():
            found = self.la.voices()
        return [HgVoice(v.id, v.name, v.language, v.gender, None) for v in found]

    def contexts(self) -> list[ContextSummary]:
        with self._errors():
            return self.la.contexts()

    def languages(self) -> list[tuple[str, str]]:
        """(code, name) of the languages LiveAvatar's avatars speak."""
        with self._errors():
            return [(lang.code, lang.name) for lang in self.la.languages()]

    def create_context(self, name: str, prompt: str, opening_text: str) -> str:
        with self._errors():
            return self.la.create_context(name, prompt, opening_text).id

    # --- one session ---------------------------------------------------------------------------
    def new(self, request: Any = None) -> NewSession:
        if not isinstance(request, LiveAvatarRequest):
            raise hg.InvalidParameter(None, "", user_message="Choose a LiveAvatar avatar before pressing START.")
        return self.open(request)

    def open(self, request: LiveAvatarRequest) -> NewSession:
        """Mint the token with the API key, start the session with it; the media to join comes back."""
        with self._errors():
            token = self.la.create_session_token(request.config)
            try:
                started = self.la.start_session(token)
            except la.LiveAvatarError:
                # A minted token holds nothing billable, but discard it so it can never be started later.
                with contextlib.suppress(la.LiveAvatarError):
                    self.la.stop_session(token.session_id)
                raise
        push_to_talk = request.config.mode is SessionMode.FULL and (
            request.choice.interactivity is Interactivity.PUSH_TO_TALK
        )
        live = _Live(started, request.config.mode, push_to_talk=push_to_talk)
        local = started.local_media
        if local is not None:
            base, scoped = str(local["base_url"]), str(local["token"])  # the token opens this engine session only
            live.engine = StreamingClient(base, token=scoped, provider_label="LiveAvatar")
            live.engine_session_id = str(local["engine_session_id"])
        with self._lock:
            self._live[started.session_id] = live
        if request.config.mode is SessionMode.LITE:
            try:
                live.voice = self._lite_voice(started, request.choice, live)
            except Exception:
                self.stop(started.session_id)  # no voice, no session: never leave it billing
                raise
        if local is not None:
            return NewSession(
                session_id=started.session_id,
                sdp=dict(local["offer"]),
                session_duration_limit=started.max_session_duration,
            )
        return NewSession(
            session_id=started.session_id,
            url=started.livekit_url,
            access_token=started.livekit_client_token,
            session_duration_limit=started.max_session_duration,
        )

    def _lite_voice(self, started: StartedSession, choice: LiveAvatarChoice, live: _Live) -> LiteVoice:
        if not started.ws_url:
            raise hg.ProviderUnavailable(None, "", user_message="LiveAvatar started the LITE session without a ws_url.")
        knowledge = ""
        if choice.context_id is not None:
            with self._errors():
                knowledge = self.la.get_context(choice.context_id).prompt
        voice = LiteVoice(
            started.ws_url, voices=shared_voice_bank(), responder=Responder(knowledge, self.llm), on_event=live.emit
        )
        try:
            voice.connect()
        except Exception as exc:
            voice.close()
            raise hg.ProviderUnavailable(
                None, "", user_message=f"Could not open the LITE audio socket ({type(exc).__name__})."
            ) from None
        return voice

    def attach_events(self, session_id: str, sink: EventSink) -> None:
        """Where this session's LITE speaking events go (the live session's own event handler)."""
        if (live := self._entry(session_id)) is not None:
            live.events = sink

    def attach_room(self, session_id: str, room: Any) -> None:
        """The LiveKit room ``LiveSession`` joined for this session: commands go out through it."""
        if (live := self._entry(session_id)) is not None:
            live.room = room

    def start(self, session_id: str, sdp_answer: str | None = None) -> None:
        """The twin: answer the engine's offer. LiveKit: nothing (``/v1/sessions/start`` already started it)."""
        live = self._require(session_id)
        if live.engine is not None and live.engine_session_id is not None:
            live.engine.start(live.engine_session_id, sdp_answer)

    def task(self, session_id: str, text: str, task_type: str = "repeat", task_mode: str = "async") -> TaskResult:
        live = self._require(session_id)
        if not text.strip():
            raise hg.MissingParameter(None, "", user_message=EMPTY_MESSAGE)
        if live.voice is not None:
            return TaskResult(task_id=live.voice.say(text, task_type), duration_ms=None)
        if live.engine is not None and live.engine_session_id is not None:
            kind = "repeat" if task_type == "repeat" else "talk"
            return live.engine.task(live.engine_session_id, text, task_type=kind, task_mode="async")
        command = (
            la_events.speak_text(session_id, text)
            if task_type == "repeat"
            else la_events.speak_response(session_id, text)
        )
        self._publish(live, command)
        return TaskResult(task_id=command.event_id, duration_ms=None)

    def interrupt(self, session_id: str) -> None:
        live = self._require(session_id)
        if live.voice is not None:
            live.voice.interrupt()
            return
        if live.engine is not None and live.engine_session_id is not None:
            live.engine.interrupt(live.engine_session_id)
            return
        self._publish(live, la_events.interrupt(session_id))

    def start_listening(self, session_id: str) -> None:
        """The user began to speak: the avatar takes its listening pose. On LiveKit a push-to-talk session's
        window opens first (``user.start_push_to_talk``), then ``avatar.start_listening``; LITE says it on the
        socket (``agent.start_listening``); the twin's FULL sets its engine session's pose."""
        self._listening(session_id, True)

    def stop_listening(self, session_id: str) -> None:
        """The user stopped speaking: the pose ends, and a push-to-talk window closes after it."""
        self._listening(session_id, False)

    def _listening(self, session_id: str, on: bool) -> None:
        live = self._require(session_id)
        if live.voice is not None:
            try:
                live.voice.listening(on)
            except Exception as exc:
                raise hg.ProviderUnavailable(
                    None, "", user_message=f"Could not set the listening pose on the LITE socket ({exc})."
                ) from None
            return
        if live.engine is not None and live.engine_session_id is not None:
            if on:
                live.engine.start_listening(live.engine_session_id)
            else:
                live.engine.stop_listening(live.engine_session_id)
            return
        if on:
            commands = [la_events.start_listening(session_id)]
            if live.push_to_talk:
                commands.insert(0, la_events.start_push_to_talk(session_id))
        else:
            commands = [la_events.stop_listening(session_id)]
            if live.push_to_talk:
                commands.append(la_events.stop_push_to_talk(session_id))
        for command in commands:
            self._publish(live, command)

    def keep_alive(self, session_id: str) -> None:
        with self._errors():
            self.la.keep_alive(session_id)

    def stop(self, session_id: str) -> None:
        """``POST /v1/sessions/stop`` with ``USER_CLOSED``; an already ended session is not an error."""
        with self._lock:
            live = self._live.pop(session_id, None)
        if live is not None and live.voice is not None:
            live.voice.close()
        if live is not None and live.engine is not None:
            live.engine.close()
        try:
            self.la.stop_session(session_id, SessionEndReason.USER_CLOSED)
        except la.SessionNotFound:
            return
        except la.LiveAvatarError as exc:
            raise _translate(exc) from None

    def ended_reason(self, session_id: str) -> str | None:
        """Why LiveAvatar ended this session, when it did (None: still active, or it cannot tell)."""
        try:
            entry = self.la.get_session(session_id)
        except la.LiveAvatarError:
            return None
        if entry.is_active:
            return None
        return str(entry.end_reason or SessionEndReason.UNKNOWN)

    # --- inside --------------------------------------------------------------------------------
    def _entry(self, session_id: str) -> _Live | None:
        with self._lock:
            return self._live.get(session_id)

    def _require(self, session_id: str) -> _Live:
        live = self._entry(session_id)
        if live is None:
            raise hg.SessionNotFound(None, "", user_message="This LiveAvatar session has ended.")
        return live

    def _publish(self, live: _Live, command: la_events.Command) -> None:
        if live.room is None:
            raise hg.SessionStateError(None, "", user_message="The avatar's room is not joined yet.")
        started = time.monotonic()
        try:
            media_loop.run(live.room.publish(command.encode(), command.topic), timeout=self.command_timeout)
        except Exception as exc:
            raise hg.ProviderUnavailable(
                None, "", user_message=f"Could not send {command.event_type.value} to the avatar's room ({exc})."
            ) from None
        log.debug("sent %s in %.0f ms", command.event_type.value, (time.monotonic() - started) * 1000)
