"""Settings, provider and usage log for the command line, resolved exactly like the app resolves them.

Order: secrets file → environment → defaults (``lib.settings.load_settings``); command-line switches
override the result. The secrets files are the ones Streamlit reads for ``st.secrets``: the user's
``~/.streamlit/secrets.toml``, then the project's ``.streamlit/secrets.toml`` (which wins).
"""

from __future__ import annotations

import sqlite3
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from enum import IntEnum
from pathlib import Path
from typing import Any

from lib.accounts import AccountError
from lib.capabilities import ProviderKind
from lib.heygen.errors import HeyGenError
from lib.providers import Provider, heygen_provider, liveavatar_provider, local_provider
from lib.settings import Secret, Settings, SettingsError, load_settings
from lib.usage.credits import Pricing
from lib.usage.store import UsageLog, UsageLogError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ExitCode(IntEnum):
    OK = 0
    STOP_FAILED = 1
    USAGE = 2
    PROVIDER = 3
    NOT_FOUND = 4


class CliError(Exception):
    """Ends the command with ``code``; ``str(exc)`` is the one line printed on stderr (never a key)."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


NO_ENGINE = (
    "No running local engine to talk to: set ENGINE_URL and ENGINE_API_KEY (or pass --engine-url). "
    "The dashboard's embedded engine listens on a random port with a random key, so scripts cannot reach it; "
    "run one yourself (ENGINE_API_KEY=<key> python -m lib.engine --port 8765) and point both the app and this "
    "tool at it with ENGINE_URL=http://127.0.0.1:8765 — or use --provider liveavatar."
)


def default_secrets_files(home: Path | None = None) -> list[Path]:
    home = home if home is not None else Path.home()
    return [home / ".streamlit" / "secrets.toml", PROJECT_ROOT / ".streamlit" / "secrets.toml"]


def read_secrets(explicit: Path | None, env: Mapping[str, str]) -> dict[str, Any]:
    """Top-level keys of the secrets files, later files overriding earlier ones (as Streamlit merges)."""
    if explicit is not None:
        if not explicit.is_file():
            raise CliError(f"Secrets file {explicit} does not exist.", ExitCode.USAGE)
        files = [explicit]
    else:
        home = env.get("HOME")
        files = [p for p in default_secrets_files(Path(home) if home else None) if p.is_file()]
    merged: dict[str, Any] = {}
    for path in files:
        try:
            merged.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            # tomllib's message names a line and column, never a value.
            raise CliError(f"Cannot read secrets file {path}: {exc}. Fix or remove it.", ExitCode.USAGE) from None
    return merged


def resolve_settings(
    env: Mapping[str, str],
    *,
    secrets_file: Path | None = None,
    provider: str | None = None,
    engine_url: str | None = None,
    api_key_env: str | None = None,
    db: Path | None = None,
) -> Settings:
    secrets = read_secrets(secrets_file, env)
    if provider:
        # As if AVATAR_PROVIDER said so: the defaults that follow the provider (credit preset, price) follow too.
        secrets = {k: v for k, v in secrets.items() if k != "provider"} | {"AVATAR_PROVIDER": provider}
    try:
        settings = load_settings(secrets, env)
    except SettingsError as exc:
        raise CliError(f"Configuration problem: {exc}", ExitCode.USAGE) from None
    changes: dict[str, Any] = {}
    if engine_url:
        changes["engine_url"] = engine_url
    if api_key_env:
        key = env.get(api_key_env)
        if not key:
            raise CliError(
                f"--api-key-env names {api_key_env}, but that environment variable is not set.", ExitCode.USAGE
            )
        changes["engine_api_key"] = Secret(key)
    if db is not None:
        changes["database_path"] = db.expanduser()
        changes["database_url"] = None  # --db names a file: it wins over DATABASE_URL
    return replace(settings, **changes) if changes else settings


def connect(settings: Settings) -> Provider:
    """A client for the configured provider. For ``local`` this is an engine someone already runs:
    starting a private engine here would show none of the sessions anyone else opened."""
    kind = ProviderKind(settings.provider)
    if kind is ProviderKind.LIVEAVATAR:
        if not settings.has_liveavatar_key:
            raise CliError(
                "No LiveAvatar API key is configured: create one at app.liveavatar.com/developers, then set "
                "LIVEAVATAR_API_KEY or add LIVEAVATAR_API_KEY to .streamlit/secrets.toml (or use --provider local).",
                ExitCode.USAGE,
            )
        try:
            return liveavatar_provider(settings)
        except ValueError:
            raise CliError(
                f"LIVEAVATAR_BASE_URL {settings.liveavatar_base_url!r} is not an http:// or https:// URL with a "
                "host name.",
                ExitCode.USAGE,
            ) from None
    if kind is ProviderKind.HEYGEN:
        if not settings.has_heygen_key:
            raise CliError(
                "No HeyGen API key is configured: set HEYGEN_API_KEY or add HEYGEN_API_KEY to "
                ".streamlit/secrets.toml (or use --provider local). HeyGen's Streaming API shut down on "
                "2026-03-31: use --provider liveavatar for LiveAvatar.",
                ExitCode.USAGE,
            )
        return heygen_provider(settings)
    if not settings.engine_url:
        raise CliError(NO_ENGINE, ExitCode.USAGE)
    if not settings.engine_api_key:
        raise CliError(
            f"ENGINE_URL is {settings.engine_url} but no key is set: export ENGINE_API_KEY with that "
            "engine's key (or name another variable with --api-key-env).",
            ExitCode.USAGE,
        )
    try:
        return local_provider(settings)
    except ValueError:
        raise CliError(
            f"ENGINE_URL {settings.engine_url!r} is not an http:// or https:// URL with a host name.", ExitCode.USAGE
        ) from None


def provider_error(exc: HeyGenError | AccountError | str) -> CliError:
    return CliError(str(exc), ExitCode.PROVIDER)


def open_log(settings: Settings) -> UsageLog:
    try:
        return UsageLog(settings.usage_target)
    except UsageLogError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None  # names the file (or password-free URL) and what to do
    except (sqlite3.Error, OSError) as exc:
        raise CliError(
            f"Cannot open the usage log {settings.usage_location}: {exc}. Check USAGE_DB_PATH or DATABASE_URL.",
            ExitCode.USAGE,
        ) from None


def pricing(log: UsageLog, settings: Settings) -> Pricing:
    """What the Usage page saved (preset, price, budget), else the settings' defaults — as the app does."""
    try:
        return log.load_pricing(Pricing.from_settings(settings))
    except ValueError as exc:
        raise CliError(f"Configuration problem: {exc}", ExitCode.USAGE) from None
