"""Training scripts: parsing each format, the runner on the real local engine, saved scripts."""

from __future__ import annotations

import threading
import time

import pytest

from lib.heygen.models import NewSessionRequest, TaskResult
from lib.live.session import LiveSession, SessionOptions
from lib.scripts import (
    MAX_SEGMENT_CHARS,
    RunnerState,
    ScriptRunner,
    ScriptStore,
    Segment,
    decode_script,
    parse_script,
)
from lib.usage.store import UsageLog

# --- parsing --------------------------------------------------------------------------------------


def test_plain_text_gives_one_segment_per_paragraph():
    text = "Welcome to the training.\nToday we cover safety.\n\n\nFirst, the exits.\r\n\r\nQuestions?\n"
    assert parse_script(text) == [
        Segment("Welcome to the training. Today we cover safety."),
        Segment("First, the exits."),
        Segment("Questions?"),
    ]


def test_markdown_list_gives_one_segment_per_item_and_skips_headings():
    text = """# Fire safety

- Find the **nearest** exit.
- Never use the *lift*;
  take the stairs.
1. Call `112`.
2) Read [the guide](https://example.com/guide).
"""
    assert [s.text for s in parse_script(text)] == [
        "Find the nearest exit.",
        "Never use the lift; take the stairs.",
        "Call 112.",
        "Read the guide.",
    ]


def test_emphasis_is_stripped_but_words_with_underscores_and_stars_survive():
    [segment] = parse_script("__Really__ _important_: the file_name is 2 * 3 ~~old~~ new.")
    assert segment.text == "Really important: the file_name is 2 * 3 old new."


def test_yaml_list_with_pauses():
    text = """- say: Welcome to the training.
  pause: 2
- say: "Step one: log in."
- pause: 1.5s
- say: |
    Step two
    is longer.
  pause: 500ms
- say: Done.
"""
    assert parse_script(text) == [
        Segment("Welcome to the training.", 2.0),
        Segment("Step one: log in.", 1.5),
        Segment("Step two is longer.", 0.5),
        Segment("Done.", None),
    ]


def test_pause_markers_between_and_inside_paragraphs():
    text = "Hello.\n\n[pause 3s]\n\nNext part.\n<pause 2>\nThen this. [Pause: 250ms] And that.\n\n[pause]\n\nEnd."
    assert parse_script(text) == [
        Segment("Hello.", 3.0),
        Segment("Next part.", 2.0),
        Segment("Then this.", 0.25),
        Segment("And that.", None),  # a bare [pause] keeps the default pause
        Segment("End.", None),
    ]


def test_consecutive_pauses_add_up_and_a_leading_pause_is_ignored():
    assert parse_script("[pause 1s]\nA.\n[pause 1s]\n[pause 2s]\nB.") == [Segment("A.", 3.0), Segment("B.")]


def test_empty_scripts_are_refused_with_a_clear_message():
    for text in ("", "   \n\n  ", "# Just a title\n\n[pause 2s]\n", "- \n- pause: 2\n"):
        with pytest.raises(ValueError, match="The script is empty"):
            parse_script(text)


def test_absurd_pause_is_refused():
    with pytest.raises(ValueError, match="too long"):
        parse_script("Hi.\n[pause 9999s]\nBye.")


def test_long_paragraph_is_split_at_sentence_ends_within_the_api_limit():
    sentences = [f"Sentence number {i} explains one more detail of the procedure." for i in range(400)]
    text = " ".join(sentences)
    assert len(text) > 2 * MAX_SEGMENT_CHARS
    segments = parse_script(text + "\n[pause 2s]\nNext.")
    pieces, last = segments[:-1], segments[-1]
    assert len(pieces) == 3 and last == Segment("Next.")
    assert all(len(p.text) <= MAX_SEGMENT_CHARS for p in pieces)
    assert all(p.text.endswith("procedure.") for p in pieces)  # cut only at sentence ends
    assert " ".join(p.text for p in pieces) == text
    # No pause inside the paragraph; the paragraph's own pause comes after its last piece.
    assert [p.pause_after_s for p in pieces] == [0.0, 0.0, 2.0]


def test_text_without_sentence_ends_is_split_at_spaces():
    text = " ".join(["word"] * 5000)  # 24,999 characters, no punctuation
    segments = parse_script(text)
    assert [len(s.text) <= MAX_SEGMENT_CHARS for s in segments] == [True, True, True]
    assert " ".join(s.text for s in segments) == text


def test_uploaded_files_decode_with_or_without_bom():
    assert decode_script("\ufeffHello.\n".encode()) == "Hello.\n"
    assert decode_script("Grüße.".encode("utf-16")) == "Grüße."
    with pytest.raises(ValueError, match="UTF-8"):
        decode_script(b"\xff\xfa\x00bad")


# --- saved scripts --------------------------------------------------------------------------------


def test_store_round_trip_survives_reopening(tmp_path):
    path = tmp_path / "usage.db"
    with UsageLog(path) as usage:
        store = ScriptStore(usage)
        store.save("Onboarding", "Welcome.\n\nBye.")
        store.save("password reset", "- say: Click forgot password.")  # a word the settings keys refuse
        store.save("  onboarding ", "Welcome back.")  # same script (trimmed, case-insensitive): overwritten
        assert store.names() == ["onboarding", "password reset"]
    with UsageLog(path) as usage:
        store = ScriptStore(usage)
        assert store.load("ONBOARDING") == "Welcome back."
        assert store.load("password reset") == "- say: Click forgot password."
        assert store.delete("Onboarding") is True
        assert store.delete("Onboarding") is False
        assert store.names() == ["password reset"]
        with pytest.raises(KeyError, match="Onboarding"):
            store.load("Onboarding")
        assert usage.get_setting("credit_preset") is None  # scripts do not collide with other settings


def test_store_refuses_nameless_or_empty_scripts(tmp_path):
    with UsageLog(tmp_path / "usage.db") as usage:
        store = ScriptStore(usage)
        with pytest.raises(ValueError, match="name"):
            store.save("   ", "Hello.")
        with pytest.raises(ValueError, match="empty"):
            store.save("Blank", "\n\n")
        assert store.names() == []


# --- runner without a provider (edge cases the engine cannot produce on demand) --------------------


class SilentSession:
    """Accepts tasks but never reports the end of speech; can be made to drop or refuse tasks."""

    def __init__(self, refuse: Exception | None = None) -> None:
        self.live = True
        self.refuse = refuse
        self.sent: list[str] = []
        self.interrupts = 0

    def send(self, text: str, task_type: str = "talk") -> TaskResult:
        if self.refuse is not None:
            raise self.refuse
        self.sent.append(text)
        return TaskResult(task_id=f"t{len(self.sent)}", duration_ms=100.0)

    def interrupt(self) -> None:
        self.interrupts += 1

    def events(self):
        return []


def test_missing_stop_event_times_out_and_the_script_goes_on():
    session = SilentSession()
    runner = ScriptRunner(session, [Segment("A."), Segment("B.")], default_pause_s=0.0, finish_grace_s=0.2)
    runner.start()
    assert runner.wait(3)
    assert runner.state is RunnerState.FINISHED and session.sent == ["A.", "B."]
    assert [r.outcome for r in runner.history()] == ["timeout", "timeout"]


def test_refused_task_fails_with_the_providers_message():
    runner = ScriptRunner(SilentSession(refuse=RuntimeError("The avatar session is not connected.")), [Segment("A.")])
    runner.start()
    assert runner.wait(3)
    assert runner.state is RunnerState.FAILED and runner.error == "The avatar session is not connected."


def test_session_lost_mid_segment_fails_the_script():
    session = SilentSession()
    seen: list[RunnerState] = []
    runner = ScriptRunner(session, [Segment("A."), Segment("B.")], on_change=lambda s: seen.append(s.state))
    runner.start()
    time.sleep(0.2)
    session.live = False
    assert runner.wait(3)
    assert runner.state is RunnerState.FAILED and "ended" in runner.error and session.sent == ["A."]
    assert seen[0] is RunnerState.RUNNING and seen[-1] is RunnerState.FAILED


class TimedSession:
    """Speaks each task for `speak_s` after a short latency, one at a time, like a provider queue."""

    def __init__(self, speak_s: float = 0.3) -> None:
        self.live = True
        self.speak_s = speak_s
        self.sent: list[str] = []
        self._events: list[tuple[float, dict]] = []
        self._lock = threading.Lock()
        self._talking: str | None = None

    def send(self, text: str, task_type: str = "talk") -> TaskResult:
        task_id = f"t{len(self.sent)}"
        self.sent.append(text)
        threading.Timer(0.02, self._emit, ("avatar_start_talking", task_id)).start()
        threading.Timer(0.02 + self.speak_s, self._emit, ("avatar_stop_talking", task_id)).start()
        return TaskResult(task_id=task_id, duration_ms=self.speak_s * 1000)

    def _emit(self, kind: str, task_id: str) -> None:
        with self._lock:
            if kind == "avatar_start_talking":
                self._talking = task_id
            elif self._talking != task_id:
                return  # already cut by an interrupt
            else:
                self._talking = None
            self._events.append((time.time(), {"type": kind, "task_id": task_id}))

    def interrupt(self) -> None:
        with self._lock:
            if self._talking is not None:
                self._events.append((time.time(), {"type": "avatar_stop_talking", "task_id": self._talking}))
                self._talking = None

    def events(self):
        with self._lock:
            return list(self._events)


def test_interrupt_between_segments_holds_before_the_next_one():
    session = TimedSession(speak_s=0.1)
    runner = ScriptRunner(session, [Segment("A.", 2.0), Segment("B.")])
    runner.start()
    assert _wait(lambda: runner.history() and runner.history()[0].outcome == "done", 2)
    runner.interrupt()  # during the 2 s pause: nothing to cut, A. is not said again
    assert runner.state is RunnerState.PAUSED and runner.current == 1
    runner.resume()
    assert runner.wait(2) and session.sent == ["A.", "B."]


def test_pause_asked_during_the_pause_between_segments_holds_at_once():
    session = TimedSession(speak_s=0.1)
    runner = ScriptRunner(session, [Segment("A.", 5.0), Segment("B.")])
    runner.start()
    assert _wait(lambda: runner.history() and runner.history()[0].outcome == "done", 2)
    runner.pause()
    assert _wait(lambda: runner.state is RunnerState.PAUSED, 0.5) and runner.current == 1
    runner.resume()
    assert runner.wait(2) and session.sent == ["A.", "B."]


def test_finished_script_can_be_restarted_and_skipped_to_the_end():
    session = TimedSession(speak_s=0.05)
    runner = ScriptRunner(session, [Segment("A."), Segment("B.")], default_pause_s=0.0)
    runner.start()
    assert runner.wait(2) and runner.state is RunnerState.FINISHED
    runner.restart()
    assert _wait(lambda: len(session.sent) == 3, 2) and session.sent[2] == "A."
    assert runner.wait(2) and session.sent == ["A.", "B.", "A.", "B."]
    runner.restart()
    runner.skip()
    runner.skip()
    assert runner.wait(2) and runner.state is RunnerState.FINISHED and runner.progress == (2, 2)


# --- runner on the real local engine --------------------------------------------------------------


@pytest.fixture
def usage(tmp_path):
    log = UsageLog(tmp_path / "usage.db")
    yield log
    log.close()


@pytest.fixture
def session(client, usage):
    session = LiveSession(client, "local", usage, SessionOptions(request=NewSessionRequest(quality="low")))
    assert session.wait_connected(20), session.error
    yield session
    session.stop()


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    return predicate()


def _said(session) -> list[str]:
    return [t.text for t in session.transcript() if t.role == "avatar"]


def _event_time(session, kind: str, task_id: str) -> float:
    return next(at for at, e in session.events() if e.get("type") == kind and e.get("task_id") == task_id)


def test_segments_are_spoken_in_order_with_the_pauses_between_them(session, usage):
    segments = parse_script("Good morning.\n\n[pause 0.5s]\n\nThis is **part** two.\n<pause 1.5>\nAnd part three.")
    runner = ScriptRunner(session, segments, default_pause_s=1.0)
    assert runner.progress == (1, 3) and runner.state is RunnerState.IDLE
    runner.start()
    assert runner.wait(25), runner.status()
    assert runner.state is RunnerState.FINISHED and runner.progress == (3, 3)
    assert _said(session) == ["Good morning.", "This is part two.", "And part three."]
    runs = runner.history()
    assert [(r.index, r.outcome) for r in runs] == [(0, "done"), (1, "done"), (2, "done")]
    starts = [_event_time(session, "avatar_start_talking", r.task_id) for r in runs]
    stops = [_event_time(session, "avatar_stop_talking", r.task_id) for r in runs]
    assert [r.started_at for r in runs] == starts  # the runner recorded when each segment began
    for i, pause in ((0, 0.5), (1, 1.5)):
        nxt = runs[i + 1]
        # What the runner controls: the next task leaves `pause` after the stop event, minus the lead it
        # allows for the avatar's task→speech latency (observed on the earlier segments).
        assert nxt.sent_at - stops[i] == pytest.approx(pause - nxt.lead_s, abs=0.1)
        assert 0.0 < nxt.lead_s <= pause
        # What the trainee hears: the silence is the pause, give or take how much this segment's start
        # latency differed from the estimate (CPU contention on a shared machine makes it jitter).
        surprise = abs((starts[i + 1] - nxt.sent_at) - nxt.lead_s)
        assert starts[i + 1] - stops[i] == pytest.approx(pause, abs=0.3 + surprise)
    actions = [d["action"] for _, kind, d in usage.events(session.session_id) if kind == "script"]
    assert actions == ["start", "finished"]


def test_pause_waits_for_the_segment_boundary_and_resume_goes_on(session):
    runner = ScriptRunner(
        session, [Segment("One, two, three."), Segment("Four."), Segment("Five.")], default_pause_s=0.2
    )
    runner.start()
    assert _wait(lambda: runner.history() and runner.history()[0].started_at, 10)
    runner.pause()
    status = runner.status()
    assert status.state is RunnerState.RUNNING and status.pausing and status.speaking  # first segment goes on
    assert _wait(lambda: runner.state is RunnerState.PAUSED, 10)
    assert runner.current == 1 and runner.progress == (2, 3)
    assert runner.history()[0].outcome == "done"  # the segment was finished, not cut
    time.sleep(0.8)
    assert len(runner.history()) == 1 and not session.speaking  # nothing more while paused
    runner.resume()
    assert runner.wait(15)
    assert _said(session) == ["One, two, three.", "Four.", "Five."]


def test_skip_cuts_the_segment_and_moves_on(session):
    long = "This first segment is deliberately long. It has several sentences. Nobody should hear all of them."
    runner = ScriptRunner(session, [Segment(long, 3.0), Segment("Second."), Segment("Third.")], default_pause_s=0.2)
    runner.start()
    assert _wait(lambda: runner.history() and runner.history()[0].started_at, 10)
    skipped_at = time.time()
    runner.skip()
    assert runner.current == 1
    assert runner.wait(15)
    runs = runner.history()
    assert [(r.index, r.outcome) for r in runs] == [(0, "skipped"), (1, "done"), (2, "done")]
    # The avatar went silent at once and the next segment was sent without the 3 s pause.
    assert _event_time(session, "avatar_stop_talking", runs[0].task_id) - skipped_at < 0.5
    assert runs[1].sent_at - skipped_at < 0.3 and runs[1].started_at is not None
    first, *rest = _said(session)
    assert len(first) < len(long) and rest == ["Second.", "Third."]


def test_interrupt_keeps_the_place_and_resume_says_that_segment_again(session):
    middle = "Now the important part. Listen carefully to every word of it."
    runner = ScriptRunner(session, [Segment("Start."), Segment(middle), Segment("End.")], default_pause_s=0.2)
    runner.start()
    assert _wait(lambda: len(runner.history()) == 2 and runner.history()[1].started_at, 10)
    runner.interrupt()
    assert runner.state is RunnerState.PAUSED and runner.current == 1
    assert _wait(lambda: not session.speaking, 1.0)
    time.sleep(0.5)
    assert len(runner.history()) == 2 and runner.current == 1  # held on the interrupted segment
    runner.resume()
    assert runner.wait(20)
    runs = runner.history()
    assert [(r.index, r.outcome) for r in runs] == [(0, "done"), (1, "interrupted"), (1, "done"), (2, "done")]
    said = _said(session)
    assert said[0] == "Start." and said[2:] == [middle, "End."]  # said again in full from its start


def test_stop_ends_the_script_and_restart_begins_again(session):
    long = "This segment will be stopped. It would otherwise take quite a while to say."
    runner = ScriptRunner(session, [Segment(long), Segment("Never said.")], default_pause_s=0.2)
    runner.start()
    assert _wait(lambda: runner.history() and runner.history()[0].started_at, 10)
    runner.stop()
    assert runner.state is RunnerState.STOPPED
    assert _wait(lambda: not session.speaking, 1.0)
    time.sleep(0.6)
    assert [r.outcome for r in runner.history()] == ["stopped"] and "Never said." not in _said(session)
    assert not [t for t in threading.enumerate() if t.name == "script-runner"]
    runner.resume()
    runner.skip()
    assert runner.state is RunnerState.STOPPED  # a stopped script only restarts on request
    runner.restart()
    assert _wait(lambda: len(runner.history()) == 2, 3)
    assert runner.history()[1].index == 0
    runner.skip()
    assert runner.wait(15) and runner.state is RunnerState.FINISHED
    assert _said(session)[-1] == "Never said."
