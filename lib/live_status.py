"""What the live chat status panel shows, computed from a link (no streamlit here)."""

from __future__ import annotations

from lib.bridge.link import AvatarLink, LinkState
from lib.bridge.playout import PlayoutStats
from lib.usage.credits import Pricing

STATE_LABELS = {
    LinkState.CONNECTING: ":orange[●] connecting",
    LinkState.CONNECTED: ":green[●] live",
    LinkState.RECONNECTING: ":orange[●] reconnecting",
    LinkState.DISCONNECTED: ":red[●] disconnected",
    LinkState.FAILED: ":red[●] failed",
    LinkState.CLOSED: ":gray[●] ended",
}


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def audio_leg_summary(stats: PlayoutStats) -> str:
    parts = [f"{stats.level_ms:.0f} ms buffered (max {stats.max_level_ms:.0f})"]
    if stats.underrun_ms:
        parts.append(f"{stats.underrun_ms / 1000:.1f} s of gaps")
    if stats.speech_dropped_ms:
        parts.append(f"{stats.speech_dropped_ms / 1000:.1f} s dropped to catch up")
    return " · ".join(parts)


def status_rows(
    link: AvatarLink, pricing: Pricing, provider: str, playout: PlayoutStats | None = None
) -> list[tuple[str, str]]:
    rows = [("State", STATE_LABELS[link.state])]
    if link.state is LinkState.CONNECTED:
        activity = "speaking" if link.speaking else "listening" if link.listening else "idle"
        rows.append(("Avatar", activity))
    session = link.session
    age = link.age_seconds()
    if session is not None:
        rows.append(("Session", f"`{session.session_id[:8]}…`"))
    if link.state is LinkState.CONNECTED:
        rows.append(("Session age", _clock(age)))
        idle_timeout = link.options.request.activity_idle_timeout
        if idle_timeout:
            rows.append(("Idle timeout in", _clock(idle_timeout - link.idle_seconds())))
        if session is not None and session.session_duration_limit:
            rows.append(("Provider limit in", _clock(session.session_duration_limit - link.session_age_seconds())))
        left = link.seconds_left()
        if left is not None:
            rows.append(("Dashboard cap in", _clock(left)))
    credits = pricing.credits_for(age) if age else 0.0
    label = "Credits so far" if provider == "heygen" else "Credits (HeyGen-equivalent)"
    rows.append((label, f"{credits:.2f} · ${pricing.cost(credits):.2f}"))
    if link.first_frame_ms is not None:
        rows.append(("Time to first frame", f"{link.first_frame_ms:.0f} ms"))
    if link.quality is not None and link.state is LinkState.CONNECTED:
        rows.append(("Connection", link.quality.summary()))
    if playout is not None and link.state is LinkState.CONNECTED:
        rows.append(("Audio to browser", audio_leg_summary(playout)))
    if link.reconnects:
        rows.append(("Reconnects", str(link.reconnects)))
    if link.last_task_to_talk_ms is not None:
        rows.append(("Last task → avatar talks", f"{link.last_task_to_talk_ms:.0f} ms"))
    return rows
