"""Browser end-to-end: the Sessions and Usage pages render in Chromium and their charts draw."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from lib.engine.launcher import EngineProcess
from lib.heygen import NewSessionRequest, StreamingClient
from lib.usage.store import EndReason, UsageLog
from tests.support.browser import chromium_missing, no_exceptions, open_page, run_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHARTS = "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg.marks"


def seed(path: Path, now: float) -> None:
    """About six weeks of sessions, so every chart has something to draw."""
    rng = random.Random(6)
    with UsageLog(path) as log:
        for i in range(400):
            created = now - rng.random() * 42 * 86400
            sid = f"seed-{i}"
            log.open_session(
                sid,
                rng.choice(["heygen", "heygen", "local"]),
                rng.choice(["anna", "bob", "cleo"]),
                "joe",
                rng.choice(["low", "medium", "high"]),
                "VP8",
                created_at=created,
            )
            log.close_session(sid, EndReason.STOPPED, at=created + rng.expovariate(1 / 240))


@pytest.fixture(scope="module")
def app(engine: EngineProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if reason := chromium_missing():
        pytest.skip(reason)
    data = tmp_path_factory.mktemp("app")
    seed(data / "usage.db", time.time())
    with run_app(engine, data) as server:
        yield server.url


def test_deep_link_on_a_fresh_server_goes_through_the_app(app: str, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(f"{app}/usage")  # must stay the first request this server sees
    page.get_by_role("heading", name="Usage").wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    sidebar = page.locator("[data-testid='stSidebar']").inner_text()
    page.close()
    assert "Provider:" in sidebar  # app.py ran: its sidebar and navigation are there


def test_usage_page_renders_and_charts_draw(app: str, browser: Browser, artifacts: Path) -> None:
    page = open_page(browser, app, "Usage")
    page.wait_for_function(f'document.querySelectorAll("{CHARTS}").length >= 4', timeout=30_000)
    page.wait_for_timeout(1500)  # let Vega finish drawing before the screenshot
    no_exceptions(page)
    assert page.locator("[data-testid='stMetric']").count() == 7
    page.screenshot(path=artifacts / "usage.png", full_page=True)
    page.close()


def test_sessions_page_lists_running_sessions(
    app: str, browser: Browser, artifacts: Path, client: StreamingClient, engine: EngineProcess
) -> None:
    client.new(NewSessionRequest(quality="low"))
    client.new(NewSessionRequest(quality="medium"))
    page = open_page(browser, app, "Sessions")
    page.locator("[data-testid='stDataFrame']").wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    no_exceptions(page)
    values = page.locator("[data-testid='stMetricValue']").all_inner_texts()
    assert values[:2] == ["2", "3 / 6"]
    assert engine.api_key.reveal() not in page.content()
    page.screenshot(path=artifacts / "sessions.png", full_page=True)

    # The table is a canvas: tick the first row's checkbox by position (header and rows are ~35 px).
    grid = page.locator("[data-testid='stDataFrame']").bounding_box()
    page.mouse.click(grid["x"] + 18, grid["y"] + 35 + 17)
    page.get_by_role("button", name="Force stop 1 selected").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Stop 1 session").wait_for(timeout=15_000)
    page.wait_for_timeout(500)
    page.screenshot(path=artifacts / "sessions-confirm.png")
    dialog.get_by_role("button", name="Force stop 1").click()
    page.get_by_text("1 of 1 stopped").wait_for(timeout=15_000)
    page.wait_for_timeout(500)
    no_exceptions(page)
    page.screenshot(path=artifacts / "sessions-stopped.png")
    assert len(client.list()) == 1
    page.close()
