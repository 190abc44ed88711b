"""Usage page (AppTest) on a seeded usage log: KPIs and chart data against hand-computed totals."""

from __future__ import annotations

import calendar
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit import dataframe_util
from streamlit.testing.v1 import AppTest

from lib.engine.launcher import EngineProcess
from lib.heygen import NewSessionRequest, StreamingClient
from lib.usage.credits import PRESETS, Pricing
from lib.usage.store import EndReason, UsageLog
from ui.widgets import fmt_credits

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "views" / "usage.py")
PRICING = Pricing(PRESETS["heygen_current"], price_per_credit=2.0, monthly_budget_credits=10.0)
MARCH = (date(2024, 3, 1), date(2024, 3, 3))


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


# (id, provider, avatar, quality, created, seconds) — heygen_current: 0.2 credits/min, 30 s minimum.
SEED = [
    ("a1", "heygen", "anna", "high", utc(2024, 3, 1, 10, 0), 90),  # 0.3 credits
    ("a2", "heygen", "bob", "low", utc(2024, 3, 1, 12, 0), 20),  # 0.1 (30 s minimum)
    ("a3", "heygen", "anna", "low", utc(2024, 3, 2, 23, 30), 600),  # 2.0
    ("a4", "local", "anna", "high", utc(2024, 3, 2, 9, 0), 300),  # local: 0 credits
    ("a5", "heygen", "bob", "high", utc(2024, 2, 29, 8, 0), 120),  # 0.4, in the previous period
]


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The app's settings point at a fresh log; no engine is started (the usage page needs none)."""
    path = tmp_path / "usage.db"
    monkeypatch.setenv("AVATAR_OPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("USAGE_DB_PATH", str(path))
    monkeypatch.setenv("AVATAR_PROVIDER", "local")
    monkeypatch.setenv("ENGINE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ENGINE_API_KEY", "test-key-not-used")
    monkeypatch.delenv("HEYGEN_API_KEY", raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield path
    st.cache_resource.clear()
    st.cache_data.clear()


def seed(path: Path, rows: list[tuple[str, str, str, str, float, float]] = SEED) -> None:
    with UsageLog(path) as log:
        log.save_pricing(PRICING)
        for sid, provider, avatar, quality, created, seconds in rows:
            log.open_session(sid, provider, avatar, "joe", quality, "VP8", created_at=created)
            log.close_session(sid, EndReason.STOPPED, at=created + seconds)


def run_page(dates: tuple[date, date] | None = MARCH) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=30).run()
    if dates is not None:
        at.date_input(key="usage_dates").set_value(dates).run()
    assert not at.exception, at.exception
    return at


def metrics(at: AppTest) -> dict[str, tuple[str, str | None]]:
    return {m.label: (m.value, m.delta) for m in at.metric}


def charts(at: AppTest) -> list[tuple[dict, pd.DataFrame]]:
    """Each Altair chart's Vega-Lite spec and the data Streamlit sent with it."""
    out = []
    for element in at.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        data = {d.name: dataframe_util.convert_arrow_bytes_to_pandas_df(d.data.data) for d in element.proto.datasets}
        out.append((spec, data[spec["data"]["name"]]))
    return out


def test_kpis_equal_hand_computed_totals(db: Path) -> None:
    seed(db)
    at = run_page()

    m = metrics(at)
    assert m["Sessions"] == ("4", "+300%")  # a1..a4; the previous period (Feb 27–29) has a5 only
    assert m["Total minutes"][0] == "16.8"  # (90 + 20 + 600 + 300) / 60
    assert m["Est. credits"] == ("2.40", "+500%")  # 0.3 + 0.1 + 2.0 (local is free) vs 0.4
    assert m["Est. cost"][0] == "$4.80"  # 2.40 × $2
    assert m["Avg duration"][0] == "4 min 12 s"  # 1010 / 4 = 252.5 s
    assert m["p95 duration"][0] == "10 min 00 s"  # nearest rank: the 4th of 4
    assert m["Budget used"] == ("24.0%", "+20.0 pts")  # 2.4 of 10 credits, vs 0.4


def test_provider_filter_changes_kpis_and_chart_data(db: Path) -> None:
    seed(db)
    at = run_page()
    at.multiselect[0].set_value(["heygen"]).run()

    m = metrics(at)
    assert m["Sessions"][0] == "3"
    assert m["Total minutes"][0] == "11.8"  # 710 s
    per_day = charts(at)[0][1]
    assert set(per_day["avatar"]) == {"anna", "bob"}
    assert per_day["minutes"].sum() == pytest.approx(710 / 60)


def test_chart_data_matches_the_log(db: Path) -> None:
    seed(db)
    at = run_page()

    (per_day_spec, per_day), (_, durations), (_, budget), (_, hours) = charts(at)
    assert per_day_spec["encoding"]["color"]["field"] == "avatar"
    got = {
        (d.strftime("%m-%d"), a): round(v, 4)
        for d, a, v in per_day[["day", "avatar", "minutes"]].itertuples(index=False)
    }
    assert got == {("03-01", "anna"): 1.5, ("03-01", "bob"): round(20 / 60, 4), ("03-02", "anna"): 15.0}

    assert dict(zip(durations["bin"], durations["sessions"], strict=True)) == {
        "0 s – 30 s": 1,
        "30 s – 1 min": 0,
        "1 min – 2 min": 1,
        "2 min – 5 min": 0,
        "5 min – 10 min": 1,
        "10 min – 20 min": 1,
        "20 min – 30 min": 0,
        "30 min – 60 min": 0,
        "≥ 60 min": 0,
    }
    assert hours.set_index("hour")["sessions"].to_dict() == {h: int(h in (9, 10, 12, 23)) for h in range(24)}

    used = budget[budget["series"] == "Used"].set_index("day")["credits"]
    assert len(used) == 31 and used.iloc[-1] == pytest.approx(2.4)  # March is over: actual line to the end
    assert used.loc[pd.Timestamp("2024-03-01")] == pytest.approx(0.4)
    assert set(budget.loc[budget["series"] == "Budget", "credits"]) == {10.0}
    assert "Projected" not in set(budget["series"])  # nothing left to project in a past month


def test_stack_selector_regroups_minutes_per_day(db: Path) -> None:
    seed(db)
    at = run_page()
    at.radio(key="usage_by").set_value("quality").run()

    spec, per_day = charts(at)[0]
    assert spec["encoding"]["color"]["field"] == "quality"
    assert per_day.groupby("quality")["minutes"].sum().round(4).to_dict() == {
        "high": round(390 / 60, 4),
        "low": round(620 / 60, 4),
    }


def test_minutes_per_day_spans_the_chosen_dates(db: Path) -> None:
    """One day of data is one narrow bar in the period, not one bar across the whole chart."""
    seed(db)
    at = run_page()
    spec, per_day = charts(at)[0]
    # Up to a month, a band per day with its label under its own bar (on a time axis the labels sat at midnight,
    # between two bars, and today's bar read as tomorrow's).
    assert spec["encoding"]["x"]["scale"]["domain"] == ["Mar 01", "Mar 02", "Mar 03"]
    by_label = per_day.groupby("day_label")["minutes"].sum()
    by_day = per_day.groupby(pd.to_datetime(per_day["day"]).dt.strftime("%b %d"))["minutes"].sum()
    assert by_label.to_dict() == by_day.to_dict() and set(by_label.index) <= {"Mar 01", "Mar 02", "Mar 03"}
    durations, _ = charts(at)[1]
    assert durations["encoding"]["y"]["axis"]["tickMinStep"] == 1  # whole sessions: no 0.2, 0.4 … ticks
    # Over longer periods a time axis spans them.
    at = run_page((MARCH[0], MARCH[0] + timedelta(days=59)))
    spec, _ = charts(at)[0]
    day_after = MARCH[0] + timedelta(days=60)
    assert spec["encoding"]["x"]["scale"]["domain"] == [f"{MARCH[0]}T00:00:00", f"{day_after}T00:00:00"]


def test_local_estimate_toggle_prices_local_sessions(db: Path) -> None:
    seed(db)
    at = run_page()
    at.toggle[0].set_value(True).run()
    assert metrics(at)["Est. credits"][0] == "3.40"  # + a4: 300 s at 0.2/min = 1.0


def test_budget_projection_on_a_known_series(db: Path) -> None:
    today = datetime.now(UTC).date()
    first = today.replace(day=1)
    start = datetime(first.year, first.month, 1, 0, 10, tzinfo=UTC).timestamp()
    seed(db, [("m1", "heygen", "anna", "low", start, 600), ("m2", "heygen", "bob", "low", start + 900, 600)])
    at = run_page(dates=None)  # the default range: this month so far

    so_far = 4.0  # two 10-minute sessions on day 1, 2.0 credits each
    days = calendar.monthrange(today.year, today.month)[1]
    expected = so_far + so_far / today.day * (days - today.day)
    caption = next(c.value for c in at.caption if c.value.startswith("Projected to month end"))
    assert f"**{fmt_credits(expected)} credits**" in caption
    assert f"({expected / 10:.0%} of the budget" in caption
    budget = charts(at)[2][1]
    projected = budget[budget["series"] == "Projected"].set_index("day")["credits"]
    assert projected.index.min() == pd.Timestamp(today) and projected.iloc[-1] == pytest.approx(expected)
    assert projected.iloc[0] == pytest.approx(so_far)


def test_empty_log_shows_a_hint_and_no_charts(db: Path) -> None:
    at = run_page(dates=None)
    assert metrics(at)["Sessions"][0] == "0"
    assert any("usage log is empty" in i.value for i in at.info)
    assert charts(at) == [] and len(at.dataframe) == 0


def test_no_matching_sessions_says_so(db: Path) -> None:
    seed(db)
    at = run_page(dates=(date(2020, 1, 1), date(2020, 1, 31)))
    assert any("No sessions match" in i.value for i in at.info)
    assert charts(at) == []


def test_pricing_is_saved_in_the_log_and_survives_a_restart(db: Path) -> None:
    seed(db)
    at = run_page()
    at.number_input[0].set_value(3.0)
    at.number_input[1].set_value(50.0)
    at.button[0].click().run()  # the form's "Save pricing"

    with UsageLog(db) as log:
        saved = log.load_pricing(Pricing())
    assert (saved.price_per_credit, saved.monthly_budget_credits) == (3.0, 50.0)
    st.cache_resource.clear()
    st.cache_data.clear()
    again = run_page()
    assert metrics(again)["Est. cost"][0] == "$7.20"  # 2.40 credits × $3
    assert metrics(again)["Budget used"][0] == "4.8%"


def test_sessions_table_and_csv_download(db: Path) -> None:
    seed(db)
    at = run_page()
    table = at.dataframe[0].value
    assert list(table["session_id"]) == ["a3", "a4", "a2", "a1"]  # newest first, only the filter's dates
    assert table["credits"].sum() == pytest.approx(2.4)
    assert [b.proto.label for b in at.get("download_button")] == ["Download CSV"]


def test_routed_through_the_app(db: Path) -> None:
    seed(db)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    at.switch_page("views/usage.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Usage"
    assert "Sessions" in metrics(at)


def test_heygen_history_import_adds_sessions_once(
    db: Path, engine: EngineProcess, client: StreamingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The local engine serves the same /v2/streaming.list as HeyGen: it stands in for HeyGen here.
    monkeypatch.setenv("AVATAR_PROVIDER", "heygen")
    monkeypatch.setenv("HEYGEN_API_KEY", engine.api_key.reveal())
    monkeypatch.setenv("HEYGEN_BASE_URL", engine.url)
    st.cache_resource.clear()
    sid = client.new(NewSessionRequest(quality="low")).session_id
    client.stop(sid)
    today = datetime.now(UTC).date()

    at = run_page(dates=(today, today))
    at.expander[-1].button[0].click().run()
    assert not at.exception, at.exception
    assert any("Imported" in s.value for s in at.success)
    with UsageLog(db) as log:
        row = log.get_session(sid)
    assert row is not None and row.provider == "heygen" and row.end_reason == EndReason.IMPORTED
    assert not row.started_by_dashboard
    assert table_ids(at) and sid in table_ids(at)  # caches were cleared: the new session shows at once

    at.expander[-1].button[0].click().run()
    assert any("Imported 0 new sessions" in s.value for s in at.success)
    st.cache_resource.clear()


def table_ids(at: AppTest) -> list[str]:
    return list(at.dataframe[0].value["session_id"]) if len(at.dataframe) else []
