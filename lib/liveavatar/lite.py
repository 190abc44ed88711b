"""LITE mode: we bring the voice, LiveAvatar (or the engine's twin) renders the lips — over the ``ws_url`` socket.

Contract (``docs/liveavatar-api.md`` §3, §5.2): JSON text frames keyed by ``type``. The server sends
``session.state_updated`` (``connecting`` → ``connected`` → ``closing`` → ``closed``); commands sent before
``connected`` are silently dropped by the server, so this driver *queues* them and sends once connected. Speech
is raw PCM s16le, 24 kHz, mono, base64 in ``agent.speak`` messages of about one second (the first ~600 ms, so the
avatar starts sooner), all chunks of one utterance sharing an ``event_id``, then ``agent.speak_end``. A wrong
format makes a garbled or silent avatar without any error, so :class:`LitePcm` refuses anything else before it
is sent (:func:`to_lite_pcm` converts our voices' audio). ``agent.interrupt`` stops the avatar; this driver also
drops every chunk still queued on our side. ``session.keep_alive`` goes out every 60 s (idle timeout: 5 min).

Loop story: :class:`LiteSession` is asyncio — create it, call and await it on one event loop. A controller that
is not asyncio (Streamlit, a CLI) uses :class:`LiteSessionThread`, which runs a LiteSession on its own loop in a
daemon thread and whose methods may be called from any thread; events arrive in its ``events`` queue.

Pacing: chunks are sent at most ``lead`` seconds of audio ahead of real time, so the server holds little and
an interrupt finds most of a long answer still here to drop. The ``ws_url`` carries a credential (a token in its
query): it never appears in a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import av
import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from lib.event_wait import wait_event
from lib.liveavatar.models import SessionEndReason

log = logging.getLogger("avatar_ops.liveavatar.lite")

SAMPLE_RATE = 24_000
BYTES_PER_SECOND = SAMPLE_RATE * 2  # s16 mono
FIRST_CHUNK_SECONDS = 0.6
CHUNK_SECONDS = 1.0
MAX_MESSAGE_BYTES = 1_000_000  # the server may close the socket on a larger message
KEEP_ALIVE_SECONDS = 60.0
LEAD_SECONDS = 2.0


class LiteError(Exception):
    """The LITE socket could not be opened or was lost; the message never holds the URL's token."""


class AudioFormatError(ValueError):
    """Audio that is not PCM s16le 24 kHz mono: LiveAvatar would play it garbled or silent without an error."""


class LiteState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSING = "closing"
    CLOSED = "closed"


class LiteEventType(StrEnum):
    STATE_UPDATED = "session.state_updated"
    SPEAK_STARTED = "agent.speak_started"
    SPEAK_ENDED = "agent.speak_ended"
    SPEAK_INTERRUPTED = "agent.speak_interrupted"  # third-party handlers only
    IDLE_STARTED = "agent.idle_started"
    IDLE_ENDED = "agent.idle_ended"
    SESSION_STOPPED = "session.stopped"
    ERROR = "error"  # the engine twin's report of a message it refused (not in LiveAvatar's docs)
    DISCONNECTED = "local.disconnected"  # this driver's own: the socket closed (code and reason in `message`)


@dataclass(frozen=True)
class LiteEvent:
    """One message from the socket. ``type`` is a :class:`LiteEventType` value or, for unknown messages, the
    server's own string; ``event_id`` is the speak's id on speak events."""

    type: str
    event_id: str | None = None
    state: LiteState | None = None
    end_reason: SessionEndReason | None = None
    task_id: str | None = None
    message: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def parse_message(text: str | bytes) -> LiteEvent:
    """One server frame → :class:`LiteEvent`; :class:`ValueError` when it is not a JSON object with a ``type``."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("LITE message is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ValueError("LITE message is not a JSON object with a 'type'")
    kind = data["type"]
    state = None
    if kind == LiteEventType.STATE_UPDATED:
        with contextlib.suppress(ValueError):
            state = LiteState(str(data.get("state", "")).lower())
    end_reason = None
    if kind == LiteEventType.SESSION_STOPPED:
        try:
            end_reason = SessionEndReason(str(data.get("end_reason") or "UNKNOWN").upper())
        except ValueError:
            end_reason = SessionEndReason.UNKNOWN
    task = data.get("task")
    return LiteEvent(
        type=kind,
        event_id=str(data["event_id"]) if data.get("event_id") is not None else None,
        state=state,
        end_reason=end_reason,
        task_id=str(task["id"]) if isinstance(task, dict) and task.get("id") is not None else None,
        message=str(data.get("message") or ""),
        raw=data,
    )


# --- audio --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LitePcm:
    """Audio in LITE's only format: PCM signed 16-bit little-endian, 24 kHz, mono (``data`` is the raw bytes)."""

    data: bytes

    def __post_init__(self) -> None:
        if len(self.data) % 2:
            raise AudioFormatError(
                f"LITE audio is 16-bit samples: {len(self.data)} bytes is not a whole number of them"
            )

    @property
    def seconds(self) -> float:
        return len(self.data) / BYTES_PER_SECOND

    @classmethod
    def from_samples(cls, samples: np.ndarray, sample_rate: int) -> LitePcm:
        """Exactly-formatted samples only (int16, mono, 24 kHz); anything else is refused, saying what it is."""
        if sample_rate != SAMPLE_RATE:
            raise AudioFormatError(
                f"LITE audio must be 24000 Hz; this is {sample_rate} Hz (convert it with to_lite_pcm)"
            )
        array = _mono(samples)
        if array.dtype != np.int16:
            raise AudioFormatError(
                f"LITE audio must be 16-bit integer samples; this is {array.dtype} (convert it with to_lite_pcm)"
            )
        return cls(array.astype("<i2", copy=False).tobytes())


def _mono(samples: np.ndarray) -> np.ndarray:
    array = np.asarray(samples)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise AudioFormatError(f"LITE audio must be mono; this has shape {array.shape} (mix it down first)")
    return array


def to_lite_pcm(samples: np.ndarray, sample_rate: int) -> LitePcm:
    """Mono audio at any rate — float in [-1, 1] (piper's own output) or int16 (the engine's 48 kHz
    ``SpeechChunk.audio``) — resampled to 24 kHz s16 with libswresample."""
    array = _mono(samples)
    if sample_rate <= 0:
        raise AudioFormatError(f"Not a sample rate: {sample_rate}")
    if array.dtype == np.int16:
        fmt, data = "s16", np.ascontiguousarray(array)
    elif np.issubdtype(array.dtype, np.floating):
        fmt, data = "flt", np.ascontiguousarray(np.clip(array, -1.0, 1.0), dtype=np.float32)
    else:
        raise AudioFormatError(f"Audio samples must be float in [-1, 1] or int16; these are {array.dtype}")
    if sample_rate == SAMPLE_RATE and fmt == "s16":
        return LitePcm(data.astype("<i2", copy=False).tobytes())
    if len(data) == 0:
        return LitePcm(b"")
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    frame = av.AudioFrame.from_ndarray(data[None, :], format=fmt, layout="mono")
    frame.sample_rate = sample_rate
    out = [f.to_ndarray().reshape(-1) for f in (*resampler.resample(frame), *resampler.resample(None))]
    pcm = np.concatenate(out).astype("<i2", copy=False) if out else np.zeros(0, "<i2")
    return LitePcm(pcm.tobytes())


def chunk_sizes(
    total_bytes: int, first_seconds: float = FIRST_CHUNK_SECONDS, seconds: float = CHUNK_SECONDS
) -> list[int]:
    """How a whole utterance of ``total_bytes`` is cut: the first chunk shorter, then even ones, a short tail."""
    first, rest = _even(first_seconds * BYTES_PER_SECOND), _even(seconds * BYTES_PER_SECOND)
    sizes, left, size = [], total_bytes, first
    while left > 0:
        sizes.append(min(size, left))
        left -= sizes[-1]
        size = rest
    return sizes


def _even(n: float) -> int:
    return max(2, int(n) // 2 * 2)


# --- the driver ---------------------------------------------------------------------------------


class LiteUtterance:
    """One utterance being sent: audio added as it is synthesized, then :meth:`end`. All its chunks share
    ``event_id``. Methods run on the session's loop (use :class:`LiteSessionThread` from other threads)."""

    def __init__(self, session: LiteSession, event_id: str) -> None:
        self.event_id = event_id
        self._session = session
        self._buffer = bytearray()
        self._chunks_sent = 0
        self.bytes_sent = 0
        self.ended = False
        self.cancelled = False
        self.first_sent_at: float | None = None

    def add(self, pcm: LitePcm) -> None:
        if self.ended or self.cancelled:
            return
        self._buffer.extend(pcm.data)
        self._session._wake.set()

    def end(self) -> None:
        self.ended = True
        self._session._wake.set()

    def _next_chunk(self) -> bytes | None:
        """The next chunk when one is complete (or the tail once ended); None when more audio is needed."""
        s = self._session
        size = _even((s.first_chunk_seconds if self._chunks_sent == 0 else s.chunk_seconds) * BYTES_PER_SECOND)
        if len(self._buffer) >= size or (self.ended and self._buffer):
            chunk = bytes(self._buffer[:size])
            del self._buffer[:size]
            return chunk
        return None

    def _unsend(self, chunk: bytes) -> None:
        self._buffer[:0] = chunk

    @property
    def seconds_sent(self) -> float:
        return self.bytes_sent / BYTES_PER_SECOND


class LiteSession:
    """The LITE socket of one session, on one asyncio loop. ``on_event`` is called on that loop for every
    message (and :class:`LiteEventType.DISCONNECTED` when the socket closes); ``events`` queues them too."""

    def __init__(
        self,
        ws_url: str,
        *,
        on_event: Callable[[LiteEvent], None] | None = None,
        keep_alive_seconds: float = KEEP_ALIVE_SECONDS,
        first_chunk_seconds: float = FIRST_CHUNK_SECONDS,
        chunk_seconds: float = CHUNK_SECONDS,
        lead_seconds: float = LEAD_SECONDS,
        send_start_message: bool = False,
    ) -> None:
        if not 0 < first_chunk_seconds <= chunk_seconds or chunk_seconds * BYTES_PER_SECOND * 4 / 3 > MAX_MESSAGE_BYTES:
            raise ValueError("Chunk lengths must be positive, the first no longer than the rest, and under 1 MB")
        self._url = ws_url
        self.host = urlsplit(ws_url).netloc  # for messages: never the URL itself (its query holds the token)
        self._on_event = on_event
        self.keep_alive_seconds = keep_alive_seconds
        self.first_chunk_seconds = first_chunk_seconds
        self.chunk_seconds = chunk_seconds
        self.lead_seconds = lead_seconds
        self._send_start = send_start_message
        self.events: asyncio.Queue[LiteEvent] = asyncio.Queue()
        self.state = LiteState.CONNECTING
        self.speaking = False
        self.end_reason: SessionEndReason | None = None
        self.sent: list[dict[str, Any]] = []  # what went out, audio left out (for tests and diagnostics)
        self._ws: ClientConnection | None = None
        self._outbox: deque[LiteUtterance] = deque()
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._closed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    # --- lifecycle ----------------------------------------------------------------------------
    async def connect(self, timeout: float = 15.0) -> None:
        """Open the socket and wait for ``connected``; :class:`LiteError` when refused, closed or too slow."""
        try:
            self._ws = await asyncio.wait_for(connect(self._url, ping_interval=None, max_size=2**22), timeout)
        except InvalidStatus as exc:
            raise LiteError(
                f"The LITE socket at {self.host} refused the connection (HTTP {exc.response.status_code})"
            ) from None
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise LiteError(f"Could not open the LITE socket at {self.host}: {type(exc).__name__}") from None
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read(), name="lite-read"),
            loop.create_task(self._send_loop(), name="lite-send"),
            loop.create_task(self._keep_alive(), name="lite-keep-alive"),
        ]
        connected = loop.create_task(self._connected.wait())
        closed = loop.create_task(self._closed.wait())
        done, pending = await asyncio.wait({connected, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if connected not in done:
            await self.close()
            why = "closed the socket" if closed in done else f"did not report 'connected' within {timeout:.0f} s"
            raise LiteError(f"The LITE session at {self.host} {why}")

    async def close(self) -> None:
        """Close our side (the session itself is stopped with the REST API)."""
        self._cancel_queued()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._closed.set()

    async def wait_closed(self, timeout: float | None = None) -> bool:
        return await wait_event(self._closed, timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and not self._closed.is_set()

    # --- speech -------------------------------------------------------------------------------
    def begin(self, event_id: str | None = None) -> LiteUtterance:
        """A new utterance to stream audio into (queued behind earlier ones)."""
        utt = LiteUtterance(self, event_id or str(uuid.uuid4()))
        self._outbox.append(utt)
        self._wake.set()
        return utt

    def speak(self, pcm: LitePcm, event_id: str | None = None) -> str:
        """Queue one whole utterance; returns its ``event_id`` (speak events name it)."""
        utt = self.begin(event_id)
        utt.add(pcm)
        utt.end()
        return utt.event_id

    async def interrupt(self) -> int:
        """Stop the avatar now: drop everything queued here, then send ``agent.interrupt``. Returns how many
        utterances were dropped here before the server heard them in full."""
        dropped = self._cancel_queued()
        if self.connected:
            await self._send({"type": "agent.interrupt", "event_id": str(uuid.uuid4())})
        return dropped

    async def start_listening(self) -> None:
        await self._command("agent.start_listening")

    async def stop_listening(self) -> None:
        await self._command("agent.stop_listening")

    async def keep_alive(self) -> None:
        await self._command("session.keep_alive")

    @property
    def queued_seconds(self) -> float:
        """Audio accepted but not sent yet."""
        return sum(len(u._buffer) for u in self._outbox) / BYTES_PER_SECOND

    # --- internals ----------------------------------------------------------------------------
    async def _command(self, kind: str) -> None:
        if not self.connected:
            await self._wait_connected()
        await self._send({"type": kind, "event_id": str(uuid.uuid4())})

    async def _wait_connected(self) -> None:
        waiter = asyncio.ensure_future(self._connected.wait())
        closer = asyncio.ensure_future(self._closed.wait())
        await asyncio.wait({waiter, closer}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        closer.cancel()
        if not self.connected:
            raise LiteError(f"The LITE socket at {self.host} is closed")

    def _cancel_queued(self) -> int:
        dropped = 0
        for utt in self._outbox:
            utt.cancelled = True
            utt._buffer.clear()
            dropped += 1
        self._outbox.clear()
        self._wake.set()
        return dropped

    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws is None:
            raise LiteError("The LITE socket is not open")
        try:
            await self._ws.send(json.dumps(message, separators=(",", ":")))
        except ConnectionClosed:
            raise LiteError(f"The LITE socket at {self.host} is closed") from None
        self.sent.append({k: (f"<{len(v)} base64 chars>" if k == "audio" else v) for k, v in message.items()})

    async def _send_loop(self) -> None:
        await self._connected.wait()
        if self._send_start:
            # HeyGen's own starter declares the format first (undocumented; the twin checks it).
            await self._send({"type": "start", "encoding": "pcm_s16le", "sample_rate": SAMPLE_RATE, "channels": 1})
        while True:
            utt = self._outbox[0] if self._outbox else None
            if utt is None or utt.cancelled:
                if utt is not None:
                    self._outbox.popleft()
                    continue
                self._wake.clear()
                await self._wake.wait()
                continue
            chunk = utt._next_chunk()
            if chunk is None:
                if utt.ended:
                    await self._send({"type": "agent.speak_end", "event_id": utt.event_id})
                    self._outbox.popleft()
                else:
                    self._wake.clear()
                    await self._wake.wait()
                continue
            ahead = utt.seconds_sent - (time.monotonic() - utt.first_sent_at) if utt.first_sent_at else 0.0
            if ahead > self.lead_seconds:
                utt._unsend(chunk)  # not yet: an interrupt meanwhile must still be able to drop it
                self._wake.clear()
                await wait_event(self._wake, min(0.05, ahead - self.lead_seconds))
                continue
            audio = base64.b64encode(chunk).decode("ascii")
            await self._send({"type": "agent.speak", "audio": audio, "event_id": utt.event_id})
            utt.first_sent_at = utt.first_sent_at or time.monotonic()
            utt.bytes_sent += len(chunk)
            utt._chunks_sent += 1

    async def _keep_alive(self) -> None:
        await self._connected.wait()
        while True:
            await asyncio.sleep(self.keep_alive_seconds)
            with contextlib.suppress(LiteError):
                await self._send({"type": "session.keep_alive", "event_id": str(uuid.uuid4())})

    async def _read(self) -> None:
        assert self._ws is not None
        code, reason = None, ""
        try:
            async for frame in self._ws:
                try:
                    event = parse_message(frame)
                except ValueError as exc:
                    log.warning("LITE socket at %s sent something unreadable: %s", self.host, exc)
                    continue
                self._handle(event)
        except ConnectionClosed:
            pass
        finally:
            code, reason = self._ws.close_code, self._ws.close_reason or ""
            for task in self._tasks:  # nothing left to send to: the sender and keep-alive end with the socket
                if task is not asyncio.current_task():
                    task.cancel()
            self.state = LiteState.CLOSED
            self.speaking = False
            self._cancel_queued()
            self._closed.set()
            self._deliver(LiteEvent(LiteEventType.DISCONNECTED, message=f"{code} {reason}".strip()))

    def _handle(self, event: LiteEvent) -> None:
        if event.type == LiteEventType.STATE_UPDATED and event.state is not None:
            self.state = event.state
            if event.state is LiteState.CONNECTED:
                self._connected.set()
                self._wake.set()
        elif event.type == LiteEventType.SPEAK_STARTED:
            self.speaking = True
        elif event.type in (LiteEventType.SPEAK_ENDED, LiteEventType.SPEAK_INTERRUPTED):
            self.speaking = False
        elif event.type == LiteEventType.SESSION_STOPPED:
            self.end_reason = event.end_reason
            self._cancel_queued()
        self._deliver(event)

    def _deliver(self, event: LiteEvent) -> None:
        self.events.put_nowait(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a controller's bug must not kill the socket reader
                log.exception("LITE event handler failed on %s", event.type)


class LiteSessionThread:
    """A :class:`LiteSession` on its own event loop in a daemon thread; every method is thread-safe.

    Events arrive in ``events`` (a :class:`queue.Queue`) and, if given, through ``on_event`` called on the
    driver's thread. :meth:`close` ends the thread.
    """

    def __init__(self, ws_url: str, *, on_event: Callable[[LiteEvent], None] | None = None, **options: Any) -> None:
        self.events: queue.Queue[LiteEvent] = queue.Queue()
        self._utterances: dict[str, LiteUtterance] = {}
        self._user_on_event = on_event
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="liveavatar-lite", daemon=True)
        self._thread.start()
        self.session: LiteSession = self._call(self._make(ws_url, options)).result()

    async def _make(self, ws_url: str, options: dict[str, Any]) -> LiteSession:
        return LiteSession(ws_url, on_event=self._on_event, **options)

    def _on_event(self, event: LiteEvent) -> None:
        self.events.put(event)
        if self._user_on_event is not None:
            self._user_on_event(event)

    def _call(self, coro: Any) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def connect(self, timeout: float = 15.0) -> None:
        self._call(self.session.connect(timeout)).result(timeout + 5)

    def speak(self, pcm: LitePcm, event_id: str | None = None) -> str:
        event_id = event_id or str(uuid.uuid4())
        self._loop.call_soon_threadsafe(self.session.speak, pcm, event_id)
        return event_id

    def begin(self, event_id: str | None = None) -> str:
        """Start a streamed utterance; feed it with :meth:`add` and finish it with :meth:`end`."""
        event_id = event_id or str(uuid.uuid4())

        async def start() -> LiteUtterance:
            return self.session.begin(event_id)

        self._utterances[event_id] = self._call(start()).result(5)
        return event_id

    def add(self, event_id: str, pcm: LitePcm) -> None:
        utt = self._utterances.get(event_id)
        if utt is not None:
            self._loop.call_soon_threadsafe(utt.add, pcm)

    def end(self, event_id: str) -> None:
        utt = self._utterances.pop(event_id, None)
        if utt is not None:
            self._loop.call_soon_threadsafe(utt.end)

    def interrupt(self, timeout: float = 5.0) -> int:
        self._utterances.clear()
        return self._call(self.session.interrupt()).result(timeout)

    def keep_alive(self, timeout: float = 5.0) -> None:
        self._call(self.session.keep_alive()).result(timeout)

    def listening(self, on: bool, timeout: float = 5.0) -> None:
        """``agent.start_listening`` / ``agent.stop_listening``: the avatar's listening pose."""
        command = self.session.start_listening() if on else self.session.stop_listening()
        self._call(command).result(timeout)

    @property
    def speaking(self) -> bool:
        return self.session.speaking

    @property
    def state(self) -> LiteState:
        return self.session.state

    @property
    def end_reason(self) -> SessionEndReason | None:
        return self.session.end_reason

    def close(self, timeout: float = 5.0) -> None:
        if not self._loop.is_closed() and self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self.session.close()).result(timeout)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._loop.close()
