"""Typed errors of the streaming API, each with a message a user can act on.

Messages are built only from the provider label, the API host, codes and the server's own message
(with any credential scrubbed by the client), so a key can never leak through ``str(exc)``.
"""

from __future__ import annotations

from typing import Any

SESSION_STATES: dict[int, str] = {
    10001: "new",
    10002: "connecting",
    10003: "connected",
    10004: "closing",
    10005: "closed",
}


def _rebuild(cls: type[HeyGenError], state: dict[str, Any]) -> HeyGenError:
    exc = cls.__new__(cls)
    exc.__dict__.update(state)
    exc.args = (state.get("user_message", ""),)
    return exc


class HeyGenError(Exception):
    """Base of every error the client raises; ``str(exc)`` is ``exc.user_message``."""

    def __init__(
        self,
        code: int | None,
        message: str,
        status: int | None = None,
        *,
        user_message: str | None = None,
        provider_label: str = "HeyGen",
        host: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.status = status
        self.provider_label = provider_label
        self.host = host
        self.user_message = user_message or self._default_message()
        super().__init__(self.user_message)

    def __str__(self) -> str:
        return self.user_message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, {self.user_message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), dict(self.__dict__)))

    @property
    def ref(self) -> str:
        """How the error was identified, e.g. ``code 400112, HTTP 401``."""
        parts = []
        if self.code is not None:
            parts.append(f"code {self.code}")
        if self.status is not None and not 200 <= self.status < 300:
            parts.append(f"HTTP {self.status}")
        return ", ".join(parts) or "no error code"

    @property
    def provider(self) -> str:
        return f"{self.provider_label} ({self.host})" if self.host else self.provider_label

    @property
    def is_heygen(self) -> bool:
        host = (self.host or "").split(":")[0]
        return self.provider_label.lower() == "heygen" or host == "heygen.com" or host.endswith(".heygen.com")

    def _detail(self) -> str:
        return f": {self.message}" if self.message else ""

    def _default_message(self) -> str:
        return f"{self.provider} returned an error ({self.ref}){self._detail()}."


class Unauthorized(HeyGenError):
    """The key or session token was rejected (400112, 401056, 401057, HTTP 401)."""

    def _default_message(self) -> str:
        if self.code == 401056:
            what = "the access token has expired"
        elif self.code == 401057:
            what = "the access token is invalid"
        else:
            what = "the API key is missing or wrong"
        if self.is_heygen:
            fix = "Set HEYGEN_API_KEY (or heygen_api_key in .streamlit/secrets.toml) and try again."
        else:
            # Worded for both the dashboard and the command line, which share this message.
            fix = (
                "Set ENGINE_API_KEY to that engine's key and try again (the dashboard can instead start its "
                "own engine: unset ENGINE_URL)."
            )
        if self.code in (401056, 401057):
            fix = f"Start a new session to get a fresh token. If that fails too: {fix[0].lower()}{fix[1:]}"
        return f"{self.provider} rejected the request: {what} ({self.ref}). {fix}"


class Forbidden(HeyGenError):
    """The key is valid but may not do this (400562, HTTP 403)."""

    def _default_message(self) -> str:
        return (
            f"{self.provider} refused access ({self.ref}): this key may not use this endpoint. "
            "Check the key's plan and permissions in your account settings."
        )


class NoApiAccess(Forbidden):
    """The account has no API access at all (400599)."""

    def _default_message(self) -> str:
        return (
            f"{self.provider} says this account has no API access ({self.ref}). Streaming avatars need a "
            "plan with API access: check the plan in your HeyGen account, or use the local engine."
        )


class SessionNotFound(HeyGenError):
    """The session does not exist or has already ended (10006)."""

    def __init__(self, *args: Any, session_id: str | None = None, **kwargs: Any) -> None:
        self.session_id = session_id
        super().__init__(*args, **kwargs)

    def _default_message(self) -> str:
        which = f"Session {self.session_id}" if self.session_id else "The session"
        return (
            f"{which} is not open on {self.provider} ({self.ref}): it has ended or never existed. Start a new session."
        )


class SessionStateError(HeyGenError):
    """The session is in the wrong state for this call (10001–10005)."""

    def __init__(self, *args: Any, state: str | None = None, **kwargs: Any) -> None:
        self.state = state
        super().__init__(*args, **kwargs)

    def _default_message(self) -> str:
        state = self.state or "unknown"
        if state in ("new", "connecting"):
            hint = "Wait until it is connected, or start a new session if it stays stuck."
        elif state == "connected":
            hint = "It is already connected; if it misbehaves, stop it and start a new session."
        else:
            hint = "It has probably timed out while idle: start a new session."
        return f'The session is in state "{state}" on {self.provider} and cannot do this ({self.ref}). {hint}'


class ConcurrencyLimit(HeyGenError):
    """Too many sessions at once (10007, 10014; 10015 = trial limit)."""

    def _default_message(self) -> str:
        if self.code == 10015:
            what = "the trial API limit is reached (trial keys allow 3 sessions at once)"
        elif self.code == 10014:
            what = "no more sessions fit (session capacity full)"
        else:
            what = "the concurrent session limit is reached"
        return (
            f"{self.provider}: {what} ({self.ref}). Stop sessions you no longer need on the Sessions page, "
            "then try again."
        )


class AvatarNotFound(HeyGenError):
    """The avatar does not exist or this key may not use it (10012, 10013)."""

    def __init__(self, *args: Any, avatar_id: str | None = None, **kwargs: Any) -> None:
        self.avatar_id = avatar_id
        super().__init__(*args, **kwargs)

    def _default_message(self) -> str:
        which = f'Avatar "{self.avatar_id}"' if self.avatar_id else "The avatar"
        return (
            f"{which} was not found on {self.provider} or is not allowed for this key ({self.ref}). "
            "Pick an avatar from the avatar list."
        )


class MissingParameter(HeyGenError):
    """A required parameter is missing (40001)."""

    def _default_message(self) -> str:
        return f"{self.provider} says a required parameter is missing ({self.ref}){self._detail()}."


class InvalidParameter(HeyGenError):
    """A parameter has a value the API does not accept (400175, or caught locally)."""

    def _default_message(self) -> str:
        return f"{self.provider} rejected a parameter ({self.ref}){self._detail()}."


class TtsError(HeyGenError):
    """Text-to-speech failed on the provider (400009)."""

    def _default_message(self) -> str:
        return (
            f"{self.provider} could not turn the text into speech ({self.ref}){self._detail()}. "
            "Try again, shorten the text, or choose another voice."
        )


class RateLimited(HeyGenError):
    """HTTP 429."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(*args, **kwargs)

    def _default_message(self) -> str:
        wait = f"Wait {self.retry_after:.0f} s" if self.retry_after else "Wait a moment"
        return f"{self.provider} is limiting the request rate ({self.ref}). {wait} and try again."


class ProviderUnavailable(HeyGenError):
    """The provider could not be reached or did not answer like the streaming API."""

    def _default_message(self) -> str:
        return (
            f"{self.provider} is unreachable or down ({self.ref}){self._detail()}. "
            "Check the base URL and your network, and that the service is running."
        )


class UnknownError(HeyGenError):
    """An error code this client does not know."""


CODE_CLASSES: dict[int, type[HeyGenError]] = {
    400112: Unauthorized,
    401056: Unauthorized,
    401057: Unauthorized,
    400562: Forbidden,
    400599: NoApiAccess,
    40001: MissingParameter,
    400175: InvalidParameter,
    400009: TtsError,
    10006: SessionNotFound,
    10007: ConcurrencyLimit,
    10012: AvatarNotFound,
    10013: AvatarNotFound,
    10014: ConcurrencyLimit,
    10015: ConcurrencyLimit,
    **dict.fromkeys(SESSION_STATES, SessionStateError),
}
