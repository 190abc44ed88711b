"""Avatar Ops on the command line, for scripts and cron: ``python -m lib.cli``.

Same ``lib/`` code and same settings resolution as the dashboard (secrets.toml → environment →
defaults), so a script sees what the Sessions and Usage pages show:

    python -m lib.cli sessions list [--json]
    python -m lib.cli sessions stop ID [ID ...]
    python -m lib.cli sessions stop --idle-over MINUTES [--dry-run]
    python -m lib.cli sessions stop --older-than MINUTES [--dry-run]
    python -m lib.cli sessions stop --all --yes | --dry-run
    python -m lib.cli usage import [--provider P] [--from DATE] [--to DATE] [--json]
    python -m lib.cli usage totals [--from DATE] [--to DATE] [--provider P] [--json]
    python -m lib.cli usage export [--from DATE] [--to DATE] [--provider P] [-o FILE|-]

``--provider`` is ``liveavatar``, ``local`` or ``heygen`` (legacy). ``--provider local`` talks to an engine that
is already running (``ENGINE_URL`` + ``ENGINE_API_KEY``); it never starts one. Keys come only from
secrets.toml or the environment, never from the command line.

Exit codes (stable, for scripts):
    0  success (also: nothing to stop, a session that had already ended)
    1  at least one session failed to stop (it may still be billing)
    2  usage or configuration error: bad arguments, bad setting, no engine/key configured, unusable log
    3  provider error: unreachable, key rejected, unexpected answer (message on stderr, never the key)
    4  a session id given to ``sessions stop`` is neither active on the provider nor in the usage log
When several apply, the lowest non-zero code of 1 and 4 wins (a failed stop matters more than a typo).
"""

from __future__ import annotations

from lib.cli.config import CliError, ExitCode
from lib.cli.main import build_parser, main

__all__ = ["CliError", "ExitCode", "build_parser", "main"]
