"""One place that resolves configuration: ``st.secrets`` → environment → defaults.

Nothing here imports streamlit; the app passes ``st.secrets`` in as a mapping.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lib.access import parse_emails

Provider = Literal["local", "liveavatar", "heygen"]
PROVIDERS: tuple[str, ...] = ("local", "liveavatar", "heygen")

# Credit preset and price per credit each provider starts with when CREDIT_PRESET / PRICE_PER_CREDIT are not set
# (LiveAvatar Pro: $99 / 1,000 credits; HeyGen Pro: $99 / 100).
PRICING_DEFAULTS: dict[str, tuple[str, float]] = {"liveavatar": ("liveavatar", 0.099)}
HEYGEN_PRICING = ("heygen_current", 0.99)

HEYGEN_BASE_URL = "https://api.heygen.com"
LIVEAVATAR_BASE_URL = "https://api.liveavatar.com"
DEFAULT_DATA_DIR = Path.home() / ".avatar-ops"


class Secret:
    """A credential that never shows itself in ``repr``, ``str``, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("Secret values are not serialisable")


@dataclass(frozen=True)
class Setting:
    """Documentation of one setting: the README's configuration table is generated from these."""

    name: str
    env: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "provider",
        "AVATAR_PROVIDER",
        "liveavatar if its key is set, else local",
        "Which provider the dashboard talks to: `local`, `liveavatar` or `heygen` (shut down 2026-03-31; never "
        "chosen by default).",
    ),
    Setting(
        "liveavatar_api_key",
        "LIVEAVATAR_API_KEY",
        "(none)",
        "LiveAvatar API key (app.liveavatar.com/developers; HeyGen keys do not work). Never shown or logged.",
    ),
    Setting(
        "liveavatar_base_url",
        "LIVEAVATAR_BASE_URL",
        LIVEAVATAR_BASE_URL,
        "LiveAvatar API base URL (the local engine's URL for its offline twin).",
    ),
    Setting("heygen_api_key", "HEYGEN_API_KEY", "(none)", "HeyGen API key (legacy). Never shown or logged."),
    Setting("heygen_base_url", "HEYGEN_BASE_URL", HEYGEN_BASE_URL, "HeyGen API base URL (legacy)."),
    Setting("engine_host", "ENGINE_HOST", "127.0.0.1", "Interface the embedded local engine binds to."),
    Setting("engine_port", "ENGINE_PORT", "0 (a free port)", "Port of the embedded local engine."),
    Setting(
        "engine_url", "ENGINE_URL", "(none)", "Use an already running local engine at this URL instead of starting one."
    ),
    Setting("engine_api_key", "ENGINE_API_KEY", "(random per start)", "Key of the local engine."),
    Setting(
        "engine_session_budget",
        "ENGINE_SESSION_BUDGET",
        "6",
        "Local engine capacity in units (480p = 1, 720p = 2, 1080p = 4).",
    ),
    Setting("engine_max_duration", "ENGINE_MAX_DURATION", "3600", "Local engine hard session duration limit, seconds."),
    Setting("data_dir", "AVATAR_OPS_DATA_DIR", str(DEFAULT_DATA_DIR), "Where the usage log lives."),
    Setting("database_path", "USAGE_DB_PATH", "<data_dir>/usage.db", "SQLite usage log file."),
    Setting(
        "database_url",
        "DATABASE_URL",
        "(none: the SQLite file)",
        "Shared usage log: `postgresql://user:pass@host:port/db` (or `sqlite:///path` for a file). Wins over "
        "USAGE_DB_PATH; the password is never shown or logged.",
    ),
    Setting(
        "credit_preset",
        "CREDIT_PRESET",
        "liveavatar with LiveAvatar, else heygen_current",
        "Credit model: liveavatar, liveavatar_full, liveavatar_lite, heygen_current, heygen_older, heygen_oldest.",
    ),
    Setting(
        "price_per_credit",
        "PRICE_PER_CREDIT",
        "0.099 with LiveAvatar, else 0.99",
        "Money per credit (LiveAvatar Pro: $99 / 1,000 credits; HeyGen Pro: $99 / 100).",
    ),
    Setting("monthly_budget_credits", "MONTHLY_BUDGET_CREDITS", "100", "Monthly credit budget."),
    Setting("idle_timeout", "IDLE_TIMEOUT", "120", "activity_idle_timeout for new sessions, 30–3600 s."),
    Setting(
        "session_max_minutes",
        "SESSION_MAX_MINUTES",
        "30",
        "Dashboard cap on one live session: warns a minute before, then stops it (0 = no cap).",
    ),
    Setting(
        "watcher_timeout",
        "WATCHER_TIMEOUT",
        "45",
        "Seconds without an open Live chat page before its session is stopped.",
    ),
    Setting(
        "llm_base_url",
        "LLM_BASE_URL",
        "(none)",
        "OpenAI-compatible chat endpoint for local `talk` answers (e.g. Ollama).",
    ),
    Setting("llm_model", "LLM_MODEL", "(none)", "Model name for the chat endpoint."),
    Setting("llm_api_key", "LLM_API_KEY", "(none)", "Key for the chat endpoint, if it needs one."),
    Setting(
        "operator_emails",
        "OPERATOR_EMAILS",
        "(none)",
        "With sign-in (`[auth]` in secrets.toml): comma-separated emails or `@domain`s that may start, stop and "
        "spend (force-stop, stop idle/older, budget override, history import, pricing).",
    ),
    Setting(
        "viewer_emails",
        "VIEWER_EMAILS",
        "(none)",
        "With sign-in: comma-separated emails or `@domain`s that may see every page but change nothing. "
        "Anyone else who signs in is refused.",
    ),
)


@dataclass(frozen=True)
class Settings:
    provider: Provider = "local"
    liveavatar_api_key: Secret | None = field(default=None, repr=False)
    liveavatar_base_url: str = LIVEAVATAR_BASE_URL
    heygen_api_key: Secret | None = field(default=None, repr=False)
    heygen_base_url: str = HEYGEN_BASE_URL
    engine_host: str = "127.0.0.1"
    engine_port: int = 0
    engine_url: str | None = None
    engine_api_key: Secret | None = field(default=None, repr=False)
    engine_session_budget: int = 6
    engine_max_duration: int = 3600
    data_dir: Path = DEFAULT_DATA_DIR
    database_path: Path = DEFAULT_DATA_DIR / "usage.db"
    database_url: Secret | None = field(default=None, repr=False)
    """A ``postgresql://`` URL (it holds a password); None keeps the SQLite file ``database_path``."""
    credit_preset: str = "heygen_current"
    price_per_credit: float = 0.99
    monthly_budget_credits: float = 100.0
    idle_timeout: int = 120
    session_max_minutes: float = 30.0
    watcher_timeout: float = 45.0
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: Secret | None = field(default=None, repr=False)
    operator_emails: tuple[str, ...] = ()
    viewer_emails: tuple[str, ...] = ()

    @property
    def usage_target(self) -> str | Path:
        """What ``UsageLog`` opens: the PostgreSQL URL when set, else the SQLite file."""
        return self.database_url.reveal() if self.database_url else self.database_path

    @property
    def usage_location(self) -> str:
        """Where the usage log is, fit to show (a URL without its password)."""
        if not self.database_url:
            return str(self.database_path)
        from sqlalchemy.engine import make_url  # only the usage log's users need SQLAlchemy

        return make_url(self.database_url.reveal()).render_as_string(hide_password=True)

    @property
    def has_heygen_key(self) -> bool:
        return bool(self.heygen_api_key)

    @property
    def has_liveavatar_key(self) -> bool:
        return bool(self.liveavatar_api_key)


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the setting, never a secret."""


def _lookup(name: str, env_name: str, secrets: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    for key in (name, env_name):
        try:
            value = secrets.get(key) if hasattr(secrets, "get") else None
        except Exception:  # st.secrets raises when no secrets file exists
            value = None
        if value not in (None, ""):
            return str(value)
    value = env.get(env_name)
    return value if value not in (None, "") else None


_FIX = "Fix it in the environment or in .streamlit/secrets.toml, or remove it to use the default"


def _number(
    raw: str | None,
    default: float,
    env_name: str,
    cast: type = float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    meaning: str = "",
) -> Any:
    """``raw`` as a finite number within ``[minimum, maximum]``; the message names the setting and the range."""
    if raw is None:
        return cast(default)
    try:
        value = cast(raw)
    except ValueError:
        raise SettingsError(f"{env_name} must be a number, got {raw!r}. {_FIX} ({default:g}).") from None
    if not math.isfinite(value):
        raise SettingsError(f"{env_name} must be a finite number, got {raw!r}. {_FIX} ({default:g}).")
    low_ok = minimum is None or value >= minimum
    high_ok = maximum is None or value <= maximum
    if not (low_ok and high_ok):
        if maximum is None:
            wanted = f"{minimum:g} or more"
        elif minimum is None:
            wanted = f"at most {maximum:g}"
        else:
            wanted = f"between {minimum:g} and {maximum:g}"
        note = f" ({meaning})" if meaning else ""
        raise SettingsError(f"{env_name} must be {wanted}{note}, got {raw}. {_FIX} ({default:g}).")
    return value


def load_settings(secrets: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Resolve and validate settings; ``secrets`` is ``st.secrets`` (or any mapping), ``env`` defaults to
    ``os.environ``. The one place values are checked, for the app, the command line and the engine alike:
    a value that cannot be used raises :class:`SettingsError` naming the setting and what it must be."""
    secrets = secrets if secrets is not None else {}
    env = env if env is not None else os.environ

    def get(name: str) -> str | None:
        spec = next(s for s in SETTINGS if s.name == name)
        return _lookup(name, spec.env, secrets, env)

    key = get("heygen_api_key")
    heygen_key = Secret(key) if key else None
    key = get("liveavatar_api_key")
    liveavatar_key = Secret(key) if key else None
    # HeyGen's API is gone: its key alone no longer selects it (the sidebar points to LiveAvatar instead).
    provider = (get("provider") or ("liveavatar" if liveavatar_key else "local")).lower()
    if provider not in PROVIDERS:
        raise SettingsError(f"AVATAR_PROVIDER must be one of {', '.join(PROVIDERS)}; got {provider!r}.")
    preset, price = PRICING_DEFAULTS.get(provider, HEYGEN_PRICING)

    data_dir = Path(get("data_dir") or DEFAULT_DATA_DIR).expanduser()
    db = get("database_path")
    url = get("database_url")
    database_url: Secret | None = None
    if url is not None:
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme in ("sqlite", "sqlite+pysqlite") and url.startswith(f"{scheme}:///") and len(url) > len(scheme) + 4:
            db = url[len(scheme) + 4 :]  # sqlite:///relative, sqlite:////absolute: the file, as USAGE_DB_PATH
        elif scheme in ("postgresql", "postgres", "postgresql+psycopg"):
            database_url = Secret(url)
        else:
            # The value may hold a password: name the setting, never echo it.
            raise SettingsError(
                "DATABASE_URL must look like postgresql://user:pass@host:port/db or sqlite:///path. "
                f"{_FIX} (the SQLite file)."
            )
    engine_key = get("engine_api_key")
    llm_key = get("llm_api_key")
    idle = _number(get("idle_timeout"), 120, "IDLE_TIMEOUT", int, minimum=30, maximum=3600, meaning="seconds")
    preset = get("credit_preset") or preset
    if get("credit_preset"):
        # Only when set: the presets live with the usage code, which the engine (also a reader of these
        # settings) does not otherwise load.
        from lib.usage.credits import PRESETS

        if preset not in PRESETS:
            raise SettingsError(f"CREDIT_PRESET must be one of {', '.join(PRESETS)}; got {preset!r}.")

    emails: dict[str, tuple[str, ...]] = {}
    for name in ("operator_emails", "viewer_emails"):
        try:
            emails[name] = parse_emails(get(name))
        except ValueError as exc:
            raise SettingsError(f"{name.upper()}: {exc}. Use comma-separated addresses or @domain.") from None

    return Settings(
        provider=provider,  # type: ignore[arg-type]
        liveavatar_api_key=liveavatar_key,
        liveavatar_base_url=(get("liveavatar_base_url") or LIVEAVATAR_BASE_URL).rstrip("/"),
        heygen_api_key=heygen_key,
        heygen_base_url=(get("heygen_base_url") or HEYGEN_BASE_URL).rstrip("/"),
        engine_host=get("engine_host") or "127.0.0.1",
        engine_port=_number(
            get("engine_port"), 0, "ENGINE_PORT", int, minimum=0, maximum=65535, meaning="0 = a free port"
        ),
        engine_url=(get("engine_url") or None),
        engine_api_key=Secret(engine_key) if engine_key else None,
        engine_session_budget=_number(
            get("engine_session_budget"), 6, "ENGINE_SESSION_BUDGET", int, minimum=1, meaning="capacity units"
        ),
        engine_max_duration=_number(
            get("engine_max_duration"), 3600, "ENGINE_MAX_DURATION", int, minimum=1, meaning="seconds"
        ),
        data_dir=data_dir,
        database_path=Path(db).expanduser() if db else data_dir / "usage.db",
        database_url=database_url,
        credit_preset=preset,
        price_per_credit=_number(get("price_per_credit"), price, "PRICE_PER_CREDIT", minimum=0, meaning="money"),
        monthly_budget_credits=_number(
            get("monthly_budget_credits"), 100.0, "MONTHLY_BUDGET_CREDITS", minimum=0, meaning="credits; 0 = no budget"
        ),
        idle_timeout=idle,
        session_max_minutes=_number(
            get("session_max_minutes"), 30.0, "SESSION_MAX_MINUTES", minimum=0, meaning="minutes; 0 = no cap"
        ),
        watcher_timeout=_number(get("watcher_timeout"), 45.0, "WATCHER_TIMEOUT", minimum=1, meaning="seconds"),
        llm_base_url=get("llm_base_url"),
        llm_model=get("llm_model"),
        llm_api_key=Secret(llm_key) if llm_key else None,
        operator_emails=emails["operator_emails"],
        viewer_emails=emails["viewer_emails"],
    )
