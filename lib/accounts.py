"""A provider account as the ops and cost jobs see it: one small protocol, one row shape, every provider.

The Sessions page, the Usage import and the command line need only: the sessions active now, stopping one,
which account this is (``endpoint``), the credits left, past sessions, a session's transcript. Two
implementations: :class:`StreamingAccount` over the HeyGen-shaped :class:`StreamingClient` (the local engine
and legacy HeyGen), and :class:`LiveAvatarAccount` over :class:`LiveAvatarClient`. Provider errors leave here
as :class:`AccountError` with a kind (rejected key, unreachable, not found, failed) and the client's own,
already scrubbed, message: callers never need to know which client raised.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlsplit

from lib.heygen import errors as heygen_errors
from lib.heygen.client import StreamingClient, endpoint_reachable
from lib.heygen.models import ActiveSession
from lib.liveavatar import errors as la_errors
from lib.liveavatar.client import LiveAvatarClient
from lib.liveavatar.models import SessionEndReason, SessionEntry, SessionListType


class AccountErrorKind(StrEnum):
    REJECTED_KEY = "rejected_key"
    UNREACHABLE = "unreachable"
    NOT_FOUND = "not_found"
    NOT_SUPPORTED = "not_supported"
    FAILED = "failed"


class AccountError(Exception):
    """A provider call failed; ``str(exc)`` is a message a user can act on (never a key)."""

    def __init__(self, message: str, kind: AccountErrorKind = AccountErrorKind.FAILED) -> None:
        super().__init__(message)
        self.kind = kind


class StopOutcome(StrEnum):
    STOPPED = "stopped"
    ALREADY_GONE = "already_gone"  # not a failure: nothing is billing
    FAILED = "failed"


@dataclass(frozen=True)
class StopResult:
    session_id: str
    outcome: StopOutcome
    message: str

    @property
    def label(self) -> str:
        return self.outcome.replace("_", " ")


@dataclass(frozen=True)
class AccountSession:
    """One active session, whichever provider lists it (None: this provider does not say)."""

    session_id: str
    created_at: datetime | None
    status: str | None = None
    avatar_id: str | None = None
    voice_id: str | None = None
    quality: str | None = None
    resolution: str | None = None
    video_encoding: str | None = None
    idle_timeout_s: int | None = None
    idle_s: float | None = None
    speaking: bool | None = None
    duration_limit_s: int | None = None
    mode: str | None = None  # FULL | LITE (LiveAvatar)
    source: str | None = None  # API | APP | EMBED | DEMO (LiveAvatar)
    is_sandbox: bool | None = None
    credits_consumed: float | None = None  # billed so far, as the provider reports it
    duration_s: float | None = None


@dataclass(frozen=True)
class PastSession:
    """One session of the provider's history (what the Usage import writes into the log)."""

    session_id: str
    created_at: datetime
    ended_at: datetime | None = None
    duration_s: float | None = None
    avatar_id: str | None = None
    voice: str | None = None
    mode: str | None = None
    source: str | None = None
    is_sandbox: bool | None = None
    credits_consumed: float | None = None
    end_reason: str | None = None


@dataclass(frozen=True)
class TranscriptEntry:
    role: str
    text: str
    at_s: float | None  # seconds since the session started, when known


class ProviderAccount(Protocol):
    @property
    def endpoint(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    def active_sessions(self) -> list[AccountSession]: ...

    def stop(self, session_id: str) -> StopResult: ...

    def credits_left(self) -> Decimal: ...

    def history(self, start: datetime, end: datetime) -> list[PastSession]: ...

    def transcript(self, session_id: str) -> list[TranscriptEntry]: ...

    def reachable(self, endpoint: str) -> bool: ...

    def close(self) -> None: ...


def _gone_engine_at_our_url(endpoint: str, ours: str) -> bool:
    """A local engine has one key: a session logged at our engine's URL under another key was on an engine that
    is gone (a crashed app's engine on a fixed ENGINE_PORT); ours answering ``/healthz`` there proves nothing.
    Hosted providers serve every account at one URL, so callers exclude their hosts."""
    return endpoint != ours and endpoint.split("#", 1)[0] == ours.split("#", 1)[0]


def _is_heygen_host(endpoint: str) -> bool:
    host = urlsplit(endpoint.split("#", 1)[0]).hostname or ""
    return host == "heygen.com" or host.endswith(".heygen.com")


# -- HeyGen-shaped: the local engine and legacy HeyGen ------------------------------------------------


_GONE_STATES = ("closing", "closed")


def _heygen_kind(exc: heygen_errors.HeyGenError) -> AccountErrorKind:
    if isinstance(exc, heygen_errors.Unauthorized | heygen_errors.Forbidden):
        return AccountErrorKind.REJECTED_KEY
    if isinstance(exc, heygen_errors.ProviderUnavailable):
        return AccountErrorKind.UNREACHABLE
    if isinstance(exc, heygen_errors.SessionNotFound):
        return AccountErrorKind.NOT_FOUND
    return AccountErrorKind.FAILED


@contextmanager
def _heygen_errors() -> Iterator[None]:
    try:
        yield
    except heygen_errors.HeyGenError as exc:
        raise AccountError(str(exc), _heygen_kind(exc)) from None


def _from_active(s: ActiveSession) -> AccountSession:
    return AccountSession(
        session_id=s.session_id,
        created_at=s.created_at,
        status=s.status,
        avatar_id=s.avatar_id,
        voice_id=s.voice_id,
        quality=s.quality,
        resolution=s.resolution,
        video_encoding=s.video_encoding,
        idle_timeout_s=s.activity_idle_timeout,
        idle_s=s.idle_seconds,
        speaking=s.speaking,
        duration_limit_s=s.session_duration_limit,
    )


class StreamingAccount:
    """The local engine or a HeyGen account through ``/v1/streaming.*``."""

    def __init__(self, client: StreamingClient) -> None:
        self.client = client

    @property
    def endpoint(self) -> str:
        return self.client.endpoint

    @property
    def base_url(self) -> str:
        return self.client.base_url

    def active_sessions(self) -> list[AccountSession]:
        with _heygen_errors():
            return [_from_active(s) for s in self.client.list()]

    def stop(self, session_id: str) -> StopResult:
        try:
            self.client.stop(session_id)
        except heygen_errors.SessionNotFound:
            return StopResult(session_id, StopOutcome.ALREADY_GONE, "The provider no longer knows this session.")
        except heygen_errors.SessionStateError as exc:
            if (exc.state or "") in _GONE_STATES:
                return StopResult(session_id, StopOutcome.ALREADY_GONE, f"It was already {exc.state}.")
            return StopResult(session_id, StopOutcome.FAILED, str(exc))
        except heygen_errors.HeyGenError as exc:
            return StopResult(session_id, StopOutcome.FAILED, str(exc))
        return StopResult(session_id, StopOutcome.STOPPED, "Stopped.")

    def credits_left(self) -> Decimal:
        with _heygen_errors():
            return Decimal(str(self.client.remaining_quota().credits))

    def history(self, start: datetime, end: datetime) -> list[PastSession]:
        with _heygen_errors():
            return [
                PastSession(
                    h.session_id,
                    h.created_at,
                    ended_at=h.ended_at,
                    duration_s=h.duration,
                    avatar_id=h.avatar_id,
                    voice=h.voice_name,
                )
                for h in self.client.list_history(start, end)
                if h.created_at is not None
            ]

    def transcript(self, session_id: str) -> builtins.list[TranscriptEntry]:
        raise AccountError(f"{self.client.provider_label} keeps no transcripts.", AccountErrorKind.NOT_SUPPORTED)

    def reachable(self, endpoint: str) -> bool:
        if _gone_engine_at_our_url(endpoint, self.endpoint) and not _is_heygen_host(endpoint):
            return False
        return endpoint_reachable(endpoint)

    def close(self) -> None:
        self.client.close()


# -- LiveAvatar -----------------------------------------------------------------------------------------


def _liveavatar_kind(exc: la_errors.LiveAvatarError) -> AccountErrorKind:
    if isinstance(exc, la_errors.Unauthorized):
        return AccountErrorKind.REJECTED_KEY
    if isinstance(exc, la_errors.ProviderUnavailable | la_errors.UnexpectedResponse):
        return AccountErrorKind.UNREACHABLE
    if isinstance(exc, la_errors.NotFound):
        return AccountErrorKind.NOT_FOUND
    return AccountErrorKind.FAILED


@contextmanager
def _liveavatar_errors() -> Iterator[None]:
    try:
        yield
    except la_errors.LiveAvatarError as exc:
        raise AccountError(str(exc), _liveavatar_kind(exc)) from None


def _from_entry(e: SessionEntry) -> AccountSession:
    return AccountSession(
        session_id=e.id,
        created_at=e.created_at,
        status="active" if e.is_active else "ended",
        mode=str(e.mode),
        source=str(e.source),
        is_sandbox=e.is_sandbox,
        credits_consumed=e.credits_consumed,
        duration_s=float(e.duration_s),
    )


def _past(e: SessionEntry) -> PastSession:
    return PastSession(
        session_id=e.id,
        created_at=e.created_at,
        ended_at=e.end_at,
        duration_s=float(e.duration_s),
        mode=str(e.mode),
        source=str(e.source),
        is_sandbox=e.is_sandbox,
        credits_consumed=e.credits_consumed,
        end_reason=None if e.end_reason is None else str(e.end_reason),
    )


def _is_liveavatar_host(endpoint: str) -> bool:
    host = urlsplit(endpoint.split("#", 1)[0]).hostname or ""
    return host == "liveavatar.com" or host.endswith(".liveavatar.com")


class LiveAvatarAccount:
    """A LiveAvatar account (or the engine's twin of it) through ``/v1/sessions`` and ``/v1/users/credits``."""

    def __init__(self, client: LiveAvatarClient, *, reachable: Callable[[str], bool] = endpoint_reachable) -> None:
        self.client = client
        self._reachable = reachable

    @property
    def endpoint(self) -> str:
        return self.client.endpoint

    @property
    def base_url(self) -> str:
        return self.client.base_url

    def active_sessions(self) -> list[AccountSession]:
        with _liveavatar_errors():
            return [_from_entry(e) for e in self.client.list_sessions(SessionListType.ACTIVE)]

    def stop(self, session_id: str) -> StopResult:
        try:
            self.client.stop_session(session_id, SessionEndReason.USER_CLOSED)
        except la_errors.SessionNotFound as exc:  # SessionAlreadyStopped included: it is not billing either
            return StopResult(session_id, StopOutcome.ALREADY_GONE, str(exc))
        except la_errors.LiveAvatarError as exc:
            return StopResult(session_id, StopOutcome.FAILED, str(exc))
        return StopResult(session_id, StopOutcome.STOPPED, "Stopped.")

    def credits_left(self) -> Decimal:
        with _liveavatar_errors():
            return self.client.credits_left()

    def history(self, start: datetime, end: datetime) -> list[PastSession]:
        """Ended sessions created in ``[start, end)``: LiveAvatar filters by nothing but type, so every page
        is read and the range applied here."""
        with _liveavatar_errors():
            entries = self.client.list_sessions(SessionListType.HISTORIC)
        return [_past(e) for e in entries if start <= e.created_at < end]

    def transcript(self, session_id: str) -> builtins.list[TranscriptEntry]:
        with _liveavatar_errors():
            lines = self.client.transcript(session_id).lines
        return [TranscriptEntry(line.role, line.text, float(line.relative_timestamp)) for line in lines]

    def reachable(self, endpoint: str) -> bool:
        # Another LiveAvatar account cannot be asked without its key: its sessions stay open until a
        # dashboard holding that key reconciles them. An engine twin is gone when it no longer answers.
        if _is_liveavatar_host(endpoint):
            return True
        return False if _gone_engine_at_our_url(endpoint, self.endpoint) else self._reachable(endpoint)

    def close(self) -> None:
        self.client.close()
