"""What the live chat status panel shows, computed from a live session (no streamlit here)."""

from __future__ import annotations

from lib.heygen.models import NewSessionRequest
from lib.live.liveavatar import LiveAvatarRequest
from lib.live.media.playout import PlayoutStats
from lib.live.session import LiveSession, SessionState
from lib.live.traits import ProviderTraits
from lib.usage.credits import Pricing

MEDIA_GAP_SHOWN_S = 1.0  # frames come 25 times a second: a second without one is an outage the user sees

STATE_LABELS = {
    SessionState.CONNECTING: ":orange[●] connecting",
    SessionState.CONNECTED: ":green[●] live",
    SessionState.RECONNECTING: ":orange[●] reconnecting",
    SessionState.DISCONNECTED: ":red[●] disconnected",
    SessionState.FAILED: ":red[●] failed",
    SessionState.CLOSED: ":gray[●] ended",
}


def credits_so_far(request: NewSessionRequest | LiveAvatarRequest, pricing: Pricing, age_s: float) -> str:
    """The session's estimated credits and cost, at its own rate: a LiveAvatar LITE session burns half of FULL's,
    a sandbox one nothing (the Sessions page shows what the provider billed)."""
    if isinstance(request, LiveAvatarRequest):
        credits = pricing.credits_for(age_s, mode=request.choice.mode.value, is_sandbox=request.choice.sandbox)
        minimum_note = "{} min held at start"  # LiveAvatar escrows its minute at start
    else:
        credits = pricing.credits_for(age_s)
        minimum_note = "billed minimum {} min"
    text = f"{credits:.2f} · ${pricing.cost(credits):.2f}"
    minimum = pricing.model.minimum_s
    if credits > 0 and 0 < age_s < minimum:
        text += f" ({minimum_note.format(f'{minimum / 60:g}')})"
    return text


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


CAP_WARNING_S = 60  # the duration cap is announced this long before it stops the session


def cap_warning(session: LiveSession) -> str | None:
    """The duration cap is about to stop the session (None otherwise)."""
    left = session.seconds_left() if session.live else None
    if left is None or left >= CAP_WARNING_S:
        return None
    return f"The session stops in {max(0, left):.0f} s (the duration cap you set)."


def quality_advice(session: LiveSession) -> str | None:
    """Advice when the media link cannot carry the chosen quality (None when it can)."""
    if session.quality is None or session.state is not SessionState.CONNECTED:
        return None
    return session.quality.suggestion(session.options.request.quality)


def status_rows(
    session: LiveSession, pricing: Pricing, traits: ProviderTraits | None, playout: PlayoutStats | None = None
) -> list[tuple[str, str]]:
    rows = [("State", STATE_LABELS[session.state])]
    playout = session.audio_leg_stats() or playout  # forwarded packets: their queue is the audio leg
    silent = session.no_media_seconds()
    if silent is not None and silent >= MEDIA_GAP_SHOWN_S:
        rows.append(("Media", f":orange[no media for {silent:.0f} s]"))
    if session.state is SessionState.CONNECTED:
        activity = "speaking" if session.speaking else "idle"
        rows.append(("Avatar", activity))
    provider_session = session.provider_session
    age = session.age_seconds()
    if provider_session is not None:
        rows.append(("Session", f"`{provider_session.session_id[:8]}…`"))
    if session.state is SessionState.CONNECTED:
        rows.append(("Session age", _clock(age)))
        idle_timeout = session.options.request.activity_idle_timeout
        if idle_timeout:
            rows.append(("Idle timeout in", _clock(idle_timeout - session.idle_seconds())))
        if provider_session is not None and provider_session.session_duration_limit:
            rows.append(
                ("Provider limit in", _clock(provider_session.session_duration_limit - session.session_age_seconds()))
            )
        left = session.seconds_left()
        if left is not None:
            rows.append(("Dashboard cap in", _clock(left)))
    label = "Est. credits so far" if traits is not None and traits.hosted else "Credits (HeyGen-equivalent)"
    rows.append((label, credits_so_far(session.options.request, pricing, age or 0.0)))
    if session.first_frame_ms is not None:
        rows.append(("Time to first frame", f"{session.first_frame_ms:.0f} ms"))
    if session.quality is not None and session.state is SessionState.CONNECTED:
        rows.append(("Connection", session.quality.summary()))
    if playout is not None and session.state is SessionState.CONNECTED:
        rows.append(("Audio to browser", audio_leg_summary(playout)))
    if session.reconnects:
        rows.append(("Reconnects", str(session.reconnects)))
    if session.last_task_to_talk_ms is not None:
        rows.append(("Last task → avatar talks", f"{session.last_task_to_talk_ms:.0f} ms"))
    return rows
