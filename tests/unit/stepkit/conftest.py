"""Fixtures for the stepkit unit tests: a recording fake sleep and a real loopback HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class FakeSleep:
    """Records requested sleeps instead of sleeping (time is injected, never waited on)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@dataclass
class Reply:
    """What the test server answers on one route. ``hold`` blocks the answer until the test ends."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False
    stall_body: bool = False  # send the headers and part of the body, then block until the test ends

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class LocalServer:
    """A real HTTP server on 127.0.0.1 (a thread per request). Routes map (METHOD, path) to a Reply
    or to a callable returning one; unknown routes answer 404. Every request is recorded in ``seen``."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Reply | Callable[[Seen], Reply]] = {}
        self.seen: list[Seen] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
                with server._lock:
                    server.seen.append(seen)
                    route = server.routes.get((self.command, self.path))
                reply = route(seen) if callable(route) else route or Reply(404, b"not found")
                if reply.hold:
                    server.release.wait(timeout=30)
                payload = reply.encoded()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                declared = len(payload) + (10 if reply.stall_body else 0)
                self.send_header("Content-Length", str(declared))
                self.end_headers()
                self.wfile.write(payload)
                if reply.stall_body:
                    self.wfile.flush()
                    server.release.wait(timeout=30)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="stepkit-test-http", daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests_to(self, method: str, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == method and s.path == path]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    server = LocalServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
