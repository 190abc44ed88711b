"""Usage log (SQLite, WAL), credit model and the queries behind the Usage page."""

from __future__ import annotations

from lib.usage.credits import DEFAULT_PRESET, PRESETS, CreditModel, Pricing, get_model
from lib.usage.queries import (
    DEFAULT_BINS,
    LOCAL_PROVIDERS,
    KpiReport,
    Kpis,
    UsageFilter,
    cumulative_credits,
    date_span,
    duration_distribution,
    filter_options,
    kpis,
    minutes_per_day,
    project_month,
    sessions_by_hour,
    sessions_csv,
    sessions_table,
)
from lib.usage.store import (
    EndReason,
    EventKind,
    HistoryRow,
    Reconciliation,
    SessionRow,
    UsageLog,
    UsageLogError,
)

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_PRESET",
    "LOCAL_PROVIDERS",
    "PRESETS",
    "CreditModel",
    "EndReason",
    "EventKind",
    "HistoryRow",
    "KpiReport",
    "Kpis",
    "Pricing",
    "Reconciliation",
    "SessionRow",
    "UsageFilter",
    "UsageLog",
    "UsageLogError",
    "cumulative_credits",
    "date_span",
    "duration_distribution",
    "filter_options",
    "get_model",
    "kpis",
    "minutes_per_day",
    "project_month",
    "sessions_by_hour",
    "sessions_csv",
    "sessions_table",
]
