"""The in-process engine: informers, the workflow reconciler, the step executor, admission, the Event
recorder and the callback sender, wired together and started/stopped as one.

::

    engine = Engine(api_client, EngineSettings(namespace="team-a"), StepRegistry.default())
    engine.start()
    engine.wait_for_sync(120)
    ...
    engine.stop(grace=30)

Life cycle (an explicit state enum): NEW -> STARTED -> STOPPED. ``stop`` stops taking work (admission,
the workflow queue), lets plugin calls in flight finish and write their outcomes for up to ``grace``
seconds, then stops the informers, the callback sender and the Event recorder (which flushes what it
holds within its own timeout).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, TypeGuard, cast

import structlog
from kubernetes.client import ApiClient

from informers import Clock, MetricsProvider, RealClock, SharedIndexInformer, SharedInformerFactory
from reconcilers.admission import Admission
from reconcilers.applier import Applier
from reconcilers.callbacks import CallbackSender
from reconcilers.events import EventRecorder
from reconcilers.expectations import Expectations
from reconcilers.fresh import FreshCache
from reconcilers.gate import GatedApiClient, WriteGate
from reconcilers.kube import STEPS, WORKFLOWS, Kube
from reconcilers.settings import (
    CallbackWaker,
    EngineMetrics,
    EngineSettings,
    EventSink,
    NoopEventSink,
    NoopMetrics,
)
from reconcilers.steps import StepExecutor
from reconcilers.typed import TypedCache
from reconcilers.workflow import OWNER_INDEX, WorkflowReconciler, owner_index, owner_key
from stepkit import StepRegistry

__all__ = ["Engine", "EngineState"]

log = structlog.get_logger(__name__)


class EngineState(StrEnum):
    NEW = "New"
    STARTED = "Started"
    STOPPED = "Stopped"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _is_metrics_provider(obj: object) -> TypeGuard[MetricsProvider]:
    return obj is not None and callable(getattr(obj, "new_depth_metric", None))


class _Lifecycle(Protocol):
    """Something with start/stop (the Event recorder, the callback sender)."""

    def start(self) -> None: ...
    def stop(self, timeout: float = 5.0) -> None: ...


class Engine:
    """Contract: ``start``, ``wait_for_sync`` and ``stop`` from the owning thread, in that order, once;
    ``healthy``, ``synced`` and the read-only properties from any thread (health endpoints).

    ``event_recorder`` / ``callback_sender`` given by the caller are used as they are and *not*
    started or stopped by the engine; when left out the engine builds its own
    (:class:`reconcilers.events.EventRecorder`, :class:`reconcilers.callbacks.CallbackSender`) and owns
    their life cycle. ``metrics`` gets ``observe_reconcile`` and ``observe_step_call``; if it is also an
    ``informers.MetricsProvider`` (``controller.metrics.Metrics`` is), the workqueues report to it.
    """

    def __init__(
        self,
        api_client: ApiClient,
        settings: EngineSettings,
        registry: StepRegistry,
        *,
        clock: Clock | None = None,
        now: Callable[[], datetime] | None = None,
        metrics: EngineMetrics | None = None,
        event_recorder: EventSink | None = None,
        callback_sender: CallbackWaker | None = None,
        informer_factory: SharedInformerFactory | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self._clock: Clock = clock or RealClock()
        self._now = now or _utc_now
        self._metrics: EngineMetrics = metrics or NoopMetrics()
        queue_metrics = metrics if _is_metrics_provider(metrics) else None
        self._lock = threading.Lock()
        self._state = EngineState.NEW
        engine_config = settings.engine
        if engine_config.step_types is None:
            engine_config = replace(engine_config, step_types=frozenset(registry.names()))
        self.engine_config = engine_config

        self.write_gate: WriteGate | None = None
        if settings.write_concurrency > 0:
            self.write_gate = WriteGate(settings.write_concurrency)
            api_client = cast(ApiClient, GatedApiClient(api_client, self.write_gate))
        self.kube = Kube(api_client, timeout=settings.rpc_timeout, connect_timeout=settings.rpc_timeout)
        self.expectations = Expectations(ttl=settings.expectations_ttl)
        self.informer_factory = informer_factory or SharedInformerFactory(
            api_client, namespace=settings.watch_namespace, reflector_config=settings.reflector,
            clock=self._clock)
        self.workflows: SharedIndexInformer = self.informer_factory.informer_for(WORKFLOWS)
        self.steps: SharedIndexInformer = self.informer_factory.informer_for(
            STEPS, indexers={OWNER_INDEX: owner_index})
        # Our own writes, visible to every reader before their watch events arrive.
        self.fresh_workflows = FreshCache(self.workflows.indexer, ttl=settings.expectations_ttl)
        self.fresh_steps = FreshCache(self.steps.indexer, owner=owner_key, owner_index=OWNER_INDEX,
                                      ttl=settings.expectations_ttl)
        self.workflows.add_event_handler(self.fresh_workflows)
        self.steps.add_event_handler(self.fresh_steps)

        self._owned: list[_Lifecycle] = []
        if event_recorder is None and settings.events_enabled:
            recorder = EventRecorder(api_client, clock=self._clock,
                                     request_timeout=(settings.rpc_timeout, settings.rpc_timeout))
            self._owned.append(recorder)
            event_recorder = recorder
        self.event_recorder: EventSink = event_recorder or NoopEventSink()
        if callback_sender is None:
            sender = CallbackSender(
                api_client, get_workflow=self._cached_workflow,
                connect_timeout=settings.callback_connect_timeout,
                read_timeout=settings.callback_read_timeout,
                allow_private_networks=settings.callback_allow_private_networks, clock=self._clock,
                allowed_cidrs=settings.callback_allowed_cidrs,
                api_timeout=(settings.rpc_timeout, settings.rpc_timeout),
                event_recorder=event_recorder if isinstance(event_recorder, EventRecorder) else None,
            )
            self._owned.append(sender)
            callback_sender = sender
        self.callback_sender: CallbackWaker = callback_sender

        typed = TypedCache()  # one parse per object version, for the reconciler and the step workers
        self.executor = StepExecutor(
            kube=self.kube, registry=registry, workflows=self.workflows, steps=self.steps,
            expectations=self.expectations, settings=settings, now=self._now, clock=self._clock,
            metrics=self._metrics, queue_metrics=queue_metrics, fresh_workflows=self.fresh_workflows,
            fresh_steps=self.fresh_steps, typed=typed)
        self.applier = Applier(self.kube, self.expectations, submit=self.executor.submit,
                               events=self.event_recorder, callbacks=self.callback_sender,
                               fresh_workflows=self.fresh_workflows, fresh_steps=self.fresh_steps,
                               status_delay=settings.status_delay)
        self.reconciler = WorkflowReconciler(
            workflows=self.workflows, steps=self.steps, fresh_workflows=self.fresh_workflows,
            fresh_steps=self.fresh_steps, applier=self.applier, expectations=self.expectations,
            engine_config=engine_config, workers=settings.workflow_workers, stale_retry=settings.stale_retry,
            now=self._now, clock=self._clock, metrics=self._metrics, queue_metrics=queue_metrics,
            typed=typed)
        self.admission = Admission(
            workflows=self.workflows, kube=self.kube, expectations=self.expectations,
            engine_config=engine_config, events=self.event_recorder, now=self._now,
            period=settings.admission_period, fresh=self.fresh_workflows,
            on_admitted=self.reconciler.enqueue_new)
        self.workflows.add_event_handler(self.admission)
        self.executor.on_outcome = self.reconciler.queue.add

    def _cached_workflow(self, key: str) -> Mapping[str, Any] | None:
        return self.workflows.indexer.get_by_key(key)

    # -- life cycle ---------------------------------------------------------------------------------

    @property
    def state(self) -> EngineState:
        with self._lock:
            return self._state

    def start(self) -> None:
        """Start the informers, the Event recorder and callback sender (if owned), the workers and
        admission. Workers wait on their queues, which the informers fill once they have listed."""
        with self._lock:
            if self._state is not EngineState.NEW:
                raise RuntimeError(f"engine already {self._state}")
            self._state = EngineState.STARTED
        for part in self._owned:
            part.start()
        self.informer_factory.start()
        self.executor.start()
        self.reconciler.start()
        self.admission.start()
        log.info("engine started", namespace=self.settings.watch_namespace or "<all>",
                 workflow_workers=self.settings.workflow_workers,
                 step_types=sorted(self.engine_config.step_types or ()))

    def wait_for_sync(self, timeout: float) -> bool:
        """Block until both caches hold their first LIST (True) or ``timeout`` seconds passed."""
        return all(self.informer_factory.wait_for_cache_sync(timeout).values())

    def stop(self, grace: float = 10.0) -> None:
        """Stop taking work, give reconciles and calls in flight ``grace`` seconds in all, then stop
        the informers, the callback sender and the Event recorder."""
        with self._lock:
            if self._state is not EngineState.STARTED:
                self._state = EngineState.STOPPED
                return
            self._state = EngineState.STOPPED
        end = time.monotonic() + grace
        self.admission.stop()
        self.reconciler.stop(timeout=grace)
        self.executor.stop(grace=max(0.0, end - time.monotonic()))
        self.informer_factory.shutdown()
        self.applier.close()
        for part in reversed(self._owned):
            try:
                part.stop()
            except Exception:
                log.exception("engine part failed to stop", part=type(part).__name__)
        log.info("engine stopped", abandoned_calls=self.executor.abandoned_calls)

    # -- health -------------------------------------------------------------------------------------

    def synced(self) -> bool:
        """Both informers hold their first LIST (readiness)."""
        return self.workflows.has_synced() and self.steps.has_synced()

    def healthy(self) -> str | None:
        """None when every engine thread runs, else a short reason (a ``controller.health`` check)."""
        if self.state is not EngineState.STARTED:
            return f"engine {self.state}"
        if not self.reconciler.alive():
            return "a workflow worker died"
        if not self.executor.alive():
            return "a step worker died"
        if not self.admission.alive():
            return "the admission thread died"
        return None

    def phase_counts(self) -> dict[str, int]:
        """Cached workflows per phase (for ``Metrics.set_workflow_phase_counts``); cheap, no API call."""
        return self.admission.phase_counts()  # admission's own map: no decoding of the cache

    def write_gate_state(self) -> tuple[int, Mapping[str, int], int]:
        """The write gate's slots in use, writes waiting per priority, writes that waited so far."""
        gate = self.write_gate
        if gate is None:
            return 0, {}, 0
        return gate.in_flight(), gate.queued(), gate.waited

    def postponed_status_writes(self) -> int:
        return self.applier.postponed()

    def informers(self) -> list[SharedIndexInformer]:
        """For ``controller.health.informers_synced`` / ``WatchesAlive``."""
        return self.informer_factory.informers()
