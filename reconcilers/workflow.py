"""The workflow reconciler: one rate-limited workqueue of workflow keys, fed by the Workflow and Step
informers, and N workers that each run ``decide`` on a cached snapshot and hand the Decision to the
:class:`~reconcilers.applier.Applier`.

Event driven: a Step change enqueues its owning workflow at once (by its controller ownerReference);
the only timers are the Decision's ``requeue_after`` (retry and sync periods). Events from the initial
list and resyncs are enqueued at low priority, so a start-up flood never delays real changes.

Result handling (controller-runtime's ``reconcileHandler``):

* success -> ``forget``; with ``requeue_after``, ``add_after``;
* 409 Conflict -> ``forget`` + ``add`` (immediate, not a failure; the applier recorded that the cache
  is old, so the retry waits for the watch event that brings the newer copy);
* stale cache (an expectation not met yet) -> ``add_after(stale_retry)`` as a safety net; the watch
  event for our own write normally wakes the key first;
* the workflow is gone -> done;
* anything else -> ``add_rate_limited`` (per-item exponential backoff).

Each reconcile binds ``reconcile_id`` and ``workflow`` in structlog's contextvars, so every log line of
the reconcile (and of the applier) carries them.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

import structlog

from informers import (
    Clock,
    DeletedFinalStateUnknown,
    MetricsProvider,
    RateLimitingQueue,
    SharedIndexInformer,
    ShutDown,
    split_key,
)
from reconcilers.applier import Applier
from reconcilers.expectations import Expectations, object_key
from reconcilers.fresh import FreshCache
from reconcilers.gate import Priority, priority
from reconcilers.kube import Conflict, KubeError, NotFound
from reconcilers.settings import EngineMetrics
from reconcilers.state_machine.config import EngineConfig
from reconcilers.state_machine.decide import decide
from reconcilers.state_machine.decision import Decision
from reconcilers.state_machine.naming import step_object_name
from reconcilers.state_machine.types import TERMINAL
from reconcilers.typed import TypedCache

__all__ = ["OWNER_INDEX", "Result", "WorkflowReconciler", "owned_by", "owner_index", "owner_key"]

log = structlog.get_logger(__name__)

Obj = Mapping[str, Any]

#: The Step informer's index: steps by owning workflow key ``namespace/name``.
OWNER_INDEX = "by-workflow"


class Result(StrEnum):
    """The ``result`` label of ``observe_reconcile`` (controller-runtime's values)."""

    SUCCESS = "success"
    ERROR = "error"
    REQUEUE = "requeue"
    REQUEUE_AFTER = "requeue_after"


class _Stale(Exception):
    """The cache holds an older copy of an object than one we know exists."""


def owner_key(step: Obj | DeletedFinalStateUnknown) -> str | None:
    """``namespace/name`` of the Workflow that controls ``step`` (ownerReference, else the label)."""
    obj = step.obj if isinstance(step, DeletedFinalStateUnknown) else step
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    for ref in meta.get("ownerReferences") or ():
        if ref.get("kind") == "Workflow" and ref.get("controller"):
            return f"{ns}/{ref['name']}"
    label = (meta.get("labels") or {}).get("workflow")
    return f"{ns}/{label}" if label else None


def owner_index(step: Obj) -> list[str]:
    key = owner_key(step)
    return [key] if key else []


def owned_by(step: Obj, uid: str) -> bool:
    """``step`` belongs to this incarnation of its workflow (a re-created workflow has a new uid)."""
    refs = (step.get("metadata") or {}).get("ownerReferences") or ()
    return not uid or any(r.get("uid") == uid for r in refs if r.get("kind") == "Workflow")


class _Handler:
    """Events enqueue the workflow (a Step's: its owner), low priority for the initial list and
    resyncs. An event that carries exactly a version this process wrote wakes nothing: whoever wrote it
    enqueued the workflow already (the applier after a reconcile that wrote, a step worker after an
    outcome), and reads see the write through the FreshCache."""

    def __init__(self, queue: RateLimitingQueue[str], fresh: FreshCache,
                 key_of: Callable[[Obj | DeletedFinalStateUnknown], str | None],
                 low_priority: Callable[[Obj], bool] | None = None) -> None:
        self._queue = queue
        self._fresh = fresh
        self._key_of = key_of
        self._low_priority = low_priority
        self.skipped = 0

    def on_add(self, obj: Obj, is_in_initial_list: bool) -> None:
        if (key := self._key_of(obj)) and not self._own(obj):
            self._queue.add(key, low_priority=is_in_initial_list or self._low(obj))

    def on_update(self, old: Obj, new: Obj) -> None:
        if (key := self._key_of(new)) and not self._own(new):
            same = old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion")
            self._queue.add(key, low_priority=same or self._low(new))

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        if key := self._key_of(obj):
            self._queue.add(key)

    def _low(self, obj: Obj) -> bool:
        return self._low_priority(obj) if self._low_priority is not None else False

    def _own(self, obj: Obj) -> bool:
        if self._fresh.consume_own_event(obj):
            self.skipped += 1
            return True
        return False


def _not_started(wf: Obj) -> bool:
    """A workflow that has not started any step yet (nor is being deleted): its reconciles (finalizer,
    first Steps) wait behind those of running workflows in the queue, as its writes do at the gate."""
    if (wf.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = wf.get("status") or {}
    counts = status.get("stepPhases") or {}
    return status.get("phase") in (None, "", "Pending") or not any(
        counts.get(p) for p in ("Running", "Success", "RollingBack", "RollBacked", "Failed"))


def _finished(decision: Decision, wf: Obj) -> bool:
    """The decision wrote a final phase of a workflow that is not being deleted."""
    written = decision.workflow
    return (written is not None and written.phase in TERMINAL
            and not (wf.get("metadata") or {}).get("deletionTimestamp"))


def _active(wf: Obj) -> bool:
    """Not finished, or being deleted (and so still undoing)."""
    if (wf.get("metadata") or {}).get("deletionTimestamp"):
        return True
    return (wf.get("status") or {}).get("phase") not in ("Success", "RollBacked", "Failed")


def _workflow_key(obj: Obj | DeletedFinalStateUnknown) -> str:
    if isinstance(obj, DeletedFinalStateUnknown):
        return obj.key
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name')}"


class WorkflowReconciler:
    """Contract: ``start``/``stop`` from the owning thread; ``reconcile`` runs on the worker threads,
    one key at a time per key (the queue's processing set), different keys concurrently. The informers'
    caches are read-only; everything written goes through the applier with a resourceVersion
    precondition. Not guaranteed: that a key is reconciled exactly once per event (events coalesce).
    """

    def __init__(
        self,
        *,
        workflows: SharedIndexInformer,
        steps: SharedIndexInformer,
        fresh_workflows: FreshCache,
        fresh_steps: FreshCache,
        applier: Applier,
        expectations: Expectations,
        engine_config: EngineConfig,
        workers: int = 2,
        stale_retry: float = 1.0,
        idle_check: float = 60.0,
        now: Callable[[], datetime],
        clock: Clock | None = None,
        metrics: EngineMetrics,
        queue_metrics: MetricsProvider | None = None,
        typed: TypedCache | None = None,
    ) -> None:
        self.workflows = workflows
        self.steps = steps
        self.fresh_workflows = fresh_workflows
        self.fresh_steps = fresh_steps
        self.applier = applier
        self.expectations = expectations
        self.engine_config = engine_config
        self.workers = workers
        self.stale_retry = stale_retry
        self.idle_check = idle_check
        self._not_started: set[str] = set()  # keys whose last reconcile saw no Step (one worker per key)
        self.typed = typed if typed is not None else TypedCache()  # shared with the step workers
        self._id_prefix = uuid.uuid4().hex[:6]  # reconcile ids: unique per process start, then a counter
        self._ids = itertools.count(1)
        self._now = now
        self._metrics = metrics
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(
            "workflow", clock=clock, metrics_provider=queue_metrics)
        # Low priority = a workflow that has not started (or the initial list / a resync): its writes
        # wait behind running workflows' at the write gate, so it must not be able to hold every
        # worker while hand-offs wait in this queue.
        self.queue.max_low_in_flight = max(1, workers // 4)
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.workflow_events = _Handler(self.queue, fresh_workflows, _workflow_key, _not_started)
        self.step_events = _Handler(self.queue, fresh_steps, owner_key)
        workflows.add_event_handler(self.workflow_events)
        steps.add_event_handler(self.step_events)

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._worker, name=f"workflow-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking keys; wait up to ``timeout`` for reconciles in progress."""
        self._stopping.set()  # the queue drains what is ready at shutdown: those keys are skipped
        self.queue.shutdown()
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))

    def enqueue_new(self, key: str) -> None:
        """A workflow that has not started yet wants a reconcile (admission just admitted it)."""
        self.queue.add(key, low_priority=True)

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    # -- the worker loop ----------------------------------------------------------------------------

    def _worker(self) -> None:
        # Like client-go's WaitForCacheSync before the workers: the keys of the first LIST wait in the
        # queue (deduplicated) instead of being taken, found not synced and put back every second -
        # ten thousand workflows made that churn a third of the controller's start-up CPU.
        while not (self.workflows.has_synced() and self.steps.has_synced()):
            if self._stopping.wait(0.05):
                return
        while True:
            try:
                with self.queue.get() as key:
                    if not self._stopping.is_set():
                        self.process(key)
            except ShutDown:
                return

    def process(self, key: str) -> Result:
        """Reconcile ``key`` once and requeue it as the outcome says (the worker loop's body)."""
        started = time.monotonic()
        reconcile_id = f"{self._id_prefix}-{next(self._ids):x}"
        structlog.contextvars.bind_contextvars(reconcile_id=reconcile_id, workflow=key)
        result = Result.SUCCESS
        try:
            after = self.reconcile(key)
        except Conflict:
            log.debug("reconcile conflict, requeued")
            self.queue.forget(key)
            self.queue.add(key, low_priority=self._low(key))
            result = Result.REQUEUE
        except _Stale:
            self.queue.forget(key)
            self.queue.add_after(key, self.stale_retry, low_priority=self._low(key))
            result = Result.REQUEUE_AFTER
        except KubeError as exc:
            log.warning("reconcile failed", error=str(exc), error_type=type(exc).__name__,
                        requeues=self.queue.num_requeues(key))
            self.queue.add_rate_limited(key, low_priority=self._low(key))
            result = Result.ERROR
        except Exception:
            log.exception("reconcile crashed", requeues=self.queue.num_requeues(key))
            self.queue.add_rate_limited(key, low_priority=self._low(key))
            result = Result.ERROR
        else:
            self.queue.forget(key)
            if after is not None:
                self.queue.add_after(key, after, low_priority=self._low(key))
                result = Result.REQUEUE_AFTER
        finally:
            structlog.contextvars.unbind_contextvars("reconcile_id", "workflow")
        self._metrics.observe_reconcile("workflow", str(result), time.monotonic() - started)
        return result

    def _low(self, key: str) -> bool:
        """Requeues of a workflow that has not started a step stay at low priority (``max_low_in_flight``
        holds only if they do)."""
        return key in self._not_started

    def reconcile(self, key: str) -> float | None:
        """Decide and apply once; returns the seconds after which to look again (None: on change)."""
        if not self.steps.has_synced():
            # Before the Step informer's first LIST a missing Step means "not listed yet", not "never
            # created": a rolling-back workflow decided on that snapshot ends RollBacked at once and its
            # steps are never rolled back (client-go controllers wait for every cache for this reason).
            # Checked first: during a long first LIST every listed workflow comes back here each second.
            raise _Stale(key)
        wf = self.fresh_workflows.get_by_key(key)
        ns, name = split_key(key)
        if wf is None:
            self.expectations.forget(object_key("Workflow", ns, name))
            self._not_started.discard(key)
            return None
        meta = wf["metadata"]
        if self.expectations.is_stale(object_key("Workflow", ns, name), str(meta.get("resourceVersion"))):
            raise _Stale(key)
        uid = str(meta.get("uid") or "")
        steps = {s["metadata"]["name"]: s for s in self.fresh_steps.owned(key) if owned_by(s, uid)}
        if steps:
            self._not_started.discard(key)
        else:
            self._not_started.add(key)
        for obj_name, step in steps.items():
            if self.expectations.is_stale(object_key("Step", ns, obj_name),
                                          str(step["metadata"].get("resourceVersion"))):
                raise _Stale(key)
        for spec_step in (wf.get("spec") or {}).get("steps") or ():
            obj_name = step_object_name(name, str(spec_step.get("name")))
            if obj_name not in steps and self.expectations.expects(object_key("Step", ns, obj_name)):
                raise _Stale(key)  # we created it; the cache does not show it yet
        # The steps are parsed only if decide reads them (not for a finished workflow).
        decision = decide(self.typed.workflow(wf), (self.typed.step(s) for s in steps.values()), self._now(),
                          self.engine_config)
        # A workflow with Steps is running (or undoing): its writes are hand-offs and go first through
        # the write gate; a new workflow's finalizer and first Steps wait behind them.
        level = Priority.HANDOFF if steps else Priority.NORMAL
        try:  # even a no-op decision: the applier wakes the callback sender for a pending outbox
            with priority(level):
                applied = self.applier.apply(wf, steps, decision)
        except NotFound:
            if self.workflows.indexer.get_by_key(key) is None:
                return None
            raise
        finished = _finished(decision, wf)
        if applied.skipped or (applied.writes and not decision.invocations and not finished):
            # Look again at once, on what was just written (the FreshCache shows it): a phase concludes
            # only on observed step states, and the watch events of our own writes wake nothing. With
            # calls handed to the step workers this is not needed: each outcome enqueues the workflow.
            # Nor after writing a final phase (nor the safety net below): decide does nothing more for
            # a finished workflow until it is deleted, and the deletion's watch event wakes it.
            self.queue.add(key, low_priority=level is Priority.NORMAL)
        after = [d.total_seconds() for d in (decision.requeue_after, applied.requeue_after) if d is not None]
        if not after and self.idle_check > 0 and _active(wf) and not finished:
            # A safety net: the watch events of our own writes wake nothing (their writers enqueue what
            # follows), so an unfinished workflow is looked at again after a quiet minute whatever
            # went wrong meanwhile (a step outcome that could not be written, a call dropped at stop).
            after = [self.idle_check]
        return max(min(after), 0.001) if after else None
