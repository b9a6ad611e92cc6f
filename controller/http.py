"""A tiny HTTP server for the probe and metrics endpoints (stdlib ``ThreadingHTTPServer``).

:class:`EndpointServer` serves a fixed table of GET routes from a daemon thread. A route is a function
of the request (path and query) returning a :class:`Response`; it runs on the server's per-request
thread, so it must be thread-safe and quick. An exception in a route is a 500 with its message.

Bind addresses follow controller-runtime: ``host:port``; ``:8081`` = every interface; ``host:0`` =
an ephemeral port (tests; read :attr:`EndpointServer.port`); ``"0"`` = do not serve at all
(:func:`serve` returns ``None``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import structlog

__all__ = ["EndpointServer", "Request", "Response", "Route", "parse_bind_address", "serve"]

log = structlog.get_logger("controller.http")


@dataclass(frozen=True)
class Request:
    path: str
    #: Query parameters; a key without a value (``?verbose``) maps to ``[""]``.
    query: Mapping[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Route = Callable[[Request], Response]


def parse_bind_address(address: str) -> tuple[str, int] | None:
    """``"host:port"`` → ``(host, port)``; ``":8081"`` → ``("", 8081)``; ``"0"`` or ``""`` → ``None``."""
    if address in ("0", ""):
        return None
    host, sep, port = address.rpartition(":")
    if not sep:
        raise ValueError(f"bind address {address!r}: expected host:port")
    host = host.strip("[]")  # [::1]:8081
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"bind address {address!r}: port is not a number") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"bind address {address!r}: port out of range")
    return host, number


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: Mapping[str, Route]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        route = self.server.routes.get(parts.path)
        if route is None:
            # /healthz/<check> style sub-paths go to the longest registered prefix route.
            prefixes = [p for p in self.server.routes if p != "/" and parts.path.startswith(p + "/")]
            route = self.server.routes[max(prefixes, key=len)] if prefixes else None
        if route is None:
            resp = Response(404, b"404 page not found\n")
        else:
            try:
                resp = route(Request(parts.path, parse_qs(parts.query, keep_blank_values=True)))
            except Exception as exc:
                log.exception("endpoint failed", path=parts.path)
                resp = Response(500, f"internal error: {type(exc).__name__}: {exc}\n".encode())
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(resp.body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # probes hit these endpoints every few seconds; no access log


class EndpointServer:
    """Serves ``routes`` on ``address`` from a daemon thread.

    Contract: :meth:`start` once, :meth:`stop` any number of times, from any thread. Routes run on
    per-request daemon threads."""

    def __init__(self, host: str, port: int, routes: Mapping[str, Route], *, name: str = "http") -> None:
        self._server = _Server((host, port), _Handler)
        self._server.routes = dict(routes)
        self._name = name
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    def start(self) -> EndpointServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name=f"{self._name}-server",
            daemon=True,
        )
        self._thread.start()
        log.info("serving", endpoint=self._name, address=f"{self.host}:{self.port}")
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()


def serve(address: str, routes: Mapping[str, Route], *, name: str = "http") -> EndpointServer | None:
    """Start an :class:`EndpointServer` on ``address`` (see the module docstring); ``None`` if "0"."""
    parsed = parse_bind_address(address)
    if parsed is None:
        return None
    return EndpointServer(parsed[0], parsed[1], routes, name=name).start()
