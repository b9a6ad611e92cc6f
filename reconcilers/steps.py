"""The step executor: one workqueue per step type, each with a QPS token bucket, per-item backoff and
``concurrency`` worker threads that call the plugins and write the outcomes.

Flow: the workflow reconciler hands over an :class:`~reconcilers.state_machine.decision.Invocation`
(:meth:`StepExecutor.submit`). The executor remembers it as *wanted* for the Step object and enqueues
the Step object's key (``namespace/object name``) on its type's queue. Keying the queue by Step object
(not by ``Invocation.key``, which includes the attempt) is what makes the queue's processing set
guarantee **one call per step at a time**: a rollback submitted while the run is in flight waits for it.

A worker, for a key:

1. takes the wanted invocation and re-reads the Step (and its workflow) from the caches; a cached Step
   older than our own last write (expectations) is retried shortly; a call that is no longer due
   (phase, attempt or due time differ: the step moved on) is dropped;
2. takes a token from the type's bucket; without one the key waits (``add_after``) holding a
   reservation, so a bucket limited to ``qps`` starts at most ``qps`` calls per second (plus the burst),
   and no worker ever sleeps for a token;
3. calls the plugin in a thread of its own and waits until the call's deadline plus a grace period. A
   plugin that hangs longer is abandoned (counted in :attr:`StepExecutor.abandoned_calls`, logged) and
   recorded as a retryable ``DeadlineExceeded`` failure: it never holds the worker for good;
4. computes the new status with :mod:`reconcilers.state_machine.outcomes` from the status read
   *before* the call and writes it with that resourceVersion. On 409 it re-reads the Step: if the same
   attempt was already recorded it drops the outcome; otherwise it applies the outcome to the fresh
   status (the outcome functions never move a phase back: a late run result after a rollback decision
   only records its error/resource/attributes) and writes again.

Then the worker enqueues the Step's workflow itself (``on_outcome``; the reconciler decides what
follows) and leaves the written Step in the :class:`~reconcilers.fresh.FreshCache`, so the next step
starts without waiting for the watch event of this write.

The call deadline (``StepContext.deadline``) is ``EngineSettings.deadline_seconds(type)``: the type's
own call timeout if configured, else ``max(rpc_timeout, call_timeout)`` with ``call_timeout`` defaulting
to 10 minutes (plugin calls do real work, unlike API requests). API writes use ``rpc_timeout``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from informers import (
    BucketRateLimiter,
    Clock,
    ItemExponentialFailureRateLimiter,
    MetricsProvider,
    RateLimitingQueue,
    RealClock,
    SharedIndexInformer,
    ShutDown,
    split_key,
)
from reconcilers.expectations import Expectations, object_key
from reconcilers.fresh import FreshCache
from reconcilers.gate import Priority, priority
from reconcilers.kube import STEPS, Conflict, Kube, KubeError, NotFound, TransportError, merge_patch
from reconcilers.settings import EngineMetrics, EngineSettings
from reconcilers.state_machine.decision import CallKind, Invocation
from reconcilers.state_machine.outcomes import (
    ErrorKind,
    rollback_failed,
    rollback_succeeded,
    run_failed,
    run_succeeded,
    sync_failed,
    sync_succeeded,
)
from reconcilers.state_machine.schedule import is_due, next_call
from reconcilers.state_machine.types import Resource, Step, StepStatus, Workflow
from reconcilers.typed import TypedCache
from stepkit import (
    ResourceStatus,
    RetryableError,
    StepContext,
    StepError,
    StepRegistry,
    StepResult,
    WorkflowInfo,
    classify,
)

__all__ = ["CallOutcome", "StepExecutor"]

log = structlog.get_logger(__name__)

Obj = Mapping[str, Any]

_MAX_ERROR = 4096
_WRITE_TRIES = 4


@dataclass(frozen=True)
class CallOutcome:
    """What one plugin call returned: a result, or a classified error; ``timed_out`` if abandoned."""

    result: StepResult | None = None
    error: StepError | None = None
    timed_out: bool = False

    @property
    def label(self) -> str:
        if self.timed_out:
            return "timeout"
        if self.error is None:
            return "success"
        if self.error.ignorable:
            return "ignorable"
        return "retryable" if self.error.retryable else "permanent"


@dataclass(frozen=True)
class _Unwritten:
    """A call's outcome not written yet (the write failed): retried before anything else for its Step."""

    invocation: Invocation
    step_obj: Obj  # the Step as read before the call
    outcome: CallOutcome
    workflow_key: str
    log: Any


@dataclass(frozen=True)
class _Wanted:
    invocation: Invocation
    workflow_key: str


class _TypeQueue:
    """One step type's queue, bucket and workers. ``reservations`` (guarded by the executor's lock)
    maps a key to the clock time its bucket token becomes valid."""

    def __init__(self, step_type: str, qps: float, burst: int, concurrency: int, clock: Clock,
                 metrics: MetricsProvider | None) -> None:
        self.step_type = step_type
        self.bucket = BucketRateLimiter(qps, burst, clock=clock)
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(
            f"step-{step_type}", rate_limiter=ItemExponentialFailureRateLimiter(0.05, 60.0), clock=clock,
            metrics_provider=metrics)
        self.concurrency = concurrency
        self.reservations: dict[str, float] = {}
        self.threads: list[threading.Thread] = []


class StepExecutor:
    """Contract: ``submit`` from any thread (the workflow workers); ``start``/``stop`` from the owning
    thread; worker threads per type, created lazily when a type is first submitted. ``_lock`` guards
    ``_wanted``, ``_types`` and every type's ``reservations``. The caches are read-only.

    Not guaranteed: exactly-once calls (a crash between a call and its status write repeats it, and an
    abandoned call may still be running when the next attempt starts: plugins are at-least-once and
    get a stable idempotency key).
    """

    def __init__(
        self,
        *,
        kube: Kube,
        registry: StepRegistry,
        workflows: SharedIndexInformer,
        steps: SharedIndexInformer,
        expectations: Expectations,
        settings: EngineSettings,
        now: Callable[[], datetime],
        clock: Clock | None = None,
        metrics: EngineMetrics,
        queue_metrics: MetricsProvider | None = None,
        fresh_workflows: FreshCache | None = None,
        fresh_steps: FreshCache | None = None,
        on_outcome: Callable[[str], None] | None = None,
        typed: TypedCache | None = None,
    ) -> None:
        self.kube = kube
        self.registry = registry
        self.workflows = workflows
        self.steps = steps
        self.expectations = expectations
        self.settings = settings
        # (not ``or``: an empty FreshCache is falsy)
        self.fresh_workflows = (fresh_workflows if fresh_workflows is not None
                                else FreshCache(workflows.indexer))
        self.fresh_steps = fresh_steps if fresh_steps is not None else FreshCache(steps.indexer)
        #: Called with the workflow key after an outcome was written (the engine: enqueue the workflow).
        self.on_outcome = on_outcome
        #: Typed values parsed once per object version (shared with the reconciler): a call reads its
        #: Step and its workflow, whose spec (every step's template) is parsed once per generation.
        self.typed = typed if typed is not None else TypedCache()

        self._now = now
        self._clock: Clock = clock or RealClock()
        self._metrics = metrics
        self._queue_metrics = queue_metrics
        self._lock = threading.Lock()
        self._wanted: dict[str, _Wanted] = {}
        self._unwritten: dict[str, _Unwritten] = {}
        self._types: dict[str, _TypeQueue] = {}
        self._started = False
        self._stopping = False
        self._abandoned = 0
        self._in_flight = 0

    # -- submission ---------------------------------------------------------------------------------

    def submit(self, workflow_key: str, invocation: Invocation) -> None:
        """Want ``invocation`` (replacing an older wanted call of the same Step) and enqueue its Step."""
        ns, _ = split_key(workflow_key)
        key = f"{ns}/{invocation.object_name}"
        step = self.fresh_steps.get_by_key(key)
        if step is None:
            return  # decide only asks for calls of Steps it saw; the cache lost it meanwhile
        step_type = str(step["spec"]["type"])
        with self._lock:
            if self._stopping:
                return
            self._wanted[key] = _Wanted(invocation, workflow_key)
            tq = self._type_locked(step_type)
        tq.queue.add(key)

    def _type_locked(self, step_type: str) -> _TypeQueue:
        tq = self._types.get(step_type)
        if tq is None:
            limits = self.settings.limits(step_type)
            tq = _TypeQueue(step_type, limits.qps, limits.burst, limits.concurrency, self._clock,
                            self._queue_metrics)
            self._types[step_type] = tq
            if self._started:
                self._start_workers(tq)
        return tq

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            self._started = True
            for tq in self._types.values():
                if not tq.threads:
                    self._start_workers(tq)

    def _start_workers(self, tq: _TypeQueue) -> None:
        for i in range(tq.concurrency):
            t = threading.Thread(target=self._worker, args=(tq,), name=f"step-{tq.step_type}-{i}",
                                 daemon=True)
            t.start()
            tq.threads.append(t)

    def stop(self, grace: float = 10.0) -> None:
        """Take no new calls; wait up to ``grace`` seconds for calls in flight (and their writes)."""
        with self._lock:
            self._stopping = True
            types = list(self._types.values())
        for tq in types:
            tq.queue.shutdown()
        end = time.monotonic() + grace
        for tq in types:
            for t in tq.threads:
                t.join(max(0.0, end - time.monotonic()))
        left = self.in_flight()
        if left:
            log.warning("calls still in flight at stop", calls=left)

    @property
    def abandoned_calls(self) -> int:
        """Plugin calls that overran their deadline plus grace and were left running."""
        with self._lock:
            return self._abandoned

    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def alive(self) -> bool:
        with self._lock:
            return all(t.is_alive() for tq in self._types.values() for t in tq.threads)

    def queue_lengths(self) -> dict[str, int]:
        with self._lock:
            return {name: len(tq.queue) + tq.queue.waiting() for name, tq in self._types.items()}

    # -- the worker ---------------------------------------------------------------------------------

    def _worker(self, tq: _TypeQueue) -> None:
        while True:
            try:
                with tq.queue.get() as key:
                    try:
                        self._process(tq, key)
                    except Exception:
                        log.exception("step worker crashed", step_object=key)
                        tq.queue.add_rate_limited(key)
            except ShutDown:
                return

    def _process(self, tq: _TypeQueue, key: str) -> None:
        with self._lock:
            if self._stopping:  # the queue drains what is ready at shutdown: start no new call
                return
            unwritten = self._unwritten.pop(key, None)
            wanted = self._wanted.get(key)
        if unwritten is not None:
            # An outcome whose write failed: write it again (with this queue's backoff), not the call.
            self._write_outcome(tq, key, unwritten)
            if wanted is not None:
                tq.queue.add(key)  # what was asked meanwhile is looked at next (likely moved on)
            return
        if wanted is None:
            return
        checked = self._check(key, wanted)
        if checked is None:
            return
        if isinstance(checked, str):  # stale cache
            tq.queue.add_after(key, 0.2)
            return
        if not self._token(tq, key):
            return
        with self._lock:
            if self._wanted.get(key) is wanted:
                del self._wanted[key]
        step_obj, wf = checked
        self._call_and_record(tq, key, wanted.invocation, step_obj, wf, wanted.workflow_key)

    def _check(self, key: str, wanted: _Wanted) -> tuple[Obj, Workflow] | str | None:
        """``(step object, workflow)`` if the call is still due; "stale" to look again shortly; None
        (and the wanted call forgotten) when it is no longer wanted."""
        ns, obj_name = split_key(key)
        step_obj = self.fresh_steps.get_by_key(key)
        wf_obj = self.fresh_workflows.get_by_key(wanted.workflow_key)
        inv = wanted.invocation
        reason = None
        if step_obj is None or wf_obj is None:
            reason = "gone"
        elif self.expectations.is_stale(object_key("Step", ns, obj_name),
                                        str(step_obj["metadata"].get("resourceVersion"))):
            return "stale"
        else:
            step = self.typed.step(step_obj)
            wf = self.typed.workflow(wf_obj)
            call = next_call(step.spec, step.status, seed=f"{wf.uid}/{inv.step}")
            if call is None or call.kind is not inv.kind or call.attempt != inv.attempt:
                reason = "moved on"
            elif not is_due(call, self._now()):
                reason = "not due"
            else:
                return step_obj, wf
        with self._lock:
            if self._wanted.get(key) is wanted:
                del self._wanted[key]
        log.debug("call dropped", step_object=key, reason=reason, direction=str(inv.kind),
                  attempt=inv.attempt)
        return None

    def _token(self, tq: _TypeQueue, key: str) -> bool:
        """Take (or redeem) a bucket token for ``key``; False if it must wait (it was re-added)."""
        now = self._clock.now()
        with self._lock:
            reserved = tq.reservations.get(key)
            if reserved is None:
                delay = tq.bucket.when(key)
                if delay <= 0:
                    return True
                tq.reservations[key] = now + delay
            elif reserved <= now:
                del tq.reservations[key]
                return True
            else:
                delay = reserved - now
        tq.queue.add_after(key, delay)
        return False

    # -- the call -----------------------------------------------------------------------------------

    def _call_and_record(self, tq: _TypeQueue, key: str, inv: Invocation, step_obj: Obj,
                         wf: Workflow, wanted_workflow: str) -> None:
        step = self.typed.step(step_obj)
        bound = log.bind(workflow=wf.name, namespace=wf.namespace, step=inv.step, step_type=tq.step_type,
                         direction=str(inv.kind), attempt=inv.attempt)
        deadline_s = self.settings.deadline_seconds(tq.step_type)
        with self._lock:
            self._in_flight += 1
        started = time.monotonic()
        try:
            outcome = self._call(tq.step_type, inv, step, wf, deadline_s, bound)
        finally:
            with self._lock:
                self._in_flight -= 1
        seconds = time.monotonic() - started
        self._metrics.observe_step_call(tq.step_type, str(inv.kind), outcome.label, seconds)
        # A success shows as "step phase changed" once written (with the call's seconds); errors and
        # retries are told here.
        (bound.info if outcome.error else bound.debug)(
            "step call finished", outcome=outcome.label, seconds=round(seconds, 3),
            error=str(outcome.error) if outcome.error else None)
        bound = bound.bind(call_seconds=round(seconds, 3))
        self._write_outcome(tq, key, _Unwritten(inv, step_obj, outcome, wanted_workflow, bound))

    def _write_outcome(self, tq: _TypeQueue, key: str, out: _Unwritten) -> None:
        """Write a call's outcome; if the API refuses, keep it and try again after the queue's
        per-item backoff (the call is not repeated for a failed write). Then enqueue the workflow."""
        try:
            with priority(Priority.HANDOFF):  # a running workflow's progress: first through the gate
                self._record(key, out.invocation, out.step_obj, out.outcome, out.log)
        except KubeError as exc:
            out.log.warning("step outcome not written; retrying with backoff", error=str(exc),
                            error_type=type(exc).__name__, tries=tq.queue.num_requeues(key) + 1)
            with self._lock:
                stopping = self._stopping
                if not stopping:
                    self._unwritten[key] = out
            if stopping:
                # Lost: the call is still due, so decide asks for it again after a restart.
                return
            tq.queue.add_rate_limited(key)
            return
        tq.queue.forget(key)
        if self.on_outcome is not None:
            self.on_outcome(out.workflow_key)

    def _call(self, step_type: str, inv: Invocation, step: Step, wf: Workflow, deadline_s: float,
              bound: Any) -> CallOutcome:
        try:
            plugin = self.registry.get(step_type)
        except LookupError as exc:
            return CallOutcome(error=RetryableError(str(exc), code="UnknownStepType"))
        ctx = StepContext(
            workflow=WorkflowInfo(wf.name, wf.namespace, wf.uid, parameters=dict(wf.spec.parameters),
                                  attributes=dict(wf.status.attributes)),
            step_name=inv.step,
            step_type=step_type,
            parameters=dict(step.spec.parameters),
            attempt=inv.attempt,
            direction=str(inv.kind),  # type: ignore[arg-type]  # CallKind values are the Directions
            idempotency_key=inv.idempotency_key,
            deadline=time.monotonic() + deadline_s,
            resource=ResourceStatus.from_dict(step.status.resource.to_dict()),
            log=bound,
        )
        method = getattr(plugin, str(inv.kind))
        box: dict[str, Any] = {}
        done = threading.Event()

        def target() -> None:
            try:
                box["result"] = method(ctx)
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        thread = threading.Thread(target=target, name=f"call-{step_type}-{inv.step}", daemon=True)
        thread.start()
        if not done.wait(deadline_s + self.settings.call_grace):
            with self._lock:
                self._abandoned += 1
            bound.error("step call abandoned past its deadline", deadline_seconds=deadline_s)
            return CallOutcome(error=RetryableError(
                f"the call did not return within its deadline ({deadline_s:g}s)", code="DeadlineExceeded"),
                timed_out=True)
        if "error" in box:
            raised: BaseException = box["error"]
            if isinstance(raised, KeyboardInterrupt | SystemExit):
                return CallOutcome(error=RetryableError(type(raised).__name__, code=type(raised).__name__))
            return CallOutcome(error=classify(raised))
        result = box.get("result")
        if result is not None and not isinstance(result, StepResult):
            return CallOutcome(error=RetryableError(
                f"the step returned a {type(result).__name__}, not a StepResult or None", code="BadResult"))
        return CallOutcome(result=result)

    # -- the outcome --------------------------------------------------------------------------------

    def _record(self, key: str, inv: Invocation, step_obj: Obj, outcome: CallOutcome, bound: Any) -> None:
        ns, obj_name = split_key(key)
        exp_key = object_key("Step", ns, obj_name)
        read = self.typed.step(step_obj)
        current = read
        for _ in range(_WRITE_TRIES):
            now = self._now()
            new = _apply_outcome(current, inv, outcome, now)
            old_view = current.status.to_status()  # the codec's view of the object's status
            patch = merge_patch(old_view, new.to_status())
            if not patch:
                return
            try:
                written = self.kube.patch_status(STEPS, ns, obj_name, patch,
                                                 resource_version=current.resource_version)
            except Conflict:
                self.expectations.conflicted(exp_key, current.resource_version)
                try:
                    current_obj = self.kube.get(STEPS, ns, obj_name)
                except NotFound:
                    return
                current = self.typed.step(current_obj)
                if current.status.phase is read.status.phase and _attempt(current) != _attempt(read):
                    bound.info("step outcome already recorded", phase=str(current.status.phase))
                    return
                bound.info("step changed during the call; recording on the fresh status",
                           phase=str(current.status.phase))
                continue
            except NotFound:
                return
            except TransportError:
                time.sleep(0.1)
                continue
            self.expectations.wrote(exp_key, str(written.get("metadata", {}).get("resourceVersion", "")))
            self.fresh_steps.wrote(written)
            if new.phase is not current.status.phase:
                bound.info("step phase changed", phase=str(new.phase), was=str(current.status.phase))
            return
        raise TransportError("could not write the step outcome")


def _attempt(step: Step) -> tuple[int, int]:
    return step.status.run_retry_count, step.status.rollback_retry_count


def _resource(current: Resource, reported: ResourceStatus | None) -> Resource | None:
    if reported is None:
        return None
    merged = ResourceStatus.from_dict(current.to_dict()).updated_with(reported)
    return Resource.from_dict(merged.to_dict())


def _kind(error: StepError) -> ErrorKind:
    if error.ignorable:
        return ErrorKind.IGNORABLE
    return ErrorKind.RETRYABLE if error.retryable else ErrorKind.PERMANENT


def _apply_outcome(step: Step, inv: Invocation, outcome: CallOutcome, now: datetime) -> StepStatus:
    status, template = step.status, step.spec
    error = outcome.error
    if error is None:
        result = outcome.result
        resource = _resource(status.resource, result.resource if result else None)
        attributes = dict(result.attributes) if result and result.attributes else None
        if inv.kind is CallKind.RUN:
            return run_succeeded(status, now, resource=resource, attributes=attributes)
        if inv.kind is CallKind.ROLLBACK:
            return rollback_succeeded(status, now)
        return sync_succeeded(status, now, resource=resource, attributes=attributes)
    text = str(error)[:_MAX_ERROR]
    delay = timedelta(seconds=error.delay) if error.delay else None
    kind = _kind(error)
    if inv.kind is CallKind.RUN:
        partial = error.result
        resource = _resource(status.resource, partial.resource if partial else None)
        attributes = dict(partial.attributes) if partial and partial.attributes else None
        return run_failed(status, template, kind, text, now, delay=delay, resource=resource,
                          attributes=attributes)
    if inv.kind is CallKind.ROLLBACK:
        return rollback_failed(status, template, kind, text, now, delay=delay)
    return sync_failed(status, kind, text, now, delay=delay)
