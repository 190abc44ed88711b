"""Operator actions of the Usage page and the command line: importing the provider's history and saving the
pricing. Each checks the operator role first (``lib.access``) and writes who did it to the audit trail.

Nothing here imports streamlit.
"""

from __future__ import annotations

from datetime import datetime

from lib.access import Action, Identity, require_operator
from lib.accounts import PastSession, ProviderAccount
from lib.usage.credits import Pricing
from lib.usage.store import HistoryImport, HistoryRow, UsageLog


def history_row(p: PastSession) -> HistoryRow:
    return HistoryRow(
        p.session_id,
        p.created_at,
        p.duration_s,
        p.avatar_id,
        p.voice,
        ended_at=p.ended_at,
        mode=p.mode,
        source=p.source,
        is_sandbox=p.is_sandbox,
        billed_credits=p.credits_consumed,
        end_reason=p.end_reason,
    )


def import_history(
    account: ProviderAccount, log: UsageLog, provider: str, start: datetime, end: datetime, *, identity: Identity
) -> HistoryImport:
    """Import the provider's sessions created in ``[start, end)``; raises ``NotAllowed`` for a non-operator
    (before asking the provider) and ``AccountError`` when the provider cannot answer (nothing audited)."""
    require_operator(identity, Action.IMPORT_HISTORY)
    rows = [history_row(p) for p in account.history(start, end)]
    result = log.import_provider_history(rows, provider)
    span = f"{start:%Y-%m-%d} – {end:%Y-%m-%d}" if start.year > 1 and end.year < 9999 else "all dates"
    detail = f"{span}: {result.added} added, {result.updated} updated, {result.read} read"
    log.record_audit(identity.actor, Action.IMPORT_HISTORY, provider, detail)
    return result


def save_pricing(log: UsageLog, pricing: Pricing, *, identity: Identity) -> None:
    """Save the credit model, price and budget the Usage page shows; raises ``NotAllowed`` for a non-operator."""
    require_operator(identity, Action.EDIT_PRICING)
    before = log.load_pricing(pricing)
    log.save_pricing(pricing)
    detail = (
        f"{pricing.model.key}, {pricing.price_per_credit:g} per credit, budget {pricing.monthly_budget_credits:g} "
        f"(was {before.model.key}, {before.price_per_credit:g}, {before.monthly_budget_credits:g})"
    )
    log.record_audit(identity.actor, Action.EDIT_PRICING, "pricing", detail)
