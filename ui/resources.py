"""Long-lived resources, created once per server process (``st.cache_resource``)."""

from __future__ import annotations

import time

import streamlit as st

from lib import gc_pauses, ops, thread_dump
from lib.accounts import AccountError
from lib.capabilities import ProviderKind
from lib.engine.launcher import EngineStartError
from lib.guards import BudgetLevel, BudgetStatus, month_status
from lib.heygen.errors import HeyGenError
from lib.live import session as live_session
from lib.providers import Health, Provider, check_health, connect, local_provider
from lib.settings import Settings, SettingsError, load_settings
from lib.usage.credits import Pricing
from lib.usage.store import Reconciliation, UsageLog, UsageLogError
from lib.voice import SpeechToText, get_speech_to_text


def _secrets() -> dict:
    try:
        return dict(st.secrets)
    except Exception:  # no secrets.toml: environment and defaults apply
        return {}


@st.cache_resource(show_spinner=False)
def settings() -> Settings:
    return load_settings(_secrets())


@st.cache_resource(show_spinner="Starting the avatar provider…", on_release=lambda p: p.close())
def configured_provider() -> Provider:
    return connect(settings())


@st.cache_resource(show_spinner="Starting the local engine…", on_release=lambda p: p.close())
def local_fallback() -> Provider:
    """The embedded engine, started only when a user of a remote provider chooses to fall back to it."""
    return local_provider(settings())


FALLBACK_KEY = "use_local_fallback"


def provider_named(name: str) -> Provider:
    configured = configured_provider()
    return local_fallback() if name == ProviderKind.LOCAL and configured.name != name else configured


def provider() -> Provider:
    """The provider this browser tab uses: the configured one, or the local engine after a fallback."""
    configured = ProviderKind(settings().provider)
    fallback = configured is not ProviderKind.LOCAL and st.session_state.get(FALLBACK_KEY, False)
    return provider_named(ProviderKind.LOCAL if fallback else configured)


@st.cache_data(ttl=10, show_spinner=False)
def health(provider_name: str) -> Health:
    """The sidebar's health dot, checked at most every 10 s: every rerun must not wait on the provider
    (a down provider costs several seconds of connection retries)."""
    return check_health(provider_named(provider_name))


def use_local_fallback(enabled: bool) -> None:
    st.session_state[FALLBACK_KEY] = enabled


@st.cache_resource(show_spinner=False)
def usage_log() -> UsageLog:
    return UsageLog(settings().usage_target)


def usage_log_or_stop() -> UsageLog:
    """The usage log, or what is wrong with its file and what to do, on the page (and the page stops).
    Not cached when it fails: the next run tries again, after the user fixed the folder or the setting."""
    try:
        return usage_log()
    except UsageLogError as exc:
        st.error(str(exc), icon=":material/database:")
    st.stop()
    raise AssertionError("unreachable")


@st.cache_resource(show_spinner=False)
def settled_heap() -> int:
    """Once per server process, after the heavy imports: see lib.gc_pauses (why live media needs it)."""
    return gc_pauses.settle()


def settle_heap_if_imports_grew() -> None:
    """After a page run: a page visited for the first time imported modules (the Usage page: pandas, Altair).
    Settled now, while nothing streams, rather than when a session starts, where the pause (130-170 ms) held up
    the browser's connection (issue 15)."""
    if not live_session.streaming():
        gc_pauses.settle_if_imports_grew()


@st.cache_resource(show_spinner=False)
def thread_dump_on_signal() -> bool:
    """Once per server process: see lib.thread_dump."""
    return thread_dump.install()


@st.cache_resource(show_spinner=False)
def startup_reconciliation() -> Reconciliation:
    """Once per server process: sessions a crashed dashboard left open in the log are checked against the
    provider; gone ones are closed at the end time the provider's history gives, else at their last heartbeat.
    Raises (and is retried next run) on errors."""
    configured = configured_provider()
    account = configured.account
    listed_at = time.time()  # before the request: sessions logged after it are not judged by this listing
    active = [s.session_id for s in account.active_sessions()]
    return ops.reconcile(account, usage_log(), configured.name, active, listed_at=listed_at)


@st.cache_resource(show_spinner="Loading offline speech recognition…")
def speech_to_text() -> SpeechToText:
    """Whisper tiny.en, loaded once per server process (1-3 s) and shared by every tab."""
    return get_speech_to_text()


def pricing() -> Pricing:
    """Credit model, price and budget: what the Usage page saved, else the settings' defaults."""
    return usage_log().load_pricing(Pricing.from_settings(settings()))


@st.cache_data(ttl=30, show_spinner=False)
def budget_status() -> BudgetStatus:
    return month_status(usage_log(), pricing())


def budget_banner() -> None:
    """The 80 % / 100 % budget warning every page shows."""
    status = budget_status()
    if status.level is BudgetLevel.OVER:
        st.error(status.message(pricing()), icon=":material/savings:")
    elif status.level is BudgetLevel.WARN:
        st.warning(status.message(pricing()), icon=":material/savings:")


def provider_or_stop() -> Provider:
    """The provider, or an actionable error on the page (and the page stops)."""
    try:
        return provider()
    except SettingsError as exc:
        st.error(f"Configuration problem: {exc}")
    except EngineStartError as exc:
        st.error("The local avatar engine could not start.")
        st.code(str(exc), language=None)
    except (HeyGenError, AccountError) as exc:
        st.error(str(exc))
    st.stop()
    raise AssertionError("unreachable")
