"""What Live chat needs to know about a provider, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from lib.capabilities import ProviderKind, capabilities_of


@dataclass(frozen=True)
class ProviderTraits:
    """What Live chat needs to know about a provider, read from the capabilities it declares."""

    hosted: bool  # a paid cloud service (not the local engine): budget guard, billed credits, local fallback
    livekit: bool  # media comes in a LiveKit room (HeyGen ``version: "v2"``), not direct WebRTC
    liveavatar: bool = False  # LiveAvatar's sessions: its own set-up (mode, context, sandbox), 60 s keep-alives

    @classmethod
    def of(cls, provider_name: str) -> ProviderTraits:
        caps = capabilities_of(provider_name)
        return cls(
            hosted=caps.bills_credits,
            livekit=caps.streaming_version == "v2",
            liveavatar=caps.kind is ProviderKind.LIVEAVATAR,
        )
