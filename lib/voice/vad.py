"""Streaming voice activity detection: Silero VAD (the ONNX model faster-whisper ships) over 32 ms windows."""

from __future__ import annotations

import functools
import os
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

SAMPLE_RATE = 16_000
WINDOW = 512  # Silero's window at 16 kHz (32 ms)
_CONTEXT = 64  # samples of the previous window the model sees before each window


@dataclass(frozen=True, eq=False)
class VadEvent:
    """`speech_start` as soon as speech is confirmed; `utterance` once it has ended. With speculation on,
    `likely_end` comes first, after a shorter silence, carrying the audio the `utterance` will carry if the
    speaker stays silent: work on it can start while the detector is still making sure.

    Times are seconds of audio fed to the detector since it was created (or reset).
    """

    kind: Literal["speech_start", "likely_end", "utterance"]
    start: float  # where speech began
    end: float | None = None  # utterance: where speech ended (before the trailing silence)
    audio: np.ndarray | None = None  # utterance, likely_end: int16 16 kHz mono, pre-roll + speech + a short tail
    audio_start: float | None = None  # utterance, likely_end: stream time of audio[0]
    reason: Literal["silence", "max_length", "flush"] | None = None  # utterance: why it was closed


@functools.cache
def _session() -> Any:
    """One onnxruntime session per process; run() is thread-safe and the LSTM state lives in each detector."""
    import onnxruntime
    from faster_whisper.utils import get_assets_path

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 4
    # A spinning thread would keep a core busy between 20 ms frames.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        os.path.join(get_assets_path(), "silero_vad_v6.onnx"),
        sess_options=options,
        providers=["CPUExecutionProvider"],
    )


class UtteranceDetector:
    """Feed 16 kHz mono int16 audio in pieces of any length; get speech starts and whole utterances back.

    Not thread-safe: one thread feeds it. The model runs on every complete 512-sample window, with its
    recurrent state carried across calls, so results do not depend on how the audio is cut into pieces.
    Hysteresis as in Silero's reference code: speech begins at a window ≥ threshold and ends at the first
    window below neg_threshold that is not followed by another window ≥ threshold within end_silence_ms.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        min_speech_ms: int = 200,
        end_silence_ms: int = 500,
        max_utterance_s: float = 15.0,
        pre_roll_ms: int = 200,
        *,
        threshold: float = 0.5,
        neg_threshold: float = 0.35,
        post_roll_ms: int = 100,
        speculate_after_ms: int | None = None,
    ) -> None:
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"The Silero VAD model needs {SAMPLE_RATE} Hz audio; got {sample_rate} Hz.")
        self.sample_rate = sample_rate
        self.threshold = threshold
        self.neg_threshold = neg_threshold
        self._min_speech = round(min_speech_ms * sample_rate / 1000)
        self._end_silence = round(end_silence_ms * sample_rate / 1000)
        self._max_utterance = round(max_utterance_s * sample_rate)
        self._post_roll = round(post_roll_ms * sample_rate / 1000)
        # The likely end needs its tail in hand: the audio it carries must be exactly the utterance's.
        self._speculate = (
            max(round(speculate_after_ms * sample_rate / 1000), self._post_roll)
            if speculate_after_ms is not None and speculate_after_ms < end_silence_ms
            else None
        )
        # A candidate dies after this much non-speech, so clicks and breaths do not add up to "speech".
        self._candidate_gap = min(self._end_silence, round(0.15 * sample_rate))
        self._pre_roll_windows = -(-round(pre_roll_ms * sample_rate / 1000) // WINDOW)
        self._session = _session()
        self.reset()

    @property
    def position(self) -> float:
        """Seconds of audio fed so far (including samples still waiting for a full window)."""
        return (self._pos + len(self._pending)) / self.sample_rate

    @property
    def in_speech(self) -> bool:
        return self._state == "speaking"

    def speech_so_far(self) -> VadEvent | None:
        """The utterance in progress as it stands (kind ``likely_end``, ``end`` = now), for interim text."""
        if self._state != "speaking" or not self._windows:
            return None
        return self._event("likely_end", self._pos)

    def reset(self) -> None:
        """Forget everything, including the stream clock and any utterance in progress."""
        self._pos = 0  # stream position (samples) of the next window
        self._pending = np.zeros(0, np.int16)
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(_CONTEXT, np.float32)
        self._pre_roll: deque[tuple[int, np.ndarray]] = deque(maxlen=self._pre_roll_windows)
        self._clear_speech()

    def _clear_speech(self) -> None:
        self._state: Literal["idle", "candidate", "speaking"] = "idle"
        self._windows: list[tuple[int, np.ndarray]] = []  # (stream position, samples), pre-roll first
        self._start = 0  # speech start (samples)
        self._voiced_end = 0  # end of the last window that counted as speech
        self._silence_since: int | None = None
        self._speculated_end: int | None = None  # the speech end a likely_end was sent for

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        samples = np.asarray(samples)
        if samples.dtype != np.int16:
            raise TypeError(f"feed() takes int16 samples; got {samples.dtype}.")
        buffered = np.concatenate((self._pending, samples.reshape(-1)))
        n = len(buffered) // WINDOW
        self._pending = buffered[n * WINDOW :]
        if n == 0:
            return []
        windows = buffered[: n * WINDOW].reshape(n, WINDOW)
        probs = self._probabilities(windows)
        events: list[VadEvent] = []
        for window, prob in zip(windows, probs, strict=True):
            events.extend(self._step(window, float(prob)))
            self._pos += WINDOW
        return events

    def flush(self) -> list[VadEvent]:
        """End of input (e.g. push-to-talk released): close the utterance in progress, then reset() (clock to 0)."""
        events: list[VadEvent] = []
        if self._state == "speaking" and self._voiced_end > self._start:
            events.append(self._finish(self._voiced_end, "flush"))
        self.reset()
        return events

    def _probabilities(self, windows: np.ndarray) -> np.ndarray:
        audio = windows.astype(np.float32) / 32768.0
        contexts = np.vstack((self._context[None, :], audio[:-1, -_CONTEXT:]))
        self._context = audio[-1, -_CONTEXT:].copy()
        # The model treats the batch axis as time, so one call over n windows equals n calls of one.
        probs, self._h, self._c = self._session.run(
            None, {"input": np.hstack((contexts, audio)), "h": self._h, "c": self._c}
        )
        return np.asarray(probs).reshape(-1)

    def _step(self, window: np.ndarray, prob: float) -> list[VadEvent]:
        pos, end = self._pos, self._pos + WINDOW
        voiced = prob >= self.threshold
        if voiced:
            self._silence_since = None
        elif prob < self.neg_threshold and self._silence_since is None:
            self._silence_since = pos
        if voiced or (prob >= self.neg_threshold and self._silence_since is None):
            self._voiced_end = end

        if self._state == "idle":
            if not voiced:
                self._pre_roll.append((pos, window))
                return []
            self._state = "candidate"
            self._start = pos
            self._windows = [*self._pre_roll, (pos, window)]
            self._pre_roll.clear()
            return self._confirm_if_long_enough()

        self._windows.append((pos, window))
        if self._state == "candidate":
            if end - self._voiced_end >= self._candidate_gap:
                self._pre_roll.extend(self._windows)  # the deque keeps only the newest windows
                self._clear_speech()
                return []
            return self._confirm_if_long_enough()

        if end - self._voiced_end >= self._end_silence:
            if self._voiced_end <= self._start:  # a cut at max length was followed by silence only
                self._pre_roll.extend(self._windows)
                self._clear_speech()
                return []
            return [self._finish(self._voiced_end, "silence")]
        if (
            self._speculate is not None
            and end - self._voiced_end >= self._speculate
            and self._voiced_end > self._start
            and self._speculated_end != self._voiced_end
        ):
            self._speculated_end = self._voiced_end
            return [self._event("likely_end", self._voiced_end)]
        if end - self._start >= self._max_utterance:
            event = self._finish(end, "max_length")
            # Still the same speech: the next piece starts here, without a new speech_start or a new wait.
            self._state, self._start, self._voiced_end = "speaking", end, end
            return [event]
        return []

    def _confirm_if_long_enough(self) -> list[VadEvent]:
        if self._voiced_end - self._start < self._min_speech:
            return []
        self._state = "speaking"
        return [VadEvent("speech_start", start=self._start / self.sample_rate)]

    def _finish(self, speech_end: int, reason: Literal["silence", "max_length", "flush"]) -> VadEvent:
        event = self._event("utterance", speech_end, reason)
        leftover = [(p, w) for p, w in self._windows if p >= speech_end]
        self._clear_speech()
        self._pre_roll.extend(leftover)
        return event

    def _event(
        self,
        kind: Literal["likely_end", "utterance"],
        speech_end: int,
        reason: Literal["silence", "max_length", "flush"] | None = None,
    ) -> VadEvent:
        cut = speech_end + self._post_roll
        kept = [w for p, w in self._windows if p < cut]
        return VadEvent(
            kind,
            start=self._start / self.sample_rate,
            end=speech_end / self.sample_rate,
            audio=np.concatenate(kept)[: max(0, cut - self._windows[0][0])],
            audio_start=self._windows[0][0] / self.sample_rate,
            reason=reason,
        )
