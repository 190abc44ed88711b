"""Usage page: sessions, minutes, credits and cost from the usage log, against the monthly budget.

Where the provider's history was imported (LiveAvatar), its billed credits stand next to the estimate and win
in the totals and the budget; a session's transcript opens in a dialog from the table.
"""

from __future__ import annotations

import calendar
import time
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import streamlit as st

from lib import usage_admin
from lib.access import Action, NotAllowed
from lib.accounts import AccountError
from lib.capabilities import CAPABILITIES, ProviderKind
from lib.heygen.errors import HeyGenError
from lib.usage import charts
from lib.usage import queries as q
from lib.usage.credits import PLANS, PRESETS, Pricing
from ui import access, resources
from ui.widgets import browser_timezone, budget_change, fmt_change, fmt_credits, fmt_duration, fmt_money

TABLE_ROWS = 500
AUDIT_ROWS = 200
CACHE_TTL_S = 30


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_options(db: str) -> dict[str, list[str]]:
    return q.filter_options(resources.usage_log())


@st.cache_data(ttl=CACHE_TTL_S, show_spinner="Loading usage…")
def load_usage(
    db: str, flt: q.UsageFilter, pricing: Pricing, by: str, local_estimate: bool, month: date, today: date
) -> dict[str, Any]:
    log = resources.usage_log()
    est = {"include_local_estimate": local_estimate}
    return {
        "kpis": q.kpis(log, flt, pricing, **est),
        "per_day": q.minutes_per_day(log, flt, pricing, by, **est),  # type: ignore[arg-type]
        "durations": q.duration_distribution(log, flt),
        "budget": q.cumulative_credits(log, month, pricing, flt=flt, today=today, **est),
        "hours": q.sessions_by_hour(log, flt),
        "table": q.sessions_table(log, flt, pricing, TABLE_ROWS, **est),
    }


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def load_csv(db: str, flt: q.UsageFilter, pricing: Pricing, local_estimate: bool) -> bytes:
    return q.sessions_csv(resources.usage_log(), flt, pricing, include_local_estimate=local_estimate)


@st.dialog("Transcript", width="large")
def show_transcript(session_id: str) -> None:
    st.caption(f"Session `{session_id}`")
    try:
        lines = resources.provider_or_stop().account.transcript(session_id)
    except AccountError as exc:
        st.error(str(exc))
        return
    if not lines:
        st.info("No words were said in this session.")
        return
    for line in lines:
        when = "" if line.at_s is None else f" · {line.at_s:.0f} s"
        with st.chat_message("user" if line.role == "user" else "assistant"):
            st.markdown(f"{line.text}")
            st.caption(f"{line.role}{when}")


st.title("Usage")

settings = resources.settings()
caps = CAPABILITIES[ProviderKind(settings.provider)]
log = resources.usage_log()
try:
    pricing = log.load_pricing(Pricing.from_settings(settings))
except ValueError as exc:
    st.error(f"Configuration problem: {exc}")
    st.stop()
db = log.location  # the cache key: a file or a password-free URL
who = access.identity()
tz = browser_timezone()
today = datetime.now().astimezone(q.UsageFilter(tz=tz).zone).date()

# -- filters ----------------------------------------------------------------------------------
options = load_options(db)
cols = st.columns([2, 1, 1, 1])
picked = cols[0].date_input("Dates", value=(today.replace(day=1), today), format="YYYY-MM-DD", key="usage_dates")
providers = cols[1].multiselect("Provider", options["providers"], placeholder="All providers")
avatars = cols[2].multiselect("Avatar", options["avatars"], placeholder="All avatars")
qualities = cols[3].multiselect("Quality", options["qualities"], placeholder="All qualities")
if not isinstance(picked, tuple | list) or len(picked) != 2:
    st.info("Pick the last day of the range.")
    st.stop()
date_from, date_to = picked
flt = q.UsageFilter(date_from, date_to, tuple(providers), tuple(avatars), tuple(qualities), tz=tz)

# -- pricing ----------------------------------------------------------------------------------
pricing_cols = st.columns([3, 2])
with (
    pricing_cols[0].expander(
        f"Pricing: {pricing.model.label} · {fmt_money(pricing.price_per_credit)} per credit · "
        f"budget {pricing.monthly_budget_credits:g} credit{'' if pricing.monthly_budget_credits == 1 else 's'}/month"
    ),
    st.form("pricing"),
):
    keys = list(PRESETS)
    preset = st.selectbox(
        "Credit model",
        keys,
        index=keys.index(pricing.model.key) if pricing.model.key in keys else 0,
        format_func=lambda k: PRESETS[k].label,
    )
    st.caption(PRESETS[preset].description)
    price = st.number_input(
        "Price per credit ($)", min_value=0.0, value=float(pricing.price_per_credit), step=0.01, format="%.4f"
    )
    budget = st.number_input(
        "Monthly budget (credits)", min_value=0.0, value=float(pricing.monthly_budget_credits), step=10.0
    )
    plan = st.selectbox(
        "Or take both from a LiveAvatar plan",
        [None, *PLANS],
        format_func=lambda k: "(enter them above)" if k is None else PLANS[k].label,
        help="Price per credit = the plan's price ÷ its monthly credits; budget = its monthly credits. "
        "Overage on Starter, Pro and Scale: $0.10 per credit.",
    )
    if not who.is_operator:
        access.viewer_note("edit pricing")
    # A viewer's button is disabled; usage_admin.save_pricing checks the role again.
    if st.form_submit_button("Save pricing", disabled=not who.is_operator):
        chosen = Pricing(PRESETS[preset], price, budget)
        try:
            usage_admin.save_pricing(
                log, chosen if plan is None else Pricing.for_plan(PRESETS[preset], PLANS[plan]), identity=who
            )
        except NotAllowed as exc:
            st.error(str(exc))
        else:
            st.session_state["pricing_saved"] = True
            st.rerun()
if st.session_state.pop("pricing_saved", False):
    st.toast("Pricing saved.", icon=":material/check:")
local_estimate = pricing_cols[1].toggle(
    "Price local sessions with the credit model",
    value=False,
    help="Local-engine sessions cost no credits. Turn this on to see what they would cost on a billed provider.",
)

data = load_usage(
    db,
    flt,
    pricing,
    st.session_state.get("usage_by", "avatar"),
    local_estimate,
    min(date_to, today).replace(day=1),
    today,
)
report: q.KpiReport = data["kpis"]
cur, before = report.current, report.previous

# -- KPIs -------------------------------------------------------------------------------------
period = f"{date_from:%b %d} – {date_to:%b %d}"
prev = flt.previous()
vs = f" Change is against {prev.date_from:%b %d} – {prev.date_to:%b %d}." if prev else ""
k = st.columns(4) + st.columns(4)
k[0].metric(
    "Sessions",
    f"{cur.sessions:,}",
    fmt_change(report.change("sessions")),
    help=f"Sessions created {period} ({cur.open_sessions} still open).{vs}",
)
k[1].metric(
    "Total minutes",
    f"{cur.total_minutes:,.1f}",
    fmt_change(report.change("total_minutes")),
    help=f"From streaming.new until closed.{vs}",
)
billed_note = (
    f" Billed by the provider for {cur.billed_sessions:,} session(s) ({fmt_credits(cur.billed_credits)} credits); "
    "estimated for the rest."
    if cur.billed_sessions
    else ""
)
k[2].metric(
    "Credits" if cur.billed_sessions else "Est. credits",
    fmt_credits(cur.credits),
    fmt_change(report.change("credits")),
    delta_color="inverse",
    help=f"{pricing.model.label}: {pricing.model.description}{billed_note}{vs}",
)
k[3].metric(
    "Cost" if cur.billed_sessions else "Est. cost",
    fmt_money(cur.cost),
    fmt_change(report.change("cost")),
    delta_color="inverse",
    help=f"Credits × {fmt_money(pricing.price_per_credit)}.{vs}",
)
k[4].metric(
    "Avg duration", fmt_duration(cur.avg_duration_s), fmt_change(report.change("avg_duration_s")), delta_color="off"
)
k[5].metric(
    "p95 duration",
    fmt_duration(cur.p95_duration_s),
    fmt_change(report.change("p95_duration_s")),
    delta_color="off",
    help="95 % of sessions were at most this long.",
)
used = pricing.budget_fraction(cur.credits)
used_before = pricing.budget_fraction(before.credits) if before else None
k[6].metric(
    "Budget used",
    "—" if used is None else f"{used:.1%}",
    budget_change(used, used_before),
    delta_color="inverse",
    help=f"Credits in the period (billed where known) ÷ the monthly budget of {pricing.monthly_budget_credits:g}.",
)
if cur.billed_sessions:
    k[7].metric(
        "Billed credits",
        fmt_credits(cur.billed_credits),
        fmt_change((cur.estimated_credits - cur.billed_credits) / cur.billed_credits if cur.billed_credits else None),
        delta_color="off",
        help=f"What the provider reported for {cur.billed_sessions:,} session(s). The change is how far the "
        f"estimate ({fmt_credits(cur.estimated_credits)} credits for every session in the period) is from it.",
    )

if cur.sessions == 0:
    if q.date_span(log) is None:
        st.info(
            "The usage log is empty. Sessions appear here as soon as one is started on the **Live chat** "
            "page" + (f", or import {caps.name}'s session history below." if caps.history else ".")
        )
    else:
        st.info("No sessions match these filters. Widen the date range or clear a filter.")
else:
    # -- charts -------------------------------------------------------------------------------
    left, right = st.columns(2)
    with left.container(border=True):
        st.subheader("Minutes per day", anchor=False)
        by = st.radio(
            "Stack by",
            list(charts.GROUP_TITLES),
            format_func=charts.GROUP_TITLES.get,
            horizontal=True,
            key="usage_by",
            label_visibility="collapsed",
        )
        st.altair_chart(charts.minutes_per_day_chart(data["per_day"], by, (date_from, date_to)), width="stretch")
    with right.container(border=True):
        st.subheader("Session durations", anchor=False)
        st.altair_chart(charts.duration_chart(data["durations"]), width="stretch")

    left, right = st.columns(2)
    with left.container(border=True):
        budget_df = data["budget"]
        month = budget_df["day"].iloc[0]
        st.subheader(f"Credits in {month:%B %Y} vs budget", anchor=False)
        projected = budget_df["projected"].dropna()
        if not projected.empty and pricing.monthly_budget_credits > 0:
            end = float(projected.iloc[-1])
            st.caption(
                f"Projected to month end: **{fmt_credits(end)} credits** "
                f"({end / pricing.monthly_budget_credits:.0%} of the budget, "
                f"{fmt_money(pricing.cost(end))})."
            )
        elif not projected.empty:
            st.caption(f"Projected to month end: **{fmt_credits(float(projected.iloc[-1]))} credits**.")
        st.altair_chart(charts.budget_chart(budget_df), width="stretch")
    with right.container(border=True):
        st.subheader("Sessions by hour of day", anchor=False)
        st.caption(f"Hours in {tz}.")
        st.altair_chart(charts.hour_chart(data["hours"]), width="stretch")

    # -- sessions table -----------------------------------------------------------------------
    st.subheader("Sessions", anchor=False)
    table = data["table"]
    shown = f"newest {len(table):,} of {cur.sessions:,}" if cur.sessions > len(table) else f"{len(table):,}"
    off = int(table["estimate_off"].sum())
    st.caption(
        f"Showing {shown} sessions. The CSV has all of them."
        + (
            f" **{off} session(s)** billed more than 10 % away from the estimate (⚠ column)."
            if off
            else " Billed credits are the provider's own figures (import its history below)."
            if caps.billed_history
            else ""
        )
    )
    event = st.dataframe(
        table,
        key="usage_sessions",
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        width="stretch",
        column_order=(
            "created",
            "ended",
            "status",
            "end_reason",
            "provider",
            "mode",
            "source",
            "is_sandbox",
            "avatar_id",
            "voice_id",
            "quality",
            "started_by_dashboard",
            "duration_s",
            "credits",
            "billed_credits",
            "est_credits",
            "estimate_off",
            "cost",
            "tasks",
            "provider_end_reason",
            "session_id",
        ),
        column_config={
            "created": st.column_config.DatetimeColumn("Created", format="YYYY-MM-DD HH:mm:ss"),
            "ended": st.column_config.DatetimeColumn("Ended", format="YYYY-MM-DD HH:mm:ss"),
            "status": "Status",
            "end_reason": "End reason",
            "provider": "Provider",
            "mode": "Mode",
            "source": "Source",
            "is_sandbox": st.column_config.CheckboxColumn("Sandbox"),
            "avatar_id": "Avatar",
            "voice_id": "Voice",
            "quality": "Quality",
            "started_by_dashboard": st.column_config.CheckboxColumn("By dashboard"),
            "duration_s": st.column_config.NumberColumn("Duration (s)", format="%.0f"),
            "credits": st.column_config.NumberColumn("Credits", format="%.2f", help="Billed where known, else est."),
            "billed_credits": st.column_config.NumberColumn("Billed", format="%.2f", help="The provider's figure."),
            "est_credits": st.column_config.NumberColumn("Estimate", format="%.2f", help=pricing.model.label),
            "estimate_off": st.column_config.CheckboxColumn("⚠ > 10 %", help="Estimate more than 10 % off the bill."),
            "cost": st.column_config.NumberColumn("Cost", format="dollar"),
            "tasks": st.column_config.NumberColumn("Tasks"),
            "provider_end_reason": "Provider end reason",
            "session_id": "Session",
        },
    )
    if caps.transcripts:
        rows_picked = event.selection.rows
        row_picked = table.iloc[rows_picked[0]] if rows_picked else None
        can_show = row_picked is not None and row_picked["provider"] == settings.provider
        if st.button(
            "Show transcript",
            icon=":material/subject:",
            disabled=not can_show,
            help=f"Select a {caps.name} session in the table first.",
        ):
            show_transcript(str(row_picked["session_id"]))  # type: ignore[index]
    st.download_button(
        "Download CSV",
        data=lambda: load_csv(db, flt, pricing, local_estimate),
        file_name=f"sessions_{date_from}_{date_to}.csv",
        mime="text/csv",
        icon=":material/download:",
        on_click="ignore",
    )

# -- audit trail ------------------------------------------------------------------------------
audit = log.audit_entries(limit=AUDIT_ROWS)
overrides = [e for e in audit if e.action == Action.BUDGET_OVERRIDE]
with st.expander(f"Audit trail: {len(audit)} recent action(s), {len(overrides)} budget override(s)"):
    st.caption(
        "Who (the signed-in email, or *local* without sign-in and on the command line) stopped sessions, overrode "
        "the budget, imported history or changed pricing, newest first."
    )
    if overrides:
        st.markdown("**Budget overrides**")
        for e in overrides:
            st.markdown(f"- {datetime.fromtimestamp(e.at, flt.zone):%Y-%m-%d %H:%M:%S} · **{e.actor}** · {e.detail}")
    if audit:
        st.dataframe(
            pd.DataFrame(
                {
                    "when": [datetime.fromtimestamp(e.at, flt.zone) for e in audit],
                    "who": [e.actor for e in audit],
                    "action": [e.action.replace("_", " ") for e in audit],
                    "target": [e.target for e in audit],
                    "detail": [e.detail for e in audit],
                }
            ),
            key="usage_audit",
            hide_index=True,
            width="stretch",
            column_config={"when": st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm:ss")},
        )
    else:
        st.info("No operator actions recorded yet.")

# -- provider history import -------------------------------------------------------------------
if caps.history:
    message = st.session_state.pop("import_message", None)
    with st.expander(f"Import {caps.name} session history", expanded=message is not None):
        st.caption(
            f"Adds sessions from {caps.name}'s history for the selected dates (the day a session started), so "
            "the totals include sessions started elsewhere. Sessions already in the log keep their own times"
            + (
                "; they get the provider's mode, source, sandbox flag, end reason and **billed credits**, which win "
                "over the estimate. Importing twice changes nothing."
                if caps.billed_history
                else "."
            )
        )
        if not who.is_operator:
            access.viewer_note("import history")
        elif st.button("Import history"):
            try:
                start = time.monotonic()
                # The filter's local days as exact instants: a bare date_to would mean its midnight.
                lo, hi = flt.bounds()
                assert lo is not None and hi is not None  # the import form always has both dates
                result = usage_admin.import_history(
                    resources.provider_or_stop().account,
                    log,
                    settings.provider,
                    datetime.fromtimestamp(lo, UTC),
                    datetime.fromtimestamp(hi, UTC),
                    identity=who,
                )
            except (AccountError, HeyGenError, NotAllowed) as exc:
                st.error(str(exc))
            else:
                st.cache_data.clear()
                matched = f", {result.updated:,} logged sessions given the provider's figures" if result.updated else ""
                st.session_state["import_message"] = (
                    f"Imported {result.added:,} new sessions ({result.read - result.added:,} already in the log"
                    f"{matched}) in {time.monotonic() - start:.1f} s."
                )
                st.rerun()  # redraw the figures above with the imported sessions
        if message:
            st.success(message)

month_days = calendar.monthrange(today.year, today.month)[1]
st.caption(
    f"Times in {tz}. Figures refresh every {CACHE_TTL_S} s; credits are the provider's billed figures where "
    f"its history was imported, else estimates from the credit model above. Today is day {today.day} of "
    f"{month_days}."
)
