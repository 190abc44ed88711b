"""Reconciling the usage log with a real engine's active list while sessions start (issue 13, section 2).

The race: a listing is taken, a session is started and logged, then the listing is reconciled; the new
session is not in it and must not be closed as lost. Several dashboards and command lines do this at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from lib import ops
from lib.accounts import StreamingAccount
from lib.capabilities import CAPABILITIES, ProviderKind
from lib.engine.launcher import PROJECT_ROOT, EngineProcess
from lib.heygen.client import StreamingClient
from lib.heygen.models import ActiveSession, NewSessionRequest
from lib.usage.credits import PRESETS, Pricing
from lib.usage.store import RECONCILE_GRACE_S, EndReason, UsageLog

PRICING = Pricing(PRESETS["heygen_current"])
LOCAL = CAPABILITIES[ProviderKind.LOCAL]


@pytest.fixture
def usage(usage_target: str):
    """The log on each backend: a SQLite file, and a PostgreSQL database shared by every process."""
    log = UsageLog(usage_target)
    yield log
    log.close()


def start_and_log(client: StreamingClient, usage: UsageLog) -> str:
    """What Live chat does: start a session on the provider, then log it."""
    session_id = client.new(NewSessionRequest(quality="low")).session_id
    usage.open_session(session_id, "local", quality="low", endpoint=client.endpoint)
    usage.mark_connected(session_id)
    return session_id


class ListThenStart:
    """A client whose listing is answered, then another tab starts and logs a session, then the caller goes on."""

    def __init__(self, client: StreamingClient, usage: UsageLog) -> None:
        self.client, self.usage = client, usage
        self.started: list[str] = []

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    def list(self) -> list[ActiveSession]:
        answer = self.client.list()
        self.started.append(start_and_log(self.client, self.usage))
        return answer


def test_a_session_started_between_listing_and_reconciling_stays_open(client, usage):
    racing = ListThenStart(client, usage)

    snapshot = ops.take_snapshot(StreamingAccount(racing), usage, LOCAL, PRICING)  # type: ignore[arg-type]

    (session_id,) = racing.started
    assert session_id in {s.session_id for s in client.list()}
    assert snapshot.lost == []
    row = usage.get_session(session_id)
    assert row is not None and row.is_open, row
    # The next look sees it listed and keeps its heartbeat moving.
    seen = row.last_seen or 0.0
    time.sleep(0.05)
    again = ops.take_snapshot(StreamingAccount(client), usage, LOCAL, PRICING)
    assert [s.origin for s in again.sessions if s.session_id == session_id] == ["dashboard"]
    assert (usage.get_session(session_id).last_seen or 0.0) > seen  # type: ignore[union-attr]


def test_a_session_wrongly_closed_as_lost_is_reopened_and_heartbeats_count_again(client, usage):
    session_id = start_and_log(client, usage)
    # A peer running the old code closes it from a stale listing (the mistake this test recovers from).
    assert usage.close_session(session_id, EndReason.LOST, at=time.time())
    time.sleep(0.01)  # the next listing begins after that decision

    snapshot = ops.take_snapshot(StreamingAccount(client), usage, LOCAL, PRICING)

    assert [s.closed_in_log for s in snapshot.sessions if s.session_id == session_id] == [False]
    row = usage.get_session(session_id)
    assert row is not None and row.is_open and row.end_reason is None
    assert usage.heartbeat(session_id)
    client.stop(session_id)
    time.sleep(RECONCILE_GRACE_S)  # a session logged within the grace before a listing is not judged by it
    after = ops.take_snapshot(StreamingAccount(client), usage, LOCAL, PRICING)
    assert [r.session_id for r in after.lost] == [session_id]
    closed = usage.get_session(session_id)
    assert closed is not None and closed.end_reason == EndReason.LOST
    # Closed at the engine's own end time (its history).
    (ended,) = [h.end_time for h in client.list_history() if h.session_id == session_id]
    assert closed.ended_at == pytest.approx(ended, abs=0.001)


RECONCILER = textwrap.dedent(
    """
    import sys, time, os
    sys.path.insert(0, sys.argv[1])
    from lib import ops
    from lib.accounts import StreamingAccount
    from lib.capabilities import CAPABILITIES, ProviderKind
    from lib.heygen.client import StreamingClient
    from lib.usage.credits import PRESETS, Pricing
    from lib.usage.store import UsageLog

    class SlowListing:
        # A loaded machine: 0.3 s between the provider's answer and the reconciliation.
        def __init__(self, client):
            self.client = client
        def __getattr__(self, name):
            return getattr(self.client, name)
        def list(self):
            answer = self.client.list()
            time.sleep(0.3)
            return answer

    url, seconds = sys.argv[2], float(sys.argv[3])
    log = UsageLog(os.environ["USAGE_TARGET"])  # a database URL holds a password: never on argv
    lost = 0
    with StreamingClient(url, os.environ["ENGINE_API_KEY"], backoff=0) as client:
        print("ready", flush=True)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            account = StreamingAccount(SlowListing(client))
            pricing = Pricing(PRESETS["heygen_current"])
            lost += len(ops.take_snapshot(account, log, CAPABILITIES[ProviderKind.LOCAL], pricing).lost)
    print(f"lost {lost}", flush=True)
    """
)


def test_two_processes_reconciling_at_once_never_close_a_running_session(
    engine: EngineProcess, client, usage, usage_target: str
):
    # The key and the database URL never go on argv.
    env = {**os.environ, "ENGINE_API_KEY": engine.api_key.reveal(), "USAGE_TARGET": usage_target}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RECONCILER, str(PROJECT_ROOT), engine.url, "8"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        started = []
        for _ in range(5):
            started.append(start_and_log(client, usage))
            time.sleep(0.35)
        outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert all(proc.returncode == 0 for proc in procs), outputs
    running = {s.session_id for s in client.list()}
    assert set(started) <= running
    rows = {sid: usage.get_session(sid) for sid in started}
    wrongly_closed = [sid for sid, row in rows.items() if row is None or not row.is_open]
    assert wrongly_closed == [], outputs
    assert all(out.strip().endswith("lost 0") for out in outputs), outputs
