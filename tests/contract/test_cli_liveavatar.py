"""The ops command line as a subprocess against the engine's LiveAvatar twin: list, stop, import, totals.

Every run goes through ``python -m lib.cli`` with the key only in the environment, and no run may print it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from lib.cli import ExitCode
from lib.engine.launcher import PROJECT_ROOT, EngineProcess
from lib.liveavatar import SessionListType, SessionMode
from lib.usage.store import EndReason, UsageLog
from tests.support.liveavatar import DAY, ended, la_client, seed_history, start_session, start_twin, stop_all

WRONG_KEY = "la-wrong-key-Zq8vX2mLp0"
FIRST, SECOND = str(uuid.UUID(int=0xB1)), str(uuid.UUID(int=0xB2))
HISTORY = [ended(FIRST, 5, 120, 4.5), ended(SECOND, 50, 60, 1.0, mode=SessionMode.LITE)]


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    history = tmp_path_factory.mktemp("la-cli") / "history.db"
    seed_history(history, HISTORY)
    proc = start_twin(history)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def cli(twin: EngineProcess, tmp_path: Path) -> Iterator:
    """Run ``python -m lib.cli`` in a child process: returns (exit code, stdout, stderr)."""
    secrets = tmp_path / "secrets.toml"
    secrets.write_text("")  # a developer's own secrets.toml cannot steer the tests
    key = twin.api_key.reveal()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AVATAR_PROVIDER": "local",  # --provider liveavatar must select the twin by itself
        "LIVEAVATAR_BASE_URL": twin.url,
        "LIVEAVATAR_API_KEY": key,
        "USAGE_DB_PATH": str(tmp_path / "usage.db"),
    }

    def run(*argv: str, **overrides: str) -> tuple[int, str, str]:
        done = subprocess.run(
            [sys.executable, "-m", "lib.cli", "--secrets", str(secrets), *argv],
            cwd=PROJECT_ROOT,
            env={**env, **overrides},
            capture_output=True,
            text=True,
            timeout=120,
        )
        for stream in (done.stdout, done.stderr):
            assert key not in stream and WRONG_KEY not in stream
        return done.returncode, done.stdout, done.stderr

    yield run
    stop_all(twin)


def active(twin: EngineProcess) -> set[str]:
    with la_client(twin) as client:
        return {s.id for s in client.list_sessions(SessionListType.ACTIVE)}


def start(twin: EngineProcess, mode: SessionMode = SessionMode.FULL) -> str:
    with la_client(twin) as client:
        return start_session(client, mode)


def test_list_json_has_every_session_with_mode_source_sandbox_and_credits(cli, twin: EngineProcess) -> None:
    full, lite = start(twin), start(twin, SessionMode.LITE)

    code, out, err = cli("sessions", "list", "--provider", "liveavatar", "--json")

    assert code == ExitCode.OK, err
    payload = json.loads(out)
    assert payload["provider"] == "liveavatar"
    by_id = {s["session_id"]: s for s in payload["sessions"]}
    assert set(by_id) == {full, lite}
    for sid, mode in ((full, "FULL"), (lite, "LITE")):
        item = by_id[sid]
        assert (item["mode"], item["source"], item["is_sandbox"]) == (mode, "API", False)
        assert datetime.fromisoformat(item["created_at"]).utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        assert item["credits_consumed"] >= 0 and item["duration_s"] >= 0
    assert by_id[full]["credits_per_minute"] == 2 and by_id[lite]["credits_per_minute"] == 1

    code, out, _ = cli("sessions", "list", "--provider", "liveavatar")
    assert code == ExitCode.OK and "FULL" in out and "LITE" in out and "3.00 credits per minute now" in out


def test_stop_one_then_several_then_all(cli, twin: EngineProcess) -> None:
    a, b, c, d = (start(twin) for _ in range(4))

    code, out, err = cli("sessions", "stop", "--provider", "liveavatar", a)
    assert code == ExitCode.OK, err
    assert "stopped" in out and active(twin) == {b, c, d}

    code, out, err = cli("sessions", "stop", "--provider", "liveavatar", b, c, "--json")
    assert code == ExitCode.OK, err
    assert {r["session_id"]: r["outcome"] for r in json.loads(out)["results"]} == {b: "stopped", c: "stopped"}
    assert active(twin) == {d}

    code, out, err = cli("sessions", "stop", "--provider", "liveavatar", "--all", "--yes")
    assert code == ExitCode.OK, err
    assert active(twin) == set()
    code, out, _ = cli("sessions", "stop", "--provider", "liveavatar", a)  # ended: not a failure
    assert code == ExitCode.OK and "already gone" in out


def test_idle_and_older_than_shortcuts(cli, twin: EngineProcess) -> None:
    old = start(twin)
    time.sleep(12)
    young = start(twin)

    code, out, err = cli("sessions", "stop", "--provider", "liveavatar", "--idle-over", "0")
    assert code == ExitCode.OK and "do not report idle time" in err and active(twin) == {old, young}

    code, out, err = cli("sessions", "stop", "--provider", "liveavatar", "--older-than", "0.1")  # 6 s
    assert code == ExitCode.OK, err
    assert old in out and young not in out
    assert active(twin) == {young}


def test_unknown_session_exits_4_and_a_wrong_key_exits_3(cli, twin: EngineProcess) -> None:
    code, _, err = cli("sessions", "stop", "--provider", "liveavatar", str(uuid.uuid4()))
    assert code == ExitCode.NOT_FOUND and "not found" in err

    code, out, err = cli("sessions", "list", "--provider", "liveavatar", LIVEAVATAR_API_KEY=WRONG_KEY)
    assert code == ExitCode.PROVIDER and out == ""
    assert "rejected the API key" in err and "app.liveavatar.com/developers" in err

    code, _, err = cli("usage", "import", "--provider", "liveavatar", LIVEAVATAR_BASE_URL="http://127.0.0.1:9")
    assert code == ExitCode.PROVIDER and "unreachable" in err.lower()


def test_import_then_totals_with_billed_credits(cli, twin: EngineProcess, tmp_path: Path) -> None:
    with UsageLog(tmp_path / "usage.db") as log:  # the dashboard ran FIRST: matched by id, keeps its times
        log.open_session(FIRST, "liveavatar", created_at=DAY.timestamp() + 5 * 60)
        log.close_session(FIRST, EndReason.STOPPED, at=DAY.timestamp() + 5 * 60 + 120)
    day = DAY.date().isoformat()

    code, out, err = cli("usage", "import", "--provider", "liveavatar", "--from", day, "--to", day, "--json")
    assert code == ExitCode.OK, err
    assert json.loads(out) == {"provider": "liveavatar", "added": 1, "updated": 1, "read": 2, "unchanged": 0}

    # Estimates use the configured credit model: LiveAvatar's (by mode) once LiveAvatar is the provider.
    totals_args = ("usage", "totals", "--from", day, "--to", day, "--provider", "liveavatar", "--json")
    code, out, err = cli(*totals_args, AVATAR_PROVIDER="liveavatar")
    assert code == ExitCode.OK, err
    totals = json.loads(out)
    assert totals["sessions"] == 2 and totals["billed_credits"] == pytest.approx(5.5)
    assert totals["credits"] == pytest.approx(5.5)  # billed wins over the 5.0 estimate
    assert totals["estimated_credits"] == pytest.approx(5.0)  # FULL 2 min = 4, LITE 1 min = 1

    code, out, err = cli("usage", "import", "--provider", "liveavatar", "--from", day, "--to", day, "--json")
    assert code == ExitCode.OK, err
    assert json.loads(out)["added"] == 0 and json.loads(out)["updated"] == 0
    code, out, _ = cli("usage", "import", "--provider", "liveavatar", "--from", "2026-11-03", "--to", "2026-11-03")
    assert code == ExitCode.OK and "Imported 0 session(s)" in out
