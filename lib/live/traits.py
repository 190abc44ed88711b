"""What Live chat needs to know about a provider, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProviderTraits:
    """What Live chat needs to know about a provider. The one place that reads it from the provider's name:
    when providers declare capabilities, only ``of`` changes."""

    hosted: bool  # a paid cloud service (not the local engine): budget guard, billed credits, local fallback
    livekit: bool  # media comes in a LiveKit room (HeyGen ``version: "v2"``), not direct WebRTC

    @classmethod
    def of(cls, provider_name: str) -> ProviderTraits:
        hosted = provider_name == "heygen"
        return cls(hosted=hosted, livekit=hosted)
