"""Script mode on Live chat: the avatar delivers a training script segment by segment."""

from __future__ import annotations

import streamlit as st

from lib.live.controller import LiveChat
from lib.scripts import TERMINAL_STATES, RunnerState, ScriptStore, decode_script
from ui import resources

EXAMPLE_SCRIPT = """Welcome to the safety training. This takes about one minute.

[pause 2s]

First: keep the emergency exits clear at all times.

Second: report any spill right away, even a small one.

That is all for today. Thank you for listening."""


PENDING_SCRIPT_KEY = "pending_script"  # a chat message too long for one task, handed to the Script tab


def _store() -> ScriptStore:
    return ScriptStore(resources.usage_log())


def script_editor() -> str:
    """The script text: typed, uploaded, or loaded from the saved scripts."""
    store = _store()
    names = store.names()
    if names:
        pick, load = st.columns([3, 1], vertical_alignment="bottom")
        chosen = pick.selectbox("Saved scripts", names, key="script_pick")
        if load.button("Load", use_container_width=True):
            st.session_state["script_text"] = store.load(chosen)
    upload = st.file_uploader(
        "Or upload a script (.txt, .md, .yaml)", type=["txt", "md", "yaml", "yml"], key="script_upload"
    )
    if upload is not None and st.session_state.get("script_uploaded") != upload.file_id:
        try:
            st.session_state["script_text"] = decode_script(upload.getvalue())
            st.session_state["script_uploaded"] = upload.file_id
        except ValueError as exc:
            st.error(str(exc))
    if PENDING_SCRIPT_KEY in st.session_state:
        st.session_state["script_text"] = st.session_state.pop(PENDING_SCRIPT_KEY)
    st.session_state.setdefault("script_text", EXAMPLE_SCRIPT)
    text = st.text_area(
        "Script",
        key="script_text",
        height=180,
        help="One segment per paragraph or list item; `[pause 3s]` adds a pause.",
    )
    name_col, save_col = st.columns([3, 1], vertical_alignment="bottom")
    name = name_col.text_input("Save as", key="script_name", placeholder="e.g. Safety training")
    if save_col.button("Save", use_container_width=True, disabled=not name.strip()):
        try:
            store.save(name, text)
            st.toast(f"Saved “{name.strip()}”.", icon=":material/save:")
        except ValueError as exc:
            st.error(str(exc))
    return text


@st.fragment(run_every=0.5)
def script_runner(chat: LiveChat, text: str, pause: float) -> None:
    """Controls and progress together, redrawn twice a second: buttons follow the runner's state."""
    script_controls(chat, text, pause)
    script_progress(chat)


def script_controls(chat: LiveChat, text: str, pause: float) -> None:
    status = chat.script_status()
    state = status.state if status is not None else None
    cols = st.columns(5)
    if cols[0].button(
        "Start" if state in (None, *TERMINAL_STATES) else "Resume",
        disabled=not chat.connected or state is RunnerState.RUNNING,
        use_container_width=True,
    ):
        try:
            chat.script_start(text, pause)
        except (ValueError, RuntimeError) as exc:
            st.error(str(exc))
            return
    if cols[1].button("Pause", disabled=state is not RunnerState.RUNNING, use_container_width=True):
        chat.script_pause()
    if cols[2].button(
        "Skip", disabled=state not in (RunnerState.RUNNING, RunnerState.PAUSED), use_container_width=True
    ):
        chat.script_skip()
    if cols[3].button("Restart", disabled=status is None or not chat.connected, use_container_width=True):
        chat.script_restart()
    if cols[4].button("Stop", disabled=state in (None, *TERMINAL_STATES), use_container_width=True):
        chat.script_stop()


def script_progress(chat: LiveChat) -> None:
    runner = chat.runner
    if runner is None:
        st.caption("Press Start to deliver the script.")
        return
    status = runner.status()
    n, m = status.progress
    label = {
        RunnerState.RUNNING: "pausing after this segment…" if status.pausing else "delivering",
        RunnerState.PAUSED: "paused",
        RunnerState.FINISHED: "finished",
        RunnerState.STOPPED: "stopped",
        RunnerState.FAILED: "failed",
        RunnerState.IDLE: "ready",
    }[status.state]
    st.progress(n / m if status.state is not RunnerState.FINISHED else 1.0, text=f"Segment {n} of {m} · {label}")
    if status.error:
        st.error(status.error)
    for i, segment in enumerate(runner.segments):
        if i == status.current and status.state not in TERMINAL_STATES:
            st.markdown(f":blue-background[**{segment.text}**]")
        else:
            st.caption(segment.text)
