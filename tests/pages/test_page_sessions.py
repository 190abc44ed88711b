"""Sessions page (AppTest) against the real local engine: listing, force stop, reconciliation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Button

from lib.engine.launcher import EngineProcess
from lib.heygen import NewSessionRequest, StreamingClient
from lib.usage.store import EndReason, UsageLog

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "views" / "sessions.py")


def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, key: str) -> Path:
    path = tmp_path / "usage.db"
    monkeypatch.setenv("AVATAR_OPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("USAGE_DB_PATH", str(path))
    monkeypatch.setenv("AVATAR_PROVIDER", "local")
    monkeypatch.setenv("ENGINE_URL", url)
    monkeypatch.setenv("ENGINE_API_KEY", key)
    monkeypatch.delenv("HEYGEN_API_KEY", raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    return path


@pytest.fixture
def db(engine: EngineProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The page talks to the test engine (no second engine is spawned) and a fresh usage log."""
    yield configure(monkeypatch, tmp_path, engine.url, engine.api_key.reveal())
    st.cache_resource.clear()


def run_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=30).run()
    assert not at.exception, at.exception
    return at


def listed(at: AppTest) -> list[str]:
    return list(at.dataframe[0].value["session_id"]) if len(at.dataframe) else []


def button(at: AppTest, label: str) -> Button:
    return next(b for b in at.button if b.label == label)


def test_lists_both_sessions_and_force_stops_only_the_selected_one(db: Path, client: StreamingClient) -> None:
    mine = client.new(NewSessionRequest(quality="low")).session_id
    other = client.new(NewSessionRequest(quality="medium")).session_id
    with UsageLog(db) as log:
        log.open_session(mine, "local", "anna_office", "en_US-joe", "low", "VP8")

    at = run_page()
    table = at.dataframe[0].value.set_index("session_id")
    assert set(table.index) == {mine, other}
    assert table.loc[mine, "started_by"] == "Dashboard"
    assert table.loc[other, "started_by"].startswith("Orphan")
    assert table.loc[other, "quality"] == "medium"  # from the engine's list, not the log
    names = {a.avatar_id: a.pose_name for a in client.avatars()}
    assert table.loc[mine, "avatar"] == names["anna_office"] != "anna_office"  # as Live chat names it
    assert table.loc[mine, "voice"] == next(v.name for v in client.voices() if v.voice_id == "en_US-joe")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Active sessions"] == "2"
    assert metrics["Capacity (units)"] == "3 / 6"  # low = 1 unit, medium = 2

    row = listed(at).index(mine)
    at.session_state[at.dataframe[0].key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    button(at, "Force stop 1 selected").click().run()
    dialog_text = " ".join(m.value for m in at.markdown)
    assert "Stop **1 session**" in dialog_text and "credits" in dialog_text
    button(at, "Force stop 1").click().run()
    assert not at.exception, at.exception

    assert any("1 of 1 stopped" in s.value and mine in s.value for s in at.success)
    assert [s.session_id for s in client.list()] == [other]  # the other keeps running
    assert listed(at) == [other]
    with UsageLog(db) as log:
        row_after = log.get_session(mine)
        assert row_after is not None and row_after.end_reason == EndReason.FORCE_STOPPED
        assert "force_stop" in [kind for _, kind, _ in log.events(mine)]
        assert log.get_session(other) is None  # an orphan enters the log only when it is stopped
    assert {m.label: m.value for m in at.metric}["Force-stopped today"] == "1"


def test_cancel_keeps_the_session_running(db: Path, client: StreamingClient) -> None:
    sid = client.new(NewSessionRequest(quality="low")).session_id
    at = run_page()
    at.session_state[at.dataframe[0].key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    button(at, "Force stop 1 selected").click().run()
    button(at, "Cancel").click().run()
    assert [s.session_id for s in client.list()] == [sid]
    assert "stop_pending" not in at.session_state


def test_session_gone_from_the_provider_is_shown_lost_and_closed_at_its_last_heartbeat(
    db: Path, client: StreamingClient
) -> None:
    created = time.time() - 300
    with UsageLog(db) as log:
        log.open_session("crashed-before", "local", "anna_office", created_at=created)
        log.heartbeat("crashed-before", at=created + 120)

    at = run_page()

    assert any("closed as **lost**" in i.value and "crashed-before" in i.value for i in at.info)
    with UsageLog(db) as log:
        row = log.get_session("crashed-before")
    assert row is not None and row.end_reason == EndReason.LOST
    assert row.ended_at == pytest.approx(created + 120)
    assert listed(at) == []


def test_sessions_of_another_live_engine_sharing_the_log_are_counted_not_closed(
    db: Path, engine: EngineProcess
) -> None:
    with UsageLog(db) as log:
        # Logged by a second dashboard whose engine is up (it answers /healthz): the test engine under another
        # URL stands in for it (at this engine's own URL another key would mean an engine that is gone).
        other = engine.url.replace("127.0.0.1", "localhost") + "#key-other"
        log.open_session("other-dashboards", "local", "anna_office", created_at=time.time() - 60, endpoint=other)

    at = run_page()

    assert any("1 more session(s)" in c.value and "another engine" in c.value for c in at.caption), [
        c.value for c in at.caption
    ]
    assert not any("lost" in i.value for i in at.info)
    with UsageLog(db) as log:
        assert log.get_session("other-dashboards").is_open  # type: ignore[union-attr]


def test_provider_error_is_actionable_and_the_page_stays_usable(
    engine: EngineProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, tmp_path, engine.url, "wrong-key-0123456789")
    try:
        at = run_page()
        (error,) = at.error
        assert "key" in error.value.lower() and "wrong-key-0123456789" not in error.value
        assert at.toggle[0].label == "Auto-refresh"  # the controls are still there
        assert [b.label for b in at.button][:1] == ["Refresh now"]
    finally:
        st.cache_resource.clear()


def test_heygen_concurrency_limit_is_unknown_until_entered_and_then_remembered(
    db: Path, engine: EngineProcess, client: StreamingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The local engine speaks HeyGen's API: it stands in for HeyGen here.
    monkeypatch.setenv("AVATAR_PROVIDER", "heygen")
    monkeypatch.setenv("HEYGEN_API_KEY", engine.api_key.reveal())
    monkeypatch.setenv("HEYGEN_BASE_URL", engine.url)
    st.cache_resource.clear()
    client.new(NewSessionRequest(quality="low"))

    at = run_page()
    capacity = next(m for m in at.metric if m.label.startswith("Capacity"))
    assert (capacity.label, capacity.value) == ("Capacity (sessions)", "1 / no limit set")
    at.number_input(key="concurrency_limit").set_value(3).run()
    assert next(m for m in at.metric if m.label.startswith("Capacity")).value == "1 / 3"

    again = run_page()  # a new browser session reads the saved limit from the usage log
    assert next(m for m in again.metric if m.label.startswith("Capacity")).value == "1 / 3"
