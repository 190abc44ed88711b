"""The streaming API client against the documented wire shapes (docs/heygen-api.md)."""

from __future__ import annotations

import json
import logging
import pickle
import socket
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, date, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from lib.heygen import (
    ActiveSession,
    AvatarNotFound,
    ConcurrencyLimit,
    Forbidden,
    HeyGenError,
    InvalidParameter,
    MissingParameter,
    NewSessionRequest,
    NoApiAccess,
    ProviderUnavailable,
    RateLimited,
    SessionNotFound,
    SessionStateError,
    StreamingClient,
    TtsError,
    Unauthorized,
    UnknownError,
)
from lib.settings import Secret

KEY = "hg-test-KEY-7f3c9a1e5b2d4c6a"
TOKEN = "tok-test-TOKEN-0a9b8c7d6e5f"
BASE = "https://api.heygen.com"
SID = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"


def ok(data: object) -> dict[str, object]:
    return {"code": 100, "message": "success", "data": data}


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def client() -> Iterator[StreamingClient]:
    with StreamingClient(BASE, Secret(KEY), backoff=0) as c:
        yield c


def body_of(call: responses.Call) -> dict[str, object]:
    return json.loads(call.request.body)


def query_of(call: responses.Call) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Auth ---------------------------------------------------------------------------------------------


def test_api_key_goes_in_x_api_key_header(rsps, client):
    rsps.get(f"{BASE}/v1/streaming.list", json=ok({"sessions": []}))
    client.list()
    headers = rsps.calls[0].request.headers
    assert headers["X-Api-Key"] == KEY
    assert "Authorization" not in headers


def test_token_goes_in_bearer_header_and_plain_strings_work(rsps):
    rsps.get(f"{BASE}/v1/streaming.list", json=ok({"sessions": []}))
    StreamingClient(BASE, token=TOKEN).list()
    headers = rsps.calls[0].request.headers
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert "X-Api-Key" not in headers


def test_create_token_reads_error_data_envelope(rsps, client):
    rsps.post(f"{BASE}/v1/streaming.create_token", json={"error": None, "data": {"token": "abc.def"}})
    assert client.create_token() == "abc.def"


def test_base_url_any_host_and_trailing_slash(rsps):
    rsps.get("http://127.0.0.1:8765/v1/streaming.list", json=ok({"sessions": []}))
    local = StreamingClient("http://127.0.0.1:8765/", "engine-key")
    assert local.base_url == "http://127.0.0.1:8765"
    assert local.provider_label == "Local engine"
    assert local.list() == []
    assert StreamingClient(BASE).provider_label == "HeyGen"


def test_rejects_a_base_url_that_is_not_http():
    with pytest.raises(ValueError):
        StreamingClient("api.heygen.com", KEY)


# streaming.new --------------------------------------------------------------------------------------


def test_new_v2_livekit_shape(rsps, client):
    rsps.post(
        f"{BASE}/v1/streaming.new",
        json=ok(
            {
                "session_id": SID,
                "access_token": "lk.jwt.token",
                "url": "wss://heygen-feapbkvq.livekit.cloud",
                "sdp": None,
                "ice_servers": None,
                "ice_servers2": None,
                "is_paid": True,
                "session_duration_limit": 600,
            }
        ),
    )
    request = NewSessionRequest(
        avatar_id="Wayne_20240711",
        voice_id="v-1",
        voice_rate=1.2,
        voice_emotion="friendly",
        quality="high",
        version="v2",
        activity_idle_timeout=300,
        language="en",
    )
    session = client.new(request)
    assert body_of(rsps.calls[0]) == {
        "avatar_id": "Wayne_20240711",
        "voice": {"voice_id": "v-1", "rate": 1.2, "emotion": "friendly"},
        "quality": "high",
        "version": "v2",
        "activity_idle_timeout": 300,
        "language": "en",
    }
    assert session.session_id == SID
    assert session.access_token == "lk.jwt.token"
    assert session.url == "wss://heygen-feapbkvq.livekit.cloud"
    assert session.sdp is None
    assert session.ice_servers == []
    assert session.session_duration_limit == 600
    assert session.is_paid is True
    assert session.transport == "livekit"
    assert "lk.jwt.token" not in repr(session)


def test_new_legacy_webrtc_shape(rsps, client):
    ice = [{"urls": ["turn:turn.example:3478"], "username": "u", "credential": "c"}]
    rsps.post(
        f"{BASE}/v1/streaming.new",
        json=ok(
            {
                "session_id": SID,
                "sdp": {"type": "offer", "sdp": "v=0\r\n"},
                "ice_servers2": ice,
                "realtime_endpoint": "wss://rt.example/ws",
            }
        ),
    )
    session = client.new(NewSessionRequest(avatar_name="josh_lite", video_encoding="vp8"))
    assert body_of(rsps.calls[0]) == {"avatar_name": "josh_lite", "video_encoding": "VP8"}
    assert session.sdp == {"type": "offer", "sdp": "v=0\r\n"}
    assert session.ice_servers == ice
    assert session.transport == "webrtc"
    assert session.realtime_endpoint == "wss://rt.example/ws"
    assert session.access_token is None and session.session_duration_limit is None


def test_new_seed_shape_uses_ice_servers_and_defaults_to_empty_body(rsps, client):
    rsps.post(
        f"{BASE}/v1/streaming.new",
        json=ok({"session_id": SID, "access_token": "t", "url": "wss://x", "ice_servers": [{"urls": "stun:x"}]}),
    )
    session = client.new()
    assert body_of(rsps.calls[0]) == {}
    assert session.ice_servers == [{"urls": "stun:x"}]


def test_new_without_session_id_is_an_error(rsps, client):
    rsps.post(f"{BASE}/v1/streaming.new", json=ok({}))
    with pytest.raises(UnknownError, match="session_id"):
        client.new()


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"quality": "ultra"}, "low, medium or high"),
        ({"video_encoding": "AV1"}, "VP8 or H264"),
        ({"activity_idle_timeout": 29}, "between 30 and 3600"),
        ({"activity_idle_timeout": 3601}, "between 30 and 3600"),
        ({"voice_rate": 2.0}, "between 0.5 and 1.5"),
        ({"version": "v3"}, "v2"),
    ],
)
def test_new_session_request_is_validated_before_any_http(rsps, client, kwargs, words):
    with pytest.raises(InvalidParameter, match=words):
        client.new(NewSessionRequest(**kwargs))
    assert len(rsps.calls) == 0


def test_new_session_request_normalises_case_and_accepts_limits():
    request = NewSessionRequest(quality="HIGH", video_encoding="h264", activity_idle_timeout=30)
    assert request.to_json() == {"quality": "high", "video_encoding": "H264", "activity_idle_timeout": 30}
    assert NewSessionRequest(activity_idle_timeout=3600).activity_idle_timeout == 3600


# session calls -----------------------------------------------------------------------------------


def test_start_sends_sdp_answer_only_when_given(rsps, client):
    rsps.post(f"{BASE}/v1/streaming.start", json=ok(None))
    client.start(SID, "v=0 answer")
    client.start(SID)
    assert body_of(rsps.calls[0]) == {"session_id": SID, "sdp": {"type": "answer", "sdp": "v=0 answer"}}
    assert body_of(rsps.calls[1]) == {"session_id": SID}


def test_ice_sends_candidate(rsps, client):
    rsps.post(f"{BASE}/v1/streaming.ice", json=ok(None))
    candidate = {"candidate": "candidate:1 1 udp 1 10.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
    client.ice(SID, candidate)
    assert body_of(rsps.calls[0]) == {"session_id": SID, "candidate": candidate}


def test_task_returns_id_and_duration(rsps, client):
    rsps.post(f"{BASE}/v1/streaming.task", json=ok({"duration_ms": 1834.5, "task_id": "t-1"}))
    result = client.task(SID, "Hello there", task_type="chat", task_mode="async")
    assert (result.task_id, result.duration_ms) == ("t-1", 1834.5)
    assert body_of(rsps.calls[0]) == {
        "session_id": SID,
        "text": "Hello there",
        "task_type": "chat",
        "task_mode": "async",
    }


def test_sync_task_waits_longer_than_the_default_timeout(rsps):
    rsps.post(f"{BASE}/v1/streaming.task", json=ok({"duration_ms": 10, "task_id": "t"}))
    c = StreamingClient(BASE, KEY, timeout=5, task_timeout=90)
    c.task(SID, "hi")
    c.task(SID, "hi", task_mode="async")
    assert rsps.calls[0].request.req_kwargs["timeout"] == (5, 90)
    assert rsps.calls[1].request.req_kwargs["timeout"] == 5


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"text": ""}, MissingParameter),
        ({"text": "hi", "task_type": "sing"}, InvalidParameter),
        ({"text": "hi", "task_mode": "later"}, InvalidParameter),
    ],
)
def test_task_rejects_bad_arguments_locally(rsps, client, kwargs, error):
    with pytest.raises(error):
        client.task(SID, **kwargs)
    assert len(rsps.calls) == 0


@pytest.mark.parametrize("name", ["interrupt", "keep_alive", "stop", "start_listening", "stop_listening"])
def test_session_commands_post_session_id(rsps, client, name):
    rsps.post(f"{BASE}/v1/streaming.{name}", json=ok(None))
    assert getattr(client, name)(SID) is None
    assert body_of(rsps.calls[0]) == {"session_id": SID}


def test_empty_session_id_is_refused_locally(rsps, client):
    with pytest.raises(MissingParameter, match="session id"):
        client.stop("")
    assert len(rsps.calls) == 0


# listings ------------------------------------------------------------------------------------------


def test_list_active_sessions_with_utc_times(rsps, client):
    rsps.get(
        f"{BASE}/v1/streaming.list",
        json=ok(
            {
                "sessions": [
                    {"session_id": "a", "status": "connected", "created_at": 1717000000},
                    {"session_id": "b", "status": "new", "created_at": 1717000060.5},
                ]
            }
        ),
    )
    sessions = client.list()
    assert sessions[0] == ActiveSession("a", "connected", datetime(2024, 5, 29, 16, 26, 40, tzinfo=UTC))
    assert sessions[1].status == "new"
    assert sessions[1].created_at.tzinfo is UTC


def _history_item(n: int) -> dict[str, object]:
    return {
        "session_id": f"s{n}",
        "status": "closed",
        "created_at": 1717000000 + n,
        "api_key_type": "api",
        "duration": 30 + n,
        "avatar_id": "Wayne_20240711",
        "voice_name": "Ana",
    }


def test_list_history_follows_pagination_tokens_over_three_pages(rsps, client):
    for n, token in ((1, "p2"), (2, "p3"), (3, "")):
        items = [_history_item(i) for i in (2 * n - 1, 2 * n) if i <= 5]
        page = {"total": 5, "page": n, "page_size": 2, "next_pagination_token": token, "data": items}
        rsps.get(f"{BASE}/v2/streaming.list", json=ok(page))
    history = list(client.list_history(date_from=date(2024, 5, 1), date_to=date(2024, 5, 31), page_size=2))
    assert [h.session_id for h in history] == ["s1", "s2", "s3", "s4", "s5"]
    assert history[0].duration == 31 and history[0].voice_name == "Ana"
    assert history[0].created_at == datetime.fromtimestamp(1717000001, UTC)
    assert len(rsps.calls) == 3
    queries = [query_of(call) for call in rsps.calls]
    assert queries[0] == {"page_size": "2", "page": "1", "date_from": "2024-05-01", "date_to": "2024-05-31"}
    assert queries[1]["token"] == "p2" and queries[2]["token"] == "p3"


def test_list_history_page_and_total_with_data_at_top_level(rsps, client):
    for n in range(3):
        items = [_history_item(2 * n + 1), _history_item(2 * n + 2)][: 2 if n < 2 else 1]
        rsps.get(
            f"{BASE}/v2/streaming.list",
            json={
                "code": 100,
                "message": "success",
                "total": 5,
                "page": n + 1,
                "page_size": 2,
                "data": items,
            },
        )
    history = list(client.list_history(page_size=2))
    assert [h.session_id for h in history] == ["s1", "s2", "s3", "s4", "s5"]
    assert [query_of(call)["page"] for call in rsps.calls] == ["1", "2", "3"]


def test_list_history_stops_when_server_ignores_paging(rsps, client):
    rsps.get(
        f"{BASE}/v2/streaming.list",
        json=ok({"total": 100, "page": 1, "page_size": 2, "data": [_history_item(1), _history_item(2)]}),
    )
    assert len(list(client.list_history(page_size=2))) == 2
    assert len(rsps.calls) == 2


def test_avatars(rsps, client):
    rsps.get(
        f"{BASE}/v1/streaming/avatar.list",
        json=ok(
            [
                {
                    "avatar_id": "Wayne_20240711",
                    "pose_name": "Wayne",
                    "normal_preview": "https://files.example/wayne.webp",
                    "default_voice": "v-1",
                    "is_public": True,
                    "status": "ACTIVE",
                    "created_at": 1717000000,
                },
                {"avatar_id": "old", "status": "INACTIVE"},
            ]
        ),
    )
    avatars = client.avatars()
    assert avatars[0].avatar_id == "Wayne_20240711"
    assert avatars[0].preview_url == "https://files.example/wayne.webp"
    assert (avatars[0].pose_name, avatars[0].default_voice, avatars[0].is_public) == ("Wayne", "v-1", True)
    assert avatars[0].is_active and not avatars[1].is_active


def test_voices(rsps, client):
    rsps.get(
        f"{BASE}/v2/voices",
        json={
            "error": None,
            "data": {
                "voices": [
                    {
                        "voice_id": "v-1",
                        "name": "Ana",
                        "language": "English",
                        "gender": "female",
                        "preview_audio": "https://files.example/ana.mp3",
                        "support_pause": True,
                    }
                ]
            },
        },
    )
    (voice,) = client.voices()
    assert (voice.voice_id, voice.name, voice.language, voice.gender) == ("v-1", "Ana", "English", "female")
    assert voice.preview_audio == "https://files.example/ana.mp3"


def test_remaining_quota_in_credits(rsps, client):
    rsps.get(
        f"{BASE}/v2/user/remaining_quota",
        json={"error": None, "data": {"remaining_quota": 5400, "details": {"api": 5400}}},
    )
    quota = client.remaining_quota()
    assert quota.remaining_quota == 5400
    assert quota.credits == 90
    assert quota.details == {"api": 5400}


# envelopes and error table -------------------------------------------------------------------------


def test_code_envelope_failure_even_with_http_200(rsps, client):
    rsps.post(f"{BASE}/v1/streaming.stop", json={"code": 10006, "message": "session not found", "data": None})
    with pytest.raises(SessionNotFound) as info:
        client.stop(SID)
    assert SID in str(info.value)


def test_error_envelope_failure_even_with_http_200(rsps, client):
    rsps.get(
        f"{BASE}/v2/user/remaining_quota",
        json={"error": {"code": 400112, "message": "Unauthorized"}, "data": None},
    )
    with pytest.raises(Unauthorized):
        client.remaining_quota()


def test_error_envelope_with_text_error(rsps, client):
    rsps.post(f"{BASE}/v1/streaming.create_token", json={"error": "quota exhausted", "data": None})
    with pytest.raises(UnknownError, match="quota exhausted"):
        client.create_token()


def test_non_2xx_with_success_code_is_still_an_error(rsps, client):
    rsps.get(f"{BASE}/v1/streaming.list", status=400, json={"code": 100, "message": "odd"})
    with pytest.raises(UnknownError, match="HTTP 400"):
        client.list()


ERROR_TABLE = [
    (400112, 401, Unauthorized, ["API key", "HEYGEN_API_KEY", ".streamlit/secrets.toml", "400112"]),
    (401056, 401, Unauthorized, ["expired", "HEYGEN_API_KEY"]),
    (401057, 401, Unauthorized, ["invalid", "HEYGEN_API_KEY"]),
    (400562, 403, Forbidden, ["refused access", "400562"]),
    (400599, 403, NoApiAccess, ["no API access", "plan"]),
    (10006, 400, SessionNotFound, [SID, "new session"]),
    (10001, 400, SessionStateError, ['"new"']),
    (10002, 400, SessionStateError, ['"connecting"']),
    (10003, 400, SessionStateError, ['"connected"']),
    (10004, 400, SessionStateError, ['"closing"', "start a new session"]),
    (10005, 400, SessionStateError, ['"closed"', "start a new session"]),
    (10007, 400, ConcurrencyLimit, ["concurrent session limit", "Sessions page"]),
    (10014, 400, ConcurrencyLimit, ["Sessions page"]),
    (10015, 400, ConcurrencyLimit, ["trial", "Sessions page"]),
    (40001, 400, MissingParameter, ["missing", "server says: text is required"]),
    (400175, 400, InvalidParameter, ["rejected a parameter", "server says: text is required"]),
    (400009, 400, TtsError, ["speech", "another voice"]),
    (99999, 400, UnknownError, ["99999", "server says: text is required"]),
]


@pytest.mark.parametrize(("code", "status", "error", "words"), ERROR_TABLE)
def test_error_codes_map_to_typed_errors(rsps, client, code, status, error, words):
    rsps.post(
        f"{BASE}/v1/streaming.task",
        status=status,
        json={"code": code, "message": "server says: text is required"},
    )
    with pytest.raises(error) as info:
        client.task(SID, "hello")
    exc = info.value
    assert isinstance(exc, HeyGenError)
    assert (exc.code, exc.status) == (code, status)
    assert str(exc) == exc.user_message
    for word in words:
        assert word in str(exc)
    assert len(rsps.calls) == 1


def test_state_in_server_message_wins(rsps, client):
    rsps.post(
        f"{BASE}/v1/streaming.task",
        status=400,
        json={"code": 10003, "message": "session state wrong: closed"},
    )
    with pytest.raises(SessionStateError) as info:
        client.task(SID, "hello")
    assert info.value.state == "closed"
    assert '"closed"' in str(info.value)


@pytest.mark.parametrize("code", [10012, 10013])
def test_avatar_not_found_names_the_avatar(rsps, client, code):
    rsps.post(f"{BASE}/v1/streaming.new", status=400, json={"code": code, "message": "avatar not found"})
    with pytest.raises(AvatarNotFound) as info:
        client.new(NewSessionRequest(avatar_id="Nobody_123"))
    assert "Nobody_123" in str(info.value)
    assert "not allowed" in str(info.value)


def test_unauthorized_on_local_engine_points_at_its_key(rsps):
    rsps.get("http://127.0.0.1:9/v1/streaming.list", status=401, json={"code": 400112, "message": "Unauthorized"})
    with pytest.raises(Unauthorized) as info:
        StreamingClient("http://127.0.0.1:9", "wrong", provider_label="Local engine").list()
    assert "ENGINE_API_KEY" in str(info.value)
    assert "HEYGEN_API_KEY" not in str(info.value)
    assert "Local engine (127.0.0.1:9)" in str(info.value)


def test_http_401_without_body_is_unauthorized(rsps, client):
    rsps.get(f"{BASE}/v1/streaming.list", status=401, body="Unauthorized", content_type="text/plain")
    with pytest.raises(Unauthorized, match="HEYGEN_API_KEY"):
        client.list()


def test_http_429_is_rate_limited(rsps):
    rsps.post(
        f"{BASE}/v1/streaming.task",
        status=429,
        json={"message": "Too many requests"},
        headers={"Retry-After": "7"},
    )
    with pytest.raises(RateLimited) as info:
        StreamingClient(BASE, KEY, backoff=0).task(SID, "hi")
    assert info.value.retry_after == 7
    assert "Wait 7 s" in str(info.value)
    assert len(rsps.calls) == 1


def test_non_json_502_is_provider_unavailable(rsps, client):
    rsps.get(f"{BASE}/v2/voices", status=502, body="<html>Bad Gateway</html>", content_type="text/html")
    with pytest.raises(ProviderUnavailable) as info:
        client.voices()
    message = str(info.value)
    assert "HeyGen (api.heygen.com)" in message
    assert "down" in message and "HTTP 502" in message


def test_html_page_at_base_url_is_provider_unavailable(rsps):
    rsps.get("http://127.0.0.1:8501/v1/streaming.list", body="<html>streamlit</html>", content_type="text/html")
    with pytest.raises(ProviderUnavailable, match="base URL"):
        StreamingClient("http://127.0.0.1:8501", "k").list()


def test_new_waits_for_the_session_longer_than_other_calls():
    """``new`` cannot be retried or taken back: it gets ``new_timeout`` to answer, every other call ``timeout``."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        c = StreamingClient(f"http://127.0.0.1:{port}", KEY, timeout=0.2, new_timeout=1.2, backoff=0, retries=0)
        for call, at_least, at_most in ((c.list, 0.15, 1.0), (c.new, 1.1, 2.5)):
            started = time.monotonic()
            with pytest.raises(ProviderUnavailable, match="did not answer"):
                call()
            assert at_least <= time.monotonic() - started < at_most, call


def test_connection_refused_is_provider_unavailable():
    port = closed_port()
    c = StreamingClient(f"http://127.0.0.1:{port}", KEY, provider_label="Local engine", retries=0)
    with pytest.raises(ProviderUnavailable) as info:
        c.list()
    message = str(info.value)
    assert f"Local engine (127.0.0.1:{port})" in message
    assert "unreachable" in message and "running" in message


@pytest.mark.parametrize("call", [lambda c: c.new(), lambda c: c.list()], ids=["new", "list"])
def test_read_timeout_is_provider_unavailable_and_not_retried(call):
    # A listening socket that never accepts: the kernel completes the handshake, nobody answers.
    # Even safe calls do not retry a read timeout, so a hung provider blocks a page once, not 4 times.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        c = StreamingClient(f"http://127.0.0.1:{port}", KEY, timeout=0.3, new_timeout=0.3, backoff=0)
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match=r"did not answer within 0\.3 s"):
            call(c)
        assert time.monotonic() - started < 2.5
        server.setblocking(False)
        connections = 0
        while True:
            try:
                conn, _ = server.accept()
            except BlockingIOError:
                break
            conn.close()
            connections += 1
        assert connections == 1


def test_dns_failure_says_host_name(monkeypatch, client):
    def fail(*args, **kwargs):
        raise requests.exceptions.ConnectionError(
            "HTTPSConnectionPool(host='api.heygen.com', port=443): NameResolutionError: Name or service not known"
        )

    monkeypatch.setattr(client._session, "request", fail)
    with pytest.raises(ProviderUnavailable, match="host name could not be resolved"):
        client.avatars()


# retries ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "method", "path", "call"),
    [
        ("list", "GET", "/v1/streaming.list", lambda c: c.list()),
        ("keep_alive", "POST", "/v1/streaming.keep_alive", lambda c: c.keep_alive(SID)),
        ("stop", "POST", "/v1/streaming.stop", lambda c: c.stop(SID)),
        ("avatars", "GET", "/v1/streaming/avatar.list", lambda c: c.avatars()),
        ("quota", "GET", "/v2/user/remaining_quota", lambda c: c.remaining_quota()),
    ],
)
def test_safe_calls_retry_503_then_succeed(rsps, client, name, method, path, call):
    rsps.add(method, f"{BASE}{path}", status=503, body="busy")
    rsps.add(method, f"{BASE}{path}", json=ok({"sessions": [], "remaining_quota": 60}))
    call(client)
    assert len(rsps.calls) == 2


@pytest.mark.parametrize(
    ("path", "call"),
    [
        ("/v1/streaming.new", lambda c: c.new()),
        ("/v1/streaming.task", lambda c: c.task(SID, "hi")),
        ("/v1/streaming.start", lambda c: c.start(SID)),
        ("/v1/streaming.create_token", lambda c: c.create_token()),
        ("/v1/streaming.interrupt", lambda c: c.interrupt(SID)),
    ],
)
def test_unsafe_calls_are_never_retried(rsps, client, path, call):
    rsps.post(f"{BASE}{path}", status=503, body="busy")
    rsps.post(f"{BASE}{path}", json=ok({"session_id": SID, "token": "t"}))
    with pytest.raises(ProviderUnavailable):
        call(client)
    assert len(rsps.calls) == 1


def test_connection_errors_are_retried_for_list_but_not_for_new(rsps, client):
    rsps.get(f"{BASE}/v1/streaming.list", body=requests.exceptions.ConnectionError("refused"))
    rsps.get(f"{BASE}/v1/streaming.list", json=ok({"sessions": []}))
    rsps.post(f"{BASE}/v1/streaming.new", body=requests.exceptions.ConnectionError("refused"))
    rsps.post(f"{BASE}/v1/streaming.new", json=ok({"session_id": SID}))
    assert client.list() == []
    with pytest.raises(ProviderUnavailable):
        client.new()
    assert [call.request.method for call in rsps.calls] == ["GET", "GET", "POST"]


def test_retries_give_up_with_exponential_backoff(rsps):
    rsps.post(f"{BASE}/v1/streaming.stop", status=500, json={"message": "internal error"})
    c = StreamingClient(BASE, KEY, retries=3, backoff=0.1)
    delays: list[float] = []
    c._sleep = delays.append
    with pytest.raises(ProviderUnavailable, match="HTTP 500"):
        c.stop(SID)
    assert len(rsps.calls) == 4
    assert delays == pytest.approx([0.1, 0.2, 0.4])


def test_retry_after_is_honoured_when_small(rsps, client):
    delays: list[float] = []
    client._sleep = delays.append
    rsps.get(f"{BASE}/v1/streaming.list", status=429, headers={"Retry-After": "2"}, json={"message": "slow down"})
    rsps.get(f"{BASE}/v1/streaming.list", json=ok({"sessions": []}))
    assert client.list() == []
    assert delays == [2.0]


def test_large_retry_after_is_not_waited_for(rsps, client):
    delays: list[float] = []
    client._sleep = delays.append
    rsps.get(f"{BASE}/v1/streaming.list", status=429, headers={"Retry-After": "120"}, json={"message": "slow down"})
    with pytest.raises(RateLimited, match="Wait 120 s"):
        client.list()
    assert delays == []
    assert len(rsps.calls) == 1


def test_stop_of_unknown_session_raises_without_retry(rsps, client):
    rsps.post(f"{BASE}/v1/streaming.stop", status=400, json={"code": 10006, "message": "session not found"})
    with pytest.raises(SessionNotFound):
        client.stop(SID)
    assert len(rsps.calls) == 1


# secrecy ------------------------------------------------------------------------------------------


def _provoke(kind: str, rsps: responses.RequestsMock) -> HeyGenError:
    c = StreamingClient(BASE, Secret(KEY), backoff=0, retries=1)
    if kind == "unauthorized":
        rsps.get(f"{BASE}/v1/streaming.list", status=401, json={"code": 400112, "message": "Unauthorized"})
        call = c.list
    elif kind == "echoed_key":
        rsps.get(f"{BASE}/v1/streaming.list", status=400, json={"code": 400175, "message": f"bad key {KEY}"})
        call = c.list
    elif kind == "echoed_token":
        c = StreamingClient(BASE, token=TOKEN)
        rsps.post(f"{BASE}/v1/streaming.stop", status=401, json={"code": 401057, "message": f"Bearer {TOKEN}"})
        return _raised(lambda: c.stop(SID))
    elif kind == "server_down":
        rsps.get(f"{BASE}/v1/streaming.list", status=502, body="<html>502</html>")
        call = c.list
    elif kind == "session_gone":
        rsps.post(f"{BASE}/v1/streaming.stop", status=400, json={"code": 10006, "message": "not found"})
        return _raised(lambda: c.stop(SID))
    elif kind == "connection_refused":
        rsps.stop()
        c = StreamingClient(f"http://127.0.0.1:{closed_port()}", Secret(KEY), backoff=0, retries=1)
        call = c.list
    elif kind == "timeout":
        rsps.get(f"{BASE}/v1/streaming.list", body=requests.exceptions.ReadTimeout(f"X-Api-Key: {KEY}"))
        call = c.list
    else:
        raise AssertionError(kind)
    return _raised(call)


def _raised(call) -> HeyGenError:
    with pytest.raises(HeyGenError) as info:
        call()
    return info.value


@pytest.mark.parametrize(
    "kind",
    [
        "unauthorized",
        "echoed_key",
        "echoed_token",
        "server_down",
        "session_gone",
        "connection_refused",
        "timeout",
    ],
)
def test_key_never_appears_in_errors_or_logs(rsps, caplog, kind):
    caplog.set_level(logging.DEBUG)
    exc = _provoke(kind, rsps)
    texts = [
        str(exc),
        repr(exc),
        repr(exc.args),
        "".join(traceback.format_exception(exc)),
        caplog.text,
        repr(vars(exc)),
    ]
    for text in texts:
        assert KEY not in text
        assert TOKEN not in text
    # No requests exception (which can carry URLs and headers) rides along in the chain.
    assert exc.__cause__ is None
    assert exc.__context__ is None


def test_requests_are_logged_without_headers(rsps, client, caplog):
    caplog.set_level(logging.DEBUG, logger="avatar_ops.heygen")
    rsps.get(f"{BASE}/v1/streaming.list", json=ok({"sessions": []}))
    client.list()
    records = [r for r in caplog.records if r.name == "avatar_ops.heygen"]
    assert len(records) == 1
    assert "GET /v1/streaming.list -> HTTP 200 in" in records[0].getMessage()
    assert KEY not in caplog.text


def test_client_repr_hides_the_key():
    c = StreamingClient(BASE, KEY)
    assert KEY not in repr(c)
    assert "api.heygen.com" in repr(c)


def test_endpoint_names_the_account_without_revealing_the_key():
    plain = StreamingClient(BASE, KEY).endpoint
    assert KEY not in plain and plain.startswith(BASE + "#key-")
    assert StreamingClient(BASE + "/", KEY).endpoint == plain  # same account, however the URL is written
    assert StreamingClient(BASE, KEY + "x").endpoint != plain  # another key: another account
    with_password = StreamingClient("http://ops:hunter2@127.0.0.1:8765", KEY).endpoint
    assert "hunter2" not in with_password and with_password.startswith("http://127.0.0.1:8765#key-")


def test_errors_survive_pickling():
    exc = SessionStateError(10005, "closed", 400, state="closed")
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is SessionStateError
    assert str(copy) == str(exc) and copy.state == "closed"


# lifecycle ----------------------------------------------------------------------------------------


class _RecordingSession(requests.Session):
    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


def test_context_manager_closes_only_its_own_session():
    own = StreamingClient(BASE, KEY)
    own_session = _RecordingSession()
    own._session = own_session
    with own:
        pass
    assert own_session.closed

    shared = _RecordingSession()
    with StreamingClient(BASE, KEY, session=shared):
        pass
    assert not shared.closed
