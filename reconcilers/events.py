"""Kubernetes Events (core/v1) with client-side aggregation, posted from a bounded queue.

``EventRecorder.record(obj, type, reason, message)`` never blocks and never raises on API trouble: it
copies what it needs out of ``obj`` and appends to a bounded in-memory queue (when the queue is full,
the event is dropped and counted). One background thread drains the queue and writes to the API,
the way client-go's ``tools/record`` does:

* **Aggregation.** An LRU cache (4,096 entries, client-go's ``maxLruCacheEntries``) maps
  ``(involved object, type, reason, message)`` to the name and count of the Event already written for
  it. A repeat PATCHes ``count`` and ``lastTimestamp`` of that Event instead of creating a new one.
  Repeats that are queued together are folded into one write (``count += n``), so a retry storm
  costs one API call per batch, not one per occurrence.
* **Spam filter.** A token bucket per involved object (burst 25, one token per 300 s: client-go's
  ``defaultSpamBurst``/``defaultSpamQPS``) gates every write. Unlike client-go, a write the filter
  refuses is *deferred*, not dropped: the cache entry keeps counting occurrences and one write carrying
  all of them goes out when the bucket has a token again, so counts end up right and a storm costs one
  write per 300 s per object.
* **Names** are ``<object name>.<16 hex digits>`` (random, so two recorders never collide).
* A PATCH answered 404 (the Event expired, its TTL is an hour by default) creates a new Event with the
  total count. Writes go through an :class:`EventSink` (the API server; :class:`MemoryEventSink` in
  unit tests). Other API errors are logged and counted (``stats().failed``); the occurrences stay in
  the cache entry for the next write. There is no retry loop: Events are best effort.

Time: ``firstTimestamp``/``lastTimestamp`` come from ``now`` (wall clock, injectable); the spam
filter's token bucket runs on ``clock`` (an :class:`informers.Clock`, monotonic, injectable).
"""

from __future__ import annotations

import copy
import socket
import threading
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from secrets import token_hex
from typing import Any, Final, Protocol

import orjson
import structlog
import urllib3
from cachetools import LRUCache
from kubernetes import client

from informers import Clock, RealClock, rawhttp
from reconcilers.gate import Priority, priority

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ApiCallError",
    "ApiEventSink",
    "EventKey",
    "EventRecorder",
    "EventRecorderStats",
    "EventSink",
    "Involved",
    "LifeCycle",
    "MemoryEventSink",
    "SpamFilter",
    "api_request",
    "event_key",
    "event_name",
    "truncate_message",
]

log = structlog.get_logger(__name__)

#: client-go's ``maxLruCacheEntries``.
LRU_ENTRIES: Final = 4096
#: The longest message we write (events.k8s.io's note limit; core/v1 has none, but ``kubectl describe``
#: is not the place for a stack trace).
MAX_MESSAGE_BYTES: Final = 1024
MAX_REASON_CHARS: Final = 128
EVENT_TYPES: Final = frozenset({"Normal", "Warning"})
_NAME_MAX: Final = 253


MERGE_PATCH: Final = "application/merge-patch+json"


class ApiCallError(Exception):
    """An API request that did not succeed: ``status`` is the HTTP status (0: no answer - connection,
    TLS or timeout trouble); ``reason`` the Status reason when the server sent one. The message never
    carries a request body (it may hold secret values)."""

    def __init__(self, method: str, path: str, status: int, reason: str = "", detail: str = "") -> None:
        super().__init__(f"{method} {path}: {status or 'no answer'} {reason} {detail}".rstrip())
        self.status = status
        self.reason = reason


def api_request(
    api_client: client.ApiClient,
    method: str,
    path: str,
    body: Mapping[str, Any] | None = None,
    *,
    timeout: tuple[float, float],
    content_type: str = "application/json",
    query: list[tuple[str, str]] | None = None,
    expect: tuple[int, ...] = (200, 201),
) -> dict[str, Any]:
    """One API request with raw JSON (:func:`informers.rawhttp.request`, no generated models): returns
    the parsed body of an answer in ``expect``, raises :class:`ApiCallError` otherwise."""
    target = f"{path}?{urllib.parse.urlencode(query)}" if query else path
    data = rawhttp.dumps(body) if body is not None else None
    try:
        resp = rawhttp.request(api_client, method, target, data, content_type=content_type, timeout=timeout)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ApiCallError(method, path, 0, detail=type(exc).__name__) from exc
    status, raw = resp.status, resp.data
    try:
        parsed = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    if status in expect:
        return parsed
    reason = str(parsed.get("reason", "")) if parsed.get("kind") == "Status" else ""
    message = str(parsed.get("message", ""))[:300] if parsed.get("kind") == "Status" else ""
    raise ApiCallError(method, path, status, reason, message)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _format_time(t: datetime) -> str:
    """metav1.Time: RFC 3339 in UTC, whole seconds (what the API server stores for core/v1 Events)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def truncate_message(message: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """Cut ``message`` to at most ``limit`` UTF-8 bytes, never inside a character, marking the cut."""
    raw = message.encode("utf-8")
    if len(raw) <= limit:
        return message
    return raw[: limit - 3].decode("utf-8", errors="ignore") + "..."


def event_name(object_name: str) -> str:
    """``<object name>.<16 hex>``; the object name is shortened so the result is a valid name."""
    return f"{object_name[: _NAME_MAX - 17]}.{token_hex(8)}"


@dataclass(frozen=True)
class Involved:
    """What an Event's ``involvedObject`` says, copied out of the object (never a reference into it)."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str
    resource_version: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Involved:
        meta = obj.get("metadata") or {}
        return cls(str(obj.get("apiVersion", "")), str(obj.get("kind", "")), str(meta.get("name", "")),
                   str(meta.get("namespace", "")), str(meta.get("uid", "")),
                   str(meta.get("resourceVersion", "")))

    def to_dict(self) -> dict[str, str]:
        d = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name,
             "namespace": self.namespace, "uid": self.uid, "resourceVersion": self.resource_version}
        return {k: v for k, v in d.items() if v}

    @property
    def object_key(self) -> tuple[str, str, str, str]:
        """The spam filter's key: one bucket per object (not per resourceVersion)."""
        return (self.uid, self.kind, self.namespace, self.name)


#: The aggregation key: (uid, kind, namespace, name, type, reason, message), like client-go's
#: ``getEventKey`` without the source (one recorder = one source) and without the resourceVersion
#: (the object changes at every write; the Event is about the object).
EventKey = tuple[str, str, str, str, str, str, str]


def event_key(involved: Involved, type_: str, reason: str, message: str) -> EventKey:
    return (*involved.object_key, type_, reason, message)


class SpamFilter:
    """A token bucket per object key (client-go ``EventSourceObjectSpamFilter``): ``burst`` writes at
    once, then one per ``1/qps`` seconds. Buckets live in an LRU cache of the same size as the
    aggregation cache. Not thread-safe: only the recorder's thread uses it."""

    def __init__(self, clock: Clock, *, burst: int = 25, qps: float = 1.0 / 300.0,
                 entries: int = LRU_ENTRIES) -> None:
        if burst < 1 or qps <= 0:
            raise ValueError("burst must be >= 1 and qps > 0")
        self._clock = clock
        self._burst = float(burst)
        self._qps = qps
        self._buckets: LRUCache[tuple[str, str, str, str], tuple[float, float]] = LRUCache(entries)

    def reserve(self, key: tuple[str, str, str, str]) -> float:
        """Take a token for ``key`` and return 0.0, or return the seconds until one is available
        (taking nothing)."""
        now = self._clock.now()
        tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._qps)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._qps
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0


class EventSink(Protocol):
    """Where Events are written. Both methods raise :class:`ApiCallError` on failure (``status`` 404 from
    ``patch``: the Event is gone)."""

    def create(self, namespace: str, body: Mapping[str, Any]) -> None: ...
    def patch(self, namespace: str, name: str, body: Mapping[str, Any]) -> None: ...


class ApiEventSink:
    """:class:`EventSink` over the API server: POST, and merge-PATCH of ``count``/``lastTimestamp``."""

    def __init__(self, api_client: client.ApiClient, timeout: tuple[float, float] = (5.0, 10.0)) -> None:
        self._api = api_client
        self._timeout = timeout

    def create(self, namespace: str, body: Mapping[str, Any]) -> None:
        api_request(self._api, "POST", f"/api/v1/namespaces/{namespace}/events", body, timeout=self._timeout,
                    expect=(201,))

    def patch(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        api_request(self._api, "PATCH", f"/api/v1/namespaces/{namespace}/events/{name}", body,
                    timeout=self._timeout, content_type=MERGE_PATCH)


class MemoryEventSink:
    """An in-memory :class:`EventSink` for tests: ``events`` maps ``(namespace, name)`` to the Event as
    written (patches merged in); ``writes`` lists ``("create"|"patch", namespace, name)``. Set ``fail``
    to an HTTP status to make every write raise :class:`ApiCallError` with it. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []
        self.fail: int | None = None

    def create(self, namespace: str, body: Mapping[str, Any]) -> None:
        name = str(body["metadata"]["name"])
        with self._lock:
            if self.fail is not None:
                raise ApiCallError("POST", "events", self.fail)
            self.writes.append(("create", namespace, name))
            self.events[(namespace, name)] = copy.deepcopy(dict(body))

    def patch(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        with self._lock:
            if self.fail is not None:
                raise ApiCallError("PATCH", "events", self.fail)
            if (namespace, name) not in self.events:
                raise ApiCallError("PATCH", "events", 404, "NotFound")
            self.writes.append(("patch", namespace, name))
            self.events[(namespace, name)].update(copy.deepcopy(dict(body)))

    def delete(self, namespace: str, name: str) -> None:
        """Forget an Event (as its TTL would)."""
        with self._lock:
            self.events.pop((namespace, name), None)


class LifeCycle(StrEnum):
    NEW = "New"
    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


@dataclass(frozen=True)
class EventRecorderStats:
    recorded: int = 0  # accepted into the queue
    dropped: int = 0  # not accepted: queue full (or the recorder stopped)
    deferred: int = 0  # writes the spam filter postponed (the occurrences are written later)
    created: int = 0
    patched: int = 0
    failed: int = 0  # writes that failed (the occurrences wait for the key's next write)


@dataclass(frozen=True)
class _Item:
    involved: Involved
    type: str
    reason: str
    message: str
    at: datetime


class _Aggregate:
    """One cache entry: the Event written for a key (``name`` None: not written yet), the count the
    API has, the occurrences not written yet, and the latest occurrence (what a create writes).
    Mutable; only the recorder's thread touches it."""

    __slots__ = ("first", "last", "latest", "name", "namespace", "unsent", "written")

    def __init__(self, item: _Item) -> None:
        self.name: str | None = None
        self.namespace = ""
        self.written = 0
        self.unsent = 0
        self.first = item.at
        self.last = item.at
        self.latest = item


class EventRecorder:
    """Records core/v1 Events about objects, asynchronously.

    Contract: any thread may call :meth:`record` (non-blocking, O(1), never raises for API trouble;
    raises ``ValueError`` for a type other than Normal/Warning, a programming error), :meth:`stats`
    and :meth:`flush`. :meth:`start` and :meth:`stop` are called once each, by the owner. ``_cond``
    guards ``_queue``, ``_busy``, ``_state`` and ``_stats``; the aggregation cache, the spam filter and
    ``_deferred`` (key -> when the spam filter lets its write through) belong to the worker thread.
    Events recorded before :meth:`start` wait in the queue; :meth:`stop` writes what is queued
    (bounded by ``timeout``), abandons deferred writes, then ends the thread.

    Not guaranteed: that an Event is written at all (Events are best effort: full queue, API errors,
    LRU eviction of a deferred key), nor the order of writes across different keys within one batch.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        component: str = "workflow-controller",
        max_queue: int = 1000,
        clock: Clock | None = None,
        now: Callable[[], datetime] = _utc_now,
        instance: str | None = None,
        spam_burst: int = 25,
        spam_qps: float = 1.0 / 300.0,
        request_timeout: tuple[float, float] = (5.0, 10.0),
        sink: EventSink | None = None,
    ) -> None:
        self._sink: EventSink = sink or ApiEventSink(api_client, request_timeout)
        self._component = component
        self._instance = (instance or socket.gethostname())[:128]
        self._max_queue = max_queue
        self._now = now
        self._clock: Clock = clock or RealClock()
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._busy = False
        self._state = LifeCycle.NEW  # NEW -> RUNNING -> STOPPING -> STOPPED (or NEW -> STOPPED)
        self._stats = EventRecorderStats()
        self._cache: LRUCache[EventKey, _Aggregate] = LRUCache(LRU_ENTRIES)
        self._spam = SpamFilter(self._clock, burst=spam_burst, qps=spam_qps)
        self._deferred: dict[EventKey, float] = {}
        self._thread = threading.Thread(target=self._run, name="event-recorder", daemon=True)

    # -- any thread ---------------------------------------------------------------------------------

    def record(self, involved: Mapping[str, Any], type: str, reason: str, message: str) -> None:
        """Queue an Event about ``involved`` (the object's dict: apiVersion, kind, metadata). Never blocks."""
        if type not in EVENT_TYPES:
            raise ValueError(f"event type must be Normal or Warning, not {type!r}")
        item = _Item(Involved.of(involved), type, reason[:MAX_REASON_CHARS], truncate_message(message),
                     self._now())
        with self._cond:
            if len(self._queue) >= self._max_queue or self._state in (LifeCycle.STOPPING, LifeCycle.STOPPED):
                self._bump_locked(dropped=1)
                dropped = self._stats.dropped
            else:
                self._queue.append(item)
                self._bump_locked(recorded=1)
                self._cond.notify()
                return
        if dropped == 1 or dropped % 100 == 0:  # log the first drop and then every hundredth
            log.warning("event dropped", dropped=dropped, kind=item.involved.kind, name=item.involved.name,
                        reason=reason)

    def stats(self) -> EventRecorderStats:
        with self._cond:
            return self._stats

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait (real time, at most ``timeout`` s) until everything queued so far has been written or
        given up on, or deferred by the spam filter. True if the queue drained. For tests and shutdown."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._state is not LifeCycle.NEW:
                raise RuntimeError(f"EventRecorder already {self._state}")
            self._state = LifeCycle.RUNNING
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (within ``timeout``), then stop; later records are dropped."""
        with self._cond:
            started = self._state is LifeCycle.RUNNING
            self._state = LifeCycle.STOPPING if started else LifeCycle.STOPPED
            self._cond.notify_all()
        if started:
            self._thread.join(timeout)
            with self._cond:
                self._state = LifeCycle.STOPPED

    # -- the recorder's thread ----------------------------------------------------------------------

    def _run(self) -> None:
        with priority(Priority.BACKGROUND):  # Events pass the engine's write gate last
            self._loop()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and self._state is LifeCycle.RUNNING:
                    due = min(self._deferred.values(), default=None)
                    now = self._clock.now()
                    if due is None:
                        self._cond.wait()  # not on the clock: a fake clock counts only timed waits here
                    elif due <= now:
                        break
                    else:
                        self._clock.wait(self._cond, due - now)
                if not self._queue and self._state is not LifeCycle.RUNNING:
                    if self._deferred:
                        log.info("deferred event writes abandoned at stop", events=len(self._deferred))
                    return
                batch = list(self._queue)
                self._queue.clear()
                self._busy = True
            try:
                self._write_batch(batch)
                self._write_due()
            except Exception:  # never let the thread die; Events are best effort
                log.exception("event batch failed", events=len(batch))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write_batch(self, batch: list[_Item]) -> None:
        groups: dict[EventKey, list[_Item]] = {}
        for item in batch:
            groups.setdefault(event_key(item.involved, item.type, item.reason, item.message), []).append(item)
        for key, items in groups.items():
            agg = self._cache.get(key)
            if agg is None:
                agg = self._cache[key] = _Aggregate(items[0])
            agg.unsent += len(items)
            agg.last = max(agg.last, items[-1].at)
            agg.latest = items[-1]
            if key in self._deferred:
                continue  # its write is already scheduled and will carry these occurrences
            self._write(key, agg)

    def _write_due(self) -> None:
        now = self._clock.now()
        for key in [k for k, due in self._deferred.items() if due <= now]:
            del self._deferred[key]
            agg = self._cache.get(key)
            if agg is not None and agg.unsent:
                self._write(key, agg)

    def _write(self, key: EventKey, agg: _Aggregate) -> None:
        item = agg.latest
        wait = self._spam.reserve(item.involved.object_key)
        if wait > 0:
            self._deferred[key] = self._clock.now() + wait
            self._bump(deferred=1)
            return
        try:
            if agg.name is not None:
                try:
                    self._patch(agg)
                    self._bump(patched=1)
                    return
                except ApiCallError as exc:
                    if exc.status != 404:
                        raise
                    agg.name = None  # the Event expired: write a new one with the whole count
            self._create(item, agg)
            self._bump(created=1)
        except Exception as exc:  # best effort; the occurrences wait for the key's next write
            self._bump(failed=1)
            log.warning("event write failed", kind=item.involved.kind, name=item.involved.name,
                        reason=item.reason, status=getattr(exc, "status", None), error=type(exc).__name__)

    def _create(self, item: _Item, agg: _Aggregate) -> None:
        inv = item.involved
        namespace = inv.namespace or "default"
        name = event_name(inv.name or inv.kind.lower() or "object")
        total = agg.written + agg.unsent
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": inv.to_dict(),
            "type": item.type,
            "reason": item.reason,
            "message": item.message,
            "count": total,
            "firstTimestamp": _format_time(agg.first),
            "lastTimestamp": _format_time(agg.last),
            "source": {"component": self._component, "host": self._instance},
            "reportingComponent": self._component,
            "reportingInstance": self._instance,
        }
        self._sink.create(namespace, body)
        agg.name, agg.namespace, agg.written, agg.unsent = name, namespace, total, 0

    def _patch(self, agg: _Aggregate) -> None:
        assert agg.name is not None
        total = agg.written + agg.unsent
        self._sink.patch(agg.namespace, agg.name, {"count": total, "lastTimestamp": _format_time(agg.last)})
        agg.written, agg.unsent = total, 0

    def _bump(self, **delta: int) -> None:
        with self._cond:
            self._bump_locked(**delta)

    def _bump_locked(self, **delta: int) -> None:
        s = self._stats
        self._stats = EventRecorderStats(**{f.name: getattr(s, f.name) + delta.get(f.name, 0)
                                            for f in fields(s)})
