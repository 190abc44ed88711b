"""Typed errors of the LiveAvatar API (``docs/liveavatar-api.md`` §1), each with a message a user can act on.

``str(exc)`` is ``exc.user_message``. Messages are built from the host, the session id, field names and the
server's own text after the client has scrubbed every credential out of it, so neither the API key nor a
session token can leak through an exception.
"""

from __future__ import annotations

from typing import Any

BAD_KEY_MESSAGE = (
    "LiveAvatar rejected the API key. HeyGen keys do not work on LiveAvatar; create one at "
    "app.liveavatar.com/developers."
)


def _rebuild(cls: type[LiveAvatarError], state: dict[str, Any]) -> LiveAvatarError:
    exc = cls.__new__(cls)
    exc.__dict__.update(state)
    exc.args = (state.get("user_message", ""),)
    return exc


class LiveAvatarError(Exception):
    """Base of every error the LiveAvatar client raises.

    ``status`` is the HTTP status (None for transport failures and local validation); ``detail`` is the
    server's scrubbed message (may be empty); ``host`` names the API host in messages.
    """

    def __init__(
        self,
        message: str | None = None,
        status: int | None = None,
        *,
        detail: str = "",
        host: str | None = None,
    ) -> None:
        self.status = status
        self.detail = detail
        self.host = host
        self.user_message = message or self._default_message()
        super().__init__(self.user_message)

    def __str__(self) -> str:
        return self.user_message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, {self.user_message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), dict(self.__dict__)))

    @property
    def provider(self) -> str:
        return f"LiveAvatar ({self.host})" if self.host else "LiveAvatar"

    def _ref(self) -> str:
        return f" (HTTP {self.status})" if self.status is not None else ""

    def _detail(self) -> str:
        # The server's sentence sits inside ours: its closing full stop would double ours.
        return f": {self.detail.rstrip('. ')}" if self.detail else ""

    def _default_message(self) -> str:
        return f"{self.provider} returned an error{self._ref()}{self._detail()}."


class Unauthorized(LiveAvatarError):
    """The API key (or, on ``/start``, the session token) was rejected: HTTP 401/403."""

    def _default_message(self) -> str:
        return BAD_KEY_MESSAGE


class InsufficientCredits(LiveAvatarError):
    """The balance cannot cover one minute of the session's mode (start refused)."""

    def _default_message(self) -> str:
        return (
            f"{self.provider} refused the session: insufficient credits{self._detail()}. A session needs at least "
            "one minute's worth (FULL 2 credits, LITE 1). Top up at app.liveavatar.com, or use a sandbox session "
            "(free)."
        )


class ConcurrencyLimit(LiveAvatarError):
    """The account already runs as many sessions as its plan allows."""

    def _default_message(self) -> str:
        return (
            f"{self.provider} refused the session: the account's concurrency limit is reached{self._detail()}. "
            "Stop sessions you no longer need (Sessions page), then try again."
        )


class ValidationFailed(LiveAvatarError):
    """A request field was rejected (HTTP 422 ``detail[]``, HTTP 400, or caught before sending)."""

    def __init__(self, field: str, reason: str, status: int | None = None, *, host: str | None = None) -> None:
        self.field = field
        self.reason = reason
        super().__init__(None, status, detail=reason, host=host)

    def _default_message(self) -> str:
        return f"{self.provider} rejected the request: {self.field}: {self.reason.rstrip('.')}."


class NotFound(LiveAvatarError):
    """The named thing (avatar, voice, context, session) does not exist on this account: HTTP 404."""

    def __init__(self, *args: Any, what: str | None = None, **kwargs: Any) -> None:
        self.what = what
        super().__init__(*args, **kwargs)

    def _default_message(self) -> str:
        which = self.what or "The requested item"
        return f"{which} was not found on {self.provider}{self._ref()}{self._detail()}."


class SessionNotFound(NotFound):
    """The session id is unknown to this account."""

    def __init__(self, *args: Any, session_id: str | None = None, **kwargs: Any) -> None:
        self.session_id = session_id
        super().__init__(*args, what=f"Session {session_id}" if session_id else "The session", **kwargs)

    def _default_message(self) -> str:
        return (
            f"{self.what} was not found on {self.provider}{self._ref()}: it never existed or belongs to another "
            "account (check the API key)."
        )


class SessionAlreadyStopped(SessionNotFound):
    """The session exists but has already ended; stopping it again is not a failure for ops tools.

    A subclass of :class:`SessionNotFound` because third-party code (and the server) treats "already gone"
    as not found: catch this one first where the two must be told apart.
    """

    def _default_message(self) -> str:
        return f"{self.what} has already ended on {self.provider}; nothing to stop."


class ProviderUnavailable(LiveAvatarError):
    """LiveAvatar could not be reached, timed out, rate-limited us, or failed (HTTP 5xx)."""

    def _default_message(self) -> str:
        return (
            f"{self.provider} is unreachable or failing{self._ref()}{self._detail()}. Check the base URL and your "
            "network, then try again in a minute."
        )


class UnexpectedResponse(LiveAvatarError):
    """The server answered, but not in the shape of the LiveAvatar API (wrong base URL, new API version)."""

    def _default_message(self) -> str:
        return (
            f"{self.provider} answered in an unexpected shape{self._ref()}{self._detail()}. Check that "
            "LIVEAVATAR_BASE_URL points at the LiveAvatar API."
        )
