"""Avatar Ops: entry point. A thin router over the three pages, plus the provider sidebar."""

from __future__ import annotations

import streamlit as st

from lib.heygen.errors import HeyGenError
from lib.log_limits import limit_logger
from lib.usage.store import EndReason
from ui import live, resources

st.set_page_config(page_title="Avatar Ops", page_icon=":material/face:", layout="wide")
resources.settled_heap()
limit_logger("streamlit_webrtc.source")  # one "callback is too slow" warning a minute, with a count

pages = st.navigation(
    [
        st.Page("views/live_chat.py", title="Live chat", icon=":material/videocam:", default=True),
        st.Page("views/sessions.py", title="Sessions", icon=":material/dns:"),
        st.Page("views/usage.py", title="Usage", icon=":material/monitoring:"),
    ]
)

with st.sidebar:
    try:
        settings = resources.settings()
    except Exception as exc:  # a bad setting must be readable, not a traceback
        st.error(f"Configuration problem: {exc}")
        st.stop()
    provider = resources.provider_or_stop()
    health = resources.health(provider.name)
    dot = ":green[●]" if health.ok else ":red[●]"
    st.markdown(f"**Provider:** {dot} {provider.label}")
    if health.ok:
        st.caption(f"{provider.base_url} · {health.latency_ms:.0f} ms")
    else:
        st.warning(health.message)
    try:
        recovered = resources.startup_reconciliation()
    except HeyGenError:
        recovered = None  # type: ignore[assignment]  # the provider is down: the health line says so; try again next run
    if recovered and recovered.lost and not st.session_state.get("recovery_shown"):
        st.session_state["recovery_shown"] = True
        st.toast(
            f"Closed {len(recovered.lost)} session(s) a previous run left open (provider no longer "
            "lists them). See Usage.",
            icon=":material/history:",
        )
    if provider.name != settings.provider:
        st.caption("Using the local engine as a fallback for this tab.")
        if st.button("Back to HeyGen", icon=":material/cloud:"):
            live.live_chat().release(EndReason.FALLBACK_ENDED)
            resources.use_local_fallback(False)
            st.rerun()
    st.caption("HeyGen key: " + ("configured" if settings.has_heygen_key else "not configured"))
    with st.expander("Use HeyGen"):
        st.markdown(
            'Set `HEYGEN_API_KEY` in the environment, or put `HEYGEN_API_KEY = "..."` in '
            "`.streamlit/secrets.toml`, then restart the app. Without a key the built-in local "
            "engine is used. See the README's *Use HeyGen* section."
        )

if pages.title != "Live chat":
    # Leaving the live page ends its avatar session: nobody is watching it any more.
    live.leave_page()

resources.budget_banner()
pages.run()
