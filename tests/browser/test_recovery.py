"""Browser end-to-end: the Live chat page brings the avatar back by itself when the local engine dies and returns."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Frame, Page

from lib.engine.launcher import EngineProcess
from lib.heygen import StreamingClient
from lib.usage.store import UsageLog
from tests.support.browser import (
    AppServer,
    click_start,
    engine_events,
    go_to,
    no_exceptions,
    open_app,
    running_engine,
    screenshot,
    send_chat,
    video_state,
    wait_for,
    wait_video_playing,
    webrtc_frame,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RECOVERY_TIMEOUT = 30.0  # engine back and healthy → the page shows the avatar again, with no click

# Mean brightness of the picture the user sees: the avatar's room is light, the page's own
# "Connection lost - reconnecting…" placeholder is dark blue-grey (30, 33, 48) with a line of text.
MEAN_LUMA = """() => {
  const v = document.querySelector('video');
  if (!v || !v.videoWidth) return null;
  const c = document.createElement('canvas');
  c.width = 160; c.height = 90;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0, c.width, c.height);
  const px = g.getImageData(0, 0, c.width, c.height).data;
  let sum = 0;
  for (let i = 0; i < px.length; i += 4) sum += 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
  return sum / (px.length / 4);
}"""
AVATAR_LUMA = 120.0
PLACEHOLDER_LUMA = 60.0
# What the page says while the media is gone (the first words of the outage, or of a failed attempt).
LOST_MESSAGE = re.compile(r"No video from the avatar|Reconnecting \(attempt \d+ failed\)")


@pytest.fixture(scope="module")
def own_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """An engine only this module uses: the test kills and restarts it."""
    with running_engine(tmp_path_factory, "recovery-engine") as proc:
        yield proc


@pytest.fixture(scope="module")
def app_engine(own_engine: EngineProcess) -> EngineProcess:
    return own_engine


def active_sessions(engine: EngineProcess) -> list[str]:
    with StreamingClient(engine.url, engine.api_key, backoff=0) as client:
        return [s.session_id for s in client.list()]


def engine_event_kinds(engine: EngineProcess, session_id: str) -> list[str]:
    return [e["type"] for e in engine_events(engine, session_id)]


def mean_luma(frame: Frame) -> float:
    return frame.evaluate(MEAN_LUMA) or 0.0


def status_text(page: Page) -> str:
    panel = page.locator("[data-testid='stVerticalBlock']").filter(has=page.get_by_role("heading", name="Status")).last
    return panel.inner_text()


def state_is(page: Page, label: str) -> bool:
    # A figure's label and value, on one line or two (``\s`` takes the line break and the en space between).
    return re.search(rf"^State\s*●\s*{label}\s*$", status_text(page), re.MULTILINE) is not None


def reconnects_shown(page: Page) -> int | None:
    match = re.search(r"^Reconnects\s*(\d+)\s*$", status_text(page), re.MULTILINE)
    return int(match.group(1)) if match else None


def usage_end_reason(data_dir: Path, session_id: str) -> str | None:
    with UsageLog(data_dir / "usage.db") as log:
        row = log.get_session(session_id)
    return row.end_reason if row else None


def usage_reconnects(data_dir: Path, session_id: str) -> list[dict[str, Any]]:
    with UsageLog(data_dir / "usage.db") as log:
        return [d for _, kind, d in log.events(session_id) if kind == "reconnect"]


def diagnostics(app: AppServer, engine: EngineProcess, page: Page) -> str:
    try:
        status = status_text(page)
    except Exception as exc:  # the diagnostics must not hide the real failure
        status = f"<no status panel: {exc}>"
    engine_log = "\n".join(engine.log_path.read_text(errors="replace").splitlines()[-20:])
    return f"\n--- status panel ---\n{status}\n--- app log ---\n{app.log_tail(40)}\n--- engine log ---\n{engine_log}"


def wait_recovered(
    app: AppServer, engine: EngineProcess, page: Page, frame: Frame, previous: str, reconnects: int
) -> str:
    """With no click: the page is live again on a new engine session, the avatar's picture moving; its id."""
    back_at = time.monotonic()
    recovered = wait_for(
        lambda: state_is(page, "live") and reconnects_shown(page) == reconnects, timeout=RECOVERY_TIMEOUT, interval=0.3
    )
    assert recovered, diagnostics(app, engine, page)
    print(f"engine healthy again → page live again (reconnects {reconnects}) in {time.monotonic() - back_at:.1f} s")
    sessions = active_sessions(engine)
    assert len(sessions) == 1 and sessions[0] != previous, (previous, sessions)
    session = sessions[0]
    assert f"{session[:8]}…" in status_text(page)
    assert wait_for(lambda: mean_luma(frame) > AVATAR_LUMA, timeout=10), mean_luma(frame)
    first, last = wait_video_playing(frame, timeout=10, advance=1.0)
    assert last.current_time > first.current_time and last.width > 0
    assert not video_state(frame).paused
    assert page.get_by_role("button", name="Stop session").is_enabled()
    assert page.get_by_text(LOST_MESSAGE).count() == 0  # the outage message went with the outage
    no_exceptions(page)
    # Usage history: the lost session was closed as disconnected, the new one records where it came from.
    assert usage_end_reason(app.data_dir, previous) == "disconnected"
    logged = wait_for(lambda: usage_reconnects(app.data_dir, session), timeout=5)
    assert logged and logged[0]["previous_session_id"] == previous, logged
    return session


def test_page_recovers_by_itself_after_the_engine_restarts(
    app: AppServer, browser: Browser, own_engine: EngineProcess
) -> None:
    engine = own_engine
    page = open_app(browser, app.url)
    go_to(page, "Live chat")
    frame = webrtc_frame(page)
    click_start(page)
    wait_video_playing(frame, timeout=20)
    assert wait_for(lambda: state_is(page, "live"), timeout=15), diagnostics(app, engine, page)
    sessions = wait_for(lambda: active_sessions(engine), timeout=10)
    assert len(sessions) == 1, sessions
    first_session = sessions[0]
    assert wait_for(lambda: mean_luma(frame) > AVATAR_LUMA, timeout=10), mean_luma(frame)
    avatar_luma = mean_luma(frame)
    assert reconnects_shown(page) is None  # nothing to report before anything went wrong

    # The engine crashes under the live session: the page says so and shows its own placeholder, not a
    # frozen avatar.
    engine.process.kill()
    engine.process.wait()
    killed_at = time.monotonic()
    # The status panel says the frames stopped before the loss is even detected.
    page.get_by_text("no media for").first.wait_for(timeout=6_000)
    gap_shown = time.monotonic() - killed_at
    assert wait_for(lambda: state_is(page, "reconnecting"), timeout=15), diagnostics(app, engine, page)
    noticed = time.monotonic() - killed_at
    assert wait_for(lambda: mean_luma(frame) < PLACEHOLDER_LUMA, timeout=5), mean_luma(frame)
    placeholder_luma = mean_luma(frame)
    page.get_by_text(LOST_MESSAGE).first.wait_for(timeout=5_000)
    restart_at = time.monotonic()
    engine.restart()  # same port, same key; returns once healthy
    print(
        f"\nengine killed → page says no media in {gap_shown:.1f} s, reconnecting in {noticed:.1f} s; restart took "
        f"{time.monotonic() - restart_at:.1f} s; picture brightness {avatar_luma:.0f} (avatar) vs "
        f"{placeholder_luma:.0f} (placeholder)"
    )
    second_session = wait_recovered(app, engine, page, frame, first_session, reconnects=1)

    # A clean restart (SIGTERM: the engine closes its sessions on the way down) is survived the same way.
    engine.restart()
    session = wait_recovered(app, engine, page, frame, second_session, reconnects=2)

    # Talking works on the new session.
    send_chat(page, "Hello there")
    page.locator("[data-testid='stChatMessage']").filter(has_text="Hello there").wait_for(timeout=15_000)
    assert wait_for(lambda: "avatar_start_talking" in engine_event_kinds(engine, session), timeout=20), (
        engine_event_kinds(engine, session)
    )
    page.wait_for_timeout(1000)
    no_exceptions(page)
    shot = screenshot(page, "live-chat-recovered.png")
    assert shot.stat().st_size > 10_000

    page.get_by_role("button", name="Stop session").click()
    assert wait_for(lambda: not active_sessions(engine), timeout=15), active_sessions(engine)
    assert wait_for(lambda: usage_end_reason(app.data_dir, session), timeout=5) == "stopped"
    page.close()
