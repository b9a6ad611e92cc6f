"""The shared informer: one reflector (one LIST + WATCH) per resource, fanned out to many handlers.

The design is client-go's ``RealFIFO`` path, without the queue in between: the reflector thread
applies each event to the indexer and calls every handler *inline*, under one dispatch lock, in event
order. Handlers must therefore be quick and must not block: enqueue a key into a workqueue and return
(:func:`informers.handlers.enqueue_handler` does exactly that). An exception raised by a handler is
logged and swallowed; it never stops the informer.

* ``on_add(obj, is_in_initial_list)``: ``is_in_initial_list`` is true for the objects of the first
  LIST and for the replay a handler added after start receives.
* ``on_update(old, new)``: also for every listed object on a relist, and for resyncs (``old is new``,
  same resourceVersion): resync replays the cache, it never calls the API server.
* ``on_delete(obj)``: ``obj`` is the last state, or a :class:`~informers.store.DeletedFinalStateUnknown`
  tombstone when the object vanished while the watch was down (found missing from a relist).

Objects handed to handlers and returned by the indexer are deep-frozen (read-only, see
:mod:`informers.frozen`) after the optional ``transform`` (e.g. :func:`~informers.store.drop_managed_fields`).

``compact=True`` keeps the cache as JSON bytes (:class:`~informers.store.Indexer`'s compact mode: ~1/4
of the memory, a decode per read). The LIST path then never holds the parsed list: the reflector
hands each page's objects to :meth:`SharedIndexInformer.prepare` as the page arrives (transform, then
encode), and ``replace`` decodes one object at a time for the handlers.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from informers.clock import Clock, RealClock
from informers.frozen import freeze
from informers.listwatch import ListerWatcher
from informers.reflector import Reflector, ReflectorConfig, ReflectorStats
from informers.store import (
    NAMESPACE_INDEX,
    DeletedFinalStateUnknown,
    Indexer,
    IndexFunc,
    Stored,
    meta_namespace_index_func,
    meta_namespace_key,
)

__all__ = [
    "MINIMUM_RESYNC_PERIOD",
    "HandlerRegistration",
    "ResourceEventHandler",
    "ResourceEventHandlerFuncs",
    "SharedIndexInformer",
]

log = structlog.get_logger(__name__)

Obj = Mapping[str, Any]
Transform = Callable[[dict[str, Any]], dict[str, Any]]

MINIMUM_RESYNC_PERIOD = 1.0


class ResourceEventHandler(Protocol):
    def on_add(self, obj: Obj, is_in_initial_list: bool) -> None: ...
    def on_update(self, old: Obj, new: Obj) -> None: ...
    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None: ...


@dataclass(frozen=True)
class ResourceEventHandlerFuncs:
    """A handler from optional functions (client-go ``ResourceEventHandlerFuncs``)."""

    add_func: Callable[[Obj, bool], None] | None = None
    update_func: Callable[[Obj, Obj], None] | None = None
    delete_func: Callable[[Obj | DeletedFinalStateUnknown], None] | None = None

    def on_add(self, obj: Obj, is_in_initial_list: bool) -> None:
        if self.add_func is not None:
            self.add_func(obj, is_in_initial_list)

    def on_update(self, old: Obj, new: Obj) -> None:
        if self.update_func is not None:
            self.update_func(old, new)

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        if self.delete_func is not None:
            self.delete_func(obj)


class HandlerRegistration:
    """Returned by ``add_event_handler``; pass it to ``remove_event_handler``."""

    def __init__(self, informer: SharedIndexInformer, handler: ResourceEventHandler, resync_period: float):
        self._informer = informer
        self.handler = handler
        self.resync_period = resync_period
        self.next_resync = 0.0
        self._synced = False

    def has_synced(self) -> bool:
        """True once the informer has synced and this handler has seen the whole initial content."""
        return self._synced and self._informer.has_synced()


class SharedIndexInformer:
    """One resource's cache plus its event handlers.

    Contract: ``start``/``stop`` from the owning thread; ``add_event_handler``,
    ``remove_event_handler``, ``has_synced``, ``wait_for_sync`` and the indexer from any thread. The
    reflector thread is the only writer of the indexer. ``_lock`` (re-entrant, so a handler may call back
    into the informer) is held while the indexer changes *and* the handlers are called, so a handler
    added at any moment sees every object exactly once: either in its replay or through a later event.
    The optional resync thread takes the same lock. Handlers run on those two threads, one at a time.
    """

    def __init__(
        self,
        lister_watcher: ListerWatcher,
        *,
        name: str = "",
        indexers: Mapping[str, IndexFunc] | None = None,
        transform: Transform | None = None,
        resync_period: float = 0.0,
        reflector_config: ReflectorConfig | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        watch_error_handler: Callable[[Exception], None] | None = None,
        compact: bool = False,
    ) -> None:
        self.name = name
        self._clock: Clock = clock or RealClock()
        self._transform = transform
        self.indexer = Indexer(
            meta_namespace_key, {NAMESPACE_INDEX: meta_namespace_index_func, **(indexers or {})},
            compact=compact,
        )
        self._lock = threading.RLock()
        self._cond = threading.Condition(threading.Lock())  # for waits: synced / stop / resync timer
        self._handlers: list[HandlerRegistration] = []
        self._default_resync = resync_period
        self._resync_check_period = resync_period
        self._synced = False
        self._started = False
        self._stopped = False
        self._resync_thread: threading.Thread | None = None
        self._initial_list = True
        self.reflector = Reflector(
            lister_watcher, self, name=name, config=reflector_config, clock=self._clock, rng=rng,
            watch_error_handler=watch_error_handler,
        )
        self._log = log.bind(informer=name)

    # -- handlers -----------------------------------------------------------------------------------

    def add_event_handler(
        self, handler: ResourceEventHandler, resync_period: float | None = None
    ) -> HandlerRegistration:
        """Register ``handler``. Added after start, it first receives the current content as adds
        (``is_in_initial_list=True``). ``resync_period`` defaults to the informer's."""
        period = self._default_resync if resync_period is None else resync_period
        if 0 < period < MINIMUM_RESYNC_PERIOD:
            period = MINIMUM_RESYNC_PERIOD
        with self._lock:
            if self._started:
                if period and period < self._resync_check_period:
                    period = self._resync_check_period  # client-go: cannot lower it after start
                if period and not self._resync_check_period:
                    self._log.warning("resync requested after start on an informer without resync; ignored")
                    period = 0.0
            elif period and (not self._resync_check_period or period < self._resync_check_period):
                self._resync_check_period = period
            reg = HandlerRegistration(self, handler, period)
            reg.next_resync = self._clock.now() + period
            self._handlers.append(reg)
            if self._synced:
                for obj in self.indexer.iter_objects():
                    self._call(reg, "on_add", obj, True)
            reg._synced = True
        return reg

    def remove_event_handler(self, registration: HandlerRegistration) -> None:
        with self._lock:
            if registration in self._handlers:
                self._handlers.remove(registration)

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        self.indexer.add_indexers(indexers)

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        self.reflector.start()
        if self._resync_check_period > 0:
            self._resync_thread = threading.Thread(target=self._resync_loop, name=f"resync-{self.name}",
                                                   daemon=True)
            self._resync_thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self.reflector.stop()
        if self._resync_thread is not None:
            self._resync_thread.join(timeout=30)

    def has_synced(self) -> bool:
        with self._cond:
            return self._synced

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Block until the first LIST is in the cache (True), or stop / ``timeout`` seconds (False)."""
        deadline = None if timeout is None else self._clock.now() + timeout
        with self._cond:
            while not self._synced and not self._stopped:
                left = None if deadline is None else deadline - self._clock.now()
                if left is not None and left <= 0:
                    break
                self._clock.wait(self._cond, left)
            return self._synced

    @property
    def last_sync_resource_version(self) -> str:
        return self.reflector.last_sync_resource_version

    def stats(self) -> ReflectorStats:
        return self.reflector.stats()

    # -- the reflector's store (reflector thread only) ----------------------------------------------

    def _prepare(self, obj: dict[str, Any]) -> Obj:
        if self._transform is not None:
            obj = self._transform(obj)
        frozen: Obj = freeze(obj)
        return frozen

    def prepare(self, obj: dict[str, Any]) -> Stored:
        """A listed object as the store keeps it (transformed; frozen, or encoded in compact mode).
        The reflector calls it on each page as it arrives, so a parsed page can be freed at once."""
        if not self.indexer.compact:
            return self._prepare(obj)
        if self._transform is not None:
            obj = self._transform(obj)
        return self.indexer.encode(obj)

    def replace(self, items: list[Stored], resource_version: str) -> None:
        """The content of a LIST, from ``prepare``: tombstones for the vanished objects, adds
        (first list) or updates (relists) for the rest. Compact mode decodes one object at a time."""
        decode = self.indexer.decode
        with self._lock:
            initial = self._initial_list
            old_items, new_items = self.indexer.replace_stored(items)
            handlers = list(self._handlers)
            for key, old in old_items.items():
                if key not in new_items and handlers:
                    tombstone = DeletedFinalStateUnknown(key, decode(old))
                    for reg in handlers:
                        self._call(reg, "on_delete", tombstone)
            for key, stored in new_items.items():
                if not handlers:
                    break
                obj = decode(stored)
                prev = old_items.get(key)
                if prev is None:
                    for reg in handlers:
                        self._call(reg, "on_add", obj, initial)
                else:
                    prev_obj = decode(prev)
                    for reg in handlers:
                        self._call(reg, "on_update", prev_obj, obj)
            self._initial_list = False
        with self._cond:
            if not self._synced:
                self._synced = True
                self._cond.notify_all()

    def add(self, obj: dict[str, Any]) -> None:
        self.update(obj)

    def update(self, obj: dict[str, Any]) -> None:
        frozen = self._prepare(obj)
        with self._lock:
            old = self.indexer.put(meta_namespace_key(frozen), frozen)
            for reg in list(self._handlers):
                if old is None:
                    self._call(reg, "on_add", frozen, False)
                else:
                    self._call(reg, "on_update", old, frozen)

    def delete(self, obj: dict[str, Any]) -> None:
        frozen = self._prepare(obj)
        with self._lock:
            self.indexer.delete_key(meta_namespace_key(frozen))
            for reg in list(self._handlers):
                self._call(reg, "on_delete", frozen)

    def _call(self, reg: HandlerRegistration, method: str, *args: Any) -> None:
        try:
            getattr(reg.handler, method)(*args)
        except Exception:
            self._log.exception("event handler raised", method=method)

    # -- resync -------------------------------------------------------------------------------------

    def _resync_loop(self) -> None:
        period = self._resync_check_period
        while True:
            with self._cond:
                deadline = self._clock.now() + period
                while not self._stopped and self._clock.now() < deadline:
                    self._clock.wait(self._cond, deadline - self._clock.now())
                if self._stopped:
                    return
                synced = self._synced
            if synced:
                self.resync()

    def resync(self) -> None:
        """Send ``on_update(obj, obj)`` for every cached object to each handler whose resync is due."""
        now = self._clock.now()
        with self._lock:
            due = [r for r in self._handlers if r.resync_period > 0 and r.next_resync <= now]
            if not due:
                return
            for reg in due:
                reg.next_resync = now + reg.resync_period
            for obj in self.indexer.iter_objects():  # compact mode: one decoded object at a time
                for reg in due:
                    self._call(reg, "on_update", obj, obj)
