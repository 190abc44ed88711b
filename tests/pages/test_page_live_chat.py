"""Live chat page (AppTest): settings come from the provider; HeyGen down offers the local engine."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from lib.engine.launcher import EngineProcess, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_webrtc_component(monkeypatch):
    # AppTest has no browser session for the WebRTC component (documented streamlit-webrtc limitation).
    monkeypatch.setattr("streamlit_webrtc.component.get_this_session_info", lambda: None)
    monkeypatch.setattr("streamlit_webrtc.shutdown.get_this_session_info", lambda: None)


@pytest.fixture
def env(monkeypatch, tmp_path, engine: EngineProcess):
    monkeypatch.setenv("AVATAR_OPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ENGINE_URL", engine.url)
    monkeypatch.setenv("ENGINE_API_KEY", engine.api_key.reveal())
    st.cache_resource.clear()
    st.cache_data.clear()
    yield monkeypatch
    st.cache_resource.clear()
    st.cache_data.clear()


def test_live_chat_offers_the_providers_avatars_and_voices(env, client):
    env.setenv("AVATAR_PROVIDER", "local")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    assert not at.exception, at.exception
    avatar_box = at.selectbox(key="avatar_id")
    assert list(avatar_box.options) == [a.pose_name for a in client.avatars()]
    assert len(at.selectbox(key="voice_id").options) == len(client.voices())
    assert "Local engine" in " ".join(m.value for m in at.sidebar.markdown)


def test_heygen_down_offers_the_local_engine(env):
    env.setenv("AVATAR_PROVIDER", "heygen")
    env.setenv("HEYGEN_API_KEY", "hg-secret-key-that-must-not-show-0001")
    env.setenv("HEYGEN_BASE_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens: HeyGen is "down"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    errors = " ".join(e.value for e in at.error)
    assert "unreachable" in errors.lower() or "could not" in errors.lower(), errors
    assert "hg-secret-key" not in errors
    fallback = next(b for b in at.button if b.label == "Continue on the local engine")
    at = fallback.click().run()
    assert not at.exception, at.exception
    assert len(at.selectbox(key="avatar_id").options) >= 4  # the local engine's avatars
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "fallback" in captions
    back = next(b for b in at.sidebar.button if b.label == "Back to HeyGen")
    at = back.click().run()
    assert not any(b.label == "Back to HeyGen" for b in at.sidebar.button)


def test_the_page_forwards_the_components_reports_and_a_passing_state_ends_nothing(env, client, tmp_path):
    """The video component is replaced by its reports: START's passing states start one session and end none;
    the component's stop after playing ends it as the user's stop."""
    from lib.live.controller import ComponentState
    from lib.usage.store import UsageLog
    from tests.support.browser import wait_for

    env.setenv("AVATAR_PROVIDER", "local")
    report = [ComponentState(False, False)]
    env.setattr("ui.live.video", lambda chat, **_: report[0])
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    assert not at.exception, at.exception
    for state in [(False, True), (False, False), (False, True), (True, False)]:
        report[0] = ComponentState(*state)
        at.run()
    sessions = wait_for(client.list, timeout=15)
    assert len(sessions) == 1, sessions
    # Runs while it connects: the chat box is enabled once the page is drawn from the connected session.
    assert wait_for(lambda: not at.run().chat_input[0].disabled, timeout=20)
    assert [s.session_id for s in client.list()] == [sessions[0].session_id]
    report[0] = ComponentState(False, False)  # the user pressed the video's STOP
    at.run()
    assert wait_for(lambda: not client.list(), timeout=15), client.list()
    with UsageLog(tmp_path / "usage.db") as log:
        row = log.get_session(sessions[0].session_id)
    assert row is not None and row.end_reason == "stopped"


def test_the_users_words_are_shown_as_typed_not_as_markdown(env, client):
    """`**bold**`, a link and a right-to-left override in a message: the conversation shows the characters
    typed (Markdown escaped), and the override that would flip the line is gone."""
    from lib.live.controller import ComponentState
    from tests.support.browser import wait_for

    env.setenv("AVATAR_PROVIDER", "local")
    report = [ComponentState(False, False)]
    env.setattr("ui.live.video", lambda chat, **_: report[0])
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    for state in [(False, True), (True, False)]:
        report[0] = ComponentState(*state)
        at.run()
    assert wait_for(lambda: not at.run().chat_input[0].disabled, timeout=20)
    at.radio(key="task_type").set_value("repeat")
    at.chat_input[0].set_value("say **bold** [here](http://example.com) \u202eabc").run()

    def user_line() -> str | None:
        return next((m.value for m in at.run().markdown if "bold" in m.value), None)

    shown = wait_for(user_line, timeout=20)
    assert shown is not None
    assert "\\*\\*bold\\*\\*" in shown and "\\[here\\]\\(http" in shown, shown
    assert "\u202e" not in shown
    # Too long for one message: nothing is sent, the page says where the text went (the chat box's callback).
    from lib.scripts import MAX_SEGMENT_CHARS

    at.chat_input[0].set_value("word " * (MAX_SEGMENT_CHARS // 5 + 1)).run()
    assert any("waiting in the **Script** tab" in e.value for e in at.error), [e.value for e in at.error]
    at.run()
    assert any("Script** tab" in e.value for e in at.error)  # still there when the panel redraws
    at.chat_input[0].set_value("a short one").run()
    assert not any("Script** tab" in e.value for e in at.error)  # the next message clears it
    report[0] = ComponentState(False, False)
    at.run()
    assert wait_for(lambda: not client.list(), timeout=15), client.list()


def test_the_session_starts_from_the_offer_even_when_drawing_the_component_ends_the_run(env, client):
    """On START streamlit-webrtc answers the offer and reruns at once, ending the run at the component: the page
    reads the offer before drawing it, so the session sets up while the browser connects (issue 15)."""
    from lib.live.controller import ComponentState
    from tests.support.browser import wait_for

    env.setenv("AVATAR_PROVIDER", "local")
    offered = [None]

    def video_that_ends_the_run(chat, **_):
        st.stop()  # as the library's st.rerun() to send its SDP answer: nothing after it runs

    env.setattr("ui.live.reported_before_drawing", lambda **_: offered[0])
    env.setattr("ui.live.video", video_that_ends_the_run)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    assert not at.exception, at.exception
    assert client.list() == []
    offered[0] = ComponentState(playing=False, signalling=True)
    at.run()
    sessions = wait_for(client.list, timeout=15)
    assert len(sessions) == 1, sessions
    at.run()  # the offer is still reported: one claim, no second session
    assert [s.session_id for s in client.list()] == [sessions[0].session_id]
    st.cache_resource.clear()  # the tab's session ends: its live chat is released
    assert wait_for(lambda: not client.list(), timeout=15), client.list()


def test_an_offer_left_from_before_the_user_left_the_page_starts_nothing(env, client):
    """Back on Live chat after another page, the library's context still holds the last visit's state until the
    component is drawn (its orphan check resets it): read early, that must not start a session."""
    from lib.live.controller import ComponentState
    from tests.support.browser import wait_for
    from ui.live import LEFT_PAGE_KEY

    env.setenv("AVATAR_PROVIDER", "local")
    env.setattr("ui.live.video", lambda chat, **_: ComponentState(False, False))

    class StaleContext:
        state = ComponentState(playing=False, signalling=True)  # left while the video was connecting

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.session_state["avatar-stream"] = StaleContext()
    at.session_state[LEFT_PAGE_KEY] = True
    at.run()
    assert not at.exception, at.exception
    assert not wait_for(client.list, timeout=5)  # a session would show within 1-2 s (the test above)
