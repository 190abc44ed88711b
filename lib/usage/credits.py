"""Credit model: how many credits a session costs, in Python and as the same rule in SQL.

Every preset bills whole started seconds (a 30.2 s session bills 31 s), applies its minimum to any
session that ran at all, and multiplies by a per-minute rate. A session that never ran (0 s) costs 0.
The ``liveavatar`` preset bills by the session's mode (FULL 2 credits/min, LITE 1) and sandbox sessions
nothing; a session whose mode is not known is priced as FULL. The SQL form lets the usage queries
aggregate credits in ``GROUP BY`` without loading rows.

``PLANS`` are LiveAvatar's subscription plans (docs/liveavatar-api.md §6): they set the price per credit
and the monthly credit budget on the Usage page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

Basis = Literal["session", "speaking"]

# Durations are differences of ~1.7e9 s doubles (resolution ~2.4e-7 s) from clocks and datetime
# conversions; a sub-microsecond excess must not bill a whole extra second.
_SLACK_S = 1e-6


@dataclass(frozen=True)
class CreditModel:
    """One pricing rule: ``max(ceil(seconds), minimum_s) * credits_per_minute / 60`` for seconds > 0."""

    key: str
    label: str
    description: str
    credits_per_minute: float
    minimum_s: float = 0.0
    basis: Basis = "session"
    mode_rates: tuple[tuple[str, float], ...] = ()
    """Credits per minute by session mode (FULL, LITE); ``credits_per_minute`` for any other or unknown mode."""
    sandbox_free: bool = False

    def rate(self, mode: str | None = None, is_sandbox: bool | None = None) -> float:
        if is_sandbox and self.sandbox_free:
            return 0.0
        return dict(self.mode_rates).get((mode or "").upper(), self.credits_per_minute)

    def billable_seconds(self, duration_s: float, speaking_s: float | None = None) -> float:
        seconds = self._basis_seconds(duration_s, speaking_s)
        if seconds <= 0:
            return 0.0
        return float(max(math.ceil(seconds - _SLACK_S), self.minimum_s))

    def credits_for(
        self,
        duration_s: float,
        speaking_s: float | None = None,
        mode: str | None = None,
        is_sandbox: bool | None = None,
    ) -> float:
        """Credits for one session of ``duration_s`` seconds (``speaking_s`` for the speaking basis)."""
        return self.billable_seconds(duration_s, speaking_s) * self.rate(mode, is_sandbox) / 60.0

    def _basis_seconds(self, duration_s: float, speaking_s: float | None) -> float:
        if self.basis == "speaking" and speaking_s is not None:
            return speaking_s
        return duration_s

    def sql_expr(
        self,
        duration_sql: str,
        speaking_sql: str | None = None,
        mode_sql: str | None = None,
        sandbox_sql: str | None = None,
        dialect: str = "sqlite",
    ) -> str:
        """The same rule as a SQL expression over a duration (and speaking, mode, sandbox) column, for SQLite or
        (``dialect="postgresql"``) PostgreSQL.

        The fragments are trusted SQL written by us, never user input.
        """
        return f"({self.seconds_sql(duration_sql, speaking_sql, dialect)} * {self.rate_sql(mode_sql, sandbox_sql)})"

    def seconds_sql(self, duration_sql: str, speaking_sql: str | None = None, dialect: str = "sqlite") -> str:
        """Billable seconds (:meth:`billable_seconds`) as SQL: 0 for a session that never ran."""
        from lib.usage.db import Sql  # the dialect helpers live with the database code

        sql = Sql(dialect)
        basis = f"({duration_sql})"
        if self.basis == "speaking" and speaking_sql is not None:
            basis = f"COALESCE(({speaking_sql}), {basis})"
        billed = sql.greatest(sql.ceil(f"({basis} - {_SLACK_S!r})"), repr(float(self.minimum_s)))
        return f"(CASE WHEN {basis} IS NULL OR {basis} <= 0 THEN 0.0 ELSE {billed} END)"

    def rate_sql(self, mode_sql: str | None = None, sandbox_sql: str | None = None) -> str:
        """Credits per billable second (:meth:`rate` / 60) as SQL over a mode and a sandbox column."""
        rate = repr(float(self.credits_per_minute) / 60.0)
        if self.mode_rates and mode_sql is not None:
            whens = " ".join(f"WHEN '{mode}' THEN {float(r) / 60.0!r}" for mode, r in self.mode_rates)
            rate = f"(CASE UPPER(COALESCE({mode_sql}, '')) {whens} ELSE {rate} END)"
        if self.sandbox_free and sandbox_sql is not None:
            rate = f"(CASE WHEN COALESCE({sandbox_sql}, 0) <> 0 THEN 0.0 ELSE {rate} END)"
        return rate

    def with_rate(self, credits_per_minute: float, minimum_s: float | None = None) -> CreditModel:
        """A custom variant of this preset (the usage page lets users override the rate)."""
        return replace(
            self,
            key=f"{self.key}_custom",
            label=f"{self.label} (custom)",
            credits_per_minute=credits_per_minute,
            minimum_s=self.minimum_s if minimum_s is None else minimum_s,
        )


PRESETS: dict[str, CreditModel] = {
    m.key: m
    for m in (
        CreditModel(
            "liveavatar",
            "LiveAvatar (by mode)",
            "FULL and Embed 2 credits per minute, LITE 1, sandbox free; 1 minute is held at start (60 s minimum), "
            "then per second. Sessions of unknown mode are priced as FULL.",
            credits_per_minute=2.0,
            minimum_s=60,
            mode_rates=(("FULL", 2.0), ("LITE", 1.0)),
            sandbox_free=True,
        ),
        CreditModel(
            "heygen_current",
            "HeyGen streaming (current docs)",
            "0.2 credits per minute, 30 s minimum, then per second.",
            credits_per_minute=0.2,
            minimum_s=30,
        ),
        CreditModel(
            "heygen_older",
            "HeyGen streaming (older)",
            "1 credit per 10 minutes active, prorated per second (0.1 credits/min), no minimum.",
            credits_per_minute=0.1,
        ),
        CreditModel(
            "heygen_oldest",
            "HeyGen streaming (oldest)",
            "1 credit per minute of the avatar speaking, per second; "
            "uses the whole session duration when speaking time was not recorded.",
            credits_per_minute=1.0,
            basis="speaking",
        ),
        CreditModel(
            "liveavatar_full",
            "LiveAvatar FULL",
            "2 credits per minute; 1 minute is held at start (60 s minimum), then per second.",
            credits_per_minute=2.0,
            minimum_s=60,
        ),
        CreditModel(
            "liveavatar_lite",
            "LiveAvatar LITE",
            "1 credit per minute; 1 minute is held at start (60 s minimum), then per second.",
            credits_per_minute=1.0,
            minimum_s=60,
        ),
    )
}

DEFAULT_PRESET = "heygen_current"
LIVEAVATAR_PRESET = "liveavatar"


@dataclass(frozen=True)
class Plan:
    """A LiveAvatar subscription: what a month costs and how many credits it brings."""

    key: str
    label: str
    monthly_price: float
    monthly_credits: float
    overage_per_credit: float | None  # None: no overage, sessions end when the credits run out

    @property
    def price_per_credit(self) -> float:
        """What one credit of the monthly pool costs (the overage price on the free plan: nothing to pay)."""
        return self.monthly_price / self.monthly_credits if self.monthly_credits else 0.0


PLANS: dict[str, Plan] = {
    p.key: p
    for p in (
        Plan("free", "LiveAvatar Free ($0, 10 credits)", 0.0, 10, None),
        Plan("starter", "LiveAvatar Starter ($19, 150 credits)", 19.0, 150, 0.10),
        Plan("pro", "LiveAvatar Pro ($99, 1,000 credits)", 99.0, 1000, 0.10),
        Plan("scale", "LiveAvatar Scale ($475, 5,000 credits)", 475.0, 5000, 0.10),
    )
}


def get_model(key: str) -> CreditModel:
    try:
        return PRESETS[key]
    except KeyError:
        known = ", ".join(PRESETS)
        raise ValueError(f"Unknown credit preset {key!r}; choose one of: {known}.") from None


@dataclass(frozen=True)
class Pricing:
    """What the usage page needs to turn seconds into credits, money and budget use."""

    model: CreditModel = PRESETS[DEFAULT_PRESET]
    price_per_credit: float = 0.99
    monthly_budget_credits: float = 100.0

    @classmethod
    def from_settings(cls, settings: Any) -> Pricing:
        """From ``lib.settings.Settings`` (credit_preset, price_per_credit, monthly_budget_credits)."""
        if settings.credit_preset not in PRESETS:
            known = ", ".join(PRESETS)
            raise ValueError(f"CREDIT_PRESET {settings.credit_preset!r} is unknown; choose one of: {known}.")
        return cls(
            model=PRESETS[settings.credit_preset],
            price_per_credit=float(settings.price_per_credit),
            monthly_budget_credits=float(settings.monthly_budget_credits),
        )

    def credits_for(
        self,
        duration_s: float,
        speaking_s: float | None = None,
        mode: str | None = None,
        is_sandbox: bool | None = None,
    ) -> float:
        return self.model.credits_for(duration_s, speaking_s, mode, is_sandbox)

    @classmethod
    def for_plan(cls, model: CreditModel, plan: Plan) -> Pricing:
        """Price per credit and monthly budget from a LiveAvatar plan."""
        return cls(model, round(plan.price_per_credit, 6), float(plan.monthly_credits))

    def cost(self, credits: float) -> float:
        return credits * self.price_per_credit

    def budget_fraction(self, credits: float) -> float | None:
        """Share of the monthly budget used (1.0 = all of it); None when no budget is set."""
        if self.monthly_budget_credits <= 0:
            return None
        return credits / self.monthly_budget_credits

    @property
    def monthly_budget_cost(self) -> float:
        return self.cost(self.monthly_budget_credits)
