"""Sessions and Usage pages (AppTest) on the LiveAvatar provider, against the engine's LiveAvatar twin over HTTP.

The twin is a real engine started by this module with a seeded history (four ended sessions on
``tests.support.liveavatar.DAY`` with known bills and one transcript); the pages talk to it exactly as they
would talk to api.liveavatar.com: ``AVATAR_PROVIDER=liveavatar``, ``LIVEAVATAR_BASE_URL``, ``LIVEAVATAR_API_KEY``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Button

from lib.engine.launcher import EngineProcess
from lib.liveavatar import SessionListType, SessionMode
from lib.usage.store import EndReason, UsageLog
from tests.support.liveavatar import DAY, ended, la_client, seed_history, start_session, start_twin, stop_all

ROOT = Path(__file__).resolve().parents[2]
SESSIONS = str(ROOT / "views" / "sessions.py")
USAGE = str(ROOT / "views" / "usage.py")

EXACT, OFF, SANDBOX, MINE = (str(uuid.UUID(int=n)) for n in (0xA1, 0xA2, 0xA3, 0xA4))
HISTORY = [
    ended(EXACT, 10, 90, 3.0),  # FULL 90 s = 3 credits: the estimate agrees
    ended(OFF, 20, 120, 4.0, mode=SessionMode.LITE),  # LITE 120 s is 2 credits by the book: billed 4
    ended(SANDBOX, 40, 60, 0.0, sandbox=True),  # free
    ended(MINE, 30, 300, 10.0, words=[("user", "Hello there"), ("avatar", "Hi, I am Anna.")]),
]
BILLED = 17.0


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    history = tmp_path_factory.mktemp("la-pages") / "history.db"
    seed_history(history, HISTORY)
    proc = start_twin(history)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def db(twin: EngineProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "usage.db"
    monkeypatch.setenv("AVATAR_OPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("USAGE_DB_PATH", str(path))
    monkeypatch.setenv("AVATAR_PROVIDER", "liveavatar")
    monkeypatch.setenv("LIVEAVATAR_BASE_URL", twin.url)
    monkeypatch.setenv("LIVEAVATAR_API_KEY", twin.api_key.reveal())
    for name in ("ENGINE_URL", "ENGINE_API_KEY", "HEYGEN_API_KEY", "CREDIT_PRESET", "PRICE_PER_CREDIT"):
        monkeypatch.delenv(name, raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield path
    st.cache_resource.clear()
    st.cache_data.clear()
    stop_all(twin)


def run(page: str) -> AppTest:
    at = AppTest.from_file(page, default_timeout=30).run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, label: str) -> Button:
    return next(b for b in at.button if b.label == label)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def select(at: AppTest, index: int, ids: list[str]) -> None:
    frame = at.dataframe[index]
    rows = [list(frame.value["session_id"]).index(sid) for sid in ids]
    at.session_state[frame.key] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    at.run()


def active_ids(twin: EngineProcess) -> set[str]:
    with la_client(twin) as client:
        return {s.id for s in client.list_sessions(SessionListType.ACTIVE)}


def text(at: AppTest) -> str:
    return " ".join(m.value for m in at.markdown) + " ".join(s.value for s in at.success)


# -- Sessions ---------------------------------------------------------------------------------------


def test_sessions_page_lists_every_session_with_mode_credits_and_burn_rate(db: Path, twin: EngineProcess) -> None:
    with la_client(twin) as client:
        mine, other = start_session(client), start_session(client)
        lite = start_session(client, SessionMode.LITE)
        left_before = float(client.credits_left())
        endpoint = client.endpoint
    ghost = str(uuid.uuid4())
    with UsageLog(db) as log:
        log.open_session(mine, "liveavatar", started_by_dashboard=True, endpoint=endpoint)
        log.open_session(ghost, "liveavatar", created_at=DAY.timestamp(), endpoint=endpoint)  # gone from the account

    at = run(SESSIONS)
    table = at.dataframe[0].value.set_index("session_id")
    assert set(table.index) == {mine, other, lite}
    assert (table.loc[mine, "started_by"], table.loc[other, "started_by"]) == ("Dashboard", "Orphan ⚠")
    assert (table.loc[mine, "mode"], table.loc[lite, "mode"], table.loc[lite, "source"]) == ("FULL", "LITE", "API")
    assert list(table["credits_per_min"].loc[[mine, other, lite]]) == [2.0, 2.0, 1.0]
    assert not table["sandbox"].any()
    m = metrics(at)
    assert m["Active sessions"] == "3" and m["Credits per minute now"] == "5.00"
    left = float(m["Credits left"].replace(",", ""))
    assert 0 < left <= left_before  # the balance the twin reports, burning
    assert float(m["Minutes left"].replace(",", "")) == pytest.approx(left / 5, abs=1)
    assert any(ghost in i.value and "lost" in i.value for i in at.info)  # reconciled as today
    with UsageLog(db) as log:
        row = log.get_session(ghost)
        assert row is not None and row.end_reason == EndReason.LOST
        assert log.get_session(mine).is_open  # type: ignore[union-attr]


def test_force_stop_of_several_stops_them_on_liveavatar_and_logs_each(db: Path, twin: EngineProcess) -> None:
    with la_client(twin) as client:
        mine, keep, orphan = start_session(client), start_session(client), start_session(client, SessionMode.LITE)
    with UsageLog(db) as log:
        log.open_session(mine, "liveavatar")

    at = run(SESSIONS)
    select(at, 0, [mine, orphan])
    button(at, "Force stop 2 selected").click().run()
    assert "Stop **2 sessions** on LiveAvatar" in text(at)
    button(at, "Force stop 2").click().run()
    assert not at.exception, at.exception

    assert "2 of 2 stopped" in text(at)
    assert active_ids(twin) == {keep}
    with UsageLog(db) as log:
        for sid in (mine, orphan):
            row = log.get_session(sid)
            assert row is not None and row.end_reason == EndReason.FORCE_STOPPED, sid
        row = log.get_session(orphan)
        assert row is not None and row.provider == "liveavatar" and not row.started_by_dashboard


def test_a_session_that_ends_elsewhere_while_confirming_is_not_stopped_again(db: Path, twin: EngineProcess) -> None:
    with la_client(twin) as client:
        sid = start_session(client)
        at = run(SESSIONS)
        select(at, 0, [sid])
        button(at, "Force stop 1 selected").click().run()
        client.stop_session(sid)  # ended elsewhere while the dialog was open
    button(at, "Force stop 1").click().run()

    assert not at.exception and not at.warning, [w.value for w in at.warning]
    assert any("no longer running" in i.value for i in at.info)
    with UsageLog(db) as log:
        assert log.get_session(sid) is None  # nothing was stopped by us, nothing invented in the log


# -- Usage ------------------------------------------------------------------------------------------


def run_usage() -> AppTest:
    at = run(USAGE)
    at.date_input(key="usage_dates").set_value((DAY.date(), DAY.date())).run()
    assert not at.exception, at.exception
    return at


def import_history(at: AppTest) -> AppTest:
    expander = next(e for e in at.expander if e.label.startswith("Import LiveAvatar"))
    expander.button[0].click().run()
    assert not at.exception, at.exception
    return at


def snapshot(db: Path) -> list[tuple]:
    with UsageLog(db) as log, log.read() as conn:
        return conn.execute("SELECT * FROM sessions ORDER BY session_id").fetchall()


def test_history_import_shows_billed_next_to_estimate_and_twice_changes_nothing(db: Path, twin: EngineProcess) -> None:
    with UsageLog(db) as log:  # a session this dashboard ran: its own times, no bill yet
        log.open_session(MINE, "liveavatar", "anna", created_at=DAY.timestamp() + 30 * 60)
        log.close_session(MINE, EndReason.STOPPED, at=DAY.timestamp() + 30 * 60 + 300)

    at = import_history(run_usage())
    assert any("Imported 3 new sessions (1 already in the log" in s.value for s in at.success), text(at)
    table = at.dataframe[0].value.set_index("session_id")
    assert set(table.index) == {EXACT, OFF, SANDBOX, MINE}
    assert table["billed_credits"].to_dict() == {EXACT: 3.0, OFF: 4.0, SANDBOX: 0.0, MINE: 10.0}
    assert table.loc[OFF, "est_credits"] == pytest.approx(2.0)  # LITE: 1 credit/min × 2 min
    assert table.loc[EXACT, "est_credits"] == pytest.approx(3.0)
    assert table["estimate_off"].to_dict() == {EXACT: False, OFF: True, SANDBOX: False, MINE: False}
    assert (table.loc[OFF, "mode"], table.loc[SANDBOX, "is_sandbox"]) == ("LITE", True)
    assert table.loc[MINE, "started_by_dashboard"] and table.loc[MINE, "end_reason"] == "stopped"
    assert table.loc[MINE, "provider_end_reason"] == "USER_CLOSED"
    m = metrics(at)
    assert m["Billed credits"] == "17.00" and m["Credits"] == "17.00"  # billed wins over the 15.00 estimate
    assert m["Budget used"] == f"{BILLED / 100:.1%}"

    before = snapshot(db)
    again = import_history(run_usage())
    assert any("Imported 0 new sessions (4 already in the log)" in s.value for s in again.success), text(again)
    assert snapshot(db) == before


def test_a_sessions_transcript_opens_in_a_dialog_from_the_table(db: Path, twin: EngineProcess) -> None:
    at = import_history(run_usage())
    assert button(at, "Show transcript").disabled  # nothing selected yet
    select(at, 0, [MINE])
    button(at, "Show transcript").click().run()
    assert not at.exception, at.exception
    said = [m.value for m in at.markdown]
    assert "Hello there" in said and "Hi, I am Anna." in said
    assert [c.name for c in at.chat_message] == ["user", "assistant"]


# -- sidebar ----------------------------------------------------------------------------------------


def test_the_sidebar_shows_liveavatar_and_the_sessions_page_routes_through_the_app(
    db: Path, twin: EngineProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Live chat on LiveAvatar draws the video component: AppTest has no browser session for it.
    monkeypatch.setattr("streamlit_webrtc.component.get_this_session_info", lambda: None)
    monkeypatch.setattr("streamlit_webrtc.shutdown.get_this_session_info", lambda: None)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "LiveAvatar" in sidebar and ":green[●]" in sidebar
    assert twin.api_key.reveal() not in sidebar + " ".join(c.value for c in at.sidebar.caption)
    at.switch_page("views/sessions.py").run()
    assert not at.exception, at.exception
    assert "Credits left" in metrics(at)


def test_a_heygen_key_alone_keeps_the_local_engine_and_the_sidebar_points_to_liveavatar(
    engine: EngineProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Live chat page draws the video component: AppTest has no browser session for it.
    monkeypatch.setattr("streamlit_webrtc.component.get_this_session_info", lambda: None)
    monkeypatch.setattr("streamlit_webrtc.shutdown.get_this_session_info", lambda: None)
    monkeypatch.setenv("AVATAR_OPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("USAGE_DB_PATH", str(tmp_path / "usage.db"))
    monkeypatch.setenv("ENGINE_URL", engine.url)
    monkeypatch.setenv("ENGINE_API_KEY", engine.api_key.reveal())
    monkeypatch.setenv("HEYGEN_API_KEY", "hg-key-that-must-not-show-0002")
    for name in ("AVATAR_PROVIDER", "LIVEAVATAR_API_KEY", "LIVEAVATAR_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
        assert not at.exception, at.exception
        assert "Local engine" in " ".join(m.value for m in at.sidebar.markdown)
        captions = " ".join(c.value for c in at.sidebar.caption)
        assert "shut down on 2026-03-31" in captions and "LiveAvatar key: not configured" in captions
        assert "hg-key-that-must-not-show" not in captions
        assert any(e.label == "Use LiveAvatar" for e in at.sidebar.expander)
    finally:
        st.cache_resource.clear()
