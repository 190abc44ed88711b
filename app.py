"""Avatar Ops: entry point. A thin router over the three pages, plus the provider sidebar."""

from __future__ import annotations

import streamlit as st

from lib.accounts import AccountError
from lib.capabilities import CAPABILITIES, ProviderKind
from lib.heygen.errors import HeyGenError
from lib.log_limits import limit_logger
from lib.usage.store import EndReason
from ui import access, live, resources

st.set_page_config(page_title="Avatar Ops", page_icon=":material/face:", layout="wide")
resources.settled_heap()
resources.thread_dump_on_signal()
limit_logger("streamlit_webrtc.source")  # one "callback is too slow" warning a minute, with a count

# Sign-in first (when `[auth]` is configured): nothing else is drawn for a visitor without a role.
who = access.gate()

pages = st.navigation(
    [
        # A viewer cannot start sessions: they land on Sessions instead.
        st.Page("views/live_chat.py", title="Live chat", icon=":material/videocam:", default=who.is_operator),
        st.Page("views/sessions.py", title="Sessions", icon=":material/dns:", default=not who.is_operator),
        st.Page("views/usage.py", title="Usage", icon=":material/monitoring:"),
    ]
)

with st.sidebar:
    try:
        settings = resources.settings()
    except Exception as exc:  # a bad setting must be readable, not a traceback
        st.error(f"Configuration problem: {exc}")
        st.stop()
    resources.usage_log_or_stop()  # before the provider: an unusable data folder is said as such
    provider = resources.provider_or_stop()
    health = resources.health(provider.name)
    dot = ":green[●]" if health.ok else ":red[●]"
    access.sidebar_badge(who)
    st.markdown(f"**Provider:** {dot} {provider.label}")
    if health.ok:
        st.caption(f"{provider.base_url} · {health.latency_ms:.0f} ms")
    else:
        st.warning(health.message)
    try:
        recovered = resources.startup_reconciliation()
    except (HeyGenError, AccountError):
        recovered = None  # type: ignore[assignment]  # the provider is down: the health line says so; try again next run
    if recovered and recovered.lost and not st.session_state.get("recovery_shown"):
        st.session_state["recovery_shown"] = True
        st.toast(
            f"Closed {len(recovered.lost)} session(s) a previous run left open (provider no longer "
            "lists them). See Usage.",
            icon=":material/history:",
        )
    configured = CAPABILITIES[ProviderKind(settings.provider)]
    if provider.name != settings.provider:
        st.caption("Using the local engine as a fallback for this tab.")
        if st.button(f"Back to {configured.name}", icon=":material/cloud:"):
            live.live_chat().release(EndReason.FALLBACK_ENDED)
            resources.use_local_fallback(False)
            st.rerun()
    if configured.shut_down:
        st.warning(
            f"{configured.label}: this API no longer exists. Switch to LiveAvatar (set LIVEAVATAR_API_KEY; "
            "see the README's *Use LiveAvatar* section).",
            icon=":material/cloud_off:",
        )
    st.caption("LiveAvatar key: " + ("configured" if settings.has_liveavatar_key else "not configured"))
    if settings.has_heygen_key and not settings.has_liveavatar_key:
        st.caption(
            "A HeyGen key is configured, but HeyGen's Streaming API shut down on 2026-03-31 and its keys do not "
            "work on LiveAvatar."
        )
    with st.expander("Use LiveAvatar"):
        st.markdown(
            "Create an API key at **app.liveavatar.com/developers** (HeyGen keys do not work), set "
            '`LIVEAVATAR_API_KEY` in the environment or put `LIVEAVATAR_API_KEY = "..."` in '
            "`.streamlit/secrets.toml`, then restart the app. Without a key the built-in local engine is used. "
            "See the README's *Use LiveAvatar* section."
        )

if pages.title != "Live chat":
    # Leaving the live page ends its avatar session: nobody is watching it any more.
    live.leave_page()

access.exposure_warning()
resources.budget_banner()
if pages.title == "Live chat" and not who.is_operator:
    # Starting a session spends credits: a viewer gets no START button at all (the Live chat controller and
    # the budget override in lib.guards refuse a non-operator's start by themselves, too).
    st.title("Live chat")
    access.viewer_note("start avatar sessions")
    st.stop()
try:
    pages.run()
finally:  # also when the page ends its run early (st.stop, st.rerun)
    resources.settle_heap_if_imports_grew()
