"""Streamlit glue for Live chat: the tab's controller, the catalogue, and the video component.

The state machine lives in ``lib.live.controller``; this module only builds it with the app's resources and
wraps streamlit-webrtc so the page gets the component's own reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
import streamlit as st
from streamlit.runtime import Runtime
from streamlit_webrtc import (
    WebRtcMode,
    create_audio_sink_track,
    webrtc_streamer,
)
from streamlit_webrtc import relay as webrtc_relay
from streamlit_webrtc.source import AudioSourceTrack, VideoSourceTrack

from lib.guards import Admission, admit_session
from lib.heygen.errors import HeyGenError
from lib.heygen.models import Avatar, Voice
from lib.live.controller import AUDIO_RATE, ComponentState, LiveChat, Services
from lib.live.media.passthrough import (
    PacketFeed,
    PassthroughAudioTrack,
    PassthroughVideoTrack,
    install_keyframe_forwarding,
)
from lib.live.media.relay import SenderRelay
from lib.live.session import release_memory_later
from lib.usage.store import EndReason
from lib.voice import VoiceListener
from ui import access, resources

SAMPLE_KNOWLEDGE_BASE = (
    "Avatar Ops is a dashboard for running real-time streaming avatars. "
    "It can start a live avatar, list and stop every active session, and chart usage and credits. "
    "A session costs money (credits) from the moment it is created until it is stopped, even when it is left "
    "open and nobody is watching, so stop sessions when you are done. "
    "The built-in local engine runs on this computer, offline, and needs no API key. "
    "With a LiveAvatar API key the same dashboard runs LiveAvatar's streaming avatars, the successor of HeyGen's."
)
VIDEO_KEYS = ("avatar-stream", "avatar-stream-mic")  # without and with the microphone
LEFT_PAGE_KEY = "live_video_left_page"
TRACKS_KEY = "live_video_tracks"


def _services() -> Services:
    settings = resources.settings()
    provider = resources.provider()
    who = access.identity()

    def admit(provider_name: str, override: bool) -> Admission:
        # An override is audited with who made it (admit_session checks the role again).
        return admit_session(
            resources.budget_status(),
            resources.pricing(),
            provider_name,
            override=override,
            identity=who,
            log=resources.usage_log(),
        )

    return Services(
        provider_name=provider.name,
        client=provider.client,
        usage=resources.usage_log(),
        idle_timeout=settings.idle_timeout,
        watcher_timeout=settings.watcher_timeout,
        admit=admit,
        identity=who,
    )


@st.cache_resource(scope="session", show_spinner=False, on_release=lambda chat: chat.close())
def live_chat() -> LiveChat:
    return LiveChat(_services)


def leave_page(reason: EndReason = EndReason.LEFT_PAGE) -> None:
    """The user is on another page: end the session; the video component starts afresh on return."""
    live_chat().release(reason)
    st.session_state[LEFT_PAGE_KEY] = True


def make_listener(**callbacks: Any) -> VoiceListener:
    """A microphone listener on the process's shared Whisper model."""
    return VoiceListener(stt=resources.speech_to_text(), **callbacks)


def settle_orphan_check(key: str) -> None:
    """Before drawing the component ``key``: leave streamlit-webrtc's orphan check on only after the user left
    the page (see ``video``)."""
    context = st.session_state.get(key)
    if context is not None and hasattr(context, "_last_rendered_run_count"):
        # -2: any run count makes the check fire (the remounted component starts afresh); None: it never does.
        context._last_rendered_run_count = -2 if st.session_state.pop(LEFT_PAGE_KEY, False) else None


def install_sender_relay() -> None:
    """streamlit-webrtc takes its process-wide relay from an attribute of Streamlit's runtime (0.79:
    ``relay.get_global_relay``): set ours before its first worker, so our tracks reach the sender unqueued."""
    runtime = Runtime.instance()
    name = webrtc_relay._SERVER_GLOBAL_RELAY_ATTR_NAME_
    if not isinstance(getattr(runtime, name, None), SenderRelay):
        setattr(runtime, name, SenderRelay())


def _tracks(chat: LiveChat) -> tuple[PassthroughVideoTrack, PassthroughAudioTrack]:
    """This tab's tracks toward the browser, new for each WebRTC session of the component. The worker stops the
    tracks it sent when its peer connection ends (``SenderRelay`` hands it ours, not a proxy), and a stopped
    passthrough track stops its frame source: nothing of an ended stream stays running. Made here rather than by
    streamlit-webrtc's factories, which keep a polling thread per track until the Streamlit session is
    collected, minutes after its tab closed (issue 13 §1)."""
    kept = st.session_state.get(TRACKS_KEY)
    if kept is not None and kept[0] is chat and all(t.readyState == "live" for t in kept[1:]):
        return kept[1], kept[2]
    install_keyframe_forwarding()

    def feed() -> PacketFeed | None:
        session = chat.session
        return session.media_feed() if session is not None else None

    # The local engine's packets go to the browser as they are; these frame sources (placeholders, and decoded
    # media for providers that only hand frames) fill in otherwise. Each makes its frame when the sender asks.
    frames = VideoSourceTrack(lambda pts, time_base: chat.frame(), fps=25)
    samples = AudioSourceTrack(chat.audio_frame, sample_rate=AUDIO_RATE)

    def wanted() -> bool:
        return not chat.closed

    video_track = PassthroughVideoTrack(frames, feed, wanted, still=lambda: chat.picture_still)
    audio_track = PassthroughAudioTrack(samples, feed, wanted)
    video_track.on("ended", release_memory_later)  # the stream's worker stops its tracks as it ends
    st.session_state[TRACKS_KEY] = (chat, video_track, audio_track)
    return video_track, audio_track


def reported_before_drawing(*, voice_on: bool) -> ComponentState | None:
    """What the video component reported since the last run, read before it is drawn. Drawing it can end the
    run there: on START, streamlit-webrtc answers the browser's offer and reruns at once (``st.rerun``) to send
    the answer, so what follows the component in the page waits a whole run. The session starts from this
    instead and sets up while the browser connects (issue 15: START -> avatar). Nothing after the user left the
    page: what the context holds then is the last visit's, and the library resets it as the component is drawn."""
    if st.session_state.get(LEFT_PAGE_KEY):
        return None
    ctx = st.session_state.get(VIDEO_KEYS[1] if voice_on else VIDEO_KEYS[0])
    state = getattr(ctx, "state", None)  # the library's context, once drawn (its ``state`` as ``ctx.state``)
    if state is None:
        return None
    return ComponentState(bool(state.playing), bool(state.signalling))


def video(chat: LiveChat, *, voice_on: bool, on_mic: Callable[[Any], None] | None = None) -> ComponentState:
    """The live video (and, with ``voice_on``, the microphone); returns what the component reports.

    streamlit-webrtc 0.79 treats its component as orphaned (and tears down its media worker mid-stream)
    when Streamlit's run counter moved by more than one since the component was last drawn. That counter
    is advanced on the server's event loop when a finished run is *sent*, so on a loaded machine the next
    run can start before it moves and two runs read the same count: two runs later the check fires on a
    component that was drawn every run — the START race of issue 12 (the session ended as "stopped" while
    the browser still showed the avatar). The real orphan case is the user leaving the page and coming
    back, which ``leave_page`` marks; only then is the library's check left to run.
    """
    key = VIDEO_KEYS[1] if voice_on else VIDEO_KEYS[0]
    settle_orphan_check(key)
    install_sender_relay()
    video_track, audio_track = _tracks(chat)
    mic = create_audio_sink_track(on_mic, key="mic") if on_mic is not None else None
    ctx = webrtc_streamer(
        key=key,
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
        desired_playing_state=chat.desired_playing,
        video_html_attrs={"autoPlay": True, "controls": False, "style": {"width": "100%", "borderRadius": "8px"}},
    )
    return ComponentState(ctx.state.playing, ctx.state.signalling)


@st.cache_data(ttl=300, show_spinner=False)
def avatars(provider_name: str) -> list[Avatar]:
    return [a for a in resources.provider_named(provider_name).client.avatars() if a.is_active]


@st.cache_data(ttl=300, show_spinner=False)
def voices(provider_name: str) -> list[Voice]:
    return resources.provider_named(provider_name).client.voices()


@st.cache_data(ttl=3600, show_spinner=False)
def preview_image(url: str) -> bytes | None:
    """Fetched by the server: the engine's preview URL is on loopback, which the browser may not reach."""
    try:
        response = requests.get(url, timeout=5)
    except requests.RequestException:
        return None
    return response.content if response.ok else None


def display_names(provider_name: str) -> tuple[dict[str, str], dict[str, str]]:
    """Avatar and voice names by id, as Live chat shows them; empty when the provider cannot list them now (the
    ids are shown instead)."""
    try:
        return (
            {a.avatar_id: a.pose_name for a in avatars(provider_name) if a.pose_name},
            {v.voice_id: v.name for v in voices(provider_name) if v.name},
        )
    except HeyGenError:
        return {}, {}


def catalogue() -> tuple[list[Avatar], list[Voice]] | None:
    try:
        name = resources.provider().name
        return avatars(name), voices(name)
    except HeyGenError as exc:
        st.error(str(exc))
        return None
