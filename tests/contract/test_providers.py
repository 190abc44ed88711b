"""lib/providers.py against real engines: the local engine's restart, and LiveAvatar through the engine's twin."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest

from lib.accounts import AccountError, AccountErrorKind, StopOutcome
from lib.engine.launcher import EngineProcess
from lib.providers import Provider, check_health, connect, local_provider
from lib.settings import load_settings
from tests.support.liveavatar import DAY, ended, la_client, seed_history, start_session, start_twin, stop_all

PAST = str(uuid.UUID(int=0xC1))


def test_local_provider_restarts_its_dead_engine(tmp_path):
    settings = load_settings({}, {"AVATAR_OPS_DATA_DIR": str(tmp_path)})
    provider = local_provider(settings)
    try:
        assert check_health(provider).ok
        url = provider.base_url
        provider.engine.process.kill()
        provider.engine.process.wait()
        health = check_health(provider)
        assert health.ok, health.message
        assert provider.engine.running and provider.engine.restarts == 1
        assert provider.base_url == url  # same port and key: clients and live pages carry on
        assert provider.client.list() == []
    finally:
        provider.close()
    assert not provider.engine.running


# -- LiveAvatar, against the engine's twin ---------------------------------------------------------


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    history = tmp_path_factory.mktemp("la-providers") / "history.db"
    seed_history(history, [ended(PAST, 15, 60, 2.0, words=[("avatar", "Bye.")])])
    proc = start_twin(history)
    try:
        yield proc
    finally:
        proc.stop()


def liveavatar(twin: EngineProcess, key: str | None = None) -> Provider:
    env = {"LIVEAVATAR_BASE_URL": twin.url, "LIVEAVATAR_API_KEY": key or twin.api_key.reveal()}
    return connect(load_settings({}, env))


def test_liveavatar_provider_declares_its_capabilities_and_reaches_the_twin(twin: EngineProcess) -> None:
    provider = liveavatar(twin)
    try:
        assert provider.name == "liveavatar" and provider.label == "LiveAvatar" and provider.base_url == twin.url
        assert provider.capabilities.credits_balance and provider.capabilities.billed_history
        health = check_health(provider)
        assert health.ok, health.message
        assert provider.account.credits_left() == Decimal("998.00")  # 1,000 granted, 2 billed to PAST
        assert provider.client.endpoint == provider.account.endpoint  # Live chat bills the same account
        assert any(a.pose_name and "(public)" in a.pose_name for a in provider.client.avatars())
    finally:
        provider.close()


def test_liveavatar_account_stops_once_then_reports_already_gone(twin: EngineProcess) -> None:
    provider = liveavatar(twin)
    try:
        with la_client(twin) as client:
            sid = start_session(client)
        listed = provider.account.active_sessions()
        assert [(s.session_id, s.mode, s.source, s.is_sandbox) for s in listed] == [(sid, "FULL", "API", False)]
        assert provider.account.stop(sid).outcome is StopOutcome.STOPPED
        again = provider.account.stop(sid)
        assert again.outcome is StopOutcome.ALREADY_GONE and "already ended" in again.message
        assert provider.account.stop(str(uuid.uuid4())).outcome is StopOutcome.ALREADY_GONE
    finally:
        stop_all(twin)
        provider.close()


def test_liveavatar_history_is_filtered_by_start_day_and_carries_the_bill(twin: EngineProcess) -> None:
    provider = liveavatar(twin)
    try:
        (past,) = provider.account.history(DAY, DAY + timedelta(days=1))
        assert (past.session_id, past.mode, past.credits_consumed, past.end_reason) == (
            PAST,
            "FULL",
            2.0,
            "USER_CLOSED",
        )
        assert past.ended_at == DAY + timedelta(minutes=16)
        assert provider.account.history(DAY + timedelta(days=1), DAY + timedelta(days=2)) == []
        assert [(x.role, x.text) for x in provider.account.transcript(PAST)] == [("avatar", "Bye.")]
    finally:
        provider.close()


def test_a_wrong_liveavatar_key_is_an_actionable_health_message(twin: EngineProcess) -> None:
    provider = liveavatar(twin, key="la-wrong-key-0123456789")
    try:
        health = check_health(provider)
        assert not health.ok and "app.liveavatar.com/developers" in health.message
        assert "la-wrong-key" not in health.message
        with pytest.raises(AccountError) as info:
            provider.account.active_sessions()
        assert info.value.kind is AccountErrorKind.REJECTED_KEY
    finally:
        provider.close()
