"""Cost guards: the monthly budget check that runs before a new session is created."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from lib.access import LOCAL_OPERATOR, Action, Identity, require_operator
from lib.capabilities import capabilities_of
from lib.usage.credits import Pricing
from lib.usage.queries import UsageFilter, kpis
from lib.usage.store import EventKind, UsageLog

WARN_FRACTION = 0.8
BUDGET_OVERRIDE_EVENT = EventKind.BUDGET_OVERRIDE


class BudgetLevel(StrEnum):
    OK = "ok"
    WARN = "warn"  # 80 % or more: a warning on every page
    OVER = "over"  # budget reached: new sessions are refused unless overridden


@dataclass(frozen=True)
class BudgetStatus:
    used_credits: float
    budget_credits: float
    level: BudgetLevel

    @property
    def fraction(self) -> float:
        return self.used_credits / self.budget_credits if self.budget_credits > 0 else 0.0

    def message(self, pricing: Pricing) -> str:
        used = f"{self.used_credits:.1f} of {self.budget_credits:.0f} credits ({self.fraction:.0%})"
        if self.level is BudgetLevel.OVER:
            return (
                f"This month's usage has reached the budget: {used}, about "
                f"${pricing.cost(self.used_credits):.2f}. New sessions are refused; raise the budget on the "
                "Usage page, or override once for this session (the override is logged)."
            )
        return f"This month's usage is at {used} of the budget."


def month_status(log: UsageLog, pricing: Pricing, *, now: float | None = None) -> BudgetStatus:
    """Credits this calendar month (UTC) against the monthly budget: billed figures where the provider
    reported them (imported LiveAvatar history), else estimates. Local-engine sessions cost nothing."""
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, UTC).date()
    report = kpis(log, UsageFilter.month(today.year, today.month), pricing, now=now)
    used = report.current.credits
    budget = pricing.monthly_budget_credits
    if budget > 0 and used >= budget:
        level = BudgetLevel.OVER
    elif budget > 0 and used >= WARN_FRACTION * budget:
        level = BudgetLevel.WARN
    else:
        level = BudgetLevel.OK
    return BudgetStatus(used, budget, level)


@dataclass(frozen=True)
class Admission:
    allowed: bool
    message: str | None = None
    # Logged on the new session as soon as it exists: who let it past the guard, and at what usage.
    open_events: tuple[tuple[str, dict[str, float | str]], ...] = ()


def admit_session(
    status: BudgetStatus,
    pricing: Pricing,
    provider: str,
    *,
    override: bool = False,
    identity: Identity = LOCAL_OPERATOR,
    log: UsageLog | None = None,
) -> Admission:
    """May a new session start? Only providers that bill credits are held to the budget. An override is an
    operator action: a viewer's is refused (:class:`~lib.access.NotAllowed`), an operator's is written to the
    audit trail of ``log`` with who overrode at what usage.

    ``identity`` defaults to the local operator only for callers that predate sign-in (the Live chat
    controller); the app keeps viewers away from starting sessions on that page itself."""
    if status.level is not BudgetLevel.OVER or not capabilities_of(provider).bills_credits:
        return Admission(True)
    if not override:
        return Admission(False, status.message(pricing))
    require_operator(identity, Action.BUDGET_OVERRIDE)
    details: dict[str, float | str] = {
        "used_credits": round(status.used_credits, 2),
        "budget_credits": status.budget_credits,
    }
    if log is not None:
        used = f"{status.used_credits:.1f} of {status.budget_credits:g} credits"
        log.record_audit(identity.actor, Action.BUDGET_OVERRIDE, provider, f"new session at {used}")
    return Admission(True, open_events=((BUDGET_OVERRIDE_EVENT, {**details, "by": identity.actor}),))
