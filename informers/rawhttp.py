"""One short API request on the official client's connection pool, without its model layer.

``ApiClient.param_serialize`` + ``call_api`` walk every body through ``sanitize_for_serialization``,
encode it with the standard ``json`` module, build the request through two more layers and wrap the
answer; on a busy controller that was about a third of its CPU (bench/README.md). :func:`send` does
the same request directly: the body is already JSON bytes (orjson), the URL is the configuration's
host plus the path, the headers are the client's default headers (User-Agent) plus the bearer token
the configuration holds (refreshed by its hook, as ``param_serialize`` does), and it goes out on a
connection lent by the client's own urllib3 pool (same TLS settings, same pooled keep-alive
connections; checked for a dropped peer before reuse) but is written and read by ``http.client``
itself, without urllib3's response wrapping. Through a proxy (``ProxyManager``) it takes urllib3's
whole path instead. Per request this costs a third of ``call_api``'s CPU (0.6-0.7 ms against 1.7 ms
for a status patch on this machine, ``bench/README.md``).

Throttling, metrics and write priorities stay where they were: an ``ApiClient`` subclass that wants to
see every short request defines ``call_raw(method, path, body, content_type, timeout)`` with the
signature of :func:`send`, and :func:`request` calls it when it exists (``controller.client``'s
``ThrottledApiClient`` and ``reconcilers.gate``'s ``GatedApiClient`` do). Watches and LISTs keep
``call_api`` (streamed; their cost is in the events, not in the request).

Contract: thread-safe (the urllib3 pool is); raises ``urllib3.exceptions.HTTPError`` or ``OSError``
when no answer came (the caller maps them to its transport error); any HTTP status is an answer.
"""

from __future__ import annotations

import http.client
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import urllib3

__all__ = ["RawResponse", "request", "send"]


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    reason: str
    data: bytes


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
    return headers


_pools: weakref.WeakKeyDictionary[Any, tuple[str, Any, str]] = weakref.WeakKeyDictionary()


def _pool(api_client: Any, host: str) -> tuple[Any, str]:
    """The urllib3 pool for the API server and the path prefix of ``host`` (``https://lb/k8s/x``),
    remembered per pool manager; ``(None, "")`` for a ``ProxyManager`` (it routes by the full URL)."""
    manager = api_client.rest_client.pool_manager
    if isinstance(manager, urllib3.ProxyManager):
        return None, ""
    known = _pools.get(manager)
    if known is not None and known[0] == host and known[1].pool is not None:  # .pool is None once closed
        return known[1], known[2]
    pool = manager.connection_from_url(host)
    prefix = (urllib3.util.parse_url(host).path or "").rstrip("/")
    _pools[manager] = (host, pool, prefix)
    return pool, prefix


def send(api_client: Any, method: str, path: str, body: bytes | None = None, *,
         content_type: str | None = "application/json",
         timeout: tuple[float, float] = (5.0, 5.0)) -> RawResponse:
    """``method path`` with ``body`` (JSON bytes) on ``api_client``'s pool; the whole answer read."""
    cfg = api_client.configuration
    url = cfg.host + path
    headers = _headers(api_client, content_type if body is not None else None)
    pool, prefix = _pool(api_client, cfg.host)
    if pool is None:
        resp = api_client.rest_client.pool_manager.request(
            method, url, body=body, headers=headers, timeout=_timeout(*timeout), retries=False,
            redirect=False, preload_content=True)
        return RawResponse(int(resp.status), str(resp.reason or ""), bytes(resp.data))
    return _exchange(pool, method, prefix + path, body, headers, timeout)


def _exchange(pool: Any, method: str, path: str, body: bytes | None, headers: dict[str, str],
              timeout: tuple[float, float]) -> RawResponse:
    """One request/response on a pooled connection through ``http.client`` itself: urllib3's pool
    lends the connection (already checked for a dropped peer; connected with the client's TLS
    settings on first use) and gets it back afterwards, or an empty slot if anything failed."""
    conn = pool._get_conn()
    try:
        if conn.sock is None:
            conn.timeout = timeout[0]
            conn.connect()
        conn.sock.settimeout(timeout[1])
        http.client.HTTPConnection.request(conn, method, path, body, headers)
        resp = http.client.HTTPConnection.getresponse(conn)
        data = resp.read()
    except BaseException:
        conn.close()
        pool._put_conn(None)
        raise
    pool._put_conn(conn)
    return RawResponse(resp.status, resp.reason or "", data)


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
