"""Run the local engine standalone: ``python -m lib.engine --port 8765 [--api-key KEY]``."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sqlite3
import sys
import threading
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from lib.engine.config import EngineConfig
from lib.engine.history import SessionHistory
from lib.engine.responder import LlmConfig
from lib.settings import Secret, SettingsError, load_settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    settings = load_settings()
    parser = argparse.ArgumentParser(prog="python -m lib.engine", description=__doc__)
    parser.add_argument(
        "--host", default=os.environ.get("ENGINE_HOST", "127.0.0.1"), help="interface to bind (default: loopback only)"
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("ENGINE_PORT") or 8765))
    parser.add_argument(
        "--api-key", default=None, help="API key clients must send (default: $ENGINE_API_KEY, else a random one)"
    )
    parser.add_argument(
        "--session-budget",
        type=int,
        default=settings.engine_session_budget,
        help="capacity units: 480p = 1, 720p = 2, 1080p = 4 (default %(default)s)",
    )
    parser.add_argument(
        "--max-duration",
        type=int,
        default=settings.engine_max_duration,
        help="hard session duration limit in seconds (default %(default)s)",
    )
    parser.add_argument(
        "--min-idle-timeout",
        type=int,
        default=30,
        help="smallest activity_idle_timeout accepted (HeyGen: 30; lower it for tests)",
    )
    parser.add_argument(
        "--remaining-quota", type=float, default=float(10**9), help="seconds reported by /v2/user/remaining_quota"
    )
    parser.add_argument(
        "--liveavatar-credits",
        type=float,
        default=1000.0,
        help="LiveAvatar twin: credits granted (default %(default)s)",
    )
    parser.add_argument(
        "--liveavatar-concurrency",
        type=int,
        default=0,
        help="LiveAvatar twin: running sessions allowed, 0 = unlimited (default %(default)s)",
    )
    parser.add_argument(
        "--liveavatar-idle-timeout",
        type=int,
        default=300,
        help="LiveAvatar twin: seconds without keep-alive or speech before a session ends (default %(default)s)",
    )
    parser.add_argument("--liveavatar-minute-seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--history-db", type=Path, default=settings.data_dir / "engine-history.db")
    parser.add_argument("--no-voices", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--parent-fd",
        type=int,
        default=None,
        help="read end of a pipe held by the app that started this engine: end-of-file stops the engine",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    try:
        args = parse_args(argv)
        load_settings()  # the LLM settings below; a bad value ends here with its message, not a traceback
    except SettingsError as exc:
        sys.exit(f"Configuration problem: {exc}")
    try:
        SessionHistory(args.history_db).close()
    except (OSError, sqlite3.Error) as exc:
        sys.exit(
            f"The engine cannot use its history file {args.history_db}: {exc}. Point --history-db (or "
            "AVATAR_OPS_DATA_DIR) at a writable folder."
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    key = args.api_key or os.environ.get("ENGINE_API_KEY")
    if not key:
        key = secrets.token_urlsafe(24)
        # Printed once so a developer running the engine by hand can use it; never logged.
        print(f"Generated engine API key (X-Api-Key): {key}", file=sys.stderr, flush=True)
    settings = load_settings()
    llm = None
    if settings.llm_base_url and settings.llm_model:
        llm = LlmConfig(settings.llm_base_url, settings.llm_model, settings.llm_api_key)
    config = EngineConfig(
        api_key=Secret(key),
        host=args.host,
        port=args.port,
        session_budget=args.session_budget,
        max_duration=args.max_duration,
        min_idle_timeout=args.min_idle_timeout,
        remaining_quota_seconds=args.remaining_quota,
        history_path=args.history_db,
        load_voices=not args.no_voices,
        liveavatar_credits=args.liveavatar_credits,
        liveavatar_concurrency=args.liveavatar_concurrency,
        liveavatar_idle_timeout=args.liveavatar_idle_timeout,
        liveavatar_minute_seconds=args.liveavatar_minute_seconds,
    )
    from lib.engine.server import create_app
    from lib.engine.sessions import SHUTDOWN_APP_EXITED

    app = create_app(config, llm)
    # uvicorn handles SIGINT/SIGTERM; the app's lifespan then closes every session.
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    )
    if args.parent_fd is not None:
        watch = (args.parent_fd, server, app, SHUTDOWN_APP_EXITED)
        threading.Thread(target=_watch_parent, args=watch, name="parent-watch", daemon=True).start()
    server.run()


PARENT_EXIT_GRACE_S = 20.0
"""After the app died: the longest wait for a graceful stop (sessions closed, history written)."""


def _watch_parent(fd: int, server: uvicorn.Server, app: FastAPI, reason: str) -> None:
    """Block on the app's lifeline; end-of-file means the app is gone (however it died): stop the engine."""
    try:
        while os.read(fd, 64):
            pass
    except OSError:
        pass
    logging.getLogger("lib.engine").warning("the app that started this engine has exited: stopping")
    stopped = threading.Event()
    app.state.sessions_stopped = stopped
    app.state.shutdown_reason = reason
    server.should_exit = True
    # Exit as soon as the sessions are closed and recorded: a normal interpreter exit would first wait for
    # background work (avatar kits still being drawn after start-up), which nobody needs any more. If the
    # graceful stop hangs, nobody is left to stop this engine otherwise: exit anyway.
    finished = stopped.wait(PARENT_EXIT_GRACE_S)
    logging.shutdown()
    os._exit(0 if finished else 1)


if __name__ == "__main__":
    main()
