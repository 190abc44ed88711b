from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from lib.engine.launcher import EngineProcess
from lib.heygen.client import StreamingClient
from lib.heygen.errors import HeyGenError
from tests.support.browser import running_engine
from tests.support.postgres import PostgresServer, running_postgres

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """One real local engine for the whole run."""
    with running_engine(tmp_path_factory) as proc:
        yield proc


@pytest.fixture
def client(engine: EngineProcess) -> Iterator[StreamingClient]:
    with StreamingClient(engine.url, engine.api_key, backoff=0) as c:
        yield c
    # Leave the engine as we found it: later tests count sessions.
    with StreamingClient(engine.url, engine.api_key, backoff=0) as c:
        for s in c.list():
            with contextlib.suppress(HeyGenError):  # it may close by itself meanwhile
                c.stop(s.session_id)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster for the whole run (started only when a test asks for it)."""
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def usage_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a usage log lives, once per backend: a SQLite file, or a fresh database on the test cluster."""
    if request.param == "sqlite":
        return str(tmp_path / "usage.db")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()
