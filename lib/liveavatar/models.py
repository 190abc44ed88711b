"""Request and response models of the LiveAvatar API (``docs/liveavatar-api.md`` §2).

Parsers are lenient where the contract is loose (optional fields missing or null, timestamps as ISO text
with ``Z`` or as Unix seconds, numbers as strings) and strict where a wrong value would mislead an operator
(a session without an id, a mode that is neither FULL nor LITE). Request models validate on construction and
raise :class:`ValidationFailed` naming the field, so a bad value never costs a round trip.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from lib.liveavatar.errors import ValidationFailed
from lib.settings import Secret

SANDBOX_AVATAR_ID = "dd73ea75-1218-4ef3-92ce-606d5f7fbc0a"  # "Wayne", the only avatar sandbox sessions run
SANDBOX_MAX_DURATION = 60
MAX_PAGE_SIZE = 100
MAX_DYNAMIC_VARIABLES = 50
MAX_DYNAMIC_KEY = 64
MAX_DYNAMIC_VALUE = 1000


class SessionMode(StrEnum):
    FULL = "FULL"
    LITE = "LITE"


class SessionSource(StrEnum):
    DEMO = "DEMO"
    APP = "APP"
    API = "API"
    EMBED = "EMBED"


class SessionEndReason(StrEnum):
    UNKNOWN = "UNKNOWN"
    USER_DISCONNECTED = "USER_DISCONNECTED"
    SERVER_ERROR = "SERVER_ERROR"
    IDLE_TIMEOUT = "IDLE_TIMEOUT"
    NO_CREDITS = "NO_CREDITS"
    USER_CLOSED = "USER_CLOSED"
    AVATAR_DELETED = "AVATAR_DELETED"
    MAX_DURATION_REACHED = "MAX_DURATION_REACHED"
    ZOMBIE_SESSION_REAP = "ZOMBIE_SESSION_REAP"
    AGENT_HANG_UP = "AGENT_HANG_UP"


class VideoQuality(StrEnum):
    VERY_HIGH = "very_high"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class VideoEncoding(StrEnum):
    VP8 = "VP8"
    H264 = "H264"


class Interactivity(StrEnum):
    CONVERSATIONAL = "CONVERSATIONAL"
    PUSH_TO_TALK = "PUSH_TO_TALK"


class SessionListType(StrEnum):
    ACTIVE = "active"
    HISTORIC = "historic"


class TranscriptRole(StrEnum):
    USER = "user"
    AVATAR = "avatar"


# Credits per minute by mode (docs §6); sandbox sessions cost nothing.
CREDITS_PER_MINUTE: dict[SessionMode, int] = {SessionMode.FULL: 2, SessionMode.LITE: 1}


def credits_per_minute(mode: SessionMode, is_sandbox: bool = False) -> int:
    return 0 if is_sandbox else CREDITS_PER_MINUTE[mode]


# --- parsing helpers ----------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 text (``Z`` or an offset; naive = UTC) or Unix seconds/milliseconds → aware UTC datetime."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            return parse_time(float(text))
        except ValueError:
            pass
        try:
            return parse_time(datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00")))
        except ValueError:
            return None
    return None


def format_time(value: datetime) -> str:
    """The wire form: ISO 8601 in UTC with a ``Z`` (microseconds kept when present)."""
    aware = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.isoformat().replace("+00:00", "Z")


def _required_time(data: Mapping[str, Any], key: str) -> datetime:
    parsed = parse_time(data.get(key))
    if parsed is None:
        raise ValueError(f"{key} is missing or not a date-time")
    return parsed


def _float(value: Any, default: float = 0.0) -> float:
    if value is None or isinstance(value, bool):
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _int(value: Any, default: int | None = 0) -> int | None:
    if value is None or isinstance(value, bool):
        return default
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def parse_decimal(value: Any) -> Decimal:
    """``credits_left`` is a decimal string (``"123.5"``); numbers are accepted too."""
    if isinstance(value, bool) or value is None:
        raise ValueError("not a number")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not result.is_finite():
        raise ValueError("not a finite number")
    return result


def parse_mode(value: Any) -> SessionMode:
    text = _str(value).strip().upper()
    if text == "CUSTOM":  # LITE's name before Feb 2026
        return SessionMode.LITE
    return SessionMode(text)


def parse_end_reason(value: Any) -> SessionEndReason | None:
    if value is None or value == "":
        return None
    try:
        return SessionEndReason(_str(value).strip().upper())
    except ValueError:
        return SessionEndReason.UNKNOWN  # a reason added after this client: still an ended session


def is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return False
    return True


# --- responses ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionEntry:
    """One item of ``GET /v1/sessions`` (active or historic) or ``GET /v1/sessions/{id}``."""

    id: str
    created_at: datetime
    updated_at: datetime
    duration_s: int
    source: SessionSource
    mode: SessionMode
    is_sandbox: bool
    credits_consumed: float
    end_at: datetime | None = None
    end_reason: SessionEndReason | None = None

    @property
    def is_active(self) -> bool:
        return self.end_at is None and self.end_reason is None

    @property
    def credits_per_minute(self) -> int:
        return credits_per_minute(self.mode, self.is_sandbox)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> SessionEntry:
        """Raises ``ValueError`` (or ``KeyError``) when a required field is missing or has a foreign value."""
        session_id = _str(data.get("id") or data.get("session_id"))
        if not session_id:
            raise KeyError("id")
        created = _required_time(data, "created_at")
        return cls(
            id=session_id,
            created_at=created,
            updated_at=parse_time(data.get("updated_at")) or created,
            duration_s=_int(data.get("duration")) or 0,
            source=SessionSource(_str(data.get("source")).strip().upper()),
            mode=parse_mode(data.get("mode")),
            is_sandbox=_bool(data.get("is_sandbox")),
            credits_consumed=_float(data.get("credits_consumed")),
            end_at=parse_time(data.get("end_at")),
            end_reason=parse_end_reason(data.get("end_reason")),
        )

    def to_json(self) -> dict[str, Any]:
        """The wire shape (the twin answers with it); historic fields only when the session has ended."""
        body: dict[str, Any] = {
            "id": self.id,
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
            "duration": self.duration_s,
            "source": self.source.value,
            "mode": self.mode.value,
            "is_sandbox": self.is_sandbox,
            "credits_consumed": self.credits_consumed,
        }
        if not self.is_active:
            body["end_at"] = format_time(self.end_at) if self.end_at else None
            body["end_reason"] = self.end_reason.value if self.end_reason else None
        return body


@dataclass(frozen=True)
class SessionToken:
    """Answer of ``POST /v1/sessions/token``: the session id and its one-use Bearer token (a secret)."""

    session_id: str
    session_token: Secret = field(repr=False)


@dataclass(frozen=True)
class StartedSession:
    """Answer of ``POST /v1/sessions/start`` (HTTP 201).

    ``local_media`` is the local engine's extension (its ``local`` key, documented in
    ``lib/engine/liveavatar_api.py``): how to get the media without a LiveKit server. None on LiveAvatar.
    """

    session_id: str
    livekit_url: str
    livekit_client_token: str = field(repr=False)
    livekit_agent_token: str | None = field(default=None, repr=False)
    max_session_duration: int | None = None
    ws_url: str | None = None
    local_media: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> StartedSession:
        local = data.get("local")
        return cls(
            session_id=_str(data["session_id"]),
            livekit_url=_str(data.get("livekit_url")),
            livekit_client_token=_str(data.get("livekit_client_token")),
            livekit_agent_token=_str(data["livekit_agent_token"]) if data.get("livekit_agent_token") else None,
            max_session_duration=_int(data.get("max_session_duration"), None),
            ws_url=_str(data["ws_url"]) if data.get("ws_url") else None,
            local_media=dict(local) if isinstance(local, Mapping) else None,
        )


@dataclass(frozen=True)
class TranscriptLine:
    role: str  # TranscriptRole value; kept as text so a new role does not break reading a transcript
    text: str
    absolute_timestamp: int
    relative_timestamp: int

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> TranscriptLine:
        return cls(
            role=_str(data.get("role")),
            text=_str(data.get("transcript", data.get("text"))),
            absolute_timestamp=_int(data.get("absolute_timestamp")) or 0,
            relative_timestamp=_int(data.get("relative_timestamp")) or 0,
        )


@dataclass(frozen=True)
class Transcript:
    session_active: bool
    next_timestamp: int | None
    lines: tuple[TranscriptLine, ...]

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Transcript:
        raw = data.get("transcript_data") or []
        return cls(
            session_active=_bool(data.get("session_active")),
            next_timestamp=_int(data.get("next_timestamp"), None),
            lines=tuple(TranscriptLine.from_data(line) for line in raw if isinstance(line, Mapping)),
        )


@dataclass(frozen=True)
class Avatar:
    id: str
    name: str
    type: str  # IMAGE | VIDEO
    status: str  # ACTIVE | INIT | DEPLOYING | FAILED
    preview_url: str | None
    default_voice_id: str | None
    is_1080p: bool
    is_public: bool

    @classmethod
    def from_data(cls, data: Mapping[str, Any], *, is_public: bool = False) -> Avatar:
        voice = data.get("default_voice")
        voice_id = voice.get("id") if isinstance(voice, Mapping) else None
        return cls(
            id=_str(data["id"]),
            name=_str(data.get("name")),
            type=_str(data.get("type") or "VIDEO"),
            status=_str(data.get("status") or "INIT"),
            preview_url=_str(data["preview_url"]) if data.get("preview_url") else None,
            default_voice_id=_str(voice_id) if voice_id else None,
            is_1080p=_bool(data.get("is_1080p")),
            is_public=is_public,
        )


@dataclass(frozen=True)
class Voice:
    id: str
    name: str
    language: str
    gender: str
    tags: tuple[str, ...]

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Voice:
        tags = data.get("tags")
        return cls(
            id=_str(data["id"]),
            name=_str(data.get("name")),
            language=_str(data.get("language")),
            gender=_str(data.get("gender")),
            tags=tuple(_str(t) for t in tags) if isinstance(tags, list) else (),
        )


@dataclass(frozen=True)
class ContextLink:
    url: str
    faq: str
    id: str | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ContextLink:
        return cls(
            url=_str(data.get("url")), faq=_str(data.get("faq")), id=_str(data["id"]) if data.get("id") else None
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"url": self.url, "faq": self.faq}
        if self.id:
            body["id"] = self.id
        return body


@dataclass(frozen=True)
class ContextSummary:
    id: str
    name: str
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ContextSummary:
        return cls(
            id=_str(data["id"]),
            name=_str(data.get("name")),
            created_at=parse_time(data.get("created_at")),
            updated_at=parse_time(data.get("updated_at")),
        )


@dataclass(frozen=True)
class Context:
    """A context (``ContextDetail``): the avatar's system prompt and opening line."""

    id: str
    name: str
    prompt: str
    opening_text: str
    links: tuple[ContextLink, ...] = ()
    required_dynamic_variables: tuple[str, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Context:
        links = data.get("links")
        required = data.get("required_dynamic_variables")
        return cls(
            id=_str(data["id"]),
            name=_str(data.get("name")),
            prompt=_str(data.get("prompt")),
            opening_text=_str(data.get("opening_text")),
            links=tuple(ContextLink.from_data(x) for x in links if isinstance(x, Mapping))
            if isinstance(links, list)
            else (),
            required_dynamic_variables=tuple(_str(v) for v in required) if isinstance(required, list) else (),
            created_at=parse_time(data.get("created_at")),
            updated_at=parse_time(data.get("updated_at")),
        )


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def required_variables(*texts: str) -> tuple[str, ...]:
    """The ``${var}`` placeholders of a context's prompt and opening text, in first-seen order."""
    seen: dict[str, None] = {}
    for text in texts:
        for match in _PLACEHOLDER.finditer(text or ""):
            seen.setdefault(match.group(1), None)
    return tuple(seen)


@dataclass(frozen=True)
class Language:
    code: str
    name: str

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Language:
        return cls(code=_str(data["code"]), name=_str(data.get("language") or data.get("name")))


# --- requests -----------------------------------------------------------------------------------


def _check_uuid(name: str, value: str | None) -> None:
    if value is not None and not is_uuid(value):
        raise ValidationFailed(name, f"{value!r} is not a valid UUID")


def _check_common(
    avatar_id: str,
    is_sandbox: bool,
    video_quality: VideoQuality | None,
    video_encoding: VideoEncoding | None,
    max_session_duration: int | None,
) -> None:
    _check_uuid("avatar_id", avatar_id)
    if video_quality is not None and video_quality not in tuple(VideoQuality):
        raise ValidationFailed("video_settings.quality", f"choose one of {', '.join(VideoQuality)}")
    if video_encoding is not None and video_encoding not in tuple(VideoEncoding):
        raise ValidationFailed("video_settings.encoding", f"choose one of {', '.join(VideoEncoding)}")
    if max_session_duration is not None:
        if isinstance(max_session_duration, bool) or not isinstance(max_session_duration, int):
            raise ValidationFailed("max_session_duration", "must be a whole number of seconds")
        if max_session_duration <= 0:
            raise ValidationFailed("max_session_duration", "must be more than 0 seconds")
    if is_sandbox:
        if avatar_id != SANDBOX_AVATAR_ID:
            raise ValidationFailed("avatar_id", f"sandbox sessions only run the avatar Wayne ({SANDBOX_AVATAR_ID})")
        if max_session_duration is not None and max_session_duration > SANDBOX_MAX_DURATION:
            raise ValidationFailed(
                "max_session_duration",
                f"max_session_duration ({max_session_duration}s) exceeds the maximum allowed "
                f"({SANDBOX_MAX_DURATION}s) for sandbox sessions",
            )


def _common_json(
    mode: SessionMode,
    avatar_id: str,
    is_sandbox: bool,
    video_quality: VideoQuality | None,
    video_encoding: VideoEncoding | None,
    max_session_duration: int | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"mode": mode.value, "avatar_id": avatar_id, "is_sandbox": is_sandbox}
    video = {
        key: value.value
        for key, value in (("quality", video_quality), ("encoding", video_encoding))
        if value is not None
    }
    if video:
        body["video_settings"] = video
    if max_session_duration is not None:
        body["max_session_duration"] = max_session_duration
    return body


@dataclass(frozen=True)
class FullSessionConfig:
    """Body of ``POST /v1/sessions/token`` for a FULL session (§2.2).

    Either a persona (``voice_id``/``context_id``/``language``; no context = "restricted mode": the avatar
    never answers) or a stored voice agent (``voice_agent_id``) — the two exclude each other.
    """

    avatar_id: str
    is_sandbox: bool = False
    video_quality: VideoQuality | None = None
    video_encoding: VideoEncoding | None = None
    max_session_duration: int | None = None
    voice_id: str | None = None
    context_id: str | None = None
    language: str = "en"
    voice_agent_id: str | None = None
    interactivity_type: Interactivity | None = None
    llm_configuration_id: str | None = None
    dynamic_variables: Mapping[str, str] | None = None

    mode = SessionMode.FULL

    def __post_init__(self) -> None:
        if self.video_quality is not None:
            object.__setattr__(self, "video_quality", _enum(VideoQuality, self.video_quality, "video_settings.quality"))
        if self.video_encoding is not None:
            encoding = _enum(VideoEncoding, str(self.video_encoding).upper(), "video_settings.encoding")
            object.__setattr__(self, "video_encoding", encoding)
        if self.interactivity_type is not None:
            kind = _enum(Interactivity, str(self.interactivity_type).upper(), "interactivity_type")
            object.__setattr__(self, "interactivity_type", kind)
        _check_common(
            self.avatar_id, self.is_sandbox, self.video_quality, self.video_encoding, self.max_session_duration
        )
        for name in ("voice_id", "context_id", "voice_agent_id", "llm_configuration_id"):
            _check_uuid(name, getattr(self, name))
        if self.voice_agent_id is not None and (self.voice_id is not None or self.context_id is not None):
            raise ValidationFailed("voice_agent", "Provide exactly one of avatar_persona or voice_agent")
        if not self.language or len(self.language) > 16:
            raise ValidationFailed("avatar_persona.language", "must be a language code such as 'en'")
        variables = self.dynamic_variables or {}
        if len(variables) > MAX_DYNAMIC_VARIABLES:
            raise ValidationFailed("dynamic_variables", f"at most {MAX_DYNAMIC_VARIABLES} variables are allowed")
        for key, value in variables.items():
            if not key or len(key) > MAX_DYNAMIC_KEY:
                raise ValidationFailed("dynamic_variables", f"names must be 1 to {MAX_DYNAMIC_KEY} characters")
            if len(str(value)) > MAX_DYNAMIC_VALUE:
                raise ValidationFailed("dynamic_variables", f"{key}: at most {MAX_DYNAMIC_VALUE} characters")
        if self.dynamic_variables is not None:
            object.__setattr__(self, "dynamic_variables", {str(k): str(v) for k, v in variables.items()})

    def to_json(self) -> dict[str, Any]:
        body = _common_json(
            self.mode,
            self.avatar_id,
            self.is_sandbox,
            self.video_quality,
            self.video_encoding,
            self.max_session_duration,
        )
        if self.voice_agent_id is not None:
            body["voice_agent"] = {"id": self.voice_agent_id, "language": self.language}
        else:
            persona: dict[str, Any] = {"language": self.language}
            if self.voice_id is not None:
                persona["voice_id"] = self.voice_id
            if self.context_id is not None:
                persona["context_id"] = self.context_id
            body["avatar_persona"] = persona
        if self.interactivity_type is not None:
            body["interactivity_type"] = self.interactivity_type.value
        if self.llm_configuration_id is not None:
            body["llm_configuration_id"] = self.llm_configuration_id
        if self.dynamic_variables:
            body["dynamic_variables"] = dict(self.dynamic_variables)
        return body


@dataclass(frozen=True)
class LiteSessionConfig:
    """Body of ``POST /v1/sessions/token`` for a LITE session: video only, you bring the audio.

    ``livekit_config`` is ``{livekit_url, livekit_room, livekit_client_token}`` for your own room;
    ``connectors`` passes any of the hosted connectors (``agora_config``, ``openai_realtime_config``, …)
    through unchanged.
    """

    avatar_id: str
    is_sandbox: bool = False
    video_quality: VideoQuality | None = None
    video_encoding: VideoEncoding | None = None
    max_session_duration: int | None = None
    livekit_config: Mapping[str, str] | None = field(default=None, repr=False)
    connectors: Mapping[str, Any] = field(default_factory=dict, repr=False)

    mode = SessionMode.LITE

    def __post_init__(self) -> None:
        if self.video_quality is not None:
            object.__setattr__(self, "video_quality", _enum(VideoQuality, self.video_quality, "video_settings.quality"))
        if self.video_encoding is not None:
            encoding = _enum(VideoEncoding, str(self.video_encoding).upper(), "video_settings.encoding")
            object.__setattr__(self, "video_encoding", encoding)
        _check_common(
            self.avatar_id, self.is_sandbox, self.video_quality, self.video_encoding, self.max_session_duration
        )
        if self.livekit_config is not None:
            missing = [
                k for k in ("livekit_url", "livekit_room", "livekit_client_token") if not self.livekit_config.get(k)
            ]
            if missing:
                raise ValidationFailed(f"livekit_config.{missing[0]}", "is required")
        unknown = set(self.connectors) - LITE_CONNECTORS
        if unknown:
            raise ValidationFailed(
                sorted(unknown)[0], f"not a LITE connector; use one of {', '.join(sorted(LITE_CONNECTORS))}"
            )

    def to_json(self) -> dict[str, Any]:
        body = _common_json(
            self.mode,
            self.avatar_id,
            self.is_sandbox,
            self.video_quality,
            self.video_encoding,
            self.max_session_duration,
        )
        if self.livekit_config is not None:
            body["livekit_config"] = dict(self.livekit_config)
        body.update({key: value for key, value in self.connectors.items() if value is not None})
        return body


LITE_CONNECTORS = frozenset(
    {"agora_config", "elevenlabs_agent_config", "openai_realtime_config", "gemini_realtime_config"}
)

SessionConfig = FullSessionConfig | LiteSessionConfig


def _enum(kind: type[StrEnum], value: Any, name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ValidationFailed(name, f"{value!r} is not one of {', '.join(kind)}") from None


def context_body(
    name: str, prompt: str, opening_text: str, links: Sequence[ContextLink | Mapping[str, Any]]
) -> dict[str, Any]:
    """Body of ``POST /v1/contexts`` and ``PATCH /v1/contexts/{id}`` (the first three are required on both)."""
    for key, value in (("name", name), ("prompt", prompt), ("opening_text", opening_text)):
        if not isinstance(value, str) or not value.strip():
            raise ValidationFailed(key, "is required")
    items = [link.to_json() if isinstance(link, ContextLink) else dict(link) for link in links]
    for index, link in enumerate(items):
        if not link.get("url"):
            raise ValidationFailed(f"links.{index}.url", "is required")
    return {"name": name, "prompt": prompt, "opening_text": opening_text, "links": items}
