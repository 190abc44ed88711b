"""Sign-in for the app: who is looking (``st.user`` turned into a :class:`~lib.access.Identity`), the sign-in and
"not allowed" pages, and the warning when the app is reachable beyond loopback without sign-in.

Sign-in is on when ``.streamlit/secrets.toml`` has an ``[auth]`` section (Streamlit's ``st.login``); roles come
from the ``OPERATOR_EMAILS`` and ``VIEWER_EMAILS`` settings. Without ``[auth]`` everyone is the local operator,
as before. Hiding buttons here is a courtesy: the actions themselves check the role (``lib.access``).
"""

from __future__ import annotations

import streamlit as st

from lib.access import LOCAL_OPERATOR, Identity, Role, identity_for, is_loopback
from lib.settings import SettingsError
from ui import resources

ANONYMOUS = Identity("anonymous", Role.NONE)


def auth_configured() -> bool:
    """An ``[auth]`` section is in the secrets (``st.login`` reads it from there, never from the environment)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def identity() -> Identity:
    """Who is acting in this browser session."""
    if not auth_configured():
        return LOCAL_OPERATOR
    if not st.user.is_logged_in:
        return ANONYMOUS
    settings = resources.settings()
    return identity_for(st.user.to_dict(), settings.operator_emails, settings.viewer_emails)


def exposed_without_sign_in() -> bool:
    """Reachable beyond loopback (``server.address`` unset or not a loopback address) and no ``[auth]``."""
    return not auth_configured() and not is_loopback(st.get_option("server.address"))


def exposure_warning() -> None:
    if exposed_without_sign_in():
        address = st.get_option("server.address") or "every interface"
        st.warning(
            f"This dashboard listens on **{address}** without sign-in: anyone who can reach it can stop "
            "sessions and spend credits. Configure sign-in (`[auth]` in `.streamlit/secrets.toml`, see the "
            "README's *Sign-in and roles*) or serve it on 127.0.0.1 only.",
            icon=":material/lock_open:",
        )


def gate() -> Identity:
    """Draw the sign-in or refusal page and stop the run unless the visitor may see the app; the identity."""
    try:
        who = identity()
    except SettingsError as exc:  # e.g. a malformed OPERATOR_EMAILS: readable, not a traceback
        st.error(f"Configuration problem: {exc}")
        st.stop()
    if not auth_configured():
        return who
    if not st.user.is_logged_in:
        st.title("Avatar Ops")
        st.info("Sign in to see the sessions and usage of this account.", icon=":material/lock:")
        if st.button("Sign in", type="primary", icon=":material/login:"):
            st.login()
        st.stop()
    if not who.allowed:
        st.title("Not allowed")
        st.error(
            f"**{who.actor}** is signed in but may not use this dashboard. Ask an operator to add your address "
            "to `OPERATOR_EMAILS` or `VIEWER_EMAILS`, or sign in with another account.",
            icon=":material/block:",
        )
        if st.button("Sign out", icon=":material/logout:"):
            st.logout()
        st.stop()
    return who


def sidebar_badge(who: Identity) -> None:
    """Who is signed in, with what role, and the sign-out button (nothing without sign-in)."""
    if not who.signed_in:
        return
    st.caption(f"Signed in as **{who.actor}** · {who.role}")
    if st.button("Sign out", icon=":material/logout:", key="sign_out"):
        st.logout()


def viewer_note(what: str) -> None:
    """Why an operator control is missing, for a viewer."""
    st.caption(f":material/visibility: Viewers cannot {what}; ask an operator.")
