"""Who may do what: the signed-in identity, its role, and the check every operator action runs.

Pages hide the buttons a viewer may not use, but that is only a courtesy: the functions behind each action
(``lib.ops.force_stop``, the Usage page's history import and pricing save, the budget override in
``lib.guards``) call :func:`require_operator` themselves, so a crafted rerun cannot get past a hidden button.
The command line is a local admin tool and acts as :data:`LOCAL_OPERATOR`.

Nothing here imports streamlit: the app turns ``st.user`` into an :class:`Identity` with :func:`identity_for`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

LOCAL_ACTOR = "local"


class Role(StrEnum):
    OPERATOR = "operator"  # everything a viewer sees, plus every action that stops or spends
    VIEWER = "viewer"  # every page, read-only
    NONE = "none"  # signed in but on neither list: sees the refusal page only


class Action(StrEnum):
    """The operator actions: each is checked where it runs and written to the audit trail."""

    START_SESSION = "start_session"
    FORCE_STOP = "force_stop"
    STOP_IDLE = "stop_idle"
    STOP_OLDER = "stop_older"
    BUDGET_OVERRIDE = "budget_override"
    IMPORT_HISTORY = "import_history"
    EDIT_PRICING = "edit_pricing"


ACTION_LABELS: dict[Action, str] = {
    Action.START_SESSION: "start a session",
    Action.FORCE_STOP: "force-stop sessions",
    Action.STOP_IDLE: "stop idle sessions",
    Action.STOP_OLDER: "stop older sessions",
    Action.BUDGET_OVERRIDE: "override the budget",
    Action.IMPORT_HISTORY: "import history",
    Action.EDIT_PRICING: "edit pricing",
}


@dataclass(frozen=True)
class Identity:
    """Who is acting: the signed-in email (lower case), or ``local`` without sign-in."""

    actor: str
    role: Role
    signed_in: bool = False

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR

    @property
    def allowed(self) -> bool:
        return self.role is not Role.NONE


LOCAL_OPERATOR = Identity(LOCAL_ACTOR, Role.OPERATOR)
"""Without sign-in (loopback) and on the command line: today's behaviour, everything allowed."""


class NotAllowed(PermissionError):
    """An operator action was asked for by someone without the operator role. Nothing was done."""

    def __init__(self, identity: Identity, action: Action) -> None:
        super().__init__(
            f"{identity.actor} ({identity.role}) may not {ACTION_LABELS[action]}: it needs the operator role."
        )
        self.identity = identity
        self.action = action


def require_operator(identity: Identity, action: Action) -> None:
    """Raise :class:`NotAllowed` unless ``identity`` is an operator; call it before doing anything."""
    if not identity.is_operator:
        raise NotAllowed(identity, action)


def matches(email: str, patterns: Sequence[str]) -> bool:
    """``email`` is one of ``patterns`` (an address, or ``@domain`` for everyone at that domain)."""
    email = email.strip().lower()
    for pattern in patterns:
        if pattern.startswith("@"):
            if email.endswith(pattern) and email.count("@") == 1:
                return True
        elif email == pattern:
            return True
    return False


def role_for(email: str | None, operators: Sequence[str], viewers: Sequence[str]) -> Role:
    """Operators win over viewers; an address on neither list has no role."""
    if not email:
        return Role.NONE
    if matches(email, operators):
        return Role.OPERATOR
    if matches(email, viewers):
        return Role.VIEWER
    return Role.NONE


def identity_for(user: Mapping[str, Any], operators: Sequence[str], viewers: Sequence[str]) -> Identity:
    """The identity of a signed-in user from the claims ``st.user`` holds. A provider that says the address is
    not verified gets no role (anyone could claim an unverified address); one that says nothing is trusted."""
    email = str(user.get("email") or "").strip().lower()
    if user.get("email_verified") is False:
        return Identity(email or "unknown", Role.NONE, signed_in=True)
    return Identity(email or "unknown", role_for(email, operators, viewers), signed_in=True)


def is_loopback(address: str | None) -> bool:
    """Does a server bound to ``address`` listen on loopback only? Empty = every interface (Streamlit's own
    default), so not loopback."""
    if not address:
        return False
    host = address.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def parse_emails(raw: str | None) -> tuple[str, ...]:
    """Comma-separated addresses or ``@domain`` entries, lower-cased; raises ``ValueError`` naming a bad one."""
    entries = []
    for part in (raw or "").split(","):
        entry = part.strip().lower()
        if not entry:
            continue
        local, at, domain = entry.rpartition("@")
        if not at or "." not in domain or domain.startswith(".") or " " in entry or "@" in local:
            raise ValueError(f"{part.strip()!r} is neither an email address nor an @domain")
        entries.append(entry)
    return tuple(entries)
