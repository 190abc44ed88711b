from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lib.guards import BudgetLevel, month_status
from lib.usage.credits import PRESETS, Pricing
from lib.usage.store import UsageLog

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp()


@pytest.fixture
def log(tmp_path):
    with UsageLog(tmp_path / "usage.db") as usage:
        yield usage


def _session(log, sid, provider, start, minutes):
    log.open_session(sid, provider, "anna", "joe", "low", "VP8", created_at=start)
    log.close_session(sid, "stopped", at=start + minutes * 60)


@pytest.mark.parametrize(
    ("heygen_minutes", "level"),
    [(100, BudgetLevel.OK), (400, BudgetLevel.WARN), (500, BudgetLevel.OVER), (600, BudgetLevel.OVER)],
)
def test_budget_levels(log, heygen_minutes, level):
    pricing = Pricing(PRESETS["heygen_current"], 1.0, 100.0)  # 0.2 credits/min: 500 min = 100 credits
    _session(log, "h1", "heygen", NOW - 86400, heygen_minutes)
    _session(log, "l1", "local", NOW - 3600, 10_000)  # local sessions cost nothing
    _session(log, "old", "heygen", datetime(2026, 10, 30, tzinfo=UTC).timestamp(), 10_000)  # last month
    status = month_status(log, pricing, now=NOW)
    assert status.used_credits == pytest.approx(heygen_minutes * 0.2)
    assert status.level is level
    if level is BudgetLevel.OVER:
        assert "refused" in status.message(pricing) and "override" in status.message(pricing)


def test_over_budget_refuses_heygen_sessions_and_a_logged_override_lets_one_through(log, client):
    from lib.guards import BUDGET_OVERRIDE_EVENT, admit_session
    from lib.heygen.models import NewSessionRequest
    from lib.live.session import LiveSession, SessionOptions

    pricing = Pricing(PRESETS["heygen_current"], 1.0, 10.0)
    _session(log, "h1", "heygen", NOW - 86400, 60)  # 12 credits of a 10-credit budget
    status = month_status(log, pricing, now=NOW)
    refused = admit_session(status, pricing, "heygen")
    assert not refused.allowed and "refused" in refused.message and "12.0 of 10 credits" in refused.message
    assert admit_session(status, pricing, "local").allowed  # the local engine costs nothing
    admitted = admit_session(status, pricing, "heygen", override=True)
    assert admitted.allowed
    # The override travels with the new session into the log (the engine stands in for HeyGen here).
    live = LiveSession(
        client,
        "heygen",
        log,
        SessionOptions(request=NewSessionRequest(quality="low"), open_events=admitted.open_events),
    )
    assert live.wait_connected(20), live.error
    events = {kind: details for _, kind, details in log.events(live.session_id)}
    assert events[BUDGET_OVERRIDE_EVENT] == {"used_credits": 12.0, "budget_credits": 10.0, "by": "local"}
    live.stop()
