"""lib/engine/launcher.py: the embedded engine never outlives the process that started it, and its log
files do not pile up in /tmp (issue 13, sections 3 and 6)."""

from __future__ import annotations

import fcntl
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

from lib.engine.launcher import LOG_PREFIX, PROJECT_ROOT, EngineStartError, prune_logs, start_engine
from lib.heygen.client import StreamingClient
from lib.heygen.models import NewSessionRequest
from tests.support.processes import process_gone, wait_gone

STARTER = textwrap.dedent(
    """
    import json, os, sys, time
    sys.path.insert(0, sys.argv[1])
    from lib.engine.launcher import start_engine
    from lib.settings import Secret
    key = Secret(os.environ["ENGINE_API_KEY"])
    engine = start_engine(api_key=key, extra_args=["--history-db", sys.argv[2], "--no-voices"])
    print(json.dumps({"url": engine.url, "pid": engine.process.pid}), flush=True)
    time.sleep(600)
    """
)


def test_the_engine_stops_its_sessions_and_exits_when_its_starter_is_killed(tmp_path: Path) -> None:
    history = tmp_path / "history.db"
    key = "starter-key-for-this-test"
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(PROJECT_ROOT), str(history)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "ENGINE_API_KEY": key},
        stdout=subprocess.PIPE,
        text=True,
    )
    engine_pid = None
    try:
        assert starter.stdout is not None
        info = json.loads(starter.stdout.readline())
        engine_pid = info["pid"]
        with StreamingClient(info["url"], key, backoff=0) as client:
            session_id = client.new(NewSessionRequest(quality="low")).session_id
            time.sleep(1.0)  # the engine keeps running while its starter lives
            assert [s.session_id for s in client.list()] == [session_id]

        killed_at = time.time()
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        took = wait_gone(engine_pid, 10)
        assert took is not None and took < 5, f"engine still running {time.time() - killed_at:.1f} s after kill -9"
    finally:
        if starter.poll() is None:
            starter.kill()
        if engine_pid is not None and not process_gone(engine_pid):
            os.kill(engine_pid, signal.SIGKILL)

    with sqlite3.connect(history) as db:
        row = db.execute("SELECT ended_at, end_reason FROM history WHERE session_id = ?", (session_id,)).fetchone()
    assert row is not None, "the engine did not record the session it stopped"
    ended_at, reason = row
    assert reason == "app_exited"
    assert killed_at <= ended_at <= killed_at + 5
    assert oct(history.stat().st_mode & 0o777) == "0o600"  # which sessions ran, when: owner only


def test_a_clean_stop_removes_the_engine_log(tmp_path: Path) -> None:
    engine = start_engine(extra_args=["--history-db", str(tmp_path / "history.db"), "--no-voices"])
    log = engine.log_path
    assert log.exists() and log.name.startswith(LOG_PREFIX)
    engine.stop()
    assert not log.exists()


def test_logs_of_dead_engines_are_pruned_to_the_newest_few_and_a_running_ones_is_kept(tmp_path: Path) -> None:
    def log(name: str, age_s: float) -> Path:
        path = tmp_path / f"{LOG_PREFIX}{name}.log"
        path.write_text(name)
        os.utime(path, (time.time() - age_s,) * 2)
        return path

    for age in range(1, 8):
        log(f"recent{age}", 60 * age)  # minutes old: past the newest five or not, too young to prune
    for age in range(1, 4):
        log(f"old{age}", 3600 * age)
    running = log("running", 86400)  # oldest of all, but an engine still writes it
    other = tmp_path / "unrelated.log"
    other.write_text("")
    with running.open("ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the engine's stdout holds it
        removed = prune_logs(tmp_path, keep=5)
        assert sorted(p.name for p in removed) == [f"{LOG_PREFIX}old{age}.log" for age in (1, 2, 3)]
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted([*(f"{LOG_PREFIX}recent{age}.log" for age in range(1, 8)), running.name, other.name])
        # Without the age guard only the newest `keep` dead logs stay (the running one is not dead).
        removed = prune_logs(tmp_path, keep=2, min_age_s=0)
        assert sorted(p.name for p in removed) == [f"{LOG_PREFIX}recent{age}.log" for age in range(3, 8)]
        assert running.exists()


def test_an_unwritable_history_folder_stops_the_engine_with_a_message_not_a_traceback() -> None:
    with pytest.raises(EngineStartError) as raised:
        start_engine(extra_args=["--history-db", "/sys/avatar-ops-test/history.db", "--no-voices"], timeout=30)
    message = str(raised.value)
    assert "cannot use its history file /sys/avatar-ops-test/history.db" in message
    assert "AVATAR_OPS_DATA_DIR" in message and "Traceback" not in message


def test_a_bad_setting_stops_the_engine_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(EngineStartError, match="Configuration problem: PRICE_PER_CREDIT must be a finite number"):
        start_engine(
            extra_args=["--history-db", str(tmp_path / "h.db"), "--no-voices"], env={"PRICE_PER_CREDIT": "nan"}
        )
