"""lib/capabilities.py, the provider settings and the cost guards that follow them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lib.capabilities import CAPABILITIES, FREE_PROVIDERS, ProviderKind, Transport, capabilities_of
from lib.guards import BudgetLevel, BudgetStatus, admit_session, month_status
from lib.settings import LIVEAVATAR_BASE_URL, SettingsError, load_settings
from lib.usage.credits import PRESETS, Pricing
from lib.usage.store import EndReason, HistoryRow, UsageLog

LA_KEY = "la-secret-key-0123456789"


def test_a_liveavatar_key_selects_liveavatar_with_its_pricing_defaults() -> None:
    settings = load_settings({}, {"LIVEAVATAR_API_KEY": LA_KEY})
    assert settings.provider == "liveavatar"
    assert settings.liveavatar_base_url == LIVEAVATAR_BASE_URL
    assert settings.credit_preset == "liveavatar" and settings.price_per_credit == pytest.approx(0.099)
    assert LA_KEY not in repr(settings)


def test_a_heygen_key_alone_no_longer_selects_the_shut_down_api() -> None:
    settings = load_settings({}, {"HEYGEN_API_KEY": "hg-key"})
    assert settings.provider == "local" and settings.credit_preset == "heygen_current"
    assert load_settings({}, {"HEYGEN_API_KEY": "hg-key", "AVATAR_PROVIDER": "heygen"}).provider == "heygen"


def test_provider_setting_from_secrets_wins_and_a_bad_one_names_the_choices() -> None:
    settings = load_settings(
        {"AVATAR_PROVIDER": "local", "LIVEAVATAR_BASE_URL": "http://127.0.0.1:9/"}, {"LIVEAVATAR_API_KEY": LA_KEY}
    )
    assert settings.provider == "local" and settings.liveavatar_base_url == "http://127.0.0.1:9"
    with pytest.raises(SettingsError, match="local, liveavatar, heygen"):
        load_settings({}, {"AVATAR_PROVIDER": "hey"})


def test_liveavatar_bills_by_mode_and_sandbox_is_free() -> None:
    la = CAPABILITIES[ProviderKind.LIVEAVATAR]
    assert (la.rate_for("FULL"), la.rate_for("LITE"), la.rate_for("FULL", is_sandbox=True)) == (2.0, 1.0, 0.0)
    assert la.transport is Transport.LIVEKIT and la.credits_balance and la.billed_history and la.transcripts
    assert la.idle_timeout_s == 300 and not la.reports_idle


def test_heygen_is_labelled_shut_down_and_only_the_local_engine_is_free() -> None:
    heygen = CAPABILITIES[ProviderKind.HEYGEN]
    assert heygen.shut_down == "2026-03-31" and "shut down 2026-03-31" in heygen.label
    assert FREE_PROVIDERS == ("local",)
    assert capabilities_of("something-else").bills_credits  # unknown names in old logs count as billed


def test_budget_guard_holds_billed_providers_only() -> None:
    over = BudgetStatus(120.0, 100.0, BudgetLevel.OVER)
    pricing = Pricing()
    assert not admit_session(over, pricing, "liveavatar").allowed
    assert not admit_session(over, pricing, "heygen").allowed
    assert admit_session(over, pricing, "local").allowed
    assert admit_session(over, pricing, "liveavatar", override=True).open_events


def test_the_monthly_budget_counts_billed_credits_instead_of_estimates(tmp_path) -> None:
    now = datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp()
    pricing = Pricing(PRESETS["liveavatar"], 0.1, monthly_budget_credits=10)
    with UsageLog(tmp_path / "usage.db") as log:
        log.open_session("s", "liveavatar", created_at=now - 3600)
        log.close_session("s", EndReason.STOPPED, at=now - 3600 + 60)  # estimated: 2 credits (FULL, 1 min)
        assert month_status(log, pricing, now=now).level is BudgetLevel.OK
        log.import_provider_history([HistoryRow("s", now - 3600, 60, mode="FULL", billed_credits=9.0)], "liveavatar")
        status = month_status(log, pricing, now=now)
    assert status.used_credits == pytest.approx(9.0) and status.level is BudgetLevel.WARN
