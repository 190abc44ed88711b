"""Deliver a script's segments in order on a live avatar, with pauses, from the runner's own thread."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

from lib.heygen.models import TaskResult
from lib.scripts.parse import Segment
from lib.usage.store import EventKind, UsageLog

log = logging.getLogger("avatar_ops.scripts")


class RunnerState(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"


TERMINAL_STATES = (RunnerState.FINISHED, RunnerState.STOPPED, RunnerState.FAILED)


class ScriptSession(Protocol):
    """What the runner needs of a live avatar session (``lib.live.session.LiveSession``)."""

    @property
    def live(self) -> bool: ...

    def send(self, text: str, task_type: str = "talk") -> TaskResult: ...

    def interrupt(self) -> None: ...

    def events(self) -> list[tuple[float, dict[str, Any]]]: ...


@dataclass
class SegmentRun:
    """One delivery of one segment. Times are wall-clock seconds, like ``LiveSession.events()``."""

    index: int
    task_id: str | None
    sent_at: float
    started_at: float | None = None  # arrival of avatar_start_talking
    ended_at: float | None = None  # arrival of avatar_stop_talking (or when the runner gave up)
    # speaking | done | timeout (no stop event in time) | interrupted | skipped | restarted | stopped | failed
    outcome: str = "speaking"
    lead_s: float = 0.0  # sent this much before the pause ended, to make up for the avatar's start latency


@dataclass(frozen=True)
class RunnerStatus:
    state: RunnerState
    current: int  # index of the segment being (or next to be) delivered
    total: int
    speaking: bool  # a segment has been sent and has not finished yet
    pausing: bool  # pause() was asked; it takes effect at the next segment boundary
    error: str | None

    @property
    def progress(self) -> tuple[int, int]:
        """(n, m) for "segment n of m", n counting from 1."""
        return (min(self.current + 1, self.total), self.total)


class ScriptRunner:
    """Delivers segments one after another on a live avatar, from its own thread.

    Every control method only records what the user asked and returns at once; the worker thread makes
    the provider calls (interrupt, next task) within one poll interval. Semantics:

    * ``pause()`` lets the current segment finish and holds before the next one (during the pause
      between segments it holds at once); ``resume()`` continues with the next segment.
    * ``interrupt()`` cuts the current segment and holds *on* it: ``resume()`` says it again from its start.
    * ``skip()`` cuts the current segment and goes on with the next one at once (while paused it only moves
      the place). ``restart()`` cuts and starts again from the first segment. ``stop()`` cuts and ends.

    A segment is finished when ``avatar_stop_talking`` arrives for its task, or after its predicted
    duration + ``finish_grace_s`` if it never does (then ``SegmentRun.outcome`` is ``timeout``). The pause
    between segments is measured as silence: the next task is sent early by the latency the avatar has
    shown from task to speech.
    """

    def __init__(
        self,
        session: ScriptSession,
        segments: list[Segment],
        *,
        default_pause_s: float = 1.0,
        task_type: str = "repeat",
        on_change: Callable[[RunnerStatus], None] | None = None,
        poll_s: float = 0.03,
        finish_grace_s: float = 10.0,
    ) -> None:
        if not segments:
            raise ValueError("The script has no segments to deliver.")
        self.session = session
        self.segments = list(segments)
        self.default_pause_s = default_pause_s
        self.task_type = task_type
        self.on_change = on_change
        self.poll_s = poll_s
        self.finish_grace_s = finish_grace_s
        self._cond = threading.Condition(threading.RLock())
        self._state = RunnerState.IDLE
        self._current = 0
        self._epoch = 0  # bumped by every control that abandons what the worker is doing
        self._pausing = False
        self._interrupt_pending = False
        self._in_flight: SegmentRun | None = None
        self._sending = False
        self._in_gap = False  # the current segment has been said; the pause after it is running
        self._abandoned_as = "abandoned"
        self._notes: list[dict[str, Any]] = []
        self._error: str | None = None
        self._runs: list[SegmentRun] = []
        self._latencies: list[float] = []
        self._lead_s = 0.0
        self._thread: threading.Thread | None = None

    # --- what the page reads --------------------------------------------------------------------
    def status(self) -> RunnerStatus:
        with self._cond:
            return RunnerStatus(self._state, self._current, len(self.segments), self._busy, self._pausing, self._error)

    @property
    def state(self) -> RunnerState:
        return self._state

    @property
    def current(self) -> int:
        return self._current

    @property
    def progress(self) -> tuple[int, int]:
        return self.status().progress

    @property
    def error(self) -> str | None:
        return self._error

    def history(self) -> list[SegmentRun]:
        with self._cond:
            return [replace(r) for r in self._runs]

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the runner is finished, stopped or failed and its thread is done (for tests and the
        command line; a page polls ``status()`` instead)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._state in TERMINAL_STATES and self._thread is None, timeout)

    # --- controls (non-blocking) ----------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._state is not RunnerState.IDLE:
                return
            self._state = RunnerState.RUNNING
            self._note("start", segments=len(self.segments), from_segment=self._current + 1)
            self._ensure_worker()
        self._changed()

    def pause(self) -> None:
        with self._cond:
            if self._state is not RunnerState.RUNNING:
                return
            self._pausing = True
            self._cond.notify_all()
        self._changed()

    def resume(self) -> None:
        with self._cond:
            if self._state is RunnerState.PAUSED:
                self._state = RunnerState.RUNNING
            elif not (self._state is RunnerState.RUNNING and self._pausing):
                return
            self._pausing = False
            self._cond.notify_all()
        self._changed()

    def interrupt(self) -> None:
        with self._cond:
            if self._state is not RunnerState.RUNNING:
                return
            if self._busy:
                self._abandon("interrupted")
            elif self._in_gap:  # the segment was already said: nothing to cut, hold before the next one
                self._current += 1
                self._bump()
            self._pausing = False
            self._state = RunnerState.PAUSED
            self._note("interrupt", segment=self._current + 1)
            if self._current >= len(self.segments):
                self._finish()
        self._changed()

    def skip(self) -> None:
        with self._cond:
            if self._state in TERMINAL_STATES:
                return
            if self._busy:
                self._abandon("skipped")
            self._current += 1
            self._bump()
            self._note("skip", to_segment=self._current + 1)
            if self._current >= len(self.segments) and self._state is not RunnerState.RUNNING:
                self._finish()  # a running script is finished by its worker
        self._changed()

    def restart(self) -> None:
        with self._cond:
            if self._busy:
                self._abandon("restarted")
            self._current = 0
            self._pausing = False
            self._error = None
            self._bump()
            self._state = RunnerState.RUNNING
            self._note("restart", segments=len(self.segments))
            self._ensure_worker()
        self._changed()

    def stop(self) -> None:
        with self._cond:
            if self._state in TERMINAL_STATES:
                return
            if self._busy:
                self._abandon("stopped")
            self._pausing = False
            self._bump()
            self._state = RunnerState.STOPPED
            self._note("stopped", delivered=self._current)
        self._changed()

    # --- internals (call with the lock held) ----------------------------------------------------
    @property
    def _busy(self) -> bool:
        """A segment is being sent or spoken."""
        return self._sending or self._in_flight is not None

    def _bump(self) -> None:
        self._epoch += 1
        self._in_gap = False
        self._cond.notify_all()

    def _abandon(self, outcome: str) -> None:
        run = self._in_flight
        if run is not None:
            run.outcome = outcome
            run.ended_at = time.time()
            self._in_flight = None
        self._abandoned_as = outcome
        self._interrupt_pending = True
        self._bump()

    def _finish(self) -> None:
        self._state = RunnerState.FINISHED
        self._current = len(self.segments)
        self._pausing = False
        self._note("finished", delivered=len(self.segments))
        self._cond.notify_all()

    def _ensure_worker(self) -> None:
        # One worker at a time: a finished worker clears _thread under this lock before it exits.
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="script-runner", daemon=True)
            self._thread.start()

    def _note(self, action: str, **details: Any) -> None:
        """Queue a usage-log event; ``_changed`` writes it outside the lock."""
        self._notes.append({"action": action, **details})

    # --- outside the lock -----------------------------------------------------------------------
    def _changed(self) -> None:
        with self._cond:
            notes, self._notes = self._notes, []
        for details in notes:
            self._log(details)
        if self.on_change is None:
            return
        try:
            self.on_change(self.status())
        except Exception:  # a page callback must never stop the script
            log.exception("script runner on_change callback failed")

    def _log(self, details: dict[str, Any]) -> None:
        usage: UsageLog | None = getattr(self.session, "usage", None)
        session_id = getattr(self.session, "session_id", None)
        if usage is None or session_id is None:
            return
        try:
            usage.record_event(session_id, EventKind.SCRIPT, details)
        except Exception:  # the log must never stop the script
            log.exception("could not log script %s", details.get("action"))

    # --- worker thread --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:
            log.exception("script runner failed")
            self._fail(f"The script stopped unexpectedly ({type(exc).__name__}).")
        finally:
            with self._cond:
                if self._thread is threading.current_thread():
                    self._thread = None
                    self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                cut, self._interrupt_pending = self._interrupt_pending, False
            if cut:
                self._cut()
            with self._cond:
                step, epoch = self._next_step(), self._epoch
            if step == "exit":
                return
            if step == "changed":
                self._changed()
            elif isinstance(step, int):
                self._deliver(step, epoch)

    def _next_step(self) -> int | str:
        """With the lock held: the index to send next, or what else the worker should do."""
        if self._interrupt_pending:
            return "again"
        if self._state in TERMINAL_STATES:
            self._thread = None  # decided under the lock, so restart() starts a new worker from here on
            self._cond.notify_all()
            return "exit"
        if self._state is not RunnerState.RUNNING:
            self._cond.wait(0.5)
            return "again"
        if self._current >= len(self.segments):
            self._finish()
            return "changed"
        if self._pausing:  # asked right at the boundary, before the next segment was sent
            self._pausing = False
            self._state = RunnerState.PAUSED
            self._note("paused", segment=self._current + 1)
            return "changed"
        self._sending = True
        return self._current

    def _cut(self) -> None:
        try:
            self.session.interrupt()
        except Exception as exc:  # the session may be gone; the runner's own state is already right
            log.warning("interrupting the avatar failed: %s", exc)

    def _deliver(self, index: int, epoch: int) -> None:
        segment = self.segments[index]
        sent_at = time.time()
        try:
            result = self.session.send(segment.text, self.task_type)
        except Exception as exc:
            with self._cond:
                self._sending = False
            self._fail(str(exc) or f"Sending segment {index + 1} failed ({type(exc).__name__}).", epoch)
            return
        run = SegmentRun(index, result.task_id, sent_at=sent_at, lead_s=self._lead_s)
        self._lead_s = 0.0
        predicted_s = (result.duration_ms or len(segment.text) / 12.0 * 1000.0) / 1000.0
        with self._cond:
            self._sending = False
            self._runs.append(run)
            if self._epoch != epoch:  # the user moved on while the task was being sent: cut it
                run.outcome, run.ended_at = self._abandoned_as, time.time()
                self._interrupt_pending = True
                return
            self._in_flight = run
        self._changed()
        outcome = self._await_end(run, epoch, time.monotonic() + predicted_s + self.finish_grace_s)
        if outcome == "changed":
            return
        if outcome == "lost":
            self._fail("The avatar session ended while the script was running.", epoch)
            return
        with self._cond:
            if self._epoch != epoch:
                return
            run.outcome = outcome
            self._in_flight = None
            self._in_gap = True
            if run.started_at is not None:
                self._latencies.append(max(0.0, run.started_at - run.sent_at))
            last = index + 1 >= len(self.segments)
        self._changed()
        if not last:
            self._gap(index, epoch, run)
        with self._cond:
            if self._epoch != epoch:
                self._lead_s = 0.0  # the next segment goes now, not at the end of a pause
                return
            self._current = index + 1
            self._in_gap = False
            if self._pausing and not last:
                self._pausing = False
                self._state = RunnerState.PAUSED
                self._note("paused", segment=self._current + 1)
        self._changed()

    def _gap(self, index: int, epoch: int, run: SegmentRun) -> None:
        pause = self.segments[index].pause_after_s
        pause = self.default_pause_s if pause is None else pause
        # Send early by the avatar's task→speech latency, and count from the stop event's arrival rather
        # than from when the poll noticed it: the silence the trainee hears is the configured pause.
        lead = min(statistics.median(self._latencies[-5:]) if self._latencies else 0.0, pause)
        noticed_late = max(0.0, time.time() - (run.ended_at or time.time()))
        deadline = time.monotonic() + pause - lead - noticed_late
        with self._cond:
            while self._epoch == epoch and not self._pausing:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._lead_s = lead
                    return
                self._cond.wait(left)

    def _await_end(self, run: SegmentRun, epoch: int, deadline: float) -> str:
        while True:
            started, stopped = self._task_events(run)
            with self._cond:
                if self._epoch != epoch:
                    return "changed"
                if started is not None and run.started_at is None:
                    run.started_at = started
                if stopped is not None:
                    run.ended_at = stopped
                    return "done"
                if not self.session.live:
                    return "lost"
                if time.monotonic() >= deadline:
                    run.ended_at = time.time()
                    return "timeout"
                self._cond.wait(self.poll_s)

    def _task_events(self, run: SegmentRun) -> tuple[float | None, float | None]:
        started = stopped = None
        for at, event in self.session.events():
            if run.task_id is not None:
                if event.get("task_id") != run.task_id:
                    continue
            elif at < run.sent_at:  # a provider without task ids: the first events after sending
                continue
            kind = event.get("type")
            if kind == "avatar_start_talking" and started is None:
                started = at
            elif kind == "avatar_stop_talking" and stopped is None and (run.task_id or started is not None):
                stopped = at
        return started, stopped

    def _fail(self, message: str, epoch: int | None = None) -> None:
        with self._cond:
            if epoch is not None and self._epoch != epoch:
                return  # the user moved on meanwhile: whatever failed no longer matters
            if self._in_flight is not None:
                self._in_flight.outcome, self._in_flight.ended_at = "failed", time.time()
                self._in_flight = None
            self._error = message
            self._pausing = False
            self._state = RunnerState.FAILED
            self._note("failed", error=message, delivered=self._current)
            self._cond.notify_all()
        self._changed()
