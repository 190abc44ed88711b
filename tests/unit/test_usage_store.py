from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from lib.usage.credits import PRESETS, Pricing
from lib.usage.schema import SCHEMA_VERSION
from lib.usage.store import EndReason, EventKind, HistoryRow, UsageLog, UsageLogError
from tests.support.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0


@pytest.fixture
def log(usage_target: str) -> Iterator[UsageLog]:
    """A fresh log on each backend (SQLite file, PostgreSQL database)."""
    usage = UsageLog(usage_target)
    yield usage
    usage.close()


def test_creates_parent_dirs_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "usage.db"
    with UsageLog(path) as usage:
        usage.open_session("s", "heygen", created_at=T0)
    assert path.exists()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_concurrent_writers_lose_nothing(usage_target: str) -> None:
    # Two instances on one log stand in for two processes: they share no Python lock, only the database's.
    logs = [UsageLog(usage_target), UsageLog(usage_target)]
    threads_n, events_n = 8, 200
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def writer(i: int) -> None:
        usage = logs[i % 2]
        sid = f"s{i}"
        try:
            start.wait()
            usage.open_session(sid, "heygen", "avatar", created_at=T0)
            for n in range(events_n):
                usage.record_event(sid, EventKind.TASK, {"n": n}, at=T0 + n, speaking_s=0.5)
                if n % 50 == 0:
                    usage.heartbeat(sid, at=T0 + n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i in range(threads_n):
        events = logs[0].events(f"s{i}")
        tasks = [d["n"] for _, kind, d in events if kind == "task"]
        assert tasks == list(range(events_n))
        row = logs[1].get_session(f"s{i}")
        assert row is not None
        assert row.last_seen == T0 + events_n - 1
        assert row.speaking_s == pytest.approx(events_n * 0.5)
    with logs[1].read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").scalar_one() == threads_n * (events_n + 1)
    for usage in logs:
        usage.close()


CRASHING_WRITER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[2])
    from lib.usage.store import UsageLog
    log = UsageLog(sys.argv[1])
    log.open_session("crashed", "heygen", "anna", created_at=1700000000.0)
    log.mark_connected("crashed", at=1700000003.0)
    log.record_event("crashed", "task", {"text": "hello"}, at=1700000010.0)
    log.heartbeat("crashed", at=1700000042.0)
    log.open_session("never-seen", "heygen", created_at=1700000100.0)
    log.open_session("still-live", "heygen", created_at=1700000200.0)
    os._exit(3)  # no close, no cleanup: the dashboard process died
    """
)


def test_sessions_left_open_by_a_crashed_process_are_reconciled(usage_target: str) -> None:
    path = usage_target
    proc = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(path), str(ROOT)], timeout=60)
    assert proc.returncode == 3

    with UsageLog(path) as usage:
        open_ids = {s.session_id for s in usage.open_sessions("heygen")}
        assert open_ids == {"crashed", "never-seen", "still-live"}
        result = usage.reconcile(["still-live", "opened-elsewhere"], provider="heygen")

        lost = {row.session_id: row for row in result.lost}
        assert set(lost) == {"crashed", "never-seen"}
        assert lost["crashed"].ended_at == 1_700_000_042.0  # last heartbeat, not now
        assert lost["crashed"].end_reason == EndReason.LOST
        assert lost["never-seen"].ended_at == 1_700_000_100.0  # no heartbeat: closed at creation
        assert lost["crashed"].duration_s() == 42.0
        assert result.orphans == ["opened-elsewhere"]
        assert result.still_open == ["still-live"]
        assert usage.get_session("opened-elsewhere") is None  # orphans are reported, not inserted
        assert [s.session_id for s in usage.open_sessions()] == ["still-live"]
        at, kind, details = usage.events("crashed")[-1]
        assert (at, kind, details and details["reason"]) == (1_700_000_042.0, EventKind.CLOSED, "lost")


def test_dropped_instance_without_close_is_reconciled_by_the_next(usage_target: str) -> None:
    path = usage_target
    first = UsageLog(path)
    first.open_session("a", "local", created_at=T0)
    first.heartbeat("a", at=T0 + 30)
    del first
    gc.collect()
    with UsageLog(path) as second:
        result = second.reconcile([], provider="local")
        assert [(r.session_id, r.ended_at, r.end_reason) for r in result.lost] == [("a", T0 + 30, "lost")]


def test_reconcile_only_touches_the_given_provider_and_reports_stops_that_did_not_take(log: UsageLog) -> None:
    log.open_session("heygen-1", "heygen", created_at=T0)
    log.open_session("local-1", "local", created_at=T0)
    log.open_session("stopped", "heygen", created_at=T0)
    log.close_session("stopped", EndReason.STOPPED, at=T0 + 5)
    result = log.reconcile(["stopped"], provider="heygen")
    assert [r.session_id for r in result.lost] == ["heygen-1"]
    assert result.closed_but_active == ["stopped"]
    assert log.get_session("local-1").is_open


def test_reconcile_closes_only_sessions_of_the_listed_endpoint_or_of_endpoints_that_are_gone(log: UsageLog) -> None:
    here, alive, dead = "http://127.0.0.1:1#key-a", "http://127.0.0.1:2#key-b", "http://127.0.0.1:3#key-c"
    log.open_session("here-running", "local", created_at=T0, endpoint=here)
    log.open_session("here-gone", "local", created_at=T0, endpoint=here)
    log.open_session("other-engine", "local", created_at=T0, endpoint=alive)
    log.open_session("dead-engine", "local", created_at=T0, endpoint=dead)
    log.heartbeat("dead-engine", at=T0 + 20)
    log.open_session("dead-engine-2", "local", created_at=T0, endpoint=dead)
    log.open_session("before-endpoints", "local", created_at=T0)  # logged by an older version
    asked: list[str] = []

    def reachable(endpoint: str) -> bool:
        asked.append(endpoint)
        return endpoint == alive

    result = log.reconcile(["here-running"], "local", here, reachable=reachable)

    lost = sorted(r.session_id for r in result.lost)
    assert lost == ["before-endpoints", "dead-engine", "dead-engine-2", "here-gone"]
    assert {r.session_id: r.ended_at for r in result.lost}["dead-engine"] == T0 + 20
    assert [r.session_id for r in result.elsewhere] == ["other-engine"]
    assert sorted(asked) == [alive, dead]  # each other endpoint is asked once, the listed one never
    assert {s.session_id for s in log.open_sessions("local")} == {"here-running", "other-engine"}

    # Without a way to check other endpoints, their sessions are left alone.
    log.open_session("third", "local", created_at=T0, endpoint=dead)
    assert [r.session_id for r in log.reconcile(["here-running"], "local", here).elsewhere] == ["other-engine", "third"]


def test_version_1_log_gains_endpoints_and_keeps_its_sessions(tmp_path: Path) -> None:
    from lib.usage.schema import MIGRATIONS

    path = tmp_path / "usage.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO sessions (session_id, provider, created_at) VALUES ('old', 'heygen', ?)", (T0,))
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with UsageLog(path) as usage:
        assert usage.schema_version == SCHEMA_VERSION
        old = usage.get_session("old")
        assert old is not None and old.endpoint is None and old.created_at == T0
        usage.open_session("new", "heygen", created_at=T0, endpoint="https://api.heygen.com#key-x")
        assert usage.get_session("new").endpoint == "https://api.heygen.com#key-x"  # type: ignore[union-attr]


def test_close_is_idempotent_and_keeps_the_first_end(log: UsageLog) -> None:
    log.open_session("s", "heygen", created_at=T0)
    assert log.close_session("s", EndReason.STOPPED, at=T0 + 60)
    assert not log.close_session("s", EndReason.FORCE_STOPPED, at=T0 + 500)
    row = log.get_session("s")
    assert (row.ended_at, row.end_reason) == (T0 + 60, "stopped")
    assert [kind for _, kind, _ in log.events("s")].count("closed") == 1
    assert not log.heartbeat("s", at=T0 + 700)
    assert log.get_session("s").duration_s() == 60


def test_open_session_twice_keeps_the_first_record(log: UsageLog) -> None:
    assert log.open_session("s", "heygen", "anna", created_at=T0)
    assert not log.open_session("s", "local", "bob", created_at=T0 + 9)
    row = log.get_session("s")
    assert (row.provider, row.avatar_id, row.created_at) == ("heygen", "anna", T0)


def test_lifecycle_is_written_as_it_happens(log: UsageLog) -> None:
    log.open_session("s", "heygen", "anna", "v1", "high", "VP8", created_at=T0)
    log.mark_connected("s", at=T0 + 2)
    log.mark_connected("s", at=T0 + 50)
    log.record_event("s", EventKind.INTERRUPT, at=T0 + 20)
    row = log.get_session("s")
    assert row.connected_at == T0 + 2
    assert row.last_seen == T0 + 50
    assert row.is_open
    assert [kind for _, kind, _ in log.events("s")] == ["created", "connected", "interrupt", "connected"]


def test_timestamps_are_stored_as_utc(log: UsageLog) -> None:
    paris = datetime(2024, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))
    log.open_session("s", "heygen", created_at=paris)
    row = log.get_session("s")
    assert row.created_at_utc == datetime(2024, 7, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="aware"):
        log.open_session("t", "heygen", created_at=datetime(2024, 7, 1, 12, 0))


def test_credentials_never_reach_the_log(log: UsageLog) -> None:
    log.open_session("s", "heygen", created_at=T0)
    log.record_event("s", EventKind.ERROR, {"request": {"X-Api-Key": "sk-live-123", "access_token": "jwt"}})
    if log.path is not None:
        raw = log.path.read_bytes() + log.path.with_name(log.path.name + "-wal").read_bytes()
    else:
        with log.read() as conn:
            raw = repr(conn.execute("SELECT * FROM events").fetchall()).encode()
            raw += repr(conn.execute("SELECT * FROM sessions").fetchall()).encode()
    assert b"sk-live-123" not in raw and b"jwt" not in raw
    with pytest.raises(ValueError):
        log.set_setting("heygen_api_key", "sk-live-123")


def test_import_history_skips_sessions_already_logged(log: UsageLog) -> None:
    log.open_session("ours", "heygen", "anna", created_at=T0)
    history = [
        {"session_id": "ours", "created_at": T0, "duration": 999, "avatar_id": "x", "voice_name": "v"},
        {"session_id": "old-1", "created_at": T0 - 86400, "duration": 125, "avatar_id": "anna", "voice_name": "v"},
        HistoryRow("old-2", T0 - 3600, 30.0, "bob", None),
    ]
    assert log.import_history(history) == 2
    assert log.import_history(history) == 0
    ours = log.get_session("ours")
    assert ours.started_by_dashboard and ours.is_open and ours.avatar_id == "anna"
    old = log.get_session("old-1")
    assert (old.duration_s(), old.end_reason, old.started_by_dashboard, old.voice_id) == (125.0, "imported", False, "v")


def test_empty_v0_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    path.touch()
    with UsageLog(path) as usage:
        assert usage.schema_version == SCHEMA_VERSION
        usage.open_session("s", "heygen", created_at=T0)
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sessions", "events", "settings"} <= tables


def test_a_log_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(UsageLogError, match="newer"):
        UsageLog(path)


def test_reopening_keeps_sessions_events_and_settings(usage_target: str) -> None:
    path = usage_target
    with UsageLog(path) as usage:
        usage.open_session("s", "heygen", created_at=T0)
        usage.close_session("s", EndReason.STOPPED, at=T0 + 10)
        usage.set_setting("chart_group", "quality")
        usage.save_pricing(Pricing(PRESETS["liveavatar_lite"], price_per_credit=0.1, monthly_budget_credits=500))
    with UsageLog(path) as usage:
        assert usage.get_session("s").ended_at == T0 + 10
        assert len(usage.events("s")) == 2
        assert usage.get_setting("chart_group") == "quality"
        assert usage.get_setting("missing", "fallback") == "fallback"
        pricing = usage.load_pricing(Pricing())
        assert (pricing.model.key, pricing.price_per_credit, pricing.monthly_budget_credits) == (
            "liveavatar_lite",
            0.1,
            500.0,
        )


def test_pricing_defaults_apply_until_saved(log: UsageLog) -> None:
    default = Pricing(PRESETS["heygen_older"], price_per_credit=2.0, monthly_budget_credits=10)
    assert log.load_pricing(default) == default
    log.set_setting("credit_preset", "no_such_preset")
    assert log.load_pricing(default).model.key == "heygen_older"


def test_closed_log_says_so(usage_target: str) -> None:
    usage = UsageLog(usage_target)
    usage.close()
    with pytest.raises(UsageLogError, match="closed"):
        usage.open_session("s", "heygen")


def test_a_session_logged_after_the_listing_began_is_not_judged_by_it(log: UsageLog) -> None:
    listed_at = T0 + 100
    log.open_session("old", "local", created_at=T0)
    log.open_session("new", "local", created_at=listed_at + 0.005)  # logged 5 ms after the request went out
    result = log.reconcile([], "local", listed_at=listed_at)
    assert [r.session_id for r in result.lost] == ["old"]
    assert result.too_new == ["new"]
    assert log.get_session("new").is_open  # type: ignore[union-attr]
    # The next listing, begun after it was logged, judges it.
    assert [r.session_id for r in log.reconcile([], "local", listed_at=listed_at + 10).lost] == ["new"]


def test_a_session_wrongly_closed_as_lost_is_reopened_and_takes_heartbeats_again(log: UsageLog) -> None:
    log.open_session("s", "local", created_at=T0)
    log.heartbeat("s", at=T0 + 5)
    assert [r.session_id for r in log.reconcile([], "local", listed_at=T0 + 10).lost] == ["s"]
    assert not log.heartbeat("s", at=T0 + 20)  # closed rows ignore heartbeats

    result = log.reconcile(["s"], "local", listed_at=time.time() + 1)  # a listing begun after the decision

    assert result.reopened == ["s"] and result.still_open == ["s"] and result.closed_but_active == []
    row = log.get_session("s")
    assert row is not None and row.is_open and row.end_reason is None
    assert log.heartbeat("s", at=T0 + 30)
    assert log.get_session("s").last_seen == T0 + 30  # type: ignore[union-attr]
    assert EventKind.REOPENED in [kind for _, kind, _ in log.events("s")]


def test_a_listing_older_than_the_lost_decision_does_not_reopen_the_session(log: UsageLog) -> None:
    log.open_session("s", "local", created_at=T0)
    stale_listing = time.time() - 1  # began before the close below was decided
    log.reconcile([], "local", listed_at=T0 + 10)
    result = log.reconcile(["s"], "local", listed_at=stale_listing)
    assert result.reopened == [] and result.closed_but_active == ["s"]
    assert not log.get_session("s").is_open  # type: ignore[union-attr]


def test_a_stop_is_never_reopened_by_a_listing(log: UsageLog) -> None:
    log.open_session("s", "local", created_at=T0)
    log.close_session("s", EndReason.STOPPED, at=T0 + 5)
    result = log.reconcile(["s"], "local", listed_at=time.time() + 1)
    assert result.reopened == [] and result.closed_but_active == ["s"]


def test_settle_end_times_moves_only_lost_sessions_to_the_provider_end(log: UsageLog) -> None:
    log.open_session("lost", "local", created_at=T0)
    log.open_session("stopped", "local", created_at=T0)
    log.close_session("stopped", EndReason.STOPPED, at=T0 + 5)
    log.reconcile([], "local", listed_at=T0 + 100)
    assert log.settle_end_times({"lost": T0 + 42.5, "stopped": T0 + 99}) == 1
    assert log.get_session("lost").ended_at == T0 + 42.5  # type: ignore[union-attr]
    assert log.get_session("stopped").ended_at == T0 + 5  # type: ignore[union-attr]
    assert log.events("lost")[-1][0] == T0 + 42.5


def test_the_log_and_the_folders_it_creates_are_private_to_their_user(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    path = shared / "avatar-ops" / "data" / "usage.db"
    with UsageLog(path) as usage:
        usage.open_session("s", "heygen", created_at=T0)
        files = [path, path.with_name("usage.db-wal"), path.with_name("usage.db-shm")]
        assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: "0o600" for f in files}
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert oct(path.parent.parent.stat().st_mode & 0o777) == "0o700"
    assert oct(shared.stat().st_mode & 0o777) == "0o755"  # not ours to change


def test_an_existing_log_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    path.touch(mode=0o640)
    os.chmod(path, 0o640)
    with UsageLog(path) as usage:
        usage.open_session("s", "heygen", created_at=T0)
    assert oct(path.stat().st_mode & 0o777) == "0o640"


def test_a_file_that_is_not_a_database_is_reported_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    junk = b"these are my notes, not a database\n" * 200
    path.write_bytes(junk)
    with pytest.raises(UsageLogError) as raised:
        UsageLog(path)
    assert str(raised.value) == (
        f"The usage log {path} is not a SQLite database (it was left untouched). Move it away, or point "
        "USAGE_DB_PATH at another file."
    )
    assert path.read_bytes() == junk
    assert sorted(p.name for p in tmp_path.iterdir()) == ["usage.db"]


def test_a_place_that_cannot_be_written_is_reported_with_the_setting_to_change() -> None:
    path = Path("/sys/avatar-ops-test/usage.db")  # sysfs: nobody, not even root, can create a folder there
    with pytest.raises(UsageLogError) as raised:
        UsageLog(path)
    message = str(raised.value)
    assert str(path) in message and "AVATAR_OPS_DATA_DIR" in message and "Traceback" not in message


def test_a_file_in_the_way_of_the_data_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    with pytest.raises(UsageLogError, match=f"{tmp_path / 'data'} is a file, not a folder"):
        UsageLog(tmp_path / "data" / "usage.db")


def test_provider_history_import_matches_logged_sessions_and_twice_changes_nothing(log: UsageLog) -> None:
    log.open_session("mine", "liveavatar", "anna", created_at=T0)
    log.close_session("mine", EndReason.STOPPED, at=T0 + 300)
    rows = [
        HistoryRow(
            "mine",
            T0 + 1,
            298,
            ended_at=T0 + 299,
            mode="FULL",
            source="API",
            is_sandbox=False,
            billed_credits=9.93,
            end_reason="USER_CLOSED",
        ),
        HistoryRow(
            "theirs",
            T0 + 600,
            60,
            ended_at=T0 + 660,
            mode="LITE",
            source="EMBED",
            is_sandbox=True,
            billed_credits=0.0,
            end_reason="MAX_DURATION_REACHED",
        ),
    ]

    first = log.import_provider_history(rows, "liveavatar")
    assert (first.added, first.updated, first.read) == (1, 1, 2)
    mine = log.get_session("mine")
    assert mine is not None and mine.started_by_dashboard and mine.end_reason == EndReason.STOPPED
    assert (mine.created_at, mine.ended_at) == (T0, T0 + 300)  # the dashboard's own times stay
    assert (mine.mode, mine.source, mine.is_sandbox, mine.billed_credits) == ("FULL", "API", False, 9.93)
    assert mine.provider_end_reason == "USER_CLOSED"
    theirs = log.get_session("theirs")
    assert theirs is not None and not theirs.started_by_dashboard and theirs.end_reason == EndReason.IMPORTED
    assert (theirs.ended_at, theirs.is_sandbox, theirs.billed_credits) == (T0 + 660, True, 0.0)

    again = log.import_provider_history(rows, "liveavatar")
    assert (again.added, again.updated, again.unchanged) == (0, 0, 2)


def test_version_2_log_gains_the_provider_columns_and_keeps_its_sessions(tmp_path: Path) -> None:
    from lib.usage.schema import MIGRATIONS

    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + MIGRATIONS[1])
    conn.execute("INSERT INTO sessions (session_id, provider, created_at) VALUES ('old', 'heygen', 1.0)")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with UsageLog(path) as usage:
        assert usage.schema_version == SCHEMA_VERSION
        old = usage.get_session("old")
        assert old is not None and old.billed_credits is None and old.mode is None and old.is_sandbox is None


def test_a_wrong_database_password_is_reported_without_the_password(postgres: PostgresServer) -> None:
    url = postgres.create_database().replace(f":{postgres.password}@", ":wrong-pw-4711@")
    with pytest.raises(UsageLogError) as raised:
        UsageLog(url)
    message = str(raised.value)
    assert "wrong-pw-4711" not in message and postgres.password not in message
    assert "DATABASE_URL" in message and "password authentication failed" in message
    assert "postgresql://avatar_ops:***@127.0.0.1" in message


def test_an_unreachable_server_is_reported_without_the_password(postgres: PostgresServer) -> None:
    url = f"postgresql://avatar_ops:{postgres.password}@127.0.0.1:1/usage"
    with pytest.raises(UsageLogError) as raised:
        UsageLog(url, busy_timeout_s=2)
    assert postgres.password not in str(raised.value) and "127.0.0.1" in str(raised.value)


def test_the_log_is_shown_as_its_file_or_its_url_without_the_password(usage_target: str) -> None:
    with UsageLog(usage_target) as usage:
        if usage.dialect == "sqlite":
            assert usage.location == usage_target
        else:
            password = usage_target.split("@")[0].rsplit(":", 1)[1]
            assert usage.location == usage_target.replace(password, "***")
            assert password not in repr(usage)


def test_the_audit_trail_keeps_who_did_what_newest_first_on_both_backends(log: UsageLog) -> None:
    log.record_audit("ops@example.com", "force_stop", "s-1", "stopped", at=1_000.0)
    log.record_audit("local", "budget_override", None, "1 session", at=2_000.0)
    log.record_audit("ops@example.com", "force_stop", "s-2", "already gone", at=3_000.0)
    entries = log.audit_entries()
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("ops@example.com", "force_stop", "s-2"),
        ("local", "budget_override", None),
        ("ops@example.com", "force_stop", "s-1"),
    ]
    assert [e.target for e in log.audit_entries(actions=["force_stop"], since=2_000.0)] == ["s-2"]
    assert [e.detail for e in log.audit_entries(target="s-1")] == ["stopped"]
