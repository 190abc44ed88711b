"""Connection quality of a live avatar stream, from the receiver's WebRTC stats and frame counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LOWER = {"high": "medium", "medium": "low"}


@dataclass(frozen=True)
class MediaQuality:
    fps: float
    bitrate_kbps: float | None = None
    loss_pct: float | None = None
    jitter_ms: float | None = None
    rtt_ms: float | None = None

    def summary(self) -> str:
        parts = [f"{self.fps:.0f} fps"]
        if self.bitrate_kbps is not None:
            parts.append(f"{self.bitrate_kbps:.0f} kbps")
        if self.loss_pct is not None:
            parts.append(f"{self.loss_pct:.1f} % loss")
        if self.rtt_ms is not None:
            parts.append(f"RTT {self.rtt_ms:.0f} ms")
        return " · ".join(parts)

    def suggestion(self, quality: str | None) -> str | None:
        """Advice when the media link cannot carry the current quality (None when it can)."""
        struggling = (self.loss_pct is not None and self.loss_pct > 5) or self.fps < 18
        if not struggling:
            return None
        lower = LOWER.get(quality or "")
        cause = (
            f"{self.loss_pct:.0f} % packet loss"
            if self.loss_pct and self.loss_pct > 5
            else f"only {self.fps:.0f} fps arrive"
        )
        if lower is None:
            return f"The connection is struggling ({cause}) even at the lowest quality: check the network."
        return f"The connection cannot carry {quality} quality ({cause}): start the next session at {lower}."


class QualityMeter:
    """Turns cumulative counters sampled every few seconds into rates over the last interval."""

    def __init__(self) -> None:
        self._last: tuple[float, int, int, int, int] | None = None  # time, frames, bytes, received, lost

    def sample(self, now: float, frames: int, stats: list[Any], rtt_ms: float | None) -> MediaQuality | None:
        video_in = next((s for s in stats if s.type == "inbound-rtp" and s.kind == "video"), None)
        video_out = next((s for s in stats if s.type == "remote-outbound-rtp" and s.kind == "video"), None)
        received = video_in.packetsReceived if video_in else 0
        lost = max(0, video_in.packetsLost) if video_in else 0
        sent_bytes = video_out.bytesSent if video_out else 0
        previous, self._last = self._last, (now, frames, sent_bytes, received, lost)
        if previous is None or now <= previous[0]:
            return None
        elapsed = now - previous[0]
        packets = (received - previous[3]) + (lost - previous[4])
        return MediaQuality(
            fps=(frames - previous[1]) / elapsed,
            bitrate_kbps=(sent_bytes - previous[2]) * 8 / elapsed / 1000 if video_out else None,
            loss_pct=100.0 * (lost - previous[4]) / packets if video_in and packets > 0 else None,
            jitter_ms=video_in.jitter / 90.0 if video_in else None,  # RTP video clock: 90 kHz
            rtt_ms=rtt_ms,
        )
