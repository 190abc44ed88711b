"""Sessions page: every session open on the provider right now, what it costs, and force-stop."""

from __future__ import annotations

import hashlib
from datetime import datetime

import streamlit as st

from lib import ops
from lib.usage.credits import Pricing
from ui import resources
from ui.widgets import browser_timezone, fmt_credits, fmt_money

REFRESH_S = 5
HEYGEN_LIMIT_KEY = "heygen_concurrency_limit"

st.title("Sessions")

settings = resources.settings()
provider = resources.provider_or_stop()
log = resources.usage_log()
try:
    pricing = log.load_pricing(Pricing.from_settings(settings))
except ValueError as exc:
    st.error(f"Configuration problem: {exc}")
    st.stop()
tz = browser_timezone()
state = st.session_state


def show_results(results: list[ops.StopResult]) -> None:
    stopped = sum(r.outcome == "stopped" for r in results)
    failed = [r for r in results if r.outcome == "failed"]
    lines = "\n".join(
        f"- `{r.session_id}`: **{r.label}**" + (f" — {r.message}" if r.outcome == "failed" else "") for r in results
    )
    (st.warning if failed else st.success)(f"Force stop: {stopped} of {len(results)} stopped.\n\n{lines}")


if results := state.pop("stop_results", None):
    show_results(results)

controls = st.columns([1, 1, 1, 1.4], vertical_alignment="bottom")
auto = controls[0].toggle(
    "Auto-refresh",
    value=True,
    key="sessions_auto",
    help=f"Reload the list every {REFRESH_S} s without reloading the page.",
)
controls[1].button("Refresh now", icon=":material/refresh:")
idle_minutes = controls[2].number_input(
    "Idle longer than (minutes)", min_value=0.5, value=2.0, step=0.5, key="idle_minutes"
)
heygen_limit: int | None = None
if provider.name == "heygen":
    saved = log.get_setting(HEYGEN_LIMIT_KEY, 0)
    entered = controls[3].number_input(
        "HeyGen concurrency limit",
        min_value=0,
        value=int(saved or 0),
        key="heygen_limit",
        help="HeyGen does not report it (trial keys: 3). 0 = unknown.",
    )
    if entered != saved:
        log.set_setting(HEYGEN_LIMIT_KEY, int(entered))
    heygen_limit = int(entered) or None

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
    st.markdown(
        f"Stop **{len(targets)} session{'s' if len(targets) != 1 else ''}** on {provider.label}? "
        f"They have cost about **{fmt_credits(credits)} credits ({fmt_money(cost)})** so far. "
        "Anyone watching them loses the avatar."
    )
    st.dataframe(
        ops.sessions_frame(ops.Snapshot(snapshot.provider, snapshot.fetched_at, targets), tz),
        hide_index=True,
        column_order=("session_id", "avatar", "started_by", "age_min", "cost"),
        column_config={
            "session_id": "Session",
            "avatar": "Avatar",
            "started_by": "Started by",
            "age_min": st.column_config.NumberColumn("Age (min)", format="%.1f"),
            "cost": st.column_config.NumberColumn("Cost", format="dollar"),
        },
    )
    left, right = st.columns(2)
    if left.button(f"Force stop {len(targets)}", type="primary", icon=":material/stop_circle:"):
        with st.spinner("Stopping…"):
            state["stop_results"] = ops.force_stop(provider.client, log, provider.name, targets)
        state.pop("stop_pending", None)
        st.rerun()
    if right.button("Cancel"):
        state.pop("stop_pending", None)
        st.rerun()


@st.fragment(run_every=REFRESH_S if auto and not pending else None)
def live_sessions() -> None:
    snapshot = ops.take_snapshot(provider.client, log, provider.name, pricing)
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

    cap = ops.capacity(provider.name, sessions, engine_budget=settings.engine_session_budget, heygen_limit=heygen_limit)
    rate = ops.credits_per_minute(sessions, pricing)
    stops = ops.stopped_today(log, tz)
    m = st.columns(4)
    limit = "?" if cap.limit is None else f"{cap.limit:g}"
    m[0].metric("Active sessions", len(sessions), help=f"{sum(s.is_orphan for s in sessions)} orphan(s).")
    m[1].metric(f"Capacity ({cap.unit})", f"{cap.used:g} / {limit}", help=cap.note)
    m[2].metric(
        "Credits per minute now",
        f"{rate:.2f}",
        help=f"≈ {fmt_money(pricing.cost(rate) * 60)} per hour at {pricing.model.label}.",
    )
    m[3].metric("Force-stopped today", stops.force_stopped, help=f"{stops.ended} session(s) ended today.")

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
            " · credits show what HeyGen would charge; the local engine costs nothing."
            if provider.name == "local"
            else ""
        )
    )
    if snapshot.elsewhere:
        st.caption(
            f"{len(snapshot.elsewhere)} more session(s) in the usage log run on another engine or "
            "HeyGen account that is still up (e.g. a second dashboard or the command line); they are "
            "not listed or stopped here."
        )

    if not sessions:
        st.info(f"No sessions are running on {provider.label}.")
        return

    df = ops.sessions_frame(snapshot, tz)
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
        column_order=(
            "started_by",
            "avatar",
            "quality",
            "status",
            "age_min",
            "idle_s",
            "idle_left_s",
            "duration_left_min",
            "credits",
            "cost",
            "voice",
            "started",
            "session_id",
            "note",
        ),
        column_config={
            "session_id": "Session",
            "started_by": st.column_config.TextColumn("Started by", help="Orphan = not in the usage log."),
            "status": "Status",
            "avatar": "Avatar",
            "voice": "Voice",
            "quality": "Quality",
            "started": st.column_config.DatetimeColumn("Started", format="HH:mm:ss"),
            "age_min": st.column_config.NumberColumn("Age (min)", format="%.1f"),
            "idle_s": st.column_config.NumberColumn(
                "Idle (s)", format="%.0f", help="Reported by the local engine; HeyGen does not."
            ),
            "idle_left_s": st.column_config.NumberColumn(
                "Times out in (s)", format="%.0f", help="Idle timeout countdown."
            ),
            "duration_left_min": st.column_config.NumberColumn(
                "Max left (min)", format="%.1f", help="Until the hard duration limit."
            ),
            "credits": st.column_config.NumberColumn("Credits", format="%.2f", help="Estimated so far."),
            "cost": st.column_config.NumberColumn("Cost", format="dollar", help="Estimated so far."),
            "note": "Note",
        },
    )
    selected = list(df["session_id"].iloc[event.selection.rows])
    idle, unknown = ops.idle_sessions(sessions, idle_minutes)

    b = st.columns([1, 1, 3], vertical_alignment="center")
    if b[0].button(
        f"Force stop {len(selected)} selected", disabled=not selected, type="primary", icon=":material/stop_circle:"
    ):
        state["stop_pending"] = {"ids": selected}
        st.rerun()
    if b[1].button(f"Stop {len(idle)} idle > {idle_minutes:g} min", disabled=not idle, icon=":material/bedtime:"):
        state["stop_pending"] = {"ids": [s.session_id for s in idle]}
        st.rerun()
    if unknown:
        b[2].caption(
            f"{unknown} session(s) do not report idle time ({provider.label}), so the idle shortcut skips them."
        )


live_sessions()
if pending and "sessions_snapshot" in state:
    confirm_stop(pending)
