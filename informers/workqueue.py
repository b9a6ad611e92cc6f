"""The plain workqueue, with client-go's contract (``util/workqueue/queue.go``).

* An item is **dirty** when it needs processing and **processing** while a worker holds it.
* ``add(x)``: ignored while shutting down; a no-op if ``x`` is already dirty (but see priorities);
  otherwise ``x`` becomes dirty and, unless it is being processed, ready for ``get``.
* ``get()`` hands out the oldest ready item and moves it from dirty to processing: **an item is never
  handed to two workers at once**.
* ``done(x)`` ends processing; if ``x`` was added meanwhile it becomes ready again, so an add during
  processing causes **exactly one** more run.
* ``shutdown()`` makes adds no-ops and wakes every ``get``; ``get`` still drains ready items first and
  reports shutdown only when none is left. ``shutdown_with_drain()`` also waits until every item
  handed out has been ``done``.

Priorities (controller-runtime's priority queue, reduced to two levels): ``add(x, low_priority=True)``
puts ``x`` behind every normal-priority item. Adding an item already waiting at low priority with
normal priority raises it (the higher priority wins, never the reverse). Within a level, FIFO.
``max_low_in_flight`` (None: no limit) caps how many low-priority items are processing at once: a
worker does not take a low-priority item while that many are processing, so work at low priority that
blocks (on a shared resource that serves normal priority first) can never hold every worker.

Use it as ``with queue.get() as key: ...`` (``done`` cannot be forgotten; raises :class:`ShutDown`
when the queue is shut down and drained), or ``key, shutdown = queue.get()`` then ``queue.done(key)``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable
from types import TracebackType
from typing import Generic, NamedTuple, TypeVar

from informers.clock import Clock, RealClock
from informers.metrics import MetricsProvider, NoopMetricsProvider, QueueMetrics

__all__ = ["Got", "Queue", "ShutDown"]

T = TypeVar("T", bound=Hashable)

_HIGH, _LOW = 0, 1


class ShutDown(Exception):
    """Raised by ``with queue.get()`` once the queue is shut down and has nothing left to hand out."""


class Got(NamedTuple, Generic[T]):
    """What :meth:`Queue.get` returns: unpack it (``key, shutdown = q.get()``) or use it as a context
    manager (``with q.get() as key:``) which calls ``done`` on exit."""

    key: T | None
    shutdown: bool
    queue: Queue[T]

    def __enter__(self) -> T:
        if self.shutdown or self.key is None:
            raise ShutDown()
        return self.key

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.shutdown and self.key is not None:
            self.queue.done(self.key)


class Queue(Generic[T]):
    """A thread-safe work queue. See the module docstring for the semantics.

    Contract: any thread may call any method; workers call ``get``/``done`` in pairs. One condition
    ``_cond`` guards everything. Invariants (with ``_cond`` held):

    * ``_dirty`` maps every dirty item to ``(level, seq)``;
    * every dirty item that is not in ``_processing`` has exactly one *live* entry ``(item, seq)`` in the
      deque of its level; an entry is live iff ``_dirty[item] == (level, seq)`` and the item is not
      processing. Raising an item's priority leaves a dead entry behind in the low deque, skipped on pop;
    * ``_ready`` counts live entries; it is ``len()`` and the depth metric;
    * an item in ``_processing`` was handed out by ``get`` and has not been ``done`` yet.

    Not guaranteed: fairness between workers; that ``done`` is called for an item that was never handed
    out (it is ignored).
    """

    def __init__(
        self,
        name: str = "",
        *,
        clock: Clock | None = None,
        metrics_provider: MetricsProvider | None = None,
    ) -> None:
        self.name = name
        self._clock: Clock = clock or RealClock()
        self._cond = threading.Condition()
        self._queues: tuple[deque[tuple[T, int]], deque[tuple[T, int]]] = (deque(), deque())
        self._dirty: dict[T, tuple[int, int]] = {}
        self._processing: set[T] = set()
        self._processing_low: set[T] = set()
        #: At most this many low-priority items processing at once (None: no limit).
        self.max_low_in_flight: int | None = None
        self._ready = 0
        self._ready_level = [0, 0]
        self._seq = 0
        self._shutting_down = False
        self._drain = False
        self._metrics = QueueMetrics(name, metrics_provider or NoopMetricsProvider(), self._clock)

    # -- producer side ------------------------------------------------------------------------------

    def add(self, item: T, *, low_priority: bool = False) -> None:
        with self._cond:
            self._add_locked(item, _LOW if low_priority else _HIGH)

    def _add_locked(self, item: T, level: int) -> None:
        if self._shutting_down:
            return
        current = self._dirty.get(item)
        if current is not None:
            if level < current[0]:  # raise the priority, never lower it
                self._seq += 1
                self._dirty[item] = (level, self._seq)
                if item not in self._processing:
                    self._queues[level].append((item, self._seq))  # the old low entry is now dead
                    self._ready_level[current[0]] -= 1
                    self._ready_level[level] += 1
                    self._cond.notify()
            return
        self._seq += 1
        self._dirty[item] = (level, self._seq)
        self._metrics.add(item)
        if item in self._processing:
            return  # done() makes it ready again
        self._queues[level].append((item, self._seq))
        self._ready += 1
        self._ready_level[level] += 1
        self._cond.notify()

    # -- consumer side ------------------------------------------------------------------------------

    def get(self) -> Got[T]:
        """Block until an item is ready (or the queue is shut down and empty)."""
        with self._cond:
            while not self._takeable_locked() and not self._shutting_down:
                self._cond.wait()
            if self._ready == 0:
                return Got(None, True, self)
            item = self._pop_locked(low=self._low_allowed_locked() or self._shutting_down)
            return Got(item, False, self)

    def _low_allowed_locked(self) -> bool:
        cap = self.max_low_in_flight
        return cap is None or len(self._processing_low) < cap

    def _takeable_locked(self) -> bool:
        return self._ready_level[_HIGH] > 0 or (self._ready_level[_LOW] > 0 and self._low_allowed_locked())

    def _pop_locked(self, *, low: bool = True) -> T:
        for level, q in enumerate(self._queues):
            if level == _LOW and not low:
                break
            while q:
                item, seq = q.popleft()
                if self._dirty.get(item) == (level, seq) and item not in self._processing:
                    del self._dirty[item]
                    self._processing.add(item)
                    if level == _LOW:
                        self._processing_low.add(item)
                    self._ready -= 1
                    self._ready_level[level] -= 1
                    self._metrics.get(item)
                    return item
        raise AssertionError("workqueue invariant broken: _ready > 0 but no live entry")

    def done(self, item: T) -> None:
        with self._cond:
            if item not in self._processing:
                return
            self._processing.discard(item)
            if item in self._processing_low:
                self._processing_low.discard(item)
                self._cond.notify()  # a worker may take a low-priority item again
            self._metrics.done(item)
            entry = self._dirty.get(item)
            if entry is not None:
                self._queues[entry[0]].append((item, entry[1]))
                self._ready += 1
                self._ready_level[entry[0]] += 1
                self._cond.notify()
            if self._drain and not self._processing:
                self._cond.notify_all()

    # -- life cycle ---------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop accepting adds and wake all waiters; ``get`` drains what is ready, then reports shutdown."""
        with self._cond:
            self._shutting_down = True
            self._cond.notify_all()

    def shutdown_with_drain(self) -> None:
        """Like :meth:`shutdown`, then block until every item handed out has been ``done`` (as client-go,
        it does not wait for ready items that no worker picks up)."""
        with self._cond:
            self._drain = True
            self._shutting_down = True
            self._cond.notify_all()
            while self._processing:
                self._cond.wait()

    def shutting_down(self) -> bool:
        with self._cond:
            return self._shutting_down

    # -- inspection ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Items ready to be handed out (client-go ``Len``)."""
        with self._cond:
            return self._ready

    def processing(self) -> int:
        with self._cond:
            return len(self._processing)

    def update_unfinished_work(self) -> None:
        """Refresh the ``unfinished_work_seconds`` and ``longest_running_processor_seconds`` gauges."""
        self._metrics.update_unfinished_work()
