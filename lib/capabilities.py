"""What each provider can do, declared once: pages, the command line and the cost guards ask these, never a name.

Three providers: ``local`` (the embedded engine, HeyGen-shaped API, the offline default), ``liveavatar``
(HeyGen's successor, ``docs/liveavatar-api.md``) and ``heygen`` (HeyGen Streaming, shut down 2026-03-31; legacy
code kept for old logs and self-hosted look-alikes). The value of :class:`ProviderKind` is what the usage log
stores in its ``provider`` column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from lib.engine.config import QUALITY_UNITS


class ProviderKind(StrEnum):
    LOCAL = "local"
    LIVEAVATAR = "liveavatar"
    HEYGEN = "heygen"


class Transport(StrEnum):
    """How the media reaches the dashboard."""

    DIRECT_WEBRTC = "direct-webrtc"  # the provider sends an SDP offer (local engine, HeyGen's v1 sessions)
    LIVEKIT = "livekit"  # a LiveKit room the dashboard joins (LiveAvatar, HeyGen's v2 sessions)


class Concurrency(StrEnum):
    """How the Sessions page can tell how full the account is."""

    CAPACITY_UNITS = "capacity_units"  # the local engine: quality-weighted units against its session budget
    USER_ENTERED = "user_entered"  # not reported by the provider: the user types the plan's limit in


@dataclass(frozen=True)
class Capabilities:
    kind: ProviderKind
    label: str
    transport: Transport
    bills_credits: bool
    """Sessions cost real credits: held to the monthly budget, counted in usage totals."""
    credit_rates: tuple[tuple[str, float], ...] = ()
    """Credits per minute by session mode as the provider bills them (empty: one rate, from the pricing preset)."""
    sandbox_free: bool = False
    """Sandbox sessions cost nothing."""
    credits_balance: bool = False
    """The account's remaining credits can be asked for."""
    history: bool = False
    """Past sessions can be imported into the usage log."""
    billed_history: bool = False
    """The history carries the credits each session was billed (they win over the estimate)."""
    transcripts: bool = False
    """A session's words can be fetched after the fact."""
    reports_idle: bool = False
    """Active sessions say how long they have been idle."""
    idle_timeout_s: int | None = None
    """Fixed server-side idle timeout; None when each session carries its own (``activity_idle_timeout``)."""
    sandbox: bool = False
    concurrency: Concurrency = Concurrency.USER_ENTERED
    capacity_units: tuple[tuple[str, int], ...] = ()
    """Units per session by quality, for ``Concurrency.CAPACITY_UNITS``."""
    concurrency_hint: str = ""
    short_label: str = ""
    """The name alone, for buttons ("Back to HeyGen"); ``label`` when empty."""
    default_credit_preset: str = "heygen_current"
    shut_down: str | None = None
    """ISO date the provider's API went away; such a provider is never chosen by default."""
    streaming_version: str | None = None
    """``version`` sent with a HeyGen-shaped ``streaming.new`` (HeyGen's LiveKit sessions are ``v2``)."""
    falls_back_to_local: bool = False
    """When it fails, Live chat may offer the built-in local engine instead."""

    @property
    def name(self) -> str:
        return self.short_label or self.label

    @property
    def rates(self) -> Mapping[str, float]:
        return dict(self.credit_rates)

    def rate_for(self, mode: str | None, is_sandbox: bool | None = None) -> float | None:
        """Credits per minute the provider bills a session of ``mode`` (None: not declared, use the preset)."""
        if is_sandbox and self.sandbox_free:
            return 0.0
        if mode is None:
            return None
        return self.rates.get(mode.upper())

    def units_for(self, quality: str | None) -> int:
        units = dict(self.capacity_units)
        return units.get(quality or "medium", 2)


LIVEAVATAR_RATES: tuple[tuple[str, float], ...] = (("FULL", 2.0), ("LITE", 1.0))

CAPABILITIES: dict[ProviderKind, Capabilities] = {
    ProviderKind.LOCAL: Capabilities(
        ProviderKind.LOCAL,
        "Local engine",
        Transport.DIRECT_WEBRTC,
        bills_credits=False,
        reports_idle=True,
        concurrency=Concurrency.CAPACITY_UNITS,
        capacity_units=tuple(QUALITY_UNITS.items()),
        concurrency_hint="480p = 1 unit, 720p = 2, 1080p = 4.",
    ),
    ProviderKind.LIVEAVATAR: Capabilities(
        ProviderKind.LIVEAVATAR,
        "LiveAvatar",
        Transport.LIVEKIT,
        bills_credits=True,
        credit_rates=LIVEAVATAR_RATES,
        sandbox_free=True,
        credits_balance=True,
        history=True,
        billed_history=True,
        transcripts=True,
        idle_timeout_s=300,
        sandbox=True,
        concurrency_hint="LiveAvatar does not publish its plans' concurrency limits. Enter yours below.",
        default_credit_preset="liveavatar",
        falls_back_to_local=True,
    ),
    ProviderKind.HEYGEN: Capabilities(
        ProviderKind.HEYGEN,
        "HeyGen Streaming (shut down 2026-03-31)",
        Transport.LIVEKIT,
        bills_credits=True,
        history=True,
        concurrency_hint="HeyGen does not report its concurrency limit (trial keys: 3). Enter yours below.",
        short_label="HeyGen",
        shut_down="2026-03-31",
        streaming_version="v2",
        falls_back_to_local=True,
    ),
}

FREE_PROVIDERS: tuple[str, ...] = tuple(str(c.kind) for c in CAPABILITIES.values() if not c.bills_credits)


def capabilities_of(provider: str) -> Capabilities:
    """Capabilities of a provider named in the usage log or the settings (an unknown name: billed, nothing else)."""
    try:
        return CAPABILITIES[ProviderKind(provider)]
    except ValueError:
        return Capabilities(ProviderKind.HEYGEN, provider, Transport.DIRECT_WEBRTC, bills_credits=True)
