from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from lib.engine.lipsync import MouthKey, envelope, mouth_at, phone_shape, phonemes_to_timeline, shape_for_level
from lib.engine.mouth import MouthShape as S

RATE = 48_000
FRAME = 1920  # one 25 fps video frame at 48 kHz


def shapes(timeline: list[MouthKey]) -> list[S]:
    return [k.shape for k in timeline]


def assert_covers(timeline: list[MouthKey], total: int) -> None:
    assert timeline[0].start == 0
    assert timeline[-1].end == total
    for a, b in itertools.pairwise(timeline):
        assert a.end == b.start
        assert a.shape != b.shape, "neighbouring keys with the same shape should be merged"
    assert all(k.end > k.start for k in timeline)


@pytest.mark.parametrize(
    ("phone", "shape"),
    [
        ("a", S.A), ("ɑ", S.A), ("æ", S.A), ("ʌ", S.A),
        ("o", S.O), ("ɔ", S.O), ("ɜ", S.O),
        ("u", S.U), ("ʊ", S.U), ("w", S.U),
        ("i", S.E), ("ɪ", S.E), ("e", S.E), ("ɛ", S.E), ("ə", S.E),
        ("m", S.MBP), ("b", S.MBP), ("p", S.MBP),
        ("f", S.FV), ("v", S.FV),
        ("l", S.L), ("θ", S.L), ("ð", S.L),
        ("t", S.CONSONANT), ("s", S.CONSONANT), ("k", S.CONSONANT), ("ɹ", S.CONSONANT), ("ʃ", S.CONSONANT),
        ("^", S.REST), ("$", S.REST), ("_", S.REST), (".", S.REST), (",", S.REST), ("?", S.REST),
        ("ˈ", None), ("ˌ", None), ("ː", None),
    ],
)  # fmt: skip
def test_phone_shapes(phone: str, shape: S | None) -> None:
    assert phone_shape(phone) is shape


def test_piper_style_sentence_maps_to_expected_shapes() -> None:
    # piper: one codepoint per entry, "maybe" = m ˈ e ɪ b i
    phonemes = [("^", 2000), ("m", 2400), ("ˈ", 1000), ("e", 3000), ("ɪ", 3000), ("b", 2400),
                ("i", 4000), (".", 3000), ("$", 2000)]  # fmt: skip
    timeline = phonemes_to_timeline(phonemes, RATE)
    assert_covers(timeline, sum(n for _, n in phonemes))
    assert shapes(timeline) == [S.REST, S.MBP, S.E, S.MBP, S.E, S.REST]
    # the stress mark's time goes to the vowel after it, not to the M
    assert timeline[1].end - timeline[1].start == 2400
    assert timeline[2].end - timeline[2].start == 7000


def test_diphthong_cluster_splits_at_midpoint() -> None:
    timeline = phonemes_to_timeline([("ˈaɪ", 4800)], RATE)
    assert timeline == [MouthKey(0, 2400, S.A), MouthKey(2400, 4800, S.E)]
    timeline = phonemes_to_timeline([("oʊ", 6000)], RATE)
    assert timeline == [MouthKey(0, 3000, S.O), MouthKey(3000, 6000, S.U)]


@pytest.mark.parametrize(("diphthong", "first", "second"), [("aʊ", S.A, S.U), ("ɔɪ", S.O, S.E), ("aɪ", S.A, S.E)])
def test_other_diphthongs(diphthong: str, first: S, second: S) -> None:
    timeline = phonemes_to_timeline([("_", 3000), (diphthong, 8000), ("_", 3000)], RATE)
    assert mouth_at(timeline, 3000 + 1000) is first
    assert mouth_at(timeline, 3000 + 7000) is second


def test_length_mark_lengthens_the_vowel_before_it() -> None:
    timeline = phonemes_to_timeline([("t", 3000), ("u", 3000), ("ː", 3000)], RATE)
    assert timeline == [MouthKey(0, 3000, S.CONSONANT), MouthKey(3000, 9000, S.U)]
    # espeak cluster: vowel with length mark keeps more of the time than the consonant after it
    keys = phonemes_to_timeline([("ɑːɹ", 8000)], RATE)
    assert shapes(keys) == [S.A, S.CONSONANT]
    assert keys[0].end - keys[0].start == 6000


def test_short_bilabial_is_held_one_frame_borrowing_from_both_neighbours() -> None:
    phonemes = [("a", 9600), ("b", 480), ("a", 9600)]
    timeline = phonemes_to_timeline(phonemes, RATE)
    assert_covers(timeline, 19680)
    assert shapes(timeline) == [S.A, S.MBP, S.A]
    closure = timeline[1]
    assert closure.end - closure.start == FRAME
    assert closure.start == 9600 - (FRAME - 480) // 2
    # at 25 fps, a renderer sampling one position per frame sees the closure, whatever the frame phase
    for offset in range(0, FRAME, 97):
        assert any(mouth_at(timeline, f * FRAME + offset) is S.MBP for f in range(11))


def test_bilabial_at_the_start_borrows_from_the_right_only() -> None:
    timeline = phonemes_to_timeline([("p", 500), ("a", 10_000)], RATE)
    assert timeline == [MouthKey(0, FRAME, S.MBP), MouthKey(FRAME, 10_500, S.A)]


def test_bilabial_longer_than_a_frame_is_untouched() -> None:
    timeline = phonemes_to_timeline([("a", 5000), ("m", 4000), ("a", 5000)], RATE)
    assert timeline[1] == MouthKey(5000, 9000, S.MBP)


def test_bilabial_hold_uses_the_native_sample_rate() -> None:
    timeline = phonemes_to_timeline([("a", 5000), ("m", 200), ("a", 5000)], 22_050)
    assert timeline[1].end - timeline[1].start == 882  # 40 ms at 22.05 kHz


def test_consecutive_closures_merge_and_hold_together() -> None:
    # "some bay": m and b back to back close the lips once
    timeline = phonemes_to_timeline([("ʌ", 6000), ("m", 600), (" ", 300), ("b", 600), ("eɪ", 6000)], RATE)
    assert shapes(timeline) == [S.A, S.MBP, S.E]
    assert timeline[1].end - timeline[1].start == FRAME


def test_word_gap_is_coarticulation_but_pauses_close_the_mouth() -> None:
    short = phonemes_to_timeline([("a", 6000), (" ", 1000), ("o", 6000)], RATE)
    assert shapes(short) == [S.A, S.O]
    long = phonemes_to_timeline([("a", 6000), (" ", 12_000), ("o", 6000)], RATE)
    assert shapes(long) == [S.A, S.REST, S.O]
    comma = phonemes_to_timeline([("a", 6000), (",", 4000), (" ", 2000), ("o", 6000)], RATE)
    assert shapes(comma) == [S.A, S.REST, S.O]
    assert comma[1].end - comma[1].start == 6000


def test_espeak_pause_events_are_rest() -> None:
    timeline = phonemes_to_timeline([("h", 2000), ("ˈɛ", 5000), ("", 8000)], RATE)
    assert shapes(timeline) == [S.CONSONANT, S.E, S.REST]


def test_flicker_shorter_than_10ms_is_absorbed() -> None:
    timeline = phonemes_to_timeline([("a", 6000), ("t", 100), ("o", 6000)], RATE)
    assert shapes(timeline) == [S.A, S.O]
    assert timeline[-1].end == 12_100


def test_empty_and_silent_inputs() -> None:
    assert phonemes_to_timeline([], RATE) == []
    assert phonemes_to_timeline([("ˈ", 3000)], RATE) == [MouthKey(0, 3000, S.REST)]


def test_mouth_at_boundaries() -> None:
    timeline = [MouthKey(0, 100, S.A), MouthKey(100, 200, S.MBP)]
    assert mouth_at(timeline, 0) is S.A
    assert mouth_at(timeline, 99) is S.A
    assert mouth_at(timeline, 100) is S.MBP
    assert mouth_at(timeline, 199) is S.MBP
    assert mouth_at(timeline, 200) is S.REST
    assert mouth_at(timeline, -5) is S.REST
    assert mouth_at([], 10) is S.REST


def test_envelope_of_silence_is_zero() -> None:
    env = envelope(np.zeros(RATE, dtype=np.int16), RATE)
    assert len(env) == 25
    assert float(env.max()) < 0.01
    # faint hiss is silence too
    hiss = (np.random.default_rng(0).standard_normal(RATE) * 20).astype(np.int16)
    assert float(envelope(hiss, RATE).max()) < 0.01


def test_envelope_of_tone_rises_with_attack_and_falls_with_release() -> None:
    t = np.arange(RATE * 2) / RATE
    tone = (np.sin(2 * np.pi * 220 * t) * 12_000).astype(np.int16)
    tone[: 10 * FRAME] = 0  # 10 silent frames
    tone[30 * FRAME :] = 0  # tone for 20 frames, then silence
    env = envelope(tone, RATE)
    assert len(env) == 50
    assert env[9] < 0.01
    assert 0.2 < env[10] < 0.8, "attack (~30 ms) opens the jaw within a frame or two, not instantly"
    assert env[12] > 0.95
    assert float(env.max()) == pytest.approx(1.0)
    assert 0.5 < env[30] < 0.95, "release (~100 ms) is slower than attack"
    assert env[30] > env[31] > env[32] > env[33]
    assert env[40] < 0.05


def test_envelope_partial_last_frame_and_quiet_speech_not_blown_up() -> None:
    audio = (np.sin(np.arange(FRAME * 3 + 100) / 5) * 100).astype(np.int16)  # about -50 dBFS
    env = envelope(audio, RATE)
    assert len(env) == 4
    assert float(env.max()) < 0.1


def test_fast_enough_for_the_render_loop() -> None:
    phonemes = [("h", 900), ("ˈ", 500), ("ɛ", 2000), ("l", 800), ("oʊ", 3000), (" ", 500), ("b", 400)] * 200
    audio = (np.random.default_rng(1).standard_normal(RATE * 30) * 3000).astype(np.int16)
    t0 = time.perf_counter()
    timeline = phonemes_to_timeline(phonemes, RATE)
    env = envelope(audio, RATE)
    for pos in range(0, timeline[-1].end, FRAME):
        mouth_at(timeline, pos)
    assert time.perf_counter() - t0 < 0.5
    assert len(env) == 750


def test_loudness_alone_picks_a_shape_closed_when_quiet_widest_when_loud() -> None:
    levels = [0.0, 0.05, 0.2, 0.5, 0.9, 1.0]
    shapes = [shape_for_level(x) for x in levels]
    assert shapes[:2] == [S.REST, S.REST]
    assert shapes[-1] is S.A and len(set(shapes)) == 4
