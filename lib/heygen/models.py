"""Request and response models of the streaming API (see docs/heygen-api.md).

Response parsers are lenient: optional fields may be missing or null, and the shapes seen in the
official SDK, the docs and third-party clients are all accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from lib.heygen.errors import InvalidParameter

Quality = Literal["low", "medium", "high"]
VideoEncoding = Literal["VP8", "H264"]
TaskType = Literal["repeat", "talk", "chat"]
TaskMode = Literal["sync", "async"]

QUALITIES: tuple[str, ...] = ("low", "medium", "high")
VIDEO_ENCODINGS: tuple[str, ...] = ("VP8", "H264")
TASK_TYPES: tuple[str, ...] = ("repeat", "talk", "chat")
TASK_MODES: tuple[str, ...] = ("sync", "async")
IDLE_TIMEOUT_RANGE = (30, 3600)
VOICE_RATE_RANGE = (0.5, 1.5)


def _invalid(message: str) -> InvalidParameter:
    return InvalidParameter(None, message, user_message=message)


@dataclass(frozen=True)
class NewSessionRequest:
    """Body of ``POST /v1/streaming.new``; values are checked on construction."""

    avatar_id: str | None = None
    avatar_name: str | None = None
    voice_id: str | None = None
    voice_rate: float | None = None
    voice_emotion: str | None = None
    quality: Quality | None = None
    video_encoding: VideoEncoding | None = None
    knowledge_base: str | None = None
    version: Literal["v2"] | None = None
    activity_idle_timeout: int | None = None
    disable_idle_timeout: bool | None = None
    language: str | None = None

    def __post_init__(self) -> None:
        if self.quality is not None:
            quality = str(self.quality).lower()
            if quality not in QUALITIES:
                raise _invalid(f"Invalid quality {self.quality!r}: choose low, medium or high.")
            object.__setattr__(self, "quality", quality)
        if self.video_encoding is not None:
            encoding = str(self.video_encoding).upper()
            if encoding not in VIDEO_ENCODINGS:
                raise _invalid(f"Invalid video encoding {self.video_encoding!r}: choose VP8 or H264.")
            object.__setattr__(self, "video_encoding", encoding)
        if self.version is not None and self.version != "v2":
            raise _invalid(f'Invalid version {self.version!r}: use "v2" (LiveKit) or leave it empty (WebRTC).')
        if self.activity_idle_timeout is not None:
            low, high = IDLE_TIMEOUT_RANGE
            timeout = self.activity_idle_timeout
            if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not low <= timeout <= high:
                raise _invalid(f"Invalid idle timeout {timeout!r}: it must be between {low} and {high} seconds.")
            object.__setattr__(self, "activity_idle_timeout", int(timeout))
        if self.voice_rate is not None:
            low_rate, high_rate = VOICE_RATE_RANGE
            rate = _float(self.voice_rate)
            if rate is None or not low_rate <= rate <= high_rate:
                raise _invalid(
                    f"Invalid voice rate {self.voice_rate!r}: it must be between {low_rate} and {high_rate}."
                )

    @property
    def avatar(self) -> str | None:
        return self.avatar_id or self.avatar_name

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.avatar_id is not None:
            body["avatar_id"] = self.avatar_id
        if self.avatar_name is not None:
            body["avatar_name"] = self.avatar_name
        voice = {
            key: value
            for key, value in (
                ("voice_id", self.voice_id),
                ("rate", self.voice_rate),
                ("emotion", self.voice_emotion),
            )
            if value is not None
        }
        if voice:
            body["voice"] = voice
        optional = {
            "quality": self.quality,
            "video_encoding": self.video_encoding,
            "knowledge_base": self.knowledge_base,
            "version": self.version,
            "activity_idle_timeout": self.activity_idle_timeout,
            "disable_idle_timeout": self.disable_idle_timeout,
            "language": self.language,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        return body


def parse_time(value: Any) -> datetime | None:
    """Unix seconds (or milliseconds), ISO 8601 text, or a datetime → aware UTC datetime."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
            return parse_time(parsed)
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, tz=UTC)
    return None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class NewSession:
    """``data`` of ``streaming.new``: LiveKit (``url`` + ``access_token``) or legacy SDP offer."""

    session_id: str
    access_token: str | None = field(default=None, repr=False)
    url: str | None = None
    sdp: dict[str, str] | None = None
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    session_duration_limit: int | None = None
    is_paid: bool | None = None
    realtime_endpoint: str | None = None
    # Local engine extension: where its encoded packets are served ({"url", "token", "video_codec", ...}).
    media_channel: dict[str, str] | None = field(default=None, repr=False)

    @property
    def transport(self) -> Literal["livekit", "webrtc"]:
        return "webrtc" if self.sdp else "livekit"

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> NewSession:
        sdp = data.get("sdp")
        if isinstance(sdp, str):
            sdp = {"type": "offer", "sdp": sdp}
        elif isinstance(sdp, dict):
            sdp = {"type": str(sdp.get("type") or "offer"), "sdp": str(sdp.get("sdp") or "")}
        else:
            sdp = None
        ice = data.get("ice_servers2") or data.get("ice_servers") or []
        if isinstance(ice, dict):
            ice = [ice]
        is_paid = data.get("is_paid")
        return cls(
            session_id=str(data["session_id"]),
            access_token=_str(data.get("access_token")),
            url=_str(data.get("url")),
            sdp=sdp,
            ice_servers=[server for server in ice if isinstance(server, dict)],
            session_duration_limit=_int(data.get("session_duration_limit")),
            is_paid=None if is_paid is None else bool(is_paid),
            realtime_endpoint=_str(data.get("realtime_endpoint")),
            media_channel=_media_channel(data.get("media_channel")),
        )


def _media_channel(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict) or not value.get("url") or not value.get("token"):
        return None
    return {str(k): str(v) for k, v in value.items() if v is not None}


@dataclass(frozen=True)
class TaskResult:
    task_id: str | None
    duration_ms: float | None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> TaskResult:
        return cls(task_id=_str(data.get("task_id")), duration_ms=_float(data.get("duration_ms")))


@dataclass(frozen=True)
class ActiveSession:
    """One entry of ``GET /v1/streaming.list`` (open sessions only).

    HeyGen sends only the first three fields; the local engine adds the rest (None when absent)."""

    session_id: str
    status: str | None
    created_at: datetime | None
    avatar_id: str | None = None
    voice_id: str | None = None
    quality: str | None = None
    resolution: str | None = None
    video_encoding: str | None = None
    activity_idle_timeout: int | None = None
    idle_seconds: float | None = None
    speaking: bool | None = None
    listening: bool | None = None
    session_duration_limit: int | None = None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ActiveSession:
        speaking, listening = data.get("speaking"), data.get("listening")
        return cls(
            session_id=str(data["session_id"]),
            status=_str(data.get("status")),
            created_at=parse_time(data.get("created_at")),
            avatar_id=_str(data.get("avatar_id")),
            voice_id=_str(data.get("voice_id")),
            quality=_str(data.get("quality")),
            resolution=_str(data.get("resolution")),
            video_encoding=_str(data.get("video_encoding")),
            activity_idle_timeout=_int(data.get("activity_idle_timeout")),
            idle_seconds=_float(data.get("idle_seconds")),
            speaking=None if speaking is None else bool(speaking),
            listening=None if listening is None else bool(listening),
            session_duration_limit=_int(data.get("session_duration_limit")),
        )


@dataclass(frozen=True)
class HistorySession:
    """One entry of ``GET /v2/streaming.list`` (session history)."""

    session_id: str
    status: str | None
    created_at: datetime | None
    duration: float | None
    avatar_id: str | None = None
    voice_name: str | None = None
    api_key_type: str | None = None
    ended_at: datetime | None = None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> HistorySession:
        return cls(
            session_id=str(data["session_id"]),
            status=_str(data.get("status")),
            created_at=parse_time(data.get("created_at")),
            duration=_float(data.get("duration")),
            avatar_id=_str(data.get("avatar_id")),
            voice_name=_str(data.get("voice_name")),
            api_key_type=_str(data.get("api_key_type")),
            ended_at=parse_time(data.get("ended_at")),
        )

    @property
    def end_time(self) -> float | None:
        """When the provider stopped it (unix seconds): its ``ended_at``, else start plus duration."""
        if self.ended_at is not None:
            return self.ended_at.timestamp()
        if self.created_at is not None and self.duration is not None:
            return self.created_at.timestamp() + self.duration
        return None


@dataclass(frozen=True)
class Avatar:
    avatar_id: str
    pose_name: str | None
    preview_url: str | None
    default_voice: str | None
    is_public: bool | None
    status: str | None

    @property
    def is_active(self) -> bool:
        return (self.status or "ACTIVE").upper() == "ACTIVE"

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Avatar:
        voice = data.get("default_voice")
        if isinstance(voice, dict):
            voice = voice.get("voice_id") or voice.get("id")
        is_public = data.get("is_public")
        return cls(
            avatar_id=str(data["avatar_id"]),
            pose_name=_str(data.get("pose_name") or data.get("avatar_name")),
            preview_url=_str(data.get("normal_preview") or data.get("preview_url") or data.get("preview_image_url")),
            default_voice=_str(voice),
            is_public=None if is_public is None else bool(is_public),
            status=_str(data.get("status")),
        )


@dataclass(frozen=True)
class Voice:
    voice_id: str
    name: str | None
    language: str | None
    gender: str | None
    preview_audio: str | None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Voice:
        return cls(
            voice_id=str(data["voice_id"]),
            name=_str(data.get("name") or data.get("display_name")),
            language=_str(data.get("language")),
            gender=_str(data.get("gender")),
            preview_audio=_str(data.get("preview_audio")),
        )


@dataclass(frozen=True)
class Quota:
    """``/v2/user/remaining_quota``: seconds of quota; 60 seconds make one credit."""

    remaining_quota: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def credits(self) -> float:
        return self.remaining_quota / 60

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Quota:
        details = data.get("details")
        return cls(
            remaining_quota=_float(data.get("remaining_quota")) or 0.0,
            details=details if isinstance(details, dict) else {},
        )
