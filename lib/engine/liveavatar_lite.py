"""The twin's LITE WebSocket (``docs/liveavatar-api.md`` §3, §5.2): speech arrives as audio, the engine moves the lips.

**Where.** ``POST /v1/sessions/start`` of a LITE session answers ``ws_url`` =
``ws://<engine host:port>/v1/lite/<session_id>?token=<socket token>`` (``wss`` behind TLS). The token is
random, made at ``/start`` for that session only, and is neither the API key nor the session token. A wrong
token, an unknown or ended session, or a second socket while one is open: the handshake is refused (HTTP 403).
One socket at a time per session; closing it does not end the session (``/v1/sessions/stop`` does).

**Protocol.** On open the engine sends ``session.state_updated`` ``connecting``, starts the session's render
clock (the avatar renders whether or not a WebRTC viewer is attached, as LiveAvatar's room does), and sends
``connected`` once the first frame is drawn. Messages before that are dropped, as LiveAvatar does. Then:

* ``agent.speak`` ``{audio, event_id}`` — base64 PCM s16le 24 kHz mono; resampled to the engine's 48 kHz and
  queued on the session's speech buffer, one utterance per ``event_id``. The mouth follows the audio envelope
  (no phoneme timings: shape by loudness, closed in silence). ``agent.speak_end`` ``{event_id}`` ends it.
* ``agent.speak_started`` / ``agent.speak_ended`` ``{event_id, task: {id}}`` go back when its first / last
  frame plays (an interrupted utterance that had started also gets ``speak_ended``).
* ``agent.interrupt`` drops every queued utterance and the audio already rendered, at once; later chunks of
  a dropped ``event_id`` are ignored. ``session.keep_alive`` resets the idle timer;
  ``agent.start_listening``/``stop_listening`` set the listening pose.
* When the session ends (stop, idle, max duration, credits, shutdown): ``closing``, ``session.stopped``
  ``{end_reason}``, ``closed``, then the socket closes with code 1000.

**Local extensions** (not LiveAvatar's, for diagnosis): a message the engine refuses is answered with
``{"type": "error", "message": ..., "event_id"?: ...}`` — audio that is not base64 or not whole 16-bit samples,
an unknown ``type``, invalid JSON, or audio after a ``start`` message that declared another format
(HeyGen's starter sends ``{"type": "start", "encoding": "pcm_s16le", "sample_rate": 24000, "channels": 1}``;
the engine checks it when sent). A message over 1 MB closes the socket with 1009, as LiveAvatar may.
A wrong sample rate in raw PCM cannot be detected from the bytes: it plays at the wrong speed, as on LiveAvatar.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from lib.engine import errors as E
from lib.engine.lipsync import envelope
from lib.engine.liveavatar_state import LiveAvatarState, LiveSession, end_reason_of
from lib.engine.media import SAMPLE_RATE
from lib.engine.sessions import EngineSession
from lib.engine.speaker import PreparedChunk, Utterance
from lib.engine.tts import SpeechChunk

log = logging.getLogger("avatar_ops.engine.lite")

LITE_RATE = 24_000
MAX_MESSAGE_BYTES = 1_000_000
EVENT_POLL_SECONDS = 0.02
# A speak whose audio stopped coming without agent.speak_end is ended after this, so a crashed client
# cannot keep the avatar "speaking" (and the session from idling out) for ever.
ABANDONED_SPEAK_SECONDS = 5.0
CONNECT_FRAME_TIMEOUT = 5.0


def ws_url(base_url: str, session_id: str, token: str) -> str:
    """The socket address for a LITE session, from the engine's HTTP base URL."""
    base = base_url.rstrip("/")
    scheme, _, rest = base.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/v1/lite/{session_id}?token={token}"


class _Speak:
    """One received utterance (one event_id) on its way into the engine's speech buffer."""

    def __init__(self, event_id: str, utt: Utterance) -> None:
        self.event_id = event_id
        self.utt = utt
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self.last_audio = time.monotonic()

    def resample(self, pcm: np.ndarray | None) -> np.ndarray:
        if pcm is None:
            frames = self.resampler.resample(None)
        else:
            frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
            frame.sample_rate = LITE_RATE
            frames = self.resampler.resample(frame)
        out = [f.to_ndarray().reshape(-1) for f in frames]
        return np.concatenate(out).astype(np.int16, copy=False) if out else np.zeros(0, np.int16)


class LiteSocket:
    """One open socket bound to one running LiveAvatar LITE session; lives on the engine's loop."""

    def __init__(self, websocket: WebSocket, live: LiveSession) -> None:
        self.ws = websocket
        self.live = live
        self.engine: EngineSession = live.engine
        self.connected = False
        self.format_error: str | None = None
        self.speaks: dict[str, _Speak] = {}  # open utterances by event_id
        self.by_task: dict[str, _Speak] = {}  # every utterance by the engine task id (for its events)
        self.dropped: set[str] = set()  # event ids interrupted: their late chunks are ignored
        self._send_lock = asyncio.Lock()
        self._seq = self.engine.events.seq  # engine events before the socket opened are not ours

    async def send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send_text(json.dumps(message, separators=(",", ":")))

    async def error(self, message: str, event_id: str | None = None) -> None:
        body: dict[str, Any] = {"type": "error", "message": message}
        if event_id:
            body["event_id"] = event_id
        await self.send(body)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await self.send({"type": "session.state_updated", "state": "connecting"})
        tasks = [loop.create_task(self._receive()), loop.create_task(self._pump()), loop.create_task(self._connect())]
        ended = loop.create_task(self.engine.closed.wait())
        try:
            done, _ = await asyncio.wait([*tasks, ended], return_when=asyncio.FIRST_COMPLETED)
            if ended in done:
                await self._pump_once()  # the last speak_ended before session.stopped
                reason = end_reason_of(self.engine)
                with contextlib.suppress(Exception):
                    await self.send({"type": "session.state_updated", "state": "closing"})
                    await self.send({"type": "session.stopped", "end_reason": reason.value})
                    await self.send({"type": "session.state_updated", "state": "closed"})
                    await self.ws.close(code=1000)
        finally:
            for task in [*tasks, ended]:
                task.cancel()
            for task in [*tasks, ended]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._abandon_all()

    async def _connect(self) -> None:
        """Render before saying ``connected``: the avatar must be able to speak what comes next."""
        started = self.engine.clock.stats.frames
        self.engine.clock.start()
        deadline = time.monotonic() + CONNECT_FRAME_TIMEOUT
        while self.engine.clock.stats.frames <= started and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.connected = True
        self.engine.touch()
        await self.send({"type": "session.state_updated", "state": "connected"})
        await asyncio.Event().wait()  # keep running until cancelled, like the other tasks

    # --- receiving ----------------------------------------------------------------------------
    async def _receive(self) -> None:
        while True:
            try:
                message = await self.ws.receive()
            except WebSocketDisconnect:
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                data = message.get("bytes") or b""
                if len(data) > MAX_MESSAGE_BYTES:
                    await self.ws.close(code=1009, reason="message over 1 MB")
                    return
                await self.error("LITE messages are JSON text frames, not binary")
                continue
            if len(text) > MAX_MESSAGE_BYTES:
                await self.ws.close(code=1009, reason="message over 1 MB")
                return
            if not self.connected:
                log.debug("LITE message before 'connected' dropped, as LiveAvatar does")
                continue
            await self._handle(text)

    async def _handle(self, text: str) -> None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            await self.error("Message is not valid JSON")
            return
        if not isinstance(data, dict):
            await self.error("Message is not a JSON object")
            return
        kind = data.get("type")
        event_id = str(data["event_id"]) if data.get("event_id") is not None else None
        if kind == "agent.speak":
            await self._speak(event_id, data.get("audio"))
        elif kind == "agent.speak_end":
            self._speak_end(event_id)
        elif kind == "agent.interrupt":
            self._interrupt()
        elif kind == "session.keep_alive":
            self.engine.touch()
        elif kind in ("agent.start_listening", "agent.stop_listening"):
            self.engine.listening = kind == "agent.start_listening"
            self.engine.touch()
        elif kind == "start":
            self._declare_format(data)
            if self.format_error:
                await self.error(self.format_error)
        else:
            await self.error(f"Unknown message type {kind!r}", event_id)

    def _declare_format(self, data: dict[str, Any]) -> None:
        declared = (str(data.get("encoding", "")).lower(), data.get("sample_rate"), data.get("channels", 1))
        if declared == ("pcm_s16le", LITE_RATE, 1):
            self.format_error = None
        else:
            self.format_error = (
                f"Unsupported audio format {declared[0] or '?'} {declared[1]} Hz, {declared[2]} channel(s):"
                f" LITE takes pcm_s16le {LITE_RATE} Hz mono; audio is refused until a supported format is declared"
            )

    async def _speak(self, event_id: str | None, audio: Any) -> None:
        if not event_id:
            await self.error("agent.speak needs an event_id")
            return
        if event_id in self.dropped:
            return  # interrupted: the rest of it must not play
        if self.format_error:
            await self.error(self.format_error, event_id)
            return
        try:
            raw = base64.b64decode(audio if isinstance(audio, str) else "", validate=True)
        except (binascii.Error, ValueError):
            await self.error("agent.speak audio is not base64", event_id)
            return
        if not raw or len(raw) % 2:
            await self.error(f"agent.speak audio must be whole 16-bit samples; got {len(raw)} bytes", event_id)
            return
        speak = self.speaks.get(event_id)
        if speak is None:
            speak = self._open(event_id)
        speak.last_audio = time.monotonic()
        self._add(speak, speak.resample(np.frombuffer(raw, dtype="<i2").astype(np.int16)))
        self.engine.touch()

    def _open(self, event_id: str) -> _Speak:
        loop = asyncio.get_running_loop()
        utt = Utterance(task_id=str(uuid.uuid4()), text="", task_type="lite", done=loop.create_future())
        speak = _Speak(event_id, utt)
        self.speaks[event_id] = speak
        self.by_task[utt.task_id] = speak
        self.engine.buffer.enqueue(utt)
        return speak

    def _add(self, speak: _Speak, audio: np.ndarray) -> None:
        if len(audio) == 0:
            return
        frame = self.engine.buffer.frame_samples
        chunk = SpeechChunk("", audio, [])  # no timeline: the mouth follows the envelope
        # announced: no avatar_talking_message — there are no words to put in the transcript
        self.engine.buffer.add_chunk(
            speak.utt, PreparedChunk(chunk, envelope(audio, SAMPLE_RATE, frame), announced=True)
        )

    def _speak_end(self, event_id: str | None) -> None:
        speak = self.speaks.pop(event_id or "", None)
        if speak is not None:
            self._add(speak, speak.resample(None))
            self.engine.buffer.finish_synthesis(speak.utt)
            self.engine.touch()

    def _interrupt(self) -> None:
        self.dropped.update(self.speaks)
        self.speaks.clear()
        with contextlib.suppress(E.ApiError):  # the session is closing: nothing left to interrupt
            self.engine.interrupt()  # empties the speech buffer and the audio already rendered
        # Utterances that had not started get no stop event from the engine: forget them now.
        for task_id, speak in list(self.by_task.items()):
            if speak.utt.cancelled and not speak.utt.started:
                del self.by_task[task_id]

    def _abandon_all(self) -> None:
        for speak in self.speaks.values():
            self.engine.buffer.finish_synthesis(speak.utt)
        self.speaks.clear()

    # --- speaking events ----------------------------------------------------------------------
    async def _pump(self) -> None:
        while True:
            await self._pump_once()
            now = time.monotonic()
            for event_id, speak in list(self.speaks.items()):
                if now - speak.last_audio > ABANDONED_SPEAK_SECONDS:
                    log.info("LITE speak without agent.speak_end for %.0f s: ended", ABANDONED_SPEAK_SECONDS)
                    self._speak_end(event_id)
            await asyncio.sleep(EVENT_POLL_SECONDS)

    async def _pump_once(self) -> None:
        for event in self.engine.events.after(self._seq):
            self._seq = event["seq"]
            speak = self.by_task.get(str(event.get("task_id")))
            if speak is None:
                continue
            kind = event.get("type")
            if kind == "avatar_start_talking":
                await self._speak_event("agent.speak_started", speak)
            elif kind == "avatar_stop_talking":
                self.by_task.pop(speak.utt.task_id, None)
                await self._speak_event("agent.speak_ended", speak)

    async def _speak_event(self, kind: str, speak: _Speak) -> None:
        with contextlib.suppress(Exception):
            await self.send({"type": kind, "event_id": speak.event_id, "task": {"id": speak.utt.task_id}})


def register_lite(app: FastAPI, state: Callable[[], LiveAvatarState]) -> None:
    """Add the LITE socket route to the engine's app."""

    @app.websocket("/v1/lite/{session_id}")
    async def lite_socket(websocket: WebSocket, session_id: str, token: str = "") -> None:
        live = state().live.get(session_id)
        expected = live.ws_token if live is not None else None
        if (
            live is None
            or live.ended
            or expected is None
            or not hmac.compare_digest(token.encode(), expected.encode())
            or live.socket_open
        ):
            await websocket.close(code=1008)  # before accept: the handshake answers 403
            return
        await websocket.accept()
        live.socket_open = True
        try:
            await LiteSocket(websocket, live).run()
        finally:
            live.socket_open = False
            log.info("LITE socket of session %s closed", session_id)
