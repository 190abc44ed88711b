"""Browser end-to-end: talk to the avatar with the microphone on Live chat.

Chromium's fake microphone plays a WAV spoken by the engine's own TTS: a question, a pause while the avatar
gives a long answer, then a second question in the middle of that answer. The user sees their words in the
transcript, hears the answer from the knowledge base, and speaking again cuts the avatar off (barge-in).
A long request shows interim text while it is being spoken.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import Browser, Frame, Page

from lib.engine.launcher import EngineProcess
from lib.engine.responder import Responder
from lib.engine.tts import VoiceBank
from lib.heygen import StreamingClient
from lib.usage.store import UsageLog
from tests.support.browser import (
    AppServer,
    click_start,
    engine_events,
    go_to,
    no_exceptions,
    open_app,
    screenshot,
    wait_for,
    wait_video_playing,
    webrtc_frame,
)
from tests.support.voice import (
    SpokenWav,
    audio_timeline,
    enable_voice,
    launch_chromium_with_mic,
    set_knowledge_base,
    sound_spans,
    spoken_wav,
    start_audio_timeline,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The Wi-Fi answer is three sentences (~17 s of speech): long enough to be interrupted in the middle.
KNOWLEDGE_BASE = """Office guide.

The Wi-Fi password is sunflower42. It works on the guest network in every meeting room on all three floors, \
including the large hall next to the reception desk. It must be typed in lower case, and it changes on the first \
Monday of every month, when the new one is posted on the notice board by the main entrance.

The printer is on the second floor, next to the kitchen."""
QUESTION = "What is the Wi-Fi password?"
BARGE_IN = "Wait, where is the printer?"
# The session connects while the microphone plays the lead-in silence (the file starts at START). The gap puts
# the second question ~12 s into an answer that starts 1.5-10 s after the first question, depending on load.
LEAD_IN_S = 6.0
GAP_S = 13.0
TAIL_S = 40.0

USER = "[data-testid='stChatMessage']:has([aria-label='Chat message from user'])"
ASSISTANT = "[data-testid='stChatMessage']:has([aria-label='Chat message from assistant'])"


@pytest.fixture(scope="module")
def voices() -> VoiceBank:
    return VoiceBank(varied=False)  # reproducible speech: timing thresholds are not crossed by chance


@pytest.fixture(scope="module")
def conversation_wav(voices: VoiceBank, tmp_path_factory: pytest.TempPathFactory) -> SpokenWav:
    path = tmp_path_factory.mktemp("voice") / "conversation.wav"
    wav = spoken_wav(path, [LEAD_IN_S, QUESTION, GAP_S, BARGE_IN, TAIL_S], voices)
    question, barge = wav.said
    assert 1.0 < question.end - question.start < 3.0 and GAP_S <= barge.start - question.end < GAP_S + 0.6, wav
    return wav


@pytest.fixture(scope="module")
def full_answer_ms(voices: VoiceBank) -> float:
    """How long the avatar's answer to QUESTION lasts when nobody interrupts it (same text, same voice)."""
    sentences = list(Responder(KNOWLEDGE_BASE).answer(QUESTION))
    assert len(sentences) == 3, sentences  # the knowledge base gives the long answer this test needs
    return sum(chunk.duration_ms for s in sentences for chunk in voices.synthesize(s))


def start_voice_chat(
    browser: Browser, app: AppServer, *, barge_in: bool, record_peer_connections: bool = False
) -> tuple[Page, Frame]:
    """Live chat with the knowledge base and the microphone on, START pressed, the avatar's video playing:
    from here the fake microphone's WAV is what the page hears."""
    page = open_app(browser, app.url, record_peer_connections=record_peer_connections)
    go_to(page, "Live chat")
    set_knowledge_base(page, KNOWLEDGE_BASE)
    enable_voice(page, barge_in=barge_in)
    frame = webrtc_frame(page)
    click_start(page)
    wait_video_playing(frame, timeout=40)
    return page, frame


def user_tasks(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "user_talking_message"]


def first_of(events: list[dict[str, Any]], kind: str, task_id: str) -> dict[str, Any] | None:
    return next((e for e in events if e["type"] == kind and e.get("task_id") == task_id), None)


def texts(page: Page, selector: str) -> list[str]:
    return page.locator(selector).all_inner_texts()


def test_spoken_question_is_answered_and_speaking_again_interrupts(
    app: AppServer, engine: EngineProcess, client: StreamingClient, conversation_wav: SpokenWav, full_answer_ms: float
) -> None:
    with launch_chromium_with_mic(conversation_wav.path, loop=False) as browser:
        page, frame = start_voice_chat(browser, app, barge_in=True, record_peer_connections=True)
        start_audio_timeline(frame)
        session_id = wait_for(client.list, timeout=15)[0].session_id

        # The user's words show in the transcript, then the avatar's answer from the knowledge base.
        asked = wait_for(lambda: [t for t in texts(page, USER) if "password" in t.lower()], timeout=60)
        assert asked, (texts(page, USER), app.log_tail())
        assert "what is the" in asked[0].lower(), asked  # Whisper writes "Wi-Fi" several ways, not all right
        answered = wait_for(lambda: [t for t in texts(page, ASSISTANT) if "sunflower42" in t], timeout=40)
        assert answered, texts(page, ASSISTANT)
        no_exceptions(page)
        screenshot(page, "live-chat-voice-answer.png")

        # The second question comes while the avatar is still answering the first.
        second = wait_for(
            lambda: [e for e in user_tasks(engine_events(engine, session_id)) if "printer" in e["message"].lower()],
            timeout=60,
        )
        events = engine_events(engine, session_id)
        assert second, [e for e in events if e["type"] != "avatar_talking_message"]
        first_task = user_tasks(events)[0]
        assert "password" in first_task["message"].lower(), user_tasks(events)
        started = first_of(events, "avatar_start_talking", first_task["task_id"])
        stopped = first_of(events, "avatar_stop_talking", first_task["task_id"])
        assert started is not None, events
        assert stopped is not None, f"the avatar talked on over the user (no avatar_stop_talking yet): {events}"

        # Barge-in: the answer was cut well short of its length, and the cut came from the user starting to
        # speak (after the second question began in the page, before its text had even reached the engine).
        assert stopped["duration_ms"] < full_answer_ms - 1500, (stopped, full_answer_ms)
        assert stopped["at"] < second[0]["at"], (stopped, second[0])
        timeline = audio_timeline(frame)
        spoken = [s for s in sound_spans(timeline.mic, level=0.01, min_gap=0.6) if s.end - s.start > 0.5]
        assert len(spoken) == 2, spoken  # the page sent the question and the interruption, nothing else
        barge_started = timeline.to_epoch(spoken[1].start)
        assert barge_started - 1.0 < stopped["at"] < barge_started + 5.0, (barge_started, stopped)
        print(
            f"barge-in: the avatar stopped {(stopped['at'] - barge_started) * 1000:.0f} ms after the user began "
            f"speaking, {stopped['duration_ms']:.0f} ms into a {full_answer_ms:.0f} ms answer"
        )
        # And the avatar was really talking when it was interrupted: the first answer had begun in the page.
        heard = sound_spans(timeline.avatar, level=0.005, min_gap=0.6)
        assert heard and timeline.to_epoch(heard[0].start) < barge_started, (heard, barge_started)

        # The conversation goes on: the interruption is answered too.
        assert wait_for(lambda: [t for t in texts(page, USER) if "printer" in t.lower()], timeout=20), texts(page, USER)
        assert wait_for(lambda: [t for t in texts(page, ASSISTANT) if "second floor" in t], timeout=40), texts(
            page, ASSISTANT
        )
        no_exceptions(page)
        screenshot(page, "live-chat-voice-barge-in.png")

    # Both spoken turns are in the usage log, with their speech-to-text latency.
    with UsageLog(app.data_dir / "usage.db") as log:
        turns = [data for _, kind, data in log.events(session_id) if kind == "voice_turn"]
    assert len(turns) == 2, turns
    assert all(t["stt_latency_ms"] > 0 and t["audio_ms"] > 500 for t in turns), turns


LONG_REQUEST = (
    "Please tell me, in as much detail as you can, how I connect my laptop to the guest network "
    "in the large meeting room on the third floor."
)


@pytest.fixture(scope="module")
def long_request_wav(voices: VoiceBank, tmp_path_factory: pytest.TempPathFactory) -> SpokenWav:
    wav = spoken_wav(tmp_path_factory.mktemp("voice") / "long.wav", [LEAD_IN_S, LONG_REQUEST, 20.0], voices)
    assert wav.said[0].end - wav.said[0].start > 5.0, wav  # long enough for several interim texts
    return wav


def test_interim_text_shows_while_the_user_is_still_speaking(app: AppServer, long_request_wav: SpokenWav) -> None:
    with launch_chromium_with_mic(long_request_wav.path, loop=False) as browser:
        page, _ = start_voice_chat(browser, app, barge_in=False)

        # Interim text is the last user message, in italics and ending in "…", until the words are final.
        interim: list[tuple[float, str]] = []
        final: str | None = None
        deadline = time.monotonic() + 60
        while final is None and time.monotonic() < deadline:
            said = [t.strip() for t in texts(page, USER)]
            if said and said[-1].endswith("…"):
                if not interim or interim[-1][1] != said[-1]:
                    interim.append((time.monotonic(), said[-1]))
                    if len(interim) == 2:
                        screenshot(page, "live-chat-voice-interim.png", full_page=False)
            elif said:
                final = said[-1]
            page.wait_for_timeout(100)
        assert final is not None and "guest network" in final.lower(), (final, interim, app.log_tail())
        assert interim, "no interim text was shown while the user spoke"
        assert all(len(text) > 3 and not text.endswith(". …") for _, text in interim), interim
        print(f"interim texts before the final one: {[text for _, text in interim]}")
        screenshot(page, "live-chat-voice-final.png")
        # Once final, the interim line is gone: one user message, the final words.
        page.wait_for_timeout(1500)
        said = [t.strip() for t in texts(page, USER)]
        assert len(said) == 1 and not said[0].endswith("…"), said
        no_exceptions(page)
