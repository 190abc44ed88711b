"""One usage log shared by several dashboards and command lines (issue 16): the same figures on SQLite and
PostgreSQL, writers in several processes at once, imports racing each other, and copying a file into the
shared log."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lib.cli import ExitCode, main
from lib.ops import StopCounts, stopped_today
from lib.scripts.store import ScriptStore
from lib.usage.credits import PRESETS, Pricing
from lib.usage.schema import SCHEMA_VERSION
from lib.usage.store import EndReason, EventKind, HistoryRow, UsageLog
from tests.support.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
MARCH = datetime(2024, 3, 1, tzinfo=UTC).timestamp()


def seed(log: UsageLog, n: int = 80, seed: int = 7) -> None:
    """The same log whatever the backend: sessions of three providers, events with speaking time, stops,
    losses, a few still open, and a provider history with billed credits for some of them."""
    rng = random.Random(seed)
    history: list[HistoryRow] = []
    for i in range(n):
        sid = f"s-{i:03d}"
        provider = rng.choice(["liveavatar", "liveavatar", "heygen", "local"])
        created = MARCH + rng.uniform(0, 20 * 86400)
        avatar, quality = rng.choice(["anna", "bob"]), rng.choice(["low", "high"])
        log.open_session(sid, provider, avatar, "v", quality, "VP8", True, created)
        log.mark_connected(sid, at=created + 1.5)
        length = rng.uniform(5, 1800)
        for k in range(rng.randint(0, 6)):
            log.record_event(sid, EventKind.TASK, {"k": k}, at=created + 2 + k, speaking_s=rng.uniform(0.5, 4))
        if i % 17 == 0:
            log.heartbeat(sid, at=created + length)  # left open (last seen)
        elif i % 11 == 0:
            log.close_session(sid, EndReason.LOST, at=created + length)
        else:
            log.close_session(sid, EndReason.STOPPED, at=created + length)
        if provider == "liveavatar" and i % 3 == 0:
            mode = rng.choice(["FULL", "LITE"])
            history.append(HistoryRow(sid, created, length, mode=mode, billed_credits=round(length / 40, 2)))
    log.import_provider_history(history, "liveavatar")
    log.import_provider_history(
        [HistoryRow(f"h-{i}", MARCH + i * 3600, 120.0, mode="FULL", billed_credits=4.0) for i in range(5)],
        "liveavatar",
    )


@pytest.fixture
def both(tmp_path: Path, postgres: PostgresServer) -> tuple[str, str]:
    """The same seeded log in a SQLite file and in a PostgreSQL database."""
    file, url = str(tmp_path / "usage.db"), postgres.create_database()
    for target in (file, url):
        with UsageLog(target) as log:
            seed(log)
    return file, url


def cli_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, env: dict[str, str], *argv: str
) -> tuple[int, str, str]:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text("")
    capsys.readouterr()
    code = main(["--secrets", str(secrets), *argv], env={"HOME": str(tmp_path), **env})
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv",
    [
        ("usage", "totals", "--json"),
        ("usage", "totals", "--json", "--from", "2024-03-03", "--to", "2024-03-09", "--tz", "America/New_York"),
        ("usage", "totals", "--json", "--provider", "liveavatar", "--estimate-local"),
        ("usage", "export", "--tz", "Europe/Berlin"),
    ],
)
def test_the_command_line_gives_identical_figures_on_both_backends(
    both: tuple[str, str], argv: tuple[str, ...], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file, url = both
    code_a, on_sqlite, err_a = cli_output(capsys, tmp_path, {"USAGE_DB_PATH": file}, *argv)
    code_b, on_postgres, err_b = cli_output(capsys, tmp_path, {"DATABASE_URL": url}, *argv)
    assert (code_a, code_b) == (ExitCode.OK, ExitCode.OK), (err_a, err_b)
    if "--json" in argv:
        figures = json.loads(on_sqlite)
        assert figures["sessions"] > 0 and figures["credits"] > 0
        assert json.loads(on_postgres) == figures
    else:
        assert on_sqlite.count("\n") > 50
        assert on_postgres == on_sqlite


def test_the_command_line_never_shows_the_database_password(
    postgres: PostgresServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = postgres.create_database().replace(postgres.password, "not-the-pw-9931")
    code, out, err = cli_output(capsys, tmp_path, {"DATABASE_URL": url}, "usage", "totals")
    assert code == ExitCode.USAGE
    assert "not-the-pw-9931" not in out + err and "password authentication failed" in err


def test_copy_puts_a_sqlite_log_into_postgresql_once(
    tmp_path: Path, postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    file, url = str(tmp_path / "usage.db"), postgres.create_database()
    with UsageLog(file) as log:
        seed(log)
        log.set_setting("chart_group", "quality")
    with UsageLog(url) as shared:
        shared.open_session("s-000", "liveavatar", "other", created_at=MARCH)  # the shared log's own record wins
        shared.set_setting("chart_group", "avatar")

    env = {"USAGE_DB_PATH": file, "DATABASE_URL": url}
    code, out, err = cli_output(capsys, tmp_path, env, "usage", "copy", "--json")
    assert code == ExitCode.OK, err
    report = json.loads(out)
    assert (report["sessions_added"], report["sessions_kept"]) == (84, 1)
    assert postgres.password not in out + err and ":***@" in report["to"]

    with UsageLog(file) as src, UsageLog(url) as dst:
        for sid in ("s-005", "s-017", "h-3"):
            assert dst.get_session(sid) == src.get_session(sid)
            assert dst.events(sid) == src.events(sid)
        assert dst.get_session("s-000").avatar_id == "other"  # type: ignore[union-attr]
        assert dst.get_setting("chart_group") == "avatar"
        assert dst.get_setting("bench_anchor") is None

    code, out, _ = cli_output(capsys, tmp_path, env, "usage", "copy", "--json")
    assert (code, json.loads(out)["sessions_added"], json.loads(out)["events_added"]) == (ExitCode.OK, 0, 0)


def test_copy_without_a_target_says_what_to_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with UsageLog(tmp_path / "usage.db"):
        pass
    code, _, err = cli_output(capsys, tmp_path, {"USAGE_DB_PATH": str(tmp_path / "usage.db")}, "usage", "copy")
    assert code == ExitCode.USAGE and "DATABASE_URL" in err


WRITER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from lib.usage.store import HistoryRow, UsageLog
    name, sessions = sys.argv[2], int(sys.argv[3])
    with UsageLog(os.environ["USAGE_TARGET"]) as log:  # a database URL holds a password: never on argv
        print("ready", flush=True)
        sys.stdin.readline()  # both processes start writing together
        if name == "import":
            rows = [HistoryRow(f"hist-{i}", 1700000000 + i, 60.0, billed_credits=2.0) for i in range(sessions)]
            print(log.import_provider_history(rows, "liveavatar").added, flush=True)
        else:
            for i in range(sessions):
                sid = f"{name}-{i}"
                log.open_session(sid, "liveavatar", created_at=1700000000 + i)
                for k in range(5):
                    log.record_event(sid, "task", {"k": k}, at=1700000001 + i + k, speaking_s=1.0)
                log.close_session(sid, "stopped", at=1700000100 + i)
            print(sessions, flush=True)
    """
)


def _together(target: str, jobs: list[tuple[str, int]]) -> list[str]:
    """Run writer processes that start at the same moment; their printed results."""
    env = {**os.environ, "USAGE_TARGET": target}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(ROOT), name, str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name, n in jobs
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [proc.returncode for proc in procs] == [0] * len(procs), outputs
    return outputs


def test_two_processes_writing_at_once_lose_nothing(usage_target: str) -> None:
    UsageLog(usage_target).close()  # migrated before the race: the race is about writes
    _together(usage_target, [("a", 40), ("b", 40)])
    with UsageLog(usage_target) as log, log.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM sessions WHERE end_reason = 'stopped'").scalar_one() == 80
        assert conn.execute("SELECT COUNT(*) FROM events").scalar_one() == 80 * 7
        assert conn.execute("SELECT SUM(speaking_s) FROM sessions").scalar_one() == pytest.approx(400.0)


def test_two_imports_of_the_same_history_at_once_make_no_duplicates(usage_target: str) -> None:
    UsageLog(usage_target).close()
    added = _together(usage_target, [("import", 300), ("import", 300)])
    assert sorted(int(a) for a in added) == [0, 300]  # one import added them all, the other found them there
    with UsageLog(usage_target) as log, log.read() as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT session_id) FROM sessions").fetchone() == (300, 300)
        assert conn.execute("SELECT SUM(billed_credits) FROM sessions").scalar_one() == pytest.approx(600.0)


def _open_at_once(target: str, logs: int = 4) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(logs)

    def opener() -> None:
        try:
            start.wait()
            UsageLog(target).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_two_logs_migrating_a_fresh_database_at_once_both_open_it(usage_target: str) -> None:
    assert _open_at_once(usage_target) == []
    with UsageLog(usage_target) as log:
        assert log.schema_version == SCHEMA_VERSION


def test_logs_opening_fresh_sqlite_files_at_once_never_find_them_locked(tmp_path: Path) -> None:
    # Switching a fresh file to WAL raced: SQLite said "database is locked" at once, without waiting the busy
    # timeout, in about 1 of 30 such openings (CI, 2026-12-03). Forty fresh files make a return of it likely seen.
    for attempt in range(40):
        target = str(tmp_path / f"usage-{attempt}.db")
        assert _open_at_once(target) == [], f"fresh file {attempt}"


def test_saved_scripts_pricing_and_stop_counts_work_on_both_backends(usage_target: str) -> None:
    with UsageLog(usage_target) as log:
        scripts = ScriptStore(log)
        scripts.save("Welcome", "Hello there.")
        scripts.save("password reset", "Go to settings.")
        assert scripts.names() == ["password reset", "Welcome"]
        assert scripts.delete("Welcome") and scripts.names() == ["password reset"]

        log.save_pricing(Pricing(PRESETS["liveavatar_lite"], price_per_credit=0.2, monthly_budget_credits=300))
        assert log.load_pricing(Pricing()).model.key == "liveavatar_lite"

        now = MARCH + 12 * 3600
        log.open_session("forced", "liveavatar", created_at=now - 600)
        log.record_event("forced", EventKind.FORCE_STOP, {"outcome": "stopped"}, at=now - 60)
        log.close_session("forced", EndReason.FORCE_STOPPED, at=now - 60)
        log.open_session("ended", "liveavatar", created_at=now - 500)
        log.close_session("ended", EndReason.STOPPED, at=now - 30)
        assert stopped_today(log, now=now) == StopCounts(force_stopped=1, ended=2)
        assert log.was_force_stopped("forced") and not log.was_force_stopped("ended")
