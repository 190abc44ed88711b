"""Sign-in in Chromium against a real OpenID Connect provider (oidc-provider-mock on a loopback port): a viewer
sees sessions but cannot stop them, an operator force-stops one and the audit trail names them, an unknown
user gets the refusal page, and sign-out ends the sign-in. Plus: without ``[auth]`` the app binds loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import Browser, Page

from lib.access import Action
from lib.engine.launcher import EngineProcess
from lib.heygen import NewSessionRequest, StreamingClient
from lib.usage.store import EndReason, UsageLog
from tests.support.browser import AppServer, go_to, no_exceptions, run_app, screenshot, wait_for
from tests.support.oidc import running_oidc_provider, sign_in, sign_out, write_auth_secrets

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OPERATOR = "otto@example.com"
VIEWER = "vera@example.com"
SIDEBAR = "[data-testid='stSidebarUserContent']"


@pytest.fixture(scope="module")
def app(engine: EngineProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The app with sign-in configured against a provider started for this module."""
    from tests.support.browser import chromium_missing

    if reason := chromium_missing():
        pytest.skip(reason)
    data = tmp_path_factory.mktemp("signin")
    with running_oidc_provider() as issuer:
        secrets_file = write_auth_secrets(data / "secrets" / "secrets.toml", issuer)
        roles = {"OPERATOR_EMAILS": OPERATOR, "VIEWER_EMAILS": f"{VIEWER}, @viewers.example.com"}
        with run_app(engine, data, extra_env=roles, extra_args=["--secrets.files", str(secrets_file)]) as server:
            yield server


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1500, "height": 1400})  # its own cookies: its own user
    yield context.new_page()
    context.close()


def signed_in_as(page: Page, app: AppServer, email: str) -> None:
    sign_in(page, app.url, email)
    page.locator(SIDEBAR).get_by_text(f"Signed in as {email}").wait_for(timeout=30_000)


def test_a_visitor_must_sign_in_before_seeing_anything(app: AppServer, page: Page) -> None:
    page.goto(app.url)
    page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
    assert page.locator("[data-testid='stSidebarNav']").count() == 0
    assert "Provider:" not in page.content()


def test_a_viewer_sees_sessions_without_stop_buttons_and_can_sign_out(
    app: AppServer, page: Page, client: StreamingClient
) -> None:
    sid = client.new(NewSessionRequest(quality="low")).session_id
    signed_in_as(page, app, VIEWER)
    page.get_by_role("heading", name="Sessions").wait_for(timeout=30_000)  # a viewer lands on Sessions
    page.get_by_text("Viewers cannot stop sessions").wait_for(timeout=30_000)  # drawn under the table
    active = page.locator("[data-testid='stMetric']").filter(has_text="Active sessions")
    assert wait_for(lambda: "1" in active.inner_text(), 10)
    main = page.locator("[data-testid='stMain']").inner_text()
    assert "Force stop" not in main and "Stop all" not in main
    assert [s.session_id for s in client.list()] == [sid]
    no_exceptions(page)

    go_to(page, "Live chat")  # starting a session spends credits: not for viewers
    page.get_by_text("Viewers cannot start avatar sessions").wait_for(timeout=30_000)
    go_to(page, "Usage")
    page.get_by_text("Pricing:").first.click()
    assert page.get_by_role("button", name="Save pricing").is_disabled()
    screenshot(page, "sign_in_viewer_usage.png")

    sign_out(page)
    page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
    assert page.locator("[data-testid='stSidebarNav']").count() == 0


def test_an_operator_force_stops_a_session_and_the_audit_trail_names_them(
    app: AppServer, page: Page, client: StreamingClient
) -> None:
    sid = client.new(NewSessionRequest(quality="low")).session_id
    signed_in_as(page, app, OPERATOR)
    go_to(page, "Sessions")
    page.get_by_role("button", name="Stop all 1").click(timeout=30_000)
    page.get_by_role("button", name="Force stop 1", exact=True).click(timeout=30_000)
    page.get_by_text(f"Force stop by {OPERATOR}: 1 of 1 stopped").wait_for(timeout=30_000)
    assert client.list() == []
    with UsageLog(app.data_dir / "usage.db") as log:
        row = log.get_session(sid)
        assert row is not None and row.end_reason == EndReason.FORCE_STOPPED
        (entry,) = log.audit_entries(target=sid)
    assert (entry.actor, entry.action, entry.detail) == (OPERATOR, Action.FORCE_STOP, "stopped")
    page.get_by_text("Recent stops").click()
    page.get_by_text(f"stopped by {OPERATOR}").first.wait_for(timeout=10_000)
    go_to(page, "Usage")
    page.get_by_text("Audit trail: 1 recent action(s)").wait_for(timeout=30_000)
    screenshot(page, "sign_in_operator_audit.png")
    no_exceptions(page)


def test_an_unknown_user_gets_the_refusal_page(app: AppServer, page: Page) -> None:
    sign_in(page, app.url, "eve@elsewhere.example.org")
    page.get_by_role("heading", name="Not allowed").wait_for(timeout=30_000)
    assert "eve@elsewhere.example.org" in page.locator("[data-testid='stMain']").inner_text()
    assert page.locator("[data-testid='stSidebarNav']").count() == 0
    page.get_by_role("button", name="Sign out").wait_for()
    no_exceptions(page)


def test_without_auth_the_app_listens_on_loopback_only(engine: EngineProcess, tmp_path: Path) -> None:
    with run_app(engine, tmp_path / "app") as server:
        port = int(server.url.rsplit(":", 1)[1])
        listening = {
            c.laddr.ip
            for c in psutil.Process(server.process.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        }
    assert listening == {"127.0.0.1"}
