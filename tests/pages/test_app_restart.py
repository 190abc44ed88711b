"""A dashboard killed mid-session (issue 13, section 3): its embedded engine ends and records the session,
and the restarted dashboard settles the session in the usage log with the engine's own end time."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from lib.usage.store import EndReason, UsageLog
from tests.support.processes import process_gone, wait_gone

ROOT = Path(__file__).resolve().parents[2]
KEY = "restart-test-engine-key"

FIRST_APP = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    from streamlit.testing.v1 import AppTest
    from lib.heygen import NewSessionRequest, StreamingClient
    from lib.usage.store import UsageLog

    at = AppTest.from_file(sys.argv[1] + "/app.py", default_timeout=120)
    at.switch_page("views/sessions.py").run()  # Live chat's WebRTC component needs a real server
    assert not at.exception, at.exception
    from ui import resources

    provider = resources.configured_provider()  # the engine the app's script run started
    engine = provider.engine
    client = provider.client
    session_id = client.new(NewSessionRequest(quality="low")).session_id
    log = UsageLog(sys.argv[2])
    log.open_session(session_id, "local", quality="low", endpoint=client.endpoint)
    log.mark_connected(session_id)
    log.heartbeat(session_id)
    print(json.dumps({"pid": engine.process.pid, "url": engine.url, "session_id": session_id}), flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The app with its own embedded engine (no ENGINE_URL), data in a fresh folder."""
    values = {
        "AVATAR_OPS_DATA_DIR": str(tmp_path),
        "USAGE_DB_PATH": str(tmp_path / "usage.db"),
        "AVATAR_PROVIDER": "local",
        "ENGINE_API_KEY": KEY,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in ("ENGINE_URL", "ENGINE_PORT", "HEYGEN_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield {**os.environ}
    st.cache_resource.clear()  # stops the restarted app's engine


def test_a_killed_app_takes_its_engine_down_and_the_restarted_app_closes_the_session_at_the_engine_end(
    app_env: dict[str, str], tmp_path: Path
) -> None:
    first = subprocess.Popen(
        [sys.executable, "-c", FIRST_APP, str(ROOT), app_env["USAGE_DB_PATH"]],
        cwd=ROOT,
        env=app_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    engine_pid = None
    try:
        assert first.stdout is not None
        line = first.stdout.readline()
        assert line, "the first app did not start"
        info = json.loads(line)
        engine_pid, session_id = info["pid"], info["session_id"]
        time.sleep(1.0)
        assert not process_gone(engine_pid)  # the script thread that started it has ended; the engine runs on

        killed_at = time.time()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        took = wait_gone(engine_pid, 10)
        assert took is not None and took < 5, "the engine outlived the app that started it"
    finally:
        if first.poll() is None:
            first.kill()
        if engine_pid is not None and not process_gone(engine_pid):
            os.kill(engine_pid, signal.SIGKILL)

    with sqlite3.connect(tmp_path / "engine-history.db") as db:
        (engine_end,) = db.execute("SELECT ended_at FROM history WHERE session_id = ?", (session_id,)).fetchone()
    assert killed_at <= engine_end <= killed_at + 5
    with UsageLog(app_env["USAGE_DB_PATH"]) as log:
        assert log.get_session(session_id).is_open  # type: ignore[union-attr]  # nobody has settled it yet

    restarted = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    restarted.switch_page("views/sessions.py").run()
    assert not restarted.exception, restarted.exception

    with UsageLog(app_env["USAGE_DB_PATH"]) as log:
        row = log.get_session(session_id)
    assert row is not None and row.end_reason == EndReason.LOST
    assert row.ended_at == pytest.approx(engine_end, abs=0.001)  # the engine's end, not the last heartbeat
