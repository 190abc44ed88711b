"""LiveAvatar request models validate on construction and produce the contract's §2.2 bodies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from lib.liveavatar import (
    SANDBOX_AVATAR_ID,
    FullSessionConfig,
    Interactivity,
    LiteSessionConfig,
    SessionEndReason,
    SessionEntry,
    SessionMode,
    SessionSource,
    ValidationFailed,
    VideoEncoding,
    VideoQuality,
    credits_per_minute,
)
from lib.liveavatar.models import context_body, format_time, parse_time, required_variables

AVATAR = "3f2e1d0c-9b8a-4765-8432-10fedcba9876"
VOICE = "11111111-2222-4333-8444-555555555555"
CONTEXT = "66666666-7777-4888-9999-aaaaaaaaaaaa"


def test_full_config_body_with_persona_video_and_variables():
    config = FullSessionConfig(
        avatar_id=AVATAR,
        video_quality="medium",
        video_encoding="vp8",
        max_session_duration=600,
        voice_id=VOICE,
        context_id=CONTEXT,
        language="de",
        interactivity_type="push_to_talk",
        dynamic_variables={"name": "Ada"},
    )
    assert config.video_quality is VideoQuality.MEDIUM and config.video_encoding is VideoEncoding.VP8
    assert config.interactivity_type is Interactivity.PUSH_TO_TALK
    assert config.to_json() == {
        "mode": "FULL",
        "avatar_id": AVATAR,
        "is_sandbox": False,
        "video_settings": {"quality": "medium", "encoding": "VP8"},
        "max_session_duration": 600,
        "avatar_persona": {"language": "de", "voice_id": VOICE, "context_id": CONTEXT},
        "interactivity_type": "PUSH_TO_TALK",
        "dynamic_variables": {"name": "Ada"},
    }


def test_a_voice_agent_replaces_the_persona_and_excludes_it():
    body = FullSessionConfig(avatar_id=AVATAR, voice_agent_id=VOICE).to_json()
    assert body["voice_agent"] == {"id": VOICE, "language": "en"} and "avatar_persona" not in body
    with pytest.raises(ValidationFailed, match="exactly one of avatar_persona or voice_agent"):
        FullSessionConfig(avatar_id=AVATAR, voice_agent_id=VOICE, context_id=CONTEXT)


def test_lite_config_body_passes_its_transport_through():
    livekit = {"livekit_url": "wss://me", "livekit_room": "r", "livekit_client_token": "t"}
    body = LiteSessionConfig(avatar_id=AVATAR, livekit_config=livekit, video_quality="low").to_json()
    assert body == {
        "mode": "LITE",
        "avatar_id": AVATAR,
        "is_sandbox": False,
        "video_settings": {"quality": "low"},
        "livekit_config": livekit,
    }
    with pytest.raises(ValidationFailed, match=r"livekit_config\.livekit_room"):
        LiteSessionConfig(avatar_id=AVATAR, livekit_config={"livekit_url": "wss://me"})
    with pytest.raises(ValidationFailed, match="not a LITE connector"):
        LiteSessionConfig(avatar_id=AVATAR, connectors={"zoom_config": {}})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"avatar_id": "wayne"}, "avatar_id"),
        ({"avatar_id": AVATAR, "voice_id": "x"}, "voice_id"),
        ({"avatar_id": AVATAR, "video_quality": "ultra"}, "video_settings.quality"),
        ({"avatar_id": AVATAR, "max_session_duration": 0}, "max_session_duration"),
        ({"avatar_id": AVATAR, "is_sandbox": True}, "avatar_id"),
        ({"avatar_id": SANDBOX_AVATAR_ID, "is_sandbox": True, "max_session_duration": 61}, "max_session_duration"),
        ({"avatar_id": AVATAR, "dynamic_variables": {f"k{i}": "v" for i in range(51)}}, "dynamic_variables"),
        ({"avatar_id": AVATAR, "dynamic_variables": {"k": "v" * 1001}}, "dynamic_variables"),
    ],
)
def test_invalid_configs_name_the_field(kwargs, field):
    with pytest.raises(ValidationFailed) as info:
        FullSessionConfig(**kwargs)
    assert info.value.field == field and field in str(info.value) and info.value.status is None


def test_a_sandbox_session_with_wayne_for_a_minute_is_valid():
    body = LiteSessionConfig(avatar_id=SANDBOX_AVATAR_ID, is_sandbox=True, max_session_duration=60).to_json()
    assert body["is_sandbox"] is True and body["max_session_duration"] == 60


def test_times_are_read_as_utc_and_written_with_z():
    assert parse_time("2026-11-02T10:00:00Z") == datetime(2026, 11, 2, 10, tzinfo=UTC)
    assert parse_time("2026-11-02T12:00:00+02:00") == datetime(2026, 11, 2, 10, tzinfo=UTC)
    assert parse_time(1_793_613_600) == parse_time(1_793_613_600_000)
    assert parse_time("yesterday") is None and parse_time(None) is None
    local = datetime(2026, 11, 2, 12, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(local) == "2026-11-02T10:00:00Z"


def test_session_entry_round_trips_through_the_wire_shape():
    data = {
        "id": "a",
        "created_at": "2026-11-02T10:00:00Z",
        "updated_at": "2026-11-02T10:01:30Z",
        "duration": 90,
        "source": "embed",
        "mode": "LITE",
        "is_sandbox": False,
        "credits_consumed": 1.5,
        "end_at": "2026-11-02T10:01:30Z",
        "end_reason": "NO_CREDITS",
    }
    entry = SessionEntry.from_data(data)
    assert entry.source is SessionSource.EMBED and entry.end_reason is SessionEndReason.NO_CREDITS
    assert not entry.is_active and entry.credits_per_minute == 1
    assert SessionEntry.from_data(entry.to_json()) == entry
    assert entry.to_json() == {**data, "source": "EMBED"}


def test_an_entry_without_id_or_with_a_foreign_mode_is_rejected():
    with pytest.raises(KeyError):
        SessionEntry.from_data({"created_at": "2026-11-02T10:00:00Z", "source": "API", "mode": "FULL"})
    with pytest.raises(ValueError):
        SessionEntry.from_data({"id": "a", "created_at": "2026-11-02T10:00:00Z", "source": "API", "mode": "MEGA"})


def test_burn_rates_follow_the_price_list():
    assert credits_per_minute(SessionMode.FULL) == 2
    assert credits_per_minute(SessionMode.LITE) == 1
    assert credits_per_minute(SessionMode.FULL, is_sandbox=True) == 0


def test_context_bodies_require_name_prompt_and_opening_text():
    assert context_body("n", "p", "o", [{"url": "https://x", "faq": "q"}]) == {
        "name": "n",
        "prompt": "p",
        "opening_text": "o",
        "links": [{"url": "https://x", "faq": "q"}],
    }
    with pytest.raises(ValidationFailed, match="opening_text"):
        context_body("n", "p", " ", [])
    assert required_variables("Hi ${name}, ${name}", "from ${city}") == ("name", "city")
