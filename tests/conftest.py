from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from lib.engine.launcher import EngineProcess
from lib.heygen.client import StreamingClient
from lib.heygen.errors import HeyGenError
from tests.browser import AppServer, chromium_missing, launch_chromium, run_app, running_engine

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


# -- browser test modules: one app and one Chromium per module -------------------------------------


@pytest.fixture(scope="module")
def app_engine(engine: EngineProcess) -> EngineProcess:
    """The engine a browser test module's app talks to; a module that kills its engine overrides this."""
    return engine


@pytest.fixture(scope="module")
def app(app_engine: EngineProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """`streamlit run app.py` on a free port for one module (the module is skipped without Chromium)."""
    if reason := chromium_missing():
        pytest.skip(reason)
    with run_app(app_engine, tmp_path_factory.mktemp("app")) as server:
        yield server


@pytest.fixture(scope="module")
def browser(app: object) -> Iterator[Browser]:
    with launch_chromium() as chromium:
        yield chromium
