"""Logic behind the Sessions page: what is running on the provider right now, and stopping it.

* ``take_snapshot`` lists the provider's active sessions, reconciles the usage log with them (sessions
  the log thinks open but the provider no longer lists are closed as ``lost`` at their last heartbeat),
  heartbeats the logged sessions that are still running (seen active = still billable), and merges
  what the log knows (avatar, voice, quality, who started it) into one row per session.
* ``force_stop`` stops sessions one by one and reports each outcome, for operators only (``lib.access``);
  each attempt is written to the audit trail with who asked. A stopped session is closed in the
  log with reason ``force_stopped``. An orphan (running on the provider, unknown to the log) is first
  added to the log with ``started_by_dashboard = False`` and its provider creation time, then closed the
  same way, so the minutes it ran are counted on the Usage page.

The provider is a :class:`~lib.accounts.ProviderAccount` with its :class:`~lib.capabilities.Capabilities`:
the same code serves the local engine, LiveAvatar and legacy HeyGen. Where the provider reports what a session
was billed so far (LiveAvatar ``credits_consumed``), that figure is shown instead of the estimate.

Nothing here imports streamlit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

import pandas as pd

from lib.access import Action, Identity, require_operator
from lib.accounts import AccountError, AccountSession, ProviderAccount, StopOutcome, StopResult
from lib.capabilities import Capabilities, Concurrency
from lib.usage.credits import Pricing
from lib.usage.store import AuditEntry, EndReason, EventKind, Reconciliation, SessionRow, UsageLog

Origin = Literal["dashboard", "elsewhere", "orphan"]

FORCE_STOP_EVENT = EventKind.FORCE_STOP
STOP_ACTIONS = (Action.FORCE_STOP, Action.STOP_IDLE, Action.STOP_OLDER)
ORIGIN_LABELS: dict[str, str] = {"dashboard": "Dashboard", "elsewhere": "Elsewhere", "orphan": "Orphan ⚠"}
__all__ = ["StopOutcome", "StopResult"]  # re-exported: pages and the command line read results from here


@dataclass(frozen=True)
class LiveSession:
    """One active session on the provider, merged with what the usage log knows about it."""

    session_id: str
    status: str | None
    created_at: float | None
    age_s: float | None
    avatar_id: str | None
    voice_id: str | None
    quality: str | None
    resolution: str | None
    idle_s: float | None
    idle_timeout_s: int | None
    duration_limit_s: int | None
    speaking: bool | None
    origin: Origin
    closed_in_log: bool
    credits: float
    cost: float
    video_encoding: str | None = None
    mode: str | None = None
    source: str | None = None
    is_sandbox: bool | None = None
    billed: bool = False
    """``credits`` is what the provider reports billed so far (else our estimate)."""
    credits_per_minute: float = 0.0
    """What this session adds per minute now: the provider's rate for its mode, else the pricing preset's."""
    duration_s: float | None = None

    @property
    def is_orphan(self) -> bool:
        return self.origin == "orphan"

    @property
    def idle_left_s(self) -> float | None:
        """Seconds until the server's idle timeout closes it (None when the provider does not say)."""
        if self.idle_s is None or self.idle_timeout_s is None:
            return None
        return max(0.0, self.idle_timeout_s - self.idle_s)

    @property
    def duration_left_s(self) -> float | None:
        if self.age_s is None or self.duration_limit_s is None:
            return None
        return max(0.0, self.duration_limit_s - self.age_s)


@dataclass(frozen=True)
class Capacity:
    """Active sessions against the provider's concurrency limit (``limit`` None = unknown)."""

    used: float
    limit: float | None
    unit: str
    note: str

    @property
    def fraction(self) -> float | None:
        return None if not self.limit else self.used / self.limit


@dataclass(frozen=True)
class Snapshot:
    provider: str
    fetched_at: float
    sessions: list[LiveSession] = field(default_factory=list)
    lost: list[SessionRow] = field(default_factory=list)
    error: str | None = None
    elsewhere: list[SessionRow] = field(default_factory=list)
    """Open in the log on another engine or HeyGen account (not in this provider's list, not touched)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def total_credits(self) -> float:
        return sum(s.credits for s in self.sessions)

    @property
    def total_cost(self) -> float:
        return sum(s.cost for s in self.sessions)

    def by_id(self, session_ids: Iterable[str]) -> list[LiveSession]:
        wanted = set(session_ids)
        return [s for s in self.sessions if s.session_id in wanted]


@dataclass(frozen=True)
class StopCounts:
    force_stopped: int
    ended: int


def _unix(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _merge(
    active: AccountSession, row: SessionRow | None, caps: Capabilities, pricing: Pricing, now: float
) -> LiveSession:
    created = _unix(active.created_at)
    if created is None and row is not None:
        created = row.created_at
    age = None if created is None else max(0.0, now - created)
    speaking_s = row.speaking_s if row is not None else None
    billed = active.credits_consumed is not None
    if active.credits_consumed is not None:
        credits = active.credits_consumed
    else:
        credits = pricing.credits_for(age or 0.0, speaking_s, active.mode, active.is_sandbox)
    rate = caps.rate_for(active.mode, active.is_sandbox)
    if rate is None:
        model = pricing.model
        rate = model.rate(active.mode, active.is_sandbox)
        if model.basis == "speaking" and active.speaking is False:
            rate = 0.0  # speaking basis: only a speaking avatar costs, when the provider says
    if row is None:
        origin: Origin = "orphan"
    else:
        origin = "dashboard" if row.started_by_dashboard else "elsewhere"
    return LiveSession(
        session_id=active.session_id,
        status=active.status,
        created_at=created,
        age_s=age,
        avatar_id=active.avatar_id or (row.avatar_id if row else None),
        voice_id=active.voice_id or (row.voice_id if row else None),
        quality=active.quality or (row.quality if row else None),
        resolution=active.resolution,
        idle_s=active.idle_s,
        idle_timeout_s=active.idle_timeout_s if active.idle_timeout_s is not None else caps.idle_timeout_s,
        duration_limit_s=active.duration_limit_s,
        speaking=active.speaking,
        origin=origin,
        closed_in_log=row is not None and not row.is_open,
        credits=credits,
        cost=pricing.cost(credits),
        video_encoding=active.video_encoding or (row.video_encoding if row else None),
        mode=active.mode,
        source=active.source,
        is_sandbox=active.is_sandbox,
        billed=billed,
        credits_per_minute=rate,
        duration_s=active.duration_s,
    )


def provider_end_times(account: ProviderAccount, rows: Sequence[SessionRow]) -> dict[str, float]:
    """When the provider really stopped these sessions, from its history (empty when it cannot say)."""
    wanted = {row.session_id for row in rows}
    if not wanted:
        return {}
    since = datetime.fromtimestamp(min(row.created_at for row in rows) - 60, UTC)
    until = datetime.fromtimestamp(time.time() + 60, UTC)
    try:
        past = account.history(since, until)
    except AccountError:
        return {}  # no history now: the last heartbeat stands
    found: dict[str, float] = {}
    for entry in past:
        if entry.session_id not in wanted:
            continue
        if entry.ended_at is not None:
            found[entry.session_id] = entry.ended_at.timestamp()
        elif entry.duration_s is not None:
            found[entry.session_id] = entry.created_at.timestamp() + entry.duration_s
    return found


def reconcile(
    account: ProviderAccount, log: UsageLog, provider: str, active: Iterable[str], *, listed_at: float
) -> Reconciliation:
    """Reconcile the log with a listing that began at ``listed_at``, then give the sessions closed as lost
    the end time the provider's history knows (a crashed dashboard's engine records it when it stops them)."""
    result = log.reconcile(active, provider, account.endpoint, reachable=account.reachable, listed_at=listed_at)
    if result.lost and log.settle_end_times(provider_end_times(account, result.lost)):
        settled = [log.get_session(row.session_id) or row for row in result.lost]
        result = replace(result, lost=settled)
    return result


def take_snapshot(
    account: ProviderAccount,
    log: UsageLog,
    caps: Capabilities,
    pricing: Pricing,
    *,
    now: float | None = None,
) -> Snapshot:
    """List, reconcile, merge. A provider error comes back as ``Snapshot.error`` and leaves the log alone
    (closing every open session as lost because the provider was unreachable would be wrong)."""
    provider = str(caps.kind)
    # Taken before the request: a session logged after this moment may be missing from the answer.
    listed_at = time.time() if now is None else now
    try:
        active = account.active_sessions()
    except AccountError as exc:
        return Snapshot(provider, time.time() if now is None else now, error=str(exc))
    at = time.time() if now is None else now
    reconciliation = reconcile(account, log, provider, (s.session_id for s in active), listed_at=listed_at)
    for session_id in reconciliation.still_open:
        log.heartbeat(session_id, at=at)
    rows = {row.session_id: row for row in log.open_sessions(provider)}
    for session_id in reconciliation.closed_but_active:
        row = log.get_session(session_id)
        if row is not None:
            rows[session_id] = row
    merged = [_merge(s, rows.get(s.session_id), caps, pricing, at) for s in active]
    merged.sort(key=lambda s: (s.created_at if s.created_at is not None else at, s.session_id))
    return Snapshot(provider, at, merged, list(reconciliation.lost), elsewhere=list(reconciliation.elsewhere))


def force_stop(
    account: ProviderAccount,
    log: UsageLog,
    provider: str,
    targets: Sequence[LiveSession],
    *,
    identity: Identity,
    action: Action = Action.FORCE_STOP,
    now: float | None = None,
) -> list[StopResult]:
    """Stop each session and log the outcome, with who asked (``action``: force-stop, or the stop-idle /
    stop-older shortcut) in the audit trail. Raises :class:`~lib.access.NotAllowed` before touching anything
    unless ``identity`` is an operator; never raises for a provider error (it is a result)."""
    if action not in STOP_ACTIONS:
        raise ValueError(f"{action} is not a stop action")
    require_operator(identity, action)
    results = []
    for target in targets:
        result = account.stop(target.session_id)
        at = time.time() if now is None else now
        log.record_audit(identity.actor, action, target.session_id, _stop_detail(result), at=at)
        row = log.get_session(target.session_id)
        if row is None and result.outcome is StopOutcome.STOPPED:
            log.open_session(
                target.session_id,
                provider,
                target.avatar_id,
                target.voice_id,
                target.quality,
                target.video_encoding,
                started_by_dashboard=False,
                created_at=target.created_at if target.created_at is not None else at,
                endpoint=account.endpoint,
            )
            row = log.get_session(target.session_id)
        if row is not None:
            log.record_event(
                target.session_id,
                FORCE_STOP_EVENT,
                {"outcome": str(result.outcome), "message": result.message},
                at=at,
            )
            if result.outcome is StopOutcome.STOPPED:
                log.close_session(target.session_id, EndReason.FORCE_STOPPED, at=at)
            elif result.outcome is StopOutcome.ALREADY_GONE and row.is_open:
                # Same rule as reconciliation: it ended some time after it was last seen.
                seen = row.last_seen if row.last_seen is not None else row.created_at
                log.close_session(target.session_id, EndReason.LOST, at=seen)
        results.append(result)
    return results


def _stop_detail(result: StopResult) -> str:
    return str(result.outcome) if result.outcome is not StopOutcome.FAILED else f"failed: {result.message}"[:300]


def stopped_by(log: UsageLog, session_ids: Iterable[str] | None = None, *, limit: int = 50) -> list[AuditEntry]:
    """The newest stop lines of the audit trail (who stopped what, and how it went), optionally for some
    sessions only."""
    entries = log.audit_entries(actions=STOP_ACTIONS, limit=limit)
    if session_ids is None:
        return entries
    wanted = set(session_ids)
    return [e for e in entries if e.target in wanted]


def idle_sessions(sessions: Iterable[LiveSession], minutes: float) -> tuple[list[LiveSession], int]:
    """Sessions idle for more than ``minutes``, and how many sessions do not report idle time."""
    idle, unknown = [], 0
    for s in sessions:
        if s.idle_s is None:
            unknown += 1
        elif s.idle_s > minutes * 60:
            idle.append(s)
    return idle, unknown


def older_sessions(sessions: Iterable[LiveSession], minutes: float) -> list[LiveSession]:
    """Sessions running for longer than ``minutes`` (every provider reports when a session started)."""
    return [s for s in sessions if s.age_s is not None and s.age_s > minutes * 60]


def credits_per_minute(sessions: Iterable[LiveSession]) -> float:
    """What the sessions running now add per minute (FULL 2, LITE 1, sandbox 0 on LiveAvatar; the pricing
    preset's rate elsewhere, only for speaking avatars on a speaking basis)."""
    return sum(s.credits_per_minute for s in sessions)


def minutes_left(credits_left: float, rate: float) -> float | None:
    """Minutes until the balance is used up at ``rate`` credits per minute (None: nothing is burning)."""
    if rate <= 0:
        return None
    return max(0.0, credits_left) / rate


def capacity(
    caps: Capabilities, sessions: Sequence[LiveSession], *, budget: int, entered_limit: int | None
) -> Capacity:
    """Local engine: capacity units (480p = 1, 720p = 2, 1080p = 4) against its budget.
    Providers that do not report their concurrency limit: sessions against a limit the user enters."""
    if caps.concurrency is Concurrency.CAPACITY_UNITS:
        used = sum(caps.units_for(s.quality) for s in sessions)
        return Capacity(used, float(budget), "units", f"{len(sessions)} session(s); {caps.concurrency_hint}")
    if entered_limit:
        return Capacity(
            len(sessions),
            float(entered_limit),
            "sessions",
            f"Limit as entered below ({caps.label} does not report it).",
        )
    return Capacity(len(sessions), None, "sessions", caps.concurrency_hint)


def stopped_today(log: UsageLog, tz: str = "UTC", *, now: float | None = None) -> StopCounts:
    """Sessions of any provider ended since local midnight: force-stopped, and ended for any reason."""
    zone = ZoneInfo(tz)
    at = time.time() if now is None else now
    local = datetime.fromtimestamp(at, zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    with log.read() as conn:
        forced, ended = conn.execute(
            f"SELECT COALESCE({conn.sql.count_if('end_reason = ?')}, 0), COUNT(*) FROM sessions "
            "WHERE ended_at >= ? AND end_reason != ?",
            (str(EndReason.FORCE_STOPPED), midnight, str(EndReason.IMPORTED)),
        ).fetchone()
    return StopCounts(int(forced), int(ended))


TABLE_COLUMNS = (
    "session_id",
    "started_by",
    "status",
    "mode",
    "source",
    "sandbox",
    "avatar",
    "voice",
    "quality",
    "started",
    "age_min",
    "idle_s",
    "idle_left_s",
    "duration_left_min",
    "credits",
    "credits_per_min",
    "cost",
    "note",
)


def sessions_frame(snapshot: Snapshot, tz: str = "UTC") -> pd.DataFrame:
    """The Sessions table: one row per active session, in ``snapshot.sessions`` order."""
    rows = []
    for s in snapshot.sessions:
        note = ""
        if s.closed_in_log:
            note = "Closed in the log but still running: a stop did not take."
        elif s.is_orphan:
            note = "Not started by this dashboard and not in the usage log."
        left = s.duration_left_s
        rows.append(
            {
                "session_id": s.session_id,
                "started_by": ORIGIN_LABELS[s.origin],
                "status": s.status or "unknown",
                "mode": s.mode,
                "source": s.source,
                "sandbox": s.is_sandbox,
                "avatar": s.avatar_id,
                "voice": s.voice_id,
                "quality": s.quality,
                "started": s.created_at,
                "age_min": None if s.age_s is None else s.age_s / 60,
                "idle_s": s.idle_s,
                "idle_left_s": s.idle_left_s,
                "duration_left_min": None if left is None else left / 60,
                "credits": s.credits,
                "credits_per_min": s.credits_per_minute,
                "cost": s.cost,
                "note": note,
            }
        )
    df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    df["started"] = pd.to_datetime(df["started"], unit="s", utc=True).dt.tz_convert(tz)
    for column in ("age_min", "idle_s", "idle_left_s", "duration_left_min", "credits", "credits_per_min", "cost"):
        df[column] = df[column].astype("float64")
    return df


def describe_lost(lost: Sequence[SessionRow], tz: str = "UTC") -> list[str]:
    """One line per lost session: id, avatar and the end time the log now holds."""
    zone = ZoneInfo(tz)
    lines = []
    for row in lost:
        end = row.ended_at if row.ended_at is not None else row.created_at
        when = datetime.fromtimestamp(end, zone).strftime("%H:%M:%S")
        avatar = f" ({row.avatar_id})" if row.avatar_id else ""
        lines.append(f"{row.session_id}{avatar}, closed at its last heartbeat {when}")
    return lines
