"""Shared harness for the browser tests and the browser benchmark: the app in a subprocess, Debian Chromium.

The app runs as a user runs it (`streamlit run app.py`) against an engine the caller owns, so a test can
ask that same engine what happened. Chromium is Debian's (`make browser-deps`); playwright never downloads one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Frame, Page, sync_playwright

from lib.engine.launcher import EngineProcess, free_port, start_engine

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]
WEBRTC_IFRAME = 'iframe[title="streamlit_webrtc.component.webrtc_streamer"]'
CHAT_PLACEHOLDER = "Type a message for the avatar"

# Runs in every frame before its own scripts: keeps each RTCPeerConnection the page makes, so a test can read
# its stats (the component keeps its connection to itself).
RECORD_PEER_CONNECTIONS = """
(() => {
  const Native = window.RTCPeerConnection;
  if (!Native || Native.__recorded) return;
  window.__pcs = [];
  const Recorded = function (...args) {
    const pc = new Native(...args);
    window.__pcs.push(pc);
    return pc;
  };
  Recorded.prototype = Native.prototype;
  Object.setPrototypeOf(Recorded, Native);
  Recorded.__recorded = true;
  window.RTCPeerConnection = Recorded;
})();
"""


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"Debian chromium is not installed at {CHROMIUM} (run `make browser-deps`)"
    return None


@dataclass
class AppServer:
    url: str
    data_dir: Path
    process: subprocess.Popen = field(repr=False)
    log_path: Path = field(repr=False)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def app_env(engine: EngineProcess, data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "AVATAR_OPS_DATA_DIR": str(data_dir),
        "USAGE_DB_PATH": str(data_dir / "usage.db"),
        "AVATAR_PROVIDER": "local",
        "ENGINE_URL": engine.url,
        "ENGINE_API_KEY": engine.api_key.reveal(),
        **(extra or {}),
    }
    env.pop("HEYGEN_API_KEY", None)  # a developer's real key must never reach a test run
    return env


@contextmanager
def running_engine(tmp_path_factory: pytest.TempPathFactory, name: str = "engine") -> Iterator[EngineProcess]:
    """A real local engine on a free loopback port, with its history in a fresh temporary folder."""
    history = tmp_path_factory.mktemp(name) / "history.db"
    proc = start_engine(extra_args=["--history-db", str(history), "--session-budget", "6"])
    try:
        yield proc
    finally:
        proc.stop()


@contextmanager
def run_app(
    engine: EngineProcess,
    data_dir: Path,
    *,
    extra_env: dict[str, str] | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 60.0,
) -> Iterator[AppServer]:
    """`streamlit run app.py` on a free port against `engine`; yields once `/_stcore/health` answers.
    ``extra_args`` are Streamlit options, e.g. ``--secrets.files`` for a test's own secrets (``[auth]``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = data_dir / "streamlit.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.port",
                str(port),
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
                *extra_args,
            ],
            cwd=ROOT,
            env=app_env(engine, data_dir, extra_env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = AppServer(f"http://127.0.0.1:{port}", data_dir, process, log_path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {process.returncode}:\n{server.log_tail()}")
            try:
                if requests.get(f"{server.url}/_stcore/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not become healthy in {timeout:.0f} s:\n{server.log_tail()}")
            time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_app(
    browser: Browser, url: str, *, viewport: tuple[int, int] = (1500, 2000), record_peer_connections: bool = False
) -> Page:
    """Open the app at its root, as a user does, and wait for the sidebar to be drawn."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    if record_peer_connections:
        page.add_init_script(RECORD_PEER_CONNECTIONS)
    page.goto(url)
    page.get_by_test_id("stSidebarUserContent").get_by_text("Provider:").wait_for(timeout=30_000)
    return page


def go_to(page: Page, title: str) -> None:
    """Click a page in the sidebar navigation and wait for its heading."""
    page.locator("[data-testid='stSidebarNav']").get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).wait_for(timeout=30_000)


def open_page(browser: Browser, url: str, title: str, **kwargs: Any) -> Page:
    page = open_app(browser, url, **kwargs)
    go_to(page, title)
    return page


def no_exceptions(page: Page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.locator(
        "[data-testid='stException']"
    ).first.inner_text()


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=path, full_page=full_page)
    return path


# ---------------------------------------------------------------- the live video (streamlit-webrtc iframe)


def webrtc_frame(page: Page, timeout: float = 30.0) -> Frame:
    """The component's iframe as a frame we can evaluate scripts in."""
    handle = page.wait_for_selector(WEBRTC_IFRAME, timeout=timeout * 1000)
    deadline = time.monotonic() + timeout
    while True:
        frame = handle.content_frame()
        if frame is not None:
            return frame
        if time.monotonic() > deadline:
            raise TimeoutError("the webrtc component iframe has no frame")
        time.sleep(0.1)


def click_start(page: Page) -> None:
    page.frame_locator(WEBRTC_IFRAME).get_by_role("button", name="START").click()


def click_stop_component(page: Page) -> None:
    page.frame_locator(WEBRTC_IFRAME).get_by_role("button", name="STOP").click()


@dataclass(frozen=True)
class VideoState:
    width: int
    height: int
    current_time: float
    paused: bool


def video_state(frame: Frame) -> VideoState | None:
    raw = frame.evaluate("""() => { const v = document.querySelector('video');
        return v ? [v.videoWidth, v.videoHeight, v.currentTime, v.paused] : null }""")
    return VideoState(int(raw[0]), int(raw[1]), float(raw[2]), bool(raw[3])) if raw else None


def wait_video_playing(frame: Frame, timeout: float = 20.0, advance: float = 0.5) -> tuple[VideoState, VideoState]:
    """Wait until the video has a picture and its `currentTime` has advanced by `advance` s; both samples."""
    deadline = time.monotonic() + timeout
    first: VideoState | None = None
    last: VideoState | None = None
    while time.monotonic() < deadline:
        last = video_state(frame)
        if last is not None and last.width > 0:
            first = first or last
            if last.current_time - first.current_time >= advance:
                return first, last
        time.sleep(0.1)
    raise TimeoutError(f"the video did not play within {timeout:.0f} s (first {first}, last {last})")


def install_probe(frame: Frame, script: str, timeout: float = 20.0) -> None:
    """Run an in-page probe until it says "ok" (it answers why not until the media it taps exists)."""
    deadline = time.monotonic() + timeout
    while (state := frame.evaluate(script)) != "ok":
        if time.monotonic() > deadline:
            raise TimeoutError(f"cannot tap the page's audio: {state}")
        time.sleep(0.1)


def inbound_rtp(frame: Frame) -> dict[str, dict[str, float]]:
    """The browser's `inbound-rtp` stats by kind ("audio", "video"); needs `record_peer_connections`."""
    return frame.evaluate("""async () => {
        const out = {};
        for (const pc of (window.__pcs || [])) {
          if (pc.connectionState === 'closed') continue;
          for (const s of (await pc.getStats()).values()) {
            if (s.type !== 'inbound-rtp') continue;
            const keep = {};
            for (const [k, v] of Object.entries(s)) if (typeof v === 'number') keep[k] = v;
            out[s.kind] = keep;
          }
        }
        return out;
    }""")


# Taps the video element's stream with Web Audio and keeps running totals of what the user would hear.
AUDIO_PROBE = """
() => {
  if (window.__audio) return true;
  const v = document.querySelector('video');
  if (!v || !v.srcObject || v.srcObject.getAudioTracks().length === 0) return false;
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(v.srcObject).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const st = window.__audio = {blocks: 0, loud: 0, loudSamples: 0, loudSumsq: 0, clipped: 0, peak: 0, state: ''};
  setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sumsq = 0, clipped = 0, peak = 0;
    for (const x of buf) { const a = Math.abs(x); sumsq += x * x; if (a >= 0.99) clipped++; if (a > peak) peak = a; }
    st.blocks++;
    st.state = ctx.state;
    if (Math.sqrt(sumsq / buf.length) > 0.005) {
      st.loud++; st.loudSamples += buf.length; st.loudSumsq += sumsq; st.clipped += clipped;
      st.peak = Math.max(st.peak, peak);
    }
  }, 21);
  return true;
}
"""


@dataclass(frozen=True)
class HeardAudio:
    blocks: int  # ~21 ms analyser reads so far
    loud_blocks: int  # of which had sound in them (RMS > 0.005 of full scale)
    rms: float  # RMS of the loud blocks, full scale = 1
    peak: float
    clipped_fraction: float  # share of the loud samples at full scale: distortion a listener hears
    context_state: str


def start_audio_probe(frame: Frame, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not frame.evaluate(AUDIO_PROBE):
        if time.monotonic() > deadline:
            raise TimeoutError("the video element has no audio track")
        time.sleep(0.1)


def heard_audio(frame: Frame) -> HeardAudio:
    st = frame.evaluate("() => window.__audio")
    samples = st["loudSamples"]
    return HeardAudio(
        st["blocks"],
        st["loud"],
        (st["loudSumsq"] / samples) ** 0.5 if samples else 0.0,
        st["peak"],
        st["clipped"] / samples if samples else 0.0,
        st["state"],
    )


def send_chat(page: Page, text: str) -> None:
    box = page.get_by_placeholder(CHAT_PLACEHOLDER)
    box.wait_for(timeout=15_000)
    page.wait_for_function(
        f"() => {{ const t = document.querySelector('textarea[placeholder=\"{CHAT_PLACEHOLDER}\"]');"
        " return t && !t.disabled; }",
        timeout=15_000,
    )
    box.fill(text)
    box.press("Enter")


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll until the condition returns something truthy; that value, or the last falsy one at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if (value := condition()) or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def engine_events(engine: EngineProcess, session_id: str) -> list[dict[str, Any]]:
    """A session's event log, from the engine's own extension endpoint."""
    response = requests.get(
        f"{engine.url}/v1/streaming.events",
        params={"session_id": session_id},
        headers={"X-Api-Key": engine.api_key.reveal()},
        timeout=5,
    )
    response.raise_for_status()
    return response.json()["data"]["events"]
