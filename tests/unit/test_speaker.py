"""Speech playback on a slow machine: a short first piece must not leave a gap before the next one."""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from lib.engine.lipsync import envelope
from lib.engine.mouth import CLOSED_SHAPES
from lib.engine.speaker import (
    SENTENCE_PAUSE_S,
    SYNTH_FIXED_S,
    SYNTH_PER_CHAR_S,
    PreparedChunk,
    Speaker,
    SpeechBuffer,
    Utterance,
)
from lib.engine.synthesis_stop import SynthesisCancelled, SynthesisStop
from lib.engine.tts import SpeechChunk, split_sentences

FRAME = 48_000 // 25
# split into "Welcome everyone" | "to the Avatar Ops demo which ...": a stall there would be mid-sentence
MID_SENTENCE = (
    "Welcome everyone to the Avatar Ops demo which is going to be very nice for all of you who came here today."
)
TWO_SENTENCES = "Hello there. Welcome to the Avatar Ops demo, it is nice to meet you."


class SlowVoices:
    """Piper's synthesis times (as measured on an idle 2-core machine) times `load`; the audio is a tone
    as long as the piece would be spoken (14 characters a second)."""

    def __init__(self, load: float) -> None:
        self.load = load

    def synthesize(
        self,
        text: str,
        voice_id: str | None = None,
        rate: float = 1.0,
        *,
        quick_start: bool = True,
        stop: SynthesisStop | None = None,
    ):
        pieces = split_sentences(text, quick_start=quick_start)
        for index, piece in enumerate(pieces):
            ready_at = time.monotonic() + self.load * synth_seconds(piece)
            while time.monotonic() < ready_at:  # as onnxruntime does, a set stop ends the piece early
                if stop is not None and stop.is_set:
                    raise SynthesisCancelled
                time.sleep(0.005)
            samples = round(len(piece) / 14 * 48_000)
            audio = (3000 * np.sin(np.arange(samples) * 0.05)).astype(np.int16) + 1  # never exactly silent
            yield SpeechChunk(piece, audio, [], pieces[index + 1] if index + 1 < len(pieces) else None)


def synth_seconds(piece: str) -> float:
    return SYNTH_FIXED_S + SYNTH_PER_CHAR_S * len(piece)


def repeating_speaker(buffer: SpeechBuffer, voices: SlowVoices, pool: ThreadPoolExecutor, events: list) -> Speaker:
    return Speaker(
        buffer,
        voices,
        voice_id=None,
        rate=1.0,
        answer=lambda text: [text],
        executor=pool,
        emit=events.append,
        frame_samples=FRAME,
    )


async def play(voices: SlowVoices, text: str) -> tuple[list[bool], SpeechBuffer]:
    """Run the render clock's side at 25 fps until the task is done; True per frame that carried speech."""
    events: list[dict] = []
    buffer = SpeechBuffer(events.append, FRAME)
    with ThreadPoolExecutor(1) as pool:
        speaker = repeating_speaker(buffer, voices, pool, events)
        utt = speaker.submit(text, "repeat")
        frames: list[bool] = []
        start = time.monotonic()
        while not utt.done.done() and len(frames) < 500:
            frames.append(bool(buffer.next_tick(FRAME).audio.any()))
            await asyncio.sleep(max(0.0, start + len(frames) / 25 - time.monotonic()))
        await speaker.stop()
    return frames, buffer


def gaps(frames: list[bool]) -> int:
    """Silent frames between the first and the last frame of speech."""
    spoken = [i for i, s in enumerate(frames) if s]
    return sum(1 for s in frames[spoken[0] : spoken[-1] + 1] if not s) if spoken else -1


async def test_a_starved_synthesizer_delays_the_start_instead_of_stopping_mid_sentence():
    assert not split_sentences(MID_SENTENCE)[0].endswith(".")  # the first piece is cut mid-sentence
    frames, buffer = await play(SlowVoices(load=5), MID_SENTENCE)  # a machine busy with other work
    assert any(frames)
    assert gaps(frames) == 0, f"{gaps(frames)} silent frames inside the speech"
    assert buffer.starved_frames == 0 and buffer.held_frames > 0


async def test_after_a_full_stop_a_short_pause_is_preferred_to_a_later_start():
    frames, after_stop = await play(SlowVoices(load=5), TWO_SENTENCES)
    assert gaps(frames) <= SENTENCE_PAUSE_S * 25 + 1  # at most a pause between the sentences, never a stall
    _, after_comma = await play(SlowVoices(load=5), TWO_SENTENCES.replace("there.", "there,"))
    assert after_comma.held_frames - after_stop.held_frames >= SENTENCE_PAUSE_S * 25 - 2


async def test_a_fast_synthesizer_starts_at_once():
    for text in (MID_SENTENCE, TWO_SENTENCES):
        frames, buffer = await play(SlowVoices(load=0.8), text)
        assert gaps(frames) == 0
        assert buffer.held_frames == 0
        first_piece = split_sentences(text)[0]
        synth_frames = math.ceil(0.8 * synth_seconds(first_piece) * 25)
        assert frames.index(True) <= synth_frames + 2  # as soon as the first piece is synthesized


async def test_an_interrupt_stops_the_piece_being_synthesized_so_the_next_task_speaks_at_once():
    events: list[dict] = []
    buffer = SpeechBuffer(events.append, FRAME)
    voices = SlowVoices(load=5)
    with ThreadPoolExecutor(1) as pool:
        speaker = repeating_speaker(buffer, voices, pool, events)

        async def until_speech(timeout: float) -> float:
            start = time.monotonic()
            while time.monotonic() - start < timeout:
                if buffer.next_tick(FRAME).audio.any():
                    return time.monotonic() - start
                await asyncio.sleep(1 / 25)
            return math.inf

        first = speaker.submit(MID_SENTENCE, "repeat")
        assert await until_speech(10) < 10
        await asyncio.sleep(0.2)  # the first piece plays; the long second one is being synthesized
        speaker.interrupt()
        speaker.submit("Hello there.", "repeat")
        waited = await until_speech(10)
        await speaker.stop()
    second_piece = split_sentences(MID_SENTENCE)[1]
    assert waited < 5 * synth_seconds("Hello there.") + 0.4, (
        f"the next task spoke after {waited:.2f} s; the interrupted piece alone takes "
        f"{5 * synth_seconds(second_piece):.2f} s"
    )
    assert first.done.done() and first.error is None  # stopped, not failed


# --- audio without phoneme timings (LITE) -------------------------------------------------------


async def test_audio_without_a_timeline_opens_the_mouth_with_loudness_and_closes_it_in_silence():
    rate = 48_000
    t = np.arange(rate) / rate
    loud = (12_000 * np.sin(2 * np.pi * 220 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t))).astype(np.int16)
    audio = np.concatenate([loud, np.zeros(rate, np.int16), loud])  # 1 s loud, 1 s silence, 1 s loud
    buffer = SpeechBuffer(lambda _e: None, FRAME)
    utt = Utterance("t", "", "lite", asyncio.get_running_loop().create_future())
    buffer.enqueue(utt)
    chunk = SpeechChunk("", audio, [])
    buffer.add_chunk(utt, PreparedChunk(chunk, envelope(audio, rate, FRAME), announced=True))
    buffer.finish_synthesis(utt)
    ticks = [buffer.next_tick(FRAME) for _ in range(75)]
    loud_ticks = ticks[2:23] + ticks[52:73]
    silent_ticks = ticks[29:48]  # after the release has eased the jaw shut
    assert sum(tk.mouth not in CLOSED_SHAPES for tk in loud_ticks) >= 0.8 * len(loud_ticks)
    assert len({(tk.mouth, round(tk.openness, 1)) for tk in loud_ticks}) >= 3  # it moves, not one pose
    assert all(tk.mouth in CLOSED_SHAPES and tk.openness == 0.0 for tk in silent_ticks)
    assert all(tk.speaking for tk in ticks)  # a pause inside an utterance is still speaking
