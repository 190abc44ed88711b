"""Browser end-to-end: the Sessions and Usage pages render in Chromium and their charts draw."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page

from lib.engine.launcher import EngineProcess, free_port
from lib.heygen import NewSessionRequest, StreamingClient
from lib.usage.store import EndReason, UsageLog

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
CHARTS = "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg.marks"


def seed(path: Path, now: float) -> None:
    """About six weeks of sessions, so every chart has something to draw."""
    rng = random.Random(6)
    with UsageLog(path) as log:
        for i in range(400):
            created = now - rng.random() * 42 * 86400
            sid = f"seed-{i}"
            log.open_session(sid, rng.choice(["heygen", "heygen", "local"]), rng.choice(["anna", "bob", "cleo"]),
                             "joe", rng.choice(["low", "medium", "high"]), "VP8", created_at=created)
            log.close_session(sid, EndReason.STOPPED, at=created + rng.expovariate(1 / 240))


@pytest.fixture(scope="module")
def app(engine: EngineProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make browser-deps)")
    data = tmp_path_factory.mktemp("app")
    seed(data / "usage.db", time.time())
    env = {**os.environ, "AVATAR_OPS_DATA_DIR": str(data), "USAGE_DB_PATH": str(data / "usage.db"),
           "AVATAR_PROVIDER": "local", "ENGINE_URL": engine.url, "ENGINE_API_KEY": engine.api_key.reveal()}
    env.pop("HEYGEN_API_KEY", None)
    port = free_port()
    log = (data / "streamlit.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless",
         "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (data / "streamlit.log").read_text()
            try:
                if requests.get(f"{url}/_stcore/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.3)
        else:
            pytest.fail("streamlit did not become healthy in 60 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_page(browser: object, app: str, title: str) -> Page:
    """Open the app at its root and click through the sidebar, as a user does."""
    page = browser.new_page(viewport={"width": 1500, "height": 2000})  # type: ignore[attr-defined]
    page.goto(app)
    page.get_by_test_id("stSidebarUserContent").get_by_text("Provider:").wait_for(timeout=30_000)
    page.locator("[data-testid='stSidebarNav']").get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).wait_for(timeout=30_000)
    return page


def test_deep_link_on_a_fresh_server_goes_through_the_app(app: str, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(f"{app}/usage")  # must stay the first request this server sees
    page.get_by_role("heading", name="Usage").wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    sidebar = page.locator("[data-testid='stSidebar']").inner_text()
    page.close()
    assert "Provider:" in sidebar  # app.py ran: its sidebar and navigation are there


def no_exceptions(page: object) -> None:
    assert page.locator("[data-testid='stException']").count() == 0  # type: ignore[attr-defined]


def test_usage_page_renders_and_charts_draw(app: str, browser: object, artifacts: Path) -> None:
    page = open_page(browser, app, "Usage")
    page.wait_for_function(f"document.querySelectorAll(\"{CHARTS}\").length >= 4", timeout=30_000)
    page.wait_for_timeout(1500)  # let Vega finish drawing before the screenshot
    no_exceptions(page)
    assert page.locator("[data-testid='stMetric']").count() == 7
    page.screenshot(path=artifacts / "usage.png", full_page=True)
    page.close()


def test_sessions_page_lists_running_sessions(
    app: str, browser: object, artifacts: Path, client: StreamingClient, engine: EngineProcess
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
