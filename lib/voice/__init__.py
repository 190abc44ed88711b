"""Voice input: microphone audio → utterances (Silero VAD) → text (Whisper tiny.en), offline, off-thread."""

from __future__ import annotations

from lib.voice.listener import ListenerStats, Transcript, VoiceListener, is_hallucination
from lib.voice.stt import SpeechToText, Transcriber, get_speech_to_text
from lib.voice.vad import SAMPLE_RATE, UtteranceDetector, VadEvent

__all__ = [
    "SAMPLE_RATE",
    "ListenerStats",
    "SpeechToText",
    "Transcriber",
    "Transcript",
    "UtteranceDetector",
    "VadEvent",
    "VoiceListener",
    "get_speech_to_text",
    "is_hallucination",
]
