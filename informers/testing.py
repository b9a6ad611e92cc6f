"""Test doubles shipped with the package: plugin and controller authors test with what we test with.

* :class:`FakeListerWatcher` — an in-memory resource with resourceVersions, paging, watch streams,
  compaction (410) and scripted failures; implements :class:`~informers.listwatch.ListerWatcher`.
* :class:`RecordingHandler` — records every handler call.
* :class:`InMemoryMetricsProvider` — workqueue metrics you can read back.
* :class:`~informers.clock.FakeClock` is re-exported.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from informers.clock import FakeClock
from informers.errors import ApiError, InformerError, TransportError, WatchIdleTimeout
from informers.frozen import thaw
from informers.listwatch import ListOptions, ListPage, WatchStream
from informers.store import DeletedFinalStateUnknown, meta_namespace_key

__all__ = [
    "FakeClock",
    "FakeListerWatcher",
    "FakeWatch",
    "InMemoryMetricsProvider",
    "RecordingHandler",
    "TcpProxy",
    "wait_until",
]

Obj = Mapping[str, Any]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` (real time, bounded) — for waiting on *another thread's* progress in tests,
    never to paper over a race."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.002)


_END = object()


class FakeWatch:
    """One open fake watch. Contract: one reader thread; everything else from any thread."""

    def __init__(self, options: ListOptions) -> None:
        self.options = options
        self._cond = threading.Condition()
        self._events: deque[Any] = deque()
        self.closed = False

    def push(self, item: Any) -> None:
        with self._cond:
            self._events.append(item)
            self._cond.notify_all()

    def end(self) -> None:
        """End the stream normally (like a server timeout)."""
        self.push(_END)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while True:
            with self._cond:
                while not self._events and not self.closed:
                    self._cond.wait()
                if self.closed:
                    return
                item = self._events.popleft()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


@dataclass
class _Script:
    list_errors: deque[InformerError] = field(default_factory=deque)
    list_skip: int = 0
    watch_errors: deque[InformerError] = field(default_factory=deque)


class FakeListerWatcher:
    """An in-memory resource behind the :class:`~informers.listwatch.ListerWatcher` protocol.

    Contract: thread-safe; the reflector calls ``list``/``watch`` from its thread while the test
    mutates objects from its own. Every change bumps a global resourceVersion and is kept in a history
    so a watch from an older RV replays what it missed, unless the history was compacted past it (then
    the watch gets an ERROR event with code 410, as the API server's watch cache sends). Lists and
    watches return fresh plain dicts. ``list_calls`` / ``watch_calls`` record the options received.
    """

    def __init__(self, objects: list[dict[str, Any]] | None = None) -> None:
        self._lock = threading.Condition()
        self._rv = 0
        self._compacted = 0
        self._objects: dict[str, dict[str, Any]] = {}
        self._history: list[tuple[int, str, dict[str, Any]]] = []
        self._watches: list[FakeWatch] = []
        self._script = _Script()
        self.list_calls: list[ListOptions] = []
        self.watch_calls: list[ListOptions] = []
        for obj in objects or ():
            self.create(obj)

    # -- mutating the resource (the "other client") -------------------------------------------------

    def _emit_locked(self, typ: str, obj: dict[str, Any]) -> None:
        self._rv += 1
        obj = thaw(obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
        self._history.append((self._rv, typ, obj))
        for w in self._watches:
            if not w.closed:
                w.push((typ, thaw(obj)))
        key = meta_namespace_key(obj)
        if typ == "DELETED":
            self._objects.pop(key, None)
        else:
            self._objects[key] = obj

    def create(self, obj: Obj) -> str:
        with self._lock:
            self._emit_locked("ADDED", dict(obj))
            return str(self._rv)

    def modify(self, obj: Obj) -> str:
        with self._lock:
            self._emit_locked("MODIFIED", dict(obj))
            return str(self._rv)

    def delete(self, key: str) -> str:
        with self._lock:
            self._emit_locked("DELETED", self._objects[key])
            return str(self._rv)

    def delete_silently(self, key: str) -> None:
        """Remove an object without any watch event (it vanished while the watch was down)."""
        with self._lock:
            self._rv += 1
            del self._objects[key]
            self._history.append((self._rv, "SILENT", {}))

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self._objects.get(key)
            return thaw(obj) if obj is not None else None

    def resource_version(self) -> str:
        with self._lock:
            return str(self._rv)

    # -- scripting failures -------------------------------------------------------------------------

    def compact(self) -> None:
        """Forget the history: a watch from any older RV now gets 410 Expired."""
        with self._lock:
            self._compacted = self._rv

    def fail_next_list(self, error: InformerError, *, after: int = 0) -> None:
        """Make a coming ``list`` call raise ``error``: the next one, or the one after ``after``
        successful calls (e.g. ``after=1`` fails the second page of a paged list)."""
        with self._lock:
            self._script.list_errors.append(error)
            self._script.list_skip = after

    def fail_next_watch(self, error: InformerError) -> None:
        with self._lock:
            self._script.watch_errors.append(error)

    def open_watches(self) -> list[FakeWatch]:
        with self._lock:
            return [w for w in self._watches if not w.closed]

    def end_watches(self) -> None:
        """End every open watch normally."""
        for w in self.open_watches():
            w.end()

    def expire_watches(self) -> None:
        """Send an ERROR 410 event on every open watch."""
        for w in self.open_watches():
            w.push(("ERROR", {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}))

    def stall_watches(self) -> None:
        """Make every open watch report an idle timeout (a stalled connection)."""
        for w in self.open_watches():
            w.push(WatchIdleTimeout("fake stall"))

    def break_watches(self) -> None:
        for w in self.open_watches():
            w.push(TransportError("connection reset by fake"))

    def bookmark(self) -> None:
        with self._lock:
            for w in self._watches:
                if not w.closed:
                    w.push(("BOOKMARK", {"kind": "Widget", "metadata": {"resourceVersion": str(self._rv)}}))

    def wait_for_watches(self, n: int, timeout: float = 10.0) -> None:
        """Block until ``watch`` was called at least ``n`` times in total."""
        end = time.monotonic() + timeout
        with self._lock:
            while len(self.watch_calls) < n:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.watch_calls)} watch calls, expected {n}")
                self._lock.wait(left)

    def wait_for_lists(self, n: int, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        with self._lock:
            while len(self.list_calls) < n:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.list_calls)} list calls, expected {n}")
                self._lock.wait(left)

    # -- ListerWatcher ------------------------------------------------------------------------------

    def list(self, options: ListOptions) -> ListPage:
        with self._lock:
            self.list_calls.append(options)
            self._lock.notify_all()
            if self._script.list_errors:
                if self._script.list_skip > 0:
                    self._script.list_skip -= 1
                else:
                    raise self._script.list_errors.popleft()
            keys = sorted(self._objects)
            start = 0
            snapshot = self._rv
            if options.continue_token:
                rv_s, _, start_s = options.continue_token.partition(":")
                if int(rv_s) < self._compacted:
                    raise ApiError(410, "Expired", "continue token expired")
                snapshot, start = int(rv_s), int(start_s)
            end = len(keys) if not options.limit else min(len(keys), start + options.limit)
            items = [thaw(self._objects[k]) for k in keys[start:end]]
            token = f"{snapshot}:{end}" if end < len(keys) else None
            return ListPage(items, str(snapshot), token)

    def watch(self, options: ListOptions, *, idle_timeout: float) -> WatchStream:
        with self._lock:
            self.watch_calls.append(options)
            self._lock.notify_all()
            if self._script.watch_errors:
                raise self._script.watch_errors.popleft()
            w = FakeWatch(options)
            since = int(options.resource_version or 0)
            if since < self._compacted:
                w.push(("ERROR", {"kind": "Status", "code": 410, "reason": "Expired",
                                  "message": f"too old resource version: {since} ({self._compacted})"}))
            else:
                for rv, typ, obj in self._history:
                    if rv > since and typ != "SILENT":
                        w.push((typ, thaw(obj)))
            self._watches.append(w)
            return w


@dataclass
class RecordingHandler:
    """Records ``(kind, ...)`` tuples for every call. Thread-safe enough for tests (list.append)."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def on_add(self, obj: Obj, is_in_initial_list: bool) -> None:
        self.calls.append(("add", meta_namespace_key(obj), obj["metadata"].get("resourceVersion"),
                           is_in_initial_list))

    def on_update(self, old: Obj, new: Obj) -> None:
        self.calls.append(("update", meta_namespace_key(new), old["metadata"].get("resourceVersion"),
                           new["metadata"].get("resourceVersion")))

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        tomb = isinstance(obj, DeletedFinalStateUnknown)
        self.calls.append(("delete", meta_namespace_key(obj), tomb))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in list(self.calls) if c[0] == kind]


class _Metric:
    def __init__(self) -> None:
        self.value = 0.0
        self.observations: list[float] = []
        self._lock = threading.Lock()

    def inc(self) -> None:
        with self._lock:
            self.value += 1

    def dec(self) -> None:
        with self._lock:
            self.value -= 1

    def set(self, value: float) -> None:
        with self._lock:
            self.value = value

    def observe(self, value: float) -> None:
        with self._lock:
            self.observations.append(value)


class InMemoryMetricsProvider:
    """Keeps every metric in ``metrics[(metric name, queue name)]``."""

    def __init__(self) -> None:
        self.metrics: dict[tuple[str, str], _Metric] = {}

    def _get(self, metric: str, name: str) -> _Metric:
        return self.metrics.setdefault((metric, name), _Metric())

    def new_depth_metric(self, name: str) -> _Metric:
        return self._get("workqueue_depth", name)

    def new_adds_metric(self, name: str) -> _Metric:
        return self._get("workqueue_adds_total", name)

    def new_latency_metric(self, name: str) -> _Metric:
        return self._get("workqueue_queue_duration_seconds", name)

    def new_work_duration_metric(self, name: str) -> _Metric:
        return self._get("workqueue_work_duration_seconds", name)

    def new_unfinished_work_seconds_metric(self, name: str) -> _Metric:
        return self._get("workqueue_unfinished_work_seconds", name)

    def new_longest_running_processor_seconds_metric(self, name: str) -> _Metric:
        return self._get("workqueue_longest_running_processor_seconds", name)

    def new_retries_metric(self, name: str) -> _Metric:
        return self._get("workqueue_retries_total", name)


class TcpProxy:
    """A loopback TCP forwarder with switches, for drills against a *real* API server.

    ``stall()`` freezes every open connection: sockets stay open, no byte moves in either direction
    (a half-dead load balancer, a hung NAT entry); new connections are forwarded normally.
    ``cut()`` closes every open connection and closes new ones at once until ``restore()``.

    Contract: ``start``/``stop``/switches from the test thread; two pump threads per connection and one
    accept thread. TLS passes through untouched (the proxy sees bytes only).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        import socket

        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._conns: list[_ProxyConn] = []
        self._refuse = False
        self._stopped = False
        self.connections_accepted = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()
        self.cut()

    def stall(self) -> None:
        with self._lock:
            for c in self._conns:
                c.stalled = True

    def cut(self) -> None:
        with self._lock:
            self._refuse = True
            conns, self._conns = self._conns, []
        for c in conns:
            c.close()

    def restore(self) -> None:
        with self._lock:
            self._refuse = False

    def _accept_loop(self) -> None:
        import socket

        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refuse = self._refuse
                self.connections_accepted += 1
            if refuse:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            conn = _ProxyConn(client, upstream)
            with self._lock:
                self._conns.append(conn)
            conn.start()


class _ProxyConn:
    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b
        self.stalled = False
        self.closed = False

    def start(self) -> None:
        for src, dst in ((self.a, self.b), (self.b, self.a)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: Any, dst: Any) -> None:
        import select

        while not self.closed:
            if self.stalled:
                time.sleep(0.05)
                continue
            try:
                ready, _, _ = select.select([src], [], [], 0.05)
                if not ready or self.stalled:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            except OSError:
                break
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for s in (self.a, self.b):
            with contextlib.suppress(OSError):
                s.close()
