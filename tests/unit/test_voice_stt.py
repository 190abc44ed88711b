"""Whisper on the short window: the same words as the full 30 s pass, long speech still transcribed whole."""

from __future__ import annotations

import numpy as np
import pytest

from lib.engine.tts import VoiceBank
from lib.voice import stt as stt_module
from lib.voice.stt import SAMPLE_RATE, SpeechToText, get_speech_to_text, repeats_itself

QUESTIONS = [
    "Where can visitors park?",
    "What is the Wi-Fi password?",
    "Stop.",
    "Could you please explain how the sessions are billed and what happens when I forget to stop one?",
]


@pytest.fixture(scope="module")
def bank() -> VoiceBank:
    return VoiceBank(varied=False)  # reproducible speech: timing thresholds are not crossed by chance


@pytest.fixture(scope="module")
def stt() -> SpeechToText:
    return get_speech_to_text()


def spoken_16k(bank: VoiceBank, text: str, noise: float = 0.003) -> np.ndarray:
    audio = np.concatenate([c.audio for c in bank.synthesize(text)]).astype(np.float32) / 32768
    rng = np.random.default_rng(len(text))
    return audio[::3] + rng.normal(0, noise, len(audio[::3])).astype(np.float32)  # 48 kHz → 16 kHz, a room's hiss


def words(text: str) -> list[str]:
    return [w.strip(".,?!").lower() for w in text.split()]


def hits(heard: str, said: str) -> int:
    return sum(w in words(heard) for w in words(said))


def test_short_utterances_use_the_short_window_and_keep_the_words(bank: VoiceBank, stt: SpeechToText):
    """Piper's voice varies from run to run, so the yardstick is the full 30 s pass on the same audio."""
    calls: list[str] = []
    original = stt._transcribe_full
    stt._transcribe_full = lambda samples: calls.append("full") or original(samples)  # type: ignore[method-assign]
    try:
        results = [(q, audio, stt.transcribe(audio)) for q in QUESTIONS for audio in [spoken_16k(bank, q)]]
    finally:
        del stt._transcribe_full
    assert calls == []
    total = sum(len(words(q)) for q in QUESTIONS)
    short_hits = sum(hits(text, q) for q, _, text in results)
    full_hits = sum(hits(stt._transcribe_full(audio), q) for q, audio, _ in results)
    assert short_hits >= 0.75 * total, results
    assert short_hits >= full_hits - 2, (short_hits, full_hits)


def test_speech_longer_than_the_short_window_is_transcribed_whole(bank: VoiceBank, stt: SpeechToText):
    text = (
        "The office opens at nine in the morning and closes at six in the evening. Visitors park behind the "
        "building, next to the loading bay. Lunch is served at noon in the canteen on the second floor."
    )
    audio = spoken_16k(bank, text)
    assert len(audio) > stt_module.SHORT_MAX_SECONDS * SAMPLE_RATE
    heard = words(stt.transcribe(audio))
    expected = words(text)
    assert sum(w in heard for w in expected) >= 0.8 * len(expected), " ".join(heard)
    assert "floor" in heard  # the last words: nothing after the short window's 10 s was lost


def test_a_runaway_short_decode_falls_back_to_the_full_pass(bank: VoiceBank, stt: SpeechToText, monkeypatch):
    monkeypatch.setattr(stt, "_transcribe_short", lambda samples: None)
    question = "What is the help desk extension?"
    assert hits(stt.transcribe(spoken_16k(bank, question)), question) >= len(words(question)) - 2


def test_a_looping_decode_is_recognised():
    assert repeats_itself("When is lunch served? When is lunch served? When is")
    assert not repeats_itself("When is lunch served?")
    assert not repeats_itself("No, no, no. Stop the session now.")
