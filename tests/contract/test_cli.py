"""The ops command line (``python -m lib.cli``) against a real local engine and a seeded usage log."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lib.cli import ExitCode, main
from lib.engine.launcher import PROJECT_ROOT, EngineProcess, free_port
from lib.heygen.client import StreamingClient
from lib.heygen.models import NewSessionRequest
from lib.usage.credits import PRESETS, Pricing
from lib.usage.store import EndReason, UsageLog

WRONG_KEY = "wrong-key-Zq8vX2mLp0"


@pytest.fixture
def secrets_file(tmp_path: Path) -> Path:
    """An empty secrets.toml, so a developer's own .streamlit/secrets.toml cannot steer the tests."""
    path = tmp_path / "secrets.toml"
    path.write_text("")
    return path


@pytest.fixture
def env(engine: EngineProcess, tmp_path: Path) -> dict[str, str]:
    return {
        "HOME": str(tmp_path),
        "ENGINE_URL": engine.url,
        "ENGINE_API_KEY": engine.api_key.reveal(),
        "USAGE_DB_PATH": str(tmp_path / "usage.db"),
    }


@pytest.fixture
def cli(env: dict[str, str], secrets_file: Path, capsys: pytest.CaptureFixture[str]):
    """Run the command line in-process: returns (exit code, stdout, stderr)."""

    def run(*argv: str, **overrides: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--secrets", str(secrets_file), *argv], env={**env, **overrides})
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def log(env: dict[str, str]):
    usage = UsageLog(env["USAGE_DB_PATH"])
    yield usage
    usage.close()


def new_session(client: StreamingClient) -> str:
    return client.new(NewSessionRequest(quality="low")).session_id


def active_ids(client: StreamingClient) -> set[str]:
    return {s.session_id for s in client.list()}


# -- sessions ----------------------------------------------------------------------------------


def test_list_shows_every_session_with_its_origin(cli, client: StreamingClient, log: UsageLog) -> None:
    mine, stranger = new_session(client), new_session(client)
    log.open_session(mine, "local", "anna_office", None, "low", "VP8", started_by_dashboard=True)

    code, out, _ = cli("sessions", "list", "--json")

    assert code == ExitCode.OK
    payload = json.loads(out)
    rows = {s["session_id"]: s for s in payload["sessions"]}
    assert {mine, stranger} <= set(rows)
    assert rows[mine]["origin"] == "dashboard" and rows[stranger]["origin"] == "orphan"
    assert rows[stranger]["quality"] == "low" and rows[stranger]["avatar_id"]
    assert rows[mine]["idle_s"] is not None and rows[mine]["age_s"] >= 0

    code, out, _ = cli("sessions", "list")
    assert code == ExitCode.OK
    lines = out.splitlines()
    header = lines[0]
    assert header.split() == ["SESSION", "STATUS", "AGE", "IDLE", "AVATAR", "QUALITY", "ORIGIN", "CREDITS", "COST"]
    by_id = {line.split()[0]: line for line in lines[1:] if line.strip()}
    assert "dashboard" in by_id[mine] and "orphan" in by_id[stranger]
    # Aligned: the ORIGIN column starts at the same offset in the header and in every row.
    col = header.index("ORIGIN")
    assert by_id[mine][col:].startswith("dashboard") and by_id[stranger][col:].startswith("orphan")


def test_stop_by_id_stops_only_that_session_and_logs_force_stopped(cli, client: StreamingClient, log: UsageLog) -> None:
    target, bystander = new_session(client), new_session(client)

    code, out, _ = cli("sessions", "stop", target)

    assert code == ExitCode.OK
    assert target in out and "stopped" in out
    assert target not in active_ids(client) and bystander in active_ids(client)
    row = log.get_session(target)
    assert row is not None and row.end_reason == EndReason.FORCE_STOPPED and not row.started_by_dashboard
    # The command line is a local admin tool: it acts (and is audited) as "local".
    assert [(e.actor, e.action, e.detail) for e in log.audit_entries(target=target)] == [
        ("local", "force_stop", "stopped")
    ]

    # Again, plus an id nobody knows: the first is already gone (fine), the second is not found (4).
    code, out, err = cli("sessions", "stop", target, "no-such-session", "--json")
    assert code == ExitCode.NOT_FOUND
    outcomes = {r["session_id"]: r["outcome"] for r in json.loads(out)["results"]}
    assert outcomes == {target: "already_gone", "no-such-session": "not_found"}
    assert "no-such-session" in err
    assert bystander in active_ids(client)


def test_stop_idle_over_stops_only_idle_sessions(cli, client: StreamingClient, log: UsageLog) -> None:
    idle, busy = new_session(client), new_session(client)
    time.sleep(2.0)
    client.keep_alive(busy)

    code, out, _ = cli("sessions", "stop", "--idle-over", "0.025", "--dry-run", "--json")  # 1.5 s
    assert code == ExitCode.OK
    assert [(r["session_id"], r["outcome"]) for r in json.loads(out)["results"]] == [(idle, "would_stop")]
    assert {idle, busy} <= active_ids(client)

    code, out, _ = cli("sessions", "stop", "--idle-over", "0.025")
    assert code == ExitCode.OK
    assert idle in out and busy not in out
    assert idle not in active_ids(client) and busy in active_ids(client)
    assert log.get_session(idle).end_reason == EndReason.FORCE_STOPPED  # type: ignore[union-attr]
    assert [(e.actor, e.action) for e in log.audit_entries(target=idle)] == [("local", "stop_idle")]


def test_stop_all_needs_yes(cli, client: StreamingClient) -> None:
    ids = {new_session(client), new_session(client)}

    code, _, err = cli("sessions", "stop", "--all")
    assert code == ExitCode.USAGE and "--yes" in err
    assert ids <= active_ids(client)

    code, out, _ = cli("sessions", "stop", "--all", "--yes")
    assert code == ExitCode.OK
    assert active_ids(client) == set()
    assert all(sid in out for sid in ids)

    code, out, _ = cli("sessions", "stop", "--all", "--yes")
    assert code == ExitCode.OK and "No sessions to stop" in out


def test_wrong_key_is_a_provider_error_and_never_printed(cli, client: StreamingClient, engine: EngineProcess) -> None:
    new_session(client)
    code, out, err = cli("sessions", "list", ENGINE_API_KEY=WRONG_KEY)

    assert code == ExitCode.PROVIDER
    assert WRONG_KEY not in err and WRONG_KEY not in out
    assert "ENGINE_API_KEY" in err and err.count("\n") == 1

    # The right key from another variable, named on the command line (the key itself never is).
    code, _, _ = cli(
        "sessions",
        "list",
        "--api-key-env",
        "OPS_ENGINE_KEY",
        ENGINE_API_KEY=WRONG_KEY,
        OPS_ENGINE_KEY=engine.api_key.reveal(),
    )
    assert code == ExitCode.OK


def test_sessions_of_another_engine_sharing_the_log_stay_open_until_that_engine_is_gone(
    cli, client: StreamingClient, engine: EngineProcess, log: UsageLog
) -> None:
    """The app's embedded engine and the engine the command line uses can share one usage log."""
    mine = new_session(client)
    log.open_session(mine, "local", created_at=time.time() - 30, endpoint=client.endpoint)
    # Another dashboard's engine, still up: the test engine stands in for it under another URL (one engine has
    # one key, so a session logged at this engine's own URL under another key was on an engine that is gone).
    other_url = engine.url.replace("127.0.0.1", "localhost")
    log.open_session("other-dashboards", "local", created_at=time.time() - 30, endpoint=f"{other_url}#key-other")
    # An engine that has since been shut down.
    gone = f"http://127.0.0.1:{free_port()}#key-gone"
    log.open_session("crashed-engines", "local", created_at=time.time() - 60, endpoint=gone)
    log.heartbeat("crashed-engines", at=time.time() - 50)

    code, out, err = cli("sessions", "list", "--json")

    assert code == ExitCode.OK, err
    payload = json.loads(out)
    assert payload["closed_as_lost"] == ["crashed-engines"]
    assert payload["open_elsewhere"] == ["other-dashboards"]
    assert "another engine" in err
    assert mine in {s["session_id"] for s in payload["sessions"]}
    assert log.get_session("other-dashboards").is_open  # type: ignore[union-attr]
    assert log.get_session(mine).is_open  # type: ignore[union-attr]
    assert log.get_session("crashed-engines").end_reason == EndReason.LOST  # type: ignore[union-attr]

    # Stopping it from here is refused with where it runs, not reported as "already gone".
    code, out, err = cli("sessions", "stop", "other-dashboards", "--json")
    assert code == ExitCode.NOT_FOUND
    [result] = json.loads(out)["results"]
    assert result["outcome"] == "elsewhere" and other_url in result["message"] and "key-" not in result["message"]
    assert log.get_session("other-dashboards").is_open  # type: ignore[union-attr]


def test_engine_down_is_a_provider_error_and_leaves_the_log_alone(cli, log: UsageLog) -> None:
    log.open_session("still-open", "local", created_at=time.time() - 60)
    closed = f"http://127.0.0.1:{free_port()}"

    code, out, err = cli("sessions", "stop", "--all", "--yes", ENGINE_URL=closed)

    assert code == ExitCode.PROVIDER and out == ""
    assert "unreachable" in err and "engine is running" in err and closed.split("//")[1] in err
    assert log.get_session("still-open").is_open  # type: ignore[union-attr]


def test_no_engine_configured_explains_how(cli) -> None:
    code, _, err = cli("sessions", "list", ENGINE_URL="")

    assert code == ExitCode.USAGE
    assert "ENGINE_URL" in err and "python -m lib.engine" in err


def test_secrets_file_wins_over_environment_and_switches_win_over_both(
    cli, engine: EngineProcess, secrets_file: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    secrets_file.write_text(f'ENGINE_URL = "{closed}"\n')

    code, _, err = cli("sessions", "list")
    assert code == ExitCode.PROVIDER and closed.split("//")[1] in err

    code, _, _ = cli("sessions", "list", "--engine-url", engine.url)
    assert code == ExitCode.OK


# -- usage -------------------------------------------------------------------------------------


def ts(day: int, hour: int) -> float:
    return datetime(2024, 3, day, hour, tzinfo=UTC).timestamp()


@pytest.fixture
def seeded(log: UsageLog) -> UsageLog:
    for sid, provider, start, seconds in (
        ("h-long", "heygen", ts(1, 10), 600),  # 600 s → 2.0 credits (0.2/min)
        ("h-short", "heygen", ts(2, 12), 10),  # 30 s minimum → 0.1 credits
        ("l-two", "local", ts(2, 13), 120),  # local: 0 credits (0.4 if estimated)
        ("h-later", "heygen", ts(5, 9), 300),  # outside 1–4 March
    ):
        log.open_session(sid, provider, "anna", None, "low", "VP8", created_at=start)
        log.close_session(sid, EndReason.STOPPED, at=start + seconds)
    return log


def test_usage_totals_match_hand_computed_figures(cli, seeded: UsageLog) -> None:
    code, out, _ = cli("usage", "totals", "--from", "2024-03-01", "--to", "2024-03-04", "--json", PRICE_PER_CREDIT="2")
    assert code == ExitCode.OK
    t = json.loads(out)
    assert t["sessions"] == 3 and t["open_sessions"] == 0
    assert t["total_minutes"] == pytest.approx(730 / 60)
    assert t["credits"] == pytest.approx(2.1) and t["cost"] == pytest.approx(4.2)
    assert t["avg_duration_s"] == pytest.approx(730 / 3) and t["p95_duration_s"] == pytest.approx(600)
    assert t["previous"]["sessions"] == 0

    code, out, _ = cli(
        "usage",
        "totals",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-04",
        "--provider",
        "heygen",
        "--json",
        PRICE_PER_CREDIT="2",
    )
    t = json.loads(out)
    assert (t["sessions"], t["total_minutes"], t["credits"]) == (2, pytest.approx(610 / 60), pytest.approx(2.1))

    code, out, _ = cli(
        "usage",
        "totals",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-04",
        "--estimate-local",
        "--json",
        PRICE_PER_CREDIT="2",
    )
    assert json.loads(out)["credits"] == pytest.approx(2.5)

    # What the Usage page saved beats the settings' defaults, as in the app.
    seeded.save_pricing(Pricing(PRESETS["heygen_current"], price_per_credit=3.0, monthly_budget_credits=50))
    code, out, _ = cli("usage", "totals", "--from", "2024-03-01", "--to", "2024-03-04", PRICE_PER_CREDIT="2")
    assert code == ExitCode.OK
    fields = {line[:18].strip(): line[18:].strip() for line in out.splitlines()}
    assert fields["Sessions"] == "3 (0 open)"
    assert fields["Credits"].startswith("2.10") and fields["Cost"].startswith("$6.30")


def test_usage_export_writes_the_filtered_sessions(cli, seeded: UsageLog, tmp_path: Path) -> None:
    target = tmp_path / "march.csv"
    code, _, err = cli("usage", "export", "--from", "2024-03-01", "--to", "2024-03-04", "-o", str(target))

    assert code == ExitCode.OK and "3 session(s)" in err
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert sorted(r["session_id"] for r in rows) == ["h-long", "h-short", "l-two"]
    assert {r["session_id"]: r["credits"] for r in rows}["h-long"] == "2.0"

    code, out, _ = cli("usage", "export")
    assert code == ExitCode.OK
    assert len(list(csv.DictReader(io.StringIO(out)))) == 4


def test_usage_export_neutralises_spreadsheet_formulas_from_imported_history(cli, log: UsageLog) -> None:
    log.import_history([{"session_id": "imported", "created_at": ts(1, 10), "duration": 60, "avatar_id": "=1+1"}])
    code, out, _ = cli("usage", "export")
    assert code == ExitCode.OK
    (row,) = csv.DictReader(io.StringIO(out))
    assert row["avatar_id"] == "'=1+1"


@pytest.mark.parametrize(
    ("setting", "value"), [("PRICE_PER_CREDIT", "nan"), ("MONTHLY_BUDGET_CREDITS", "-1"), ("CREDIT_PRESET", "x")]
)
def test_a_bad_setting_is_a_configuration_error_naming_it(cli, seeded: UsageLog, setting: str, value: str) -> None:
    code, out, err = cli("usage", "totals", **{setting: value})
    assert code == ExitCode.USAGE and out == ""
    assert err.startswith("error: Configuration problem: ") and setting in err and "Traceback" not in err


def test_a_usage_log_that_is_not_a_database_is_named_and_left_untouched(cli, tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    junk.write_bytes(b"not a database\n" * 100)
    before = junk.read_bytes()
    code, out, err = cli("usage", "totals", USAGE_DB_PATH=str(junk))
    assert code == ExitCode.USAGE and out == ""
    assert err == (
        f"error: The usage log {junk} is not a SQLite database (it was left untouched). Move it away, or point "
        "USAGE_DB_PATH at another file.\n"
    )
    assert junk.read_bytes() == before


def test_an_unwritable_data_folder_is_named_with_the_setting_to_change(cli) -> None:
    code, _, err = cli("usage", "export", USAGE_DB_PATH="/sys/avatar-ops-test/usage.db")
    assert code == ExitCode.USAGE
    assert "/sys/avatar-ops-test" in err and "AVATAR_OPS_DATA_DIR" in err and "Traceback" not in err


def test_bad_arguments_are_usage_errors(cli) -> None:
    assert cli("usage", "totals", "--from", "March")[0] == ExitCode.USAGE
    code, _, err = cli("usage", "totals", "--from", "2024-03-05", "--to", "2024-03-01")
    assert code == ExitCode.USAGE and "after" in err
    assert cli("sessions", "stop")[0] == ExitCode.USAGE
    assert cli("sessions", "stop", "abc", "--all", "--yes")[0] == ExitCode.USAGE


# -- as a real process -------------------------------------------------------------------------


def test_runs_as_a_module(env: dict[str, str], secrets_file: Path, client: StreamingClient) -> None:
    proc_env = {"PATH": os.environ.get("PATH", ""), **env}
    help_run = subprocess.run(
        [sys.executable, "-m", "lib.cli", "--help"],
        cwd=PROJECT_ROOT,
        env=proc_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert help_run.returncode == 0
    assert "exit codes" in help_run.stdout and "sessions" in help_run.stdout

    sid = new_session(client)
    listed = subprocess.run(
        [sys.executable, "-m", "lib.cli", "--secrets", str(secrets_file), "sessions", "list", "--json"],
        cwd=PROJECT_ROOT,
        env=proc_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert sid in {s["session_id"] for s in json.loads(listed.stdout)["sessions"]}
