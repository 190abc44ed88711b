"""Start the local engine as a child process on a free loopback port, and stop it again.

The engine must not outlive the app that started it, however the app ends (``kill -9`` and OOM included):
the app holds the write end of a pipe (the *lifeline*) whose read end the engine watches; the kernel
closes it when the app dies, the engine reads end-of-file, stops its sessions (recording them in its
history) and exits. ``prctl(PR_SET_PDEATHSIG)`` was not used: it fires when the *thread* that forked
exits, and Streamlit runs each script run (where the engine is started) on a thread that ends with the run.
Polling the parent pid would work too, but only at the polling interval and not through a re-parenting
subreaper (``systemd --user``, ``tini``).

Each engine writes to its own ``/tmp/avatar-engine-*.log``. A clean stop removes it; the logs of engines
that died are kept for their tail, and pruned at the next start to the newest :data:`KEEP_DEAD_LOGS`. A
running engine holds an ``flock`` on its log (through its stdout), so pruning never touches a live one; logs
written in the last :data:`PRUNE_MIN_AGE_S` are kept too (an engine started by an older launcher holds no lock).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from lib.settings import Secret

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOG_PREFIX = "avatar-engine-"
KEEP_DEAD_LOGS = 5
PRUNE_MIN_AGE_S = 600.0


class EngineStartError(RuntimeError):
    """The engine did not come up; the message says why (its last log lines), never its key."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class EngineProcess:
    url: str
    api_key: Secret = field(repr=False)
    process: subprocess.Popen = field(repr=False)
    log_path: Path = field(repr=False)
    command: list[str] = field(default_factory=list, repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    restarts: int = 0
    lifeline: int | None = field(default=None, repr=False)
    """Write end of the pipe the engine watches; closing it (or this process dying) stops the engine."""

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:]).replace(self.api_key.reveal(), "********")

    def restart(self, timeout: float = 60.0) -> None:
        """Start the engine again on the same port with the same key (after it died)."""
        self.stop(keep_log=True)
        self.process, self.lifeline = _spawn(self.command, self.env, self.log_path, "ab")
        self.restarts += 1
        _wait_healthy(self, timeout)

    def stop(self, timeout: float = 10.0, *, keep_log: bool = False) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.lifeline is not None:
            with contextlib.suppress(OSError):
                os.close(self.lifeline)
            self.lifeline = None
        if not keep_log and self.process.returncode in (0, -signal.SIGTERM):
            self.log_path.unlink(missing_ok=True)  # a clean stop leaves nothing behind; a crash keeps its log


def _spawn(command: list[str], env: dict[str, str], log: Path, mode: str) -> tuple[subprocess.Popen, int]:
    """Start the engine with its lifeline, its output to ``log`` (locked for as long as the engine runs)."""
    read_end, write_end = os.pipe()  # not inheritable: no other child of this process holds the write end
    try:
        with log.open(mode) as out:
            # The lock belongs to the open file, which the child inherits as stdout: it lasts as long as the
            # engine, whatever happens to this process.
            fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            process = subprocess.Popen(
                [*command, "--parent-fd", str(read_end)],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(read_end,),
            )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return process, write_end


def prune_logs(
    directory: Path | None = None, keep: int = KEEP_DEAD_LOGS, min_age_s: float = PRUNE_MIN_AGE_S
) -> list[Path]:
    """Delete the logs of engines that are no longer running, but the newest ``keep`` and any younger than
    ``min_age_s`` (an engine started by an older launcher holds no lock). Returns the removed."""
    folder = Path(directory or tempfile.gettempdir())
    dead: list[tuple[float, Path]] = []
    for path in folder.glob(f"{LOG_PREFIX}*.log"):
        try:
            with path.open("rb") as probe:
                fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while an engine writes it
                dead.append((path.stat().st_mtime, path))
        except OSError:
            continue  # running, or not ours to read
    dead.sort(reverse=True)
    removed = []
    cutoff = time.time() - min_age_s
    for _, path in (entry for entry in dead[keep:] if entry[0] < cutoff):
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def start_engine(
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: Secret | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> EngineProcess:
    port = port or free_port(host)
    key = api_key or Secret(secrets.token_urlsafe(24))
    prune_logs()
    handle, name = tempfile.mkstemp(prefix=LOG_PREFIX, suffix=".log")
    os.close(handle)
    log = Path(name)
    child_env = {**os.environ, **(env or {}), "ENGINE_API_KEY": key.reveal()}  # not argv: ps shows argv
    command = [sys.executable, "-m", "lib.engine", "--host", host, "--port", str(port), *(extra_args or [])]
    process, lifeline = _spawn(command, child_env, log, "wb")
    engine = EngineProcess(f"http://{host}:{port}", key, process, log, command, child_env, lifeline=lifeline)
    atexit.register(engine.stop)
    _wait_healthy(engine, timeout)
    return engine


def _wait_healthy(engine: EngineProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.process.poll() is not None:
            tail = engine.log_tail()
            engine.stop(keep_log=True)  # closes its lifeline
            raise EngineStartError(f"The local engine exited with code {engine.process.returncode}:\n{tail}")
        try:
            if requests.get(f"{engine.url}/healthz", timeout=1).json().get("status") == "ok":
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.1)
    tail = engine.log_tail()
    engine.stop(keep_log=True)
    raise EngineStartError(f"The local engine did not become ready within {timeout:.0f} s:\n{tail}")
