"""A workqueue with ``add_after`` (client-go ``delaying_queue.go``, with controller-runtime's rule that
the earliest ready time wins).

* ``add_after(x, d)`` makes ``x`` ready ``d`` seconds from now (by the injected clock); ``d <= 0`` is a
  plain ``add``. If ``x`` is already waiting, the earlier ready time wins and the higher priority wins.
* A plain ``add(x)`` makes ``x`` ready now and drops a pending ``add_after`` of ``x`` (now is earlier).
* One waiting thread per queue sleeps on the clock until the earliest ready time or a new earlier
  entry: no busy loop, no thread per item.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Hashable
from typing import TypeVar

from informers.clock import Clock
from informers.metrics import MetricsProvider
from informers.workqueue import _HIGH, _LOW, Queue

__all__ = ["DelayingQueue"]

T = TypeVar("T", bound=Hashable)


class DelayingQueue(Queue[T]):
    """A :class:`~informers.workqueue.Queue` plus delayed adds.

    Contract: any thread may call any method. ``_wcond`` guards ``_heap``, ``_waiting`` and ``_stopped``;
    the lock order is ``_wcond`` then the base queue's ``_cond`` (never the reverse). ``_waiting`` maps a
    waiting item to its live heap entry ``(ready_at, seq, level)``; heap entries whose ``seq`` does not
    match are dead and skipped. Only the waiting thread moves items from the heap into the queue. The
    thread ends at shutdown; items still waiting then are dropped (as in client-go).
    """

    def __init__(
        self,
        name: str = "",
        *,
        clock: Clock | None = None,
        metrics_provider: MetricsProvider | None = None,
    ) -> None:
        super().__init__(name, clock=clock, metrics_provider=metrics_provider)
        self._wcond = threading.Condition()
        self._heap: list[tuple[float, int, T]] = []
        self._waiting: dict[T, tuple[float, int, int]] = {}
        self._wseq = 0
        self._stopped = False
        self._thread = threading.Thread(target=self._wait_loop, name=f"workqueue-delay-{name}", daemon=True)
        self._thread.start()

    def add(self, item: T, *, low_priority: bool = False) -> None:
        with self._wcond:
            entry = self._waiting.get(item)
            if entry is not None:
                del self._waiting[item]
                low_priority = low_priority and entry[2] == _LOW
            with self._cond:
                self._add_locked(item, _LOW if low_priority else _HIGH)

    def add_after(self, item: T, delay: float, *, low_priority: bool = False) -> None:
        if delay <= 0:
            self.add(item, low_priority=low_priority)
            return
        level = _LOW if low_priority else _HIGH
        with self._wcond:
            if self._stopped:
                return
            ready_at = self._clock.now() + delay
            entry = self._waiting.get(item)
            if entry is not None:
                level = min(level, entry[2])
                if entry[0] <= ready_at:
                    self._waiting[item] = (entry[0], entry[1], level)
                    return
            self._wseq += 1
            self._waiting[item] = (ready_at, self._wseq, level)
            heapq.heappush(self._heap, (ready_at, self._wseq, item))
            if self._heap[0][1] == self._wseq:  # a new earliest entry: re-arm the waiting thread
                self._wcond.notify()

    def waiting(self) -> int:
        """Items waiting for their ready time."""
        with self._wcond:
            return len(self._waiting)

    def shutdown(self) -> None:
        self._stop_waiting()
        super().shutdown()

    def shutdown_with_drain(self) -> None:
        self._stop_waiting()
        super().shutdown_with_drain()

    def _stop_waiting(self) -> None:
        with self._wcond:
            self._stopped = True
            self._heap.clear()
            self._waiting.clear()
            self._wcond.notify_all()

    def _wait_loop(self) -> None:
        with self._wcond:
            while not self._stopped:
                now = self._clock.now()
                while self._heap and self._heap[0][0] <= now:
                    _, seq, item = heapq.heappop(self._heap)
                    entry = self._waiting.get(item)
                    if entry is None or entry[1] != seq:
                        continue  # dead entry: superseded by an earlier add_after or a plain add
                    del self._waiting[item]
                    with self._cond:
                        self._add_locked(item, entry[2])
                timeout = self._heap[0][0] - now if self._heap else None
                self._clock.wait(self._wcond, timeout)
