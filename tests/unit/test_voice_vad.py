from __future__ import annotations

import time
from collections.abc import Callable

import av
import numpy as np
import pytest

from lib.engine.tts import TARGET_RATE, VoiceBank
from lib.voice.vad import SAMPLE_RATE, UtteranceDetector, VadEvent

TOLERANCE_S = 0.15
FRAME = SAMPLE_RATE // 50  # 20 ms, what the listener feeds from a 960-sample 48 kHz frame


@pytest.fixture(scope="module")
def bank() -> VoiceBank:
    return VoiceBank(varied=False)  # reproducible speech: timing thresholds are not crossed by chance


def to_16k(audio_48k: np.ndarray) -> np.ndarray:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    frame = av.AudioFrame.from_ndarray(audio_48k[None, :], format="s16", layout="mono")
    frame.sample_rate = TARGET_RATE
    out = [f.to_ndarray().reshape(-1) for f in (*resampler.resample(frame), *resampler.resample(None))]
    return np.concatenate(out)


def speech(bank: VoiceBank, text: str) -> np.ndarray:
    return to_16k(np.concatenate([chunk.audio for chunk in bank.synthesize(text)]))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), np.int16)


def level(audio: np.ndarray, dbfs: float) -> np.ndarray:
    """Scale to the given RMS level (dBFS) and convert to int16."""
    audio = np.asarray(audio, np.float64)
    scaled = audio / np.sqrt(np.mean(audio**2)) * 32768.0 * 10 ** (dbfs / 20)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def speech_bounds(audio: np.ndarray) -> tuple[float, float]:
    """Where the voice really is: first and last 10 ms frame within 30 dB of the loudest."""
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    voiced = np.nonzero(rms > rms.max() * 10 ** (-30 / 20))[0]
    return voiced[0] * 0.01, (voiced[-1] + 1) * 0.01


def run(detector: UtteranceDetector, audio: np.ndarray, piece: int = FRAME) -> list[tuple[float, VadEvent]]:
    """Feed in pieces; return (stream seconds when the event came out, event)."""
    events: list[tuple[float, VadEvent]] = []
    for i in range(0, len(audio), piece):
        events += [(detector.position, e) for e in detector.feed(audio[i : i + piece])]
    return events


def kinds(events: list[tuple[float, VadEvent]]) -> list[str]:
    return [e.kind for _, e in events]


def test_two_sentences_with_a_pause_are_two_utterances_at_the_right_times(bank: VoiceBank) -> None:
    first = speech(bank, "Please turn on the lights in the kitchen.")
    second = speech(bank, "And close the blinds.")
    audio = np.concatenate([silence(1.0), first, silence(1.0), second, silence(1.0)])
    offset_second = 2.0 + len(first) / SAMPLE_RATE
    truth = [np.add(speech_bounds(first), 1.0), np.add(speech_bounds(second), offset_second)]

    detector = UtteranceDetector()
    started = time.process_time()
    events = run(detector, audio)
    cpu_ms_per_s = (time.process_time() - started) * 1000 / (len(audio) / SAMPLE_RATE)
    print(f"VAD CPU: {cpu_ms_per_s:.1f} ms per second of audio")

    assert kinds(events) == ["speech_start", "utterance", "speech_start", "utterance"]
    utterances = [e for _, e in events if e.kind == "utterance"]
    for utterance, (true_start, true_end) in zip(utterances, truth, strict=True):
        assert utterance.start == pytest.approx(true_start, abs=TOLERANCE_S)
        assert utterance.end == pytest.approx(true_end, abs=TOLERANCE_S)
        assert utterance.reason == "silence"
        # The audio holds the whole utterance plus ~200 ms of pre-roll, so the first syllable is not clipped.
        assert utterance.audio_start == pytest.approx(utterance.start - 0.2, abs=0.033)
        assert utterance.audio.dtype == np.int16
        audio_end = utterance.audio_start + len(utterance.audio) / SAMPLE_RATE
        assert audio_end >= true_end
        assert len(utterance.audio) / SAMPLE_RATE < (true_end - true_start) + 0.6

    # Barge-in needs the start early (min_speech_ms + model lag); the end waits for the 500 ms hangover.
    (start_at, start), (end_at, first_utterance) = events[0], events[1]
    assert start.start == first_utterance.start
    assert start_at - truth[0][0] < 0.4
    assert 0.45 <= end_at - first_utterance.end <= 0.6
    assert cpu_ms_per_s < 100


def test_results_do_not_depend_on_how_the_audio_is_cut(bank: VoiceBank) -> None:
    audio = np.concatenate([silence(0.5), speech(bank, "Good morning."), silence(0.8)])
    by_frame = [e for _, e in run(UtteranceDetector(), audio, piece=FRAME)]
    odd_pieces = [e for _, e in run(UtteranceDetector(), audio, piece=777)]
    all_at_once = UtteranceDetector().feed(audio)
    for events in (odd_pieces, all_at_once):
        assert [(e.kind, e.start, e.end) for e in events] == [(e.kind, e.start, e.end) for e in by_frame]
    assert np.array_equal(all_at_once[-1].audio, by_frame[-1].audio)


def test_silence_is_not_speech() -> None:
    dither = np.random.default_rng(1).normal(0, 3, 5 * SAMPLE_RATE).astype(np.int16)
    assert run(UtteranceDetector(), np.concatenate([silence(5.0), dither])) == []


def _white(seconds: float, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(0, 1, round(seconds * SAMPLE_RATE))


def _hum(seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / k for k, f in enumerate((50, 100, 150, 200, 250), 1))


def _fan(seconds: float, rng: np.random.Generator) -> np.ndarray:
    brown = np.cumsum(rng.normal(0, 1, round(seconds * SAMPLE_RATE)))
    return brown - np.convolve(brown, np.ones(400) / 400, mode="same")  # no DC drift: a rumbling fan


@pytest.mark.parametrize("noise", [_white, _hum, _fan], ids=["white", "mains-hum", "fan-rumble"])
@pytest.mark.parametrize("dbfs", [-30, -15])
def test_steady_noise_is_not_speech(noise: Callable[[float, np.random.Generator], np.ndarray], dbfs: int) -> None:
    audio = level(noise(5.0, np.random.default_rng(2)), dbfs)
    assert run(UtteranceDetector(), audio) == []


# In loud noise Silero's probability decays slowly after the last word: the end comes 180–260 ms late
# (measured over 12 syntheses; piper's voice varies from run to run).
@pytest.mark.parametrize(("snr_db", "end_tolerance"), [(20, TOLERANCE_S), (10, 0.35)])
def test_speech_over_noise_is_detected(bank: VoiceBank, snr_db: int, end_tolerance: float) -> None:
    voice = speech(bank, "Please turn on the lights in the kitchen.")
    speech_dbfs = 20 * np.log10(np.sqrt(np.mean(voice.astype(np.float64) ** 2)) / 32768)
    clean = np.concatenate([silence(1.0), voice, silence(1.0)]).astype(np.float64)
    noise = level(_white(len(clean) / SAMPLE_RATE, np.random.default_rng(3)), speech_dbfs - snr_db)
    audio = np.clip(clean + noise, -32768, 32767).astype(np.int16)
    true_start, true_end = np.add(speech_bounds(voice), 1.0)

    utterances = [e for _, e in run(UtteranceDetector(), audio) if e.kind == "utterance"]

    assert len(utterances) == 1
    assert utterances[0].start == pytest.approx(true_start, abs=TOLERANCE_S)
    assert utterances[0].end == pytest.approx(true_end, abs=end_tolerance)


def test_a_click_shorter_than_min_speech_is_ignored(bank: VoiceBank) -> None:
    voice = speech(bank, "Please turn on the lights in the kitchen.")
    blip = voice[int(0.3 * SAMPLE_RATE) : int(0.45 * SAMPLE_RATE)]  # 150 ms of a vowel
    assert run(UtteranceDetector(), np.concatenate([silence(1.0), blip, silence(1.0)])) == []


def test_long_speech_is_cut_at_max_utterance_length(bank: VoiceBank) -> None:
    voice = speech(
        bank, "Could you tell me the opening hours of the museum on Sunday afternoon, and whether I need to book?"
    )
    events = run(UtteranceDetector(max_utterance_s=1.5), np.concatenate([voice, silence(1.0)]))
    utterances = [e for _, e in events if e.kind == "utterance"]

    assert len(utterances) >= 3
    assert kinds(events).count("speech_start") == 1  # one long turn: barge-in fires once
    assert all(u.reason == "max_length" for u in utterances[:-1])
    assert all(u.end - u.start <= 1.5 + 0.033 for u in utterances)
    # Nothing said is lost between pieces: every voiced 10 ms of the sentence is in some utterance's audio.
    frames = voice[: len(voice) // 160 * 160].reshape(-1, 160).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    covered = [(u.audio_start, u.audio_start + len(u.audio) / SAMPLE_RATE) for u in utterances]
    for i in np.nonzero(rms > rms.max() * 10 ** (-30 / 20))[0]:
        middle = (i + 0.5) * 0.01
        assert any(a <= middle < b for a, b in covered), f"voice at {middle:.3f} s lost"
    assert utterances[-1].reason == "silence"


def test_flush_ends_the_utterance_in_progress(bank: VoiceBank) -> None:
    voice = speech(bank, "Please turn on the lights in the kitchen.")
    detector = UtteranceDetector()
    events = run(detector, np.concatenate([silence(0.5), voice[: len(voice) // 2]]))
    assert kinds(events) == ["speech_start"]
    assert detector.in_speech

    flushed = detector.flush()

    assert [e.kind for e in flushed] == ["utterance"]
    assert flushed[0].reason == "flush"
    assert flushed[0].end == pytest.approx(0.5 + len(voice) / 2 / SAMPLE_RATE, abs=TOLERANCE_S)
    assert not detector.in_speech
    assert detector.position == 0
    assert detector.flush() == []


def test_a_likely_end_carries_the_utterance_audio_well_before_the_end_is_certain(bank: VoiceBank) -> None:
    audio = np.concatenate([silence(0.5), speech(bank, "What is the Wi-Fi password?"), silence(1.0)])
    events = run(UtteranceDetector(speculate_after_ms=200), audio)
    assert kinds(events) == ["speech_start", "likely_end", "utterance"]
    (guess_at, guess), (final_at, final) = events[1], events[2]
    assert (guess.start, guess.end, guess.audio_start) == (final.start, final.end, final.audio_start)
    assert np.array_equal(guess.audio, final.audio)
    assert 0.2 <= guess_at - guess.end < 0.26  # 200 ms of silence, to the next 32 ms window
    assert final_at - guess_at >= 0.25  # the head start speech-to-text gets


def test_a_pause_inside_a_sentence_makes_a_guess_the_utterance_then_outgrows(bank: VoiceBank) -> None:
    first, second = speech(bank, "Turn on the lights"), speech(bank, "in the kitchen please.")
    audio = np.concatenate([silence(0.5), first, silence(0.35), second, silence(1.0)])
    events = run(UtteranceDetector(speculate_after_ms=200), audio)
    assert kinds(events).count("utterance") == 1
    guesses = [e for _, e in events if e.kind == "likely_end"]
    final = next(e for _, e in events if e.kind == "utterance")
    assert len(guesses) == 2  # one in the pause, one at the real end
    assert guesses[0].end < final.end and len(guesses[0].audio) < len(final.audio)
    assert np.array_equal(guesses[1].audio, final.audio)


def test_without_speculation_there_are_no_likely_ends(bank: VoiceBank) -> None:
    audio = np.concatenate([silence(0.5), speech(bank, "Good morning."), silence(1.0)])
    assert kinds(run(UtteranceDetector(), audio)) == ["speech_start", "utterance"]
