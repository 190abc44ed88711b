"""One HTTP exchange for the provider clients (HeyGen-shaped and LiveAvatar): a transport failure comes back
as a short kind the client turns into its own message, never as an exception chain that could carry a key."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import requests

from lib.settings import Secret

TransportFailure = Literal["connect_timeout", "timeout", "tls", "dns", "connection", "request"]
# Failures where the request never reached the server: safe to retry even for a call that is not idempotent.
NOT_SENT: tuple[TransportFailure, ...] = ("connect_timeout", "connection")


def is_dns_failure(exc: Exception) -> bool:
    text = repr(exc)
    markers = ("NameResolutionError", "Name or service not known", "nodename nor servname", "getaddrinfo")
    return any(marker in text for marker in markers)


def exchange(
    session: requests.Session,
    method: str,
    url: str,
    *,
    json: Any,
    params: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    timeout: float | tuple[float, float],
    log: logging.Logger,
    path: str,
) -> tuple[requests.Response | None, TransportFailure | None]:
    """Send one request; ``path`` (never the headers) is what the debug log names."""
    started = time.perf_counter()
    kind: TransportFailure | None = None
    response = None
    try:
        response = session.request(
            method, url, json=json, params=dict(params) if params else None, headers=dict(headers), timeout=timeout
        )
    except requests.exceptions.ConnectTimeout:
        kind = "connect_timeout"
    except requests.exceptions.Timeout:
        kind = "timeout"
    except requests.exceptions.SSLError:
        kind = "tls"
    except requests.exceptions.ConnectionError as exc:
        kind = "dns" if is_dns_failure(exc) else "connection"
    except requests.exceptions.RequestException:
        kind = "request"
    elapsed = (time.perf_counter() - started) * 1000
    if response is None:
        log.debug("%s %s failed after %.0f ms: %s", method, path, elapsed, kind)
        return None, kind or "request"
    log.debug("%s %s -> HTTP %s in %.0f ms", method, path, response.status_code, elapsed)
    return response, None


def host_of(base_url: str | None) -> str:
    """``host[:port]`` of a provider URL (never the user:password part); ValueError for anything but http(s)."""
    parts = urlsplit((base_url or "").strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("base_url must be an http:// or https:// URL with a host name.")
    return parts.hostname + (f":{parts.port}" if parts.port else "")


def endpoint_of(base_url: str, api_key: Secret | None) -> str:
    """Which provider account or engine a client speaks to, as stored with each session in the usage log: the
    base URL (without user:password) and a one-way fingerprint of the API key.

    Two dashboards (or the app and the command line) can share one log while using different engines or
    accounts; reconciliation must only close sessions of the endpoint it listed.
    """
    parts = urlsplit(base_url)
    url = f"{parts.scheme}://{host_of(base_url)}{parts.path}"
    if api_key is None:
        return url
    digest = hashlib.sha256(b"avatar-ops endpoint\0" + api_key.reveal().encode()).hexdigest()
    return f"{url}#key-{digest[:12]}"
