"""The video component's orphan check (streamlit-webrtc 0.79) against Streamlit's run counter, and our guard.

Streamlit advances ``script_run_count`` on its event loop when a finished run is sent; on a loaded machine
the next run can start first, so two runs read the same count and the count then jumps by two. The library
takes that jump for "not drawn for a run" and tears the component's media down: the START race of issue 12.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import streamlit as st
from streamlit_webrtc import component
from streamlit_webrtc.component import WebRtcStreamerState

from ui import live

KEY = "avatar-stream"


@pytest.fixture
def run_count(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    info = SimpleNamespace(script_run_count=4)
    monkeypatch.setattr(component, "get_this_session_info", lambda: info)
    st.session_state.clear()
    yield info
    st.session_state.clear()


def playing_component() -> object:
    context = component._get_or_create_context(KEY)
    context._set_state(WebRtcStreamerState(playing=True, signalling=False))
    return context


def test_the_librarys_check_resets_a_playing_component_when_the_run_count_jumps(run_count: SimpleNamespace) -> None:
    context = playing_component()
    run_count.script_run_count = 6  # drawn at 4 by two runs; both finished-run messages landed afterwards
    assert component._get_or_create_context(KEY) is context
    assert context.state == WebRtcStreamerState(playing=False, signalling=False)  # the race, as the library has it


def test_our_guard_keeps_a_component_drawn_every_run_playing(run_count: SimpleNamespace) -> None:
    context = playing_component()
    run_count.script_run_count = 6
    live.settle_orphan_check(KEY)
    assert component._get_or_create_context(KEY) is context
    assert context.state == WebRtcStreamerState(playing=True, signalling=False)


def test_after_leaving_the_page_the_component_starts_afresh(run_count: SimpleNamespace) -> None:
    context = playing_component()
    st.session_state[live.LEFT_PAGE_KEY] = True  # what leave_page marks
    run_count.script_run_count = 5  # even one run later
    live.settle_orphan_check(KEY)
    component._get_or_create_context(KEY)
    assert context.state == WebRtcStreamerState(playing=False, signalling=False)
    assert live.LEFT_PAGE_KEY not in st.session_state  # only once
