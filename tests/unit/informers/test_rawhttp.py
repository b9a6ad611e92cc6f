"""informers.rawhttp against a local HTTP/1.1 server: headers, token, keep-alive, prefix, errors, timeouts."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import urllib3
from kubernetes.client import ApiClient, Configuration
from urllib3.util.wait import wait_for_read

from informers.rawhttp import RawResponse, dumps, request, send

NOT_FOUND = b'{"kind":"Status","reason":"NotFound","code":404}'
CONFLICT = b'{"kind":"Status","reason":"AlreadyExists","code":409}'
CHUNKS = (b'{"kind":"PodList",', b'"items":[1,2,', b"3]}")
MALFORMED = {  # answers no conforming server sends: refused, never half-read into the next exchange
    "conflicting-length": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
    "status-99": b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
    "superscript-length": "HTTP/1.1 200 OK\r\nContent-Length: \u00b2\r\n\r\nab".encode("latin-1"),
    "gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "negative-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n",
}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: Message
    body: bytes
    port: int


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    disable_nagle_algorithm = True  # headers and body are two writes

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        n = self.server.record(Seen(self.command, self.path, self.headers, body, self.client_address[1]))
        if "/raw/" in self.path:
            self.wfile.write(MALFORMED[self.path.rsplit("/", 1)[1]])
            self.close_connection = True
        elif self.path.endswith("/hang"):  # accepted and read, never answered
            self._wait_for_the_peer_to_close()
        elif self.path.endswith("/stall"):  # the head and a first chunk, then nothing
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(CHUNKS[0]), CHUNKS[0]))
            self._wait_for_the_peer_to_close()
        elif "/echo/" in self.path:
            self._answer(200, self.path.encode())
        elif self.command == "HEAD":  # the length of a body it does not send
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
        elif self.path.endswith("/nocontent"):
            self.send_response(204)
            self.end_headers()
        elif self.path.endswith("/continue"):  # an interim answer first
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._answer(200, b'{"n":%d}' % n)
        elif self.path.endswith("/eof"):  # no length: the body ends with the connection
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b'{"until":"eof"}')
        elif self.path.endswith("/http10"):
            self.protocol_version = "HTTP/1.0"
            self._answer(200, b'{"n":%d}' % n)
            self.close_connection = True
        elif self.path.endswith("/trailer"):  # chunk extensions and a trailer field
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5;name=value\r\nhello\r\n1\r\n!\r\n0\r\nX-Checksum: 1\r\n\r\n")
        elif self.path.endswith("/chunked"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in CHUNKS:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path.endswith("/missing"):
            self._answer(404, NOT_FOUND)
        elif self.path.endswith("/taken"):
            self._answer(409, CONFLICT)
        elif self.path.endswith("/close"):  # says so in the answer
            self._answer(200, b'{"n":%d}' % n, close=True)
        elif self.path.endswith("/drop"):  # answers as keep-alive, then closes the idle connection
            self._answer(200, b'{"n":%d}' % n)
            self.close_connection = True
        else:
            self._answer(201 if self.command == "POST" else 200, b'{"n":%d}' % n)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _wait_for_the_peer_to_close(self) -> None:
        self.close_connection = True
        deadline = time.monotonic() + 3
        while not self.server.release.is_set() and time.monotonic() < deadline:
            if wait_for_read(self.connection, timeout=0.05):
                if self.connection.recv(1, socket.MSG_PEEK) == b"":
                    self.server.peer_closed(self.client_address[1])
                return

    def _answer(self, status: int, body: bytes, *, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.release = threading.Event()
        self._cond = threading.Condition()
        self.seen: list[Seen] = []
        self.closed_ports: list[int] = []
        self.closed_by_peer: list[int] = []

    def record(self, seen: Seen) -> int:
        with self._cond:
            self.seen.append(seen)
            return len(self.seen)

    def shutdown_request(self, request: Any) -> None:
        try:
            port = request.getpeername()[1]
        except OSError:
            port = -1
        super().shutdown_request(request)
        with self._cond:
            self.closed_ports.append(port)
            self._cond.notify_all()

    def peer_closed(self, port: int) -> None:
        with self._cond:
            self.closed_by_peer.append(port)
            self._cond.notify_all()

    def wait_closed_by_peer(self, port: int, timeout: float = 1.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: port in self.closed_by_peer, timeout)

    def wait_closed(self, port: int, timeout: float = 2.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: port in self.closed_ports, timeout)

    def ports(self) -> set[int]:
        with self._cond:
            return {s.port for s in self.seen}


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(2)


@pytest.fixture
def make_api(server: _Server) -> Iterator[Callable[..., ApiClient]]:
    made: list[ApiClient] = []

    def make(host: str | None = None, **settings: Any) -> ApiClient:
        cfg = Configuration()
        cfg.host = server.url if host is None else host
        for name, value in settings.items():
            setattr(cfg, name, value)
        client = ApiClient(cfg)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def api(make_api: Callable[..., ApiClient]) -> ApiClient:
    return make_api()


def _pool(api: ApiClient) -> Any:
    return api.rest_client.pool_manager.connection_from_url(api.configuration.host)


def test_a_post_sends_method_path_body_and_headers_and_returns_the_whole_answer(
        server: _Server, api: ApiClient) -> None:
    body = b'{"metadata":{"name":"w1"}}'
    out = send(api, "POST", "/apis/x.io/v1/namespaces/ns/workflows", body)

    assert out == RawResponse(201, "Created", b'{"n":1}')
    [seen] = server.seen
    assert seen.method == "POST"
    assert seen.path == "/apis/x.io/v1/namespaces/ns/workflows"
    assert seen.body == body
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Content-Length"] == str(len(body))
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["User-Agent"] == api.user_agent
    assert seen.headers["Host"] == server.url.removeprefix("http://")
    assert seen.headers["Authorization"] is None


def test_a_patch_carries_the_content_type_it_is_given(server: _Server, api: ApiClient) -> None:
    send(api, "PATCH", "/api/v1/namespaces/ns/pods/p", b'{"a":1}',
         content_type="application/merge-patch+json")

    assert server.seen[0].method == "PATCH"
    assert server.seen[0].headers["Content-Type"] == "application/merge-patch+json"
    assert server.seen[0].body == b'{"a":1}'


def test_a_get_sends_no_content_type_and_no_body(server: _Server, api: ApiClient) -> None:
    out = send(api, "GET", "/api/v1/namespaces/ns/pods/p")

    assert out == RawResponse(200, "OK", b'{"n":1}')
    [seen] = server.seen
    assert seen.method == "GET"
    assert seen.headers["Content-Type"] is None
    assert seen.body == b""
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["User-Agent"] == api.user_agent


def test_the_client_default_headers_go_out_with_every_request(
        server: _Server, make_api: Callable[..., ApiClient]) -> None:
    api = make_api()
    api.set_default_header("X-Controller", "kube-workflow")
    api.user_agent = "kube-workflow/test"

    send(api, "GET", "/api/v1/pods")

    assert server.seen[0].headers["X-Controller"] == "kube-workflow"
    assert server.seen[0].headers["User-Agent"] == "kube-workflow/test"


def test_the_bearer_token_of_the_configuration_is_sent(
        server: _Server, make_api: Callable[..., ApiClient]) -> None:
    api = make_api(api_key={"authorization": "abc"}, api_key_prefix={"authorization": "Bearer"})

    send(api, "GET", "/api/v1/pods")

    assert server.seen[0].headers.get_all("Authorization") == ["Bearer abc"]


def test_without_a_token_no_authorization_header_is_sent(server: _Server, api: ApiClient) -> None:
    send(api, "GET", "/api/v1/pods")
    send(api, "POST", "/api/v1/pods", b"{}")

    assert [s.headers["Authorization"] for s in server.seen] == [None, None]


def test_the_token_refresh_hook_runs_before_each_request(
        server: _Server, make_api: Callable[..., ApiClient]) -> None:
    tokens = iter(["t1", "t2"])

    def refresh(cfg: Configuration) -> None:
        cfg.api_key["authorization"] = next(tokens)

    api = make_api(api_key={"authorization": "stale"}, api_key_prefix={"authorization": "Bearer"},
                   refresh_api_key_hook=refresh)

    send(api, "GET", "/api/v1/pods")
    send(api, "GET", "/api/v1/pods")

    assert [s.headers["Authorization"] for s in server.seen] == ["Bearer t1", "Bearer t2"]


def test_sequential_requests_reuse_one_kept_alive_connection(server: _Server, api: ApiClient) -> None:
    outs = [send(api, "GET", f"/api/v1/namespaces/ns/pods/p{i}") for i in range(5)]
    outs.append(send(api, "POST", "/api/v1/namespaces/ns/pods", b"{}"))

    assert [o.data for o in outs] == [b'{"n":%d}' % n for n in range(1, 7)]
    assert len(server.ports()) == 1
    assert _pool(api).num_connections == 1


def test_a_host_with_a_path_prefix_sends_the_prefixed_path(
        server: _Server, make_api: Callable[..., ApiClient]) -> None:
    api = make_api(host=f"{server.url}/k8s/clusters/c1")

    out = send(api, "GET", "/api/v1/namespaces/ns/pods/p")
    send(api, "POST", "/api/v1/namespaces/ns/pods", b"{}")

    assert out.status == 200
    assert [s.path for s in server.seen] == [
        "/k8s/clusters/c1/api/v1/namespaces/ns/pods/p", "/k8s/clusters/c1/api/v1/namespaces/ns/pods"]
    assert len(server.ports()) == 1


def test_a_changed_host_on_the_same_client_is_followed(
        server: _Server, make_api: Callable[..., ApiClient]) -> None:
    api = make_api()
    send(api, "GET", "/api/v1/pods")
    api.configuration.host = f"{server.url}/prefix"

    send(api, "GET", "/api/v1/pods")

    assert [s.path for s in server.seen] == ["/api/v1/pods", "/prefix/api/v1/pods"]


def test_an_answer_with_connection_close_is_followed_by_a_new_connection(
        server: _Server, api: ApiClient) -> None:
    first = send(api, "GET", "/api/v1/close")
    second = send(api, "GET", "/api/v1/pods")
    third = send(api, "GET", "/api/v1/pods")

    assert (first.status, first.data) == (200, b'{"n":1}')
    assert (second.status, second.data) == (200, b'{"n":2}')
    assert third.status == 200
    ports = [s.port for s in server.seen]
    assert ports[0] != ports[1]
    assert ports[1] == ports[2]
    assert server.wait_closed(ports[0])


def test_a_dropped_keep_alive_connection_is_replaced(server: _Server, api: ApiClient) -> None:
    first = send(api, "GET", "/api/v1/drop")  # kept alive by the client, closed by the server
    assert first == RawResponse(200, "OK", b'{"n":1}')
    dropped = server.seen[0].port
    assert server.wait_closed(dropped)
    idle = [c for c in list(_pool(api).pool.queue) if c is not None and c.sock is not None]
    assert len(idle) == 1
    assert wait_for_read(idle[0].sock, timeout=2)  # the peer's FIN has arrived

    second = send(api, "GET", "/api/v1/pods")

    assert second == RawResponse(200, "OK", b'{"n":2}')
    assert server.seen[1].port != dropped
    assert send(api, "GET", "/api/v1/pods").status == 200  # and the replacement is kept alive
    assert server.seen[2].port == server.seen[1].port


def test_a_chunked_answer_is_read_whole_and_the_connection_kept(server: _Server, api: ApiClient) -> None:
    out = send(api, "GET", "/api/v1/chunked")
    after = send(api, "GET", "/api/v1/pods")

    assert out == RawResponse(200, "OK", b"".join(CHUNKS))
    assert after == RawResponse(200, "OK", b'{"n":2}')
    assert len(server.ports()) == 1


@pytest.mark.parametrize(("method", "route", "answer", "kept"), [
    ("HEAD", "head", RawResponse(200, "OK", b""), True),
    ("DELETE", "nocontent", RawResponse(204, "No Content", b""), True),
    ("GET", "continue", RawResponse(200, "OK", b'{"n":1}'), True),
    ("GET", "trailer", RawResponse(200, "OK", b"hello!"), True),
    ("GET", "eof", RawResponse(200, "OK", b'{"until":"eof"}'), False),
    ("GET", "http10", RawResponse(200, "OK", b'{"n":1}'), False),
])
def test_each_framing_of_an_answer_is_read_to_its_end(
        server: _Server, api: ApiClient, method: str, route: str, answer: RawResponse, kept: bool) -> None:
    out = send(api, method, f"/api/v1/{route}", timeout=(1, 1))
    after = send(api, "GET", "/api/v1/pods", timeout=(1, 1))

    assert out == answer
    assert after == RawResponse(200, "OK", b'{"n":2}')
    assert (server.seen[0].port == server.seen[1].port) is kept


def test_error_statuses_are_answers_not_exceptions(server: _Server, api: ApiClient) -> None:
    missing = send(api, "GET", "/api/v1/namespaces/ns/pods/missing")
    taken = send(api, "POST", "/api/v1/namespaces/ns/taken", b'{"metadata":{"name":"taken"}}')
    after = send(api, "GET", "/api/v1/pods")

    assert missing == RawResponse(404, "Not Found", NOT_FOUND)
    assert taken == RawResponse(409, "Conflict", CONFLICT)
    assert after.status == 200
    assert len(server.ports()) == 1


def test_a_server_that_never_answers_times_out_and_its_connection_is_given_back(
        server: _Server, make_api: Callable[..., ApiClient]) -> None:
    api = make_api(connection_pool_maxsize=2)
    send(api, "GET", "/api/v1/pods")
    pool = _pool(api)
    assert pool.pool.qsize() == pool.pool.maxsize == 2

    started = time.monotonic()
    with pytest.raises((TimeoutError, urllib3.exceptions.HTTPError)):
        send(api, "GET", "/api/v1/hang", timeout=(1, 0.3))
    assert time.monotonic() - started < 2
    hung = server.seen[1].port
    assert server.wait_closed_by_peer(hung)  # the client closed the connection that timed out
    assert pool.pool.qsize() == 2  # an empty slot in place of the closed connection
    assert all(c is None or c.sock is None or c.sock.getsockname()[1] != hung for c in list(pool.pool.queue))

    outs = [send(api, "GET", f"/api/v1/pods/{i}", timeout=(1, 1)) for i in range(20)]

    assert [o.status for o in outs] == [200] * 20
    assert hung not in {s.port for s in server.seen[2:]}
    assert len({s.port for s in server.seen[2:]}) == 1
    assert pool.pool.qsize() == 2
    assert pool.num_connections == 2  # the first one, closed by the timeout, and its replacement


def test_an_answer_that_stalls_in_its_body_times_out_and_its_connection_is_closed(
        server: _Server, make_api: Callable[..., ApiClient]) -> None:
    api = make_api(connection_pool_maxsize=1)

    started = time.monotonic()
    with pytest.raises((TimeoutError, urllib3.exceptions.HTTPError)):
        send(api, "GET", "/api/v1/stall", timeout=(1, 0.3))
    assert time.monotonic() - started < 2
    stalled = server.seen[0].port
    assert server.wait_closed_by_peer(stalled)

    out = send(api, "GET", "/api/v1/chunked", timeout=(1, 1))

    assert out == RawResponse(200, "OK", b"".join(CHUNKS))
    assert server.seen[1].port != stalled
    assert _pool(api).pool.qsize() == 1


def test_concurrent_requests_each_get_their_own_answer(
        server: _Server, make_api: Callable[..., ApiClient]) -> None:
    api = make_api(connection_pool_maxsize=4)
    results: dict[str, RawResponse] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        try:
            for i in range(10):
                path = f"/api/v1/echo/{w}/{i}"
                out = send(api, "GET", path, timeout=(1, 1))
                with lock:
                    results[path] = out
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)

    assert errors == []
    assert len(results) == 40
    assert all(out == RawResponse(200, "OK", path.encode()) for path, out in results.items())
    assert len(server.ports()) <= 4
    assert _pool(api).pool.qsize() == 4


def test_a_refused_connection_raises_and_leaves_the_pool_whole(make_api: Callable[..., ApiClient]) -> None:
    probe = _Server()  # a port that nobody listens on once closed
    host = probe.url
    probe.server_close()
    api = make_api(host=host, connection_pool_maxsize=1)

    with pytest.raises((ConnectionError, urllib3.exceptions.HTTPError)):
        send(api, "GET", "/api/v1/pods", timeout=(0.5, 0.5))

    assert _pool(api).pool.qsize() == 1


def test_a_proxy_manager_sends_the_full_url_through_the_proxy(
        server: _Server, make_api: Callable[..., ApiClient]) -> None:
    api = make_api(host="http://kube.invalid:6443/prefix", proxy=server.url,
                   api_key={"authorization": "abc"}, api_key_prefix={"authorization": "Bearer"})
    assert isinstance(api.rest_client.pool_manager, urllib3.ProxyManager)

    out = send(api, "POST", "/api/v1/namespaces/ns/pods", b"{}")
    missing = send(api, "GET", "/api/v1/namespaces/ns/pods/missing")

    assert out == RawResponse(201, "Created", b'{"n":1}')
    assert missing == RawResponse(404, "Not Found", NOT_FOUND)
    assert server.seen[0].path == "http://kube.invalid:6443/prefix/api/v1/namespaces/ns/pods"
    assert server.seen[0].headers["Authorization"] == "Bearer abc"
    assert server.seen[0].headers["Content-Type"] == "application/json"
    assert server.seen[0].body == b"{}"


class _Recording:
    """A client with its own ``call_raw`` (like the throttled and gated clients)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def call_raw(self, method: str, path: str, body: bytes | None, *, content_type: str | None,
                 timeout: tuple[float, float]) -> RawResponse:
        self.calls.append((method, path, body, content_type, timeout))
        return RawResponse(202, "Accepted", b"recorded")


class _Wrapping(ApiClient):
    """An ApiClient subclass whose ``call_raw`` counts and delegates to :func:`send`."""

    calls = 0

    def call_raw(self, method: str, path: str, body: bytes | None, *, content_type: str | None,
                 timeout: tuple[float, float]) -> RawResponse:
        self.calls += 1
        return send(self, method, path, body, content_type=content_type, timeout=timeout)


def test_request_goes_through_call_raw_when_the_client_has_one(server: _Server) -> None:
    client = _Recording()

    out = request(client, "PATCH", "/api/v1/pods/p", b'{"a":1}', content_type="application/merge-patch+json",
                  timeout=(1.0, 2.0))

    assert out == RawResponse(202, "Accepted", b"recorded")
    assert client.calls == [
        ("PATCH", "/api/v1/pods/p", b'{"a":1}', "application/merge-patch+json", (1.0, 2.0))]
    assert server.seen == []


def test_request_on_an_api_client_subclass_with_call_raw_uses_it(server: _Server) -> None:
    cfg = Configuration()
    cfg.host = server.url
    client = _Wrapping(cfg)
    try:
        out = request(client, "GET", "/api/v1/pods")
    finally:
        client.close()

    assert out.status == 200
    assert client.calls == 1
    assert [s.path for s in server.seen] == ["/api/v1/pods"]


def test_request_falls_back_to_send_for_a_plain_api_client(server: _Server, api: ApiClient) -> None:
    out = request(api, "POST", "/api/v1/namespaces/ns/pods", b'{"b":2}')
    got = request(api, "GET", "/api/v1/namespaces/ns/pods/missing")

    assert out == RawResponse(201, "Created", b'{"n":1}')
    assert got == RawResponse(404, "Not Found", NOT_FOUND)
    assert [(s.method, s.path, s.body) for s in server.seen] == [
        ("POST", "/api/v1/namespaces/ns/pods", b'{"b":2}'),
        ("GET", "/api/v1/namespaces/ns/pods/missing", b""),
    ]
    assert server.seen[0].headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_answer_is_a_protocol_error_and_the_connection_is_not_reused(
        server: _Server, api: ApiClient, name: str) -> None:
    with pytest.raises(urllib3.exceptions.ProtocolError):
        send(api, "GET", f"/raw/{name}", timeout=(1, 1))
    assert send(api, "GET", "/api/v1/after").status == 200
    assert len(server.ports()) == 2


def test_a_path_with_spaces_or_line_breaks_is_percent_encoded_not_split(
        server: _Server, api: ApiClient) -> None:
    """A name from a user's spec cannot smuggle a second request into the connection."""
    out = send(api, "GET", "/api/v1/secrets/x HTTP/1.1\r\n\r\nDELETE /api/v1/y\u00e9")
    assert out.status == 200
    [seen] = server.seen
    assert seen.method == "GET"
    assert seen.path == "/api/v1/secrets/x%20HTTP/1.1%0D%0A%0D%0ADELETE%20/api/v1/y%C3%A9"


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(
        server: _Server, make_api: Callable[..., ApiClient]) -> None:
    api = make_api(api_key={"authorization": "abc\n"}, api_key_prefix={"authorization": "Bearer"})
    with pytest.raises(urllib3.exceptions.ProtocolError, match="control character"):
        send(api, "GET", "/api/v1/x")
    assert server.seen == []


def test_dumps_falls_back_to_the_standard_encoder_for_what_orjson_refuses() -> None:
    assert dumps({"a": [1, "b"]}) == b'{"a":[1,"b"]}'
    assert dumps({"m": "lone \udc80 surrogate"}) == b'{"m": "lone \\udc80 surrogate"}'
