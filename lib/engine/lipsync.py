"""Phoneme timings → mouth-shape timeline, and the audio envelope that drives jaw openness."""

from __future__ import annotations

import math
import unicodedata
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lib.engine.mouth import MouthShape

MBP_MIN_SECONDS = 0.040  # one video frame at 25 fps: a closure shorter than this can fall between frames
_SHORT_GAP_SECONDS = 0.150  # a word gap shorter than this is co-articulation, not a pause
_FLICKER_SECONDS = 0.010  # shapes shorter than this would only flash for one frame

_S = MouthShape
_SHAPES: dict[str, MouthShape] = {}
for _chars, _shape in (
    ("mbpʙɓβ", _S.MBP),
    ("fvɱʋⱱɸ", _S.FV),
    ("lɫɬɮʎɭʟɺθð", _S.L),
    ("uʊwʍɥyʏʉɯɰ", _S.U),
    ("oɔɒɜɚɝɞɵøœ", _S.O),
    ("aɑæʌɐɶä", _S.A),
    ("eɛiɪɨɘəᵻɤjɘε", _S.E),
):
    for _c in _chars:
        _SHAPES[_c] = _shape

_VOWEL_SHAPES = frozenset({_S.E, _S.A, _S.O, _S.U})
_PAUSE_TOKENS = frozenset('^$_.,?!;:…—()"|‖') | {""}  # piper's ^ $ _, punctuation, espeak's "" pause
_GAP_TOKENS = frozenset({"-", "‿"})  # joins inside a phrase, like a space between words
_STRESS = frozenset({"ˈ", "ˌ"})  # their time belongs to the phone that follows
_POSTFIX = frozenset({"ː", "ˑ", "ʰ", "ʲ", "ʷ", "ˤ", "˞", "̃"})  # their time belongs to the phone before


@dataclass(frozen=True)
class MouthKey:
    start: int  # first sample, inclusive
    end: int  # last sample, exclusive
    shape: MouthShape


def phone_shape(phone: str) -> MouthShape | None:
    """Shape for one IPA symbol; None for marks that only modify a neighbour (stress, length, diacritics)."""
    if phone in _PAUSE_TOKENS or phone.isspace():
        return _S.REST
    if phone in _STRESS or phone in _POSTFIX or unicodedata.combining(phone):
        return None
    shape = _SHAPES.get(phone)
    if shape is not None:
        return shape
    if phone.isalpha():
        return _S.CONSONANT
    return None


def _token_units(token: str) -> list[tuple[MouthShape, float]]:
    """Split one token (piper: a codepoint; espeak: a cluster like 'ˈaɪ' or 'ɑːɹ') into weighted shapes.

    Vowels weigh 2, consonants 1, a length mark adds 1: so diphthongs split at the midpoint and a
    vowel before a consonant in one cluster keeps most of the time.
    """
    units: list[tuple[MouthShape, float]] = []
    for ch in unicodedata.normalize("NFD", token):
        shape = phone_shape(ch)
        if shape is None:
            if ch in "ːˑ" and units:
                units[-1] = (units[-1][0], units[-1][1] + 1.0)
            continue
        units.append((shape, 2.0 if shape in _VOWEL_SHAPES else 1.0))
    return units


def phonemes_to_timeline(phonemes: Sequence[tuple[str, int]], sample_rate: int) -> list[MouthKey]:
    """Map (IPA phoneme, num_samples) pairs to contiguous mouth keys covering exactly their total length.

    Positions are in the same samples as the input. M/B/P closures are held at least one video frame.
    """
    total = sum(int(n) for _, n in phonemes)
    # Each entry: [shape or None (a mark), samples, kind]; kind "gap" marks a word boundary.
    items: list[list] = []
    for token, n in phonemes:
        n = int(n)
        if (token and token.isspace()) or token in _GAP_TOKENS:
            items.append([None, n, "gap"])
            continue
        if token.strip() in _PAUSE_TOKENS:
            items.append([_S.REST, n, "phone"])
            continue
        units = _token_units(token)
        if not units:
            items.append([None, n, "pre" if token in _STRESS else "post"])
            continue
        weight = sum(w for _, w in units)
        given = 0
        for i, (shape, w) in enumerate(units):
            share = n - given if i == len(units) - 1 else round(n * w / weight)
            given += share
            items.append([shape, share, "phone"])

    shapes = _resolve_marks(items, sample_rate)
    keys = _merge(shapes)
    keys = _hold_closures(keys, math.ceil(MBP_MIN_SECONDS * sample_rate))
    keys = _drop_flicker(keys, round(_FLICKER_SECONDS * sample_rate))
    if not keys and total > 0:
        keys = [MouthKey(0, total, _S.REST)]
    return keys


def _resolve_marks(items: list[list], sample_rate: int) -> list[tuple[MouthShape, int]]:
    """Give the time of marks and word gaps to real phones; long word gaps become pauses."""
    short_gap = _SHORT_GAP_SECONDS * sample_rate
    out: list[tuple[MouthShape, int]] = []
    pending_pre = 0
    n_items = len(items)
    for idx, (shape, n, kind) in enumerate(items):
        if shape is not None:
            out.append((shape, n + pending_pre))
            pending_pre = 0
        elif kind == "post":
            if out:
                out[-1] = (out[-1][0], out[-1][1] + n)
            else:
                pending_pre += n
        elif kind == "pre":
            pending_pre += n
        else:
            prev_shape = out[-1][0] if out else _S.REST
            nxt = next((it[0] for it in items[idx + 1 :] if it[0] is not None), _S.REST)
            if n >= short_gap or prev_shape is _S.REST or nxt is _S.REST:
                out.append((_S.REST, n + pending_pre))
                pending_pre = 0
            else:
                half = n // 2
                if out:
                    out[-1] = (out[-1][0], out[-1][1] + half)
                else:
                    pending_pre += half
                pending_pre += n - half
        if idx == n_items - 1 and pending_pre:
            if out:
                out[-1] = (out[-1][0], out[-1][1] + pending_pre)
            else:
                out.append((_S.REST, pending_pre))
    return out


def _merge(shapes: list[tuple[MouthShape, int]]) -> list[MouthKey]:
    keys: list[MouthKey] = []
    pos = 0
    for shape, n in shapes:
        if n <= 0:
            continue
        if keys and keys[-1].shape is shape:
            keys[-1] = MouthKey(keys[-1].start, pos + n, shape)
        else:
            keys.append(MouthKey(pos, pos + n, shape))
        pos += n
    return keys


def _hold_closures(keys: list[MouthKey], min_len: int) -> list[MouthKey]:
    """Lengthen short M/B/P keys to min_len, borrowing evenly from the neighbours (never from another MBP)."""
    shapes = [k.shape for k in keys]
    lengths = [k.end - k.start for k in keys]
    for i, shape in enumerate(shapes):
        if shape is not _S.MBP or lengths[i] >= min_len:
            continue
        need = min_len - lengths[i]
        left, right = range(i - 1, -1, -1), range(i + 1, len(keys))
        left_room, right_room = _room(shapes, lengths, left), _room(shapes, lengths, right)
        take_left = min(left_room, need // 2)
        take_right = min(right_room, need - take_left)
        take_left = min(left_room, need - take_right)
        _take(shapes, lengths, left, take_left)
        _take(shapes, lengths, right, take_right)
        lengths[i] += take_left + take_right
    return _merge(list(zip(shapes, lengths, strict=True)))


def _drop_flicker(keys: list[MouthKey], min_len: int) -> list[MouthKey]:
    """Give keys shorter than min_len (except closures) to the previous key, or the next one at the start."""
    shapes = [k.shape for k in keys]
    lengths = [k.end - k.start for k in keys]
    for i, shape in enumerate(shapes):
        if shape is _S.MBP or lengths[i] >= min_len or len(keys) == 1:
            continue
        target = next((j for j in range(i - 1, -1, -1) if lengths[j] > 0), i + 1)
        if target >= len(keys):
            continue
        lengths[target] += lengths[i]
        lengths[i] = 0
    return _merge(list(zip(shapes, lengths, strict=True)))


def _room(shapes: list[MouthShape], lengths: list[int], indices: range) -> int:
    room = 0
    for j in indices:
        if shapes[j] is _S.MBP:
            break
        room += lengths[j]
    return room


def _take(shapes: list[MouthShape], lengths: list[int], indices: range, amount: int) -> None:
    """Shorten the keys at indices, nearest first, by amount samples in total."""
    for j in indices:
        if amount <= 0 or shapes[j] is _S.MBP:
            return
        taken = min(lengths[j], amount)
        lengths[j] -= taken
        amount -= taken


def mouth_at(timeline: Sequence[MouthKey], sample_pos: int) -> MouthShape:
    """Shape at a sample position; REST before the start, after the end, or on an empty timeline."""
    if not timeline or sample_pos < timeline[0].start or sample_pos >= timeline[-1].end:
        return _S.REST
    i = bisect_right(timeline, sample_pos, key=lambda k: k.start) - 1
    return timeline[i].shape


# Audio-driven mouth (no phoneme timings): jaw openness from the envelope picks the shape.
_LEVEL_SHAPES = ((0.12, _S.REST), (0.35, _S.CONSONANT), (0.7, _S.E))


def shape_for_level(openness: float) -> MouthShape:
    """Mouth shape for a jaw openness alone: closed below ~0.12 (silence), wider as the sound gets louder."""
    for limit, shape in _LEVEL_SHAPES:
        if openness < limit:
            return shape
    return _S.A


_ENV_BLOCK_SECONDS = 0.005
_ATTACK_SECONDS = 0.030
_RELEASE_SECONDS = 0.100
_NORM_FLOOR = 32768 * 10 ** (-30 / 20)  # quieter material than -30 dBFS RMS is never opened fully
_GATE = 32768 * 10 ** (-55 / 20)  # hiss and dither under -55 dBFS RMS count as silence


def envelope(audio_int16: np.ndarray, rate: int, frame_samples: int = 1920) -> np.ndarray:
    """Jaw openness per video frame, 0..1: RMS in 5 ms blocks, attack/release smoothed, averaged per frame."""
    audio = np.asarray(audio_int16, dtype=np.float32).reshape(-1)
    n_frames = -(-len(audio) // frame_samples)
    if n_frames == 0:
        return np.zeros(0, dtype=np.float32)
    block = max(1, round(_ENV_BLOCK_SECONDS * rate))
    padded = np.zeros(n_frames * frame_samples, dtype=np.float32)
    padded[: len(audio)] = audio
    n_blocks = -(-len(padded) // block)
    blocks = np.zeros(n_blocks * block, dtype=np.float32)
    blocks[: len(padded)] = padded
    rms = np.sqrt(np.mean(np.square(blocks.reshape(n_blocks, block)), axis=1))
    rms = np.maximum(rms - _GATE, 0.0)

    step = block / rate
    attack = 1.0 - math.exp(-step / _ATTACK_SECONDS)
    release = 1.0 - math.exp(-step / _RELEASE_SECONDS)
    smooth = np.empty_like(rms)
    level = 0.0
    for i, x in enumerate(rms.tolist()):
        level += (attack if x > level else release) * (x - level)
        smooth[i] = level

    # Average the blocks whose start falls inside each frame.
    frame_of_block = np.minimum((np.arange(n_blocks) * block) // frame_samples, n_frames - 1)
    sums = np.bincount(frame_of_block, weights=smooth, minlength=n_frames)
    counts = np.bincount(frame_of_block, minlength=n_frames)
    per_frame = sums / np.maximum(counts, 1)
    norm = max(float(per_frame.max()), _NORM_FLOOR - _GATE)
    return np.clip(per_frame / norm, 0.0, 1.0).astype(np.float32)
