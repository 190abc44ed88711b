"""Tasks → speech: synthesis in a worker thread, playback one frame-slice at a time on the render clock.

"Is speaking" is simply "the speech buffer is not empty"; an interrupt empties it, so the very next
frame is idle and silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from lib.engine.lipsync import envelope, mouth_at, shape_for_level
from lib.engine.media import SAMPLE_RATE, Tick
from lib.engine.mouth import CLOSED_SHAPES, MouthShape
from lib.engine.synthesis_stop import SynthesisCancelled, SynthesisStop
from lib.engine.tts import SpeechChunk

log = logging.getLogger("avatar_ops.engine.speaker")

Emit = Callable[[dict[str, Any]], None]
# Speaking rate of the default voice, measured on piper's joe voice at rate 1.0 (characters per second).
CHARS_PER_SECOND = 14.0
# A talk answer's next sentence is not known when its first piece is ready: assume a typical one.
TYPICAL_PIECE_CHARS = 60
# Piper's synthesis time: a fixed cost per piece plus a cost per character. Only the shape matters: the first
# piece's measured time scales it to the machine's load right now. On an idle machine the fixed part is smaller
# (16 ms + 2.6 ms a character, fitted on 2026-12-03), but under load a short piece's time is mostly waiting for
# a core: with that shape a 6-character "Hello!" that waited 0.3 s predicted a 1.1 s hold (measured in
# bench_browser). This shape keeps the estimate from a short first piece sane.
SYNTH_FIXED_S = 0.07
SYNTH_PER_CHAR_S = 0.0055
RUNWAY_MARGIN = 1.15  # the load changes from one piece to the next
MAX_HOLD_S = 1.5
# After a full stop a short silence sounds like a pause, not a stall: worth more than a later start.
SENTENCE_PAUSE_S = 0.3


class Synthesizer(Protocol):
    def synthesize(
        self,
        text: str,
        voice_id: str | None = None,
        rate: float = 1.0,
        *,
        quick_start: bool = True,
        stop: SynthesisStop | None = None,
    ) -> Iterator[SpeechChunk]: ...


def predict_duration_ms(text: str, rate: float) -> float:
    return round(len(text.strip()) / (CHARS_PER_SECOND * rate) * 1000.0, 1)


@dataclass
class PreparedChunk:
    chunk: SpeechChunk
    env: np.ndarray  # jaw openness per video frame, 0..1
    pos: int = 0
    announced: bool = False

    @property
    def remaining(self) -> int:
        return len(self.chunk.audio) - self.pos


@dataclass
class Utterance:
    task_id: str
    text: str
    task_type: str
    done: asyncio.Future
    chunks: deque[PreparedChunk] = field(default_factory=deque)
    synth_done: bool = False
    cancelled: bool = False
    stop: SynthesisStop = field(default_factory=SynthesisStop)  # ends its synthesis early on interrupt
    started: bool = False
    samples_played: int = 0
    submitted_at: float = field(default_factory=time.monotonic)
    # Playback waits until then, unless a second piece is ready: on a slow machine the first piece would
    # end before the next is synthesized and the avatar would stop mid-sentence.
    start_not_before: float | None = None
    first_frame_at: float | None = None
    error: str | None = None

    @property
    def duration_ms(self) -> float:
        return round(self.samples_played * 1000.0 / SAMPLE_RATE, 1)


class SpeechBuffer:
    """The render clock's tick source. Lives on the event loop; synthesis threads hand chunks over
    with ``loop.call_soon_threadsafe``."""

    def __init__(self, emit: Emit, frame_samples: int = SAMPLE_RATE // 25) -> None:
        self._emit = emit
        self._frame = frame_samples
        self._queue: deque[Utterance] = deque()
        self._openness = 0.0
        self.last_task_latency_ms: float | None = None
        self.starved_frames = 0  # frames left silent mid-speech because synthesis fell behind
        self.held_frames = 0  # frames a start was held back to build up runway instead

    @property
    def speaking(self) -> bool:
        return any(u.started for u in self._queue)

    @property
    def frame_samples(self) -> int:
        return self._frame

    @property
    def pending(self) -> int:
        return len(self._queue)

    def enqueue(self, utt: Utterance) -> None:
        self._queue.append(utt)

    def add_chunk(self, utt: Utterance, prepared: PreparedChunk) -> None:
        if not utt.cancelled:
            utt.chunks.append(prepared)

    def finish_synthesis(self, utt: Utterance, error: str | None = None) -> None:
        utt.synth_done = True
        utt.error = error

    def interrupt(self) -> int:
        dropped = 0
        while self._queue:
            utt = self._queue.popleft()
            utt.cancelled = True
            utt.stop.set()
            utt.chunks.clear()
            self._complete(utt, spoke=utt.started)
            dropped += 1
        return dropped

    def _complete(self, utt: Utterance, spoke: bool) -> None:
        if spoke:
            self._emit({"type": "avatar_end_message", "task_id": utt.task_id})
            self._emit({"type": "avatar_stop_talking", "task_id": utt.task_id, "duration_ms": utt.duration_ms})
        if not utt.done.done():
            utt.done.set_result(utt)

    def next_tick(self, samples: int) -> Tick:
        audio = np.zeros(samples, dtype=np.int16)
        filled = 0
        current: PreparedChunk | None = None
        while filled < samples and self._queue:
            utt = self._queue[0]
            if not utt.chunks:
                if utt.synth_done:
                    self._queue.popleft()
                    self._complete(utt, spoke=utt.started)
                    continue
                if utt.started:
                    self.starved_frames += 1
                break  # synthesis has not caught up: this frame stays idle
            prepared = utt.chunks[0]
            if not utt.started and self._holding(utt):
                self.held_frames += 1
                break
            if not utt.started:
                utt.started = True
                utt.first_frame_at = time.monotonic()
                self.last_task_latency_ms = (utt.first_frame_at - utt.submitted_at) * 1000
                self._emit({"type": "avatar_start_talking", "task_id": utt.task_id})
            if not prepared.announced:
                prepared.announced = True
                self._emit({"type": "avatar_talking_message", "task_id": utt.task_id, "message": prepared.chunk.text})
            take = min(samples - filled, prepared.remaining)
            audio[filled : filled + take] = prepared.chunk.audio[prepared.pos : prepared.pos + take]
            prepared.pos += take
            filled += take
            utt.samples_played += take
            current = prepared
            if prepared.remaining == 0:
                utt.chunks.popleft()
        # The last speaking frame carries the stop event, not the idle frame after it.
        if self._queue and self._queue[0].started and not self._queue[0].chunks and self._queue[0].synth_done:
            self._complete(self._queue.popleft(), spoke=True)
        return self._shape(audio, filled, current)

    @staticmethod
    def _holding(utt: Utterance) -> bool:
        if utt.start_not_before is None or utt.synth_done or len(utt.chunks) > 1:
            return False
        return time.monotonic() < utt.start_not_before

    def _shape(self, audio: np.ndarray, filled: int, current: PreparedChunk | None) -> Tick:
        if current is None or filled == 0:
            self._openness *= 0.45  # silence eases the jaw closed over a few frames
            shape = MouthShape.REST if self._openness < 0.15 else MouthShape.CONSONANT
            return Tick(audio, shape, self._openness, speaking=False)
        # Show each shape about one frame before its sound.
        ahead = current.pos + self._frame // 2
        if ahead < len(current.chunk.audio):
            target = float(current.env[min(ahead // self._frame, len(current.env) - 1)])
            # Audio without phoneme timings (LITE's received speech) has an empty timeline: the shape
            # follows the loudness instead, closed in silence.
            shape = mouth_at(current.chunk.timeline, ahead) if current.chunk.timeline else shape_for_level(target)
        else:
            shape, target = MouthShape.REST, 0.0
        self._openness = target if shape not in CLOSED_SHAPES else 0.0
        return Tick(audio, shape, self._openness, speaking=True)


def prepare(chunk: SpeechChunk, frame_samples: int) -> PreparedChunk:
    return PreparedChunk(chunk, envelope(chunk.audio, SAMPLE_RATE, frame_samples))


class Speaker:
    """One session's task queue. Tasks are synthesized one after another (so they speak in order),
    while earlier ones are already playing."""

    def __init__(
        self,
        buffer: SpeechBuffer,
        voices: Synthesizer,
        *,
        voice_id: str | None,
        rate: float,
        answer: Callable[[str], Iterable[str]],
        executor: Executor,
        emit: Emit,
        frame_samples: int = SAMPLE_RATE // 25,
    ) -> None:
        self._buffer = buffer
        self._voices = voices
        self._voice_id = voice_id
        self._rate = rate
        self._answer = answer
        self._executor = executor
        self._emit = emit
        self._frame = frame_samples
        self._queue: asyncio.Queue[Utterance] = asyncio.Queue()
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="speaker")

    async def stop(self) -> None:
        self._buffer.interrupt()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    def submit(self, text: str, task_type: str) -> Utterance:
        loop = asyncio.get_running_loop()
        utt = Utterance(task_id=str(uuid.uuid4()), text=text, task_type=task_type, done=loop.create_future())
        if task_type in ("talk", "chat"):
            self._emit({"type": "user_talking_message", "task_id": utt.task_id, "message": text})
            self._emit({"type": "user_end_message", "task_id": utt.task_id})
        self._buffer.enqueue(utt)
        self._queue.put_nowait(utt)
        self.start()
        return utt

    def interrupt(self) -> int:
        return self._buffer.interrupt()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            utt = await self._queue.get()
            if utt.cancelled:
                continue
            await loop.run_in_executor(self._executor, self._synthesize, utt, loop)

    def _texts(self, utt: Utterance) -> Iterable[str]:
        return self._answer(utt.text) if utt.task_type in ("talk", "chat") else [utt.text]

    def _synthesize(self, utt: Utterance, loop: asyncio.AbstractEventLoop) -> None:
        error = None
        first = True
        try:
            for text in self._texts(utt):
                pieces = self._voices.synthesize(text, self._voice_id, self._rate, quick_start=first, stop=utt.stop)
                while True:
                    started = time.monotonic()
                    chunk = next(pieces, None)
                    if chunk is None:
                        break
                    if utt.cancelled:
                        return
                    if first:
                        first = False
                        self._plan_runway(utt, chunk, time.monotonic() - started)
                    loop.call_soon_threadsafe(self._buffer.add_chunk, utt, prepare(chunk, self._frame))
                if utt.cancelled:
                    return
        except SynthesisCancelled:
            return
        except Exception as exc:  # a failed task must not take the session down
            log.exception("synthesis failed for task %s", utt.task_id)
            error = f"Speech synthesis failed: {type(exc).__name__}"
        finally:
            loop.call_soon_threadsafe(self._buffer.finish_synthesis, utt, error)

    def _plan_runway(self, utt: Utterance, chunk: SpeechChunk, synth_seconds: float) -> None:
        """Hold the start back when the first piece is too short to cover the next one's synthesis, as
        predicted from how fast this machine synthesized the first piece just now."""
        audio_seconds = chunk.duration_ms / 1000.0
        if chunk.next_text is not None:
            next_chars = len(chunk.next_text)
        else:
            next_chars = TYPICAL_PIECE_CHARS if utt.task_type in ("talk", "chat") else 0
        if not next_chars or audio_seconds <= 0:
            return
        load = synth_seconds / (SYNTH_FIXED_S + SYNTH_PER_CHAR_S * len(chunk.text))
        next_synth = load * (SYNTH_FIXED_S + SYNTH_PER_CHAR_S * next_chars)
        pause = SENTENCE_PAUSE_S if chunk.text.rstrip().endswith((".", "!", "?")) else 0.0
        deficit = min(MAX_HOLD_S, RUNWAY_MARGIN * next_synth - audio_seconds - pause)
        if deficit > 0.04:  # less than a frame is not worth a later start
            utt.start_not_before = time.monotonic() + deficit
