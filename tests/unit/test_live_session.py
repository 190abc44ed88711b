"""The live session's own state machine, with a fake provider and a fake media link (no engine).

Sequences that raced before: a force stop from another page against a media loss, and the avatar's stop
events arriving before the interrupt call returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from lib.heygen.errors import SessionNotFound
from lib.heygen.models import NewSession, NewSessionRequest, TaskResult
from lib.live.session import LiveSession, SessionOptions, SessionState
from lib.usage.store import EndReason, EventKind, UsageLog


class FakeProvider:
    """The provider API the session calls; ``on_interrupt`` runs inside the interrupt call."""

    provider_label = "Fake provider"
    endpoint = "fake://provider"

    def __init__(self) -> None:
        self.created: list[str] = []
        self.stopped: list[str] = []
        self.on_interrupt: Callable[[], None] = lambda: None
        self.lock = threading.Lock()

    def new(self, request: NewSessionRequest) -> NewSession:
        with self.lock:
            session_id = f"s{len(self.created) + 1}"
            self.created.append(session_id)
        return NewSession(session_id=session_id, sdp={"type": "offer", "sdp": "v=0"})

    def start(self, session_id: str, answer: Any = None) -> None:
        pass

    def keep_alive(self, session_id: str) -> None:
        if session_id in self.stopped:
            raise SessionNotFound(404, "gone")

    def stop(self, session_id: str) -> None:
        self.stopped.append(session_id)

    def task(self, session_id: str, text: str, **_: Any) -> TaskResult:
        return TaskResult(task_id="task-1", duration_ms=None)

    def interrupt(self, session_id: str) -> None:
        self.on_interrupt()


class FakeMedia:
    async def close(self) -> None:
        pass


class MediaFreeSession(LiveSession):
    """A live session whose media link is a stand-in that delivers one frame as soon as it opens."""

    async def _open_media(self, session: NewSession) -> None:
        self._conn = FakeMedia()
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        self._on_video(frame)


@pytest.fixture
def usage(tmp_path: Path) -> Iterator[UsageLog]:
    with UsageLog(tmp_path / "usage.db") as log:
        yield log


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


def live(provider: FakeProvider, usage: UsageLog) -> LiveSession:
    session = MediaFreeSession(
        provider,  # type: ignore[arg-type]
        "local",
        usage,
        SessionOptions(request=NewSessionRequest(quality="low"), video_stall_timeout=60),
    )
    assert session.wait_connected(5), session.error
    return session


def wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def force_stop_elsewhere(usage: UsageLog, provider: FakeProvider, session_id: str) -> None:
    """What the Sessions page or the command line does: stop at the provider, log it."""
    provider.stop(session_id)
    usage.record_event(session_id, EventKind.FORCE_STOP, {"outcome": "stopped"})
    usage.close_session(session_id, EndReason.FORCE_STOPPED)


def test_a_force_stop_then_the_media_loss_it_causes_is_not_undone_by_a_reconnect(
    provider: FakeProvider, usage: UsageLog
) -> None:
    session = live(provider, usage)
    force_stop_elsewhere(usage, provider, "s1")
    session._on_state("failed")  # the media drops because the provider ended the session
    assert wait(lambda: session.state is SessionState.DISCONNECTED, 5), session.state
    assert provider.created == ["s1"]  # no new (billable) session behind the user's back
    assert session.end_reason is EndReason.FORCE_STOPPED
    assert session.error is not None and "force-stopped" in session.error
    row = usage.get_session("s1")
    assert row is not None and row.end_reason == EndReason.FORCE_STOPPED


def test_a_media_loss_seen_before_the_force_stop_is_logged_still_does_not_reconnect(
    provider: FakeProvider, usage: UsageLog
) -> None:
    session = live(provider, usage)
    session._on_state("failed")  # the loss is noticed first …
    assert wait(lambda: session.state is SessionState.RECONNECTING, 2)
    force_stop_elsewhere(usage, provider, "s1")  # … and the other page's log entry lands during the backoff
    assert wait(lambda: session.state is SessionState.DISCONNECTED, 5), session.state
    assert provider.created == ["s1"]


def test_a_media_loss_without_a_force_stop_reconnects_on_a_new_session(provider: FakeProvider, usage: UsageLog) -> None:
    session = live(provider, usage)
    session._on_state("failed")
    assert wait(lambda: session.state is SessionState.CONNECTED and session.reconnects == 1, 5), session.state
    assert provider.created == ["s1", "s2"]
    assert [kind for _, kind, _ in usage.events("s2")].count(EventKind.RECONNECT) == 1
    session.stop()


def test_the_avatars_stop_events_before_the_interrupt_call_returns_leave_the_turn_interrupted_and_done(
    provider: FakeProvider, usage: UsageLog
) -> None:
    session = live(provider, usage)
    session.send("Tell me a long story")
    session._on_event({"type": "avatar_start_talking", "task_id": "task-1"})
    session._on_event({"type": "avatar_talking_message", "task_id": "task-1", "message": "Once upon"})

    def events_during_the_call() -> None:
        session._on_event({"type": "avatar_talking_message", "task_id": "task-1", "message": "a time"})
        session._on_event({"type": "avatar_stop_talking", "task_id": "task-1"})
        session._on_event({"type": "avatar_end_message", "task_id": "task-1"})

    provider.on_interrupt = events_during_the_call
    session.interrupt()
    avatar = [t for t in session.transcript() if t.role == "avatar"]
    assert len(avatar) == 1
    assert avatar[0].interrupted and avatar[0].done
    assert not session.speaking and not session.awaiting_answer
    # Words of the cut-off answer that arrive late stay marked as interrupted.
    session._on_event({"type": "avatar_talking_message", "task_id": "task-1", "message": "there was"})
    assert all(t.interrupted for t in session.transcript() if t.role == "avatar")
    session.stop()


def test_stop_while_the_provider_is_creating_the_session_stops_it_once_created(usage: UsageLog) -> None:
    release = threading.Event()

    class SlowProvider(FakeProvider):
        def new(self, request: NewSessionRequest) -> NewSession:
            release.wait(5)
            return super().new(request)

    provider = SlowProvider()
    session = MediaFreeSession(
        provider,  # type: ignore[arg-type]
        "local",
        usage,
        SessionOptions(request=NewSessionRequest(quality="low")),
    )
    stopper = threading.Thread(target=session.stop)
    stopper.start()
    time.sleep(0.1)
    release.set()
    stopper.join(10)
    assert wait(lambda: (row := usage.get_session("s1")) is not None and row.end_reason is not None, 5)
    assert provider.stopped == ["s1"]
    assert session.state is SessionState.CLOSED and session.end_reason is EndReason.STOPPED
    row = usage.get_session("s1")
    assert row is not None and row.end_reason == EndReason.STOPPED


def test_downtime_counts_from_the_last_frame_received_and_the_status_shows_the_gap_at_once(
    provider: FakeProvider, usage: UsageLog
) -> None:
    from lib.live.status import status_rows
    from lib.usage.credits import Pricing

    session = live(provider, usage)
    assert session.no_media_seconds() is not None and session.no_media_seconds() < 1
    session._last_frame_at -= 3.0  # the frames stopped 3 s ago; nothing has noticed yet
    rows = dict(status_rows(session, Pricing(), None))
    assert rows["Media"] == ":orange[no media for 3 s]", rows
    session._on_state("failed")
    assert wait(lambda: session.state is SessionState.CONNECTED and session.reconnects == 1, 5), session.state
    reconnect = next(d for _, kind, d in usage.events("s2") if kind == EventKind.RECONNECT)
    assert reconnect is not None
    # 3 s before the loss was noticed + the 1 s backoff: counted from detection it would be about 1 s.
    assert reconnect["downtime_ms"] >= 4000, reconnect
    assert "Media" not in dict(status_rows(session, Pricing(), None))  # frames again: no gap shown
    session.stop()


def test_the_duration_cap_is_announced_in_its_last_minute(provider: FakeProvider, usage: UsageLog) -> None:
    from lib.live.status import cap_warning

    session = MediaFreeSession(
        provider,  # type: ignore[arg-type]
        "local",
        usage,
        SessionOptions(request=NewSessionRequest(quality="low"), max_duration=90),
    )
    assert session.wait_connected(5)
    assert cap_warning(session) is None  # 90 s left
    session.connected_wall = time.time() - 40
    assert cap_warning(session) == "The session stops in 50 s (the duration cap you set)."
    session.stop()
    assert cap_warning(session) is None
