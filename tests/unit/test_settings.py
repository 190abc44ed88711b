"""lib/settings.py: every value is checked once, where settings are read, with a message naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("env", "names", "says"),
    [
        ({"MONTHLY_BUDGET_CREDITS": "-1"}, "MONTHLY_BUDGET_CREDITS", "0 or more"),
        ({"PRICE_PER_CREDIT": "nan"}, "PRICE_PER_CREDIT", "finite"),
        ({"PRICE_PER_CREDIT": "inf"}, "PRICE_PER_CREDIT", "finite"),
        ({"PRICE_PER_CREDIT": "-0.5"}, "PRICE_PER_CREDIT", "0 or more"),
        ({"PRICE_PER_CREDIT": "cheap"}, "PRICE_PER_CREDIT", "a number"),
        ({"SESSION_MAX_MINUTES": "-5"}, "SESSION_MAX_MINUTES", "0 or more"),
        ({"WATCHER_TIMEOUT": "0"}, "WATCHER_TIMEOUT", "1 or more"),
        ({"ENGINE_PORT": "70000"}, "ENGINE_PORT", "between 0 and 65535"),
        ({"ENGINE_SESSION_BUDGET": "0"}, "ENGINE_SESSION_BUDGET", "1 or more"),
        ({"ENGINE_MAX_DURATION": "-1"}, "ENGINE_MAX_DURATION", "1 or more"),
        ({"IDLE_TIMEOUT": "5"}, "IDLE_TIMEOUT", "between 30 and 3600"),
        ({"CREDIT_PRESET": "cheapest"}, "CREDIT_PRESET", "one of"),
        ({"AVATAR_PROVIDER": "acme"}, "AVATAR_PROVIDER", "one of"),
    ],
)
def test_an_unusable_value_is_refused_with_the_setting_and_what_it_must_be(
    env: dict[str, str], names: str, says: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({}, env)
    message = str(raised.value)
    assert names in message and says in message


def test_a_bad_value_in_the_secrets_file_is_refused_too() -> None:
    with pytest.raises(SettingsError, match="MONTHLY_BUDGET_CREDITS"):
        load_settings({"monthly_budget_credits": -1}, {})


def test_edge_values_that_mean_something_are_accepted() -> None:
    settings = load_settings(
        {}, {"MONTHLY_BUDGET_CREDITS": "0", "PRICE_PER_CREDIT": "0", "SESSION_MAX_MINUTES": "0", "ENGINE_PORT": "0"}
    )
    assert (settings.monthly_budget_credits, settings.price_per_credit, settings.session_max_minutes) == (0, 0, 0)
    assert load_settings({}, {"CREDIT_PRESET": "heygen_older"}).credit_preset == "heygen_older"


def test_defaults_load_without_any_setting() -> None:
    settings = load_settings({}, {})
    assert settings.monthly_budget_credits == 100 and settings.price_per_credit > 0


def test_database_url_selects_postgresql_and_never_shows_its_password() -> None:
    url = "postgresql://ops:s3cret-pw@db.example:5432/usage"
    settings = load_settings({}, {"DATABASE_URL": url, "USAGE_DB_PATH": "/tmp/ignored.db"})
    assert settings.usage_target == url
    assert settings.usage_location == "postgresql://ops:***@db.example:5432/usage"
    assert "s3cret-pw" not in repr(settings)


def test_secrets_file_database_url_wins_over_the_environment() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://a:b@h/db1"}, {"DATABASE_URL": "postgresql://a:b@h/db2"})
    assert str(settings.usage_target).endswith("/db1")


def test_sqlite_database_url_and_no_setting_keep_the_file() -> None:
    assert load_settings({}, {"DATABASE_URL": "sqlite:////var/lib/ops/usage.db"}).usage_target == Path(
        "/var/lib/ops/usage.db"
    )
    plain = load_settings({}, {"AVATAR_OPS_DATA_DIR": "/srv/ops"})
    assert plain.database_url is None and plain.usage_target == Path("/srv/ops/usage.db")
    assert load_settings({}, {"USAGE_DB_PATH": "/x/u.db"}).usage_target == Path("/x/u.db")


def test_an_unknown_database_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL") as raised:
        load_settings({}, {"DATABASE_URL": "mysql://root:hunter2@h/db"})
    assert "hunter2" not in str(raised.value)
