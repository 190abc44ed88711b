"""The LiveAvatar client against the engine's LiveAvatar twin over real HTTP (docs/liveavatar-api.md).

Two engines of this module's own, each with its own history DB: ``twin`` (1,000 credits, two sessions at
once) for the endpoints and error paths, and ``lean_twin`` (seeded with 150 historic sessions, two credits
left, a 3-second billing minute and a 3-second idle timeout) for paging, idle, sandbox and running out of
credits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from lib.engine.launcher import EngineProcess, start_engine
from lib.engine.liveavatar_state import LiveAvatarStore, SessionRecord
from lib.heygen.client import StreamingClient
from lib.heygen.errors import HeyGenError
from lib.live.media.direct import DirectConnection
from lib.liveavatar import (
    SANDBOX_AVATAR_ID,
    ConcurrencyLimit,
    FullSessionConfig,
    InsufficientCredits,
    LiteSessionConfig,
    LiveAvatarClient,
    LiveAvatarError,
    NotFound,
    SessionAlreadyStopped,
    SessionEndReason,
    SessionEntry,
    SessionListType,
    SessionMode,
    SessionNotFound,
    SessionSource,
    StartedSession,
    Unauthorized,
    ValidationFailed,
)
from lib.liveavatar.errors import BAD_KEY_MESSAGE
from lib.settings import Secret
from tests.support.rtc import Received, wait_for

ACTIVE, HISTORIC = SessionListType.ACTIVE, SessionListType.HISTORIC
SEEDED = 150
LEAN_GRANT = 100.0
LEAN_LEFT = 2.05  # one FULL minute (2 credits) and a little


def _engine(history: Path, *args: str) -> EngineProcess:
    return start_engine(extra_args=["--history-db", str(history), "--no-voices", "--session-budget", "6", *args])


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    history = tmp_path_factory.mktemp("la-twin") / "history.db"
    proc = _engine(history, "--liveavatar-credits", "1000", "--liveavatar-concurrency", "2")
    try:
        yield proc
    finally:
        proc.stop()


def _seed(path: Path) -> list[str]:
    """150 ended sessions, one an hour back from 2026-11-01, consuming all but LEAN_LEFT credits."""
    store = LiveAvatarStore(path)
    start = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    each = (LEAN_GRANT - LEAN_LEFT) / SEEDED
    ids = []
    for n in range(SEEDED):
        created = start - n * 3600
        record = SessionRecord(
            id=str(uuid.UUID(int=n + 1)),
            created_at=created,
            updated_at=created + 90,
            duration=90,
            source=SessionSource.EMBED if n % 2 else SessionSource.API,
            mode=SessionMode.FULL,
            is_sandbox=False,
            credits_consumed=each,
            end_at=created + 90,
            end_reason=SessionEndReason.USER_CLOSED,
        )
        store.put_session(record)
        ids.append(record.id)
    store.close()
    return ids


@pytest.fixture(scope="module")
def seeded_ids(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    history = tmp_path_factory.mktemp("la-lean") / "history.db"
    return history, _seed(history)


@pytest.fixture(scope="module")
def lean_twin(seeded_ids: tuple[Path, list[str]]) -> Iterator[EngineProcess]:
    args = ("--liveavatar-credits", str(LEAN_GRANT), "--liveavatar-minute-seconds", "3")
    proc = _engine(seeded_ids[0], *args, "--liveavatar-idle-timeout", "3")
    try:
        yield proc
    finally:
        proc.stop()


def _client(engine: EngineProcess, key: Secret | str | None = None) -> LiveAvatarClient:
    return LiveAvatarClient(engine.url, key if key is not None else engine.api_key, backoff=0)


def _stop_all(engine: EngineProcess) -> None:
    """Leave the engine as we found it: later tests count sessions."""
    with _client(engine) as c:
        for s in c.list_sessions(ACTIVE):
            with contextlib.suppress(LiveAvatarError):
                c.stop_session(s.id)


@pytest.fixture
def la(twin: EngineProcess) -> Iterator[LiveAvatarClient]:
    with _client(twin) as c:
        yield c
    _stop_all(twin)


@pytest.fixture
def lean(lean_twin: EngineProcess) -> Iterator[LiveAvatarClient]:
    with _client(lean_twin) as c:
        yield c
    _stop_all(lean_twin)


def _avatar(c: LiveAvatarClient) -> str:
    return c.avatars()[0].id


def _start(c: LiveAvatarClient, config: FullSessionConfig | LiteSessionConfig) -> StartedSession:
    return c.start_session(c.create_session_token(config))


def _full(c: LiveAvatarClient, **kwargs: object) -> StartedSession:
    return _start(c, FullSessionConfig(avatar_id=_avatar(c), video_quality="low", **kwargs))  # type: ignore[arg-type]


def _until(check: Callable[[], bool], timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def _historic(c: LiveAvatarClient, session_id: str) -> SessionEntry | None:
    entry = c.get_session(session_id)
    return None if entry.is_active else entry


# --- catalogue, contexts, account -----------------------------------------------------------------


def test_avatars_voices_and_languages_are_the_engines_with_stable_uuids(la):
    own = la.avatars()
    assert [a.name for a in own] == ["Anna", "Ben", "Chen", "Dara"]
    assert all(uuid.UUID(a.id) and a.status == "ACTIVE" and not a.is_public for a in own)
    assert [a.id for a in la.avatars()] == [a.id for a in own]  # stable: derived, not random
    public = la.public_avatars()
    assert [(a.id, a.name, a.is_public) for a in public] == [(SANDBOX_AVATAR_ID, "Wayne", True)]
    voices = la.voices()
    assert voices and {a.default_voice_id for a in own} <= {v.id for v in voices}
    assert la.voices("private") == []
    assert ("en", "English") in [(x.code, x.name) for x in la.languages()]
    preview = requests.get(own[0].preview_url or "", timeout=10)
    assert preview.ok and preview.headers["content-type"] == "image/png"


def test_contexts_can_be_created_listed_read_updated_and_deleted(la):
    made = la.create_context("Support", "You help ${name}.", "Hello ${name}!", [{"url": "https://x.test", "faq": "?"}])
    assert made.required_dynamic_variables == ("name",) and made.links[0].url == "https://x.test"
    assert made.id in [c.id for c in la.contexts()]
    assert la.get_context(made.id) == made
    changed = la.update_context(made.id, "Sales", "Sell.", "Hi.")
    assert (changed.name, changed.prompt, changed.links, changed.created_at) == ("Sales", "Sell.", (), made.created_at)
    la.delete_context(made.id)
    with pytest.raises(NotFound, match=f"Context {made.id}"):
        la.get_context(made.id)
    with pytest.raises(NotFound):
        la.delete_context(made.id)


def test_credits_left_is_the_configured_grant(la):
    assert la.credits_left() == Decimal("1000.00")


# --- sessions ----------------------------------------------------------------------------------


def test_a_full_session_runs_is_billed_and_becomes_history(la):
    context = la.create_context("Greeter", "Be brief.", "Welcome!")
    before = la.credits_left()
    started = _full(la, context_id=context.id)
    assert started.livekit_url == "" and (started.max_session_duration or 0) > 0
    local = started.local_media or {}
    assert local["transport"] == "direct-webrtc" and local["offer"]["type"] == "offer" and local["token"]

    [active] = la.list_sessions(ACTIVE)
    assert (active.id, active.mode, active.source, active.is_sandbox) == (
        started.session_id,
        SessionMode.FULL,
        SessionSource.API,
        False,
    )
    assert active.is_active and active.created_at.tzinfo is not None
    assert abs((datetime.now(UTC) - active.created_at).total_seconds()) < 30
    la.keep_alive(started.session_id)
    time.sleep(1.5)
    running = la.get_session(started.session_id)
    assert running.credits_consumed > 0 and running.duration_s >= 1

    la.stop_session(started.session_id)
    assert la.list_sessions(ACTIVE) == []
    ended = la.get_session(started.session_id)
    assert ended.end_reason is SessionEndReason.USER_CLOSED and ended.end_at is not None
    assert 1.5 / 60 * 2 <= ended.credits_consumed < 10 / 60 * 2  # FULL: 2 credits a minute, fractional
    assert ended.credits_consumed != int(ended.credits_consumed)
    assert ended.id in [s.id for s in la.list_sessions(HISTORIC)]
    spent = before - la.credits_left()
    assert abs(spent - Decimal(str(ended.credits_consumed))) <= Decimal("0.01")


def test_stopping_an_ended_session_is_already_stopped_and_an_unknown_one_is_not_found(la):
    started = _full(la)
    la.stop_session(started.session_id)
    with pytest.raises(SessionAlreadyStopped) as info:
        la.stop_session(started.session_id)
    assert info.value.status == 404 and started.session_id in str(info.value)
    unknown = str(uuid.uuid4())
    for call in (la.stop_session, la.get_session, la.keep_alive, la.transcript):
        with pytest.raises(SessionNotFound) as missing:
            call(unknown)
        assert not isinstance(missing.value, SessionAlreadyStopped) and missing.value.status == 404


def test_a_session_token_starts_its_session_only_once(la):
    token = la.create_session_token(LiteSessionConfig(avatar_id=_avatar(la), video_quality="low"))
    la.start_session(token)
    with pytest.raises(Unauthorized, match="new session token"):
        la.start_session(token)


def test_the_concurrency_limit_refuses_a_third_session(la):
    lite = LiteSessionConfig(avatar_id=_avatar(la), video_quality="low")
    _start(la, lite)
    _start(la, lite)
    with pytest.raises(ConcurrencyLimit, match="concurrency") as info:
        la.create_session_token(lite)
    assert "concurrency" in info.value.detail.lower()
    assert len(la.list_sessions(ACTIVE)) == 2


def test_a_wrong_key_is_rejected_with_the_exact_message_everywhere(twin):
    with _client(twin, "heygen-key-that-is-not-liveavatars") as bad, _client(twin) as good:
        avatar = _avatar(good)
        calls = [
            bad.credits_left,
            lambda: bad.list_sessions(ACTIVE),
            lambda: bad.list_sessions(HISTORIC),
            bad.avatars,
            bad.voices,
            bad.contexts,
            lambda: bad.create_session_token(FullSessionConfig(avatar_id=avatar)),
            lambda: bad.stop_session(str(uuid.uuid4())),
            lambda: bad.get_session(str(uuid.uuid4())),
        ]
        for call in calls:
            with pytest.raises(Unauthorized) as info:
                call()
            assert str(info.value) == BAD_KEY_MESSAGE and info.value.status == 401
        assert [x.code for x in bad.languages()]  # no key needed
        assert bad.public_avatars()
    with LiveAvatarClient(twin.url, None) as nobody, pytest.raises(Unauthorized):
        nobody.credits_left()


def test_a_malformed_id_is_a_validation_error_naming_the_field(la):
    with pytest.raises(ValidationFailed) as info:
        la.get_session("not-a-uuid")
    assert info.value.status == 422 and info.value.field == "session_id" and "session_id" in str(info.value)


# --- the wire, as raw HTTP ----------------------------------------------------------------------


def _post(engine: EngineProcess, path: str, body: object, **headers: str) -> requests.Response:
    return requests.post(engine.url + path, json=body, headers=headers, timeout=10)


def _key(engine: EngineProcess) -> dict[str, str]:
    return {"X-API-KEY": engine.api_key.reveal()}


def test_wrong_auth_scheme_on_token_and_start_is_401(twin, la):
    token = la.create_session_token(LiteSessionConfig(avatar_id=_avatar(la), video_quality="low"))
    bearer = {"Authorization": f"Bearer {token.session_token.reveal()}"}
    body = {"mode": "LITE", "avatar_id": _avatar(la)}
    minted = requests.post(f"{twin.url}/v1/sessions/token", json=body, headers=bearer, timeout=10)
    assert minted.status_code == 401 and "X-API-KEY" in minted.json()["message"]
    started = requests.post(f"{twin.url}/v1/sessions/start", json={}, headers=_key(twin), timeout=10)
    assert started.status_code == 401 and "Bearer" in started.json()["message"]
    assert started.json()["data"] is None and started.json()["code"] == 401


def test_start_answers_201_and_the_envelope_uses_code_1000(twin, la):
    token = la.create_session_token(LiteSessionConfig(avatar_id=_avatar(la), video_quality="low"))
    bearer = {"Authorization": f"Bearer {token.session_token.reveal()}"}
    reply = requests.post(f"{twin.url}/v1/sessions/start", json={}, headers=bearer, timeout=30)
    assert reply.status_code == 201
    body = reply.json()
    assert (body["code"], body["message"], body["data"]["session_id"]) == (1000, "success", token.session_id)
    assert {"livekit_url", "livekit_client_token", "max_session_duration", "local"} <= body["data"].keys()
    stop = _post(twin, "/v1/sessions/stop", {}, Authorization=bearer["Authorization"])  # session implied
    assert stop.status_code == 200 and stop.json() == {"code": 1000, "data": None, "message": "success"}


def test_delete_on_a_session_is_405(twin):
    reply = requests.delete(f"{twin.url}/v1/sessions/{uuid.uuid4()}", headers=_key(twin), timeout=10)
    assert reply.status_code == 405


def test_list_shapes_are_paged_with_iso_z_times_and_string_credits(twin, la):
    started = _full(la)
    la.stop_session(started.session_id)
    listed = requests.get(
        f"{twin.url}/v1/sessions", params={"type": "historic", "page_size": 1}, headers=_key(twin), timeout=10
    ).json()["data"]
    assert set(listed) == {"count", "next", "previous", "results"} and listed["previous"] is None
    assert listed["count"] >= 1 and len(listed["results"]) == 1
    if listed["count"] > 1:
        assert "page=2" in listed["next"]
    row = listed["results"][0]
    assert row["created_at"].endswith("Z") and row["end_at"].endswith("Z")
    assert isinstance(row["credits_consumed"], float) and row["end_reason"]
    credits = requests.get(f"{twin.url}/v1/users/credits", headers=_key(twin), timeout=10).json()["data"]
    assert isinstance(credits["credits_left"], str) and Decimal(credits["credits_left"]) > 0


@pytest.mark.parametrize(
    ("path", "params", "loc"),
    [
        ("/v1/sessions", {}, ["query", "type"]),
        ("/v1/sessions", {"type": "active", "page_size": 101}, ["query", "page_size"]),
        ("/v1/sessions", {"type": "later"}, ["query", "type"]),
    ],
)
def test_invalid_queries_get_fastapi_422_bodies(twin, path, params, loc):
    reply = requests.get(twin.url + path, params=params, headers=_key(twin), timeout=10)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == loc and reply.json()["detail"][0]["msg"]


def test_invalid_token_bodies_get_422_naming_the_field(twin, la):
    bad_uuid = _post(twin, "/v1/sessions/token", {"avatar_id": "wayne"}, **_key(twin))
    assert bad_uuid.status_code == 422 and bad_uuid.json()["detail"][0]["loc"] == ["body", "avatar_id"]
    no_persona = _post(twin, "/v1/sessions/token", {"avatar_id": _avatar(la)}, **_key(twin))
    assert no_persona.status_code == 422
    assert no_persona.json()["detail"][0]["msg"] == "Provide exactly one of avatar_persona or voice_agent"


def test_sandbox_rules_are_enforced_by_the_twin(twin, la):
    persona = {"avatar_persona": {"language": "en"}, "is_sandbox": True}
    not_wayne = _post(twin, "/v1/sessions/token", {"avatar_id": _avatar(la), **persona}, **_key(twin))
    assert not_wayne.status_code == 400 and "Wayne" in not_wayne.json()["message"]
    too_long = _post(
        twin,
        "/v1/sessions/token",
        {"avatar_id": SANDBOX_AVATAR_ID, "max_session_duration": 61, **persona},
        **_key(twin),
    )
    assert too_long.status_code == 400
    assert too_long.json()["message"] == "max_session_duration (61s) exceeds the maximum allowed (60s)"


# --- media and transcript -----------------------------------------------------------------------


async def test_a_twin_session_streams_over_webrtc_and_its_words_make_the_transcript(twin, la):
    loop = asyncio.get_running_loop()
    started = await loop.run_in_executor(None, _full, la)
    local = started.local_media or {}
    received = Received()
    conn = DirectConnection(on_video=received.on_video, on_audio=received.on_audio, on_event=received.on_event)
    answer = await conn.answer(local["offer"])
    engine_id = local["engine_session_id"]
    with StreamingClient(local["base_url"], token=local["token"], backoff=0) as media:
        try:
            await loop.run_in_executor(None, media.start, engine_id, answer)
            assert await wait_for(lambda: len(received.video) > 10, timeout=20)
            await loop.run_in_executor(None, media.task, engine_id, "Hello from the twin.")
            transcript = await loop.run_in_executor(None, la.transcript, started.session_id)
            assert transcript.session_active
            assert [(x.role, x.text) for x in transcript.lines] == [("avatar", "Hello from the twin.")]
            line = transcript.lines[0]
            assert line.relative_timestamp >= 0 and abs(line.absolute_timestamp - time.time()) < 60
            later = await loop.run_in_executor(None, la.transcript, started.session_id, transcript.next_timestamp)
            assert later.lines == ()
            await loop.run_in_executor(None, la.stop_session, started.session_id)
            assert await wait_for(lambda: conn.state in ("closed", "failed", "disconnected"), timeout=10)
        finally:
            await conn.close()
    after = await loop.run_in_executor(None, la.transcript, started.session_id)
    assert not after.session_active and [x.text for x in after.lines] == ["Hello from the twin."]
    assert (await loop.run_in_executor(None, la.get_session, started.session_id)).end_reason is (
        SessionEndReason.USER_CLOSED
    )
    with pytest.raises(HeyGenError):  # the engine session underneath has ended too
        StreamingClient(local["base_url"], token=local["token"], backoff=0).task(engine_id, "Still there?")


# --- secrets ------------------------------------------------------------------------------------


def test_neither_key_nor_session_token_reaches_an_exception_or_the_log(twin, la, caplog):
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    token = la.create_session_token(FullSessionConfig(avatar_id=_avatar(la), video_quality="low"))
    started = la.start_session(token)
    with contextlib.suppress(LiveAvatarError):
        la.start_session(token)
    for call in (
        lambda: la.start_session(token),
        lambda: la.stop_session(str(uuid.uuid4())),
        lambda: _client(twin, "wrong").credits_left(),
        lambda: la.get_session("bad id"),
    ):
        with pytest.raises(LiveAvatarError) as info:
            call()
        texts += [str(info.value), repr(info.value), info.value.detail]
    la.stop_session(started.session_id)
    with pytest.raises(SessionAlreadyStopped) as stopped:
        la.stop_session(started.session_id)
    texts += [str(stopped.value), repr(token), repr(started), repr(la)]
    texts += [record.getMessage() for record in caplog.records]
    texts.append(twin.log_path.read_text(errors="replace"))
    secrets = [twin.api_key.reveal(), token.session_token.reveal(), str((started.local_media or {})["token"])]
    assert caplog.records  # the client did log its requests
    for text in texts:
        for secret in secrets:
            assert secret not in text


# --- paging, idle, sandbox, credits running out (lean twin) --------------------------------------


def test_history_is_read_across_pages_past_100(lean, seeded_ids):
    _, ids = seeded_ids
    history = lean.list_sessions(HISTORIC)
    assert [s.id for s in history] == ids  # newest first, each once
    assert {s.source for s in history} == {SessionSource.API, SessionSource.EMBED}
    assert all(s.end_reason is SessionEndReason.USER_CLOSED and s.duration_s == 90 for s in history)
    assert lean.credits_left() == Decimal("2.05")


def test_keep_alive_holds_an_idle_session_and_without_it_the_session_ends_idle(lean):
    sandbox = LiteSessionConfig(avatar_id=SANDBOX_AVATAR_ID, is_sandbox=True, video_quality="low")
    started = _start(lean, sandbox)
    for _ in range(9):  # 4.5 s, longer than the 3 s idle timeout
        lean.keep_alive(started.session_id)
        time.sleep(0.5)
    assert lean.get_session(started.session_id).is_active
    assert _until(lambda: _historic(lean, started.session_id) is not None, timeout=8)
    ended = lean.get_session(started.session_id)
    assert ended.end_reason is SessionEndReason.IDLE_TIMEOUT and ended.credits_consumed == 0


def test_a_sandbox_session_is_free_one_at_a_time_and_ends_at_its_max_duration(lean):
    before = lean.credits_left()
    sandbox = FullSessionConfig(
        avatar_id=SANDBOX_AVATAR_ID, is_sandbox=True, video_quality="low", max_session_duration=2
    )
    started = _start(lean, sandbox)
    assert started.max_session_duration == 2
    with pytest.raises(ConcurrencyLimit, match="concurrency"):
        lean.create_session_token(sandbox)
    assert _until(lambda: _historic(lean, started.session_id) is not None, timeout=8)
    ended = lean.get_session(started.session_id)
    assert ended.end_reason is SessionEndReason.MAX_DURATION_REACHED and ended.is_sandbox
    assert ended.credits_consumed == 0 and lean.credits_left() == before


def test_running_out_of_credits_ends_the_session_and_refuses_new_ones(lean):
    started = _start(lean, FullSessionConfig(avatar_id=_avatar(lean), video_quality="low"))

    def ended() -> bool:
        if not lean.get_session(started.session_id).is_active:
            return True
        with contextlib.suppress(SessionNotFound):  # it may end between the two calls
            lean.keep_alive(started.session_id)  # only credits may end it, not the 3 s idle timeout
        return False

    assert _until(ended, timeout=12, step=0.5)
    entry = lean.get_session(started.session_id)
    assert entry.end_reason is SessionEndReason.NO_CREDITS
    assert LEAN_LEFT <= entry.credits_consumed < LEAN_LEFT + 1.0  # at most one 1 s billing tick late
    assert lean.credits_left() == 0
    for config in (
        FullSessionConfig(avatar_id=_avatar(lean)),
        LiteSessionConfig(avatar_id=_avatar(lean)),
    ):
        with pytest.raises(InsufficientCredits, match="insufficient credits"):
            lean.create_session_token(config)
    free = LiteSessionConfig(avatar_id=SANDBOX_AVATAR_ID, is_sandbox=True, video_quality="low")
    lean.stop_session(_start(lean, free).session_id)  # sandbox needs no credits


# --- restart (last: restarts the module's twin) -------------------------------------------------


def test_history_and_balance_survive_a_restart_and_running_sessions_end_as_server_error(twin, la):
    running = _full(la)
    time.sleep(0.5)
    twin.restart()
    with _client(twin) as after:
        assert after.list_sessions(ACTIVE) == []
        ended = after.get_session(running.session_id)
        assert ended.end_reason is SessionEndReason.SERVER_ERROR and ended.credits_consumed > 0
        history = after.list_sessions(HISTORIC)
        credits = after.credits_left()
    consumed = sum(Decimal(str(s.credits_consumed)) for s in history)
    assert abs(Decimal("1000") - consumed - credits) <= Decimal("0.01")
    assert running.session_id in [s.id for s in history]
