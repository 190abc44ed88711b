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


def open_page(browser: object, url: str):  # noqa: ANN201 - playwright's Page
    page = browser.new_page(viewport={"width": 1500, "height": 2000})  # type: ignore[attr-defined]
    page.goto(url)
    return page


def no_exceptions(page: object) -> None:
    assert page.locator("[data-testid='stException']").count() == 0  # type: ignore[attr-defined]


def test_usage_page_renders_and_charts_draw(app: str, browser: object, artifacts: Path) -> None:
    page = open_page(browser, f"{app}/usage")
    page.get_by_role("heading", name="Usage").wait_for(timeout=30_000)
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
    page = open_page(browser, f"{app}/sessions")
    page.get_by_role("heading", name="Sessions").wait_for(timeout=30_000)
    page.locator("[data-testid='stDataFrame']").wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    no_exceptions(page)
    values = page.locator("[data-testid='stMetricValue']").all_inner_texts()
    assert values[:2] == ["2", "3 / 6"]
    assert engine.api_key.reveal() not in page.content()
    page.screenshot(path=artifacts / "sessions.png", full_page=True)
    page.close()
