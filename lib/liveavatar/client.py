"""HTTP client for the LiveAvatar API (``docs/liveavatar-api.md``), and for the local engine's twin of it.

The API key travels only in the ``X-API-KEY`` header and a session token only in ``Authorization: Bearer``
on ``/v1/sessions/start``. No exception raised here chains a ``requests`` exception (whose text can hold
URLs), server messages are scrubbed of the key and of every session token this client has seen, and the
log holds only method, path, status and timing.

Only idempotent calls are retried (transport failures, 429, 5xx): lists, gets, credits, transcript,
keep-alive and stop. Minting a token and starting a session are sent exactly once: a retry could open a
second billable session.
"""

from __future__ import annotations

import builtins
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

import requests

from lib.heygen.client import _as_secret, _int_code, _retry_after
from lib.http_exchange import endpoint_of, exchange, host_of
from lib.liveavatar.errors import (
    ConcurrencyLimit,
    InsufficientCredits,
    LiveAvatarError,
    NotFound,
    ProviderUnavailable,
    SessionAlreadyStopped,
    SessionNotFound,
    Unauthorized,
    UnexpectedResponse,
    ValidationFailed,
)
from lib.liveavatar.models import (
    MAX_PAGE_SIZE,
    Avatar,
    Context,
    ContextLink,
    ContextSummary,
    Language,
    SessionConfig,
    SessionEndReason,
    SessionEntry,
    SessionListType,
    SessionToken,
    StartedSession,
    Transcript,
    Voice,
    context_body,
    parse_decimal,
)
from lib.settings import Secret

log = logging.getLogger("avatar_ops.liveavatar")

DEFAULT_BASE_URL = "https://api.liveavatar.com"
SUCCESS_CODES = (1000, 100)  # 1000 in practice and in the SDK; 100 is the OpenAPI schema's default
MAX_SERVER_MESSAGE = 300
MAX_PAGES = 10_000
MAX_RETRY_AFTER = 5.0
_ENDED_WORDS = re.compile(r"\b(already|ended|stopped|closed|historic|not active|inactive)\b", re.IGNORECASE)
_FIELD_IN_TEXT = re.compile(r"\b([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b")

T = TypeVar("T")


@dataclass(frozen=True)
class _Auth:
    """Which credential one request carries: the API key, a session token, or nothing."""

    bearer: Secret | None = None
    key: bool = True


_KEY = _Auth()
_NONE = _Auth(key=False)


class LiveAvatarClient:
    """One method per LiveAvatar endpoint the dashboard uses; raises :class:`LiveAvatarError` subclasses."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: Secret | str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        session: requests.Session | None = None,
    ) -> None:
        self.host = host_of(base_url)  # for messages: never the user:password@ of the URL
        self.base_url = base_url.strip().rstrip("/")
        self._api_key = _as_secret(api_key)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = max(0.0, backoff)
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._sleep: Callable[[float], None] = time.sleep
        self._secrets: set[str] = {self._api_key.reveal()} if self._api_key else set()

    @property
    def endpoint(self) -> str:
        """The account this client speaks to, as stored with each session in the usage log.

        Same scheme as :attr:`StreamingClient.endpoint` (base URL without user:password, ``#key-`` and a
        one-way fingerprint of the key) so reconciliation can tell accounts and engines apart alike.
        """
        return endpoint_of(self.base_url, self._api_key)

    def __repr__(self) -> str:
        url = self.endpoint.split("#", 1)[0]  # never user:password from the URL
        return f"LiveAvatarClient({url!r}, api_key={'set' if self._api_key else 'none'})"

    def __enter__(self) -> LiveAvatarClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    # Sessions -----------------------------------------------------------------------------------

    def create_session_token(self, config: SessionConfig) -> SessionToken:
        """Mint a session (not yet billed) and its one-use Bearer token. Never retried."""
        data = self._call("POST", "/v1/sessions/token", json=config.to_json())
        if not isinstance(data, Mapping) or not data.get("session_id") or not data.get("session_token"):
            raise self._malformed("POST /v1/sessions/token", "without session_id and session_token")
        token = Secret(str(data["session_token"]))
        self._secrets.add(token.reveal())
        return SessionToken(str(data["session_id"]), token)

    def start_session(self, token: SessionToken) -> StartedSession:
        """Start the session (billing starts; HTTP 201) with its Bearer token. Never retried."""
        self._secrets.add(token.session_token.reveal())
        data = self._call(
            "POST", "/v1/sessions/start", json={}, auth=_Auth(bearer=token.session_token), session_id=token.session_id
        )
        if not isinstance(data, Mapping) or not data.get("session_id"):
            raise self._malformed("POST /v1/sessions/start", "without a session_id")
        for key in ("livekit_client_token", "livekit_agent_token"):
            if data.get(key):
                self._secrets.add(str(data[key]))
        return StartedSession.from_data(data)

    def stop_session(self, session_id: str, reason: SessionEndReason = SessionEndReason.USER_CLOSED) -> None:
        """Stop any session of the account. An ended one raises :class:`SessionAlreadyStopped`."""
        body = {"session_id": self._require_id(session_id), "reason": SessionEndReason(reason).value}
        self._call("POST", "/v1/sessions/stop", json=body, retry=True, session_id=session_id, stopping=True)

    def keep_alive(self, session_id: str) -> None:
        body = {"session_id": self._require_id(session_id)}
        self._call("POST", "/v1/sessions/keep-alive", json=body, retry=True, session_id=session_id)

    def list_sessions(self, kind: SessionListType = SessionListType.ACTIVE) -> builtins.list[SessionEntry]:
        """Every session of one kind (``active`` or ``historic``), all pages, each session once."""
        kind = SessionListType(kind)
        return self._all_pages("/v1/sessions", SessionEntry.from_data, {"type": kind.value})

    def get_session(self, session_id: str) -> SessionEntry:
        path = f"/v1/sessions/{self._path_id(session_id)}"
        data = self._call("GET", path, retry=True, session_id=session_id)
        return self._parse_one(data, SessionEntry.from_data, f"GET {path}")

    def transcript(self, session_id: str, start_timestamp: int | None = None) -> Transcript:
        """What was said so far; poll a live session with ``start_timestamp = previous.next_timestamp``."""
        path = f"/v1/sessions/{self._path_id(session_id)}/transcript"
        params = {"start_timestamp": start_timestamp} if start_timestamp is not None else None
        data = self._call("GET", path, params=params, retry=True, session_id=session_id)
        return self._parse_one(data, Transcript.from_data, f"GET {path}")

    # Avatars, voices, contexts ------------------------------------------------------------------

    def avatars(self) -> builtins.list[Avatar]:
        """The account's own avatars (all pages)."""
        return self._all_pages("/v1/avatars", Avatar.from_data)

    def public_avatars(self) -> builtins.list[Avatar]:
        return self._all_pages("/v1/avatars/public", lambda d: Avatar.from_data(d, is_public=True))

    def voices(self, voice_type: str = "public") -> builtins.list[Voice]:
        if voice_type not in ("public", "private"):
            raise ValidationFailed("voice_type", "choose public or private", host=self.host)
        return self._all_pages("/v1/voices", Voice.from_data, {"voice_type": voice_type})

    def contexts(self) -> builtins.list[ContextSummary]:
        return self._all_pages("/v1/contexts", ContextSummary.from_data)

    def get_context(self, context_id: str) -> Context:
        path = f"/v1/contexts/{self._path_id(context_id)}"
        data = self._call("GET", path, retry=True, what=f"Context {context_id}")
        return self._parse_one(data, Context.from_data, f"GET {path}")

    def create_context(
        self, name: str, prompt: str, opening_text: str, links: Sequence[ContextLink | Mapping[str, Any]] = ()
    ) -> Context:
        data = self._call("POST", "/v1/contexts", json=context_body(name, prompt, opening_text, links))
        return self._parse_one(data, Context.from_data, "POST /v1/contexts")

    def update_context(
        self,
        context_id: str,
        name: str,
        prompt: str,
        opening_text: str,
        links: Sequence[ContextLink | Mapping[str, Any]] = (),
    ) -> Context:
        path = f"/v1/contexts/{self._path_id(context_id)}"
        body = context_body(name, prompt, opening_text, links)
        # A PATCH sending the whole record is idempotent: retrying it cannot change the result.
        data = self._call("PATCH", path, json=body, retry=True, what=f"Context {context_id}")
        return self._parse_one(data, Context.from_data, f"PATCH {path}")

    def delete_context(self, context_id: str) -> None:
        path = f"/v1/contexts/{self._path_id(context_id)}"
        self._call("DELETE", path, what=f"Context {context_id}")

    # Account --------------------------------------------------------------------------------------

    def credits_left(self) -> Decimal:
        data = self._call("GET", "/v1/users/credits", retry=True)
        raw = data.get("credits_left") if isinstance(data, Mapping) else None
        try:
            return parse_decimal(raw)
        except ValueError:
            raise self._malformed("GET /v1/users/credits", "without a numeric credits_left") from None

    def languages(self) -> builtins.list[Language]:
        data = self._call("GET", "/v1/languages", retry=True, auth=_NONE)
        raw = data.get("results") if isinstance(data, Mapping) else data
        return self._parse_items(raw, Language.from_data)

    # Plumbing -----------------------------------------------------------------------------------

    def _require_id(self, value: str) -> str:
        if not value or not str(value).strip():
            raise ValidationFailed("session_id", "is required", host=self.host)
        return str(value).strip()

    def _path_id(self, value: str) -> str:
        return quote(self._require_id(value), safe="")

    def _all_pages(
        self, path: str, parse: Callable[[dict[str, Any]], T], params: Mapping[str, Any] | None = None
    ) -> builtins.list[T]:
        """Page through ``{count, next, previous, results}`` until ``page * page_size >= count``."""
        items: builtins.list[T] = []
        seen: set[str] = set()
        for page in range(1, MAX_PAGES + 1):
            query = {**(params or {}), "page": page, "page_size": MAX_PAGE_SIZE}
            data = self._call("GET", path, params=query, retry=True)
            if isinstance(data, list):  # an unpaged list: everything at once
                return self._parse_items(data, parse)
            if not isinstance(data, Mapping) or not isinstance(data.get("results"), list):
                raise self._malformed(f"GET {path}", "without a results list")
            raw = data["results"]
            for entry in self._parse_items(raw, parse):
                key = str(getattr(entry, "id", id(entry)))
                if key not in seen:  # a session moving between pages while we read must not count twice
                    seen.add(key)
                    items.append(entry)
            count = _int_code(data.get("count"))
            if not raw or (count is not None and page * MAX_PAGE_SIZE >= count):
                return items
            if count is None and not data.get("next"):
                return items
        return items

    def _parse_items(self, raw: Any, parse: Callable[[dict[str, Any]], T]) -> builtins.list[T]:
        items: builtins.list[T] = []
        for entry in raw or []:
            if not isinstance(entry, dict):
                continue
            try:
                items.append(parse(entry))
            except (KeyError, ValueError, TypeError) as exc:
                # Named by type only: the entry's values are the server's and go nowhere.
                log.warning("skipped an entry the client cannot read (%s)", type(exc).__name__)
        return items

    def _parse_one(self, data: Any, parse: Callable[[dict[str, Any]], T], what: str) -> T:
        if not isinstance(data, dict):
            raise self._malformed(what, "without an object")
        try:
            return parse(data)
        except (KeyError, ValueError, TypeError):
            raise self._malformed(what, "with missing or unreadable fields") from None

    def _headers(self, auth: _Auth) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if auth.bearer is not None:
            headers["Authorization"] = f"Bearer {auth.bearer.reveal()}"
        elif auth.key and self._api_key:
            headers["X-API-KEY"] = self._api_key.reveal()
        return headers

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        retry: bool = False,
        auth: _Auth = _KEY,
        session_id: str | None = None,
        what: str | None = None,
        stopping: bool = False,
    ) -> Any:
        """Send one request (retrying idempotent ones) and return the envelope's ``data``."""
        attempts = 1 + (self.retries if retry else 0)
        for attempt in range(attempts):
            last = attempt + 1 >= attempts
            response, failure = self._send(method, path, json, params, auth)
            if failure is not None:
                if not last:
                    self._pause(method, path, self.backoff * 2**attempt, attempt, attempts)
                    continue
                raise failure
            assert response is not None
            status = response.status_code
            if not last and (status == 429 or status >= 500):
                delay = self.backoff * 2**attempt
                if status == 429:
                    wait = _retry_after(response)
                    if wait is not None and wait > MAX_RETRY_AFTER:
                        return self._decode(response, auth, session_id, what, stopping)
                    delay = max(delay, wait or 0.0)
                self._pause(method, path, delay, attempt, attempts)
                continue
            return self._decode(response, auth, session_id, what, stopping)
        raise AssertionError("unreachable")

    def _pause(self, method: str, path: str, delay: float, attempt: int, attempts: int) -> None:
        log.debug("%s %s: retrying in %.2f s (attempt %d of %d)", method, path, delay, attempt + 2, attempts)
        if delay > 0:
            self._sleep(delay)

    def _send(
        self, method: str, path: str, json: Any, params: Mapping[str, Any] | None, auth: _Auth
    ) -> tuple[requests.Response | None, LiveAvatarError | None]:
        """One HTTP exchange; a transport failure comes back as an error value, never as a chain."""
        response, kind = exchange(
            self._session,
            method,
            self.base_url + path,
            json=json,
            params=params,
            headers=self._headers(auth),
            timeout=self.timeout,
            log=log,
            path=path,
        )
        if kind is not None:
            return None, self._transport_error(kind)
        return response, None

    def _provider(self) -> str:
        return f"LiveAvatar ({self.host})"

    def _transport_error(self, kind: str) -> ProviderUnavailable:
        who = self._provider()
        messages = {
            "connect_timeout": f"{who} is unreachable: connecting timed out after {self.timeout:g} s. "
            "Check LIVEAVATAR_BASE_URL and your network.",
            "timeout": f"{who} did not answer within {self.timeout:g} s. It may be overloaded or down; "
            "try again in a minute.",
            "tls": f"{who} is unreachable: the secure (TLS) connection failed. Check LIVEAVATAR_BASE_URL "
            "(http vs https).",
            "dns": f"{who} is unreachable: its host name could not be resolved. Check LIVEAVATAR_BASE_URL and "
            "your internet connection.",
            "connection": f"{who} is unreachable: the connection was refused or dropped. Check "
            "LIVEAVATAR_BASE_URL and your network.",
            "request": f"{who} is unreachable: the request could not be sent. Check LIVEAVATAR_BASE_URL.",
        }
        return ProviderUnavailable(messages[kind], None, detail=kind, host=self.host)

    def _scrub(self, text: Any) -> str:
        message = " ".join(str(text).split())[:MAX_SERVER_MESSAGE]
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret and secret in message:
                message = message.replace(secret, "********")
        return message

    def _malformed(self, what: str, how: str) -> UnexpectedResponse:
        return UnexpectedResponse(None, None, detail=f"{what} answered {how}", host=self.host)

    def _decode(
        self, response: requests.Response, auth: _Auth, session_id: str | None, what: str | None, stopping: bool
    ) -> Any:
        status = response.status_code
        ok = 200 <= status < 300
        if ok and not response.content.strip():
            return None  # 204 No Content
        try:
            body: Any = response.json()
        except ValueError:
            if ok:
                raise UnexpectedResponse(None, status, detail="a non-JSON answer", host=self.host) from None
            raise self._error(status, None, response, auth, session_id, what, stopping) from None
        if ok:
            if not isinstance(body, dict) or "code" not in body:
                raise UnexpectedResponse(
                    None, status, detail="an answer without the code/data envelope", host=self.host
                )
            if _int_code(body.get("code")) in SUCCESS_CODES:
                return body.get("data")
        raise self._error(status, body, response, auth, session_id, what, stopping)

    def _error(
        self,
        status: int,
        body: Any,
        response: requests.Response,
        auth: _Auth,
        session_id: str | None,
        what: str | None,
        stopping: bool,
    ) -> LiveAvatarError:
        text, field = _error_text(body)
        if body is None:  # not JSON: a proxy's page or plain text
            kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            text = f"a non-JSON answer ({kind})" if "html" in kind else response.text
        detail = self._scrub(text)
        host = self.host
        lowered = detail.lower()
        if 200 <= status < 300:
            code = body.get("code") if isinstance(body, dict) else None
            return UnexpectedResponse(
                None, status, detail=f"code {self._scrub(code)}{': ' + detail if detail else ''}", host=host
            )
        if "credit" in lowered and ("insufficient" in lowered or "not enough" in lowered or "balance" in lowered):
            return InsufficientCredits(None, status, detail=detail, host=host)
        if "concurren" in lowered:
            return ConcurrencyLimit(None, status, detail=detail, host=host)
        if status in (401, 403):
            if auth.bearer is not None:
                message = (
                    f"{self._provider()} rejected the session token (HTTP {status}): it was already used or has "
                    "expired. Ask for a new session token."
                )
                return Unauthorized(message, status, detail=detail, host=host)
            return Unauthorized(None, status, detail=detail, host=host)
        if status == 422 or (status == 400 and field):
            return ValidationFailed(field or "request", detail or "invalid value", status, host=host)
        if status == 400:
            found = _FIELD_IN_TEXT.search(detail)
            return ValidationFailed(
                found.group(1) if found else "request", detail or "invalid value", status, host=host
            )
        if status == 404:
            if session_id is not None:
                if stopping and _ENDED_WORDS.search(detail):
                    return SessionAlreadyStopped(None, status, session_id=session_id, detail=detail, host=host)
                return SessionNotFound(None, status, session_id=session_id, detail=detail, host=host)
            return NotFound(None, status, what=what, detail=detail, host=host)
        if status == 405:
            return UnexpectedResponse(None, status, detail=detail or "method not allowed", host=host)
        if status == 429:
            return ProviderUnavailable(
                f"{self._provider()} is limiting the request rate (HTTP 429). Wait a moment and try again.",
                status,
                detail=detail,
                host=host,
            )
        if status >= 500:
            return ProviderUnavailable(None, status, detail=detail, host=host)
        return LiveAvatarError(None, status, detail=detail, host=host)


def _error_text(body: Any) -> tuple[str, str | None]:
    """The server's message and, for validation errors, the field, in the contract's order:
    ``message`` → ``detail[].msg`` → ``data[0].message`` → ``data.message`` → ``error`` → (raw text).
    """
    if not isinstance(body, dict):
        return ("" if body is None or isinstance(body, list) else str(body)), None
    field = None
    detail = body.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        loc = detail[0].get("loc")
        if isinstance(loc, list | tuple):
            parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
            field = ".".join(parts) or None
    message = body.get("message")
    if isinstance(message, str) and message.strip() and message.strip().lower() not in ("success", "error"):
        return message.strip(), field
    candidates: list[Any] = []
    if isinstance(detail, list):
        candidates.extend(d.get("msg") for d in detail if isinstance(d, dict))
    elif isinstance(detail, str):
        candidates.append(detail)
    data = body.get("data")
    if isinstance(data, list) and data and isinstance(data[0], dict):
        candidates.append(data[0].get("message"))
    if isinstance(data, dict):
        candidates.append(data.get("message"))
    error = body.get("error")
    if isinstance(error, dict):
        candidates.append(error.get("message"))
    elif error:
        candidates.append(error)
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip(), field
    if isinstance(message, str) and message.strip():
        return message.strip(), field
    return "", field
