"""The per-browser-session live chat controller: owns at most one avatar link at a time."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
import requests
import streamlit as st

from lib import gc_pauses
from lib.bridge.link import AvatarLink, LinkOptions, LinkState
from lib.bridge.placeholder import placeholder_frame
from lib.bridge.playout import PlayoutBuffer
from lib.guards import admit_session
from lib.heygen.errors import HeyGenError
from lib.heygen.models import Avatar, NewSessionRequest, Voice
from lib.scripts import ScriptRunner
from lib.usage.store import EventKind
from lib.voice import Transcript, VoiceListener
from ui import resources

SAMPLE_KNOWLEDGE_BASE = (
    "Avatar Ops is a dashboard for running real-time streaming avatars. "
    "It can start a live avatar, list and stop every active session, and chart usage and credits. "
    "A session costs money (credits) from the moment it is created until it is stopped, even when it is left "
    "open and nobody is watching, so stop sessions when you are done. "
    "The built-in local engine runs on this computer, offline, and needs no API key. "
    "With a HeyGen API key the same dashboard runs HeyGen's streaming avatars."
)
AUDIO_RATE = 48_000
AUDIO_FRAME_SAMPLES = 960  # the 20 ms frames streamlit-webrtc's audio source pulls


@dataclass
class ChatSetup:
    avatar_id: str | None
    voice_id: str | None
    quality: str
    video_encoding: str
    task_type: str
    knowledge_base: str
    max_minutes: float = 0.0  # 0: no dashboard cap

    def request(self, idle_timeout: int, provider: str) -> NewSessionRequest:
        # HeyGen's current transport is a LiveKit room; the local engine speaks direct WebRTC.
        return NewSessionRequest(
            avatar_id=self.avatar_id,
            voice_id=self.voice_id,
            quality=self.quality,
            video_encoding=self.video_encoding,
            knowledge_base=self.knowledge_base or None,
            activity_idle_timeout=idle_timeout,
            version="v2" if provider == "heygen" else None,
        )


class LiveChat:
    """Lives as long as the browser tab's Streamlit session; stops its avatar when that ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.link: AvatarLink | None = None
        self.setup: ChatSetup | None = None
        # True while the video component is playing a stream we already started a link for: a
        # playing component must not silently start a second (billable) session.
        self.claimed = False
        self.user_stopped = False
        self.rendered_state: tuple[LinkState, str | None] | None = None  # link state and error the page drew
        self.refused: str | None = None  # why the budget guard refused the last start
        self.budget_override = False
        self.listener: VoiceListener | None = None
        self.runner: ScriptRunner | None = None  # Script mode: delivers a training script on self.link
        self.barge_in = True
        self.voice_error: str | None = None
        self.last_voice_end: float | None = None
        # Voice turns call the provider (blocking HTTP): one at a time, off the listener's threads.
        self._voice_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voice-turns")
        self.playout = PlayoutBuffer(AUDIO_RATE)

    def start(self, setup: ChatSetup) -> AvatarLink | None:
        """Start a new avatar session, unless the monthly budget guard refuses it (then ``None``)."""
        self.release("replaced")
        settings = resources.settings()
        provider = resources.provider()
        admission = admit_session(
            resources.budget_status(), resources.pricing(), provider.name, override=self.budget_override
        )
        if not admission.allowed:
            self.refused = admission.message
            return None
        self.refused = None
        gc_pauses.settle()  # the page's imports are done: take them (and closed sessions' garbage) out of later GCs
        options = LinkOptions(
            request=setup.request(settings.idle_timeout, provider.name),
            watcher_timeout=settings.watcher_timeout,
            max_duration=setup.max_minutes * 60 if setup.max_minutes else None,
            open_events=admission.open_events,
        )
        with self._lock:
            self.setup = setup
            self.playout = PlayoutBuffer(AUDIO_RATE)  # fresh figures for the status panel, too
            self.link = AvatarLink(
                provider.client,
                provider.name,
                resources.usage_log(),
                options,
                audio_out=self.playout.push,
                audio_clear=self.playout.clear,
            )
            return self.link

    def release(self, reason: str) -> None:
        if self.runner is not None:
            self.runner.stop()
        with self._lock:
            link = self.link
        if link is not None and link.end_reason is None:
            link.stop(reason)
        if self.listener is not None:
            self.listener.set_enabled(False)

    def close(self) -> None:
        """The browser session ended: stop the avatar and the microphone listener."""
        self.release("released")
        if self.listener is not None:
            self.listener.close()
        self._voice_pool.shutdown(wait=False, cancel_futures=True)

    # --- voice input --------------------------------------------------------------------------
    def voice_listener(self) -> VoiceListener:
        """The microphone listener of this tab (created on first use; the Whisper model is shared)."""
        if self.listener is None:
            self.listener = VoiceListener(
                on_transcript=lambda t: self._voice_pool.submit(self._voice_turn, t),
                on_speech_start=lambda: self._voice_pool.submit(self._barge_in),
                interim=True,  # read as .partial by the page
                stt=resources.speech_to_text(),
            )
        return self.listener

    def hearing(self) -> str | None:
        """What the microphone user is saying right now, before it is final (None when nobody speaks)."""
        return self.listener.partial if self.listener is not None and self.listener.enabled else None

    def _voice_turn(self, transcript: Transcript) -> None:
        link = self.link
        if link is None or link.state is not LinkState.CONNECTED or self.setup is None:
            return
        try:
            link.send(transcript.text, self.setup.task_type)
        except (HeyGenError, RuntimeError) as exc:
            self.voice_error = str(exc)
            return
        self.last_voice_end = transcript.ended_at
        link.record(
            EventKind.VOICE_TURN,
            {
                "chars": len(transcript.text),
                "audio_ms": round(transcript.audio_ms),
                "stt_latency_ms": round(transcript.latency_ms),
            },
        )

    def _barge_in(self) -> None:
        link = self.link
        # Also while an answer is still on its way: the user has moved on, drop it before it starts.
        busy = link is not None and (link.speaking or link.awaiting_answer)
        if self.barge_in and busy and link.state is LinkState.CONNECTED:
            try:
                link.interrupt()
            except (HeyGenError, RuntimeError) as exc:
                self.voice_error = str(exc)

    def audio_frame(self, pts: int, time_base: object) -> av.AudioFrame:
        """The browser's next 20 ms of the avatar's voice (silence when there is no link)."""
        samples = self.playout.read(AUDIO_FRAME_SAMPLES)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        return frame

    def frame(self) -> av.VideoFrame:
        link = self.link
        if link is None:
            if self.refused:
                return placeholder_frame("Monthly budget reached - see the message on the page")
            return placeholder_frame("Press START to bring the avatar in")
        latest = link.latest_frame()
        if link.state is LinkState.CONNECTED and latest is not None:
            return latest
        if link.state is LinkState.CONNECTING:
            return placeholder_frame("Connecting to the avatar…")
        if link.state is LinkState.RECONNECTING:
            return placeholder_frame("Connection lost - reconnecting…")
        if link.state is LinkState.FAILED:
            return placeholder_frame("The avatar could not start - see the message on the page")
        return placeholder_frame("Session ended - press STOP, then START for a new one")


@st.cache_resource(scope="session", show_spinner=False, on_release=lambda chat: chat.close())
def live_chat() -> LiveChat:
    return LiveChat()


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


def catalogue() -> tuple[list[Avatar], list[Voice]] | None:
    try:
        name = resources.provider().name
        return avatars(name), voices(name)
    except HeyGenError as exc:
        st.error(str(exc))
        return None
