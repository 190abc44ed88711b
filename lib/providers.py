"""The provider the dashboard talks to: LiveAvatar, the embedded local engine (started on demand), or legacy HeyGen.

One :class:`Provider` type for all three; what each can do is its :class:`~lib.capabilities.Capabilities`.
Its ``account`` (:mod:`lib.accounts`) serves the Sessions page, the Usage import and the command line; its
``client`` is the HeyGen-shaped streaming client Live chat drives (for LiveAvatar, ``LiveAvatarStreaming``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from lib.accounts import AccountError, LiveAvatarAccount, ProviderAccount, StreamingAccount
from lib.capabilities import CAPABILITIES, Capabilities, ProviderKind
from lib.engine.launcher import EngineProcess, EngineStartError, start_engine
from lib.engine.responder import LlmConfig
from lib.heygen.client import StreamingClient
from lib.heygen.errors import HeyGenError
from lib.live.liveavatar import LiveAvatarStreaming
from lib.liveavatar.client import LiveAvatarClient
from lib.settings import Settings

NO_LIVEAVATAR_KEY = (
    "No LiveAvatar API key is configured. Create one at app.liveavatar.com/developers, then set "
    "LIVEAVATAR_API_KEY or add LIVEAVATAR_API_KEY to .streamlit/secrets.toml."
)


@dataclass
class Provider:
    capabilities: Capabilities
    account: ProviderAccount
    streaming: StreamingClient | None = field(default=None, repr=False)
    engine: EngineProcess | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The value stored in the usage log's ``provider`` column."""
        return str(self.capabilities.kind)

    @property
    def label(self) -> str:
        return self.capabilities.label

    @property
    def base_url(self) -> str:
        return self.account.base_url

    @property
    def client(self) -> StreamingClient:
        """The HeyGen-shaped streaming client Live chat drives."""
        if self.streaming is None:
            raise HeyGenError(
                None,
                "",
                user_message=f"Live chat on {self.label} is not available yet: use the Sessions and Usage pages, "
                "or set AVATAR_PROVIDER=local for the built-in avatar.",
            )
        return self.streaming

    def close(self) -> None:
        self.account.close()
        if self.engine is not None:
            self.engine.stop()


@dataclass(frozen=True)
class Health:
    ok: bool
    message: str
    latency_ms: float | None = None


def _streaming(kind: ProviderKind, client: StreamingClient, engine: EngineProcess | None = None) -> Provider:
    return Provider(CAPABILITIES[kind], StreamingAccount(client), client, engine)


def heygen_provider(settings: Settings) -> Provider:
    if not settings.heygen_api_key:
        raise HeyGenError(
            None,
            "",
            user_message="No HeyGen API key is configured. Set HEYGEN_API_KEY "
            "or add heygen_api_key to .streamlit/secrets.toml.",
        )
    label = CAPABILITIES[ProviderKind.HEYGEN].label
    return _streaming(
        ProviderKind.HEYGEN, StreamingClient(settings.heygen_base_url, settings.heygen_api_key, provider_label=label)
    )


def liveavatar_provider(settings: Settings) -> Provider:
    """A LiveAvatar account, or the local engine's twin of it when ``LIVEAVATAR_BASE_URL`` points there."""
    if not settings.liveavatar_api_key:
        raise AccountError(NO_LIVEAVATAR_KEY)
    client = LiveAvatarClient(settings.liveavatar_base_url, settings.liveavatar_api_key)
    llm = (
        LlmConfig(settings.llm_base_url, settings.llm_model, settings.llm_api_key)
        if settings.llm_base_url and settings.llm_model
        else None
    )
    streaming = LiveAvatarStreaming(client, llm=llm)  # Live chat; LITE answers with the configured LLM
    return Provider(CAPABILITIES[ProviderKind.LIVEAVATAR], LiveAvatarAccount(client), streaming)


def local_provider(settings: Settings) -> Provider:
    """Use ``ENGINE_URL`` when given (an engine someone else runs), else start our own child engine."""
    label = CAPABILITIES[ProviderKind.LOCAL].label
    if settings.engine_url:
        return _streaming(
            ProviderKind.LOCAL, StreamingClient(settings.engine_url, settings.engine_api_key, provider_label=label)
        )
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
    return _streaming(ProviderKind.LOCAL, StreamingClient(engine.url, engine.api_key, provider_label=label), engine)


CONNECTORS = {
    ProviderKind.LOCAL: local_provider,
    ProviderKind.LIVEAVATAR: liveavatar_provider,
    ProviderKind.HEYGEN: heygen_provider,
}


def connect(settings: Settings) -> Provider:
    return CONNECTORS[ProviderKind(settings.provider)](settings)


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
        # The balance is one small call; the active list may be several pages on a busy account.
        if provider.capabilities.credits_balance:
            provider.account.credits_left()
        else:
            provider.account.active_sessions()
    except AccountError as exc:
        return Health(False, str(exc))
    return Health(True, "Connected", round((time.perf_counter() - started) * 1000, 1))
