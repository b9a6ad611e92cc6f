"""One short API request on the official client's connection pool, without its model layer.

``ApiClient.param_serialize`` + ``call_api`` walk every body through ``sanitize_for_serialization``,
encode it with the standard ``json`` module, build the request through two more layers and wrap the
answer; on a busy controller that was about a third of its CPU (bench/README.md). :func:`send` does
the same request directly: the body is already JSON bytes (orjson), the URL is the configuration's
host plus the path, the headers are the client's default headers (User-Agent) plus the bearer token
the configuration holds (refreshed by its hook, as ``param_serialize`` does), and it goes out on a
connection lent by the client's own urllib3 pool (same TLS settings, same pooled keep-alive
connections; checked for a dropped peer before reuse), written in one ``sendall`` and its answer
parsed here (status line, header fields, Content-Length or chunked body; ``http.client`` parses
header fields with the ``email`` package, which cost more than the rest of the exchange). Through a
proxy (``ProxyManager``) it takes urllib3's whole path instead. Per request this costs about a third
of ``call_api``'s CPU (bench/README.md).

Throttling, metrics and write priorities stay where they were: an ``ApiClient`` subclass that wants to
see every short request defines ``call_raw(method, path, body, content_type, timeout)`` with the
signature of :func:`send`, and :func:`request` calls it when it exists (``controller.client``'s
``ThrottledApiClient`` and ``reconcilers.gate``'s ``GatedApiClient`` do). Watches and LISTs keep
``call_api`` (streamed; their cost is in the events, not in the request).

Contract: thread-safe (the urllib3 pool is); raises ``urllib3.exceptions.HTTPError`` or ``OSError``
when no (well-formed) answer came (the caller maps them to its transport error); any HTTP status is an answer.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
import urllib3

__all__ = ["RawResponse", "dumps", "request", "send"]


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    reason: str
    data: bytes


#: What stays as is in a request target: RFC 3986 path and query characters, and existing %-escapes.
#: Anything else (a space, CR/LF, non-ASCII: say, from a name a user wrote) is %-encoded, as urllib3
#: did, so no request can be split or smuggled through a path.
_TARGET_SAFE = "/?&=%:@!$'()*+,;~-._"
_MAX_BODY = 256 * 1024 * 1024


def dumps(body: Any) -> bytes:
    """A request body as JSON bytes: orjson, or the standard encoder for what orjson refuses (a lone
    surrogate in a string: ``json`` escapes it)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body).encode()


def _request_target(path: str) -> str:
    if path.isascii() and path.isprintable() and " " not in path:
        return path
    return urllib.parse.quote(path, safe=_TARGET_SAFE)


@lru_cache(maxsize=64)
def _timeout(connect: float, read: float) -> urllib3.Timeout:
    return urllib3.Timeout(connect=connect, read=read)


def _headers(api_client: Any, content_type: str | None) -> dict[str, str]:
    headers: dict[str, str] = dict(api_client.default_headers)
    headers["Accept"] = "application/json"
    if content_type is not None:
        headers["Content-Type"] = content_type
    bearer: Mapping[str, Any] | None = api_client.configuration.auth_settings().get("BearerToken")
    if bearer and bearer.get("value"):
        headers[str(bearer["key"])] = str(bearer["value"])
    for name, value in headers.items():
        if not (name + value).isprintable():  # CR/LF would end the head early (a token file's newline)
            raise urllib3.exceptions.ProtocolError(f"header {name!r} holds a control character")
    return headers


_MAX_HEAD = 64 * 1024
_NO_BODY = frozenset({204, 304})


@dataclass(frozen=True, slots=True)
class _Target:
    host: str         # the configuration's host, the cache key
    pool: Any         # urllib3's HTTP(S)ConnectionPool for it
    prefix: str       # the path prefix of host (``https://lb/k8s/clusters/c1``), "" mostly
    host_header: str  # what ``Host:`` says


_targets: weakref.WeakKeyDictionary[Any, _Target] = weakref.WeakKeyDictionary()


def _target(api_client: Any, host: str) -> _Target | None:
    """The urllib3 pool for the API server and what requests on it need, remembered per pool manager;
    None for a ``ProxyManager`` (it routes by the full URL)."""
    manager = api_client.rest_client.pool_manager
    if isinstance(manager, urllib3.ProxyManager):
        return None
    known = _targets.get(manager)
    if known is not None and known.host == host and known.pool.pool is not None:  # None once closed
        return known
    pool = manager.connection_from_url(host)
    url = urllib3.util.parse_url(host)
    name = f"[{pool.host}]" if ":" in pool.host else pool.host
    default_port = 443 if url.scheme == "https" else 80
    host_header = name if not url.port or url.port == default_port else f"{name}:{url.port}"
    target = _Target(host, pool, (url.path or "").rstrip("/"), host_header)
    _targets[manager] = target
    return target


def send(api_client: Any, method: str, path: str, body: bytes | None = None, *,
         content_type: str | None = "application/json",
         timeout: tuple[float, float] = (5.0, 5.0)) -> RawResponse:
    """``method path`` with ``body`` (JSON bytes) on ``api_client``'s pool; the whole answer read."""
    cfg = api_client.configuration
    headers = _headers(api_client, content_type if body is not None else None)
    target = _target(api_client, cfg.host)
    if target is None:
        resp = api_client.rest_client.pool_manager.request(
            method, cfg.host + _request_target(path), body=body, headers=headers, timeout=_timeout(*timeout),
            retries=False, redirect=False, preload_content=True)
        return RawResponse(int(resp.status), str(resp.reason or ""), bytes(resp.data))
    return _exchange(target, method, _request_target(target.prefix + path), body, headers, timeout)


def _exchange(target: _Target, method: str, path: str, body: bytes | None, headers: dict[str, str],
              timeout: tuple[float, float]) -> RawResponse:
    """One HTTP/1.1 request and its answer on a pooled connection, written and parsed here: urllib3's
    pool lends the connection (checked for a dropped peer; connected with the client's TLS settings on
    first use) and gets it back afterwards, or an empty slot if anything failed or the answer asked
    to close. ``http.client`` never sees the exchange, so the connection stays idle in its eyes and
    urllib3 may lend it to a LIST next."""
    pool = target.pool
    conn = pool._get_conn()
    keep = False
    try:
        if conn.sock is None:
            conn.timeout = timeout[0]
            conn.connect()
        sock = conn.sock
        sock.settimeout(timeout[1])
        lines = [f"{method} {path} HTTP/1.1", f"Host: {target.host_header}"]
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        lines.append("\r\n")
        try:
            head = "\r\n".join(lines).encode("latin-1")
        except UnicodeEncodeError as exc:
            raise urllib3.exceptions.ProtocolError(f"a header cannot be sent: {exc}") from None
        sock.sendall(head + (body or b""))
        status, reason, data, keep = _read_response(sock, method)
        pending = getattr(sock, "pending", None)  # TLS: bytes decrypted past the answer are not ours
        keep = keep and not (pending is not None and pending())
    finally:
        if keep:
            pool._put_conn(conn)
        else:
            conn.close()
            pool._put_conn(None)
    return RawResponse(status, reason, data)


def _decimal(text: str) -> bool:
    return text.isascii() and text.isdecimal()


def _read_response(sock: Any, method: str) -> tuple[int, str, bytes, bool]:
    """Status, reason, body, and whether the connection can carry another request."""
    buf = bytearray()
    while True:  # 1xx answers (never asked for) are skipped
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            if len(buf) > _MAX_HEAD:
                raise urllib3.exceptions.ProtocolError("response head too long")
            chunk = sock.recv(65536)
            if not chunk:
                raise http.client.RemoteDisconnected("the server closed the connection without an answer")
            buf += chunk
            end = buf.find(b"\r\n\r\n")
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        del buf[:end + 4]
        version, _, rest = head[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not _decimal(code) or not 100 <= int(code) <= 599:
            raise urllib3.exceptions.ProtocolError(f"not an HTTP/1.x status line: {head[0][:80]!r}")
        status = int(code)
        if status >= 200:
            break
    fields: dict[str, str] = {}
    for line in head[1:]:
        name, sep, value = line.partition(":")
        if sep:
            name, value = name.strip().lower(), value.strip()
            if name in fields and fields[name] != value and name in ("content-length", "transfer-encoding"):
                raise urllib3.exceptions.ProtocolError(f"conflicting {name} fields")
            fields[name] = value
    keep = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
    if method == "HEAD" or status in _NO_BODY:
        return status, reason, b"", keep and not buf
    coding = fields.get("transfer-encoding", "").lower()
    if coding:
        if coding != "chunked":  # we never ask for a compressed answer
            raise urllib3.exceptions.ProtocolError(f"unsupported transfer-encoding {coding[:40]!r}")
        data = _read_chunked(sock, buf)
        # with a Content-Length too, the message was ambiguous to someone on the way: do not reuse
        return status, reason, data, keep and not buf and "content-length" not in fields
    length = fields.get("content-length")
    if length is None:  # the body ends with the connection
        while chunk := sock.recv(65536):
            buf += chunk
        return status, reason, bytes(buf), False
    if not _decimal(length) or int(length) > _MAX_BODY:
        raise urllib3.exceptions.ProtocolError(f"bad Content-Length {length[:40]!r}")
    size = int(length)
    while len(buf) < size:
        chunk = sock.recv(min(size - len(buf), 1 << 20))
        if not chunk:
            raise urllib3.exceptions.ProtocolError(f"answer cut after {len(buf)} of {size} bytes")
        buf += chunk
    return status, reason, bytes(buf[:size]), keep and len(buf) == size


def _read_chunked(sock: Any, buf: bytearray) -> bytes:
    """The body of a chunked answer; consumes ``buf`` (what follows the head) and the socket up to the
    end of the trailer, leaving in ``buf`` only what came after it (nothing, normally)."""
    out = bytearray()

    def fill(n: int) -> None:
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise urllib3.exceptions.ProtocolError("chunked answer cut short")
            buf.extend(chunk)

    def line() -> bytes:
        while (i := buf.find(b"\r\n")) < 0:
            if len(buf) > _MAX_HEAD:
                raise urllib3.exceptions.ProtocolError("chunk size line too long")
            fill(len(buf) + 1)
        text = bytes(buf[:i])
        del buf[:i + 2]
        return text

    while True:
        size_text = line().split(b";", 1)[0].strip()
        if not size_text or size_text.strip(b"0123456789abcdefABCDEF") or len(size_text) > 15:
            raise urllib3.exceptions.ProtocolError(f"bad chunk size {size_text[:40]!r}")
        size = int(size_text, 16)
        if len(out) + size > _MAX_BODY:
            raise urllib3.exceptions.ProtocolError("chunked answer too long")
        if size == 0:
            while line():  # trailer fields, up to the empty line
                pass
            return bytes(out)
        fill(size + 2)
        out += buf[:size]
        del buf[:size + 2]


def request(api_client: Any, method: str, path: str, body: bytes | None = None, *,
            content_type: str | None = "application/json",
            timeout: tuple[float, float] = (5.0, 5.0)) -> RawResponse:
    """:func:`send`, through ``api_client.call_raw`` when the client defines one (throttle, metrics,
    write gate)."""
    call_raw = getattr(api_client, "call_raw", None)
    if call_raw is not None:
        out: RawResponse = call_raw(method, path, body, content_type=content_type, timeout=timeout)
        return out
    return send(api_client, method, path, body, content_type=content_type, timeout=timeout)
