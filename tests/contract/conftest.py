"""The LiveAvatar twin the Live-session contract tests share: one engine per module, sessions stopped after each test.

Modules that need other engine options (a budget, no voices, a short idle timeout) define their own ``twin``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lib.engine.launcher import EngineProcess
from lib.liveavatar import LiveAvatarClient, SessionListType
from tests.support.liveavatar import la_client, start_twin


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    proc = start_twin(tmp_path_factory.mktemp("la-twin") / "history.db")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def la(twin: EngineProcess) -> Iterator[LiveAvatarClient]:
    with la_client(twin) as client:
        yield client
        for entry in client.list_sessions(SessionListType.ACTIVE):
            client.stop_session(entry.id)
