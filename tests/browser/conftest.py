"""Browser test modules: one app and one Chromium per module, against the session's real engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from lib.engine.launcher import EngineProcess
from tests.support.browser import AppServer, chromium_missing, launch_chromium, run_app


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
