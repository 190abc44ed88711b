"""Live chat: start an avatar, watch and hear it live, type to it, interrupt it, stop it."""

from __future__ import annotations

import streamlit as st
from streamlit_webrtc import (
    WebRtcMode,
    create_audio_sink_track,
    create_audio_source_track,
    create_video_source_track,
    webrtc_streamer,
)

from lib.bridge.link import LinkState
from lib.heygen.errors import HeyGenError
from lib.live_status import status_rows
from lib.scripts import MAX_SEGMENT_CHARS
from ui import live, resources, script_panel
from ui.script_panel import PENDING_SCRIPT_KEY

# HeyGen refused or is unreachable: these are worth offering the local engine for.
FALLBACK_ERRORS = {
    "ProviderUnavailable",
    "Unauthorized",
    "NoApiAccess",
    "Forbidden",
    "ConcurrencyLimit",
    "RateLimited",
    "ConnectionError",
    None,
}

settings = resources.settings()
provider = resources.provider_or_stop()
chat = live.live_chat()
link = chat.link

st.title("Live chat")
st.caption(
    f"Provider: {provider.label}. Press **START** under the video: the avatar session is created, "
    "connected and shown in one go. It is stopped when you press STOP, leave this page or close the tab."
)

video_col, side_col = st.columns([3, 2], gap="large")

with side_col:
    catalogue = live.catalogue()
    if catalogue is None:
        if provider.name == "heygen" and st.button(
            "Continue on the local engine", icon=":material/computer:", help="Runs the built-in avatar on this machine."
        ):
            resources.use_local_fallback(True)
            st.rerun()
        st.stop()
    avatar_list, voice_list = catalogue
    locked = link is not None and link.live
    with st.expander("Avatar, voice and quality", expanded=not locked, icon=":material/tune:"):
        avatar_ids = [a.avatar_id for a in avatar_list]
        labels = {a.avatar_id: a.pose_name or a.avatar_id for a in avatar_list}
        avatar_id = st.selectbox("Avatar", avatar_ids, format_func=labels.get, key="avatar_id", disabled=locked)
        chosen = next((a for a in avatar_list if a.avatar_id == avatar_id), None)
        if chosen and chosen.preview_url and (image := live.preview_image(chosen.preview_url)):
            st.image(image, width=180)
        voice_ids = [v.voice_id for v in voice_list]
        voice_labels = {v.voice_id: f"{v.name} · {v.language}" for v in voice_list}
        default_voice = chosen.default_voice if chosen and chosen.default_voice in voice_ids else None
        voice_id = st.selectbox(
            "Voice",
            voice_ids,
            format_func=voice_labels.get,
            disabled=locked,
            index=voice_ids.index(default_voice) if default_voice else 0,
            key="voice_id",
        )
        q_col, e_col = st.columns(2)
        quality = q_col.selectbox(
            "Quality",
            ["low", "medium", "high"],
            key="quality",
            disabled=locked,
            format_func={"low": "Low · 480p", "medium": "Medium · 720p", "high": "High · 1080p"}.get,
        )
        encoding = e_col.selectbox("Video encoding", ["VP8", "H264"], key="encoding", disabled=locked)
        task_type = st.radio(
            "When you type",
            ["talk", "repeat"],
            horizontal=True,
            key="task_type",
            format_func={"talk": "the avatar answers", "repeat": "the avatar repeats it"}.get,
        )
        knowledge_base = st.text_area(
            "Knowledge base",
            key="knowledge_base",
            disabled=locked,
            height=120,
            value=live.SAMPLE_KNOWLEDGE_BASE,
            help="What the avatar answers from when it answers (talk tasks).",
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
        chat.barge_in = st.checkbox(
            "Speaking interrupts the avatar (barge-in)", value=True, key="barge_in", disabled=not voice_on
        )

setup = live.ChatSetup(avatar_id, voice_id, quality, encoding, task_type, knowledge_base, max_minutes)

with video_col:
    video_track = create_video_source_track(lambda pts, time_base: chat.frame(), key="avatar-video", fps=25)
    audio_track = create_audio_source_track(chat.audio_frame, key="avatar-audio", sample_rate=live.AUDIO_RATE)
    listener = chat.voice_listener() if voice_on else None
    mic = create_audio_sink_track(listener.push, key="mic") if listener else None
    ctx = webrtc_streamer(
        key="avatar-stream-mic" if voice_on else "avatar-stream",
        mode=WebRtcMode.SENDRECV if voice_on else WebRtcMode.RECVONLY,
        source_video_track=video_track,
        source_audio_track=audio_track,
        sink_audio_track=mic,
        rtc_configuration={"iceServers": []},  # loopback/LAN: never wait on an unreachable STUN server
        media_stream_constraints={
            "video": False,
            "audio": {"echoCancellation": True, "noiseSuppression": True, "autoGainControl": True},
        }
        if voice_on
        else {"video": True, "audio": True},
        desired_playing_state=False if chat.user_stopped else None,
        video_html_attrs={"autoPlay": True, "controls": False, "style": {"width": "100%", "borderRadius": "8px"}},
    )
    if ctx.state.playing and not chat.claimed:
        chat.claimed = True
        link = chat.start(setup)
    elif not ctx.state.playing and not ctx.state.signalling:
        if chat.claimed:
            chat.claimed = False
            chat.release("stopped")
        if chat.user_stopped:
            chat.user_stopped = False
            st.rerun()  # the component hides START while desired_playing_state is False: draw it again

    b1, b2, b3 = st.columns(3)
    live_now = link is not None and link.state is LinkState.CONNECTED
    script_mode = st.session_state.get("mode") == "Script"
    if b1.button("Interrupt", icon=":material/front_hand:", disabled=not live_now, use_container_width=True):
        try:
            if script_mode and chat.runner is not None and chat.runner.link is link:
                chat.runner.interrupt()  # keeps the place in the script: Resume says this segment again
            else:
                link.interrupt()
        except HeyGenError as exc:
            st.error(str(exc))
    if b2.button(
        "Stop session",
        icon=":material/stop_circle:",
        disabled=link is None or not link.live,
        use_container_width=True,
        type="primary",
    ):
        chat.release("stopped")
        chat.user_stopped = True
        st.rerun()
    can_reconnect = link is not None and link.state in (LinkState.FAILED, LinkState.DISCONNECTED)
    if (
        can_reconnect
        and ctx.state.playing
        and b3.button("Reconnect", icon=":material/refresh:", use_container_width=True)
    ):
        link = chat.start(setup)
        st.rerun()

    if chat.refused and link is None:
        st.error(chat.refused, icon=":material/savings:")
        if st.button("Override the budget for one session (logged)", icon=":material/warning:"):
            chat.budget_override = True
            link = chat.start(setup)
            chat.budget_override = False
            st.rerun()
    if listener is not None and link is not None and link.live:
        if voice_mode == "push-to-talk":
            talking = st.toggle("Talking (switch off when you are done)", key="ptt")
            listener.set_enabled(talking)
        else:
            listener.set_enabled(True)
            st.caption(
                ":material/mic: Listening: just speak. "
                + ("Speaking while the avatar talks interrupts it." if chat.barge_in else "")
            )
        if listener.error or chat.voice_error:
            st.warning(listener.error or chat.voice_error)
    if link is not None and link.error:
        st.error(link.error)
        if link.error_kind == "ConcurrencyLimit":
            st.page_link("views/sessions.py", label="Open Sessions to stop running sessions", icon=":material/dns:")
        if (
            provider.name == "heygen"
            and link.error_kind in FALLBACK_ERRORS
            and st.button(
                "Continue on the local engine",
                icon=":material/computer:",
                help="Runs the built-in avatar on this machine: no key, no credits.",
            )
        ):
            chat.release("fallback")
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


chat.rendered_state = (link.state, link.error) if link is not None else None


@st.fragment(run_every=1.0)
def status_panel() -> None:
    current = chat.link
    if current is None:
        st.caption("No avatar session yet.")
        return
    current.watched()
    if (current.state, current.error) != chat.rendered_state:
        st.rerun()  # the whole page depends on the state (buttons, chat input): redraw it
    left = current.seconds_left() if current.live else None
    if left is not None and left < 60:
        st.warning(f"The session stops in {max(0, left):.0f} s (the duration cap you set).", icon=":material/timer:")
    advice = current.quality.suggestion(current.options.request.quality) if current.quality else None
    if advice and current.state is LinkState.CONNECTED:
        st.info(advice, icon=":material/network_check:")
    for label, value in status_rows(current, resources.pricing(), provider.name, chat.playout.stats):
        left, right = st.columns([1, 1])
        left.caption(label)
        right.markdown(value)


@st.fragment(run_every=1.0)
def transcript() -> None:
    current = chat.link
    if current is None:
        st.caption("The conversation shows here.")
        return
    for turn in current.transcript():
        with st.chat_message(
            "user" if turn.role == "user" else "assistant",
            avatar=":material/person:" if turn.role == "user" else ":material/face:",
        ):
            st.markdown(
                turn.text
                + ("" if turn.done or turn.role == "user" or not current.live else " …")
                + (" _(interrupted)_" if turn.interrupted else "")
            )
    if hearing := chat.hearing():
        with st.chat_message("user", avatar=":material/mic:"):
            # Whisper ends even unfinished text with a full stop: drop it, the ellipsis says "still talking".
            words = hearing.rstrip(" .").replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")
            st.markdown(f"_{words} …_")
    if current.speaking:
        st.caption(":material/graphic_eq: the avatar is speaking")


with side_col, st.container(border=True):
    st.subheader("Status", anchor=False)
    status_panel()

with conversation:
    transcript()

# No max_chars: the browser would silently refuse a longer paste; a long text is kept for Script mode instead.
prompt = st.chat_input("Type a message for the avatar", disabled=not (link and link.state is LinkState.CONNECTED))
if prompt and link is not None:
    if len(prompt) > MAX_SEGMENT_CHARS:
        st.session_state[PENDING_SCRIPT_KEY] = prompt
        st.error(
            f"That message has {len(prompt):,} characters; one message can hold {MAX_SEGMENT_CHARS:,}. "
            "It is waiting in the **Script** tab, which delivers long text piece by piece."
        )
    else:
        try:
            link.send(prompt, task_type)
        except (HeyGenError, RuntimeError) as exc:
            st.error(str(exc))
