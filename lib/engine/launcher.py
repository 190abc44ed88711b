"""Start the local engine as a child process on a free loopback port, and stop it again."""

from __future__ import annotations

import atexit
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
        self.stop()
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.restarts += 1
        _wait_healthy(self, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


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
    log = Path(tempfile.mkstemp(prefix="avatar-engine-", suffix=".log")[1])
    child_env = {**os.environ, **(env or {}), "ENGINE_API_KEY": key.reveal()}  # not argv: ps shows argv
    command = [sys.executable, "-m", "lib.engine", "--host", host, "--port", str(port), *(extra_args or [])]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=child_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    engine = EngineProcess(f"http://{host}:{port}", key, process, log, command, child_env)
    atexit.register(engine.stop)
    _wait_healthy(engine, timeout)
    return engine


def _wait_healthy(engine: EngineProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.process.poll() is not None:
            raise EngineStartError(
                f"The local engine exited with code {engine.process.returncode}:\n{engine.log_tail()}"
            )
        try:
            if requests.get(f"{engine.url}/healthz", timeout=1).json().get("status") == "ok":
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.1)
    engine.stop()
    raise EngineStartError(f"The local engine did not become ready within {timeout:.0f} s:\n{engine.log_tail()}")
