"""lib/access.py and the operator checks where each action runs: roles from the email lists, the loopback
test, and a viewer refused by force-stop, history import, pricing save and budget override (nothing done,
nothing logged as done), an operator's action written to the audit trail with their email."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lib import ops, usage_admin
from lib.access import (
    LOCAL_OPERATOR,
    Action,
    Identity,
    NotAllowed,
    Role,
    identity_for,
    is_loopback,
    parse_emails,
    require_operator,
    role_for,
)
from lib.guards import BUDGET_OVERRIDE_EVENT, BudgetLevel, BudgetStatus, admit_session
from lib.settings import SettingsError, load_settings
from lib.usage.credits import PRESETS, Pricing
from lib.usage.schema import SCHEMA_VERSION
from lib.usage.store import EndReason, UsageLog
from tests.unit.test_ops import HEYGEN, NOW, PRICING, FakeClient, account, active

VIEWER = Identity("vera@example.com", Role.VIEWER, signed_in=True)
OPERATOR = Identity("otto@example.com", Role.OPERATOR, signed_in=True)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[UsageLog]:
    with UsageLog(tmp_path / "usage.db") as usage:
        yield usage


@pytest.mark.parametrize(
    ("email", "role"),
    [
        ("otto@example.com", Role.OPERATOR),
        ("OTTO@Example.com", Role.OPERATOR),  # addresses compare case-insensitively
        ("anyone@ops.example.org", Role.OPERATOR),  # @domain entry
        ("vera@example.com", Role.VIEWER),
        ("eve@example.com", Role.NONE),
        ("mallory@evil-ops.example.org", Role.NONE),  # a domain entry is not a suffix match on the host
        ("x@ops.example.org@evil.com", Role.NONE),
        ("", Role.NONE),
    ],
)
def test_role_comes_from_the_operator_and_viewer_lists(email: str, role: Role) -> None:
    operators = ("otto@example.com", "@ops.example.org")
    assert role_for(email, operators, ("vera@example.com", "otto@example.com")) is role


def test_an_address_the_provider_says_is_unverified_gets_no_role() -> None:
    claims = {"email": "otto@example.com", "email_verified": False}
    assert identity_for(claims, ("otto@example.com",), ()).role is Role.NONE
    assert identity_for({"email": "Otto@example.com"}, ("otto@example.com",), ()) == OPERATOR


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("", False),
        (None, False),
        ("192.168.1.5", False),
        ("dashboard.example.com", False),
    ],
)
def test_only_loopback_addresses_count_as_loopback(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_email_lists_are_validated_where_settings_are_read() -> None:
    assert parse_emails(" Otto@Example.com, @ops.example.org ,") == ("otto@example.com", "@ops.example.org")
    settings = load_settings({}, {"OPERATOR_EMAILS": "otto@example.com", "VIEWER_EMAILS": "@example.com"})
    assert settings.operator_emails == ("otto@example.com",) and settings.viewer_emails == ("@example.com",)
    with pytest.raises(SettingsError, match=r"VIEWER_EMAILS.*'bob'"):
        load_settings({}, {"VIEWER_EMAILS": "vera@example.com, bob"})
    with pytest.raises(SettingsError, match="OPERATOR_EMAILS"):
        load_settings({}, {"OPERATOR_EMAILS": "@localhost"})


def test_require_operator_refuses_viewers_and_the_unknown_with_a_typed_error() -> None:
    require_operator(LOCAL_OPERATOR, Action.FORCE_STOP)
    require_operator(OPERATOR, Action.EDIT_PRICING)
    for who in (VIEWER, Identity("eve@example.com", Role.NONE, signed_in=True)):
        with pytest.raises(NotAllowed, match="may not force-stop sessions") as caught:
            require_operator(who, Action.FORCE_STOP)
        assert caught.value.identity == who and caught.value.action is Action.FORCE_STOP


def test_a_viewer_cannot_force_stop_nothing_is_stopped_or_logged(log: UsageLog) -> None:
    log.open_session("s1", "heygen", "anna", created_at=NOW - 120)
    client = FakeClient([active("s1", 120)])
    snap = ops.take_snapshot(account(client), log, HEYGEN, PRICING, now=NOW)
    events_before = log.events("s1")

    for action in (Action.FORCE_STOP, Action.STOP_IDLE, Action.STOP_OLDER):
        with pytest.raises(NotAllowed):
            ops.force_stop(account(client), log, "heygen", snap.sessions, identity=VIEWER, action=action, now=NOW)

    assert client.stopped == [] and list(client.sessions) == ["s1"]
    row = log.get_session("s1")
    assert row is not None and row.is_open and not log.was_force_stopped("s1")
    assert log.events("s1") == events_before
    assert log.audit_entries() == []


def test_an_operators_stop_is_audited_with_their_email_and_the_shortcut_used(log: UsageLog) -> None:
    log.open_session("s1", "heygen", "anna", created_at=NOW - 900)
    client = FakeClient([active("s1", 900)])
    snap = ops.take_snapshot(account(client), log, HEYGEN, PRICING, now=NOW)

    (result,) = ops.force_stop(
        account(client), log, "heygen", snap.sessions, identity=OPERATOR, action=Action.STOP_OLDER, now=NOW + 1
    )

    assert result.outcome == "stopped" and client.stopped == ["s1"]
    row = log.get_session("s1")
    assert row is not None and row.end_reason == EndReason.FORCE_STOPPED
    (entry,) = ops.stopped_by(log, ["s1"])
    assert (entry.actor, entry.action, entry.target, entry.detail) == (OPERATOR.actor, "stop_older", "s1", "stopped")
    assert entry.at == pytest.approx(NOW + 1)


def test_a_viewer_cannot_import_history_or_save_pricing(log: UsageLog) -> None:
    client = FakeClient([])
    start, end = datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 4, tzinfo=UTC)
    with pytest.raises(NotAllowed, match="import history"):
        usage_admin.import_history(account(client), log, "heygen", start, end, identity=VIEWER)
    cheap = Pricing(PRESETS["heygen_current"], 0.01, 1.0)
    with pytest.raises(NotAllowed, match="edit pricing"):
        usage_admin.save_pricing(log, cheap, identity=VIEWER)
    assert log.load_pricing(PRICING) == PRICING  # unchanged
    assert log.audit_entries() == []


def test_an_operators_import_and_pricing_change_are_audited(log: UsageLog) -> None:
    from lib.heygen.models import HistorySession

    client = FakeClient([])
    client.history = [HistorySession("h1", "closed", datetime.fromtimestamp(NOW - 3600, UTC), 60.0)]
    start, end = datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 4, tzinfo=UTC)
    result = usage_admin.import_history(account(client), log, "heygen", start, end, identity=OPERATOR)
    assert result.added == 1 and log.get_session("h1") is not None
    usage_admin.save_pricing(log, Pricing(PRESETS["heygen_current"], 2.0, 50.0), identity=OPERATOR)
    assert log.load_pricing(PRICING).price_per_credit == 2.0

    pricing_line, import_line = log.audit_entries()  # newest first
    assert (import_line.actor, import_line.action) == (OPERATOR.actor, "import_history")
    assert "2024-03-01" in (import_line.detail or "") and "1 added" in (import_line.detail or "")
    assert (pricing_line.actor, pricing_line.action) == (OPERATOR.actor, "edit_pricing")
    assert "2 per credit, budget 50" in (pricing_line.detail or "")


def test_a_budget_override_needs_an_operator_and_names_them(log: UsageLog) -> None:
    over = BudgetStatus(12.0, 10.0, BudgetLevel.OVER)
    pricing = Pricing(PRESETS["heygen_current"], 1.0, 10.0)
    assert not admit_session(over, pricing, "heygen", identity=VIEWER).allowed  # refused, as for anyone
    with pytest.raises(NotAllowed, match="override the budget"):
        admit_session(over, pricing, "heygen", override=True, identity=VIEWER, log=log)
    assert log.audit_entries() == []

    admitted = admit_session(over, pricing, "heygen", override=True, identity=OPERATOR, log=log)
    assert admitted.allowed
    assert dict(admitted.open_events)[BUDGET_OVERRIDE_EVENT]["by"] == OPERATOR.actor
    (entry,) = log.audit_entries(actions=[Action.BUDGET_OVERRIDE])
    assert entry.actor == OPERATOR.actor and "12.0 of 10 credits" in (entry.detail or "")


def test_the_audit_table_arrives_by_migration_and_filters_by_action_target_and_time(log: UsageLog) -> None:
    assert log.schema_version == SCHEMA_VERSION >= 4  # the audit table came with version 4
    log.record_audit("local", Action.FORCE_STOP, "a", "stopped", at=100)
    log.record_audit("otto@example.com", Action.EDIT_PRICING, "pricing", "x", at=200)
    log.record_audit("local", Action.STOP_IDLE, "b", "stopped", at=300)
    assert [e.target for e in log.audit_entries()] == ["b", "pricing", "a"]
    assert [e.target for e in log.audit_entries(actions=ops.STOP_ACTIONS)] == ["b", "a"]
    assert [e.target for e in log.audit_entries(target="a")] == ["a"]
    assert [e.target for e in log.audit_entries(since=150, limit=1)] == ["b"]
