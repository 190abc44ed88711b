"""The Live chat page's LiveAvatar set-up: mode, sandbox, avatar, voice, context, language, quality, interactivity.

Draws the widgets and returns what the user chose; what it means (the token body, the silent-avatar warning, the
sandbox's rules) is decided in ``lib.live.liveavatar``.
"""

from __future__ import annotations

import streamlit as st

from lib.heygen.errors import HeyGenError
from lib.heygen.models import Avatar, Voice
from lib.live.liveavatar import QUALITY_LABELS, SANDBOX_NOTE, LiveAvatarChoice, LiveAvatarStreaming
from lib.liveavatar.models import (
    SANDBOX_AVATAR_ID,
    ContextSummary,
    Interactivity,
    SessionMode,
    VideoEncoding,
    VideoQuality,
)
from ui import live, resources

NO_CONTEXT = ""
PENDING_CONTEXT = "la_context_pending"  # a context just created: selected on the next run (before the widget)
CONTEXT_POPOVERS = "la_context_popovers"  # contexts created so far: a new popover (closed) after each
INTERACTIVITY_LABELS = {Interactivity.CONVERSATIONAL: "conversational", Interactivity.PUSH_TO_TALK: "push-to-talk"}
INTERACTIVITY_HELP = (
    "Conversational: LiveAvatar takes turns by itself. Push-to-talk: it hears you only inside a talk window, "
    "which this dashboard opens while the microphone (Voice input) hears you speak. Either way the avatar "
    "takes its listening pose while you speak."
)
MODE_LABELS = {
    SessionMode.FULL: "FULL · LiveAvatar listens, thinks and speaks (2 credits/min)",
    SessionMode.LITE: "LITE · our own offline voice, LiveAvatar's lips (1 credit/min)",
}


@st.cache_data(ttl=60, show_spinner=False)
def contexts(provider_name: str) -> list[ContextSummary]:
    return _client(provider_name).contexts()


@st.cache_data(ttl=3600, show_spinner=False)
def languages(provider_name: str) -> list[tuple[str, str]]:
    return _client(provider_name).languages()


def _client(provider_name: str) -> LiveAvatarStreaming:
    client = resources.provider_named(provider_name).client
    if not isinstance(client, LiveAvatarStreaming):
        raise TypeError("not a LiveAvatar provider")
    return client


def liveavatar_setup(
    provider_name: str, avatar_list: list[Avatar], voice_list: list[Voice], *, locked: bool
) -> LiveAvatarChoice:
    mode = (
        st.radio("Mode", list(SessionMode), format_func=MODE_LABELS.get, key="la_mode", disabled=locked)
        or SessionMode.FULL
    )
    sandbox = st.toggle("Sandbox (free test)", key="la_sandbox", disabled=locked, help=SANDBOX_NOTE)
    if sandbox:
        st.caption(f":material/science: {SANDBOX_NOTE}")
    avatar_ids = [a.avatar_id for a in avatar_list]
    labels = {a.avatar_id: a.pose_name or a.avatar_id for a in avatar_list}
    if sandbox:
        avatar_ids = [SANDBOX_AVATAR_ID]
    avatar_id = (
        st.selectbox(
            "Avatar",
            avatar_ids,
            format_func=lambda a: labels.get(a, "Wayne"),
            key="la_sandbox_avatar" if sandbox else "la_avatar",
            disabled=locked or sandbox,
        )
        or SANDBOX_AVATAR_ID
    )
    chosen = next((a for a in avatar_list if a.avatar_id == avatar_id), None)
    if chosen and chosen.preview_url and (image := live.preview_image(chosen.preview_url)):
        st.image(image, width=180)
    voice_id: str | None = None
    context_id: str | None = None
    language = "en"
    interactivity = Interactivity.CONVERSATIONAL
    if mode is SessionMode.FULL:
        voice_ids = [v.voice_id for v in voice_list]
        voice_labels = {v.voice_id: f"{v.name} · {v.language}" for v in voice_list}
        default_voice = chosen.default_voice if chosen and chosen.default_voice in voice_ids else None
        voice_id = st.selectbox(
            "Voice",
            voice_ids,
            format_func=lambda v: voice_labels.get(v, v),
            index=voice_ids.index(default_voice) if default_voice else 0,
            key="la_voice",
            disabled=locked,
        )
        codes = languages(provider_name) or [("en", "English")]
        names = dict(codes)
        language = (
            st.selectbox(
                "Language", list(names), format_func=lambda c: f"{names[c]} ({c})", key="la_language", disabled=locked
            )
            or "en"
        )
        interactivity = (
            st.radio(
                "Microphone turns",
                list(Interactivity),
                horizontal=True,
                key="la_interactivity",
                disabled=locked,
                format_func=INTERACTIVITY_LABELS.get,
                help=INTERACTIVITY_HELP,
            )
            or Interactivity.CONVERSATIONAL
        )
    else:
        st.caption(
            ":material/record_voice_over: LITE: the avatar speaks with our offline Piper voice, sent from this "
            "server; when it answers, the answer comes from the context's prompt (or the configured LLM)."
        )
    context_id = _context_picker(provider_name, locked=locked)
    q_col, e_col = st.columns(2)
    quality = (
        q_col.selectbox(
            "Quality",
            list(VideoQuality),
            index=1,
            format_func=lambda q: QUALITY_LABELS[q],
            key="la_quality",
            disabled=locked,
        )
        or VideoQuality.HIGH
    )
    encoding = e_col.selectbox("Video encoding", list(VideoEncoding), key="la_encoding", disabled=locked)
    return LiveAvatarChoice(
        avatar_id=avatar_id,
        mode=mode,
        sandbox=sandbox,
        voice_id=voice_id,
        context_id=context_id,
        language=language,
        quality=quality,
        encoding=encoding or VideoEncoding.VP8,
        interactivity=interactivity,
    )


def _context_picker(provider_name: str, *, locked: bool) -> str | None:
    """Pick a context (what the avatar knows and how it answers), or create one from a prompt."""
    try:
        found = contexts(provider_name)
    except HeyGenError as exc:
        st.warning(str(exc))
        found = []
    names = {c.id: c.name for c in found}
    if (pending := st.session_state.pop(PENDING_CONTEXT, None)) in names:
        st.session_state["la_context"] = pending
    if pending is not None:  # its form is done: left open, it hid the Context box and floated over the page
        st.session_state[CONTEXT_POPOVERS] = st.session_state.get(CONTEXT_POPOVERS, 0) + 1
    context_id = st.selectbox(
        "Context",
        [NO_CONTEXT, *names],
        format_func=lambda c: names.get(c, "None (the avatar only repeats)"),
        key="la_context",
        disabled=locked,
    )
    with (
        # Not a stateful popover (on_change="rerun"): its rerun on opening could swallow a quick click inside it.
        st.popover(
            "Create a context from text",
            icon=":material/add:",
            disabled=locked,
            key=f"la_context_popover_{st.session_state.get(CONTEXT_POPOVERS, 0)}",
        ),
        st.form("la_new_context", clear_on_submit=True, border=False),
    ):
        name = st.text_input("Name", value="Avatar Ops")
        prompt = st.text_area("Prompt", value=live.SAMPLE_KNOWLEDGE_BASE, height=120)
        opening = st.text_input("Opening text", value="Hello! Ask me about Avatar Ops.")
        if st.form_submit_button("Create context"):
            try:
                new_id = _client(provider_name).create_context(name, prompt, opening)
            except HeyGenError as exc:
                st.error(str(exc))
            else:
                contexts.clear()
                st.session_state[PENDING_CONTEXT] = new_id
                st.rerun()
    return context_id or None
