"""Microphone frames in, transcripts out: resampling on the caller's thread, VAD and STT on two of our own."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import av
import numpy as np

from lib.voice.stt import Transcriber, get_speech_to_text
from lib.voice.vad import SAMPLE_RATE, UtteranceDetector, VadEvent

log = logging.getLogger(__name__)

MAX_QUEUED_AUDIO_S = 5.0
MAX_PENDING_UTTERANCES = 3
# Speech-to-text starts on the audio this long into the end-of-speech silence; the VAD still waits its full
# end silence (500 ms) before the words count as said, and then they are usually transcribed already.
SPECULATE_AFTER_MS = 200
# While someone speaks, what they said so far is transcribed about this often (only when the model is idle).
PARTIAL_EVERY_S = 1.0
PARTIAL_MAX_S = 8.0  # longer speech is not re-transcribed whole every second


@dataclass(frozen=True)
class Transcript:
    """What the user said. Times are time.monotonic() seconds."""

    text: str
    started_at: float  # speech began
    ended_at: float  # speech ended (before the trailing silence the VAD waited for)
    transcribed_at: float
    audio_ms: float  # length of the audio given to speech-to-text (pre-roll and tail included)

    @property
    def latency_ms(self) -> float:
        """End of speech → text ready."""
        return (self.transcribed_at - self.ended_at) * 1000.0


@dataclass(frozen=True)
class ListenerStats:
    frames: int = 0
    frames_dropped: int = 0  # audio dropped because the VAD thread fell behind
    utterances: int = 0
    utterances_dropped: int = 0  # utterances dropped because speech-to-text fell behind
    transcripts: int = 0
    transcripts_filtered: int = 0  # empty or typical Whisper hallucinations
    speculations: int = 0  # transcriptions started before the end of speech was certain
    speculations_used: int = 0  # ... whose text was the answer (the speaker had indeed finished)


# What Whisper writes for noise, coughs and clicks. None of these is something people say to an avatar.
_ALWAYS_NOISE = frozenset(
    {"you", "thanks for watching", "thank you for watching", "thank you so much for watching"}
    | {"please subscribe", "like and subscribe", "subtitles by the amaraorg community"}
)
# Real words too, so dropped only when the VAD heard less speech than saying them takes.
_SHORT_NOISE = frozenset({"thank you", "thanks", "bye", "so", "oh", "uh", "um", "hmm", "mm", "ah"})
_SHORT_NOISE_MS = 350.0
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|♪+")


def is_hallucination(text: str, speech_ms: float) -> bool:
    """True for text that should not reach the avatar: empty, sound annotations, Whisper's stock phrases."""
    words = re.sub(r"[^a-z0-9' ]+", "", _ANNOTATION.sub(" ", text.lower()).replace("-", " "))
    words = " ".join(words.replace("'", "").split())
    if not words:
        return True
    if words in _ALWAYS_NOISE:
        return True
    return words in _SHORT_NOISE and speech_ms < _SHORT_NOISE_MS


@dataclass(frozen=True)
class _Audio:
    samples: np.ndarray  # int16 16 kHz mono
    arrived_at: float


@dataclass(frozen=True)
class _Utterance:
    audio: np.ndarray
    started_at: float
    ended_at: float
    key: tuple[float, float]  # (start, end) in stream time: a likely end and its utterance share it
    speculative: bool = False
    partial: bool = False  # interim text of speech still going on

    @property
    def optional(self) -> bool:
        return self.speculative or self.partial


_FLUSH = object()


class VoiceListener:
    """Turns microphone frames into transcripts. push() never blocks; callbacks run on the listener's threads.

    on_speech_start runs on the VAD thread as soon as speech is confirmed (barge-in), on_speech_end there when
    the VAD closes that utterance (before it is transcribed); on_transcript on the speech-to-text thread. All
    must be quick and thread-safe (e.g. put the text on a queue). Without an explicit `stt`, the process-wide
    model is loaded on the speech-to-text thread at start-up.
    """

    def __init__(
        self,
        on_transcript: Callable[[Transcript], None],
        on_speech_start: Callable[[], None] | None = None,
        *,
        on_speech_end: Callable[[], None] | None = None,
        interim: bool = False,
        on_partial: Callable[[str], None] | None = None,
        stt: Transcriber | None = None,
        detector: UtteranceDetector | None = None,
        enabled: bool = True,
        max_queued_audio_s: float = MAX_QUEUED_AUDIO_S,
        max_pending_utterances: int = MAX_PENDING_UTTERANCES,
    ) -> None:
        self._on_transcript = on_transcript
        self._on_speech_start = on_speech_start
        self._on_speech_end = on_speech_end
        self._on_partial = on_partial
        # Interim text costs model time while the user is still speaking: only for callers that show it.
        self._interim = interim or on_partial is not None
        self._partial: str | None = None
        self._final_starts: deque[float] = deque(maxlen=8)  # speech starts already transcribed for good
        self._stt = stt
        self._detector = detector
        self._enabled = enabled
        self._closed = False
        self._error: str | None = None
        self._max_queued = round(max_queued_audio_s * SAMPLE_RATE)
        self._max_pending = max_pending_utterances

        self._audio: deque[_Audio | object] = deque()
        self._queued_samples = 0
        self._audio_cond = threading.Condition()
        self._utterances: deque[_Utterance] = deque()
        self._utterance_cond = threading.Condition()
        self._working: _Utterance | None = None  # what the speech-to-text thread is transcribing now
        self._promoted: _Utterance | None = None  # the utterance whose guess is being transcribed now
        self._stats_lock = threading.Lock()
        self._stats = ListenerStats()

        # Only push() touches these, from the one thread that delivers frames.
        self._resampler: av.AudioResampler | None = None
        self._resampler_rate = 0

        self._vad_thread = threading.Thread(target=self._vad_loop, name="voice-vad", daemon=True)
        self._stt_thread = threading.Thread(target=self._stt_loop, name="voice-stt", daemon=True)
        self._vad_thread.start()
        self._stt_thread.start()

    # ------------------------------------------------------------ caller side

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def error(self) -> str | None:
        """A message for the user if speech-to-text could not be loaded."""
        return self._error

    @property
    def stats(self) -> ListenerStats:
        with self._stats_lock:
            return self._stats

    @property
    def partial(self) -> str | None:
        """What the speaker has said so far, while they are still speaking (None otherwise); only with
        ``interim=True`` or an ``on_partial`` callback."""
        return self._partial

    def push(self, frame: av.AudioFrame) -> None:
        """Take one microphone frame (any rate, layout, s16/flt). Cheap: ~0.1 ms per 20 ms frame."""
        if not self._enabled or self._closed:
            return
        arrived_at = time.monotonic()
        samples = self._to_16k_mono(frame)
        if len(samples) == 0:
            return
        dropped = 0
        with self._audio_cond:
            if not self._enabled or self._closed:
                return
            self._audio.append(_Audio(samples, arrived_at))
            self._queued_samples += len(samples)
            while self._queued_samples > self._max_queued and self._drop_oldest_audio():
                dropped += 1
            self._audio_cond.notify()
        self._count(frames=1, frames_dropped=dropped)

    def set_enabled(self, enabled: bool) -> None:
        """Push-to-talk: while disabled, audio is ignored; disabling mid-utterance sends what was said so far."""
        with self._audio_cond:
            if self._enabled and not enabled and not self._closed:
                self._audio.append(_FLUSH)
                self._audio_cond.notify()
            self._enabled = enabled

    def close(self, timeout: float = 5.0) -> None:
        """Stop both threads; utterances not yet transcribed are discarded. Safe to call more than once."""
        with self._audio_cond:
            self._closed = True
            self._audio.clear()
            self._audio_cond.notify_all()
        with self._utterance_cond:
            self._utterances.clear()
            self._utterance_cond.notify_all()
        for thread in (self._vad_thread, self._stt_thread):
            if thread is not threading.current_thread():
                thread.join(timeout)

    def __enter__(self) -> VoiceListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _to_16k_mono(self, frame: av.AudioFrame) -> np.ndarray:
        data = frame.to_ndarray()
        channels = len(frame.layout.channels)
        if not frame.format.is_planar:
            data = data.reshape(-1, channels).T
        mono = data.mean(axis=0) if channels > 1 else data.reshape(-1)
        if data.dtype.kind == "f":
            mono = mono * 32767.0
        elif data.dtype == np.int32:
            mono = mono / 65536.0
        pcm = np.clip(mono, -32768, 32767).astype(np.int16)
        if frame.sample_rate == SAMPLE_RATE:
            return pcm
        if self._resampler is None or self._resampler_rate != frame.sample_rate:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            self._resampler_rate = frame.sample_rate
        # A fresh frame without pts: the browser's timestamps may jump and the resampler must not care.
        mono_frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        mono_frame.sample_rate = frame.sample_rate
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(mono_frame)]
        return np.concatenate(out) if out else np.zeros(0, np.int16)

    def _drop_oldest_audio(self) -> bool:
        for i, item in enumerate(self._audio):
            if isinstance(item, _Audio):
                del self._audio[i]
                self._queued_samples -= len(item.samples)
                return True
        return False

    def _count(self, **deltas: int) -> None:
        if not any(deltas.values()):
            return
        with self._stats_lock:
            current = self._stats
            self._stats = replace(current, **{name: getattr(current, name) + n for name, n in deltas.items()})

    # ------------------------------------------------------------ VAD thread

    def _vad_loop(self) -> None:
        try:
            detector = (
                self._detector
                if self._detector is not None
                else UtteranceDetector(speculate_after_ms=SPECULATE_AFTER_MS)
            )
        except Exception as exc:
            self._fail(f"Voice activity detection could not start: {exc}")
            return
        # Stream time → monotonic time, anchored at the arrival of the newest frame.
        anchor_time, anchor_position = time.monotonic(), 0.0
        last_partial = 0.0  # stream time of the last interim transcription asked for
        while True:
            with self._audio_cond:
                while not self._audio and not self._closed:
                    self._audio_cond.wait()
                if self._closed:
                    return
                item = self._audio.popleft()
                if isinstance(item, _Audio):
                    self._queued_samples -= len(item.samples)
            if isinstance(item, _Audio):
                events = detector.feed(item.samples)
                anchor_time, anchor_position = item.arrived_at, detector.position
            else:
                events = detector.flush()
            for event in events:
                self._handle(event, anchor_time - anchor_position)
            if self._interim and detector.in_speech:
                last_partial = self._offer_partial(detector, last_partial, anchor_time - anchor_position)

    def _offer_partial(self, detector: UtteranceDetector, last: float, clock_offset: float) -> float:
        now = detector.position
        event = detector.speech_so_far()
        if event is None or now - max(last, event.start) < PARTIAL_EVERY_S or now - event.start > PARTIAL_MAX_S:
            return last
        assert event.audio is not None and event.end is not None
        partial = _Utterance(
            event.audio, event.start + clock_offset, event.end + clock_offset, (event.start, event.end), partial=True
        )
        with self._utterance_cond:
            if self._working is not None or self._utterances:
                return last  # the model is busy: interim text is the first thing to give up
            self._utterances.append(partial)
            self._utterance_cond.notify()
        return now

    def _handle(self, event: VadEvent, clock_offset: float) -> None:
        if event.kind == "speech_start":
            self._notify(self._on_speech_start, "on_speech_start")
            return
        if event.kind == "utterance":
            self._notify(self._on_speech_end, "on_speech_end")
        assert event.audio is not None and event.end is not None
        utterance = _Utterance(
            event.audio,
            event.start + clock_offset,
            event.end + clock_offset,
            (event.start, event.end),
            speculative=event.kind == "likely_end",
        )
        dropped = 0
        with self._utterance_cond:
            working = self._working
            if utterance.speculative:
                # Only on an idle worker: a guess must never delay words already said.
                if (working is not None and not working.partial) or any(not u.optional for u in self._utterances):
                    return
                self._utterances.clear()  # an older guess nobody started is moot now
            elif working is not None and working.speculative and working.key == utterance.key:
                self._promoted = utterance  # its transcription is under way: that becomes the answer
                self._utterances.clear()
                self._count(utterances=1)
                return
            else:
                self._utterances = deque(u for u in self._utterances if not u.optional)
            self._utterances.append(utterance)
            while len(self._utterances) > self._max_pending:
                self._utterances.popleft()
                dropped += 1
            self._utterance_cond.notify()
        if not utterance.optional:
            self._count(utterances=1, utterances_dropped=dropped)

    @staticmethod
    def _notify(callback: Callable[[], None] | None, name: str) -> None:
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("%s failed", name)

    # ------------------------------------------------------------ STT thread

    def _stt_loop(self) -> None:
        try:
            stt = self._stt if self._stt is not None else get_speech_to_text()
        except Exception as exc:
            self._fail(f"Speech-to-text could not be loaded: {exc}")
            return
        guess: tuple[tuple[float, float], str] | None = None  # the last speculative transcription
        while True:
            with self._utterance_cond:
                while not self._utterances and not self._closed:
                    self._utterance_cond.wait()
                if self._closed:
                    return
                utterance = self._working = self._utterances.popleft()
            text: str | None = None
            if guess is not None and guess[0] == utterance.key and not utterance.speculative:
                text = guess[1]
                self._count(speculations_used=1)
            else:
                try:
                    text = stt.transcribe(utterance.audio)
                except Exception:
                    log.exception(
                        "speech-to-text failed on a %d ms utterance", len(utterance.audio) * 1000 // SAMPLE_RATE
                    )
            if utterance.partial:
                with self._utterance_cond:
                    self._working = None
                    stale = utterance.key[0] in self._final_starts
                speech_ms = (utterance.ended_at - utterance.started_at) * 1000
                if text and not stale and not is_hallucination(text, speech_ms):
                    self._partial = text
                    if self._on_partial is not None:
                        try:
                            self._on_partial(text)
                        except Exception:
                            log.exception("on_partial failed")
                continue
            guess = None
            with self._utterance_cond:
                promoted, self._promoted, self._working = self._promoted, None, None
            if utterance.speculative:
                self._count(speculations=1)
                if promoted is None:
                    guess = (utterance.key, text) if text is not None else None
                    continue
                self._count(speculations_used=1)
                utterance = promoted
            if text is not None:
                self._deliver(utterance, text)
            else:
                self._partial = None  # the words were lost: their interim text must not stay on the page

    def _deliver(self, utterance: _Utterance, text: str) -> None:
        transcribed_at = time.monotonic()
        with self._utterance_cond:
            self._final_starts.append(utterance.key[0])
        self._partial = None
        if is_hallucination(text, (utterance.ended_at - utterance.started_at) * 1000.0):
            self._count(transcripts_filtered=1)
            return
        transcript = Transcript(
            text=text,
            started_at=utterance.started_at,
            ended_at=utterance.ended_at,
            transcribed_at=transcribed_at,
            audio_ms=len(utterance.audio) * 1000.0 / SAMPLE_RATE,
        )
        self._count(transcripts=1)
        try:
            self._on_transcript(transcript)
        except Exception:
            log.exception("on_transcript failed")

    def _fail(self, message: str) -> None:
        log.error(message)
        self._error = message
