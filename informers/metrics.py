"""Workqueue metrics hooks, named like client-go's ``util/workqueue/metrics.go``.

A queue asks its :class:`MetricsProvider` for one metric of each kind, labelled with the queue's name;
the default provider returns no-op metrics. The controller plugs in a provider backed by
prometheus-client that exports them as::

    workqueue_depth                               gauge      current depth
    workqueue_adds_total                          counter    adds handled
    workqueue_queue_duration_seconds              histogram  time an item waits before being processed
    workqueue_work_duration_seconds               histogram  time spent processing an item
    workqueue_unfinished_work_seconds             gauge      seconds of work in progress not yet observed
                                                             by work_duration (stuck threads show here)
    workqueue_longest_running_processor_seconds   gauge      age of the oldest item being processed
    workqueue_retries_total                       counter    rate-limited re-adds

client-go refreshes the two "unfinished" gauges from a goroutine every 500 ms; here the exporter calls
``Queue.update_unfinished_work()`` when it is scraped (pull, no extra thread).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Protocol

from informers.clock import Clock

__all__ = [
    "ADDS",
    "DEPTH",
    "LONGEST_RUNNING_PROCESSOR",
    "QUEUE_LATENCY",
    "RETRIES",
    "UNFINISHED_WORK",
    "WORK_DURATION",
    "CounterMetric",
    "GaugeMetric",
    "HistogramMetric",
    "MetricsProvider",
    "NoopMetricsProvider",
    "SettableGaugeMetric",
]

DEPTH = "workqueue_depth"
ADDS = "workqueue_adds_total"
QUEUE_LATENCY = "workqueue_queue_duration_seconds"
WORK_DURATION = "workqueue_work_duration_seconds"
UNFINISHED_WORK = "workqueue_unfinished_work_seconds"
LONGEST_RUNNING_PROCESSOR = "workqueue_longest_running_processor_seconds"
RETRIES = "workqueue_retries_total"


class GaugeMetric(Protocol):
    def inc(self) -> None: ...
    def dec(self) -> None: ...


class SettableGaugeMetric(Protocol):
    def set(self, value: float) -> None: ...


class CounterMetric(Protocol):
    def inc(self) -> None: ...


class HistogramMetric(Protocol):
    def observe(self, value: float) -> None: ...


class MetricsProvider(Protocol):
    """Builds the metrics of one queue; ``name`` is the queue's name (the ``name`` label)."""

    def new_depth_metric(self, name: str) -> GaugeMetric: ...
    def new_adds_metric(self, name: str) -> CounterMetric: ...
    def new_latency_metric(self, name: str) -> HistogramMetric: ...
    def new_work_duration_metric(self, name: str) -> HistogramMetric: ...
    def new_unfinished_work_seconds_metric(self, name: str) -> SettableGaugeMetric: ...
    def new_longest_running_processor_seconds_metric(self, name: str) -> SettableGaugeMetric: ...
    def new_retries_metric(self, name: str) -> CounterMetric: ...


class _Noop:
    def inc(self) -> None:
        pass

    def dec(self) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, value: float) -> None:
        pass


_NOOP = _Noop()


class NoopMetricsProvider:
    """The default: every metric does nothing."""

    def new_depth_metric(self, name: str) -> GaugeMetric:
        return _NOOP

    def new_adds_metric(self, name: str) -> CounterMetric:
        return _NOOP

    def new_latency_metric(self, name: str) -> HistogramMetric:
        return _NOOP

    def new_work_duration_metric(self, name: str) -> HistogramMetric:
        return _NOOP

    def new_unfinished_work_seconds_metric(self, name: str) -> SettableGaugeMetric:
        return _NOOP

    def new_longest_running_processor_seconds_metric(self, name: str) -> SettableGaugeMetric:
        return _NOOP

    def new_retries_metric(self, name: str) -> CounterMetric:
        return _NOOP


class QueueMetrics:
    """Per-queue bookkeeping behind the hooks (client-go's ``defaultQueueMetrics``).

    Contract: ``add``/``get``/``done``/``retry`` are called by :class:`~informers.workqueue.Queue`
    (with its lock held); ``update_unfinished_work`` may run on any thread. ``_lock`` guards the two
    dicts, so the exporter never sees a half-updated one.
    """

    def __init__(self, name: str, provider: MetricsProvider, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.depth = provider.new_depth_metric(name)
        self.adds = provider.new_adds_metric(name)
        self.latency = provider.new_latency_metric(name)
        self.work_duration = provider.new_work_duration_metric(name)
        self.unfinished = provider.new_unfinished_work_seconds_metric(name)
        self.longest = provider.new_longest_running_processor_seconds_metric(name)
        self.retries = provider.new_retries_metric(name)
        self._added_at: dict[Hashable, float] = {}
        self._processing_since: dict[Hashable, float] = {}

    def add(self, item: Hashable) -> None:
        self.adds.inc()
        self.depth.inc()
        with self._lock:
            self._added_at.setdefault(item, self._clock.now())

    def get(self, item: Hashable) -> None:
        self.depth.dec()
        now = self._clock.now()
        with self._lock:
            self._processing_since[item] = now
            start = self._added_at.pop(item, None)
        if start is not None:
            self.latency.observe(now - start)

    def done(self, item: Hashable) -> None:
        with self._lock:
            start = self._processing_since.pop(item, None)
        if start is not None:
            self.work_duration.observe(self._clock.now() - start)

    def retry(self) -> None:
        self.retries.inc()

    def update_unfinished_work(self) -> None:
        now = self._clock.now()
        with self._lock:
            ages = [now - s for s in self._processing_since.values()]
        self.unfinished.set(sum(ages))
        self.longest.set(max(ages, default=0.0))
