"""List and watch one resource through the official client, on raw JSON.

:class:`ListerWatcher` is the seam between the reflector and the API server; :class:`ApiListerWatcher`
implements it with ``ApiClient.param_serialize`` + ``ApiClient.call_api`` (the responses are raw
``urllib3`` responses, never the client's models) and :mod:`orjson`; the fake for unit tests is
:class:`informers.testing.FakeListerWatcher`.

A watch stream yields ``(type, object)`` pairs as the API server flushes them (one event per HTTP
chunk). Its read timeout is per ``recv``: a stream that stays silent for ``idle_timeout`` seconds
raises :class:`~informers.errors.WatchIdleTimeout`; the API server sends a bookmark about every
minute, so an idle timeout a little above that (default 90 s) only fires on a dead stream.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from informers.errors import ApiError, TransportError, WatchIdleTimeout

__all__ = ["ApiListerWatcher", "ListOptions", "ListPage", "ListerWatcher", "Resource", "WatchStream"]

WatchEvent = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource by group/version/plural; ``group=""`` is the core group (``/api/v1``)."""

    group: str
    version: str
    plural: str

    def __str__(self) -> str:
        return f"{self.plural}.{self.version}.{self.group}" if self.group else f"{self.plural}.{self.version}"

    def path(self, namespace: str | None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        ns = f"/namespaces/{namespace}" if namespace else ""
        return f"{base}{ns}/{self.plural}"


@dataclass(frozen=True, slots=True)
class ListOptions:
    """Per-request options; the lister-watcher adds its fixed namespace and selectors."""

    resource_version: str | None = None
    limit: int | None = None
    continue_token: str | None = None
    timeout_seconds: int | None = None
    allow_watch_bookmarks: bool = False


@dataclass(frozen=True, slots=True)
class ListPage:
    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str | None


class WatchStream(Protocol):
    """An open watch. Iterate it in one thread; ``close()`` may be called from any thread and makes
    the iteration end (or raise) promptly."""

    def __iter__(self) -> Iterator[WatchEvent]: ...
    def close(self) -> None: ...


class ListerWatcher(Protocol):
    def list(self, options: ListOptions) -> ListPage:
        """One LIST page; raises :class:`ApiError` or :class:`TransportError`."""
        ...

    def watch(self, options: ListOptions, *, idle_timeout: float) -> WatchStream:
        """Start a WATCH; raises :class:`ApiError` (e.g. 410) or :class:`TransportError` when it cannot
        start. The stream raises :class:`WatchIdleTimeout`, :class:`TransportError` or ends normally."""
        ...


class ApiListerWatcher:
    """Lists and watches ``resource`` in ``namespace`` (``None`` = all namespaces).

    Contract: thread-safe as far as the shared ``ApiClient`` is (its urllib3 pool is); one reflector
    uses one instance. Each open watch pins one pooled connection: size the client's
    ``connection_pool_maxsize`` for watches + workers.
    """

    def __init__(
        self,
        api_client: ApiClient,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        connect_timeout: float = 10.0,
        list_timeout: float = 60.0,
    ) -> None:
        self.api_client = api_client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.connect_timeout = connect_timeout
        self.list_timeout = list_timeout
        self._path = resource.path(namespace)

    def _query(self, options: ListOptions, watch: bool) -> list[tuple[str, Any]]:
        q: list[tuple[str, Any]] = []
        if watch:
            q.append(("watch", "true"))
        if options.resource_version is not None:
            q.append(("resourceVersion", options.resource_version))
        if options.limit:
            q.append(("limit", options.limit))
        if options.continue_token:
            q.append(("continue", options.continue_token))
        if options.timeout_seconds:
            q.append(("timeoutSeconds", options.timeout_seconds))
        if options.allow_watch_bookmarks:
            q.append(("allowWatchBookmarks", "true"))
        if self.label_selector:
            q.append(("labelSelector", self.label_selector))
        if self.field_selector:
            q.append(("fieldSelector", self.field_selector))
        return q

    def _request(self, options: ListOptions, *, watch: bool, read_timeout: float) -> urllib3.HTTPResponse:
        method, url, headers, body, post = self.api_client.param_serialize(
            "GET", self._path, query_params=self._query(options, watch),
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
        )
        try:
            rest = self.api_client.call_api(
                method, url, headers, body, post, _request_timeout=(self.connect_timeout, read_timeout)
            )
        except ApiException as exc:  # the client maps TLS errors to ApiException(status=0)
            raise TransportError(str(exc)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        resp: urllib3.HTTPResponse = rest.response
        if resp.status >= 300:
            try:
                data = resp.data
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            finally:
                resp.release_conn()
            raise _api_error(resp.status, resp.reason or "", data)
        return resp

    def list(self, options: ListOptions) -> ListPage:
        resp = self._request(options, watch=False, read_timeout=self.list_timeout)
        try:
            data = resp.data
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise TransportError(f"LIST read timeout: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            resp.release_conn()
        body = orjson.loads(data)
        meta = body.get("metadata") or {}
        rv = str(meta.get("resourceVersion", ""))
        return ListPage(body.get("items") or [], rv, meta.get("continue") or None)

    def watch(self, options: ListOptions, *, idle_timeout: float) -> WatchStream:
        return _HttpWatchStream(self._request(options, watch=True, read_timeout=idle_timeout))


def _api_error(status: int, reason: str, data: bytes) -> ApiError:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return ApiError.from_status(body, default_code=status)
    return ApiError(status, reason, data[:200].decode(errors="replace"))


class _HttpWatchStream:
    """Contract: one thread iterates; ``close`` may come from another thread and shuts the socket down,
    which unblocks the reader (it then sees the stream end or a TransportError, both fine when closing)."""

    def __init__(self, resp: urllib3.HTTPResponse) -> None:
        self._resp = resp
        self._lock = threading.Lock()
        self._closed = False

    def __iter__(self) -> Iterator[WatchEvent]:
        loads = orjson.loads
        buf = b""
        try:
            for chunk in self._resp.stream(amt=None, decode_content=True):
                if buf:
                    chunk = buf + chunk
                lines = chunk.split(b"\n")
                buf = lines.pop()
                for line in lines:
                    if line:
                        event = loads(line)
                        yield event["type"], event["object"]
            if buf.strip():  # a last event without its newline
                event = loads(buf)
                yield event["type"], event["object"]
        except Exception as exc:
            if self._closed:  # closed from another thread: any error the reader sees is expected
                return
            if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
                raise WatchIdleTimeout(f"watch stream silent longer than the idle timeout: {exc}") from exc
            if isinstance(exc, urllib3.exceptions.HTTPError | OSError | ValueError):
                raise TransportError(f"watch stream broke: {type(exc).__name__}: {exc}") from exc
            raise

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # shutdown() unblocks a reader in another thread; it raises RuntimeError when urllib3 already
        # released the connection, and ValueError when it already closed the response (after the
        # stream broke), both fine: nothing is reading any more then. Letting the ValueError out
        # turned every broken stream into a failed list/watch (backoff + full relist) instead of a
        # re-watch from the last resourceVersion.
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            self._resp.shutdown()
        with contextlib.suppress(Exception):
            self._resp.close()
        with contextlib.suppress(Exception):
            self._resp.release_conn()
