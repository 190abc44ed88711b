"""Engine sessions: the state machine, their peer connections, and the manager that enforces limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
import uuid
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from lib import gc_pauses
from lib.engine import avatars
from lib.engine import errors as E
from lib.engine.codecs import install_realtime_h264
from lib.engine.config import QUALITIES, QUALITY_UNITS, TARGET_BITRATE, EngineConfig
from lib.engine.history import HistoryRow, SessionHistory
from lib.engine.media import RenderClock
from lib.engine.packets import PacketStream
from lib.engine.responder import LlmConfig, Responder
from lib.engine.speaker import Speaker, SpeechBuffer, Utterance
from lib.engine.tts import VoiceBank

log = logging.getLogger("avatar_ops.engine")

install_realtime_h264()


class SessionState(StrEnum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSING = "closing"
    CLOSED = "closed"


ACTIVE_STATES = (SessionState.NEW, SessionState.CONNECTING, SessionState.CONNECTED)
SHUTDOWN_ENGINE = "engine_shutdown"  # end reason of sessions the engine closes when told to stop
SHUTDOWN_APP_EXITED = "app_exited"  # ... when the app that started it died
CLIENT_GONE = "client_gone"  # the caller of streaming.new gave up before the session was made


@dataclass(frozen=True)
class SessionOptions:
    avatar_id: str
    voice_id: str
    rate: float = 1.0
    emotion: str | None = None
    quality: str = "medium"
    video_encoding: str = "VP8"
    knowledge_base: str | None = None
    idle_timeout: int = 120
    disable_idle_timeout: bool = False
    language: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        return QUALITIES[self.quality]

    @property
    def units(self) -> int:
        return QUALITY_UNITS[self.quality]


@dataclass
class EventLog:
    """The session's events, also readable over HTTP (local engine extension) for tests and tools."""

    items: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=2000))
    seq: int = 0

    def add(self, event: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        entry = {"seq": self.seq, "at": time.time(), **event}
        self.items.append(entry)
        return entry

    def after(self, seq: int) -> list[dict[str, Any]]:
        return [e for e in self.items if e["seq"] > seq]


class EngineSession:
    def __init__(
        self,
        session_id: str,
        options: SessionOptions,
        voices: VoiceBank,
        executor: ThreadPoolExecutor,
        responder: Responder,
        max_duration: int,
        fps: int,
    ) -> None:
        self.session_id = session_id
        self.options = options
        self.state = SessionState.NEW
        self.created_at = time.time()
        self.last_activity = time.monotonic()
        self.max_duration = max_duration
        self.end_reason: str | None = None
        self.listening = False
        self.events = EventLog()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("events")
        self.buffer = SpeechBuffer(self._emit, frame_samples=48_000 // fps)
        width, height = options.size
        self.clock = RenderClock(
            avatars.get_kit(options.avatar_id, width, height), self.buffer, fps=fps, is_listening=lambda: self.listening
        )
        # The encoded media channel (lib.engine.packets): encodes only while a client subscribes.
        self.packets = PacketStream(options.video_encoding, width, height, TARGET_BITRATE[options.quality])
        self.media_token = secrets.token_urlsafe(32)
        self.clock.on_tick = self.packets.on_tick
        self.responder = responder
        self.speaker = Speaker(
            self.buffer,
            voices,
            voice_id=options.voice_id,
            rate=options.rate,
            answer=self.responder.answer,
            executor=executor,
            emit=self._emit,
            frame_samples=48_000 // fps,
        )
        self.closed = asyncio.Event()

    # --- events -------------------------------------------------------------------------------
    def _emit(self, event: dict[str, Any]) -> None:
        self.events.add(event)
        if event["type"] == "avatar_stop_talking":
            self.touch()  # speaking is activity: the idle countdown starts when the avatar goes quiet
        if self.channel.readyState == "open":
            with contextlib.suppress(Exception):
                self.channel.send(json.dumps(event))

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    @property
    def idle_seconds(self) -> float:
        return 0.0 if self.buffer.speaking else time.monotonic() - self.last_activity

    @property
    def age_seconds(self) -> float:
        return time.time() - self.created_at

    # --- WebRTC -------------------------------------------------------------------------------
    async def create_offer(self) -> dict[str, str]:
        video = self.pc.addTransceiver(self.clock.video, direction="sendonly")
        self.pc.addTransceiver(self.clock.audio, direction="sendonly")
        preferred = "video/H264" if self.options.video_encoding == "H264" else "video/VP8"
        codecs = RTCRtpSender.getCapabilities("video").codecs
        video.setCodecPreferences(sorted(codecs, key=lambda c: c.mimeType != preferred))
        self.pc.on("connectionstatechange", self._on_connection_state)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return {"type": "offer", "sdp": self.pc.localDescription.sdp}

    async def start(self, answer_sdp: str | None) -> None:
        if self.state is not SessionState.NEW:
            raise E.wrong_state(self.state.value, "start")
        if not answer_sdp:
            raise E.missing("sdp")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        except Exception as exc:
            raise E.invalid(f"Malformed SDP answer: {exc}") from None
        self.state = SessionState.CONNECTING
        self._set_bitrate()
        self.clock.start()
        self.speaker.start()
        self.touch()

    def _set_bitrate(self) -> None:
        for sender in self.pc.getSenders():
            encoder = getattr(sender, "_RTCRtpSender__encoder", None)
            if encoder is not None and hasattr(encoder, "target_bitrate"):
                encoder.target_bitrate = TARGET_BITRATE[self.options.quality]

    async def add_ice(self, candidate: dict[str, Any]) -> None:
        text = (candidate or {}).get("candidate")
        if not text:
            return  # end-of-candidates
        try:
            parsed = candidate_from_sdp(text.removeprefix("candidate:"))
        except Exception:
            raise E.invalid("Malformed ICE candidate") from None
        parsed.sdpMid = candidate.get("sdpMid")
        parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
        await self.pc.addIceCandidate(parsed)

    async def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self.state is SessionState.CONNECTING:
            self.state = SessionState.CONNECTED
            self.clock.peer_connected()
            self._set_bitrate()
        elif state in ("failed", "closed") and self.state in ACTIVE_STATES:
            asyncio.get_running_loop().create_task(self.close("connection_" + state))

    # --- tasks --------------------------------------------------------------------------------
    def require_active(self, action: str, allowed: tuple[SessionState, ...] = ACTIVE_STATES) -> None:
        if self.state not in allowed:
            raise E.wrong_state(self.state.value, action)

    def submit(self, text: str, task_type: str) -> Utterance:
        self.require_active("run a task", (SessionState.CONNECTING, SessionState.CONNECTED))
        self.touch()
        return self.speaker.submit(text, task_type)

    def interrupt(self) -> int:
        self.require_active("interrupt")
        self.touch()
        dropped = self.speaker.interrupt()
        self.clock.audio.clear()  # speech already rendered but not yet sent must not play either
        self.packets.clear_audio()
        return dropped

    def stats(self) -> dict[str, Any]:
        s = self.clock.stats
        return {
            "fps": round(s.fps, 2),
            "frames": s.frames,
            "dropped_video_frames": self.clock.video.dropped,
            "media_channel_frames": self.packets.encoded_frames,
            "media_channel_skipped_frames": self.packets.skipped_frames,
            "clock_resyncs": s.late_resyncs,
            "compose_ms_avg": round(s.compose_ms_total / s.frames, 3) if s.frames else None,
            "last_task_latency_ms": self.buffer.last_task_latency_ms,
            "speech_starved_frames": self.buffer.starved_frames,
            "speech_held_frames": self.buffer.held_frames,
        }

    def describe(self) -> dict[str, Any]:
        width, height = self.options.size
        return {
            "session_id": self.session_id,
            "status": self.state.value,
            "created_at": int(self.created_at),
            # Local-engine extensions: what the dashboard shows beside HeyGen's three fields.
            "avatar_id": self.options.avatar_id,
            "voice_id": self.options.voice_id,
            "quality": self.options.quality,
            "resolution": f"{width}x{height}",
            "video_encoding": self.options.video_encoding,
            "activity_idle_timeout": None if self.options.disable_idle_timeout else self.options.idle_timeout,
            "idle_seconds": round(self.idle_seconds, 1),
            "speaking": self.buffer.speaking,
            "listening": self.listening,
            "session_duration_limit": self.max_duration,
        }

    async def close(self, reason: str) -> None:
        if self.state in (SessionState.CLOSING, SessionState.CLOSED):
            return
        self.state = SessionState.CLOSING
        self.end_reason = reason
        await self.speaker.stop()
        await self.clock.stop()
        self.packets.close()
        await self.pc.close()
        self.state = SessionState.CLOSED
        self.closed.set()
        log.info("session %s closed (%s)", self.session_id, reason)


@dataclass
class Token:
    created_at: float
    session_id: str | None = None


class SessionManager:
    TOKEN_TTL = 3600.0
    REMEMBER_CLOSED = 500

    def __init__(
        self, config: EngineConfig, voices: VoiceBank, history: SessionHistory, llm: LlmConfig | None = None
    ) -> None:
        self.config = config
        self.voices = voices
        self.history = history
        self.llm = llm
        self.sessions: dict[str, EngineSession] = {}
        self.recently_closed: OrderedDict[str, EngineSession] = OrderedDict()
        self.tokens: dict[str, Token] = {}
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tts")
        # Setting a session up never waits behind other sessions' speech: with four talking sessions on a
        # loaded machine the shared queue held a new session back past its caller's timeout (issue 13).
        self.setup_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="session-setup")
        self._watchdog: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    # --- tokens -------------------------------------------------------------------------------
    def create_token(self) -> str:
        now = time.time()
        self.tokens = {k: t for k, t in self.tokens.items() if now - t.created_at < self.TOKEN_TTL}
        token = secrets.token_urlsafe(32)
        self.tokens[token] = Token(now)
        return token

    def token(self, value: str) -> Token:
        token = self.tokens.get(value)
        if token is None:
            raise E.ApiError(E.TOKEN_INVALID, "Session token is invalid", 401)
        if time.time() - token.created_at > self.TOKEN_TTL:
            raise E.ApiError(E.TOKEN_EXPIRED, "Session token has expired", 401)
        return token

    # --- sessions -----------------------------------------------------------------------------
    @property
    def units_in_use(self) -> int:
        return sum(s.options.units for s in self.sessions.values() if s.state in ACTIVE_STATES)

    async def create(self, options: SessionOptions) -> tuple[EngineSession, dict[str, str]]:
        async with self._lock:
            used = self.units_in_use
            if used + options.units > self.config.session_budget:
                raise E.ApiError(
                    E.CONCURRENT_LIMIT,
                    f"Concurrent limit reached: {used} of {self.config.session_budget} capacity units in use"
                    f" and a {options.quality} session needs {options.units} (480p = 1, 720p = 2, 1080p = 4)."
                    " Stop a session or choose a lower quality.",
                )
            loop = asyncio.get_running_loop()
            # Building an avatar kit at a new resolution takes a moment: keep the loop (and other
            # sessions' render clocks) running meanwhile.
            width, height = options.size
            await loop.run_in_executor(self.setup_executor, avatars.get_kit, options.avatar_id, width, height)
            # Indexing a large knowledge base takes up to a few hundred ms: also off the loop.
            responder = await loop.run_in_executor(self.setup_executor, Responder, options.knowledge_base, self.llm)
            session = EngineSession(
                str(uuid.uuid4()),
                options,
                self.voices,
                self.executor,
                responder,
                self.config.max_duration,
                self.config.fps,
            )
            self.sessions[session.session_id] = session
        offer = await session.create_offer()
        self._ensure_watchdog()
        return session, offer

    def get(self, session_id: str | None) -> EngineSession:
        if not session_id:
            raise E.missing("session_id")
        session = self.sessions.get(session_id) or self.recently_closed.get(session_id)
        if session is None:
            raise E.session_not_found(session_id)
        return session

    async def close(self, session: EngineSession, reason: str) -> None:
        await session.close(reason)
        if self.sessions.pop(session.session_id, None) is not None:
            self.recently_closed[session.session_id] = session
            while len(self.recently_closed) > self.REMEMBER_CLOSED:
                self.recently_closed.popitem(last=False)
            voice = self.voices.get(session.options.voice_id)
            self.history.add(
                HistoryRow(
                    session.session_id,
                    session.created_at,
                    time.time(),
                    session.options.avatar_id,
                    voice.name,
                    session.options.quality,
                    reason,
                )
            )
            if not self.sessions:
                gc_pauses.release_memory()  # nothing is streaming: a pause costs nobody anything

    def active(self) -> list[EngineSession]:
        return [s for s in self.sessions.values() if s.state in ACTIVE_STATES]

    def _ensure_watchdog(self) -> None:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.get_running_loop().create_task(self._watch(), name="session-watchdog")

    async def _watch(self) -> None:
        while self.sessions:
            await asyncio.sleep(0.5)
            for session in list(self.sessions.values()):
                reason = None
                if session.state is SessionState.CLOSED:
                    reason = session.end_reason or "closed"
                elif not session.options.disable_idle_timeout and session.idle_seconds > session.options.idle_timeout:
                    reason = "idle_timeout"
                elif session.age_seconds > session.max_duration:
                    reason = "duration_limit"
                if reason:
                    await self.close(session, reason)

    async def shutdown(self, reason: str = SHUTDOWN_ENGINE) -> None:
        for session in list(self.sessions.values()):
            await self.close(session, reason)
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.setup_executor.shutdown(wait=False, cancel_futures=True)
