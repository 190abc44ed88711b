"""The live session the Live chat page shows: create it, receive its media, talk to it, stop it.

It owns the provider session's whole life (and, after a media loss, its replacement's: a reconnect is a new
provider session under the same live session). It logs every step to the usage log as it happens,
keeps the session alive only while someone is watching, and never leaves a billable session behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, cast

import av
import numpy as np

from lib import gc_pauses
from lib.heygen.client import StreamingClient
from lib.heygen.errors import HeyGenError, SessionNotFound, SessionStateError
from lib.heygen.models import NewSession, NewSessionRequest, TaskResult
from lib.live.liveavatar import AVATAR_PARTICIPANT, AgentEvents, LiveAvatarRequest, LiveAvatarStreaming
from lib.live.media import loop as media_loop
from lib.live.media.direct import DirectConnection
from lib.live.media.frame_history import FrameHistory
from lib.live.media.passthrough import PacketFeed
from lib.live.media.playout import PlayoutStats
from lib.live.media.quality import MediaQuality, QualityMeter
from lib.usage.store import EndReason, EventKind, UsageLog

log = logging.getLogger("avatar_ops.live")

AudioOut = Callable[[np.ndarray], None]


def to_mono_s16(frame: av.AudioFrame) -> np.ndarray:
    """Any decoded audio frame as int16 mono samples (what the browser-side PCM source plays)."""
    if frame.format.name not in ("s16", "s16p"):
        frame = av.AudioResampler(format="s16", layout=frame.layout.name, rate=frame.sample_rate).resample(frame)[0]
    samples = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if channels == 1:
        return samples.reshape(-1).astype(np.int16, copy=False)
    samples = samples.reshape(-1, channels) if frame.format.is_packed else samples.T
    return samples.astype(np.int32).mean(axis=1).astype(np.int16)


class SessionState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"
    FAILED = "failed"
    CLOSED = "closed"


LIVE_STATES = (SessionState.CONNECTING, SessionState.CONNECTED, SessionState.RECONNECTING)


@dataclass
class Turn:
    role: str  # "user" | "avatar"
    text: str
    task_id: str | None = None
    at: float = field(default_factory=time.time)
    done: bool = False
    interrupted: bool = False  # the avatar was cut off: text is what it had begun to say


@dataclass(frozen=True)
class SessionOptions:
    request: NewSessionRequest | LiveAvatarRequest
    keep_alive_every: float = 30.0
    heartbeat_every: float = 5.0
    connect_timeout: float = 20.0
    # Stop the session when no page has looked at it for this long (tab gone without a close event).
    watcher_timeout: float = 45.0
    # The dashboard's own cap on one session's length (cost guard); None: only the provider's limit.
    max_duration: float | None = None
    # Events written to the log as soon as the session exists (e.g. a budget override the user chose).
    open_events: tuple[tuple[str, dict[str, Any]], ...] = ()
    video_stall_timeout: float = 4.0  # no frame for this long while connected: treat the media as lost
    # Backoff 1, 2, 4, then every 8 s (47 s in all): a restarted engine is found soon after it is back.
    reconnect_attempts: int = 8
    # Take the provider's encoded media as it is when it offers it (the local engine's media channel) instead
    # of decoding it: the page forwards the packets to the browser (lib.live.media.passthrough).
    passthrough: bool = False


_open_sessions = 0
_open_sessions_lock = threading.Lock()


def _session_opened() -> None:
    global _open_sessions
    with _open_sessions_lock:
        _open_sessions += 1


def _session_closed() -> None:
    """The last live session of this process is gone: give its decoders' memory back (glibc would keep it)."""
    global _open_sessions
    with _open_sessions_lock:
        _open_sessions -= 1
    _release_if_idle()


def streaming() -> bool:
    """A live session is open in this process: its media must not wait on a full collection."""
    with _open_sessions_lock:
        return _open_sessions > 0


def _release_if_idle() -> None:
    idle = not streaming()
    if idle:  # a full collection pauses every thread: never while a session streams
        # Also re-freeze what survives (lib.gc_pauses): done here, not when a session starts, where its pause
        # (130-170 ms on this machine) held up the browser's connection and the session's set-up (issue 15).
        gc_pauses.settle()
        gc_pauses.release_memory()


def release_memory_later(delay: float = 5.0) -> None:
    """A page's media link to the browser ended: once it is torn down, give its memory back if no session is open.
    A closed tab's peer connection ends seconds after its session (when ICE notices), so the trim at the last
    session's end came too early for it: 60 MB stayed held by glibc after 5 tabs (issue 13 §1)."""
    loop = media_loop.media_loop()
    loop.call_soon_threadsafe(loop.call_later, delay, _release_if_idle)


class LiveSession:
    def __init__(
        self,
        client: StreamingClient,
        provider: str,
        usage: UsageLog | None,
        options: SessionOptions,
        *,
        audio_out: AudioOut | None = None,
        audio_clear: Callable[[], None] | None = None,
    ) -> None:
        _session_opened()
        self.client = client
        self.provider = provider
        self.usage = usage
        self.options = options
        self._audio_out = audio_out
        self._audio_clear = audio_clear
        self._lock = threading.Lock()
        self.state = SessionState.CONNECTING
        self.error: str | None = None
        self.error_kind: str | None = None  # e.g. "ConcurrencyLimit": lets the page offer the right fix
        self.end_reason: EndReason | None = None
        self.provider_session: NewSession | None = None
        self._establishing_since = time.monotonic()
        self.connected_wall: float | None = None  # the conversation's start: the dashboard cap counts from here
        self.session_wall: float | None = None  # the current provider session's start (a reconnect is a new one)
        self.first_frame_ms: float | None = None
        self.last_task_to_talk_ms: float | None = None
        self.speaking = False
        self.awaiting_answer = False  # a task was sent and the avatar has not started answering yet
        self.quality: MediaQuality | None = None
        self._meter = QualityMeter()
        self._keep_alive_rtt_ms: float | None = None
        self.frames_received = 0
        self._recent = FrameHistory()  # the decoded pictures; the newest is the latest frame
        self._turns: list[Turn] = []
        self._events: deque[tuple[float, dict[str, Any]]] = deque(maxlen=500)
        self._task_sent: dict[str, float] = {}
        self._interrupted_tasks: set[str] = set()  # their words may still arrive after the interrupt
        self._last_sent_at: float | None = None
        self._watched_at = time.monotonic()
        self._activity_at = time.monotonic()
        self._first_frame = threading.Event()
        self.finished = threading.Event()  # set once the provider session is stopped and media released
        self._conn: Any = None  # DirectConnection or LiveKitConnection: both have close()
        self._feed: PacketFeed | None = None  # the encoded media, when forwarded without decoding
        self._tasks: list[asyncio.Task] = []
        self._cleanups: set[asyncio.Task] = set()  # stops of sessions made after their task was cancelled
        self._stopping = False
        self._stopped_sessions: set[str] = set()
        self._last_frame_at = time.monotonic()
        self.reconnects = 0
        self._agent_events = AgentEvents()  # LiveAvatar's agent-response events, in this session's terms
        self.provider_end_reason: str | None = None  # why the provider ended it (LiveAvatar's end_reason)
        self._future = media_loop.submit(self._connect())

    # --- what the page reads ------------------------------------------------------------------
    @property
    def session_id(self) -> str | None:
        return self.provider_session.session_id if self.provider_session else None

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def latest_frame(self, behind_s: float = 0.0) -> av.VideoFrame | None:
        """The newest decoded picture; with ``behind_s``, the one to show now so that it meets its sound (see
        :mod:`lib.live.media.frame_history`)."""
        return self._recent.behind(behind_s)

    @property
    def audio_lag_s(self) -> float:
        """How much later than its picture the decoded sound comes out of the transport (0 when forwarded)."""
        return float(getattr(self._conn, "audio_lag_s", 0.0))

    def media_feed(self) -> PacketFeed | None:
        """The provider's encoded media while the session is live, when it is forwarded as it is."""
        feed = self._feed
        return feed if feed is not None and self.state is SessionState.CONNECTED else None

    def audio_leg_stats(self) -> PlayoutStats | None:
        """The forwarded audio's queue toward the browser (None when audio is decoded and re-encoded)."""
        return self._feed.audio_stats() if self._feed is not None else None

    def transcript(self) -> list[Turn]:
        with self._lock:
            return [replace(t) for t in self._turns]

    def events(self) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return list(self._events)

    def age_seconds(self) -> float:
        return time.time() - self.connected_wall if self.connected_wall else 0.0

    def session_age_seconds(self) -> float:
        return time.time() - self.session_wall if self.session_wall else 0.0

    def no_media_seconds(self) -> float | None:
        """Seconds since the avatar's last video frame while the session should be showing it (None before
        the first frame or after the end): what the page shows as "no media for N s"."""
        if self.frames_received == 0 or self.state not in (SessionState.CONNECTED, SessionState.RECONNECTING):
            return None
        return time.monotonic() - self._last_frame_at

    def idle_seconds(self) -> float:
        """Seconds since the provider last saw activity from us (task, interrupt or keep-alive)."""
        return time.monotonic() - self._activity_at

    def watched(self) -> None:
        """Called by the page while it shows this session; keep-alives stop when nobody calls it."""
        self._watched_at = time.monotonic()

    def wait_connected(self, timeout: float | None = None) -> bool:
        with contextlib.suppress(Exception):
            self._future.result(timeout)
        return self.state is SessionState.CONNECTED

    # --- actions ------------------------------------------------------------------------------
    def send(self, text: str, task_type: str = "talk") -> TaskResult:
        session_id = self._require_live()
        turn = Turn("user", text)
        with self._lock:
            self._turns.append(turn)  # before the call: the answer's events may arrive before it returns
        self._last_sent_at = self._activity_at = time.monotonic()
        try:
            result = self.client.task(session_id, text, task_type=task_type, task_mode="async")
        except HeyGenError as exc:
            with self._lock:
                # Refused (e.g. empty text): the error says why; no bubble for words never sent.
                self._turns[:] = [t for t in self._turns if t is not turn]
            self._log_event(EventKind.ERROR, {"action": "task", "error": str(exc)})
            raise
        with self._lock:
            if result.task_id is not None:
                self._task_sent[result.task_id] = self._last_sent_at
            self.awaiting_answer = True
        self._log_event(
            EventKind.TASK,
            {"task_id": result.task_id, "task_type": task_type, "chars": len(text), "duration_ms": result.duration_ms},
        )
        return result

    def record(self, kind: str, details: dict[str, Any] | None = None) -> None:
        """Write an event about this session to the usage log (e.g. a voice turn)."""
        self._log_event(kind, details)

    def interrupt(self) -> None:
        session_id = self._require_live()
        # Marked before the call: the stop events can arrive on the media thread before the call returns.
        with self._lock:
            earlier = set(self._interrupted_tasks)
            self._interrupted_tasks.update(self._task_sent)
            cut = [t for t in self._turns if t.role == "avatar" and not t.done]
            for turn in cut:
                turn.interrupted = True
        if self._audio_clear is not None:
            self._audio_clear()  # drop what the browser has not heard yet, too
        if self._feed is not None:
            self._feed.clear_audio()
        try:
            self.client.interrupt(session_id)
        except HeyGenError:
            with self._lock:
                self._interrupted_tasks = earlier
                for turn in cut:
                    turn.interrupted = False
            raise
        self.awaiting_answer = False
        self._activity_at = time.monotonic()
        self._log_event(EventKind.INTERRUPT, None)

    def stop(self, reason: EndReason = EndReason.STOPPED) -> None:
        """Stop the provider session and release the media. Safe to call twice and from any thread."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        try:
            media_loop.run(self._shutdown(reason), timeout=15)
        except Exception:  # stopping must never raise into a page or a release callback
            log.exception("stopping the live session failed")

    def _require_live(self) -> str:
        if self.state is not SessionState.CONNECTED or self.provider_session is None:
            raise RuntimeError("The avatar session is not connected.")
        return self.provider_session.session_id

    # --- media loop side ---------------------------------------------------------------------
    async def _connect(self) -> None:
        try:
            await self._establish()
        except Exception as exc:
            await self._fail(*self._describe(exc))
            return
        self.connected_wall = time.time()
        self._went_live()

    async def _establish(self) -> None:
        """Create a provider session, open its media and wait for the first frame; raise on failure."""
        self._first_frame.clear()
        self._establishing_since = time.monotonic()
        self._conn = None
        self._feed = None
        session = self.provider_session = await self._create_provider_session()
        if isinstance(self.client, LiveAvatarStreaming):
            self.client.attach_events(session.session_id, self._on_event)  # LITE: our voice's speaking events
        self._log_open()
        if self._stopping:  # the user gave up while the provider was creating it
            await self._stop_provider(self.end_reason or EndReason.STOPPED)
            raise asyncio.CancelledError
        await self._open_media(session)
        if not await asyncio.to_thread(self._first_frame.wait, self.options.connect_timeout):
            raise TimeoutError

    async def _create_provider_session(self) -> NewSession:
        """The provider's new session. A request once sent cannot be taken back: when this task is cancelled
        meanwhile (the tab closed during a reconnect), the session the provider still makes is logged and
        stopped as soon as it exists, never left billing unseen."""
        creating = asyncio.ensure_future(asyncio.to_thread(self._new_provider_session))
        try:
            return await asyncio.shield(creating)
        except asyncio.CancelledError:
            creating.add_done_callback(self._end_abandoned)
            raise

    def _end_abandoned(self, creating: asyncio.Future[NewSession]) -> None:
        if creating.cancelled() or creating.exception() is not None:
            return  # nothing was made
        task = asyncio.get_running_loop().create_task(self._stop_abandoned(creating.result()))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _stop_abandoned(self, session: NewSession) -> None:
        self.provider_session = session
        self._log_open()
        await self._stop_provider(self.end_reason or EndReason.STOPPED)

    def _new_provider_session(self) -> NewSession:
        request = self.options.request
        if isinstance(request, LiveAvatarRequest):
            if not isinstance(self.client, LiveAvatarStreaming):
                raise TypeError("a LiveAvatar request needs the LiveAvatar client")
            return self.client.open(request)
        return self.client.new(request)

    def _describe(self, exc: BaseException) -> tuple[str, str | None]:
        if isinstance(exc, HeyGenError):
            return str(exc), type(exc).__name__
        if isinstance(exc, ConnectionError):  # LiveKit could not join the room
            return f"{exc}. Check the network and try again.", "ConnectionError"
        if isinstance(exc, TimeoutError):
            return (
                f"No video arrived from {self.client.provider_label} within "
                f"{self.options.connect_timeout:.0f} s. Check the provider's status and try again.",
                None,
            )
        log.error("connecting to the avatar failed", exc_info=exc)
        return f"Could not connect to the avatar ({type(exc).__name__}). Try again.", None

    def _went_live(self) -> None:
        self.state = SessionState.CONNECTED
        self.session_wall = time.time()
        if self.usage is not None and self.provider_session is not None:
            self.usage.mark_connected(self.provider_session.session_id)
            self._log_event(EventKind.FIRST_FRAME, {"ms": self.first_frame_ms})
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._keep_alive()), loop.create_task(self._monitor())]

    async def _open_media(self, session: NewSession) -> None:
        """Direct WebRTC when the provider sent an SDP offer (local engine, HeyGen legacy); a LiveKit room
        when it sent a room URL and token (HeyGen ``version: "v2"``)."""
        if session.sdp is not None:
            channel = session.media_channel if self.options.passthrough else None
            if channel is not None and channel.get("video_codec", "VP8") != "VP8":
                channel = None  # the browser leg negotiates VP8: other codecs are decoded and re-encoded
            conn = DirectConnection(
                on_video=self._on_video,
                on_audio=self._on_audio,
                on_event=self._on_event,
                on_state=self._on_state,
                ice_servers=session.ice_servers,
                receive_media=channel is None,
            )
            self._conn = conn
            answer = await conn.answer(session.sdp)
            if channel is not None:
                feed = PacketFeed(channel, session.session_id, on_video=self._on_video_packet)
                self._feed = feed
                await feed.connect(self.options.connect_timeout)
            await asyncio.to_thread(self.client.start, session.session_id, answer)
        elif session.url and session.access_token:
            from lib.live.media.livekit import LiveKitConnection  # heavy import, only for HeyGen v2

            liveavatar = isinstance(self.client, LiveAvatarStreaming)
            room = LiveKitConnection(
                on_video=self._on_video,
                on_audio=self._on_audio,
                on_event=self._on_event,
                on_state=self._on_state,
                only_participant=AVATAR_PARTICIPANT if liveavatar else None,
            )
            self._conn = room
            if isinstance(self.client, LiveAvatarStreaming):
                self.client.attach_room(session.session_id, room)  # its commands go out as data messages
            await asyncio.to_thread(self.client.start, session.session_id)  # as HeyGen's SDK: start, then join
            await room.connect(session.url, session.access_token, timeout=self.options.connect_timeout)
        else:
            raise HeyGenError(
                None,
                "",
                user_message=(f"{self.client.provider_label} answered with neither a WebRTC offer nor a LiveKit room."),
            )

    def _log_open(self) -> None:
        if self.usage is None or self.provider_session is None:
            return
        req = self.options.request
        self.usage.open_session(
            self.provider_session.session_id,
            self.provider,
            req.avatar_id or req.avatar_name or "",
            req.voice_id or "",
            req.quality or "",
            req.video_encoding or "VP8",
            started_by_dashboard=True,
            endpoint=self.client.endpoint,
        )
        for kind, details in self.options.open_events:
            self._log_event(kind, details)

    def _log_event(self, kind: str, details: dict[str, Any] | None) -> None:
        if self.usage is not None and self.provider_session is not None:
            try:
                self.usage.record_event(self.provider_session.session_id, kind, details)
            except Exception:  # the log must never take the live session down
                log.exception("could not write %s to the usage log", kind)

    async def _fail(self, message: str, kind: str | None = None) -> None:
        if self._stopping:
            await self._shutdown(self.end_reason or EndReason.STOPPED)
            return  # the user stopped it meanwhile: not an error
        self.error = message
        self.error_kind = kind
        self.state = SessionState.FAILED
        self._log_event(EventKind.ERROR, {"error": message})
        await self._shutdown(EndReason.ERROR)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.options.keep_alive_every)
            if time.monotonic() - self._watched_at > self.options.watcher_timeout:
                await self._shutdown(EndReason.WATCHER_GONE)
                return
            try:
                sent = time.monotonic()
                if self.provider_session is not None:
                    await asyncio.to_thread(self.client.keep_alive, self.provider_session.session_id)
                self._activity_at = time.monotonic()
                self._keep_alive_rtt_ms = (self._activity_at - sent) * 1000
                self._log_event(EventKind.KEEP_ALIVE, None)
            except (SessionNotFound, SessionStateError):
                await self._lost("The provider closed the session (idle timeout or duration limit).")
                return
            except HeyGenError as exc:
                self._log_event(EventKind.ERROR, {"action": "keep_alive", "error": str(exc)})

    def seconds_left(self) -> float | None:
        """Until the dashboard's duration cap stops the session (None without a cap)."""
        if self.options.max_duration is None or self.connected_wall is None:
            return None
        return self.options.max_duration - self.age_seconds()

    async def _monitor(self) -> None:
        """Twice a second: is anyone watching, is the cap reached, is video still arriving; and the
        usage-log heartbeat every ``heartbeat_every`` seconds."""
        last_beat = last_stats = 0.0
        while True:
            now = time.monotonic()
            if now - last_stats >= 2.0:
                last_stats = now
                await self._measure_quality(now)
            if now - last_beat >= self.options.heartbeat_every and self.usage is not None and self.provider_session:
                last_beat = now
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.usage.heartbeat, self.provider_session.session_id)
            if now - self._watched_at > self.options.watcher_timeout:
                await self._shutdown(EndReason.WATCHER_GONE)
                return
            left = self.seconds_left()
            if left is not None and left <= 0:
                await self._shutdown(EndReason.DURATION_CAP)
                return
            if now - self._last_frame_at > self.options.video_stall_timeout:
                await self._lost(f"No video from the avatar for {self.options.video_stall_timeout:.0f} s.")
                return
            await asyncio.sleep(min(0.5, self.options.heartbeat_every))

    async def _measure_quality(self, now: float) -> None:
        pc = getattr(self._conn, "pc", None)  # direct WebRTC; LiveKit rooms report frames only
        stats = []
        if pc is not None:
            with contextlib.suppress(Exception):
                stats = list((await pc.getStats()).values())
        measured = self._meter.sample(now, self.frames_received, stats, self._keep_alive_rtt_ms)
        if measured is not None:
            self.quality = measured

    async def _lost(self, message: str) -> None:
        """The media or the provider session went away: reconnect with a new session, keeping the transcript."""
        if self.state is not SessionState.CONNECTED or self._stopping:
            return
        if isinstance(self.client, LiveAvatarStreaming) and self.session_id is not None:
            # LiveAvatar ended it on purpose (duration limit, sandbox minute, no credits): a new session would
            # undo that and bill again.
            ended = await asyncio.to_thread(self.client.ended_reason, self.session_id)
            if ended is not None:
                await self._provider_stopped(ended)
                return
        self.state = SessionState.RECONNECTING
        self.error = message
        self._log_event(EventKind.ERROR, {"error": message})
        # The picture was gone from the last frame on, not from when the loss was noticed (seconds later).
        lost_at = self._last_frame_at
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        await self._release(EndReason.DISCONNECTED)
        self._tasks = [asyncio.get_running_loop().create_task(self._reconnect(lost_at))]

    async def _reconnect(self, lost_at: float) -> None:
        previous = self.session_id
        delay = 1.0
        for attempt in range(1, self.options.reconnect_attempts + 1):
            await asyncio.sleep(delay)
            if self._stopping:
                return
            if attempt == 1 and previous is not None and await asyncio.to_thread(self._force_stopped, previous):
                # Someone stopped it on purpose (to end its cost): a new session would undo that.
                self.error = (
                    "This session was force-stopped from the Sessions page or the command line. "
                    "Press Reconnect for a new one."
                )
                self.state = SessionState.DISCONNECTED
                self._log_event(EventKind.ERROR, {"error": "force-stopped elsewhere; not reconnecting"})
                await self._shutdown(EndReason.FORCE_STOPPED)
                return
            try:
                await self._establish()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                message, _ = self._describe(exc)
                self.error = f"{message.rstrip('.')}. Reconnecting (attempt {attempt} failed)…"
                await self._release(EndReason.ERROR)
                delay = min(delay * 2, 8.0)
                continue
            self.reconnects += 1
            downtime_ms = round((time.monotonic() - lost_at) * 1000)
            self.error = None
            self._log_event(
                EventKind.RECONNECT,
                {
                    "attempt": attempt,
                    "downtime_ms": downtime_ms,
                    "previous_session_id": previous,
                    "reconnects": self.reconnects,
                },
            )
            self._went_live()
            return
        self.error = (
            f"Could not reconnect after {self.options.reconnect_attempts} attempts. "
            f"Check that {self.client.provider_label} is running, then press Reconnect."
        )
        self.state = SessionState.DISCONNECTED
        await self._shutdown(EndReason.DISCONNECTED)

    async def _provider_stopped(self, reason: str) -> None:
        """The provider ended the session itself (``session.stopped``): log its reason, no reconnect."""
        if self._stopping:
            return
        self.provider_end_reason = reason
        self.error = f"{self.client.provider_label} ended the session ({reason})."
        self._log_event(EventKind.CLOSED, {"provider_end_reason": reason})
        await self._shutdown(EndReason.PROVIDER_ENDED)

    def _force_stopped(self, session_id: str) -> bool:
        if self.usage is None:
            return False
        try:
            return self.usage.was_force_stopped(session_id)
        except Exception:  # an unreadable log must not stop a reconnect
            log.exception("could not read the usage log")
            return False

    async def _release(self, reason: EndReason) -> None:
        """Close the current media and provider session (not the live session: a reconnect may follow)."""
        if isinstance(self.client, LiveAvatarStreaming):
            # Stop first: LiveAvatar (and its twin) ends a session whose viewer left as USER_DISCONNECTED, and
            # the usage history should say USER_CLOSED, the reason we send.
            await self._stop_provider(reason)
        if self._feed is not None:
            with contextlib.suppress(Exception):
                await self._feed.close()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
        await self._stop_provider(reason)

    async def _shutdown(self, reason: EndReason) -> None:
        self._stopping = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self.end_reason is not None:
            return
        self.end_reason = reason
        if self.state in LIVE_STATES:
            self.state = SessionState.CLOSED
        self.speaking = False
        await self._release(reason)
        self.finished.set()
        _session_closed()

    async def _stop_provider(self, reason: EndReason) -> None:
        if self.provider_session is None or self.provider_session.session_id in self._stopped_sessions:
            return
        self._stopped_sessions.add(self.provider_session.session_id)
        try:
            await asyncio.to_thread(self.client.stop, self.provider_session.session_id)
        except (SessionNotFound, SessionStateError):
            pass  # already gone at the provider: nothing is billing
        except HeyGenError as exc:
            self._log_event(EventKind.ERROR, {"action": "stop", "error": str(exc)})
        if self.usage is not None:
            with contextlib.suppress(Exception):
                self.usage.close_session(self.provider_session.session_id, reason)

    # --- media callbacks (media loop) --------------------------------------------------------
    def _on_video(self, frame: av.frame.Frame) -> None:
        self._last_frame_at = time.monotonic()
        # The transports hand video frames to this callback only.
        self._recent.add(cast(av.VideoFrame, frame), self._last_frame_at)
        self.frames_received += 1
        if not self._first_frame.is_set():
            self.first_frame_ms = round((time.monotonic() - self._establishing_since) * 1000, 1)
            self._first_frame.set()

    def _on_video_packet(self) -> None:
        """A forwarded video packet arrived: the media is flowing (nothing decoded, so no latest frame)."""
        self._last_frame_at = time.monotonic()
        self.frames_received += 1
        if not self._first_frame.is_set():
            self.first_frame_ms = round((time.monotonic() - self._establishing_since) * 1000, 1)
            self._first_frame.set()

    def _on_audio(self, frame: av.frame.Frame) -> None:
        if self._audio_out is not None:
            self._audio_out(to_mono_s16(cast(av.AudioFrame, frame)))

    def _on_event(self, event: dict[str, Any]) -> None:
        if "event_type" in event:  # LiveAvatar's agent-response (LiveKit data): in this session's terms
            for translated in self._agent_events.translate(event):
                self._on_event(translated)
            return
        now = time.monotonic()
        kind, task_id = event.get("type"), event.get("task_id")
        with self._lock:
            self._events.append((time.time(), event))
            if kind == "avatar_start_talking":
                self.speaking = True
                self.awaiting_answer = False
                sent = self._task_sent.get(task_id) if task_id is not None else None
                sent = sent if sent is not None else self._last_sent_at
                if sent is not None:
                    self.last_task_to_talk_ms = round((now - sent) * 1000, 1)
            elif kind == "avatar_talking_message":
                turn = next((t for t in reversed(self._turns) if t.role == "avatar" and t.task_id == task_id), None)
                if turn is None:
                    self._turns.append(
                        Turn(
                            "avatar", event.get("message", ""), task_id, interrupted=task_id in self._interrupted_tasks
                        )
                    )
                else:
                    turn.text = f"{turn.text} {event.get('message', '')}".strip()
            elif kind in ("avatar_stop_talking", "avatar_end_message"):
                self.speaking = False
                for turn in self._turns:
                    if turn.task_id == task_id:
                        turn.done = True
            elif kind == "avatar_transcript":  # the whole of what the avatar said: replaces its partials
                turn = next((t for t in reversed(self._turns) if t.role == "avatar" and t.task_id == task_id), None)
                if turn is None:
                    self._turns.append(Turn("avatar", event.get("message", ""), task_id, done=True))
                else:
                    turn.text, turn.done = event.get("message", "") or turn.text, True
            elif kind == "user_transcript":
                text = str(event.get("message", "")).strip()
                last_user = next((t for t in reversed(self._turns) if t.role == "user"), None)
                # Our own messages come back as the user's words too: show each once.
                if text and (last_user is None or last_user.text.strip() != text):
                    self._turns.append(Turn("user", text, done=True))
        if kind == "provider_stopped":
            media_loop.submit(self._provider_stopped(str(event.get("end_reason") or "UNKNOWN")))

    def _on_state(self, state: str) -> None:
        if state in ("failed", "closed") and self.state is SessionState.CONNECTED and not self._stopping:
            media_loop.submit(self._lost("The media connection to the avatar dropped."))
