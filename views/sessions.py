"""Sessions page: every session open on the provider right now, what it costs, and force-stop."""

from __future__ import annotations

import hashlib
from datetime import datetime
from zoneinfo import ZoneInfo

import streamlit as st

from lib import ops
from lib.access import Action, NotAllowed
from lib.accounts import AccountError
from lib.capabilities import Concurrency
from lib.usage.credits import Pricing
from ui import access, live, resources
from ui.widgets import browser_timezone, fmt_credits, fmt_money

REFRESH_S = 5
LIMIT_KEY = "{provider}_concurrency_limit"  # heygen_concurrency_limit: the key older logs saved it under

st.title("Sessions")

settings = resources.settings()
provider = resources.provider_or_stop()
caps = provider.capabilities
log = resources.usage_log()
try:
    pricing = log.load_pricing(Pricing.from_settings(settings))
except ValueError as exc:
    st.error(f"Configuration problem: {exc}")
    st.stop()
tz = browser_timezone()
state = st.session_state
who = access.identity()


def show_results(results: list[ops.StopResult]) -> None:
    stopped = sum(r.outcome == "stopped" for r in results)
    failed = [r for r in results if r.outcome == "failed"]
    lines = "\n".join(
        f"- `{r.session_id}`: **{r.label}**" + (f" — {r.message}" if r.outcome == "failed" else "") for r in results
    )
    by = f" by {who.actor}" if who.signed_in else ""
    (st.warning if failed else st.success)(f"Force stop{by}: {stopped} of {len(results)} stopped.\n\n{lines}")


if results := state.pop("stop_results", None):
    show_results(results)
if refused := state.pop("stop_refused", None):
    st.error(refused, icon=":material/block:")

controls = st.columns([1, 1, 1, 1.4], vertical_alignment="bottom")
auto = controls[0].toggle(
    "Auto-refresh",
    value=True,
    key="sessions_auto",
    help=f"Reload the list every {REFRESH_S} s without reloading the page.",
)
controls[1].button("Refresh now", icon=":material/refresh:")
idle_minutes = controls[2].number_input(
    "Idle or older than (minutes)" if caps.reports_idle else "Older than (minutes)",
    min_value=0.5,
    value=2.0 if caps.reports_idle else 10.0,
    step=0.5,
    key="idle_minutes",
    help="For the shortcut buttons under the table.",
)
entered_limit: int | None = None
if caps.concurrency is Concurrency.USER_ENTERED:
    limit_key = LIMIT_KEY.format(provider=provider.name)
    saved = log.get_setting(limit_key, 0)
    entered = controls[3].number_input(
        "Your plan's concurrency limit",
        min_value=0,
        value=int(saved or 0),
        key="concurrency_limit",
        help=f"{caps.concurrency_hint} 0 = not set: the capacity then shows no limit.",
    )
    if entered != saved:
        log.set_setting(limit_key, int(entered))
    entered_limit = int(entered) or None

pending: dict | None = state.get("stop_pending")


@st.dialog("Force stop sessions", width="large", on_dismiss=lambda: state.pop("stop_pending", None))
def confirm_stop(request: dict) -> None:
    snapshot: ops.Snapshot = state["sessions_snapshot"]
    targets = snapshot.by_id(request["ids"])
    if not targets:
        st.info("These sessions are no longer running.")
        if st.button("Close"):
            state.pop("stop_pending", None)
            st.rerun()
        return
    credits = sum(t.credits for t in targets)
    cost = sum(t.cost for t in targets)
    about = "" if all(t.billed for t in targets) else "about "
    st.markdown(
        f"Stop **{len(targets)} session{'s' if len(targets) != 1 else ''}** on {provider.label}? "
        f"{'It has' if len(targets) == 1 else 'They have'} cost {about}"
        f"**{fmt_credits(credits)} credits ({fmt_money(cost)})** so far. "
        f"Anyone watching {'it' if len(targets) == 1 else 'them'} loses the avatar."
    )
    st.dataframe(
        ops.sessions_frame(ops.Snapshot(snapshot.provider, snapshot.fetched_at, targets), tz),
        hide_index=True,
        column_order=("session_id", "mode" if caps.credit_rates else "avatar", "started_by", "age_min", "cost"),
        column_config={
            "session_id": "Session",
            "avatar": "Avatar",
            "mode": "Mode",
            "started_by": "Started by",
            "age_min": st.column_config.NumberColumn("Age (min)", format="%.1f"),
            "cost": st.column_config.NumberColumn("Cost", format="dollar"),
        },
    )
    left, right = st.columns(2)
    if left.button(f"Force stop {len(targets)}", type="primary", icon=":material/stop_circle:"):
        try:
            with st.spinner("Stopping…"):
                state["stop_results"] = ops.force_stop(
                    provider.account,
                    log,
                    provider.name,
                    targets,
                    identity=who,
                    action=Action(request.get("action", Action.FORCE_STOP)),
                )
        except NotAllowed as exc:
            state["stop_refused"] = str(exc)
        state.pop("stop_pending", None)
        st.rerun()
    if right.button("Cancel"):
        state.pop("stop_pending", None)
        st.rerun()


def stop_buttons(
    selected: list[str], idle: list[ops.LiveSession], older: list[ops.LiveSession], sessions: list[ops.LiveSession]
) -> None:
    """The stop shortcuts (operators only; ``ops.force_stop`` checks the role again)."""
    # One row sized to the labels: in equal columns "Stop 2 older than 10 min" was cut to "Stop 2 older than 1…".
    row = st.container(horizontal=True, vertical_alignment="center")
    if row.button(
        f"Force stop {len(selected)} selected", disabled=not selected, type="primary", icon=":material/stop_circle:"
    ):
        state["stop_pending"] = {"ids": selected, "action": Action.FORCE_STOP}
        st.rerun()
    if caps.reports_idle and row.button(
        f"Stop {len(idle)} idle > {idle_minutes:g} min", disabled=not idle, icon=":material/bedtime:"
    ):
        state["stop_pending"] = {"ids": [s.session_id for s in idle], "action": Action.STOP_IDLE}
        st.rerun()
    if row.button(f"Stop {len(older)} older than {idle_minutes:g} min", disabled=not older, icon=":material/timer:"):
        state["stop_pending"] = {"ids": [s.session_id for s in older], "action": Action.STOP_OLDER}
        st.rerun()
    if row.button(f"Stop all {len(sessions)}", icon=":material/block:"):
        state["stop_pending"] = {"ids": [s.session_id for s in sessions], "action": Action.FORCE_STOP}
        st.rerun()


def recent_stops() -> None:
    """Who stopped what, newest first: the stop lines of the audit trail."""
    entries = ops.stopped_by(log, limit=10)
    if not entries:
        return
    with st.expander(f"Recent stops ({len(entries)})"):
        for e in entries:
            when = datetime.fromtimestamp(e.at, ZoneInfo(tz))
            what = e.action.replace("_", " ")
            st.markdown(f"- `{e.target}` stopped by **{e.actor}** at {when:%Y-%m-%d %H:%M:%S} ({what}: {e.detail})")


@st.fragment(run_every=REFRESH_S if auto and not pending else None)
def live_sessions() -> None:
    snapshot = ops.take_snapshot(provider.account, log, caps, pricing)
    if snapshot.lost:
        lines = ops.describe_lost(snapshot.lost, tz)
        state["lost_notice"] = state.get("lost_notice", []) + lines
        st.toast(f"{len(lines)} session(s) gone from {provider.label}: closed as lost.", icon="ℹ️")
    if not snapshot.ok:
        st.error(snapshot.error)
        st.caption(
            f"Tried at {datetime.fromtimestamp(snapshot.fetched_at).astimezone():%H:%M:%S}. "
            + ("Retrying automatically." if auto else "Press Refresh now to try again.")
        )
        return
    state["sessions_snapshot"] = snapshot
    sessions = snapshot.sessions

    cap = ops.capacity(caps, sessions, budget=settings.engine_session_budget, entered_limit=entered_limit)
    rate = ops.credits_per_minute(sessions)
    stops = ops.stopped_today(log, tz)
    limit = "no limit set" if cap.limit is None else f"{cap.limit:g}"
    m = st.columns(6 if caps.credits_balance else 4)
    m[0].metric("Active sessions", len(sessions), help=f"{sum(s.is_orphan for s in sessions)} orphan(s).")
    m[1].metric(f"Capacity ({cap.unit})", f"{cap.used:g} / {limit}", help=cap.note)
    m[2].metric(
        "Credits per minute now",
        f"{rate:.2f}",
        help=f"≈ {fmt_money(pricing.cost(rate) * 60)} per hour at {fmt_money(pricing.price_per_credit)} per credit."
        + (" FULL 2 credits/min, LITE 1, sandbox 0." if caps.credit_rates else f" {pricing.model.label}."),
    )
    m[3].metric("Force-stopped today", stops.force_stopped, help=f"{stops.ended} session(s) ended today.")
    if caps.credits_balance:
        try:
            left = float(provider.account.credits_left())
        except AccountError as exc:
            m[4].metric("Credits left", "?", help=str(exc))
            m[5].metric("Minutes left", "?")
        else:
            minutes = ops.minutes_left(left, rate)
            m[4].metric("Credits left", fmt_credits(left), help=f"{provider.label}'s balance for this account.")
            m[5].metric(
                "Minutes left",
                "—" if minutes is None else f"{minutes:,.0f}",
                help="At the credits burning per minute now (— : nothing is burning).",
            )

    if notice := state.get("lost_notice"):
        st.info(
            "Gone from the provider while the log had them open — closed as **lost**:\n\n"
            + "\n".join(f"- {line}" for line in notice)
        )
        if st.button("Dismiss", key="dismiss_lost"):
            state.pop("lost_notice", None)
            st.rerun(scope="fragment")

    refreshed = datetime.fromtimestamp(snapshot.fetched_at).astimezone()
    what = f"refreshes every {REFRESH_S} s" if auto and not pending else "auto-refresh paused"
    st.caption(
        f"Last updated {refreshed:%H:%M:%S} · {what} · {provider.label}"
        + (
            f" · credits show what {pricing.model.label} would charge; the local engine costs nothing."
            if not caps.bills_credits
            else " · credits as billed by the provider so far"
            if caps.billed_history
            else ""
        )
    )
    if snapshot.elsewhere:
        st.caption(
            f"{len(snapshot.elsewhere)} more session(s) in the usage log run on another engine or "
            "provider account that is still up (e.g. a second dashboard or the command line); they are "
            "not listed or stopped here."
        )

    if not sessions:
        st.info(f"No sessions are running on {provider.label}.")
        return

    df = ops.sessions_frame(snapshot, tz)
    if not caps.credit_rates:  # the names Live chat shows, not the ids
        avatar_names, voice_names = live.display_names(provider.name)
        df["avatar"] = df["avatar"].map(lambda a: avatar_names.get(a, a))
        df["voice"] = df["voice"].map(lambda v: voice_names.get(v, v))
    columns: tuple[str, ...]
    if caps.credit_rates:  # LiveAvatar's list: mode, source, sandbox and billed credits; no avatar or idle
        columns = ("started_by", "mode", "source", "sandbox", "age_min", "credits", "credits_per_min", "cost")
    else:
        columns = ("started_by", "avatar", "quality", "status", "age_min")
        if caps.reports_idle:
            columns += ("idle_s", "idle_left_s", "duration_left_min")
        columns += ("credits", "cost", "voice")
    columns += ("started", "session_id", "note")
    # Selections are row positions: a new key whenever the set of sessions changes, so a selection
    # can never slide onto a different session.
    digest = hashlib.sha1("|".join(df["session_id"]).encode()).hexdigest()[:10]
    event = st.dataframe(
        df,
        key=f"live_{digest}",
        on_select="rerun",
        selection_mode="multi-row",
        hide_index=True,
        width="stretch",
        column_order=columns,
        column_config={
            "session_id": "Session",
            "started_by": st.column_config.TextColumn("Started by", help="Orphan = not in the usage log."),
            "status": "Status",
            "mode": st.column_config.TextColumn("Mode", help="FULL 2 credits/min, LITE 1."),
            "source": st.column_config.TextColumn("Source", help="Who started it: API, APP, EMBED or DEMO."),
            "sandbox": st.column_config.CheckboxColumn("Sandbox", help="Sandbox sessions are free (about 1 min)."),
            "avatar": "Avatar",
            "voice": "Voice",
            "quality": "Quality",
            "started": st.column_config.DatetimeColumn("Started", format="HH:mm:ss"),
            "age_min": st.column_config.NumberColumn("Age (min)", format="%.1f"),
            "idle_s": st.column_config.NumberColumn("Idle (s)", format="%.0f", help=f"Reported by {provider.label}."),
            "idle_left_s": st.column_config.NumberColumn(
                "Times out in (s)", format="%.0f", help="Idle timeout countdown."
            ),
            "duration_left_min": st.column_config.NumberColumn(
                "Max left (min)", format="%.1f", help="Until the hard duration limit."
            ),
            "credits": st.column_config.NumberColumn(
                "Billed credits" if caps.billed_history else "Est. credits",
                format="%.2f",
                help="What the provider has billed so far (per-minute ticks): Live chat's estimate counts the "
                "minute held at start."
                if caps.billed_history
                else "Estimated so far.",
            ),
            "credits_per_min": st.column_config.NumberColumn("Credits/min", format="%.1f", help="Burn rate now."),
            "cost": st.column_config.NumberColumn("Cost", format="dollar", help="Credits × price per credit."),
            "note": "Note",
        },
    )
    selected = list(df["session_id"].iloc[event.selection.rows])
    idle, unknown = ops.idle_sessions(sessions, idle_minutes)
    older = ops.older_sessions(sessions, idle_minutes)

    if who.is_operator:
        stop_buttons(selected, idle, older, sessions)
    else:
        access.viewer_note("stop sessions")
    if caps.reports_idle and unknown:
        st.caption(f"{unknown} session(s) do not report idle time ({provider.label}), so the idle shortcut skips them.")
    elif not caps.reports_idle and caps.idle_timeout_s:
        st.caption(
            f"{provider.label} does not report idle time; it ends a session after {caps.idle_timeout_s // 60} "
            "minutes without activity or keep-alive."
        )


live_sessions()
recent_stops()
if pending and "sessions_snapshot" in state:
    confirm_stop(pending)
