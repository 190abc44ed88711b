from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from lib.usage.credits import PRESETS, Pricing
from lib.usage.queries import (
    UsageFilter,
    cumulative_credits,
    duration_distribution,
    kpis,
    minutes_per_day,
    project_month,
    sessions_by_hour,
    sessions_csv,
    sessions_table,
)
from lib.usage.store import EndReason, EventKind, HistoryRow, UsageLog

PRICING = Pricing(PRESETS["heygen_current"], price_per_credit=0.99, monthly_budget_credits=100)
NOW = datetime(2024, 3, 3, 18, 0, tzinfo=UTC).timestamp()


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


# (id, provider, avatar, quality, created, seconds or None for open, last_seen offset)
SEED = [
    ("s1", "heygen", "anna", "high", utc(2024, 3, 1, 10, 0), 90, None),  # 0.3 credits
    ("s2", "heygen", "bob", "low", utc(2024, 3, 1, 12, 0), 20, None),  # 0.1 (30 s minimum)
    ("s3", "heygen", "anna", "low", utc(2024, 3, 2, 23, 30), 600, None),  # 2.0
    ("s4", "local", "anna", "high", utc(2024, 3, 2, 9, 0), 300, None),  # 0 real, 1.0 estimated
    ("s5", "heygen", "bob", "high", utc(2024, 2, 29, 8, 0), 120, None),  # 0.4, previous period
    ("s6", "heygen", "anna", "high", utc(2024, 3, 3, 7, 0), None, 45),  # open, last seen +45 s: 0.15
]


@pytest.fixture
def log(usage_target: str) -> Iterator[UsageLog]:
    usage = UsageLog(usage_target)
    for sid, provider, avatar, quality, created, seconds, seen in SEED:
        usage.open_session(sid, provider, avatar, "voice", quality, "VP8", created_at=created)
        if seconds is not None:
            usage.close_session(sid, EndReason.STOPPED, at=created + seconds)
        if seen is not None:
            usage.heartbeat(sid, at=created + seen)
    usage.record_event("s1", EventKind.TASK, {"text": "hi"}, at=utc(2024, 3, 1, 10, 0, 30))
    usage.record_event("s1", EventKind.TASK, {"text": "again"}, at=utc(2024, 3, 1, 10, 1))
    yield usage
    usage.close()


MARCH_1_2 = UsageFilter(date(2024, 3, 1), date(2024, 3, 2))


def test_kpis_match_hand_computed_totals(log: UsageLog) -> None:
    report = kpis(log, MARCH_1_2, PRICING, now=NOW)
    cur = report.current
    assert cur.sessions == 4
    assert cur.total_minutes == pytest.approx((90 + 20 + 600 + 300) / 60)
    assert cur.credits == pytest.approx(0.3 + 0.1 + 2.0)
    assert cur.cost == pytest.approx(2.4 * 0.99)
    assert cur.avg_duration_s == pytest.approx(252.5)
    assert cur.p95_duration_s == 600
    assert cur.open_sessions == 0
    prev = report.previous
    assert (prev.sessions, prev.total_minutes) == (1, pytest.approx(2.0))
    assert prev.credits == pytest.approx(0.4)
    assert report.change("credits") == pytest.approx((2.4 - 0.4) / 0.4)


def test_local_sessions_cost_nothing_unless_estimated(log: UsageLog) -> None:
    estimated = kpis(log, MARCH_1_2, PRICING, include_local_estimate=True, now=NOW).current
    assert estimated.credits == pytest.approx(3.4)
    local_only = UsageFilter(date(2024, 3, 1), date(2024, 3, 2), providers=("local",))
    assert kpis(log, local_only, PRICING, now=NOW).current.credits == 0.0


@pytest.mark.parametrize(
    ("flt", "sessions", "credits"),
    [
        (UsageFilter(providers=("heygen",), avatars=("anna",)), 3, 0.3 + 2.0 + 0.15),
        (UsageFilter(qualities=("high",)), 4, 0.3 + 0.4 + 0.15),
        (UsageFilter(date(2024, 3, 3), date(2024, 3, 3)), 1, 0.15),
        (UsageFilter(date(2024, 3, 1), date(2024, 3, 1), avatars=("bob",)), 1, 0.1),
        (UsageFilter(avatars=("nobody",)), 0, 0.0),
    ],
)
def test_filters_restrict_the_totals(log: UsageLog, flt: UsageFilter, sessions: int, credits: float) -> None:
    cur = kpis(log, flt, PRICING, now=NOW).current
    assert cur.sessions == sessions
    assert cur.credits == pytest.approx(credits)
    if sessions == 0:
        assert cur.p95_duration_s is None and cur.avg_duration_s is None


def test_open_session_counts_until_last_seen_or_now(usage_target: str) -> None:
    with UsageLog(usage_target) as usage:
        usage.open_session("never-heard", "heygen", created_at=NOW - 120)
        cur = kpis(usage, UsageFilter(), PRICING, now=NOW).current
        assert (cur.open_sessions, cur.total_minutes) == (1, pytest.approx(2.0))


def test_minutes_per_day_by_avatar_and_provider(log: UsageLog) -> None:
    df = minutes_per_day(log, MARCH_1_2, PRICING, by="avatar", now=NOW)
    rows = zip(df["day"], df["avatar"], df["minutes"], strict=True)
    got = {(d.date().isoformat(), a): m for d, a, m in rows}
    assert got == {
        ("2024-03-01", "anna"): pytest.approx(1.5),
        ("2024-03-01", "bob"): pytest.approx(20 / 60),
        ("2024-03-02", "anna"): pytest.approx(15.0),
    }
    by_provider = minutes_per_day(log, MARCH_1_2, PRICING, by="provider", now=NOW)
    march_2 = by_provider[by_provider["day"] == "2024-03-02"].set_index("provider")
    assert march_2.loc["heygen", "credits"] == pytest.approx(2.0)
    assert march_2.loc["local", "credits"] == 0.0
    assert march_2.loc["local", "minutes"] == pytest.approx(5.0)
    assert df["cost"].sum() == pytest.approx(2.4 * 0.99)


def test_days_follow_the_chosen_time_zone(log: UsageLog) -> None:
    # s3 starts 23:30 UTC on 2 March = 00:30 on 3 March in Paris (UTC+1).
    flt = UsageFilter(date(2024, 3, 1), date(2024, 3, 3), tz="Europe/Paris")
    df = minutes_per_day(log, flt, PRICING, by="quality", now=NOW)
    low = df[df["quality"] == "low"].set_index("day")["minutes"]
    assert low.to_dict() == {
        pd.Timestamp("2024-03-01"): pytest.approx(20 / 60),
        pd.Timestamp("2024-03-03"): 10.0,
    }


def test_day_and_hour_are_exact_across_a_dst_change(usage_target: str) -> None:
    paris = ZoneInfo("Europe/Paris")
    with UsageLog(usage_target) as usage:
        # Clocks go forward at 01:00 UTC on 31 March 2024: 00:30 UTC is 01:30 CET, 22:30 UTC is 00:30 CEST.
        usage.open_session("before", "heygen", created_at=utc(2024, 3, 31, 0, 30))
        usage.close_session("before", EndReason.STOPPED, at=utc(2024, 3, 31, 0, 31))
        usage.open_session("after", "heygen", created_at=utc(2024, 3, 31, 22, 30))
        usage.close_session("after", EndReason.STOPPED, at=utc(2024, 3, 31, 22, 32))
        flt = UsageFilter(date(2024, 3, 30), date(2024, 4, 1), tz="Europe/Paris")
        days = minutes_per_day(usage, flt, PRICING, by="provider")
        assert list(days["day"].dt.date) == [date(2024, 3, 31), date(2024, 4, 1)]
        hours = sessions_by_hour(usage, flt).set_index("hour")["sessions"]
        assert (hours[1], hours[0], hours.sum()) == (1, 1, 2)
        assert datetime.fromtimestamp(utc(2024, 3, 31, 22, 30), paris).hour == 0


def test_month_boundary_depends_on_the_time_zone(usage_target: str) -> None:
    new_york = ZoneInfo("America/New_York")
    late = datetime(2024, 1, 31, 23, 50, tzinfo=new_york)  # 04:50 UTC on 1 February
    with UsageLog(usage_target) as usage:
        usage.open_session("late", "heygen", created_at=late)
        usage.close_session("late", EndReason.STOPPED, at=late.timestamp() + 90)
        jan_ny = UsageFilter.month(2024, 1, tz="America/New_York")
        assert jan_ny.bounds() == (utc(2024, 1, 1, 5), utc(2024, 2, 1, 5))
        assert kpis(usage, jan_ny, PRICING).current.credits == pytest.approx(0.3)
        assert kpis(usage, UsageFilter.month(2024, 1), PRICING).current.sessions == 0
        assert kpis(usage, UsageFilter.month(2024, 2), PRICING).current.sessions == 1
        ny = cumulative_credits(
            usage, date(2024, 1, 1), PRICING, flt=UsageFilter(tz="America/New_York"), today=date(2024, 2, 10)
        )
        assert ny["credits"].iloc[30] == pytest.approx(0.3) and ny["credits"].iloc[:30].sum() == 0
        feb = cumulative_credits(usage, date(2024, 2, 1), PRICING, today=date(2024, 2, 10))
        assert len(feb) == 29 and feb["credits"].iloc[0] == pytest.approx(0.3)


def test_duration_distribution_counts_every_bin(log: UsageLog) -> None:
    df = duration_distribution(log, MARCH_1_2, bins=[0, 30, 60, 120, 300, 600, 1200])
    assert list(df["sessions"]) == [1, 0, 1, 0, 1, 1, 0]  # 20 s, 90 s, 300 s, 600 s
    assert list(df["bin"])[-1] == "≥ 20 min"
    with pytest.raises(ValueError):
        duration_distribution(log, MARCH_1_2, bins=[60, 30])


def test_sessions_by_hour_has_all_hours(log: UsageLog) -> None:
    df = sessions_by_hour(log, MARCH_1_2, now=NOW)
    assert list(df["hour"]) == list(range(24))
    assert {h: n for h, n in zip(df["hour"], df["sessions"], strict=True) if n} == {9: 1, 10: 1, 12: 1, 23: 1}


def test_sessions_table_newest_first_with_counts(log: UsageLog) -> None:
    table = sessions_table(log, UsageFilter(), PRICING, limit=3, now=NOW)
    assert list(table["session_id"]) == ["s6", "s3", "s4"]
    assert list(table["status"]) == ["open", "closed", "closed"]
    full = sessions_table(log, UsageFilter(), PRICING, now=NOW).set_index("session_id")
    assert (full.loc["s1", "tasks"], full.loc["s1", "events"]) == (2, 4)  # created, 2 tasks, closed
    assert full.loc["s2", "credits"] == pytest.approx(0.1)
    assert full.loc["s6", "duration_s"] == 45
    assert str(full["created"].dt.tz) == "UTC"


def test_csv_export_round_trips_the_totals(log: UsageLog) -> None:
    data = sessions_csv(log, MARCH_1_2, PRICING, now=NOW)
    df = pd.read_csv(io.BytesIO(data))
    assert sorted(df["session_id"]) == ["s1", "s2", "s3", "s4"]
    assert df["credits"].sum() == pytest.approx(2.4)
    s3 = df.set_index("session_id").loc["s3"]
    assert (s3["created"], s3["ended"]) == ("2024-03-02T23:30:00+00:00", "2024-03-02T23:40:00+00:00")
    table = sessions_table(log, MARCH_1_2, PRICING, now=NOW)
    assert list(df.columns) == list(table.columns)
    assert list(df["tasks"]) == list(table["tasks"]) and list(df["events"]) == list(table["events"])
    assert list(df["duration_s"]) == pytest.approx(list(table["duration_s"]))


@pytest.mark.parametrize(
    ("tz", "created"),
    [
        ("America/New_York", "2024-03-02T18:30:00-05:00"),
        ("America/St_Johns", "2024-03-02T20:00:00-03:30"),
        ("Asia/Kolkata", "2024-03-03T05:00:00+05:30"),
    ],
)
def test_csv_times_carry_the_local_offset(log: UsageLog, tz: str, created: str) -> None:
    flt = UsageFilter(providers=("heygen",), avatars=("anna",), qualities=("low",), tz=tz)
    df = pd.read_csv(io.BytesIO(sessions_csv(log, flt, PRICING, now=NOW)))
    assert list(df["created"]) == [created]
    open_row = pd.read_csv(
        io.BytesIO(sessions_csv(log, UsageFilter(date(2024, 3, 3), date(2024, 3, 3)), PRICING, now=NOW))
    )
    assert open_row["ended"].isna().all() and list(open_row["status"]) == ["open"]


def test_project_month_on_a_known_series() -> None:
    daily = pd.Series([1.0, 2.0, 3.0], index=[1, 2, 3])
    projected = project_month(daily, month_days=30, today=3)
    assert np.isnan(projected[1]) and np.isnan(projected[2])
    assert projected[3] == 6.0
    assert projected[4] == 8.0
    assert projected[30] == 60.0  # 6 credits in 3 days → 2 a day
    assert project_month(pd.Series([3.0], index=[1]), 30, today=3)[30] == pytest.approx(30.0)
    assert project_month(daily, 30, today=0).isna().all()
    assert project_month(daily, 30, today=31).isna().all()


def test_cumulative_credits_with_budget_and_projection(log: UsageLog) -> None:
    df = cumulative_credits(log, date(2024, 3, 15), PRICING, today=date(2024, 3, 3), now=NOW)
    assert len(df) == 31
    assert list(df["credits"].iloc[:3]) == pytest.approx([0.4, 2.0, 0.15])
    assert df["cumulative"].iloc[2] == pytest.approx(2.55)
    assert df["cumulative"].iloc[3:].isna().all()
    assert df["projected"].iloc[-1] == pytest.approx(2.55 + 0.85 * 28)
    assert (df["budget"] == 100).all()
    past = cumulative_credits(log, date(2024, 2, 1), PRICING, today=date(2024, 3, 3), now=NOW)
    assert past["cumulative"].iloc[-1] == pytest.approx(0.4) and past["projected"].isna().all()


def test_csv_export_neutralises_cells_a_spreadsheet_would_run_as_formulas(log: UsageLog) -> None:
    log.import_history(
        [
            {"session_id": "=1+2", "created_at": NOW - 3600, "duration": 60, "avatar_id": '=HYPERLINK("http://x")'},
            {"session_id": "plain", "created_at": NOW - 3600, "duration": 60, "avatar_id": "@SUM(A1)", "voice": "+1"},
            {"session_id": "-dash", "created_at": NOW - 3600, "duration": 60, "avatar_id": "\tcmd", "voice": "-2"},
        ]
    )
    rows = list(csv.DictReader(io.StringIO(sessions_csv(log, UsageFilter(), PRICING, now=NOW).decode())))
    by_id = {r["session_id"]: r for r in rows}
    assert by_id["'=1+2"]["avatar_id"] == '\'=HYPERLINK("http://x")'
    assert (by_id["plain"]["avatar_id"], by_id["plain"]["voice_id"]) == ("'@SUM(A1)", "'+1")
    assert (by_id["'-dash"]["avatar_id"], by_id["'-dash"]["voice_id"]) == ("'\tcmd", "'-2")
    # Nothing else changes: numbers stay numbers, times keep their sign-bearing offset.
    assert all(not r["credits"].startswith("'") and not r["created"].startswith("'") for r in rows)


def test_billed_credits_win_over_the_estimate_and_far_estimates_are_flagged(usage_target: str) -> None:
    la = Pricing(PRESETS["liveavatar"], price_per_credit=0.1, monthly_budget_credits=100)
    with UsageLog(usage_target) as usage:
        start = utc(2024, 3, 1, 10, 0)
        for sid, billed, mode in (("close", 3.1, "FULL"), ("far", 4.0, "LITE")):
            usage.open_session(sid, "liveavatar", created_at=start)
            usage.close_session(sid, EndReason.STOPPED, at=start + 90)  # FULL 3.0, LITE 1.5 by the book
            usage.import_provider_history([HistoryRow(sid, start, 90, mode=mode, billed_credits=billed)], "liveavatar")
        usage.open_session("unbilled", "liveavatar", created_at=start)
        usage.close_session("unbilled", EndReason.STOPPED, at=start + 60)  # 2.0 estimated, no bill

        k = kpis(usage, MARCH_1_2, la, now=NOW).current
        table = sessions_table(usage, MARCH_1_2, la).set_index("session_id")
        csv = pd.read_csv(io.BytesIO(sessions_csv(usage, MARCH_1_2, la))).set_index("session_id")

    assert k.credits == pytest.approx(3.1 + 4.0 + 2.0) and k.cost == pytest.approx(0.91)
    assert (k.billed_credits, k.billed_sessions, k.estimated_credits) == (pytest.approx(7.1), 2, pytest.approx(6.5))
    assert table["credits"].to_dict() == pytest.approx({"close": 3.1, "far": 4.0, "unbilled": 2.0})
    assert table["estimate_off"].to_dict() == {"close": False, "far": True, "unbilled": False}
    assert table.loc["far", "est_credits"] == pytest.approx(1.5) and table.loc["far", "mode"] == "LITE"
    assert csv.loc["far", "billed_credits"] == 4.0 and bool(csv.loc["far", "estimate_off"])
    assert pd.isna(csv.loc["unbilled", "billed_credits"])
