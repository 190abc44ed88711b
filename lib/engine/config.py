"""Engine configuration, resolved once at start-up from the command line and environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lib.settings import DEFAULT_DATA_DIR, Secret

# Resolutions follow the seed's table (the user's specification), not HeyGen's docs.
QUALITIES: dict[str, tuple[int, int]] = {"low": (854, 480), "medium": (1280, 720), "high": (1920, 1080)}
# Capacity units per session: roughly proportional to encode cost per frame.
QUALITY_UNITS: dict[str, int] = {"low": 1, "medium": 2, "high": 4}
TARGET_BITRATE: dict[str, int] = {"low": 500_000, "medium": 1_000_000, "high": 2_000_000}


@dataclass(frozen=True)
class EngineConfig:
    api_key: Secret = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8765
    session_budget: int = 6
    max_duration: int = 3600
    min_idle_timeout: int = 30
    remaining_quota_seconds: float = 10**9
    history_path: Path = DEFAULT_DATA_DIR / "engine-history.db"
    fps: int = 25
    load_voices: bool = True
    prebuild_qualities: tuple[str, ...] = ("low",)
    background_qualities: tuple[str, ...] = ("medium",)
    # LiveAvatar twin (lib/engine/liveavatar_state.py): credits granted, running sessions allowed (0 = any), idle s.
    liveavatar_credits: float = 1000.0
    liveavatar_concurrency: int = 0
    liveavatar_idle_timeout: int = 300
    liveavatar_minute_seconds: float = 60.0  # length of a billed minute: only tests shorten it

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"
