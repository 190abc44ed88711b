"""Request bodies of the engine's HTTP API (HeyGen's field names), validated by pydantic."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TASK_TEXT = 10_000


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SessionBody(Body):
    session_id: str = Field(min_length=1)


class VoiceSettings(Body):
    voice_id: str | None = None
    rate: float = Field(default=1.0, ge=0.5, le=1.5)
    emotion: str | None = None

    @field_validator("emotion")
    @classmethod
    def _emotion(cls, value: str | None) -> str | None:
        allowed = {"excited", "serious", "friendly", "soothing", "broadcaster"}
        if value is not None and value.lower() not in allowed:
            raise ValueError(f"emotion must be one of {', '.join(sorted(allowed))}")
        return value.lower() if value else None


class NewSessionBody(Body):
    avatar_id: str | None = None
    avatar_name: str | None = None
    quality: Literal["low", "medium", "high"] = "low"
    voice: VoiceSettings | None = None
    voice_id: str | None = None
    video_encoding: Literal["VP8", "H264"] = "VP8"
    knowledge_base: str | None = Field(default=None, max_length=200_000)
    knowledge_base_id: str | None = None
    version: str | None = None
    activity_idle_timeout: int = Field(default=120, ge=1, le=3600)
    disable_idle_timeout: bool = False
    language: str | None = None

    @field_validator("quality", mode="before")
    @classmethod
    def _quality(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("video_encoding", mode="before")
    @classmethod
    def _encoding(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class SessionDescription(Body):
    type: Literal["answer"] = "answer"
    sdp: str = Field(min_length=1)


class StartBody(SessionBody):
    sdp: SessionDescription | None = None


class IceBody(SessionBody):
    candidate: dict[str, Any] | None = None


class TaskBody(SessionBody):
    text: str
    task_type: Literal["repeat", "talk", "chat"] = "repeat"
    task_mode: Literal["sync", "async"] = "sync"

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be empty")
        if len(value) > MAX_TASK_TEXT:
            raise ValueError(f"text is too long: {len(value):,} characters (at most {MAX_TASK_TEXT:,})")
        return value
