"""Prometheus metrics, named like controller-runtime's so existing dashboards and alerts apply.

:class:`Metrics` owns a private ``CollectorRegistry`` (never prometheus-client's global one) with::

    workqueue_depth{name}                                  gauge      } one series per queue name,
    workqueue_adds_total{name}                             counter    } fed through the informers
    workqueue_queue_duration_seconds{name}                 histogram  } MetricsProvider protocol:
    workqueue_work_duration_seconds{name}                  histogram  } pass the Metrics object as
    workqueue_unfinished_work_seconds{name}                gauge      } ``metrics_provider=`` to a queue
    workqueue_longest_running_processor_seconds{name}      gauge      } and ``track_queue(queue)``
    workqueue_retries_total{name}                          counter    }
    controller_runtime_reconcile_total{controller,result}  counter    success|error|requeue|requeue_after
    controller_runtime_reconcile_errors_total{controller}  counter
    controller_runtime_terminal_reconcile_errors_total{controller}  counter
    controller_runtime_reconcile_time_seconds{controller}  histogram
    controller_runtime_max_concurrent_reconciles{controller}  gauge
    controller_runtime_active_workers{controller}          gauge
    kube_workflow_workflows{phase}                         gauge      workflows per phase (all six, zeros too)
    kube_workflow_step_call_duration_seconds{type,direction,outcome}  histogram
    kube_workflow_api_writes_in_flight                     gauge      the write gate's slots in use
    kube_workflow_api_writes_waiting{priority}             gauge      waiting for a slot, per priority
    kube_workflow_api_writes_waited_total                  counter    writes that had to wait for a slot
    kube_workflow_status_writes_postponed                  gauge      workflow status writes postponed now
    leader_election_master_status{name}                    gauge      1 while this process leads
    rest_client_requests_total{code,method}                counter    every API request (client.py)
    rest_client_rate_limiter_duration_seconds              histogram  time waiting for the throttleQPS bucket

The two "unfinished work" gauges are refreshed when scraped (``Queue.update_unfinished_work()`` for
every tracked queue), not by a background thread. Workflow phase counts are either pushed with
:meth:`Metrics.set_workflow_phase_counts` or pulled at scrape time from a callback given to
:meth:`Metrics.set_workflow_phase_source` (e.g. counting the informer cache).

Contract: every method is thread-safe (prometheus-client's metrics are; ``_lock`` guards the tracked
queues and the phase counts).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from controller.http import Request, Response, Route
from informers.metrics import CounterMetric, GaugeMetric, HistogramMetric, SettableGaugeMetric
from reconcilers.state_machine.types import Phase

__all__ = ["Metrics", "ReconcileResult", "StepCallOutcome", "TrackedQueue"]

# controller-runtime: prometheus.ExponentialBuckets(10e-9, 10, 12) for the workqueue histograms.
WORKQUEUE_BUCKETS = tuple(1e-8 * 10**i for i in range(12))
# controller-runtime's reconcile_time_seconds buckets.
RECONCILE_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
)
# Step calls may be long (an HTTP call, a cloud API): up to 10 minutes.
STEP_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# client-go's rest_client_rate_limiter_duration_seconds buckets.
RATE_LIMITER_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)


class ReconcileResult(StrEnum):
    """The ``result`` label of ``controller_runtime_reconcile_total`` (controller-runtime's values)."""

    SUCCESS = "success"
    ERROR = "error"
    REQUEUE = "requeue"
    REQUEUE_AFTER = "requeue_after"


class StepCallOutcome(StrEnum):
    """Suggested ``outcome`` label values of ``kube_workflow_step_call_duration_seconds``."""

    SUCCESS = "success"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"
    IGNORABLE = "ignorable"
    TIMEOUT = "timeout"


class TrackedQueue(Protocol):
    """A workqueue whose unfinished-work gauges are refreshed at scrape time (``informers.Queue``)."""

    def update_unfinished_work(self) -> None: ...


class _PhaseCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("kube_workflow_workflows", "Workflows by phase.", labels=["phase"])
        for phase, count in self._metrics.workflow_phase_counts().items():
            family.add_metric([phase], count)
        yield family


class EngineLoad(Protocol):
    """What the engine reports about its own write scheduling (``reconcilers.engine.Engine``)."""

    def write_gate_state(self) -> tuple[int, Mapping[str, int], int]: ...
    def postponed_status_writes(self) -> int: ...


class _EngineCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        engine = self._metrics.engine_load()
        in_flight, waited, postponed = 0, 0, 0
        waiting: Mapping[str, int] = {}
        if engine is not None:
            in_flight, waiting, waited = engine.write_gate_state()
            postponed = engine.postponed_status_writes()
        yield GaugeMetricFamily("kube_workflow_api_writes_in_flight",
                                "Mutating API requests holding a write gate slot.", value=in_flight)
        family = GaugeMetricFamily("kube_workflow_api_writes_waiting",
                                   "Mutating API requests waiting for a write gate slot, by priority.",
                                   labels=["priority"])
        for level in ("HANDOFF", "NORMAL", "BACKGROUND"):
            family.add_metric([level.capitalize()], waiting.get(level, 0))
        yield family
        yield CounterMetricFamily("kube_workflow_api_writes_waited",
                                  "Mutating API requests that had to wait for a write gate slot.",
                                  value=waited)
        yield GaugeMetricFamily("kube_workflow_status_writes_postponed",
                                "Workflow status writes postponed (summaries written with a later change).",
                                value=postponed)


class Metrics:
    """The process's metrics; also an ``informers.MetricsProvider``, a ``leader.LeaderStatusSink``
    and a ``client.RequestObserver``. See the module docstring for names and the threading contract."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self._lock = threading.Lock()
        self._engine: EngineLoad | None = None
        self._queues: list[TrackedQueue] = []
        self._phase_counts: dict[str, int] = {}
        self._phase_source: Callable[[], Mapping[str, int]] | None = None

        self._wq_depth = Gauge("workqueue_depth", "Current depth of workqueue", ["name"], registry=r)
        self._wq_adds = Counter("workqueue_adds", "Total number of adds handled by workqueue", ["name"],
                                registry=r)
        self._wq_latency = Histogram(
            "workqueue_queue_duration_seconds", "How long in seconds an item stays in workqueue before being "
            "requested", ["name"], buckets=WORKQUEUE_BUCKETS, registry=r)
        self._wq_work = Histogram(
            "workqueue_work_duration_seconds", "How long in seconds processing an item from workqueue takes.",
            ["name"], buckets=WORKQUEUE_BUCKETS, registry=r)
        self._wq_unfinished = Gauge(
            "workqueue_unfinished_work_seconds", "How many seconds of work has been done that is in progress "
            "and hasn't been observed by work_duration. Large values indicate stuck threads.", ["name"],
            registry=r)
        self._wq_longest = Gauge(
            "workqueue_longest_running_processor_seconds", "How many seconds has the longest running "
            "processor for workqueue been running.", ["name"], registry=r)
        self._wq_retries = Counter("workqueue_retries", "Total number of retries handled by workqueue",
                                   ["name"], registry=r)

        self._reconcile_total = Counter(
            "controller_runtime_reconcile", "Total number of reconciliations per controller",
            ["controller", "result"], registry=r)
        self._reconcile_errors = Counter(
            "controller_runtime_reconcile_errors", "Total number of reconciliation errors per controller",
            ["controller"], registry=r)
        self._terminal_errors = Counter(
            "controller_runtime_terminal_reconcile_errors",
            "Total number of terminal reconciliation errors per controller", ["controller"], registry=r)
        self._reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds", "Length of time per reconciliation per controller",
            ["controller"], buckets=RECONCILE_BUCKETS, registry=r)
        self._max_concurrent = Gauge(
            "controller_runtime_max_concurrent_reconciles", "Maximum number of concurrent reconciles per "
            "controller", ["controller"], registry=r)
        self._active_workers = Gauge(
            "controller_runtime_active_workers", "Number of currently used workers per controller",
            ["controller"], registry=r)

        self._step_calls = Histogram(
            "kube_workflow_step_call_duration_seconds", "Duration of step plugin calls by step type, "
            "direction (run, rollback, sync) and outcome", ["type", "direction", "outcome"],
            buckets=STEP_CALL_BUCKETS, registry=r)
        self._leader = Gauge(
            "leader_election_master_status", "Gauge of if the reporting system is master of the relevant "
            "lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease.",
            ["name"], registry=r)
        self._requests = Counter(
            "rest_client_requests", "Number of HTTP requests, partitioned by status code and method.",
            ["code", "method"], registry=r)
        self._limiter_wait = Histogram(
            "rest_client_rate_limiter_duration_seconds", "Client side rate limiter latency in seconds.",
            buckets=RATE_LIMITER_BUCKETS, registry=r)
        r.register(_PhaseCollector(self))
        r.register(_EngineCollector(self))

    # -- informers.MetricsProvider ------------------------------------------------------------------

    def new_depth_metric(self, name: str) -> GaugeMetric:
        return self._wq_depth.labels(name=name)

    def new_adds_metric(self, name: str) -> CounterMetric:
        return self._wq_adds.labels(name=name)

    def new_latency_metric(self, name: str) -> HistogramMetric:
        return self._wq_latency.labels(name=name)

    def new_work_duration_metric(self, name: str) -> HistogramMetric:
        return self._wq_work.labels(name=name)

    def new_unfinished_work_seconds_metric(self, name: str) -> SettableGaugeMetric:
        return self._wq_unfinished.labels(name=name)

    def new_longest_running_processor_seconds_metric(self, name: str) -> SettableGaugeMetric:
        return self._wq_longest.labels(name=name)

    def new_retries_metric(self, name: str) -> CounterMetric:
        return self._wq_retries.labels(name=name)

    def track_queue(self, queue: TrackedQueue) -> None:
        """Refresh ``queue``'s unfinished-work gauges on every scrape."""
        with self._lock:
            self._queues.append(queue)

    # -- reconcilers ----------------------------------------------------------------------------------

    def register_controller(self, controller: str, max_concurrent_reconciles: int) -> None:
        """Create the controller's series at zero (so a scrape shows them before the first reconcile)."""
        for result in ReconcileResult:
            self._reconcile_total.labels(controller=controller, result=result.value)
        self._reconcile_errors.labels(controller=controller)
        self._terminal_errors.labels(controller=controller)
        self._reconcile_time.labels(controller=controller)
        self._active_workers.labels(controller=controller).set(0)
        self._max_concurrent.labels(controller=controller).set(max_concurrent_reconciles)

    def observe_reconcile(
        self, controller: str, result: ReconcileResult | str, seconds: float, *, terminal: bool = False
    ) -> None:
        """One reconcile finished. ``result`` is a :class:`ReconcileResult` value; an ``error`` also
        counts in ``reconcile_errors_total`` and, if ``terminal`` (not requeued), in
        ``terminal_reconcile_errors_total``."""
        result = ReconcileResult(result)
        self._reconcile_total.labels(controller=controller, result=result.value).inc()
        if result is ReconcileResult.ERROR:
            self._reconcile_errors.labels(controller=controller).inc()
            if terminal:
                self._terminal_errors.labels(controller=controller).inc()
        self._reconcile_time.labels(controller=controller).observe(seconds)

    @contextmanager
    def active_worker(self, controller: str) -> Iterator[None]:
        """Count a worker as busy for the duration of the ``with`` block."""
        gauge = self._active_workers.labels(controller=controller)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def observe_step_call(self, step_type: str, direction: str, outcome: str, seconds: float) -> None:
        """One plugin call (``direction``: run, rollback, sync; ``outcome``: see :class:`StepCallOutcome`)."""
        self._step_calls.labels(type=step_type, direction=direction, outcome=outcome).observe(seconds)

    def set_workflow_phase_counts(self, counts: Mapping[str, int]) -> None:
        """Replace the workflow counts per phase (phases left out count 0)."""
        with self._lock:
            self._phase_counts = dict(counts)

    def set_engine_load(self, engine: EngineLoad | None) -> None:
        """Report this engine's write gate and postponed status writes at scrape time."""
        with self._lock:
            self._engine = engine

    def engine_load(self) -> EngineLoad | None:
        with self._lock:
            return self._engine

    def set_workflow_phase_source(self, source: Callable[[], Mapping[str, int]] | None) -> None:
        """Compute the counts at scrape time instead (``source`` runs on the scrape thread: keep it cheap)."""
        with self._lock:
            self._phase_source = source

    def workflow_phase_counts(self) -> dict[str, int]:
        """Counts for every phase (the six known ones first, then any other reported)."""
        with self._lock:
            source = self._phase_source
            counts = dict(self._phase_counts)
        if source is not None:
            counts = dict(source())
        out = {str(p): 0 for p in Phase}
        for phase, n in counts.items():
            key = str(phase) or str(Phase.PENDING)  # no phase yet = Pending
            out[key] = out.get(key, 0) + int(n)
        return out

    # -- leader.LeaderStatusSink, client.RequestObserver ------------------------------------------------

    def set_leader_status(self, name: str, leading: bool) -> None:
        self._leader.labels(name=name).set(1 if leading else 0)

    def observe_request(self, method: str, code: str) -> None:
        self._requests.labels(code=code, method=method).inc()

    def observe_rate_limiter_wait(self, seconds: float) -> None:
        self._limiter_wait.observe(seconds)

    # -- exposition ------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Bring the pull-computed gauges up to date (called before every scrape)."""
        with self._lock:
            queues = list(self._queues)
        for q in queues:
            q.update_unfinished_work()

    def exposition(self) -> bytes:
        """The Prometheus text format of everything, freshly refreshed."""
        self.refresh()
        return generate_latest(self.registry)

    def routes(self) -> Mapping[str, Route]:
        """``/metrics`` for :func:`controller.http.serve`."""

        def metrics(_: Request) -> Response:
            return Response(200, self.exposition(), CONTENT_TYPE_LATEST)

        return {"/metrics": metrics}
