"""The provider the dashboard talks to: HeyGen, or the embedded local engine (started on demand)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from lib.engine.launcher import EngineProcess, EngineStartError, start_engine
from lib.heygen.client import StreamingClient
from lib.heygen.errors import HeyGenError
from lib.settings import Settings


@dataclass
class Provider:
    name: str  # "local" | "heygen": the value stored in the usage log
    label: str
    client: StreamingClient
    engine: EngineProcess | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return self.client.base_url

    def close(self) -> None:
        self.client.close()
        if self.engine is not None:
            self.engine.stop()


@dataclass(frozen=True)
class Health:
    ok: bool
    message: str
    latency_ms: float | None = None


def heygen_provider(settings: Settings) -> Provider:
    if not settings.heygen_api_key:
        raise HeyGenError(
            None,
            "",
            user_message="No HeyGen API key is configured. Set HEYGEN_API_KEY "
            "or add heygen_api_key to .streamlit/secrets.toml.",
        )
    client = StreamingClient(settings.heygen_base_url, settings.heygen_api_key, provider_label="HeyGen")
    return Provider("heygen", "HeyGen", client)


def local_provider(settings: Settings) -> Provider:
    """Use ``ENGINE_URL`` when given (an engine someone else runs), else start our own child engine."""
    if settings.engine_url:
        client = StreamingClient(settings.engine_url, settings.engine_api_key, provider_label="Local engine")
        return Provider("local", "Local engine", client)
    engine = start_engine(
        settings.engine_host,
        settings.engine_port,
        settings.engine_api_key or None,
        extra_args=[
            "--session-budget",
            str(settings.engine_session_budget),
            "--max-duration",
            str(settings.engine_max_duration),
            "--history-db",
            str(settings.data_dir / "engine-history.db"),
        ],
    )
    client = StreamingClient(engine.url, engine.api_key, provider_label="Local engine")
    return Provider("local", "Local engine", client, engine)


def connect(settings: Settings) -> Provider:
    return heygen_provider(settings) if settings.provider == "heygen" else local_provider(settings)


def check_health(provider: Provider) -> Health:
    """A cheap authenticated call: proves the provider is reachable *and* accepts our key."""
    if provider.engine is not None and not provider.engine.running:
        # Our own child engine died (crash, OOM, killed): bring it back; live pages reconnect by themselves.
        try:
            provider.engine.restart()
        except EngineStartError as exc:
            return Health(False, f"The local engine stopped and could not be restarted: {exc}")
    started = time.perf_counter()
    try:
        provider.client.list()
    except HeyGenError as exc:
        return Health(False, str(exc))
    return Health(True, "Connected", round((time.perf_counter() - started) * 1000, 1))
