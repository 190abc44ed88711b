"""Live chat: start an avatar, watch and hear it live, type to it, interrupt it, stop it."""

from __future__ import annotations

import streamlit as st

from lib.heygen.errors import HeyGenError
from lib.literal_text import literal_markdown
from lib.live.controller import ChatSetup, Encoding, MessageOutcome, PageAction, Quality
from lib.live.status import cap_warning, quality_advice, status_rows
from lib.live.traits import ProviderTraits
from lib.scripts import MAX_SEGMENT_CHARS
from lib.usage.store import EndReason
from ui import live, resources, script_panel
from ui.liveavatar_setup import liveavatar_setup
from ui.script_panel import PENDING_SCRIPT_KEY
from ui.widgets import label_lines

PROMPT_KEY = "chat_prompt"
PROMPT_ERROR_KEY = "chat_prompt_error"

settings = resources.settings()
provider = resources.provider_or_stop()
chat = live.live_chat()
traits = ProviderTraits.of(provider.name)
drawn = chat.view()  # what this run draws from; recorded as drawn only once the whole run got through

st.title("Live chat")
st.caption(
    f"Provider: {provider.label}. Press **START** under the video: the avatar session is created, "
    "connected and shown in one go. It is stopped when you press STOP, leave this page or close the tab."
)

video_col, side_col = st.columns([3, 2], gap="large")

with side_col:
    catalogue = live.catalogue()
    if catalogue is None:
        if chat.offers_local_fallback(provider.name) and st.button(
            "Continue on the local engine", icon=":material/computer:", help="Runs the built-in avatar on this machine."
        ):
            resources.use_local_fallback(True)
            st.rerun()
        st.stop()
    avatar_list, voice_list = catalogue
    locked = chat.live
    quality: Quality | None = None  # LiveAvatar's own quality scale is in la_choice
    encoding: Encoding | None = None
    with st.expander("Avatar, voice and quality", expanded=not locked, icon=":material/tune:"):
        la_choice = None
        if traits.liveavatar:
            la_choice = liveavatar_setup(provider.name, avatar_list, voice_list, locked=locked)
            avatar_id, voice_id, knowledge_base = la_choice.avatar_id, la_choice.voice_id, ""
        else:
            avatar_ids = [a.avatar_id for a in avatar_list]
            labels = {a.avatar_id: a.pose_name or a.avatar_id for a in avatar_list}
            avatar_id = st.selectbox(
                "Avatar", avatar_ids, format_func=lambda a: labels.get(a, a), key="avatar_id", disabled=locked
            )
            chosen = next((a for a in avatar_list if a.avatar_id == avatar_id), None)
            if chosen and chosen.preview_url and (image := live.preview_image(chosen.preview_url)):
                st.image(image, width=180)
            voice_ids = [v.voice_id for v in voice_list]
            voice_labels = {v.voice_id: f"{v.name} · {v.language}" for v in voice_list}
            default_voice = chosen.default_voice if chosen and chosen.default_voice in voice_ids else None
            voice_id = st.selectbox(
                "Voice",
                voice_ids,
                format_func=lambda v: voice_labels.get(v, v),
                disabled=locked,
                index=voice_ids.index(default_voice) if default_voice else 0,
                key="voice_id",
            )
            q_col, e_col = st.columns(2)
            qualities: list[Quality] = ["low", "medium", "high"]
            quality_labels = {"low": "Low · 480p", "medium": "Medium · 720p", "high": "High · 1080p"}
            quality = q_col.selectbox(
                "Quality", qualities, key="quality", disabled=locked, format_func=lambda q: quality_labels[q]
            )
            encodings: list[Encoding] = ["VP8", "H264"]
            encoding = e_col.selectbox("Video encoding", encodings, key="encoding", disabled=locked)
            knowledge_base = st.text_area(
                "Knowledge base",
                key="knowledge_base",
                disabled=locked,
                height=120,
                value=live.SAMPLE_KNOWLEDGE_BASE,
                help="What the avatar answers from when it answers (talk tasks).",
            )
        task_type = st.radio(
            "When you type",
            ["talk", "repeat"],
            horizontal=True,
            key="task_type",
            format_func={"talk": "the avatar answers", "repeat": "the avatar repeats it"}.get,
        )
        max_minutes = st.number_input(
            "Stop the session after (minutes)",
            min_value=0.0,
            max_value=600.0,
            value=float(settings.session_max_minutes),
            step=5.0,
            key="max_minutes",
            disabled=locked,
            help="A cost guard: warns a minute before. 0 = no cap.",
        )

    with st.expander("Voice input", icon=":material/mic:"):
        voice_on = st.toggle(
            "Talk to the avatar with the microphone",
            key="voice_on",
            disabled=locked,
            help="Your words are recognised on this server, offline, and sent as a message. "
            "Choose before pressing START.",
        )
        voice_mode = st.radio(
            "Mode", ["hands-free", "push-to-talk"], horizontal=True, key="voice_mode", disabled=not voice_on
        )
        chat.voice_options(
            barge_in=st.checkbox(
                "Speaking interrupts the avatar (barge-in)", value=True, key="barge_in", disabled=not voice_on
            )
        )

setup = ChatSetup(
    avatar_id,
    voice_id,
    quality or "low",
    encoding or "VP8",
    task_type or "talk",
    knowledge_base,
    max_minutes,
    liveavatar=la_choice,
)

with video_col:
    if not chat.live and (warning := chat.start_warning(setup, traits)):
        st.warning(warning, icon=":material/voice_over_off:")
    listener = chat.voice_listener(live.make_listener) if voice_on else None
    if (early := live.reported_before_drawing(voice_on=voice_on)) is not None and early.signalling:
        chat.component(early, setup)
    reported = live.video(chat, voice_on=voice_on, on_mic=listener.push if listener else None)
    if chat.component(reported, setup) is PageAction.REDRAW:
        st.rerun()  # the component hides START while it is told to stop: draw it again

    b1, b2, b3 = st.columns(3)
    script_mode = st.session_state.get("mode") == "Script"
    if b1.button("Interrupt", icon=":material/front_hand:", disabled=not chat.connected, use_container_width=True):
        try:
            chat.interrupt(script_mode)
        except (HeyGenError, RuntimeError) as exc:
            st.error(str(exc))
    if b2.button(
        "Stop session", icon=":material/stop_circle:", disabled=not chat.live, use_container_width=True, type="primary"
    ):
        chat.stop()
        st.rerun()
    if (
        chat.can_reconnect
        and reported.playing
        and b3.button("Reconnect", icon=":material/refresh:", use_container_width=True)
    ):
        chat.reconnect(setup)
        st.rerun()

    session = chat.session
    if chat.refused and session is None:
        st.error(chat.refused, icon=":material/savings:")
        if st.button("Override the budget for one session (logged)", icon=":material/warning:"):
            chat.override_budget(setup)
            st.rerun()
    if listener is not None and chat.live:
        if voice_mode == "push-to-talk":
            chat.listen(st.toggle("Talking (switch off when you are done)", key="ptt"))
        else:
            chat.listen(True)
            st.caption(
                ":material/mic: Listening: just speak. "
                + ("Speaking while the avatar talks interrupts it." if chat.barge_in else "")
            )
        if listener.error or chat.voice_error:
            st.warning(listener.error or chat.voice_error)
    if session is not None and session.error:
        st.error(session.error)
        if chat.too_many_sessions:
            st.page_link("views/sessions.py", label="Open Sessions to stop running sessions", icon=":material/dns:")
        if chat.offers_local_fallback(provider.name) and st.button(
            "Continue on the local engine",
            icon=":material/computer:",
            help="Runs the built-in avatar on this machine: no key, no credits.",
        ):
            chat.release(EndReason.FALLBACK)
            resources.use_local_fallback(True)
            st.rerun()

    mode = st.segmented_control("Mode", ["Chat", "Script"], default="Chat", key="mode", label_visibility="collapsed")
    if mode == "Script":
        with st.container(border=True):
            script_text = script_panel.script_editor()
            pause = st.number_input("Pause between segments (s)", 0.0, 60.0, 1.0, 0.5, key="script_pause")
            script_panel.script_runner(chat, script_text, pause)
    st.subheader("Conversation", anchor=False)
    conversation = st.container()


def send_typed() -> None:
    """The chat box's callback: it runs as the next page run begins, so the words reach the avatar before the
    page draws anything, not after the whole page (~0.1 s on a loaded machine)."""
    text = st.session_state.get(PROMPT_KEY) or ""
    st.session_state.pop(PROMPT_ERROR_KEY, None)  # about the message before: this one gets its own
    try:
        outcome = chat.message(text)
    except (HeyGenError, RuntimeError) as exc:
        st.session_state[PROMPT_ERROR_KEY] = str(exc)
        return
    if outcome is MessageOutcome.TOO_LONG:
        st.session_state[PENDING_SCRIPT_KEY] = text
        st.session_state[PROMPT_ERROR_KEY] = (
            f"That message has {len(text):,} characters; one message can hold {MAX_SEGMENT_CHARS:,}. "
            "It is waiting in the **Script** tab, which delivers long text piece by piece."
        )


# After every widget that depends on the session's state, before the panels that compare with it: a run cut
# short by a rerun leaves the older view recorded, and the status panel asks for a whole run again.
chat.mark_drawn(drawn)


@st.fragment(run_every=1.0)
def status_panel() -> None:
    current = chat.session
    if current is None:
        st.caption("No avatar session yet.")
        return
    chat.watched()
    if chat.changed_since_drawn():
        st.rerun()  # the whole page depends on the state (buttons, chat input): redraw it
    if (sandbox_left := chat.sandbox_seconds_left()) is not None:
        st.info(f"Sandbox: LiveAvatar ends it in {sandbox_left:.0f} s", icon=":material/hourglass_bottom:")
    if warning := cap_warning(current):
        st.warning(warning, icon=":material/timer:")
    if advice := quality_advice(current):
        st.info(advice, icon=":material/network_check:")
    st.markdown(label_lines(status_rows(current, resources.pricing(), chat.traits, chat.playout.stats)))


@st.fragment(run_every=1.0)
def conversation_panel() -> None:
    """The conversation and the chat box in one fragment: sending a message reruns only this, and the message shows
    at once. A whole-page run made Chromium redraw every element while the engine synthesized the answer's first
    words on the same cores: 0.52 s of browser CPU per message against 0.34 s (bench_browser), and typed → lips
    60-70 ms later."""
    # The chat box right under the video's buttons: below a conversation it was off a 1000 px window once the video
    # played (a new user's walkthrough). The conversation scrolls under it, newest at the bottom.
    # No max_chars: the browser would silently refuse a longer paste; a long text is kept for Script mode instead.
    st.chat_input("Type a message for the avatar", disabled=not chat.connected, key=PROMPT_KEY, on_submit=send_typed)
    if prompt_error := st.session_state.get(PROMPT_ERROR_KEY):  # until the next message: the panel redraws each second
        st.error(prompt_error)
    with st.container(height=300, border=False):
        transcript()


def transcript() -> None:
    current = chat.session
    if current is None:
        st.caption("The conversation shows here.")
        return
    for turn in current.transcript():
        with st.chat_message(
            "user" if turn.role == "user" else "assistant",
            avatar=":material/person:" if turn.role == "user" else ":material/face:",
        ):
            st.markdown(
                literal_markdown(turn.text)
                + ("" if turn.done or turn.role == "user" or not current.live else " …")
                + (" _(interrupted)_" if turn.interrupted else "")
            )
    if hearing := chat.hearing():
        with st.chat_message("user", avatar=":material/mic:"):
            # Whisper ends even unfinished text with a full stop: drop it, the ellipsis says "still talking".
            st.markdown(f"_{literal_markdown(hearing.rstrip(' .'))} …_")
    if current.speaking:
        st.caption(":material/graphic_eq: the avatar is speaking")


with side_col, st.container(border=True):
    st.subheader("Status", anchor=False)
    status_panel()

with conversation:
    conversation_panel()
