"""The reflector: keeps a store in step with one resource by LIST + WATCH (client-go ``reflector.go``).

Loop, as client-go's ``ListAndWatch`` under ``BackoffUntil(sliding)``:

1. **LIST**, paged (``limit=500`` + ``continue``). By default (``paged_consistent_lists``, not
   client-go) every list is a consistent read, ``RV=""``, which the API server pages: the client never
   parses more than one page at once. With ``paged_consistent_lists=False``, client-go's
   resourceVersion rules: the first list asks for ``RV="0"`` (served from the watch cache), later
   relists for ``RV=<last synced>`` ("not older than"), and after a 410 Expired / "too large RV" answer
   ``RV=""`` (a quorum read, retried at once). A list at a specific RV is not paged unless the first
   list came back paged — and the watch cache ignores ``limit`` for ``RV="0"`` (measured on 1.36: 1,200
   objects in one response to ``limit=500``), so those lists arrive whole. A 410 on a later page (the
   continue token expired) falls back to one full list. The result replaces the store content (the
   store turns vanished objects into tombstones).
2. **WATCH** from the list's RV with bookmarks, a server timeout random in [5, 10] min and a client
   read timeout (the *idle timeout*). Each event is applied to the store and the RV remembered.

   * a normal close (server timeout, EOF, connection reset mid-stream) → re-watch at once;
   * the stream is silent for the idle timeout (a stalled connection) → re-watch at once;
   * the watch cannot start because the server is unreachable or answers 429 → back off, re-watch;
   * a watch that ends in under 1 s without any event → :class:`VeryShortWatchError` → relist;
   * 410 Expired (HTTP status or ERROR event) or any other error → relist.
3. Before each relist the loop waits a backoff: 0.8 s doubling to 30 s, plus up to 100 % jitter, reset
   to 0.8 s once nothing backed off for 2 minutes.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from informers.clock import Clock, RealClock
from informers.errors import (
    ApiError,
    VeryShortWatchError,
    WatchIdleTimeout,
    is_expired,
    is_retriable_watch_error,
    is_too_large_resource_version,
)
from informers.listwatch import ListerWatcher, ListOptions, WatchStream

__all__ = ["Backoff", "Reflector", "ReflectorConfig", "ReflectorStats", "ReflectorStore"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ReflectorConfig:
    """Reflector settings; every default is client-go's unless noted."""

    #: LIST page size (``limit``); 0 disables paging.
    page_size: int = 500
    #: True (not client-go): every LIST is a consistent read (``RV=""``) paged by ``page_size``, so the
    #: client holds at most one parsed page: a 60,000-object list served from the watch cache at
    #: ``RV="0"`` comes in one response (the cache ignores ``limit``), parsed whole before the store sees
    #: an object. The price is on the API server: a consistent read (from its watch cache since
    #: Kubernetes 1.31's ConsistentListFromCache, from etcd before). False: client-go's rules (above).
    paged_consistent_lists: bool = True
    #: Server-side watch timeout: random in [min, 2*min] seconds per watch request.
    min_watch_timeout: float = 300.0
    #: Client read timeout of a watch, seconds: a stream silent this long is dead (not client-go:
    #: client-go has none; the API server sends a bookmark about every 60 s). The controller maps
    #: ``idleTimeoutMillSeconds`` here.
    watch_idle_timeout: float = 90.0
    #: Backoff before a relist / a retried watch: initial, cap (seconds), factor, jitter (fraction of the
    #: delay added at random), and the quiet period after which it resets to the initial delay.
    backoff_initial: float = 0.8
    backoff_max: float = 30.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 1.0
    backoff_reset: float = 120.0
    #: A watch that ends sooner than this, without any event, is an error.
    min_watch_duration: float = 1.0


class ReflectorStore(Protocol):
    """Where a reflector writes (the shared informer implements it). Called from the reflector thread.

    ``prepare`` turns each listed object into what ``replace`` takes (the store's own form, e.g. JSON
    bytes), page by page as the pages arrive, so the parsed pages need not be held until the end."""

    def prepare(self, obj: dict[str, Any]) -> Any: ...
    def replace(self, items: list[Any], resource_version: str) -> None: ...
    def add(self, obj: dict[str, Any]) -> None: ...
    def update(self, obj: dict[str, Any]) -> None: ...
    def delete(self, obj: dict[str, Any]) -> None: ...


@dataclass
class ReflectorStats:
    """Counters for health checks and tests (a snapshot copy is returned by ``Reflector.stats()``)."""

    lists: int = 0
    list_pages: int = 0
    watches: int = 0
    events: int = 0
    idle_timeouts: int = 0
    backoffs: int = 0
    errors: int = 0
    last_error: str = ""
    #: The resourceVersion each of the last (up to 16) LISTs asked for.
    list_resource_versions: list[str] = field(default_factory=list)


class Backoff:
    """client-go's ``exponentialBackoffManager`` as a value with an injected clock.

    Contract: used by one thread (the reflector's).
    """

    def __init__(self, config: ReflectorConfig, clock: Clock, rng: random.Random) -> None:
        self._c = config
        self._clock = clock
        self._rng = rng
        self._next = config.backoff_initial
        self._last_start: float | None = None

    def next_delay(self) -> float:
        now = self._clock.now()
        if self._last_start is None or now - self._last_start > self._c.backoff_reset:
            self._next = self._c.backoff_initial
        self._last_start = now
        delay = self._next
        self._next = min(delay * self._c.backoff_factor, self._c.backoff_max)
        return delay + self._rng.random() * self._c.backoff_jitter * delay


class _Stop(Exception):
    pass


class Reflector:
    """Mirrors one resource into a :class:`ReflectorStore`.

    Contract: ``run`` (or the thread from ``start``) is the only thread that calls the lister-watcher
    and the store. ``stop`` may be called from any thread: it wakes a backoff wait and closes the open
    watch so ``run`` returns promptly. ``last_sync_resource_version`` and ``stats`` may be read from
    any thread. ``_lock`` guards ``_stopped``, ``_stream`` and the stats.
    """

    def __init__(
        self,
        lister_watcher: ListerWatcher,
        store: ReflectorStore,
        *,
        name: str = "",
        config: ReflectorConfig | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        watch_error_handler: Callable[[Exception], None] | None = None,
    ) -> None:
        self.name = name
        self._lw = lister_watcher
        self._store = store
        self._config = config or ReflectorConfig()
        self._clock: Clock = clock or RealClock()
        self._rng = rng or random.Random()
        self._error_handler = watch_error_handler
        self._backoff = Backoff(self._config, self._clock, self._rng)
        self._lock = threading.Condition()
        self._stopped = False
        self._stream: WatchStream | None = None
        self._thread: threading.Thread | None = None
        self._last_rv = ""
        self._rv_unavailable = False
        self._paginated = False
        self._stats = ReflectorStats()
        self._log = log.bind(reflector=name)

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"reflector-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, join: bool = True) -> None:
        with self._lock:
            self._stopped = True
            stream = self._stream
            self._lock.notify_all()
        if stream is not None:
            stream.close()
        if join and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def run(self) -> None:
        """Block until ``stop``: list and watch, backing off between relists."""
        while not self._is_stopped():
            try:
                self.list_and_watch()
            except _Stop:
                return
            except Exception as exc:
                self._report(exc)
            try:
                self._back_off()
            except _Stop:
                return

    @property
    def last_sync_resource_version(self) -> str:
        with self._lock:
            return self._last_rv

    def stats(self) -> ReflectorStats:
        with self._lock:
            s = self._stats
            return ReflectorStats(s.lists, s.list_pages, s.watches, s.events, s.idle_timeouts, s.backoffs,
                                  s.errors, s.last_error, list(s.list_resource_versions))

    # -- one list + watch cycle ---------------------------------------------------------------------

    def list_and_watch(self) -> None:
        """One LIST, then WATCH until a relist is needed (returns or raises) or ``stop`` (raises _Stop)."""
        self._list()
        self._watch_loop()

    def _relist_resource_version(self) -> str:
        if self._rv_unavailable or self._config.paged_consistent_lists:
            return ""
        return self._last_rv or "0"

    def _list(self) -> None:
        rv = self._relist_resource_version()
        try:
            items, list_rv = self._list_pages(rv)
        except ApiError as exc:
            if not (is_expired(exc) or is_too_large_resource_version(exc)):
                raise
            # The RV we asked for is gone (or not there yet): retry at once with a quorum read.
            self._rv_unavailable = True
            self._log.info("relisting with a quorum read", resource_version=rv, error=str(exc))
            items, list_rv = self._list_pages("")
        self._check_stop()
        self._store.replace(items, list_rv)
        with self._lock:
            self._last_rv = list_rv
            self._stats.lists += 1
            self._stats.list_resource_versions.append(rv)
            del self._stats.list_resource_versions[:-16]  # keep the last few, for tests and debugging
        self._rv_unavailable = False

    def _list_pages(self, rv: str) -> tuple[list[Any], str]:
        """The listed objects, each already through ``store.prepare``, and the list's RV."""
        page_size = self._config.page_size
        if rv not in ("", "0") and not self._paginated:
            page_size = 0  # let the watch cache serve a list at a specific RV
        prepare = self._store.prepare
        items: list[Any] = []
        token: str | None = None
        while True:
            self._check_stop()
            opts = ListOptions(resource_version=rv if token is None else None,
                               limit=page_size or None, continue_token=token)
            try:
                page = self._lw.list(opts)
                with self._lock:
                    self._stats.list_pages += 1
            except ApiError as exc:
                if token is None or not is_expired(exc):
                    raise
                # The continue token expired between pages: one full, unpaged list instead.
                self._log.info("continue token expired; listing without paging")
                page = self._lw.list(ListOptions(resource_version=rv))
                return [prepare(o) for o in page.items], page.resource_version
            items.extend(map(prepare, page.items))
            if token is None and rv == "0" and page.continue_token:
                self._paginated = True
            list_rv, token = page.resource_version, page.continue_token
            del page  # the parsed page is garbage now, before the next one is fetched
            if not token:
                return items, list_rv

    def _watch_loop(self) -> None:
        c = self._config
        while True:
            self._check_stop()
            timeout = int(self._rng.uniform(c.min_watch_timeout, 2 * c.min_watch_timeout))
            opts = ListOptions(resource_version=self._last_rv, timeout_seconds=timeout,
                               allow_watch_bookmarks=True)
            started = self._clock.now()
            try:
                stream = self._lw.watch(opts, idle_timeout=c.watch_idle_timeout)
            except Exception as exc:
                if is_retriable_watch_error(exc):
                    self._report(exc)
                    self._back_off()
                    continue
                raise  # 410 Expired and everything else: relist
            with self._lock:
                self._stats.watches += 1
                if self._stopped:
                    stream.close()
                    raise _Stop()
                self._stream = stream
            try:
                count = self._handle_watch(stream)
            except WatchIdleTimeout as exc:
                with self._lock:
                    self._stats.idle_timeouts += 1
                self._report(exc)
                continue  # a stalled stream: re-watch from the last RV at once
            except ApiError as exc:
                if exc.status == 429:
                    self._report(exc)
                    self._back_off()
                    continue
                if is_too_large_resource_version(exc):
                    self._rv_unavailable = True  # client-go: the next list is a quorum read
                raise
            except Exception as exc:
                if is_retriable_watch_error(exc):  # the connection broke mid-stream: like a close
                    self._log.info("watch stream broke; re-watching", error=str(exc))
                    continue
                raise
            finally:
                with self._lock:
                    self._stream = None
                stream.close()
            self._check_stop()
            if count == 0 and self._clock.now() - started < c.min_watch_duration:
                raise VeryShortWatchError(
                    f"watch of {self.name} closed after less than {c.min_watch_duration}s without events"
                )

    def _handle_watch(self, stream: WatchStream) -> int:
        count = 0
        store = self._store
        for typ, obj in stream:
            if typ == "ERROR":
                raise ApiError.from_status(obj)
            rv = obj["metadata"]["resourceVersion"]
            if typ == "ADDED":
                store.add(obj)
            elif typ == "MODIFIED":
                store.update(obj)
            elif typ == "DELETED":
                store.delete(obj)
            elif typ != "BOOKMARK":
                self._log.warning("unknown watch event type; skipped", type=typ)
                continue
            count += 1
            with self._lock:
                self._last_rv = rv
                self._stats.events += 1
        return count

    # -- helpers ------------------------------------------------------------------------------------

    def _is_stopped(self) -> bool:
        with self._lock:
            return self._stopped

    def _check_stop(self) -> None:
        if self._is_stopped():
            raise _Stop()

    def _back_off(self) -> None:
        delay = self._backoff.next_delay()
        deadline = self._clock.now() + delay
        with self._lock:
            self._stats.backoffs += 1
            while not self._stopped:
                left = deadline - self._clock.now()
                if left <= 0:
                    return
                self._clock.wait(self._lock, left)
        raise _Stop()

    def _report(self, exc: Exception) -> None:
        with self._lock:
            self._stats.errors += 1
            self._stats.last_error = f"{type(exc).__name__}: {exc}"
        if is_expired(exc):
            self._log.info("watch expired; relisting", error=str(exc))
        else:
            self._log.warning("list/watch failed", error=f"{type(exc).__name__}: {exc}")
        if self._error_handler is not None:
            try:
                self._error_handler(exc)
            except Exception:
                self._log.exception("watch error handler raised")
