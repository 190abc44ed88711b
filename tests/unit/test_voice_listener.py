from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import av
import numpy as np
import pytest

from lib.engine.tts import TARGET_RATE, VoiceBank
from lib.voice.listener import Transcript, VoiceListener, is_hallucination
from lib.voice.stt import SpeechToText, get_speech_to_text
from lib.voice.vad import SAMPLE_RATE, UtteranceDetector, VadEvent

FRAME = 960  # 20 ms at 48 kHz, what streamlit-webrtc delivers


@pytest.fixture(scope="module")
def bank() -> VoiceBank:
    return VoiceBank(varied=False)  # reproducible speech: timing thresholds are not crossed by chance


@pytest.fixture(scope="module")
def stt() -> SpeechToText:
    started = time.perf_counter()
    model = get_speech_to_text()
    print(f"\nSTT load {model.load_seconds:.2f} s + warm-up {model.warmup_seconds:.2f} s "
          f"(fixture {time.perf_counter() - started:.2f} s)")  # fmt: skip
    return model


def speech_48k(bank: VoiceBank, text: str) -> np.ndarray:
    return np.concatenate([chunk.audio for chunk in bank.synthesize(text)])


def stereo_frames(audio_48k: np.ndarray) -> Iterator[av.AudioFrame]:
    """Packed s16 stereo frames of 960 samples, like the browser's microphone through aiortc."""
    audio = np.concatenate([audio_48k, np.zeros(-len(audio_48k) % FRAME, np.int16)])
    for i, start in enumerate(range(0, len(audio), FRAME)):
        mono = audio[start : start + FRAME]
        frame = av.AudioFrame.from_ndarray(np.repeat(mono, 2)[None, :], format="s16", layout="stereo")
        frame.sample_rate = TARGET_RATE
        frame.pts = i * FRAME
        yield frame


def silence_48k(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * TARGET_RATE), np.int16)


class Recorder:
    """Collects callbacks in the order they happened, from whichever thread."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float, Transcript | None]] = []
        self.transcript = threading.Event()

    def on_speech_start(self) -> None:
        self.events.append(("speech_start", time.monotonic(), None))

    def on_speech_end(self) -> None:
        self.events.append(("speech_end", time.monotonic(), None))

    def on_transcript(self, transcript: Transcript) -> None:
        self.events.append(("transcript", time.monotonic(), transcript))
        self.transcript.set()

    def transcripts(self) -> list[Transcript]:
        return [t for kind, _, t in self.events if kind == "transcript" and t is not None]

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.events]


class FakeSTT:
    """Stands in for Whisper where the words do not matter; can be held to simulate a slow model."""

    def __init__(self, text: str = "turn on the lights") -> None:
        self.text = text
        self.calls: list[int] = []
        self.started = threading.Event()  # a transcription has begun
        self.release = threading.Event()
        self.release.set()

    def transcribe(self, audio: np.ndarray) -> str:
        self.started.set()
        self.release.wait(10)
        self.calls.append(len(audio))
        return self.text


def push_all(listener: VoiceListener, audio_48k: np.ndarray, realtime: bool = False) -> list[float]:
    """Push frames (paced like a live microphone if realtime); return each push() call's wall time in ms."""
    times: list[float] = []
    started = time.monotonic()
    for i, frame in enumerate(stereo_frames(audio_48k)):
        if realtime:
            time.sleep(max(0.0, started + i * FRAME / TARGET_RATE - time.monotonic()))
        t = time.perf_counter()
        listener.push(frame)
        times.append((time.perf_counter() - t) * 1000)
    return times


def assert_never_blocked(push_ms: list[float]) -> None:
    # Blocking on the workers would cost whole VAD/STT runs (≥ 100s of ms); the slack is for a busy CI box.
    assert np.median(push_ms) < 2
    assert max(push_ms) < 100


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_a_spoken_question_arrives_as_text(bank: VoiceBank, stt: SpeechToText) -> None:
    lead, voice = silence_48k(0.5), speech_48k(bank, "What is the Wi-Fi password?")
    voiced = np.nonzero(np.abs(voice) > 0.03 * np.abs(voice).max())[0]
    recorder = Recorder()
    listener = VoiceListener(recorder.on_transcript, recorder.on_speech_start, stt=stt)
    try:
        started = time.monotonic()
        push_ms = push_all(listener, np.concatenate([lead, voice, silence_48k(1.0)]), realtime=True)
        true_end = started + (len(lead) + voiced[-1]) / TARGET_RATE
        assert recorder.transcript.wait(8), f"no transcript; events: {recorder.kinds()}"
    finally:
        listener.close()

    assert recorder.kinds() == ["speech_start", "transcript"]
    transcript = recorder.transcripts()[0]
    text = transcript.text.lower()
    assert "wi-fi" in text or "wifi" in text, text
    assert "password" in text, text
    speech_start_at = recorder.events[0][1]
    assert speech_start_at - (started + (len(lead) + voiced[0]) / TARGET_RATE) < 0.5  # barge-in is quick
    assert transcript.ended_at == pytest.approx(true_end, abs=0.2)
    assert transcript.started_at < transcript.ended_at < transcript.transcribed_at
    assert 1000 < transcript.audio_ms < len(voice) / TARGET_RATE * 1000 + 600
    print(
        f"end of speech → transcript {transcript.latency_ms:.0f} ms (hangover 500 ms included); "
        f"speech start → on_speech_start {(speech_start_at - started - len(lead) / TARGET_RATE) * 1000:.0f} ms; "
        f"push() median {np.median(push_ms):.2f} ms, worst {max(push_ms):.2f} ms; text {transcript.text!r}"
    )
    assert_never_blocked(push_ms)


def test_a_disabled_listener_ignores_audio_until_enabled(bank: VoiceBank) -> None:
    fake, recorder = FakeSTT(), Recorder()
    audio = np.concatenate([silence_48k(0.3), speech_48k(bank, "Turn on the lights."), silence_48k(0.8)])
    with VoiceListener(recorder.on_transcript, recorder.on_speech_start, stt=fake, enabled=False) as listener:
        push_all(listener, audio)
        time.sleep(0.5)
        assert recorder.events == []
        assert listener.stats.frames == 0

        listener.set_enabled(True)
        push_all(listener, audio)
        assert recorder.transcript.wait(5)
    assert recorder.kinds() == ["speech_start", "transcript"]
    assert recorder.transcripts()[0].text == "turn on the lights"


def test_releasing_push_to_talk_mid_sentence_sends_what_was_said(bank: VoiceBank) -> None:
    fake, recorder = FakeSTT(), Recorder()
    voice = speech_48k(bank, "Please turn on the lights in the kitchen.")
    said = voice[: len(voice) * 2 // 3]
    with VoiceListener(recorder.on_transcript, recorder.on_speech_start, stt=fake) as listener:
        push_all(listener, np.concatenate([silence_48k(0.3), said]))
        assert wait_for(lambda: recorder.kinds() == ["speech_start"], 3)

        listener.set_enabled(False)
        assert recorder.transcript.wait(3), "releasing the button must not wait for the 500 ms of silence"
        push_all(listener, voice)  # talking after release is ignored
        time.sleep(0.3)
    assert recorder.kinds() == ["speech_start", "transcript"]
    heard_ms = fake.calls[0] * 1000 / SAMPLE_RATE
    assert len(said) / TARGET_RATE * 1000 - 100 < heard_ms < len(said) / TARGET_RATE * 1000 + 400


def test_speech_end_is_told_when_the_vad_closes_the_utterance_before_its_text(bank: VoiceBank) -> None:
    # What the avatar's listening pose follows: on at speech start, off when the utterance is closed (by the
    # end silence, or by releasing push-to-talk), before speech-to-text has the words.
    fake, recorder = FakeSTT(), Recorder()
    fake.release.clear()  # a slow model: the end must not wait for it
    voice = speech_48k(bank, "Turn on the lights.")
    with VoiceListener(
        recorder.on_transcript, recorder.on_speech_start, on_speech_end=recorder.on_speech_end, stt=fake
    ) as listener:
        push_all(listener, np.concatenate([silence_48k(0.3), voice, silence_48k(0.8)]))
        assert wait_for(lambda: recorder.kinds() == ["speech_start", "speech_end"], 3), recorder.kinds()
        fake.release.set()
        assert recorder.transcript.wait(5)
        push_all(listener, np.concatenate([silence_48k(0.3), voice[: len(voice) // 2]]))
        assert wait_for(lambda: recorder.kinds().count("speech_start") == 2, 3), recorder.kinds()
        listener.set_enabled(False)  # push-to-talk released mid-sentence
        assert wait_for(lambda: recorder.kinds().count("speech_end") == 2, 3), recorder.kinds()
    assert recorder.kinds()[:3] == ["speech_start", "speech_end", "transcript"]
    assert recorder.kinds()[3:5] == ["speech_start", "speech_end"]


@pytest.mark.parametrize("text", ["you", "Thank you.", " ", "[Music]"])
def test_whisper_noise_phrases_are_dropped(bank: VoiceBank, text: str) -> None:
    fake, recorder = FakeSTT(text), Recorder()
    # A short burst the VAD takes for speech (~250 ms): what a cough or a knock looks like.
    voice = speech_48k(bank, "Hey.")
    with VoiceListener(recorder.on_transcript, recorder.on_speech_start, stt=fake) as listener:
        push_all(listener, np.concatenate([silence_48k(0.3), voice, silence_48k(0.8)]))
        assert wait_for(lambda: listener.stats.transcripts_filtered == 1, 3)
    assert fake.calls, "the utterance reached speech-to-text"
    assert recorder.transcripts() == []


def test_hallucination_filter_keeps_real_short_answers() -> None:
    assert is_hallucination("you", 900)
    assert is_hallucination("Thanks for watching!", 1500)
    assert is_hallucination("Thank you.", 250)
    assert is_hallucination("(upbeat music)", 2000)
    assert not is_hallucination("Thank you.", 600)
    assert not is_hallucination("Thank you, that's all.", 250)
    assert not is_hallucination("Yes.", 250)
    assert not is_hallucination("Are you there?", 700)


def test_slow_speech_to_text_drops_the_oldest_utterances_and_never_blocks(bank: VoiceBank) -> None:
    fake, recorder = FakeSTT(), Recorder()
    fake.release.clear()  # the model is stuck on the first utterance
    turn = np.concatenate([speech_48k(bank, "Turn on the lights."), silence_48k(0.7)])
    # The audio queue holds all 12 s pushed at once: on a loaded machine the VAD stage would otherwise drop old
    # audio itself (its own bound, tested below), and this test is about the speech-to-text stage.
    with VoiceListener(
        recorder.on_transcript,
        recorder.on_speech_start,
        stt=fake,
        max_pending_utterances=1,
        max_queued_audio_s=30.0,
    ) as listener:
        push_ms = push_all(listener, np.concatenate([silence_48k(0.3), *[turn] * 5]))
        assert wait_for(lambda: listener.stats.utterances == 5, 30), listener.stats
        fake.release.set()
        assert wait_for(lambda: len(recorder.transcripts()) == 2, 5)
        time.sleep(0.2)
        stats = listener.stats
    # The first was being transcribed, the last was waiting; the three in between were dropped.
    assert stats.utterances_dropped == 3
    assert len(recorder.transcripts()) == 2
    assert recorder.kinds().count("speech_start") == 5
    assert_never_blocked(push_ms)


class StuckDetector(UtteranceDetector):
    """A VAD thread that stops consuming: the audio queue must stay bounded and push() fast."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        self.release.wait(10)
        return super().feed(samples)


def test_a_stuck_worker_drops_the_oldest_audio_and_never_blocks() -> None:
    detector, recorder = StuckDetector(), Recorder()
    listener = VoiceListener(recorder.on_transcript, stt=FakeSTT(), detector=detector, max_queued_audio_s=1.0)
    try:
        push_ms = push_all(listener, silence_48k(4.0))  # 200 frames
        stats = listener.stats
    finally:
        detector.release.set()
        listener.close()
    assert stats.frames == 200
    assert 140 <= stats.frames_dropped <= 151  # ~1 s (50 frames) kept, plus the one being fed
    assert_never_blocked(push_ms)


def test_close_stops_the_threads_and_later_pushes_are_ignored() -> None:
    listener = VoiceListener(lambda t: None, stt=FakeSTT())
    threads = [t for t in threading.enumerate() if t.name.startswith("voice-")]
    assert len(threads) >= 2

    listener.close()
    listener.close()

    assert not listener._vad_thread.is_alive()
    assert not listener._stt_thread.is_alive()
    push_all(listener, silence_48k(0.2))
    assert listener.stats.frames == 0


@pytest.mark.parametrize(("fmt", "layout", "rate"), [("s16", "stereo", 48_000), ("fltp", "stereo", 48_000),
                                                     ("s16", "mono", 44_100), ("s16", "mono", 16_000)])  # fmt: skip
def test_any_microphone_format_becomes_16k_mono(fmt: str, layout: str, rate: int) -> None:
    """A 440 Hz tone at half scale must come out as a 440 Hz tone at half scale, at 16 kHz."""

    class Recording(UtteranceDetector):
        def __init__(self) -> None:
            super().__init__()
            self.samples: list[np.ndarray] = []

        def feed(self, samples: np.ndarray) -> list[VadEvent]:
            self.samples.append(samples.copy())
            return []

    detector = Recording()
    listener = VoiceListener(lambda t: None, stt=FakeSTT(), detector=detector)
    n = rate // 50
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(n * 50) / rate)
    try:
        for i in range(50):
            piece = tone[i * n : (i + 1) * n]
            if fmt == "fltp":
                data = np.vstack([piece, piece]).astype(np.float32)
            else:
                pcm = (piece * 32767).astype(np.int16)
                data = (np.repeat(pcm, 2) if layout == "stereo" else pcm)[None, :]
            frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
            frame.sample_rate = rate
            listener.push(frame)
        assert wait_for(lambda: sum(len(s) for s in detector.samples) >= SAMPLE_RATE - 200, 3)
    finally:
        listener.close()
    out = np.concatenate(detector.samples).astype(np.float64) / 32768
    assert abs(len(out) - SAMPLE_RATE) <= 200
    steady = out[1000:-1000]
    assert np.sqrt(np.mean(steady**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    spectrum = np.abs(np.fft.rfft(steady))
    assert np.fft.rfftfreq(len(steady), 1 / SAMPLE_RATE)[spectrum.argmax()] == pytest.approx(440, abs=3)


def test_the_end_of_speech_wait_is_used_to_transcribe_once(bank: VoiceBank) -> None:
    fake, recorder = FakeSTT(), Recorder()
    with VoiceListener(recorder.on_transcript, recorder.on_speech_start, stt=fake) as listener:
        # The rest of the pause only once the guess has begun: pushed at once, under load the certain end could
        # come before the model thread picked up the guess (it then transcribes once, on the certain end).
        push_all(
            listener, np.concatenate([silence_48k(0.3), speech_48k(bank, "Turn on the lights."), silence_48k(0.3)])
        )
        assert fake.started.wait(5)
        push_all(listener, silence_48k(0.7))
        assert recorder.transcript.wait(5)
        time.sleep(0.1)
        stats = listener.stats
    # Transcribed on the likely end; the certain end reused that text instead of running the model again.
    assert len(fake.calls) == 1
    assert (stats.speculations, stats.speculations_used, stats.transcripts) == (1, 1, 1)
    assert recorder.transcripts()[0].text == fake.text


def test_a_guess_still_being_transcribed_becomes_the_answer(bank: VoiceBank) -> None:
    fake, recorder = FakeSTT(), Recorder()
    fake.release.clear()  # the model is busy with the guess when the end of speech is certain
    with VoiceListener(recorder.on_transcript, recorder.on_speech_start, stt=fake) as listener:
        # Up to the likely end (the guess starts 200 ms into the pause), and only once the model works on the
        # guess the rest of the pause: pushed at once, the certain end could come before the guess began.
        push_all(
            listener, np.concatenate([silence_48k(0.3), speech_48k(bank, "Turn on the lights."), silence_48k(0.3)])
        )
        assert fake.started.wait(5)
        push_all(listener, silence_48k(0.7))
        assert wait_for(lambda: listener.stats.utterances == 1, 5)
        fake.release.set()
        assert recorder.transcript.wait(5)
        time.sleep(0.1)
        stats = listener.stats
    assert len(fake.calls) == 1
    assert (stats.speculations_used, stats.transcripts, stats.utterances_dropped) == (1, 1, 0)


def test_a_pause_mid_sentence_does_not_cut_the_sentence(bank: VoiceBank) -> None:
    fake, recorder = FakeSTT(), Recorder()
    first, second = speech_48k(bank, "Turn on the lights"), speech_48k(bank, "in the kitchen please.")
    with VoiceListener(recorder.on_transcript, recorder.on_speech_start, stt=fake) as listener:
        push_all(
            listener,
            np.concatenate([silence_48k(0.3), first, silence_48k(0.35), second, silence_48k(1.0)]),
            realtime=True,
        )
        assert recorder.transcript.wait(5)
        time.sleep(0.1)
        stats = listener.stats
    assert stats.transcripts == 1 and stats.utterances == 1
    # The guess made in the pause was thrown away: the text given out is of the whole sentence.
    whole = (len(first) + len(second)) / 3 + 0.35 * SAMPLE_RATE
    assert fake.calls[-1] >= whole
    assert stats.speculations == 2 and stats.speculations_used == 1


class CountingSTT(FakeSTT):
    """Answers with how many seconds of audio it was given, so interim and final text can be told apart."""

    def transcribe(self, audio: np.ndarray) -> str:
        self.calls.append(len(audio))
        return f"heard {len(audio) / SAMPLE_RATE:.1f} seconds"


def test_interim_text_grows_while_the_user_speaks_and_stops_at_the_final(bank: VoiceBank) -> None:
    stt, recorder = CountingSTT(), Recorder()
    partials: list[tuple[float, str]] = []
    text = "Please turn on the lights in the kitchen and then close all of the blinds in the living room."
    with VoiceListener(
        recorder.on_transcript,
        recorder.on_speech_start,
        stt=stt,
        on_partial=lambda t: partials.append((time.monotonic(), t)),
    ) as listener:
        push_all(listener, np.concatenate([silence_48k(0.3), speech_48k(bank, text), silence_48k(1.0)]), realtime=True)
        assert recorder.transcript.wait(5)
        time.sleep(0.2)
        assert listener.partial is None  # once the words are final, there is no interim text
    final_at = next(t for kind, t, _ in recorder.events if kind == "transcript")
    assert len(partials) >= 2, partials  # several seconds of speech: about one interim text a second
    assert all(at < final_at for at, _ in partials)
    seconds = [float(t.split()[1]) for _, t in partials]
    assert seconds == sorted(seconds) and seconds[-1] < float(recorder.transcripts()[0].text.split()[1])


def test_interim_text_can_be_read_without_a_callback(bank: VoiceBank) -> None:
    stt, recorder = CountingSTT(), Recorder()
    text = "Please turn on the lights in the kitchen and then close all of the blinds in the living room."
    seen: list[str] = []
    with VoiceListener(recorder.on_transcript, recorder.on_speech_start, stt=stt, interim=True) as listener:
        feeder = threading.Thread(
            target=push_all,
            args=(listener, np.concatenate([silence_48k(0.3), speech_48k(bank, text), silence_48k(1.0)])),
            kwargs={"realtime": True},
        )
        feeder.start()
        while feeder.is_alive() or not recorder.transcript.is_set():
            if (now := listener.partial) is not None and now not in seen:
                seen.append(now)
            if recorder.transcript.wait(0.02):
                break
        feeder.join()
        time.sleep(0.2)
        assert listener.partial is None
    assert seen and all(t.startswith("heard") for t in seen), seen


def test_no_interim_text_unless_asked_for(bank: VoiceBank) -> None:
    stt, recorder = CountingSTT(), Recorder()
    text = "Please turn on the lights in the kitchen and then close all of the blinds in the living room."
    with VoiceListener(recorder.on_transcript, recorder.on_speech_start, stt=stt) as listener:
        push_all(listener, np.concatenate([silence_48k(0.3), speech_48k(bank, text), silence_48k(1.0)]))
        assert recorder.transcript.wait(5)
    assert len(stt.calls) == 1  # the likely end, reused as the final: no interim work at all


def test_interim_text_is_cleared_when_the_final_transcription_fails(bank: VoiceBank) -> None:
    class BreaksAtTheEnd(CountingSTT):
        def transcribe(self, audio: np.ndarray) -> str:
            if partials_seen:
                raise RuntimeError("model crashed")
            return super().transcribe(audio)

    partials_seen: list[str] = []
    stt, recorder = BreaksAtTheEnd(), Recorder()
    text = "Please turn on the lights in the kitchen and then close all of the blinds in the living room."
    with VoiceListener(
        recorder.on_transcript, recorder.on_speech_start, stt=stt, on_partial=partials_seen.append
    ) as listener:
        push_all(listener, np.concatenate([silence_48k(0.3), speech_48k(bank, text), silence_48k(1.0)]), realtime=True)
        assert wait_for(lambda: listener.stats.utterances == 1, 5)
        time.sleep(0.3)
        assert partials_seen and listener.partial is None
    assert recorder.transcripts() == []
