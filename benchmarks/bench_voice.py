"""Voice input as the user experiences it: end of the user's spoken question → the avatar starts speaking.

Run: ``.venv/bin/python benchmarks/bench_voice.py`` (``--runs``; ``--provider liveavatar --mode full|lite``).
Starts a local engine and ``streamlit run app.py`` on loopback, and a Debian Chromium whose fake microphone plays
a WAV spoken by the engine's own TTS: a warm-up question and then one question per run, each followed by a pause
long enough for the answer. The Live chat page runs hands-free with a knowledge base that answers every question
in one sentence.

``--provider liveavatar`` runs the page on the LiveAvatar provider against the engine's LiveAvatar twin (a real
session at 480p, not the sandbox: its minute is shorter than the bench), the knowledge base as a context created
on the page. FULL: our offline recognition sends ``avatar.speak_response``, which the twin answers with its
responder and voice (the engine's task API with the ``local`` token). LITE: our responder answers and our Piper
voice speaks in the dashboard; the PCM goes over ``ws_url`` and the twin lip-syncs it. The twin has no LiveKit:
its media comes over direct WebRTC (LiveAvatar's real service adds a LiveKit room and the internet).

Measured in the page, on one clock: the component's iframe taps, with one Web Audio context, the microphone
track the page sends and the avatar audio the page plays, and keeps each ~11 ms block's level. A run is the
time from the end of a question's sound on the microphone track to the first sound of the avatar's voice in
the page, counted only when the avatar was silent at the end of the question. The engine's event times and
the usage log's voice turns (same machine, epoch clock) split it into its parts.

Goal (issue 7): median ≤ 1500 ms on this CPU. Prints one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import Page

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_browser import figure, log
from benchmarks.checks import finish
from lib.engine.launcher import EngineProcess, start_engine
from lib.engine.tts import VoiceBank
from lib.heygen.client import StreamingClient
from lib.liveavatar import LiveAvatarClient, SessionListType
from lib.usage.store import UsageLog
from lib.voice.vad import UtteranceDetector
from tests.support.browser import (
    chromium_missing,
    click_start,
    go_to,
    open_app,
    run_app,
    wait_video_playing,
    webrtc_frame,
)
from tests.support.voice import (
    AudioTimeline,
    Span,
    audio_timeline,
    enable_voice,
    jitter_buffers,
    launch_chromium_with_mic,
    set_knowledge_base,
    sound_spans,
    spoken_wav,
    start_audio_timeline,
    wait_app_idle,
)

GOAL_MS = 1500.0
PATHS = {
    ("local", None): "local engine (HeyGen-shaped API): our recognition → engine task → engine voice",
    ("liveavatar", "full"): "LiveAvatar FULL on the engine's twin: our recognition → avatar.speak_response "
    "(twin: engine task API) → the twin's answer and voice",
    ("liveavatar", "lite"): "LiveAvatar LITE on the engine's twin: our recognition → our answer → our Piper "
    "voice → PCM over ws_url → the twin lip-syncs it",
}
KNOWLEDGE_BASE = """Office guide.

The Wi-Fi password is sunflower42.

The printer is on the second floor, next to the kitchen.

The office opens at eight in the morning.

Visitors park for free in the underground garage.

Lunch is served in the canteen from noon.

The fire exit is at the end of the east corridor.

The help desk is on extension four hundred.

Meeting rooms are booked in the shared calendar."""
QUESTIONS = [
    "What is the Wi-Fi password?",
    "Where is the printer?",
    "When does the office open?",
    "Where can visitors park?",
    "When is lunch served?",
    "Where is the fire exit?",
    "What is the help desk extension?",
    "How do I book a meeting room?",
]
LEAD_IN_S = 6.0  # the session connects while the microphone plays this (the file starts at START)
PAUSE_S = 10.0  # after each question: room for the 2-5 s latency (more under load) and a ~3 s answer
MIC_LEVEL, AVATAR_LEVEL = 0.01, 0.005  # block RMS that counts as sound (full scale 1)
WORD_GAP_S = 0.6  # shorter silences are pauses inside one question
# The listener waits this long after the last speech before it calls the utterance finished.
VAD_END_SILENCE_MS = inspect.signature(UtteranceDetector).parameters["end_silence_ms"].default


def engine_events(engine: EngineProcess, session_id: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{engine.url}/v1/streaming.events",
        params={"session_id": session_id},
        headers={"X-Api-Key": engine.api_key.reveal()},
        timeout=5,
    )
    response.raise_for_status()
    return response.json()["data"]["events"]


Talk = tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]  # task, its start and stop talking


def talks_by_task(events: list[dict[str, Any]]) -> list[Talk]:
    """The engine's own tasks (local engine; LiveAvatar FULL on the twin) and their talking events, by task id."""

    def event(kind: str, task: dict[str, Any]) -> dict[str, Any] | None:
        return next((e for e in events if e["type"] == kind and e.get("task_id") == task["task_id"]), None)

    tasks = [e for e in events if e["type"] == "user_talking_message"]
    return [(t, event("avatar_start_talking", t), event("avatar_stop_talking", t)) for t in tasks]


def talks_by_time(tasks: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[Talk]:
    """LITE: the dashboard's tasks (usage log) and the twin's talking events of the speech it then received (its
    own task ids): the first start after a task and before the next one, and that utterance's stop."""
    starts = [e for e in events if e["type"] == "avatar_start_talking"]
    talks: list[Talk] = []
    for k, task in enumerate(tasks):
        until = tasks[k + 1]["at"] if k + 1 < len(tasks) else math.inf
        start = next((e for e in starts if task["at"] <= e["at"] < until), None)
        stop = None
        if start is not None:
            stop = next(
                (e for e in events if e["type"] == "avatar_stop_talking" and e.get("task_id") == start["task_id"]),
                None,
            )
        talks.append((task, start, stop))
    return talks


def measure(timeline: AudioTimeline, talks: list[Talk], voice_turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per question the page sent: its latency, or why it does not count."""
    questions = [s for s in sound_spans(timeline.mic, MIC_LEVEL, WORD_GAP_S) if s.end - s.start > 0.5]
    voice = sound_spans(timeline.avatar, AVATAR_LEVEL, WORD_GAP_S)

    rows: list[dict[str, Any]] = []
    for i, question in enumerate(questions):
        next_start = questions[i + 1].start if i + 1 < len(questions) else math.inf
        row: dict[str, Any] = {"question": i}
        rows.append(row)
        # Engine and usage-log times are time.time() on this machine, as are the page's audio-block callbacks.
        end_at = timeline.to_epoch(question.end)
        next_at = timeline.to_epoch(next_start) if next_start < math.inf else math.inf
        k = next((n for n, (t, _, _) in enumerate(talks) if end_at < t["at"] < next_at), None)
        if k is None:
            row["skipped"] = "its text did not reach the avatar before the next question"
            continue
        task, talk, _ = talks[k]
        row["heard_as"] = task.get("message", f"{task.get('chars')} chars")
        if k < len(voice_turns):  # each voice turn is logged once its task is sent, in the same order
            row["stt_latency_ms"] = voice_turns[k]["stt_latency_ms"]
        earlier_done = [stop for _, start, stop in talks[:k] if start is not None]
        if talk is None:
            row["skipped"] = "the avatar did not answer it"
            continue
        if any(done is None or done["at"] > end_at for done in earlier_done) or any(
            v.start <= question.end < v.end + WORD_GAP_S for v in voice
        ):
            row["skipped"] = "the avatar was still speaking when the question ended"
            continue
        # The answer's own voice: not a late tail of an earlier answer, so not before the engine began it.
        talk_on_page_clock = talk["at"] - (end_at - question.end)
        reply: Span | None = next(
            (
                v
                for v in voice
                if v.start > question.end and v.start < next_start and v.start > talk_on_page_clock - 1.0
            ),
            None,
        )
        if reply is None:
            row["skipped"] = "its answer was not heard in the page before the next question"
            continue
        row["end_to_voice_ms"] = (reply.start - question.end) * 1000
        row["end_to_engine_task_ms"] = (task["at"] - end_at) * 1000
        row["engine_task_to_start_talking_ms"] = (talk["at"] - task["at"]) * 1000
        row["start_talking_to_voice_in_page_ms"] = (timeline.to_epoch(reply.start) - talk["at"]) * 1000
    return rows


def choose(page: Page, label: str, option: str) -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label``."""
    page.locator("[data-testid='stSelectbox']").filter(has_text=label).first.click()
    page.get_by_role("option", name=option).first.click()
    wait_app_idle(page)


def liveavatar_setup(page: Page, mode: str) -> None:
    """The LiveAvatar set-up on Live chat: a context holding the knowledge base, 480p, the mode."""
    silent = page.get_by_text("FULL without a context is a silent avatar")
    silent.wait_for(timeout=30_000)
    page.get_by_role("button", name="Create a context from text").click()
    page.get_by_role("textbox", name="Name").fill("Office guide")
    page.get_by_role("textbox", name="Prompt").fill(KNOWLEDGE_BASE)
    page.get_by_role("textbox", name="Opening text").fill("Hi.")
    page.get_by_role("button", name="Create context").click()
    silent.wait_for(state="detached", timeout=15_000)  # the new context is the chosen one
    page.keyboard.press("Escape")  # close the popover: it covers the widgets below
    wait_app_idle(page)
    choose(page, "Quality", "Medium · 480p")
    if mode == "lite":
        page.get_by_text("LITE · our own offline voice").click()
        page.get_by_text("the avatar speaks with our offline Piper voice").wait_for(timeout=10_000)
        wait_app_idle(page)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="avatar-bench-voice-"))
    started = time.monotonic()
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.runs + 1)]
    parts: list[str | float] = [LEAD_IN_S]
    for question in questions:
        parts += [question, PAUSE_S]
    wav = spoken_wav(work / "questions.wav", parts, VoiceBank())
    log(f"{len(questions)} questions, {wav.duration:.0f} s of microphone audio")
    liveavatar = args.provider == "liveavatar"
    engine_args = ["--history-db", str(work / "history.db"), "--session-budget", "6"]
    app_env: dict[str, str] = {}
    if liveavatar:
        engine_args += ["--liveavatar-credits", "1000"]
    engine = start_engine(extra_args=engine_args)
    if liveavatar:
        app_env = {
            "AVATAR_PROVIDER": "liveavatar",
            "LIVEAVATAR_BASE_URL": engine.url,
            "LIVEAVATAR_API_KEY": engine.api_key.reveal(),
        }
    try:
        with (
            StreamingClient(engine.url, engine.api_key, backoff=0) as client,
            LiveAvatarClient(engine.url, engine.api_key, backoff=0) as la,
            run_app(engine, work / "app", extra_env=app_env) as app,
            launch_chromium_with_mic(wav.path, loop=False) as browser,
        ):
            page = open_app(browser, app.url, record_peer_connections=True)
            go_to(page, "Live chat")
            if liveavatar:
                liveavatar_setup(page, args.mode)
            else:
                set_knowledge_base(page, KNOWLEDGE_BASE)
            enable_voice(page, barge_in=True)
            frame = webrtc_frame(page)
            click_start(page)
            clicked = time.monotonic()  # the microphone opens, and the file starts, right after this
            wait_video_playing(frame, timeout=40)
            start_audio_timeline(frame)
            buffers_before = jitter_buffers(frame)
            engine_session = client.list()[0].session_id  # the twin's LiveAvatar session plays on one too
            logged_session = la.list_sessions(SessionListType.ACTIVE)[0].id if liveavatar else engine_session
            listen_until = clicked + 1.0 + wav.said[-1].end + PAUSE_S
            log(f"live; listening for {listen_until - time.monotonic():.0f} s")
            time.sleep(max(0.0, listen_until - time.monotonic()))
            timeline = audio_timeline(frame)
            buffers_after = jitter_buffers(frame)
            events = engine_events(engine, engine_session)
            with UsageLog(app.data_dir / "usage.db") as usage:
                logged = usage.events(logged_session)
            turns = [data for _, kind, data in logged if kind == "voice_turn" and data]
            page.close()
    finally:
        engine.stop()
    if liveavatar and args.mode == "lite":
        tasks = [{"at": at, **data} for at, kind, data in logged if kind == "task" and data]
        talks = talks_by_time(tasks, events)
    else:
        talks = talks_by_task(events)
    rows = measure(timeline, talks, turns)
    for row in rows:
        log(json.dumps({k: round(v) if isinstance(v, float) else v for k, v in row.items()}))
    counted = [r for r in rows[1:] if "end_to_voice_ms" in r]  # the first question warms up the path

    def col(key: str) -> list[float]:
        return [r[key] for r in counted if key in r]

    return {
        "benchmark": "voice",
        "provider": PATHS[args.provider, args.mode if liveavatar else None],
        "method": "headless Debian Chromium, fake microphone playing a TTS-made WAV → streamlit run app.py "
        "(hands-free voice input, Silero VAD + Whisper tiny.en) → provider (see above), all on loopback. In the "
        "component's iframe one Web Audio context taps the microphone track the page sends and the "
        "avatar audio it plays (~11 ms blocks); a run is end of the question's sound on the microphone "
        "track → first sound of the avatar's voice in the page, counted when the avatar was silent at "
        "the end of the question; the first question is a warm-up. Breakdown from the engine's event "
        "times and the usage log (same machine's clock). Excludes sound-card latency on both ends.",
        "end_of_speech_to_avatar_voice": figure(col("end_to_voice_ms"), GOAL_MS),
        "breakdown": {
            "end_of_speech_to_engine_task": figure(col("end_to_engine_task_ms")),
            "vad_end_of_speech_to_text": figure(col("stt_latency_ms")),
            "vad_end_silence_ms": VAD_END_SILENCE_MS,
            "engine_task_to_start_talking": figure(col("engine_task_to_start_talking_ms")),
            "engine_start_talking_to_voice_in_page": figure(col("start_talking_to_voice_in_page_ms")),
            "browser_jitter_buffer_mean_ms": {
                kind: round(ms, 1) if (ms := after.mean_ms_since(buffers_before[kind])) is not None else None
                for kind, after in buffers_after.items()
                if kind in buffers_before
            },
            "notes": "the first, third and fourth add up to the total. On LITE the 'engine task' is the dashboard's "
            "task (usage log): the second part then holds our answer, Piper and the ws_url socket. "
            "vad_end_of_speech_to_text is the usage "
            "log's stt_latency_ms: from where the VAD put the end of speech (slightly before the sound "
            "ends) to the text, so it includes the VAD's end silence wait and Whisper. The jitter "
            "buffer figures are the page's mean receive buffering over the whole listening period.",
        },
        "warm_up_run": {k: round(v, 1) if isinstance(v, float) else v for k, v in rows[0].items()} if rows else None,
        "runs": [{k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()} for r in rows[1:]],
        "questions_sent": len(questions),
        "questions_sent_by_page": len(rows),
        "page_audio_clock_rate": round(timeline.clock_rate, 4),
        "warning": None
        if timeline.clock_rate > 0.98
        else (
            f"the page's audio clock ran {100 * (1 - timeline.clock_rate):.0f}% slow: Chromium was starved of CPU "
            "(see load_average_1m), so the page heard both sides late and these figures are unreliable"
        ),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="questions measured, after one warm-up (default 7)")
    parser.add_argument("--provider", choices=["local", "liveavatar"], default="local")
    parser.add_argument("--mode", choices=["full", "lite"], default="full", help="LiveAvatar's mode (default full)")
    args = parser.parse_args(argv)
    if reason := chromium_missing():
        print(json.dumps({"benchmark": "voice", "skipped": reason}))
        return 0
    result = run(args)
    code = finish(result)
    print(json.dumps(result, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
