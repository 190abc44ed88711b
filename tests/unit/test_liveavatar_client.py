"""The LiveAvatar client against wire shapes the engine twin cannot produce (docs/liveavatar-api.md §1–2)."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from lib.heygen.client import StreamingClient
from lib.liveavatar import (
    SANDBOX_AVATAR_ID,
    ConcurrencyLimit,
    FullSessionConfig,
    InsufficientCredits,
    LiveAvatarClient,
    LiveAvatarError,
    NotFound,
    ProviderUnavailable,
    SessionAlreadyStopped,
    SessionEndReason,
    SessionListType,
    SessionMode,
    SessionNotFound,
    SessionToken,
    Unauthorized,
    UnexpectedResponse,
    ValidationFailed,
)
from lib.liveavatar.errors import BAD_KEY_MESSAGE
from lib.settings import Secret

KEY = "la-test-KEY-5d1e9c3a7b2f4e6d"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.sig-TOKEN-8c7d6e5f"
BASE = "https://api.liveavatar.com"
SID = "0b6f3c1e-2a4d-4e8f-9a1b-3c5d7e9f1a2b"
AVATAR = "3f2e1d0c-9b8a-4765-8432-10fedcba9876"


def ok(data: object, code: int = 1000) -> dict[str, object]:
    return {"code": code, "data": data, "message": "success"}


def entry(n: int, **extra: object) -> dict[str, object]:
    return {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "created_at": "2026-11-02T10:00:00Z",
        "updated_at": "2026-11-02T10:05:00Z",
        "duration": 300,
        "source": "API",
        "mode": "FULL",
        "is_sandbox": False,
        "credits_consumed": 10.5,
        **extra,
    }


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def client() -> Iterator[LiveAvatarClient]:
    with LiveAvatarClient(BASE, Secret(KEY), backoff=0) as c:
        yield c


def full() -> FullSessionConfig:
    return FullSessionConfig(avatar_id=AVATAR)


# --- success envelope ---------------------------------------------------------------------------


def test_code_1000_and_the_schema_default_100_both_count_as_success(rsps, client):
    rsps.get(f"{BASE}/v1/users/credits", json=ok({"credits_left": "12.5"}))
    assert client.credits_left() == Decimal("12.5")
    rsps.replace(responses.GET, f"{BASE}/v1/users/credits", json=ok({"credits_left": "7"}, code=100))
    assert client.credits_left() == Decimal("7")


def test_a_2xx_with_another_code_is_a_failure_not_data(rsps, client):
    rsps.get(f"{BASE}/v1/users/credits", json={"code": 4001, "data": None, "message": "space not found"})
    with pytest.raises(UnexpectedResponse, match="space not found"):
        client.credits_left()


def test_a_2xx_without_the_envelope_is_an_unexpected_response(rsps, client):
    rsps.get(f"{BASE}/v1/users/credits", json={"credits_left": "3"})
    with pytest.raises(UnexpectedResponse, match="LIVEAVATAR_BASE_URL"):
        client.credits_left()


def test_credits_left_that_is_not_a_number_is_an_unexpected_response(rsps, client):
    rsps.get(f"{BASE}/v1/users/credits", json=ok({"credits_left": "lots"}))
    with pytest.raises(UnexpectedResponse):
        client.credits_left()


def test_start_sends_the_bearer_token_and_no_api_key_and_accepts_201(rsps, client):
    rsps.post(
        f"{BASE}/v1/sessions/start",
        status=201,
        json=ok(
            {
                "session_id": SID,
                "livekit_url": "wss://x.livekit.cloud",
                "livekit_client_token": "lk-client",
                "max_session_duration": 1200,
            }
        ),
    )
    started = client.start_session(SessionToken(SID, Secret(JWT)))
    headers = rsps.calls[0].request.headers
    assert headers["Authorization"] == f"Bearer {JWT}"
    assert "X-API-KEY" not in headers
    assert (started.livekit_url, started.max_session_duration, started.local_media) == (
        "wss://x.livekit.cloud",
        1200,
        None,
    )
    assert "lk-client" not in repr(started)


def test_token_request_carries_the_key_and_the_full_body(rsps, client):
    rsps.post(f"{BASE}/v1/sessions/token", json=ok({"session_id": SID, "session_token": JWT}))
    token = client.create_session_token(full())
    request = rsps.calls[0].request
    assert request.headers["X-API-KEY"] == KEY
    assert json.loads(request.body) == {
        "mode": "FULL",
        "avatar_id": AVATAR,
        "is_sandbox": False,
        "avatar_persona": {"language": "en"},
    }
    assert token.session_id == SID and token.session_token.reveal() == JWT
    assert JWT not in repr(token)


def test_a_token_answer_without_the_token_is_an_unexpected_response(rsps, client):
    rsps.post(f"{BASE}/v1/sessions/token", json=ok({"session_id": SID}))
    with pytest.raises(UnexpectedResponse):
        client.create_session_token(full())


def test_stop_sends_the_session_and_the_reason(rsps, client):
    rsps.post(f"{BASE}/v1/sessions/stop", json=ok(None))
    client.stop_session(SID)
    client.stop_session(SID, SessionEndReason.IDLE_TIMEOUT)
    assert [json.loads(c.request.body) for c in rsps.calls] == [
        {"session_id": SID, "reason": "USER_CLOSED"},
        {"session_id": SID, "reason": "IDLE_TIMEOUT"},
    ]


# --- paging -------------------------------------------------------------------------------------


def test_list_reads_every_page_until_count_is_covered(rsps, client):
    def page(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        query = parse_qs(urlsplit(request.url).query)
        assert query["type"] == ["historic"] and query["page_size"] == ["100"]
        number = int(query["page"][0])
        size = 100 if number < 3 else 5
        items = [entry((number - 1) * 100 + i, end_at="2026-11-02T10:05:00Z") for i in range(size)]
        return 200, {}, json.dumps(ok({"count": 205, "next": None, "previous": None, "results": items}))

    rsps.add_callback(responses.GET, f"{BASE}/v1/sessions", callback=page)
    sessions = client.list_sessions(SessionListType.HISTORIC)
    assert len(sessions) == 205 and len(rsps.calls) == 3
    assert len({s.id for s in sessions}) == 205


def test_a_session_seen_on_two_pages_is_listed_once(rsps, client):
    first = [entry(i) for i in range(100)]
    second = [entry(99), entry(100)]  # a new session pushed entry 99 onto page 2 while we read
    rsps.get(f"{BASE}/v1/sessions", json=ok({"count": 101, "results": first}))
    rsps.get(f"{BASE}/v1/sessions", json=ok({"count": 102, "results": second}))
    assert len(client.list_sessions(SessionListType.ACTIVE)) == 101


def test_an_empty_page_ends_the_listing_even_if_count_says_more(rsps, client):
    rsps.get(f"{BASE}/v1/sessions", json=ok({"count": 500, "results": []}))
    assert client.list_sessions(SessionListType.ACTIVE) == []
    assert len(rsps.calls) == 1


def test_entries_parse_times_as_utc_and_old_custom_mode_as_lite(rsps, client):
    rsps.get(
        f"{BASE}/v1/sessions",
        json=ok({"count": 2, "results": [entry(1, mode="CUSTOM"), entry(2, end_reason="SOMETHING_NEW")]}),
    )
    first, second = client.list_sessions(SessionListType.ACTIVE)
    assert first.mode is SessionMode.LITE and first.created_at.utcoffset().total_seconds() == 0
    assert second.end_reason is SessionEndReason.UNKNOWN
    assert first.credits_consumed == 10.5


# --- retries ------------------------------------------------------------------------------------


def test_a_5xx_on_a_list_is_retried_then_succeeds(rsps, client):
    rsps.get(f"{BASE}/v1/avatars", status=503, body="upstream down")
    rsps.get(f"{BASE}/v1/avatars", status=502, json={"message": "bad gateway"})
    rsps.get(f"{BASE}/v1/avatars", json=ok({"count": 1, "results": [{"id": AVATAR, "name": "A"}]}))
    assert [a.name for a in client.avatars()] == ["A"]
    assert len(rsps.calls) == 3


def test_a_5xx_on_a_list_gives_up_after_the_retries(rsps):
    rsps.get(f"{BASE}/v1/contexts", status=500, json={"message": "boom"})
    with LiveAvatarClient(BASE, KEY, retries=2, backoff=0) as c, pytest.raises(ProviderUnavailable, match="boom"):
        c.contexts()
    assert len(rsps.calls) == 3


def test_start_and_token_are_never_retried(rsps, client):
    rsps.post(f"{BASE}/v1/sessions/start", status=503, json={"message": "overloaded"})
    rsps.post(f"{BASE}/v1/sessions/token", status=502, body="<html>bad gateway</html>")
    with pytest.raises(ProviderUnavailable):
        client.start_session(SessionToken(SID, Secret(JWT)))
    with pytest.raises(ProviderUnavailable):
        client.create_session_token(full())
    assert len(rsps.calls) == 2


def test_a_timeout_on_start_is_not_retried_but_on_keep_alive_it_is(rsps, client):
    rsps.post(f"{BASE}/v1/sessions/start", body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(ProviderUnavailable, match="did not answer within 10 s") as info:
        client.start_session(SessionToken(SID, Secret(JWT)))
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert len(rsps.calls) == 1
    rsps.post(f"{BASE}/v1/sessions/keep-alive", body=requests.exceptions.ConnectTimeout("connect"))
    rsps.post(f"{BASE}/v1/sessions/keep-alive", json=ok(None))
    client.keep_alive(SID)
    assert len(rsps.calls) == 3


def test_a_refused_connection_names_the_base_url_setting():
    with LiveAvatarClient("http://127.0.0.1:9", KEY, retries=0) as c, pytest.raises(ProviderUnavailable) as info:
        c.credits_left()
    assert "LIVEAVATAR_BASE_URL" in str(info.value) and info.value.status is None


def test_429_waits_for_retry_after_on_idempotent_calls(rsps, client):
    slept: list[float] = []
    client._sleep = slept.append
    rsps.get(f"{BASE}/v1/users/credits", status=429, headers={"Retry-After": "2"}, json={"message": "slow down"})
    rsps.get(f"{BASE}/v1/users/credits", json=ok({"credits_left": "1"}))
    assert client.credits_left() == 1
    assert slept == [2.0]


def test_every_call_passes_a_timeout(monkeypatch, client):
    seen: list[object] = []

    def fake(method: str, url: str, **kwargs: object) -> requests.Response:
        seen.append(kwargs.get("timeout"))
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(ok({"credits_left": "1", "count": 0, "results": []})).encode()
        return response

    monkeypatch.setattr(client._session, "request", fake)
    client.credits_left()
    client.list_sessions(SessionListType.ACTIVE)
    client.keep_alive(SID)
    assert seen == [10.0, 10.0, 10.0]


# --- error bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"code": 400, "message": "from message", "data": [{"message": "not this"}]}, "from message"),
        ({"detail": [{"loc": ["body", "x_y"], "msg": "from detail", "type": "value_error"}]}, "from detail"),
        ({"code": 400, "data": [{"message": "from data list"}]}, "from data list"),
        ({"code": 400, "data": {"message": "from data object"}}, "from data object"),
        ({"error": "from error"}, "from error"),
        ({"error": {"message": "from error object"}}, "from error object"),
    ],
)
def test_error_messages_are_read_in_the_contracts_order(rsps, client, body, expected):
    rsps.get(f"{BASE}/v1/users/credits", status=409, json=body)
    with pytest.raises(LiveAvatarError, match=expected):
        client.credits_left()


def test_a_plain_text_error_body_is_used_as_is(rsps, client):
    rsps.get(f"{BASE}/v1/users/credits", status=418, body="teapot says no")
    with pytest.raises(LiveAvatarError, match="teapot says no") as info:
        client.credits_left()
    assert info.value.status == 418


def test_401_is_the_bad_key_message_exactly(rsps, client):
    rsps.get(f"{BASE}/v1/users/credits", status=401, json={"code": 401, "message": "Unauthorized"})
    with pytest.raises(Unauthorized) as info:
        client.credits_left()
    assert str(info.value) == BAD_KEY_MESSAGE == info.value.user_message
    assert info.value.status == 401


def test_a_rejected_session_token_on_start_asks_for_a_new_token(rsps, client):
    rsps.post(f"{BASE}/v1/sessions/start", status=401, json={"message": "token already used"})
    with pytest.raises(Unauthorized, match="new session token"):
        client.start_session(SessionToken(SID, Secret(JWT)))


@pytest.mark.parametrize("status", [400, 402, 403])
def test_insufficient_credits_is_recognised_by_its_text_whatever_the_status(rsps, client, status):
    rsps.post(f"{BASE}/v1/sessions/start", status=status, json={"message": "Insufficient credits to start"})
    with pytest.raises(InsufficientCredits, match="FULL 2 credits"):
        client.start_session(SessionToken(SID, Secret(JWT)))


def test_a_concurrency_refusal_says_to_stop_sessions(rsps, client):
    rsps.post(f"{BASE}/v1/sessions/token", status=400, json={"message": "Max concurrency limit reached"})
    with pytest.raises(ConcurrencyLimit, match="Stop sessions you no longer need"):
        client.create_session_token(full())


def test_422_names_the_field_and_the_reason(rsps, client):
    body = {"detail": [{"loc": ["body", "llm_configuration_id"], "msg": "Input should be a valid UUID"}]}
    rsps.post(f"{BASE}/v1/sessions/token", status=422, json=body)
    with pytest.raises(ValidationFailed) as info:
        client.create_session_token(full())
    assert (info.value.field, info.value.reason) == ("llm_configuration_id", "Input should be a valid UUID")
    assert "llm_configuration_id" in str(info.value) and "valid UUID" in str(info.value)


def test_a_400_names_the_field_found_in_the_message(rsps, client):
    message = "max_session_duration (120s) exceeds the maximum allowed (60s)"
    rsps.post(f"{BASE}/v1/sessions/token", status=400, json={"message": message})
    with pytest.raises(ValidationFailed) as info:
        client.create_session_token(full())
    assert info.value.field == "max_session_duration"


def test_stop_404_is_already_stopped_when_the_server_says_it_ended(rsps, client):
    rsps.post(f"{BASE}/v1/sessions/stop", status=404, json={"message": "Session has already ended"})
    with pytest.raises(SessionAlreadyStopped):
        client.stop_session(SID)


def test_stop_404_without_that_hint_is_not_found(rsps, client):
    rsps.post(f"{BASE}/v1/sessions/stop", status=404, json={"message": "Session not found"})
    with pytest.raises(SessionNotFound) as info:
        client.stop_session(SID)
    assert not isinstance(info.value, SessionAlreadyStopped) and SID in str(info.value)


def test_a_404_on_a_context_is_not_found_naming_it(rsps, client):
    rsps.get(f"{BASE}/v1/contexts/{AVATAR}", status=404, json={"message": "nope"})
    with pytest.raises(NotFound, match=f"Context {AVATAR}") as info:
        client.get_context(AVATAR)
    assert not isinstance(info.value, SessionNotFound)


def test_405_is_an_unexpected_response(rsps, client):
    rsps.post(f"{BASE}/v1/sessions/keep-alive", status=405, json={"detail": "Method Not Allowed"})
    with pytest.raises(UnexpectedResponse):
        client.keep_alive(SID)


# --- secrets ------------------------------------------------------------------------------------


def test_the_key_and_tokens_echoed_by_the_server_are_scrubbed(rsps, client, caplog):
    caplog.set_level(logging.DEBUG, logger="avatar_ops.liveavatar")
    rsps.get(f"{BASE}/v1/users/credits", status=400, json={"message": f"bad key {KEY}"})
    rsps.post(f"{BASE}/v1/sessions/start", status=500, json={"message": f"token {JWT} rejected"})
    errors: list[LiveAvatarError] = []
    for call in (client.credits_left, lambda: client.start_session(SessionToken(SID, Secret(JWT)))):
        with pytest.raises(LiveAvatarError) as info:
            call()
        errors.append(info.value)
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [e.detail for e in errors]
    texts += [r.getMessage() for r in caplog.records] + [repr(client)]
    assert any("********" in t for t in texts)
    for text in texts:
        assert KEY not in text and JWT not in text


def test_errors_survive_pickling_with_their_message(rsps, client):
    rsps.get(f"{BASE}/v1/users/credits", status=401, json={})
    with pytest.raises(Unauthorized) as info:
        client.credits_left()
    clone = pickle.loads(pickle.dumps(info.value))
    assert type(clone) is Unauthorized and str(clone) == BAD_KEY_MESSAGE and clone.status == 401


def test_endpoint_fingerprints_the_key_like_the_streaming_client():
    la = LiveAvatarClient("https://user:pw@api.liveavatar.com/", KEY)
    hg = StreamingClient("https://user:pw@api.liveavatar.com/", KEY)
    assert la.endpoint == hg.endpoint
    assert la.endpoint.startswith("https://api.liveavatar.com#key-") and KEY not in la.endpoint
    assert "pw" not in repr(la) and KEY not in repr(la)


def test_local_validation_raises_before_any_request(rsps, client):
    with pytest.raises(ValidationFailed, match="max_session_duration"):
        FullSessionConfig(avatar_id=SANDBOX_AVATAR_ID, is_sandbox=True, max_session_duration=61)
    with pytest.raises(ValidationFailed, match="session_id"):
        client.stop_session("")
    assert len(rsps.calls) == 0
