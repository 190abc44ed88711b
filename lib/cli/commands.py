"""The five operations: list and stop sessions on the provider, import its history into the usage log, usage
totals and CSV export from the log.

Each command prints its result on stdout and returns an ``ExitCode``; problems are raised as ``CliError``.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from lib import ops, usage_admin
from lib.access import LOCAL_OPERATOR, Action
from lib.accounts import AccountError
from lib.cli import output
from lib.cli.config import CliError, ExitCode, connect, open_log, pricing, provider_error
from lib.providers import Provider
from lib.settings import Settings, load_settings
from lib.usage.copy import copy_log
from lib.usage.credits import Pricing
from lib.usage.queries import LOCAL_PROVIDERS, Kpis, UsageFilter, kpis, sessions_csv
from lib.usage.store import UsageLog, UsageLogError

NOT_FOUND_MESSAGE = "Neither active on the provider nor in the usage log: check the id."


def _iso(unix: float | None) -> str | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC).isoformat()


def _snapshot(provider: Provider, log: UsageLog, price: Pricing) -> ops.Snapshot:
    snapshot = ops.take_snapshot(provider.account, log, provider.capabilities, price)
    if not snapshot.ok:
        raise provider_error(snapshot.error or f"{provider.label} did not answer.")
    if snapshot.lost:
        print(
            f"note: {len(snapshot.lost)} session(s) open in the usage log are gone from {provider.label}; "
            "closed as lost at their last heartbeat: " + ", ".join(r.session_id for r in snapshot.lost),
            file=sys.stderr,
        )
    if snapshot.elsewhere:
        print(
            f"note: {len(snapshot.elsewhere)} session(s) open in the usage log run on another engine or "
            "account that is still up; they are not listed here.",
            file=sys.stderr,
        )
    return snapshot


def _session_json(s: ops.LiveSession) -> dict[str, Any]:
    return {
        **asdict(s),
        "created_at": _iso(s.created_at),
        "created": _iso(s.created_at),
        "credits_consumed": s.credits if s.billed else None,
        "duration_s": s.duration_s if s.duration_s is not None else s.age_s,
        "is_orphan": s.is_orphan,
    }


# -- sessions list ---------------------------------------------------------------------------------


def sessions_list(settings: Settings, *, as_json: bool) -> ExitCode:
    provider = connect(settings)
    try:
        with open_log(settings) as log:
            price = pricing(log, settings)
            snapshot = _snapshot(provider, log, price)
    finally:
        provider.close()
    if as_json:
        print(
            output.to_json(
                {
                    "provider": provider.name,
                    "base_url": provider.base_url,
                    "fetched_at": _iso(snapshot.fetched_at),
                    "credit_preset": price.model.key,
                    "price_per_credit": price.price_per_credit,
                    "sessions": [_session_json(s) for s in snapshot.sessions],
                    "total_credits": snapshot.total_credits,
                    "total_cost": snapshot.total_cost,
                    "closed_as_lost": [r.session_id for r in snapshot.lost],
                    "open_elsewhere": [r.session_id for r in snapshot.elsewhere],
                }
            )
        )
        return ExitCode.OK
    if not snapshot.sessions:
        print(f"No active sessions on {provider.label} ({provider.base_url}).")
        return ExitCode.OK
    if provider.capabilities.credit_rates:  # LiveAvatar: mode, source, sandbox, billed credits and burn rate
        headers = ("SESSION", "MODE", "SOURCE", "SANDBOX", "AGE", "ORIGIN", "CREDITS", "CR/MIN", "COST")
        rows = [
            (
                s.session_id,
                output.text(s.mode),
                output.text(s.source),
                "yes" if s.is_sandbox else "no",
                output.duration(s.age_s),
                s.origin + (" (closed in log!)" if s.closed_in_log else ""),
                output.credits(s.credits),
                f"{s.credits_per_minute:g}",
                output.money(s.cost),
            )
            for s in snapshot.sessions
        ]
    else:
        headers = ("SESSION", "STATUS", "AGE", "IDLE", "AVATAR", "QUALITY", "ORIGIN", "CREDITS", "COST")
        rows = [
            (
                s.session_id,
                output.text(s.status),
                output.duration(s.age_s),
                output.duration(s.idle_s),
                output.text(s.avatar_id),
                output.text(s.quality),
                s.origin + (" (closed in log!)" if s.closed_in_log else ""),
                output.credits(s.credits),
                output.money(s.cost),
            )
            for s in snapshot.sessions
        ]
    align: tuple[output.Align, ...] = ("<", "<", "<", "<", ">", "<", ">", ">", ">")
    if not provider.capabilities.credit_rates:
        align = ("<", "<", ">", ">", "<", "<", "<", ">", ">")
    print(output.table(headers, rows, align))
    basis = "billed" if all(s.billed for s in snapshot.sessions) else f"est. at {price.model.label}"
    print(
        f"\n{len(rows)} active session(s) on {provider.label}: {output.credits(snapshot.total_credits)} "
        f"credits ({output.money(snapshot.total_cost)}) so far, {basis}; "
        f"{output.credits(ops.credits_per_minute(snapshot.sessions))} credits per minute now."
    )
    return ExitCode.OK


# -- sessions stop ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    session_id: str
    outcome: str  # stopped | already_gone | failed | not_found | elsewhere | would_stop
    message: str


def _pick_by_id(snapshot: ops.Snapshot, log: UsageLog, ids: list[str]) -> tuple[list[ops.LiveSession], list[Outcome]]:
    """Listed ids become targets. An unlisted id needs no call: the snapshot just reconciled it in the log."""
    listed = {s.session_id: s for s in snapshot.sessions}
    elsewhere = {row.session_id: row for row in snapshot.elsewhere}
    targets, settled = [], []
    for sid in dict.fromkeys(ids):
        if sid in listed:
            targets.append(listed[sid])
        elif sid in elsewhere:
            where = (elsewhere[sid].endpoint or "").split("#", 1)[0]
            settled.append(
                Outcome(
                    sid,
                    "elsewhere",
                    f"Runs on another engine or account ({where}); not stopped. "
                    "Point --engine-url (or the HeyGen key) at it to stop it.",
                )
            )
        elif log.get_session(sid) is not None:
            settled.append(Outcome(sid, "already_gone", "Not active on the provider; the usage log has it closed."))
        else:
            settled.append(Outcome(sid, "not_found", NOT_FOUND_MESSAGE))
    return targets, settled


def sessions_stop(
    settings: Settings,
    *,
    ids: list[str],
    stop_all: bool,
    idle_over: float | None,
    dry_run: bool,
    as_json: bool,
    older_than: float | None = None,
) -> ExitCode:
    provider = connect(settings)
    try:
        with open_log(settings) as log:
            snapshot = _snapshot(provider, log, pricing(log, settings))
            settled: list[Outcome] = []
            action = Action.FORCE_STOP
            if stop_all:
                targets = list(snapshot.sessions)
            elif idle_over is not None:
                targets, unknown = ops.idle_sessions(snapshot.sessions, idle_over)
                action = Action.STOP_IDLE
                if unknown:
                    print(
                        f"note: {unknown} session(s) do not report idle time ({provider.label} does not say); "
                        "not stopped.",
                        file=sys.stderr,
                    )
            elif older_than is not None:
                targets = ops.older_sessions(snapshot.sessions, older_than)
                action = Action.STOP_OLDER
            else:
                targets, settled = _pick_by_id(snapshot, log, ids)
            if dry_run:
                done = [
                    Outcome(
                        t.session_id, "would_stop", f"Idle {output.duration(t.idle_s)}, age {output.duration(t.age_s)}."
                    )
                    for t in targets
                ]
            else:
                done = [
                    Outcome(r.session_id, r.outcome, r.message)
                    for r in ops.force_stop(
                        provider.account, log, provider.name, targets, identity=LOCAL_OPERATOR, action=action
                    )
                ]
    finally:
        provider.close()
    results = done + settled
    failed = [r for r in results if r.outcome == "failed"]
    missing = [r for r in results if r.outcome in ("not_found", "elsewhere")]
    if as_json:
        print(output.to_json({"provider": provider.name, "dry_run": dry_run, "results": [asdict(r) for r in results]}))
    elif not results:
        print("No sessions to stop.")
    else:
        rows = [(r.session_id, r.outcome.replace("_", " "), r.message) for r in results]
        print(output.table(("SESSION", "OUTCOME", "DETAIL"), rows))
    if failed:
        print(
            f"error: {len(failed)} of {len(results)} session(s) failed to stop and may still be billing; "
            "run `sessions list` and retry.",
            file=sys.stderr,
        )
        return ExitCode.STOP_FAILED
    if missing:
        print(
            f"error: {len(missing)} session id(s) not found on {provider.label}: "
            f"{', '.join(r.session_id for r in missing)}.",
            file=sys.stderr,
        )
        return ExitCode.NOT_FOUND
    return ExitCode.OK


# -- usage -----------------------------------------------------------------------------------------


def _filter(date_from: date | None, date_to: date | None, provider: str | None, tz: str) -> UsageFilter:
    if date_from and date_to and date_from > date_to:
        raise CliError(f"--from {date_from} is after --to {date_to}.", ExitCode.USAGE)
    try:
        return UsageFilter(date_from, date_to, providers=(provider,) if provider else None, tz=tz)
    except (ValueError, KeyError):
        raise CliError(
            f"Unknown time zone {tz!r}: use an IANA name such as UTC or Europe/Berlin.", ExitCode.USAGE
        ) from None


JSON_DECIMALS = 6
"""Figures are sums of floats: the last bits depend on the order the database adds them in (SQLite and
PostgreSQL differ), so the JSON gives them to a millionth, identical on both backends."""


def _kpis_json(k: Kpis) -> dict[str, Any]:
    return {key: round(v, JSON_DECIMALS) if isinstance(v, float) else v for key, v in asdict(k).items()}


def usage_totals(
    settings: Settings,
    *,
    date_from: date | None,
    date_to: date | None,
    provider: str | None,
    tz: str,
    estimate_local: bool,
    as_json: bool,
) -> ExitCode:
    flt = _filter(date_from, date_to, provider, tz)
    with open_log(settings) as log:
        price = pricing(log, settings)
        report = kpis(log, flt, price, include_local_estimate=estimate_local)
    k = report.current
    if as_json:
        print(
            output.to_json(
                {
                    "from": flt.date_from,
                    "to": flt.date_to,
                    "tz": flt.tz,
                    "provider": provider,
                    "credit_preset": price.model.key,
                    "price_per_credit": price.price_per_credit,
                    "include_local_estimate": estimate_local,
                    **_kpis_json(k),
                    "previous": None if report.previous is None else _kpis_json(report.previous),
                }
            )
        )
        return ExitCode.OK
    period = f"{flt.date_from or 'start'} … {flt.date_to or 'now'} ({flt.tz})"
    lines = [
        ("Period", period),
        ("Provider", provider or "all"),
        ("Sessions", f"{k.sessions} ({k.open_sessions} open)"),
        ("Minutes", f"{k.total_minutes:,.1f}"),
        ("Credits", f"{output.credits(k.credits)} (billed where known, else at {price.model.label})"),
        (
            "Billed credits",
            f"{output.credits(k.billed_credits)} reported by the provider for {k.billed_sessions} session(s)",
        ),
        ("Cost", f"{output.money(k.cost)} at {output.money(price.price_per_credit)} per credit"),
        ("Average duration", output.duration(k.avg_duration_s)),
        ("95th percentile", output.duration(k.p95_duration_s)),
    ]
    width = max(len(name) for name, _ in lines)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in lines))
    if not estimate_local and provider in (None, *LOCAL_PROVIDERS):
        print("Local-engine sessions count 0 credits; --estimate-local prices them with the credit model.")
    return ExitCode.OK


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


def usage_import(settings: Settings, *, date_from: date | None, date_to: date | None, as_json: bool) -> ExitCode:
    """Import the provider's session history (sessions belong to the UTC day they started)."""
    if date_from and date_to and date_from > date_to:
        raise CliError(f"--from {date_from} is after --to {date_to}.", ExitCode.USAGE)
    provider = connect(settings)
    if not provider.capabilities.history:
        provider.close()
        raise CliError(f"{provider.label} keeps no session history to import.", ExitCode.USAGE)
    start = _day_start(date_from) if date_from else datetime.min.replace(tzinfo=UTC)
    end = _day_start(date_to + timedelta(days=1)) if date_to else datetime.max.replace(tzinfo=UTC)
    try:
        try:
            with open_log(settings) as log:
                result = usage_admin.import_history(
                    provider.account, log, provider.name, start, end, identity=LOCAL_OPERATOR
                )
        except AccountError as exc:
            raise provider_error(exc) from None
    finally:
        provider.close()
    if as_json:
        print(output.to_json({"provider": provider.name, **asdict(result), "unchanged": result.unchanged}))
    else:
        print(
            f"Imported {result.read} session(s) from {provider.label}: {result.added} added, {result.updated} "
            f"matched to logged sessions and given the provider's figures, {result.unchanged} already up to date."
        )
    return ExitCode.OK


def usage_export(
    settings: Settings,
    *,
    date_from: date | None,
    date_to: date | None,
    provider: str | None,
    tz: str,
    estimate_local: bool,
    out: str,
) -> ExitCode:
    flt = _filter(date_from, date_to, provider, tz)
    with open_log(settings) as log:
        data = sessions_csv(log, flt, pricing(log, settings), include_local_estimate=estimate_local)
    text = data.decode("utf-8")
    if out == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return ExitCode.OK
    path = Path(out).expanduser()
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise CliError(f"Cannot write {path}: {exc.strerror or exc}.", ExitCode.USAGE) from None
    rows = sum(1 for _ in csv.reader(io.StringIO(text))) - 1
    print(f"Wrote {rows} session(s) to {path}.", file=sys.stderr)
    return ExitCode.OK


def usage_copy(settings: Settings, env: Mapping[str, str], *, source: Path, to_env: str, as_json: bool) -> ExitCode:
    """Copy the SQLite log ``source`` into the log whose URL ``to_env`` holds (DATABASE_URL by default)."""
    if to_env == "DATABASE_URL":
        target_url = settings.database_url
        location = settings.usage_location
    else:
        raw = env.get(to_env)
        if not raw:
            raise CliError(f"--to-env names {to_env}, but that environment variable is not set.", ExitCode.USAGE)
        try:
            named = load_settings({}, {"DATABASE_URL": raw})
        except ValueError as exc:
            raise CliError(str(exc).replace("DATABASE_URL", to_env), ExitCode.USAGE) from None
        target_url, location = named.database_url, named.usage_location
    if target_url is None:
        raise CliError(
            f"Set {to_env} to the shared log (postgresql://user:pass@host:port/db) to copy {source} into it.",
            ExitCode.USAGE,
        )
    if not source.is_file():
        raise CliError(f"There is no usage log at {source} to copy (set USAGE_DB_PATH or --db).", ExitCode.USAGE)
    try:
        with UsageLog(source) as src, UsageLog(target_url.reveal()) as dst:
            report = copy_log(src, dst)
    except UsageLogError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None
    if as_json:
        print(output.to_json({"from": str(source), "to": location, **asdict(report)}))
    else:
        print(
            f"Copied {source} into {location}: {report.sessions_added} session(s) added with "
            f"{report.events_added} event(s), {report.sessions_kept} already there kept as they were, "
            f"{report.settings_added} setting(s) added."
        )
    return ExitCode.OK
