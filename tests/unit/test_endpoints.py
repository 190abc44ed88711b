"""endpoint_reachable: whether the engine behind a logged session's endpoint is gone, over real sockets."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lib.engine.launcher import EngineProcess, free_port
from lib.heygen.client import endpoint_reachable


@contextmanager
def server(status: int, body: object, delay_s: float = 0.0) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(delay_s)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_running_engine_is_reachable(engine: EngineProcess) -> None:
    assert endpoint_reachable(f"{engine.url}#key-0123456789ab")


def test_nothing_listening_means_gone() -> None:
    assert not endpoint_reachable(f"http://127.0.0.1:{free_port()}#key-0123456789ab")


def test_something_else_on_the_port_means_gone() -> None:
    with server(404, {"detail": "Not Found"}) as url:
        assert not endpoint_reachable(f"{url}#key-x")
    with server(200, ["not", "an", "engine"]) as url:
        assert not endpoint_reachable(f"{url}#key-x")


def test_a_slow_engine_is_not_taken_for_gone() -> None:
    with server(200, {"status": "ok"}, delay_s=0.5) as url:
        assert endpoint_reachable(f"{url}#key-x", timeout=0.1)


def test_heygen_accounts_are_never_probed() -> None:
    # No request is made: api.heygen.com cannot be reached from here, yet the answer is immediate.
    started = time.monotonic()
    assert endpoint_reachable("https://api.heygen.com#key-0123456789ab", timeout=5)
    assert time.monotonic() - started < 0.5
