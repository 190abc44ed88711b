"""Contract: the local engine's HTTP API, through raw HTTP and through the project's own client."""

from __future__ import annotations

import uuid

import pytest
import requests

from lib.engine.launcher import start_engine
from lib.heygen import errors as H
from lib.heygen.client import StreamingClient
from lib.heygen.models import NewSessionRequest


def post(engine, path: str, body=None, *, key: str | None = "default", raw: str | None = None, headers=None):
    hdrs = dict(headers or {})
    if key == "default":
        hdrs["X-Api-Key"] = engine.api_key.reveal()
    elif key is not None:
        hdrs["X-Api-Key"] = key
    if raw is not None:
        hdrs["Content-Type"] = "application/json"
        return requests.post(engine.url + path, data=raw, headers=hdrs, timeout=10)
    return requests.post(engine.url + path, json=body, headers=hdrs, timeout=10)


def get(engine, path: str, **params):
    return requests.get(engine.url + path, params=params, headers={"X-Api-Key": engine.api_key.reveal()}, timeout=10)


def test_healthz(engine):
    assert requests.get(engine.url + "/healthz", timeout=5).json() == {"status": "ok"}


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_missing_or_wrong_key_is_401(engine, key):
    r = post(engine, "/v1/streaming.new", {}, key=key)
    assert r.status_code == 401
    assert r.json() == {"code": 400112, "message": "Unauthorized"}


def test_new_returns_heygen_shape_with_offer(engine, client):
    r = post(engine, "/v1/streaming.new", {"quality": "low"})
    assert r.status_code == 200
    body = r.json()
    assert body["code"] == 100 and body["message"] == "success"
    data = body["data"]
    uuid.UUID(data["session_id"])
    assert data["sdp"]["type"] == "offer"
    sdp = data["sdp"]["sdp"]
    assert "m=video" in sdp and "m=audio" in sdp and "m=application" in sdp
    assert "VP8" in sdp and "opus" in sdp
    assert data["ice_servers2"] == [] and data["is_paid"] is False
    assert data["url"] == engine.url and data["session_duration_limit"] > 0
    listed = {s.session_id: s for s in client.list()}
    assert listed[data["session_id"]].status == "new"


def test_client_new_with_avatar_name_and_voice(client):
    avatars = client.avatars()
    assert len(avatars) >= 4
    voices = client.voices()
    session = client.new(
        NewSessionRequest(avatar_name=avatars[1].avatar_id, voice_id=voices[-1].voice_id, quality="low")
    )
    listed = [s for s in client.list() if s.session_id == session.session_id]
    assert listed and listed[0].status == "new"
    assert session.sdp is not None and session.sdp["type"] == "offer"


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"avatar_id": "nobody"}, 10012, "Avatar not found"),
        ({"quality": "ultra"}, 400175, "quality"),
        ({"activity_idle_timeout": 5}, 400175, "activity_idle_timeout"),
        ({"activity_idle_timeout": 4000}, 400175, "activity_idle_timeout"),
        ({"voice": {"voice_id": "no-such-voice"}}, 400175, "voice"),
        ({"voice": {"rate": 3}}, 400175, "rate"),
        ({"video_encoding": "AV1"}, 400175, "video_encoding"),
        ({"quality": 7}, 400175, "quality"),
        ({"version": "v2"}, 400175, "direct-WebRTC"),
    ],
)
def test_new_rejects_bad_input_with_heygen_codes(engine, body, code, words):
    r = post(engine, "/v1/streaming.new", body)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == code
    assert words in r.json()["message"]


def test_malformed_json_is_a_clear_400(engine):
    r = post(engine, "/v1/streaming.new", raw="{not json")
    assert r.status_code == 400
    assert r.json() == {"code": 400175, "message": "Request body is not valid JSON."}


def test_missing_session_id_is_40001(engine):
    r = post(engine, "/v1/streaming.keep_alive", {})
    assert r.status_code == 400 and r.json()["code"] == 40001
    assert "session_id" in r.json()["message"]


def test_unknown_session_is_10006(engine, client):
    with pytest.raises(H.SessionNotFound):
        client.keep_alive(str(uuid.uuid4()))
    r = post(engine, "/v1/streaming.stop", {"session_id": "nope"})
    assert r.status_code == 400 and r.json()["code"] == 10006


def test_wrong_states(engine, client):
    session = client.new(NewSessionRequest(quality="low"))
    with pytest.raises(H.SessionStateError) as exc:  # task before start: session is still "new"
        client.task(session.session_id, "hello")
    assert exc.value.code == 10001
    client.stop(session.session_id)
    for call in (
        lambda: client.task(session.session_id, "hello"),
        lambda: client.keep_alive(session.session_id),
        lambda: client.stop(session.session_id),
    ):
        with pytest.raises(H.SessionStateError) as exc:
            call()
        assert exc.value.code == 10005 and "closed" in str(exc.value)
    assert session.session_id not in {s.session_id for s in client.list()}


def test_start_with_malformed_sdp_is_400175(engine, client):
    session = client.new(NewSessionRequest(quality="low"))
    r = post(
        engine, "/v1/streaming.start", {"session_id": session.session_id, "sdp": {"type": "answer", "sdp": "garbage"}}
    )
    assert r.status_code == 400 and r.json()["code"] == 400175
    assert client.list()  # the engine is unharmed


def test_task_text_limits(engine, client):
    session = client.new(NewSessionRequest(quality="low"))
    for text, words in (("   ", "empty"), ("x" * 10_001, "too long")):
        r = post(engine, "/v1/streaming.task", {"session_id": session.session_id, "text": text})
        assert r.status_code == 400 and r.json()["code"] == 400175
        assert words in r.json()["message"]


def test_token_auth_is_single_use_and_bound(engine, client):
    token = client.create_token()
    with StreamingClient(engine.url, token=token, backoff=0) as tc:
        session = tc.new(NewSessionRequest(quality="low"))
        tc.keep_alive(session.session_id)
        with pytest.raises(H.Unauthorized):
            tc.new(NewSessionRequest(quality="low"))  # reuse refused
    other = client.new(NewSessionRequest(quality="low"))
    r = post(
        engine,
        "/v1/streaming.keep_alive",
        {"session_id": other.session_id},
        key=None,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 401
    r = post(engine, "/v1/streaming.new", {}, key=None, headers={"Authorization": "Bearer made-up"})
    assert r.status_code == 401


def test_concurrency_budget(engine, client):
    # Budget 6 units: 3 × 720p fill it; a 4th is refused; stopping one frees a slot.
    sessions = [client.new(NewSessionRequest(quality="medium")) for _ in range(3)]
    with pytest.raises(H.ConcurrencyLimit) as exc:
        client.new(NewSessionRequest(quality="low"))
    assert exc.value.code == 10007
    client.stop(sessions[0].session_id)
    client.new(NewSessionRequest(quality="medium"))


def test_avatar_list_has_real_previews(engine, client):
    avatars = client.avatars()
    assert len({a.avatar_id for a in avatars}) >= 4
    png = requests.get(avatars[0].preview_url, timeout=10)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_voices_list_and_preview(engine, client):
    voices = client.voices()
    assert voices and all(v.voice_id and v.language for v in voices)
    wav = requests.get(voices[0].preview_audio, timeout=30)
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF"


def test_remaining_quota_envelope(engine, client):
    raw = get(engine, "/v2/user/remaining_quota").json()
    assert raw["error"] is None and raw["data"]["remaining_quota"] > 0
    assert client.remaining_quota().credits == pytest.approx(raw["data"]["remaining_quota"] / 60)


def test_create_token_envelope(engine):
    raw = post(engine, "/v1/streaming.create_token").json()
    assert raw["error"] is None and len(raw["data"]["token"]) > 20


def test_history_is_paginated_and_survives_restart(tmp_path):
    history = tmp_path / "history.db"
    first = start_engine(extra_args=["--history-db", str(history), "--no-voices"])
    try:
        with StreamingClient(first.url, first.api_key, backoff=0) as c:
            ids = []
            for _ in range(5):
                s = c.new(NewSessionRequest(quality="low"))
                c.stop(s.session_id)
                ids.append(s.session_id)
    finally:
        first.stop()
    second = start_engine(extra_args=["--history-db", str(history), "--no-voices"])
    try:
        with StreamingClient(second.url, second.api_key, backoff=0) as c:
            rows = list(c.list_history(page_size=2))
        assert {r.session_id for r in rows} == set(ids)
        page = requests.get(
            second.url + "/v2/streaming.list",
            params={"page": 2, "page_size": 2},
            headers={"X-Api-Key": second.api_key.reveal()},
            timeout=10,
        ).json()["data"]
        assert page["total"] == 5 and len(page["data"]) == 2 and page["next_pagination_token"]
        assert all(r["duration"] >= 0 and r["status"] == "closed" for r in page["data"])
    finally:
        second.stop()


def test_engine_key_never_in_responses_or_log(engine, client):
    key = engine.api_key.reveal()
    r = post(engine, "/v1/streaming.new", {"avatar_id": "nobody"})
    assert key not in r.text
    assert key not in engine.log_path.read_text()
