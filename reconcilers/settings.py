"""The engine's frozen settings (STYLE rule 14), and the small seams it is given (metrics, Event
recorder, callback sender), each a Protocol with a no-op default.

Settings are built once by the controller from its ``ControllerConfig`` (the reconcilers never import
``controller``), or directly by tests.

The mapping from the configuration file lives in one place: ``controller.manager.engine_settings``.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from informers import ReflectorConfig
from reconcilers.state_machine.config import EngineConfig

__all__ = [
    "CallbackWaker",
    "EngineMetrics",
    "EngineSettings",
    "EventSink",
    "NoopCallbackWaker",
    "NoopEventSink",
    "NoopMetrics",
    "StepLimits",
]


class EngineMetrics(Protocol):
    """What the engine reports (``controller.metrics.Metrics`` implements it)."""

    def observe_reconcile(self, controller: str, result: str, seconds: float) -> None: ...
    def observe_step_call(self, step_type: str, direction: str, outcome: str, seconds: float) -> None: ...


class NoopMetrics:
    def observe_reconcile(self, controller: str, result: str, seconds: float) -> None:
        pass

    def observe_step_call(self, step_type: str, direction: str, outcome: str, seconds: float) -> None:
        pass


class EventSink(Protocol):
    """``reconcilers.events.EventRecorder``: posts a Kubernetes Event, never blocks."""

    def record(self, involved: Mapping[str, Any], type: str, reason: str, message: str) -> None: ...


class NoopEventSink:
    def record(self, involved: Mapping[str, Any], type: str, reason: str, message: str) -> None:
        pass


class CallbackWaker(Protocol):
    """``reconcilers.callbacks.CallbackSender``: delivers a workflow's pending outbox, never blocks."""

    def wake(self, key: str, *, resource_version: str | None = None) -> None:
        """``resource_version``: the version of our own latest write of the workflow (the sender reads
        the API instead of a cache older than that)."""
        ...


class NoopCallbackWaker:
    def wake(self, key: str, *, resource_version: str | None = None) -> None:
        pass


@dataclass(frozen=True)
class StepLimits:
    """The limits of one step type's queue."""

    #: Plugin calls started per second for this type (token bucket, burst ``max(1, ceil(qps))``); > 0.
    qps: float = 10.0
    #: Worker threads, i.e. calls in flight at once for this type; >= 1.
    concurrency: int = 4
    #: Seconds one plugin call may take (``StepContext.deadline``); None = ``EngineSettings.call_timeout``.
    call_timeout: float | None = None

    @property
    def burst(self) -> int:
        return max(1, math.ceil(self.qps))


def _no_limits() -> Mapping[str, StepLimits]:
    return MappingProxyType({})


@dataclass(frozen=True)
class EngineSettings:
    """Everything :class:`reconcilers.engine.Engine` needs; every field has a usable default."""

    #: The one namespace to watch; None (or "") = all namespaces.
    namespace: str | None = None
    #: Workflow reconcile threads. Default 2 (the reconcile is I/O bound: a few API writes).
    workflow_workers: int = 2
    #: Seconds: the timeout of one API request (``rpcTimeoutMillSeconds``).
    rpc_timeout: float = 5.0
    #: Per step type limits (``controllerConfig.steps``); types not listed get ``step_defaults``.
    step_limits: Mapping[str, StepLimits] = field(default_factory=_no_limits)
    #: Limits of step types not listed in ``step_limits`` (``controllerConfig.stepDefaults``).
    step_defaults: StepLimits = StepLimits()
    #: Seconds a plugin call may take unless its type says otherwise. Default 10 minutes: plugin calls
    #: do real work (the seed example's ``random`` steps sleep 20 s), unlike API requests, so the call
    #: deadline is ``max(rpc_timeout, call_timeout)``, not ``rpc_timeout`` alone.
    call_timeout: float = 600.0
    #: Seconds a worker waits past a call's deadline before it abandons the call's thread and records a
    #: retryable timeout (the thread is left to finish on its own, counted in ``abandoned_calls``).
    call_grace: float = 2.0
    #: The state machine's configuration (admission strategy, maxRunningCount, known step types; None
    #: step types = the registry's names).
    engine: EngineConfig = field(default_factory=EngineConfig)
    #: The informers' reflector settings (watch idle timeout from ``idleTimeoutMillSeconds``).
    reflector: ReflectorConfig = field(default_factory=ReflectorConfig)
    #: Seconds between admission passes when nothing wakes admission (a safety net; every workflow
    #: creation, phase change and deletion wakes it at once).
    admission_period: float = 10.0
    #: Seconds after which a reconcile skipped because of a stale cache is retried even if no watch
    #: event arrives (normally the event for our own write arrives first and wakes it).
    stale_retry: float = 1.0
    #: Seconds an expectation (the resourceVersion of our own last write) is kept.
    expectations_ttl: float = 30.0
    #: Callback sender: connect and read timeouts, seconds; may URLs resolve to private addresses?
    callback_connect_timeout: float = 5.0
    callback_read_timeout: float = 5.0
    callback_allow_private_networks: bool = True
    #: If non-empty, callback URLs must resolve into one of these networks (``allowedCIDRs``).
    callback_allowed_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: Post Kubernetes Events (``controllerConfig.events.enabled``).
    events_enabled: bool = True
    #: Seconds a workflow status write that only summarises its steps (the stepPhases counts shown by
    #: ``kubectl get wf``, merged attributes, aggregated errors) or first records Pending may wait, to be
    #: written together with the next change that matters. 0 writes every change at once.
    status_delay: float = 1.0
    #: Mutating API requests in flight at once from the engine (reads never wait), handed out by
    #: priority: running workflows' hand-offs, then everything else, then Events (``reconcilers.gate``).
    #: A few are enough to keep one API server busy; more only lengthen its queue. 0 = no gate.
    write_concurrency: int = 6

    def __post_init__(self) -> None:
        if self.workflow_workers < 1:
            raise ValueError("workflow_workers must be >= 1")
        object.__setattr__(self, "step_limits", MappingProxyType(dict(self.step_limits)))

    @property
    def watch_namespace(self) -> str | None:
        return self.namespace or None

    def limits(self, step_type: str) -> StepLimits:
        return self.step_limits.get(step_type, self.step_defaults)

    def deadline_seconds(self, step_type: str) -> float:
        """How long one call of ``step_type`` may take: the type's own ``call_timeout`` if set, else
        ``max(rpc_timeout, call_timeout)``."""
        own = self.limits(step_type).call_timeout
        return own if own is not None else max(self.rpc_timeout, self.call_timeout)
