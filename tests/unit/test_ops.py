"""lib/ops.py: merging the provider's active list with the usage log, force stop, idle shortcut."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lib import ops
from lib.access import LOCAL_OPERATOR
from lib.accounts import StreamingAccount
from lib.capabilities import CAPABILITIES, ProviderKind
from lib.heygen.errors import HeyGenError, ProviderUnavailable, SessionNotFound, SessionStateError, Unauthorized
from lib.heygen.models import ActiveSession, HistorySession
from lib.usage.credits import PRESETS, Pricing
from lib.usage.store import EndReason, UsageLog

PRICING = Pricing(PRESETS["heygen_current"], price_per_credit=1.5, monthly_budget_credits=100)
NOW = datetime(2024, 3, 3, 12, 0, tzinfo=UTC).timestamp()
LOCAL, HEYGEN = CAPABILITIES[ProviderKind.LOCAL], CAPABILITIES[ProviderKind.HEYGEN]


class FakeClient:
    """The two calls the Sessions page makes, with scripted failures."""

    endpoint = "http://127.0.0.1:8765#key-0123456789ab"

    def __init__(
        self,
        sessions: list[ActiveSession],
        stop_errors: dict[str, HeyGenError] | None = None,
        list_error: HeyGenError | None = None,
    ) -> None:
        self.sessions = {s.session_id: s for s in sessions}
        self.stop_errors = stop_errors or {}
        self.list_error = list_error
        self.stopped: list[str] = []
        self.history: list[HistorySession] = []

    def list(self) -> list[ActiveSession]:
        if self.list_error:
            raise self.list_error
        return list(self.sessions.values())

    def list_history(self, date_from: object = None, date_to: object = None) -> list[HistorySession]:
        return list(self.history)

    def stop(self, session_id: str) -> None:
        if session_id in self.stop_errors:
            raise self.stop_errors[session_id]
        self.sessions.pop(session_id)
        self.stopped.append(session_id)


def account(client: FakeClient) -> StreamingAccount:
    """The Sessions page's view of a HeyGen-shaped provider, over the fake client."""
    return StreamingAccount(client)  # type: ignore[arg-type]


def active(sid: str, age_s: float, **extra: object) -> ActiveSession:
    return ActiveSession(sid, "connected", datetime.fromtimestamp(NOW - age_s, UTC), **extra)  # type: ignore[arg-type]


@pytest.fixture
def log(tmp_path: Path) -> Iterator[UsageLog]:
    usage = UsageLog(tmp_path / "usage.db")
    yield usage
    usage.close()


def test_snapshot_merges_log_flags_orphans_and_closes_lost_at_last_heartbeat(log: UsageLog) -> None:
    log.open_session("mine", "local", "anna", "joe", "high", "VP8", created_at=NOW - 600)
    log.open_session("ghost", "local", "bob", "joe", "low", "VP8", created_at=NOW - 900)
    log.heartbeat("ghost", at=NOW - 700)
    log.open_session("heygen-open", "heygen", "cleo", None, "low", None, created_at=NOW - 900)
    client = FakeClient([active("mine", 600), active("stranger", 90, avatar_id="zed", quality="low")])

    snap = ops.take_snapshot(account(client), log, LOCAL, PRICING, now=NOW)

    assert snap.ok
    by_id = {s.session_id: s for s in snap.sessions}
    assert set(by_id) == {"mine", "stranger"}
    mine, stranger = by_id["mine"], by_id["stranger"]
    assert (mine.origin, mine.avatar_id, mine.voice_id, mine.quality) == ("dashboard", "anna", "joe", "high")
    assert stranger.is_orphan and stranger.avatar_id == "zed"
    assert mine.age_s == pytest.approx(600)
    # heygen_current: 600 s → 2.0 credits; 90 s → 0.3 credits; money at 1.5 per credit.
    assert mine.credits == pytest.approx(2.0) and mine.cost == pytest.approx(3.0)
    assert stranger.credits == pytest.approx(0.3)
    assert snap.total_cost == pytest.approx(3.45)

    assert [row.session_id for row in snap.lost] == ["ghost"]
    ghost = log.get_session("ghost")
    assert ghost is not None and ghost.end_reason == EndReason.LOST and ghost.ended_at == pytest.approx(NOW - 700)
    # Seen running now: its heartbeat moves, so a later crash closes it no earlier than this.
    assert log.get_session("mine").last_seen == pytest.approx(NOW)  # type: ignore[union-attr]
    # Another provider's sessions are not touched by this provider's list.
    assert log.get_session("heygen-open").is_open  # type: ignore[union-attr]
    # The orphan is not written to the log just by being seen.
    assert log.get_session("stranger") is None


def test_provider_error_is_a_message_and_leaves_the_log_alone(log: UsageLog) -> None:
    log.open_session("mine", "local", created_at=NOW - 60)
    error = ProviderUnavailable(None, "", provider_label="Local engine", host="127.0.0.1:1")
    snap = ops.take_snapshot(account(FakeClient([], list_error=error)), log, LOCAL, PRICING, now=NOW)

    assert not snap.ok and snap.sessions == [] and snap.lost == []
    assert "unreachable" in (snap.error or "")
    assert log.get_session("mine").is_open  # type: ignore[union-attr]


def test_closed_in_log_but_still_running_is_shown_with_a_note(log: UsageLog) -> None:
    log.open_session("sticky", "local", "anna", created_at=NOW - 300)
    log.close_session("sticky", EndReason.STOPPED, at=NOW - 200)
    snap = ops.take_snapshot(account(FakeClient([active("sticky", 300)])), log, LOCAL, PRICING, now=NOW)

    (row,) = snap.sessions
    assert row.closed_in_log and row.origin == "dashboard"
    assert "did not take" in ops.sessions_frame(snap)["note"].iloc[0]


def test_force_stop_reports_each_outcome_and_logs_it(log: UsageLog) -> None:
    for sid in ("ok", "gone", "broken"):
        log.open_session(sid, "heygen", "anna", created_at=NOW - 120)
        log.heartbeat(sid, at=NOW - 30)
    client = FakeClient(
        [active("ok", 120), active("gone", 120), active("broken", 120), active("orphan", 400, quality="low")],
        stop_errors={
            "gone": SessionNotFound(10006, "session not found", provider_label="HeyGen"),
            "broken": Unauthorized(400112, "Unauthorized", 401, provider_label="HeyGen"),
        },
    )
    snap = ops.take_snapshot(account(client), log, HEYGEN, PRICING, now=NOW)

    results = ops.force_stop(account(client), log, "heygen", snap.sessions, identity=LOCAL_OPERATOR, now=NOW + 5)

    outcome = {r.session_id: r for r in results}
    assert {k: r.outcome for k, r in outcome.items()} == {
        "ok": "stopped",
        "gone": "already_gone",
        "broken": "failed",
        "orphan": "stopped",
    }
    assert "API key" in outcome["broken"].message  # actionable, from the typed error
    ok = log.get_session("ok")
    assert ok is not None and ok.end_reason == EndReason.FORCE_STOPPED and ok.ended_at == pytest.approx(NOW + 5)
    assert [kind for _, kind, _ in log.events("ok")][-2:] == [ops.FORCE_STOP_EVENT, "closed"]
    # Already gone: closed like reconciliation does, at the last time it was seen running.
    gone = log.get_session("gone")
    assert gone is not None and gone.end_reason == EndReason.LOST and gone.ended_at == pytest.approx(NOW)
    # Failed: still open (it is still billing), the attempt is on record.
    broken = log.get_session("broken")
    assert broken is not None and broken.is_open
    assert log.events("broken")[-1][2]["outcome"] == "failed"  # type: ignore[index]
    # The orphan is now accounted: its whole run, from the provider's creation time.
    orphan = log.get_session("orphan")
    assert orphan is not None and not orphan.started_by_dashboard
    assert orphan.created_at == pytest.approx(NOW - 400) and orphan.end_reason == EndReason.FORCE_STOPPED
    assert sorted(client.stopped) == ["ok", "orphan"]


def test_stopping_a_session_that_is_already_closing_counts_as_gone(log: UsageLog) -> None:
    client = FakeClient(
        [active("s", 60)],
        stop_errors={"s": SessionStateError(10005, "state wrong: closed", state="closed", provider_label="HeyGen")},
    )
    snap = ops.take_snapshot(account(client), log, HEYGEN, PRICING, now=NOW)
    (result,) = ops.force_stop(account(client), log, "heygen", snap.sessions, identity=LOCAL_OPERATOR, now=NOW)
    assert result.outcome == "already_gone" and result.label == "already gone"
    assert log.get_session("s") is None  # an orphan that was not stopped by us is not invented in the log


def test_idle_shortcut_picks_only_sessions_idle_longer_than_n_minutes(log: UsageLog) -> None:
    client = FakeClient(
        [
            active("busy", 900, idle_seconds=10.0, activity_idle_timeout=600),
            active("sleepy", 900, idle_seconds=301.0, activity_idle_timeout=600),
            active("heygen-like", 900),
        ]
    )
    snap = ops.take_snapshot(account(client), log, LOCAL, PRICING, now=NOW)

    idle, unknown = ops.idle_sessions(snap.sessions, 5)

    assert [s.session_id for s in idle] == ["sleepy"] and unknown == 1
    sleepy = snap.by_id(["sleepy"])[0]
    assert sleepy.idle_left_s == pytest.approx(299.0)
    frame = ops.sessions_frame(snap).set_index("session_id")
    assert frame.loc["sleepy", "idle_left_s"] == pytest.approx(299.0)
    assert frame.loc["heygen-like", "idle_left_s"] != frame.loc["heygen-like", "idle_left_s"]  # NaN: unknown


def test_capacity_local_units_and_heygen_limit(log: UsageLog) -> None:
    client = FakeClient([active("a", 10, quality="low"), active("b", 10, quality="high")])
    snap = ops.take_snapshot(account(client), log, LOCAL, PRICING, now=NOW)

    local = ops.capacity(LOCAL, snap.sessions, budget=6, entered_limit=None)
    assert (local.used, local.limit, local.unit) == (5, 6, "units")
    heygen = HEYGEN
    unknown = ops.capacity(heygen, snap.sessions, budget=6, entered_limit=None)
    assert unknown.limit is None and "does not report" in unknown.note
    known = ops.capacity(heygen, snap.sessions, budget=6, entered_limit=3)
    assert (known.used, known.limit) == (2, 3)


def test_credits_per_minute_counts_running_sessions(log: UsageLog) -> None:
    client = FakeClient([active("a", 10, speaking=True), active("b", 10, speaking=False)])
    snap = ops.take_snapshot(account(client), log, LOCAL, PRICING, now=NOW)
    assert ops.credits_per_minute(snap.sessions) == pytest.approx(0.4)
    speaking = Pricing(PRESETS["heygen_oldest"])
    snap = ops.take_snapshot(account(client), log, LOCAL, speaking, now=NOW)
    assert ops.credits_per_minute(snap.sessions) == pytest.approx(1.0)


def test_stopped_today_counts_from_local_midnight(log: UsageLog) -> None:
    # 2024-03-03 12:00 UTC = 07:00 in New York; local midnight there is 05:00 UTC.
    for sid, ended, reason in (
        ("a", NOW - 3600, EndReason.FORCE_STOPPED),  # 11:00 UTC today
        ("b", NOW - 6 * 3600, EndReason.FORCE_STOPPED),  # 06:00 UTC: today in New York
        ("c", NOW - 8 * 3600, EndReason.FORCE_STOPPED),  # 04:00 UTC: yesterday in New York
        ("d", NOW - 600, EndReason.STOPPED),
    ):
        log.open_session(sid, "heygen", created_at=ended - 60)
        log.close_session(sid, reason, at=ended)

    assert ops.stopped_today(log, "UTC", now=NOW) == ops.StopCounts(force_stopped=3, ended=4)
    assert ops.stopped_today(log, "America/New_York", now=NOW) == ops.StopCounts(force_stopped=2, ended=3)


def test_lost_sessions_are_described_with_their_end_time(log: UsageLog) -> None:
    log.open_session("ghost", "local", "bob", created_at=NOW - 100)
    log.heartbeat("ghost", at=NOW - 40)
    snap = ops.take_snapshot(account(FakeClient([])), log, LOCAL, PRICING, now=NOW)
    assert ops.describe_lost(snap.lost, "UTC") == ["ghost (bob), closed at its last heartbeat 11:59:20"]


def test_a_session_closed_as_lost_gets_the_end_time_from_the_provider_history(log: UsageLog) -> None:
    log.open_session("crashed", "local", "anna", created_at=NOW - 600)
    log.heartbeat("crashed", at=NOW - 500)
    client = FakeClient([])
    client.history = [
        HistorySession("crashed", "closed", datetime.fromtimestamp(NOW - 601, UTC), 170.25),
        HistorySession("unrelated", "closed", datetime.fromtimestamp(NOW - 900, UTC), 10.0),
    ]

    snap = ops.take_snapshot(account(client), log, LOCAL, PRICING, now=NOW)

    assert [(r.session_id, r.ended_at) for r in snap.lost] == [("crashed", pytest.approx(NOW - 430.75))]
    row = log.get_session("crashed")
    assert row is not None and row.end_reason == EndReason.LOST and row.ended_at == pytest.approx(NOW - 430.75)
    assert log.get_session("unrelated") is None


def test_a_session_logged_while_the_listing_was_under_way_is_not_closed(log: UsageLog) -> None:
    class ListThenLog(FakeClient):
        """The provider answers, then another tab logs a session it has just started."""

        def list(self) -> list[ActiveSession]:
            answer = super().list()
            log.open_session("just-started", "local", created_at=NOW + 0.2)
            return answer

    snap = ops.take_snapshot(account(ListThenLog([])), log, LOCAL, PRICING, now=NOW)

    assert snap.lost == []
    assert log.get_session("just-started").is_open  # type: ignore[union-attr]


def test_a_session_of_a_dead_engine_on_the_same_port_is_closed_even_though_ours_answers_there(
    log: UsageLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = FakeClient([])
    same_port_other_key = client.endpoint.split("#")[0] + "#key-ffffffffffff"
    log.open_session("predecessor", "local", created_at=NOW - 300, endpoint=same_port_other_key)
    log.heartbeat("predecessor", at=NOW - 200)
    monkeypatch.setattr("lib.accounts.endpoint_reachable", lambda endpoint: True)  # ours answers /healthz there

    snap = ops.take_snapshot(account(client), log, LOCAL, PRICING, now=NOW)

    assert [r.session_id for r in snap.lost] == ["predecessor"] and snap.elsewhere == []
