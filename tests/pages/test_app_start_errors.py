"""The app with a bad setting or an unusable data folder: one clear message on the page, never a traceback
(issue 13, section 5)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("AVATAR_OPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("USAGE_DB_PATH", str(tmp_path / "usage.db"))
    monkeypatch.setenv("AVATAR_PROVIDER", "local")
    monkeypatch.setenv("ENGINE_URL", "http://127.0.0.1:9")  # never reached: the page stops before the provider
    monkeypatch.setenv("ENGINE_API_KEY", "unused-key-for-this-test")
    for name in ("LIVEAVATAR_API_KEY", "HEYGEN_API_KEY", "PRICE_PER_CREDIT", "MONTHLY_BUDGET_CREDITS"):
        monkeypatch.delenv(name, raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield tmp_path
    st.cache_resource.clear()


def run_usage_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.switch_page("views/usage.py").run()
    return at


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [("MONTHLY_BUDGET_CREDITS", "-1", "0 or more"), ("PRICE_PER_CREDIT", "nan", "finite")],
)
def test_a_bad_setting_is_one_message_naming_it(
    app_env: Path, monkeypatch: pytest.MonkeyPatch, setting: str, value: str, says: str
) -> None:
    monkeypatch.setenv(setting, value)
    at = run_usage_page()
    assert not at.exception, at.exception
    (error,) = at.error
    assert error.value.startswith(f"Configuration problem: {setting} must be") and says in error.value
    assert not [m for m in at.markdown if "$nan" in m.value]


def test_a_usage_log_that_is_not_a_database_is_named_and_left_untouched(app_env: Path) -> None:
    junk = app_env / "usage.db"
    junk.write_bytes(b"not a database\n" * 100)
    at = run_usage_page()
    assert not at.exception, at.exception
    (error,) = at.error
    assert f"The usage log {junk} is not a SQLite database (it was left untouched)" in error.value
    assert junk.read_bytes() == b"not a database\n" * 100


def test_an_unwritable_data_folder_is_named_with_the_setting_to_change(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AVATAR_OPS_DATA_DIR", "/sys/avatar-ops-test")
    monkeypatch.setenv("USAGE_DB_PATH", "/sys/avatar-ops-test/usage.db")
    at = run_usage_page()
    assert not at.exception, at.exception
    (error,) = at.error
    assert "/sys/avatar-ops-test/usage.db" in error.value and "AVATAR_OPS_DATA_DIR" in error.value
