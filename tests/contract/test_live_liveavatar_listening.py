"""The listening pose while the user speaks, on the engine's LiveAvatar twin over real sockets: Live chat's
controller on a real ``LiveSession``, the microphone listener's speech start/end callbacks, and the twin's engine
session whose ``listening`` flag the pose sets (FULL: the engine's task API with the ``local`` token; LITE: the
``ws_url`` socket's ``agent.start_listening``/``stop_listening``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from lib.engine.launcher import EngineProcess
from lib.engine.tts import VoiceBank
from lib.guards import Admission
from lib.live import liveavatar as live_la
from lib.live.controller import ChatSetup, ComponentState, LiveChat, Services
from lib.live.liveavatar import LiveAvatarChoice, LiveAvatarStreaming
from lib.liveavatar import LiveAvatarClient, SessionListType, SessionMode, VideoQuality
from lib.liveavatar.models import SANDBOX_AVATAR_ID
from lib.usage.store import EndReason, UsageLog

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def espeak_voice(monkeypatch: pytest.MonkeyPatch) -> None:
    bank = VoiceBank(load_piper=False)  # LITE's dashboard-side voice; never asked to speak here
    monkeypatch.setattr(live_la, "shared_voice_bank", lambda: bank)


def engine_sessions(twin: EngineProcess) -> list[dict[str, Any]]:
    """The twin's engine sessions as the engine itself describes them (``listening`` included)."""
    response = requests.get(f"{twin.url}/v1/streaming.list", headers={"X-Api-Key": twin.api_key.reveal()}, timeout=5)
    response.raise_for_status()
    return list(response.json()["data"]["sessions"])


def listening(twin: EngineProcess) -> bool | None:
    sessions = engine_sessions(twin)
    return sessions[0]["listening"] if len(sessions) == 1 else None


def wait_until(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("mode", [SessionMode.FULL, SessionMode.LITE])
def test_the_avatar_listens_while_the_user_speaks(
    twin: EngineProcess, la: LiveAvatarClient, tmp_path: Path, mode: SessionMode
) -> None:
    choice = LiveAvatarChoice(SANDBOX_AVATAR_ID, mode=mode, sandbox=True, quality=VideoQuality.LOW)
    usage = UsageLog(tmp_path / "usage.db")
    services = Services("liveavatar", LiveAvatarStreaming(la), usage, 300, 45.0, lambda name, override: Admission(True))
    chat = LiveChat(lambda: services)
    chat.component(
        ComponentState(playing=True, signalling=False),
        ChatSetup(None, None, "low", "VP8", "talk", "", liveavatar=choice),
    )
    session = chat.session
    assert session is not None
    try:
        assert session.wait_connected(30), session.error
        assert listening(twin) is False
        chat._on_speech_start()  # the microphone listener's callbacks (its VAD thread)
        assert wait_until(lambda: listening(twin) is True), engine_sessions(twin)
        time.sleep(0.3)
        assert listening(twin) is True  # held while the user speaks
        chat._on_speech_end()
        assert wait_until(lambda: listening(twin) is False), engine_sessions(twin)
    finally:
        chat.close()
        usage.close()
    assert session.end_reason is EndReason.RELEASED
    assert not la.list_sessions(SessionListType.ACTIVE)
