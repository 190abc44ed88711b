"""HTTP client for the streaming avatar API, shared by HeyGen and the local engine.

Credentials travel only in request headers; no exception raised here carries a ``requests``
exception (whose text can hold URLs) as its cause or context, and server messages are scrubbed.
"""

from __future__ import annotations

import builtins
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from lib.heygen.errors import (
    CODE_CLASSES,
    SESSION_STATES,
    AvatarNotFound,
    Forbidden,
    HeyGenError,
    InvalidParameter,
    MissingParameter,
    ProviderUnavailable,
    RateLimited,
    SessionNotFound,
    SessionStateError,
    Unauthorized,
    UnknownError,
)
from lib.heygen.models import (
    TASK_MODES,
    TASK_TYPES,
    ActiveSession,
    Avatar,
    HistorySession,
    NewSession,
    NewSessionRequest,
    Quota,
    TaskResult,
    Voice,
)
from lib.http_exchange import NOT_SENT, endpoint_of, exchange, host_of
from lib.settings import Secret

log = logging.getLogger("avatar_ops.heygen")

SUCCESS_CODE = 100
MAX_SERVER_MESSAGE = 300
MAX_HISTORY_PAGES = 10_000
EMPTY_MESSAGE = "Type a message for the avatar first."  # whatever the mode: it answers or repeats it
_STATE_IN_MESSAGE = re.compile(r"state\s+wrong\W*(\w+)", re.IGNORECASE)
_STRING_CODES: dict[str, type[HeyGenError]] = {
    "unauthorized": Unauthorized,
    "authentication_failed": Unauthorized,
    "invalid_api_key": Unauthorized,
    "forbidden": Forbidden,
    "invalid_parameter": InvalidParameter,
    "missing_parameter": MissingParameter,
}

T = TypeVar("T")


@dataclass(frozen=True)
class _Reply:
    body: dict[str, Any]
    data: Any


def _as_secret(value: Secret | str | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value or None
    return Secret(value) if value else None


def endpoint_reachable(endpoint: str, timeout: float = 1.0) -> bool:
    """Is the engine or account behind a :attr:`StreamingClient.endpoint` (stored in the log) still there?

    A local engine answers ``GET /healthz`` without a key; it is gone when the connection is refused or
    something else answers there. HeyGen cannot be asked about another account's sessions without that
    account's key, so its endpoints count as reachable (their sessions stay open until a dashboard using
    that key reconciles them).
    """
    url = endpoint.split("#", 1)[0]
    host = urlsplit(url).hostname or ""
    if host == "heygen.com" or host.endswith(".heygen.com"):
        return True
    try:
        reply = requests.get(f"{url}/healthz", timeout=timeout)
        return reply.ok and reply.json().get("status") == "ok"
    except requests.Timeout:
        return True  # no answer is not "gone": a slow or firewalled engine keeps its sessions open
    except (requests.RequestException, ValueError, AttributeError):
        return False


def _int_code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _date_param(value: date | datetime | str | float) -> str | int | float:
    if isinstance(value, datetime):
        aware = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    return value


class StreamingClient:
    """One method per endpoint of ``/v1/streaming.*`` and friends; raises :class:`HeyGenError` subclasses.

    Only idempotent calls are retried (connection errors, 429, 5xx); ``new``, ``task``, ``start``,
    ``create_token``, ``interrupt`` are sent exactly once because a retry could open a second billable
    session or speak twice.
    """

    def __init__(
        self,
        base_url: str,
        api_key: Secret | str | None = None,
        *,
        token: Secret | str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.3,
        session: requests.Session | None = None,
        provider_label: str | None = None,
        task_timeout: float = 120.0,
        max_retry_after: float = 5.0,
        new_timeout: float = 30.0,
    ) -> None:
        self.host = host_of(base_url)  # for messages: never the user:password@ of the URL
        self.base_url = base_url.strip().rstrip("/")
        hostname = self.host.split(":", 1)[0]
        is_heygen = hostname == "heygen.com" or hostname.endswith(".heygen.com")
        self.provider_label = provider_label or ("HeyGen" if is_heygen else "Local engine")
        self._api_key = _as_secret(api_key)
        self._token = _as_secret(token)
        self.timeout = timeout
        self.task_timeout = task_timeout
        # ``new`` is sent once and cannot be taken back: giving up early leaves the provider making a session
        # nobody holds (a loaded local engine took over 10 s), so its answer is waited for longer.
        self.new_timeout = new_timeout
        self.retries = max(0, retries)
        self.backoff = max(0.0, backoff)
        self.max_retry_after = max_retry_after
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._sleep: Callable[[float], None] = time.sleep

    @property
    def endpoint(self) -> str:
        """Which provider account or engine this client speaks to, as stored with each session in the
        usage log: the base URL (without user:password) and a one-way fingerprint of the API key.

        Two dashboards (or the app and the command line) can share one log while using different engines
        or HeyGen accounts; reconciliation must only close sessions of the endpoint it listed.
        """
        return endpoint_of(self.base_url, self._api_key)

    def __repr__(self) -> str:
        auth = "api_key" if self._api_key else "token" if self._token else "none"
        return f"StreamingClient({self.provider_label!r}, {self.base_url!r}, auth={auth})"

    def __enter__(self) -> StreamingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    # Endpoints ----------------------------------------------------------------------------------

    def create_token(self) -> str:
        data = self._call("POST", "/v1/streaming.create_token").data
        token = data.get("token") if isinstance(data, dict) else None
        if not token:
            raise self._malformed("streaming.create_token", "without a token")
        return str(token)

    def new(self, request: NewSessionRequest | None = None) -> NewSession:
        request = request or NewSessionRequest()
        reply = self._call(
            "POST",
            "/v1/streaming.new",
            json=request.to_json(),
            avatar_id=request.avatar,
            timeout=(self.timeout, max(self.timeout, self.new_timeout)),
        )
        if not isinstance(reply.data, dict) or not reply.data.get("session_id"):
            raise self._malformed("streaming.new", "without a session_id")
        return NewSession.from_data(reply.data)

    def start(self, session_id: str, sdp_answer: str | None = None) -> None:
        body: dict[str, Any] = {"session_id": self._require_session(session_id)}
        if sdp_answer is not None:
            body["sdp"] = {"type": "answer", "sdp": sdp_answer}
        self._call("POST", "/v1/streaming.start", json=body, session_id=session_id)

    def ice(self, session_id: str, candidate: dict[str, Any]) -> None:
        body = {"session_id": self._require_session(session_id), "candidate": candidate}
        self._call("POST", "/v1/streaming.ice", json=body, session_id=session_id)

    def task(self, session_id: str, text: str, task_type: str = "repeat", task_mode: str = "sync") -> TaskResult:
        self._require_session(session_id)
        if not text or not text.strip():
            raise MissingParameter(None, EMPTY_MESSAGE, user_message=EMPTY_MESSAGE)
        if task_type not in TASK_TYPES:
            message = f"Invalid task type {task_type!r}: choose repeat, talk or chat."
            raise InvalidParameter(None, message, user_message=message)
        if task_mode not in TASK_MODES:
            message = f"Invalid task mode {task_mode!r}: choose sync or async."
            raise InvalidParameter(None, message, user_message=message)
        body = {"session_id": session_id, "text": text, "task_type": task_type, "task_mode": task_mode}
        # A sync task answers only after the avatar has finished speaking.
        timeout = (self.timeout, max(self.timeout, self.task_timeout)) if task_mode == "sync" else None
        reply = self._call("POST", "/v1/streaming.task", json=body, timeout=timeout, session_id=session_id)
        return TaskResult.from_data(reply.data if isinstance(reply.data, dict) else {})

    def interrupt(self, session_id: str) -> None:
        self._session_call("/v1/streaming.interrupt", session_id)

    def keep_alive(self, session_id: str) -> None:
        self._session_call("/v1/streaming.keep_alive", session_id, retry=True)

    def stop(self, session_id: str) -> None:
        self._session_call("/v1/streaming.stop", session_id, retry=True)

    def start_listening(self, session_id: str) -> None:
        self._session_call("/v1/streaming.start_listening", session_id)

    def stop_listening(self, session_id: str) -> None:
        self._session_call("/v1/streaming.stop_listening", session_id)

    def list(self) -> list[ActiveSession]:
        data = self._call("GET", "/v1/streaming.list", retry=True).data
        raw = data.get("sessions") if isinstance(data, dict) else data
        return self._parse_items(raw, ActiveSession.from_data)

    def list_history(
        self,
        date_from: date | datetime | str | None = None,
        date_to: date | datetime | str | None = None,
        page_size: int = 100,
    ) -> Iterator[HistorySession]:
        """Every session in the history, fetching page after page.

        Follows ``next_pagination_token`` when the server gives one (sent back as ``token``), otherwise
        ``page``/``page_size``/``total``; stops on an empty page or a page with nothing new.
        """
        params: dict[str, Any] = {"page_size": page_size}
        if date_from is not None:
            params["date_from"] = _date_param(date_from)
        if date_to is not None:
            params["date_to"] = _date_param(date_to)
        page, token = 1, None
        seen_ids: set[str] = set()
        seen_tokens: set[str] = set()
        for _ in range(MAX_HISTORY_PAGES):
            query = {**params, "page": page}
            if token:
                query["token"] = token
            reply = self._call("GET", "/v2/streaming.list", params=query, retry=True)
            raw, meta = self._history_page(reply)
            items = self._parse_items(raw, HistorySession.from_data)
            fresh = [item for item in items if item.session_id not in seen_ids]
            seen_ids.update(item.session_id for item in fresh)
            yield from fresh
            if not fresh:
                return
            next_token = meta.get("next_pagination_token") or meta.get("next_token")
            if next_token and str(next_token) not in seen_tokens:
                token = str(next_token)
                seen_tokens.add(token)
                page += 1
                continue
            total = _int_code(meta.get("total"))
            size = _int_code(meta.get("page_size")) or page_size
            current = _int_code(meta.get("page")) or page
            if total is not None:
                if current * size >= total:
                    return
            elif len(raw) < size:
                return
            page = current + 1
            token = None

    def avatars(self) -> builtins.list[Avatar]:
        data = self._call("GET", "/v1/streaming/avatar.list", retry=True).data
        raw = data.get("avatars") if isinstance(data, dict) else data
        return self._parse_items(raw, Avatar.from_data)

    def voices(self) -> builtins.list[Voice]:
        data = self._call("GET", "/v2/voices", retry=True).data
        raw = data.get("voices") if isinstance(data, dict) else data
        return self._parse_items(raw, Voice.from_data)

    def remaining_quota(self) -> Quota:
        data = self._call("GET", "/v2/user/remaining_quota", retry=True).data
        if not isinstance(data, dict):
            raise self._malformed("remaining_quota", "without a quota")
        return Quota.from_data(data)

    # Plumbing -----------------------------------------------------------------------------------

    def _session_call(self, path: str, session_id: str, *, retry: bool = False) -> None:
        body = {"session_id": self._require_session(session_id)}
        self._call("POST", path, json=body, retry=retry, session_id=session_id)

    def _require_session(self, session_id: str) -> str:
        if not session_id:
            message = "A session id is required."
            raise MissingParameter(None, message, user_message=message)
        return session_id

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["X-Api-Key"] = self._api_key.reveal()
        elif self._token:
            headers["Authorization"] = f"Bearer {self._token.reveal()}"
        return headers

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        retry: bool = False,
        timeout: float | tuple[float, float] | None = None,
        session_id: str | None = None,
        avatar_id: str | None = None,
    ) -> _Reply:
        attempts = 1 + (self.retries if retry else 0)
        for attempt in range(attempts):
            response, failure, retryable = self._send(method, path, json, params, timeout or self.timeout)
            last = attempt + 1 >= attempts
            if failure is not None:
                if retryable and not last:
                    self._pause(method, path, self.backoff * 2**attempt, attempt, attempts)
                    continue
                raise failure
            assert response is not None
            status = response.status_code
            if not last and (status == 429 or status >= 500):
                delay = self.backoff * 2**attempt
                if status == 429:
                    wait = _retry_after(response)
                    if wait is not None and wait > self.max_retry_after:
                        return self._decode(response, session_id, avatar_id)
                    delay = max(delay, wait or 0.0)
                self._pause(method, path, delay, attempt, attempts)
                continue
            return self._decode(response, session_id, avatar_id)
        raise AssertionError("unreachable")

    def _pause(self, method: str, path: str, delay: float, attempt: int, attempts: int) -> None:
        log.debug("%s %s: retrying in %.2f s (attempt %d of %d)", method, path, delay, attempt + 2, attempts)
        if delay > 0:
            self._sleep(delay)

    def _send(
        self,
        method: str,
        path: str,
        json: dict[str, Any] | None,
        params: dict[str, Any] | None,
        timeout: float | tuple[float, float],
    ) -> tuple[requests.Response | None, HeyGenError | None, bool]:
        """One HTTP exchange; a transport failure comes back as an error value, never as a chain."""
        response, kind = exchange(
            self._session,
            method,
            self.base_url + path,
            json=json,
            params=params,
            headers=self._headers(),
            timeout=timeout,
            log=log,
            path=path,
        )
        if kind is not None:
            read_timeout = timeout[1] if isinstance(timeout, tuple) else timeout
            return None, self._transport_error(kind, read_timeout), kind in NOT_SENT
        return response, None, False

    def _provider(self) -> str:
        return f"{self.provider_label} ({self.host})"

    def _is_local(self) -> bool:
        return self.provider_label.lower() != "heygen"

    def _transport_error(self, kind: str, timeout: float) -> ProviderUnavailable:
        who = self._provider()
        running = ", and that the engine is running" if self._is_local() else ""
        messages = {
            "connect_timeout": (
                f"{who} is unreachable: connecting timed out after {timeout:g} s. "
                f"Check the base URL and your network{running}."
            ),
            "timeout": (
                f"{who} did not answer within {timeout:g} s. It may be overloaded or down; "
                "check your network and try again in a minute."
            ),
            "tls": (f"{who} is unreachable: the secure (TLS) connection failed. Check the base URL (http vs https)."),
            "dns": (
                f"{who} is unreachable: its host name could not be resolved. "
                "Check the base URL and your internet connection."
            ),
            "connection": (
                f"{who} is unreachable: the connection was refused or dropped. "
                f"Check the base URL and your network{running}."
            ),
            "request": f"{who} is unreachable: the request could not be sent. Check the base URL.",
        }
        return ProviderUnavailable(
            None, kind, None, user_message=messages[kind], provider_label=self.provider_label, host=self.host
        )

    def _scrub(self, text: Any) -> str:
        message = " ".join(str(text).split())[:MAX_SERVER_MESSAGE]
        for secret in (self._api_key, self._token):
            if secret and secret.reveal() in message:
                message = message.replace(secret.reveal(), "********")
        return message

    def _malformed(self, endpoint: str, what: str) -> UnknownError:
        message = f"{self._provider()} answered {endpoint} {what}; it may not speak the streaming API."
        return UnknownError(None, message, user_message=message, provider_label=self.provider_label, host=self.host)

    def _decode(self, response: requests.Response, session_id: str | None, avatar_id: str | None) -> _Reply:
        status = response.status_code
        ok = 200 <= status < 300
        if ok and not response.content.strip():
            return _Reply({}, None)
        body: Any = None
        parsed = True
        try:
            body = response.json()
        except ValueError:
            parsed = False
        if not parsed:
            raise self._not_json(response)
        if not isinstance(body, dict):
            if ok:
                return _Reply({}, body)
            body = {}
        code, error = body.get("code"), body.get("error")
        failed = not ok or (code is not None and _int_code(code) != SUCCESS_CODE) or error not in (None, False, "")
        if not failed:
            return _Reply(body, body.get("data", body))
        raise self._server_error(status, body, response, session_id, avatar_id)

    def _not_json(self, response: requests.Response) -> HeyGenError:
        status = response.status_code
        kwargs: dict[str, Any] = {"provider_label": self.provider_label, "host": self.host}
        if status == 401:
            return Unauthorized(None, "", status, **kwargs)
        if status == 403:
            return Forbidden(None, "", status, **kwargs)
        if status == 429:
            return RateLimited(None, "", status, retry_after=_retry_after(response), **kwargs)
        kind = self._scrub(response.headers.get("Content-Type", "no content type").split(";")[0])[:40]
        if status >= 500:
            message = (
                f"{self._provider()} is down or overloaded (HTTP {status}, {kind}). "
                "Try again in a minute; if it persists, check the service's status"
                + (" and that the engine is running." if self._is_local() else " page.")
            )
        else:
            message = (
                f"{self._provider()} did not answer like the streaming API (HTTP {status}, {kind}): "
                "it is down or the base URL is wrong. Check the base URL and that the service is running."
            )
        return ProviderUnavailable(None, f"non-JSON answer ({kind})", status, user_message=message, **kwargs)

    def _server_error(
        self,
        status: int,
        body: dict[str, Any],
        response: requests.Response,
        session_id: str | None,
        avatar_id: str | None,
    ) -> HeyGenError:
        error = body.get("error")
        raw_code: Any = None
        message: Any = ""
        if isinstance(error, dict):
            raw_code = error.get("code")
            message = error.get("message") or error.get("detail") or ""
        elif isinstance(error, str):
            message = error
        top_code = body.get("code")
        if top_code is not None and _int_code(top_code) != SUCCESS_CODE:
            raw_code = top_code
        message = self._scrub(message or body.get("message") or body.get("msg") or body.get("detail") or "")
        code = _int_code(raw_code)
        cls = CODE_CLASSES.get(code) if code is not None else None
        if cls is None and isinstance(raw_code, str):
            cls = _STRING_CODES.get(raw_code.lower())
            if cls is None and raw_code:
                message = f"{self._scrub(raw_code)[:60]}: {message}" if message else self._scrub(raw_code)[:60]
        if cls is None:
            cls = self._class_for_status(status)
        kwargs: dict[str, Any] = {"provider_label": self.provider_label, "host": self.host}
        if cls is SessionNotFound:
            kwargs["session_id"] = session_id
        elif cls is AvatarNotFound:
            kwargs["avatar_id"] = avatar_id
        elif cls is SessionStateError:
            found = _STATE_IN_MESSAGE.search(message)
            state = found.group(1).lower() if found else None
            kwargs["state"] = state if state in SESSION_STATES.values() else SESSION_STATES.get(code or 0)
        elif cls is RateLimited:
            kwargs["retry_after"] = _retry_after(response)
        elif cls is ProviderUnavailable:
            kwargs["user_message"] = (
                f"{self._provider()} is down or failing (HTTP {status}){': ' + message if message else ''}. "
                "Try again in a minute; if it persists, check the service's status."
            )
        return cls(code, message, status, **kwargs)

    @staticmethod
    def _class_for_status(status: int) -> type[HeyGenError]:
        if status == 401:
            return Unauthorized
        if status == 403:
            return Forbidden
        if status == 429:
            return RateLimited
        if status >= 500:
            return ProviderUnavailable
        return UnknownError

    def _parse_items(self, raw: Any, parse: Callable[[dict[str, Any]], T]) -> builtins.list[T]:
        items: builtins.list[T] = []
        for entry in raw or []:
            if not isinstance(entry, dict):
                continue
            try:
                items.append(parse(entry))
            except KeyError:
                log.debug("skipped an entry without its id field")
        return items

    @staticmethod
    def _history_page(reply: _Reply) -> tuple[builtins.list[Any], dict[str, Any]]:
        data = reply.data
        if isinstance(data, list):
            return data, reply.body
        if isinstance(data, dict):
            raw = data.get("data")
            if raw is None:
                raw = data.get("sessions")
            return (raw if isinstance(raw, list) else []), {**reply.body, **data}
        return [], reply.body
