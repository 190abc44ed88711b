"""Argument parsing and dispatch: ``main(argv) -> exit code``; errors become one line on stderr."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from lib.accounts import AccountError
from lib.cli import commands
from lib.cli.config import CliError, ExitCode, resolve_settings
from lib.heygen.errors import HeyGenError
from lib.settings import PROVIDERS
from lib.usage.store import UsageLogError

PROG = "python -m lib.cli"

EPILOG = """\
settings:
  Resolved like the dashboard: secrets.toml (the project's .streamlit/secrets.toml over
  ~/.streamlit/secrets.toml) -> environment -> defaults. Keys come only from there, never from argv.
  liveavatar provider (the default when LIVEAVATAR_API_KEY is set): LIVEAVATAR_API_KEY from
  app.liveavatar.com/developers, LIVEAVATAR_BASE_URL (default https://api.liveavatar.com; a local
  engine's URL and key for its offline twin).
  local provider: talks to an engine that is already running; set ENGINE_URL and ENGINE_API_KEY
  (e.g. start one with: ENGINE_API_KEY=<key> python -m lib.engine --port 8765, and point the app at it
  with the same ENGINE_URL so both see the same sessions). heygen provider (shut down 2026-03-31,
  legacy): HEYGEN_API_KEY. USAGE_DB_PATH (or --db) selects the usage log file; DATABASE_URL=postgresql://… a shared one.

exit codes:
  0  success (also: nothing to stop, or a session that had already ended)
  1  at least one session failed to stop (it may still be billing)
  2  usage or configuration error (bad arguments or setting, no engine or key configured, unusable log)
  3  provider error: unreachable, key rejected, unexpected answer
  4  a session id given to `sessions stop` is not active on this provider (unknown, or it runs on
     another engine or account sharing the usage log)
  A session that had already ended ("already stopped") is not a failure.
  If both 1 and 4 apply, 1 is returned.
"""


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date; use YYYY-MM-DD") from None


def _minutes(value: str) -> float:
    try:
        minutes = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of minutes") from None
    if not minutes >= 0:
        raise argparse.ArgumentTypeError("minutes must be zero or more")
    return minutes


def _common(*, connection: bool) -> argparse.ArgumentParser:
    """Options accepted before or after the subcommand; SUPPRESS keeps a later default from erasing an
    earlier value."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--secrets",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="read settings from this secrets.toml instead of the Streamlit locations",
    )
    parent.add_argument(
        "--db",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="usage log file (default: USAGE_DB_PATH, else <data_dir>/usage.db)",
    )
    if connection:
        parent.add_argument(
            "--provider",
            choices=PROVIDERS,
            default=argparse.SUPPRESS,
            help="provider to talk to (default: AVATAR_PROVIDER, else liveavatar if its key is set, else local)",
        )
        parent.add_argument(
            "--engine-url", default=argparse.SUPPRESS, metavar="URL", help="running local engine (default: ENGINE_URL)"
        )
        parent.add_argument(
            "--api-key-env",
            default=argparse.SUPPRESS,
            metavar="NAME",
            help="environment variable holding the engine key (default: ENGINE_API_KEY)",
        )
    return parent


def _usage_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--from",
        dest="date_from",
        type=_date,
        metavar="DATE",
        help="first day, YYYY-MM-DD, inclusive (sessions belong to the day they started)",
    )
    parent.add_argument("--to", dest="date_to", type=_date, metavar="DATE", help="last day, inclusive")
    parent.add_argument(
        "--provider",
        choices=PROVIDERS,
        default=argparse.SUPPRESS,
        help="count only this provider's sessions (default: all)",
    )
    parent.add_argument("--tz", default="UTC", help="time zone of the dates, IANA name (default: %(default)s)")
    parent.add_argument(
        "--estimate-local",
        action="store_true",
        help="price local-engine sessions with the credit model (default: 0 credits)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Avatar Ops for scripts and cron: list and stop sessions, import history, totals, CSV export.",
        epilog=EPILOG,
        formatter_class=formatter,
        parents=[_common(connection=True)],
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="{sessions,usage}")

    sessions = groups.add_parser(
        "sessions", help="active sessions on the provider", epilog=EPILOG, formatter_class=formatter
    )
    s_cmds = sessions.add_subparsers(dest="command", required=True, metavar="{list,stop}")
    connection = _common(connection=True)
    s_list = s_cmds.add_parser(
        "list",
        parents=[connection],
        epilog=EPILOG,
        formatter_class=formatter,
        help="every open session: status, age, idle, avatar, quality, origin, credits",
    )
    s_list.add_argument("--json", action="store_true", help="machine-readable output")
    s_stop = s_cmds.add_parser(
        "stop",
        parents=[connection],
        epilog=EPILOG,
        formatter_class=formatter,
        help="force-stop sessions by id, all idle ones, or all",
    )
    s_stop.add_argument("ids", nargs="*", metavar="ID", help="session ids to stop")
    which = s_stop.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="stop every active session (needs --yes)")
    which.add_argument(
        "--idle-over", type=_minutes, metavar="MINUTES", help="stop sessions idle for longer than this many minutes"
    )
    which.add_argument(
        "--older-than",
        type=_minutes,
        metavar="MINUTES",
        help="stop sessions running for longer than this many minutes (for providers that do not report idle time)",
    )
    s_stop.add_argument("--yes", action="store_true", help="confirm --all")
    s_stop.add_argument("--dry-run", action="store_true", help="show what would be stopped, stop nothing")
    s_stop.add_argument("--json", action="store_true", help="machine-readable output")
    s_stop.set_defaults(leaf_parser=s_stop)

    usage = groups.add_parser(
        "usage", help="totals and export from the usage log", epilog=EPILOG, formatter_class=formatter
    )
    u_cmds = usage.add_subparsers(dest="command", required=True, metavar="{import,totals,export,copy}")
    u_import = u_cmds.add_parser(
        "import",
        parents=[_common(connection=True)],
        epilog=EPILOG,
        formatter_class=formatter,
        help="import the provider's session history (billed credits, mode, end reason) into the usage log",
    )
    u_import.add_argument(
        "--from", dest="date_from", type=_date, metavar="DATE", help="first UTC day the sessions started, inclusive"
    )
    u_import.add_argument("--to", dest="date_to", type=_date, metavar="DATE", help="last UTC day, inclusive")
    u_import.add_argument("--json", action="store_true", help="machine-readable output")
    log_only = _common(connection=False)
    u_totals = u_cmds.add_parser(
        "totals",
        parents=[log_only, _usage_options()],
        epilog=EPILOG,
        formatter_class=formatter,
        help="sessions, minutes, credits and cost for a date range",
    )
    u_totals.add_argument("--json", action="store_true", help="machine-readable output")
    u_export = u_cmds.add_parser(
        "export",
        parents=[log_only, _usage_options()],
        epilog=EPILOG,
        formatter_class=formatter,
        help="the sessions table as CSV",
    )
    u_export.add_argument("-o", "--output", default="-", metavar="FILE", help="write here; - is stdout (default)")
    u_copy = u_cmds.add_parser(
        "copy",
        parents=[log_only],
        epilog=EPILOG,
        formatter_class=formatter,
        help="copy the SQLite usage log (--db or USAGE_DB_PATH) into the PostgreSQL log of DATABASE_URL",
    )
    u_copy.add_argument(
        "--to-env",
        default="DATABASE_URL",
        metavar="NAME",
        help="environment variable holding the target postgresql:// URL (default: DATABASE_URL, also read from "
        "secrets.toml); never put the URL itself on the command line, it holds a password",
    )
    u_copy.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _check(args: argparse.Namespace) -> None:
    """Rules argparse cannot express, reported with the subcommand's own usage line."""
    if args.group != "sessions" or args.command != "stop":
        return
    parser: argparse.ArgumentParser = args.leaf_parser
    chosen = bool(args.ids) + args.all + (args.idle_over is not None) + (args.older_than is not None)
    if chosen != 1:
        parser.error("give session ids, --all, --idle-over MINUTES or --older-than MINUTES (exactly one)")
    if args.all and not (args.yes or args.dry_run):
        parser.error("--all stops every session on the provider: add --yes to confirm, or --dry-run to see the list")


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> ExitCode:
    settings = resolve_settings(
        env,
        secrets_file=getattr(args, "secrets", None),
        provider=getattr(args, "provider", None) if args.group == "sessions" or args.command == "import" else None,
        engine_url=getattr(args, "engine_url", None),
        api_key_env=getattr(args, "api_key_env", None),
        # copy reads the file of --db into DATABASE_URL: there --db must not switch DATABASE_URL off.
        db=getattr(args, "db", None) if args.command != "copy" else None,
    )
    if args.group == "sessions" and args.command == "list":
        return commands.sessions_list(settings, as_json=args.json)
    if args.group == "sessions":
        return commands.sessions_stop(
            settings,
            ids=args.ids,
            stop_all=args.all,
            idle_over=args.idle_over,
            older_than=args.older_than,
            dry_run=args.dry_run,
            as_json=args.json,
        )
    if args.command == "copy":
        source = getattr(args, "db", None) or settings.database_path
        return commands.usage_copy(settings, env, source=source, to_env=args.to_env, as_json=args.json)
    if args.command == "import":
        return commands.usage_import(settings, date_from=args.date_from, date_to=args.date_to, as_json=args.json)
    log_filter = {
        "date_from": args.date_from,
        "date_to": args.date_to,
        "provider": getattr(args, "provider", None),
        "tz": args.tz,
        "estimate_local": args.estimate_local,
    }
    if args.command == "totals":
        return commands.usage_totals(settings, **log_filter, as_json=args.json)
    return commands.usage_export(settings, **log_filter, out=args.output)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run one command; returns the exit code (argparse's own exits included) instead of raising."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check(args)
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    try:
        return int(_run(args, os.environ if env is None else env))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.code)
    except (HeyGenError, AccountError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(ExitCode.PROVIDER)
    except (UsageLogError, sqlite3.Error, SQLAlchemyError) as exc:
        print(f"error: the usage log cannot be used: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
