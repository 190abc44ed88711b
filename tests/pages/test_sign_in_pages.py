"""Sign-in and roles at the page level (AppTest, real local engine): a viewer's pages offer no operator
controls and a crafted rerun that asks for a stop anyway is refused (nothing stopped, nothing logged as
stopped); the sign-in and refusal pages; the warning when the app listens beyond loopback without sign-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit import config
from streamlit.testing.v1 import AppTest

from lib.heygen import NewSessionRequest, StreamingClient
from lib.usage.store import UsageLog
from tests.pages.test_page_sessions import configure

ROOT = Path(__file__).resolve().parents[2]
APP, SESSIONS, USAGE = (str(ROOT / p) for p in ("app.py", "views/sessions.py", "views/usage.py"))
OPERATOR, VIEWER = "otto@example.com", "vera@example.com"
AUTH = {
    "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
    "cookie_secret": "test-cookie-secret-0123456789",
    "client_id": "avatar-ops-tests",
    "client_secret": "test-client-secret",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}
EXPOSED = "without sign-in: anyone who can reach it"


@pytest.fixture
def db(engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = configure(monkeypatch, tmp_path, engine.url, engine.api_key.reveal())
    monkeypatch.setenv("OPERATOR_EMAILS", OPERATOR)
    monkeypatch.setenv("VIEWER_EMAILS", VIEWER)
    yield path
    st.cache_resource.clear()


@pytest.fixture
def address() -> Iterator[None]:
    """Restore the process-wide server.address a test changes."""
    before = config.get_option("server.address")
    yield
    config.set_option("server.address", before)


def app_test(script: str, email: str | None) -> AppTest:
    at = AppTest.from_file(script, default_timeout=30)
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": email is not None, **({"email": email} if email else {})}
    return at


def test_a_crafted_stop_from_a_viewer_is_refused_and_nothing_is_stopped(db: Path, client: StreamingClient) -> None:
    sid = client.new(NewSessionRequest(quality="low")).session_id
    at = app_test(SESSIONS, VIEWER).run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["session_id"]) == [sid]  # the viewer sees the session
    assert not [b.label for b in at.button if "stop" in b.label.lower()]
    assert any("Viewers cannot stop sessions" in c.value for c in at.caption)

    # What a hidden button would have set: the confirmation dialog, with its own button, is reached anyway.
    at.session_state["stop_pending"] = {"ids": [sid], "action": "force_stop"}
    at.run()
    next(b for b in at.button if b.label == "Force stop 1").click().run()
    assert not at.exception, at.exception
    assert any(f"{VIEWER} (viewer) may not force-stop sessions" in e.value for e in at.error)
    assert [s.session_id for s in client.list()] == [sid]  # still running
    with UsageLog(db) as log:
        assert not log.was_force_stopped(sid) and log.audit_entries() == []


def test_an_operator_is_offered_the_stop_buttons(db: Path, client: StreamingClient) -> None:
    client.new(NewSessionRequest(quality="low"))
    at = app_test(SESSIONS, OPERATOR).run()
    assert not at.exception, at.exception
    assert "Stop all 1" in [b.label for b in at.button]


def test_a_viewer_cannot_save_pricing_on_the_usage_page(db: Path) -> None:
    at = app_test(USAGE, VIEWER).run()
    assert not at.exception, at.exception
    save = next(b for b in at.button if b.label == "Save pricing")
    assert save.disabled
    assert any("Viewers cannot edit pricing" in c.value for c in at.caption)


def test_signed_out_visitors_see_only_the_sign_in_page(db: Path) -> None:
    at = app_test(APP, None).run()
    assert not at.exception, at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not [w for w in at.warning if EXPOSED in w.value]  # sign-in is configured


def test_an_unknown_user_gets_the_refusal_page_with_sign_out(db: Path) -> None:
    at = app_test(APP, "eve@elsewhere.example.org").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Not allowed"
    assert "eve@elsewhere.example.org" in at.error[0].value
    assert [b.label for b in at.button] == ["Sign out"]


def test_a_viewer_opening_live_chat_is_told_it_is_for_operators(db: Path) -> None:
    at = app_test(APP, VIEWER).run()
    at.switch_page("views/live_chat.py").run()
    assert not at.exception, at.exception
    assert any("Viewers cannot start avatar sessions" in c.value for c in at.caption)
    assert not [b for b in at.button if b.label in ("Start", "START")]


def test_every_page_warns_when_listening_beyond_loopback_without_sign_in(db: Path, address: None) -> None:
    config.set_option("server.address", "0.0.0.0")
    at = AppTest.from_file(APP, default_timeout=30).run()  # Live chat: its video component needs a browser
    for page in ("views/sessions.py", "views/usage.py"):
        at.switch_page(page).run()
        assert not at.exception, at.exception
        assert any(EXPOSED in w.value and "0.0.0.0" in w.value for w in at.warning), page

    config.set_option("server.address", "127.0.0.1")
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page("views/sessions.py").run()
    assert not at.exception, at.exception
    assert not [w for w in at.warning if EXPOSED in w.value]
