"""The summary rows (lib/usage/rollups.py) always equal what the raw sessions give: after any sequence of writes,
after a reopen by reconciliation, with two processes writing at once, and after the migration backfills a log
written before they existed. Every figure the Usage page shows is compared with the raw computation."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import time
from dataclasses import fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lib.usage import queries, rollups
from lib.usage.credits import PRESETS, Pricing
from lib.usage.db import POSTGRES
from lib.usage.queries import UsageFilter
from lib.usage.schema import SCHEMA_VERSION
from lib.usage.store import EndReason, EventKind, HistoryRow, UsageLog

ROOT = Path(__file__).resolve().parents[2]
MARCH = datetime(2024, 3, 1, tzinfo=UTC).timestamp()
NOW = MARCH + 25 * 86400
PRICINGS = [
    Pricing(PRESETS[key], 0.5, 100) for key in ("heygen_current", "liveavatar", "heygen_oldest", "heygen_older")
]
FILTERS = [
    UsageFilter(),
    UsageFilter(date(2024, 3, 3), date(2024, 3, 12)),
    UsageFilter(date(2024, 3, 1), date(2024, 3, 20), tz="America/New_York"),  # DST begins on 10 March
    UsageFilter(providers=("liveavatar",), avatars=("anna",)),
    UsageFilter(qualities=("low",), tz="Europe/Berlin"),
    UsageFilter(avatars=("bob",), qualities=("high",), date_from=date(2024, 3, 5)),
]


def summary_rows(log: UsageLog) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    with log.read() as conn:
        rows = conn.execute(f"SELECT {', '.join(rollups.KEY + rollups.VALUES)} FROM {rollups.TABLE}").fetchall()
    width = len(rollups.KEY)
    return {tuple(r[:width]): tuple(float(v) for v in r[width:]) for r in rows}


def assert_maintained_equals_rebuilt(log: UsageLog) -> None:
    kept = summary_rows(log)
    with log.write() as conn:
        rollups.rebuild(conn)
    rebuilt = summary_rows(log)
    assert kept.keys() == rebuilt.keys()
    for key, values in rebuilt.items():
        assert kept[key] == pytest.approx(values, abs=1e-6), key


def page_figures(log: UsageLog, flt: UsageFilter, pricing: Pricing, local: bool) -> dict[str, Any]:
    est = {"include_local_estimate": local, "now": NOW}
    report = queries.kpis(log, flt, pricing, **est)
    out: dict[str, Any] = {f.name: getattr(report.current, f.name) for f in fields(report.current)}
    for by in ("avatar", "quality", "provider"):
        out[f"per_day_{by}"] = queries.minutes_per_day(log, flt, pricing, by, **est)  # type: ignore[arg-type]
    out["durations"] = queries.duration_distribution(log, flt, now=NOW)
    out["durations_coarse"] = queries.duration_distribution(log, flt, (0, 60, 600, float("inf")), now=NOW)
    out["hours"] = queries.sessions_by_hour(log, flt, now=NOW)
    out["budget"] = queries.cumulative_credits(log, date(2024, 3, 1), pricing, flt=flt, today=date(2024, 3, 9), **est)
    return out


def assert_summary_equals_raw(log: UsageLog, monkeypatch: pytest.MonkeyPatch) -> None:
    for flt in FILTERS:
        with log.read() as conn:
            assert queries._summarised(conn, flt, PRICINGS[0])  # these figures really come from the summary rows
        for pricing in PRICINGS:
            for local in (False, True):
                summary = page_figures(log, flt, pricing, local)
                with monkeypatch.context() as patch:
                    patch.setattr(queries, "_summarised", lambda *_a: False)
                    raw = page_figures(log, flt, pricing, local)
                for name, value in raw.items():
                    if isinstance(value, pd.DataFrame):
                        pd.testing.assert_frame_equal(summary[name], value, check_dtype=False, rtol=1e-9)
                    elif isinstance(value, float):
                        assert summary[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
                    else:
                        assert summary[name] == value, name


def random_writes(log: UsageLog, rng: random.Random, n: int, prefix: str = "s") -> None:
    """Every kind of write the dashboard makes, in a random order, over sessions that start in March."""
    ids: list[str] = []
    for step in range(n):
        op = rng.random()
        if op < 0.3 or not ids:
            sid = f"{prefix}-{len(ids):03d}"
            created = MARCH + rng.uniform(0, 20 * 86400)
            provider = rng.choice(["liveavatar", "heygen", "local"])
            avatar = rng.choice(["anna", "bob", None])
            quality = rng.choice(["low", "high", None])
            log.open_session(sid, provider, avatar, "v", quality, "VP8", True, created)
            ids.append(sid)
            continue
        sid = rng.choice(ids)
        row = log.get_session(sid)
        assert row is not None
        at = row.created_at + rng.uniform(0, 2400)
        if op < 0.45:
            log.mark_connected(sid, at=at)
        elif op < 0.55:
            log.heartbeat(sid, at=at)
        elif op < 0.65:
            log.record_event(sid, EventKind.TASK, {"step": step}, at=at, speaking_s=rng.uniform(0, 20))
        elif op < 0.8:
            log.close_session(sid, rng.choice([EndReason.STOPPED, EndReason.LOST, EndReason.ERROR]), at=at)
        elif op < 0.85:
            # Crash recovery: everything not listed is lost; a later listing may show one again (reopened).
            listed = [s for s in ids if rng.random() < 0.3]
            log.reconcile(listed, row.provider, listed_at=time.time() + 1)  # after any earlier "lost" decision
        elif op < 0.9:
            log.settle_end_times({sid: at})
        else:
            mode, sandbox = rng.choice(["FULL", "LITE", None]), rng.choice([True, False, None])
            billed = rng.choice([None, round(rng.uniform(0, 9), 2)])
            log.import_provider_history(
                [
                    HistoryRow(sid, row.created_at, rng.uniform(1, 900), mode=mode, is_sandbox=sandbox),
                    HistoryRow(f"{prefix}-h{step}", at, rng.uniform(0, 900), "anna", mode=mode, billed_credits=billed),
                ],
                "liveavatar",
            )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_summary_rows_equal_the_raw_sessions_after_any_writes(
    usage_target: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    with UsageLog(usage_target) as log:
        random_writes(log, random.Random(seed), 160)
        with log.read() as conn:
            reopened = conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'reopened'").scalar_one()
            assert reopened > 0 and conn.execute("SELECT COUNT(billed_credits) FROM sessions").scalar_one() > 0
        assert_summary_equals_raw(log, monkeypatch)
        assert_maintained_equals_rebuilt(log)
        with log.read() as conn:
            for key, column in (("providers", "provider"), ("avatars", "avatar_id"), ("qualities", "quality")):
                raw = conn.execute(f"SELECT DISTINCT {column} FROM sessions WHERE {column} IS NOT NULL").fetchall()
                assert queries.filter_options(log)[key] == sorted(r[0] for r in raw)


def test_a_session_reopened_by_reconciliation_leaves_the_summary_until_it_ends_again(usage_target: str) -> None:
    with UsageLog(usage_target) as log:
        log.open_session("s", "heygen", "anna", created_at=MARCH)
        log.heartbeat("s", at=MARCH + 100)
        assert summary_rows(log) == {}  # open: counted from the raw table, not here
        log.reconcile([], "heygen", listed_at=MARCH + 200)
        assert {v[0] for v in summary_rows(log).values()} == {1.0}  # closed as lost at its last heartbeat
        log.reconcile(["s"], "heygen", listed_at=time.time() + 1)  # a listing begun after the decision
        assert log.get_session("s").is_open  # type: ignore[union-attr]
        assert summary_rows(log) == {}
        log.close_session("s", EndReason.STOPPED, at=MARCH + 600)
        totals = queries.kpis(log, UsageFilter(), PRICINGS[0], now=NOW).current
        assert (totals.sessions, totals.open_sessions, totals.total_minutes) == (1, 0, pytest.approx(10.0))
        assert_maintained_equals_rebuilt(log)


WRITER = textwrap.dedent(
    """
    import os, random, sys
    sys.path.insert(0, sys.argv[1])
    from tests.unit.test_usage_rollups import random_writes
    from lib.usage.store import UsageLog
    with UsageLog(os.environ["USAGE_TARGET"]) as log:  # a database URL holds a password: never on argv
        print("ready", flush=True)
        sys.stdin.readline()  # both processes start writing together
        random_writes(log, random.Random(int(sys.argv[3])), 150, prefix=sys.argv[2])
        print("done", flush=True)
    """
)


def test_two_processes_writing_at_once_keep_the_summary_exact(
    usage_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    UsageLog(usage_target).close()  # migrated before the race: the race is about writes
    env = {**os.environ, "USAGE_TARGET": usage_target}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(ROOT), name, str(seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for name, seed in (("a", 11), ("b", 12))
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=180)[0].strip() for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert outputs == ["done", "done"]
    with UsageLog(usage_target) as log:
        with log.read() as conn:
            assert conn.execute("SELECT COUNT(DISTINCT SUBSTR(session_id, 1, 1)) FROM sessions").scalar_one() == 2
        assert_summary_equals_raw(log, monkeypatch)
        assert_maintained_equals_rebuilt(log)


def test_the_migration_backfills_a_log_written_before_the_summary(
    usage_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with UsageLog(usage_target) as log:
        random_writes(log, random.Random(5), 120)
        before = page_figures(log, UsageFilter(), PRICINGS[1], False)
        with log.write() as conn:  # back to version 4: no summary table, no indexes of migration 5
            conn.execute(f"DROP TABLE {rollups.TABLE}")
            conn.execute("DROP INDEX sessions_open_created")
            conn.execute("DROP INDEX sessions_closed_duration")
            if log.dialect == POSTGRES:
                conn.execute("UPDATE schema_version SET version = 4")
            else:
                conn.execute("PRAGMA user_version = 4")
    with UsageLog(usage_target) as log:
        assert log.schema_version == SCHEMA_VERSION
        assert sum(v[0] for k, v in summary_rows(log).items() if k[0] == 0) > 0
        after = page_figures(log, UsageFilter(), PRICINGS[1], False)
        for name, value in before.items():
            if isinstance(value, pd.DataFrame):
                pd.testing.assert_frame_equal(after[name], value, check_dtype=False, rtol=1e-9)
            else:
                assert after[name] == pytest.approx(value), name
        assert_summary_equals_raw(log, monkeypatch)
        assert_maintained_equals_rebuilt(log)


def test_half_hour_zones_and_custom_minimums_read_the_raw_sessions(usage_target: str) -> None:
    custom = Pricing(PRESETS["heygen_current"].with_rate(0.3, minimum_s=45), 1.0, 100)
    with UsageLog(usage_target) as log, log.read() as conn:
        assert not queries._summarised(conn, UsageFilter(tz="Asia/Kolkata"))
        assert not queries._summarised(conn, UsageFilter(), custom)
        assert queries._summarised(conn, UsageFilter(tz="Asia/Tokyo"), PRICINGS[1])
