"""FULL mode's data-channel protocol (``docs/liveavatar-api.md`` §5.1) as typed values.

Commands are published on the LiveKit topic :data:`AGENT_CONTROL_TOPIC` as UTF-8 JSON, reliable, shaped
``{"event_id": <uuid4>, "event_type": ..., "session_id": ..., <payload fields>}`` — the payload is flat, as in
LiveAvatar's SDK (``{"event_type": "avatar.speak_text", "text": "..."}``). Server events arrive on
:data:`AGENT_RESPONSE_TOPIC`; :func:`parse_event` turns one packet into a typed event. Event types this module
does not know are kept as :class:`GenericEvent` (the SDK's enum has more than the docs), never an error; a packet
that is not a JSON object with an ``event_type`` string raises :class:`MalformedEvent`.

Plain values only: no LiveKit import, so a controller, the LiveKit leg and tests share them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from lib.liveavatar.models import SessionEndReason

AGENT_CONTROL_TOPIC = "agent-control"
AGENT_RESPONSE_TOPIC = "agent-response"


class MalformedEvent(ValueError):
    """A data packet on ``agent-response`` that is not a LiveAvatar event; the message says what was wrong."""


class CommandType(StrEnum):
    SPEAK_TEXT = "avatar.speak_text"  # speak verbatim (HeyGen's old "repeat")
    SPEAK_RESPONSE = "avatar.speak_response"  # the avatar's LLM answers the text (old "chat")
    INTERRUPT = "avatar.interrupt"  # stop speaking and clear queued commands
    START_LISTENING = "avatar.start_listening"
    STOP_LISTENING = "avatar.stop_listening"
    START_PUSH_TO_TALK = "user.start_push_to_talk"
    STOP_PUSH_TO_TALK = "user.stop_push_to_talk"


class EventType(StrEnum):
    USER_SPEAK_STARTED = "user.speak_started"
    USER_SPEAK_ENDED = "user.speak_ended"
    AVATAR_SPEAK_STARTED = "avatar.speak_started"
    AVATAR_SPEAK_ENDED = "avatar.speak_ended"
    USER_TRANSCRIPTION = "user.transcription"
    AVATAR_TRANSCRIPTION = "avatar.transcription"
    USER_TRANSCRIPTION_CHUNK = "user.transcription.chunk"
    AVATAR_TRANSCRIPTION_CHUNK = "avatar.transcription.chunk"
    PUSH_TO_TALK_STARTED = "user.push_to_talk_started"
    PUSH_TO_TALK_START_FAILED = "user.push_to_talk_start_failed"
    PUSH_TO_TALK_STOPPED = "user.push_to_talk_stopped"
    PUSH_TO_TALK_STOP_FAILED = "user.push_to_talk_stop_failed"
    SESSION_STOPPED = "session.stopped"


class Speaker(StrEnum):
    USER = "user"
    AVATAR = "avatar"


# --- commands -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One command for ``agent-control``; :meth:`encode` gives the bytes to publish."""

    event_type: CommandType
    session_id: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    topic = AGENT_CONTROL_TOPIC

    def to_json(self) -> dict[str, Any]:
        # Envelope keys win over a payload that happens to reuse their names.
        return {
            **self.payload,
            "event_id": self.event_id,
            "event_type": self.event_type.value,
            "session_id": self.session_id,
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _text_command(kind: CommandType, session_id: str, text: str) -> Command:
    if not text.strip():
        raise ValueError(f"{kind.value} needs some text to speak")
    return Command(kind, session_id, {"text": text})


def speak_text(session_id: str, text: str) -> Command:
    """The avatar says ``text`` word for word."""
    return _text_command(CommandType.SPEAK_TEXT, session_id, text)


def speak_response(session_id: str, text: str) -> Command:
    """The avatar's LLM (its context) answers ``text``, and the avatar speaks the answer."""
    return _text_command(CommandType.SPEAK_RESPONSE, session_id, text)


def interrupt(session_id: str) -> Command:
    return Command(CommandType.INTERRUPT, session_id)


def start_listening(session_id: str) -> Command:
    return Command(CommandType.START_LISTENING, session_id)


def stop_listening(session_id: str) -> Command:
    return Command(CommandType.STOP_LISTENING, session_id)


def start_push_to_talk(session_id: str) -> Command:
    return Command(CommandType.START_PUSH_TO_TALK, session_id)


def stop_push_to_talk(session_id: str) -> Command:
    return Command(CommandType.STOP_PUSH_TO_TALK, session_id)


# --- server events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentEvent:
    """Fields every server event has; ``raw`` is the whole packet (undocumented fields stay reachable)."""

    event_type: str
    event_id: str | None
    session_id: str | None
    source_event_id: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class SpeakStarted(AgentEvent):
    """``user.speak_started`` / ``avatar.speak_started``; for the avatar ``source_event_id`` names the command."""

    speaker: Speaker


@dataclass(frozen=True)
class SpeakEnded(AgentEvent):
    speaker: Speaker


@dataclass(frozen=True)
class Transcription(AgentEvent):
    """A final transcript (``partial`` False) or a ``.chunk`` partial of one."""

    speaker: Speaker
    text: str
    partial: bool


@dataclass(frozen=True)
class PushToTalkAck(AgentEvent):
    """The server's answer to ``user.start_push_to_talk`` / ``stop_push_to_talk``."""

    started: bool  # True for the start command's acks, False for the stop command's
    ok: bool


@dataclass(frozen=True)
class SessionStopped(AgentEvent):
    end_reason: SessionEndReason  # UNKNOWN when missing or not a reason LiveAvatar documents


@dataclass(frozen=True)
class GenericEvent(AgentEvent):
    """An event type this module does not model (``session.updated``, future ones): kept, not dropped."""


_SPEAKING = {
    EventType.USER_SPEAK_STARTED: (SpeakStarted, Speaker.USER),
    EventType.AVATAR_SPEAK_STARTED: (SpeakStarted, Speaker.AVATAR),
    EventType.USER_SPEAK_ENDED: (SpeakEnded, Speaker.USER),
    EventType.AVATAR_SPEAK_ENDED: (SpeakEnded, Speaker.AVATAR),
}
_TRANSCRIPTS = {
    EventType.USER_TRANSCRIPTION: (Speaker.USER, False),
    EventType.AVATAR_TRANSCRIPTION: (Speaker.AVATAR, False),
    EventType.USER_TRANSCRIPTION_CHUNK: (Speaker.USER, True),
    EventType.AVATAR_TRANSCRIPTION_CHUNK: (Speaker.AVATAR, True),
}
_PTT = {
    EventType.PUSH_TO_TALK_STARTED: (True, True),
    EventType.PUSH_TO_TALK_START_FAILED: (True, False),
    EventType.PUSH_TO_TALK_STOPPED: (False, True),
    EventType.PUSH_TO_TALK_STOP_FAILED: (False, False),
}


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def _decode(packet: bytes | bytearray | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(packet, Mapping):
        return packet
    if isinstance(packet, bytes | bytearray):
        try:
            packet = bytes(packet).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedEvent("LiveAvatar event is not UTF-8 text") from None
    try:
        data = json.loads(packet)
    except json.JSONDecodeError as exc:
        raise MalformedEvent(f"LiveAvatar event is not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(data, dict):
        raise MalformedEvent(f"LiveAvatar event is a JSON {type(data).__name__}, not an object")
    return data


def parse_event(packet: bytes | bytearray | str | Mapping[str, Any]) -> AgentEvent:
    """One ``agent-response`` packet → a typed event; :class:`MalformedEvent` when it is not an event at all."""
    data = _decode(packet)
    kind = data.get("event_type")
    if not isinstance(kind, str) or not kind:
        raise MalformedEvent("LiveAvatar event has no event_type")
    common: dict[str, Any] = {
        "event_type": kind,
        "event_id": _optional_str(data, "event_id"),
        "session_id": _optional_str(data, "session_id"),
        "source_event_id": _optional_str(data, "source_event_id"),
        "raw": data,
    }
    try:
        known = EventType(kind)
    except ValueError:
        return GenericEvent(**common)
    if known in _SPEAKING:
        cls, speaker = _SPEAKING[known]
        return cls(**common, speaker=speaker)
    if known in _TRANSCRIPTS:
        speaker, partial = _TRANSCRIPTS[known]
        text = data.get("text")
        if text is not None and not isinstance(text, str):
            raise MalformedEvent(f"LiveAvatar {kind} has a non-text 'text' ({type(text).__name__})")
        return Transcription(**common, speaker=speaker, text=text or "", partial=partial)
    if known in _PTT:
        started, ok = _PTT[known]
        return PushToTalkAck(**common, started=started, ok=ok)
    reason = data.get("end_reason")
    try:
        end_reason = SessionEndReason(str(reason).upper()) if reason else SessionEndReason.UNKNOWN
    except ValueError:
        end_reason = SessionEndReason.UNKNOWN
    return SessionStopped(**common, end_reason=end_reason)
