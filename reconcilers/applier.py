"""The applier: carries one :class:`~reconcilers.state_machine.decision.Decision` out against the API,
in the order ``decision.py`` documents, and stops at the first conflict (writes of one group that went
out together all finish first; the first error is then raised).

1. create the missing Step objects, concurrently (AlreadyExists: the object is read back, so no
   decision is taken on its absence; a lost answer: read back too, or held by an expectation);
2. write the workflow's status (merge patch of what changed, with the resourceVersion it was decided
   from);
3. write each changed Step status (each with the Step's resourceVersion, or the create's for a Step
   created in step 1), concurrently when there are several;
4. change finalizers (Steps before the Workflow), each with the latest resourceVersion we know; once a
   deleted workflow's own finalizer is gone, delete its Step objects too (nothing else does when no
   garbage collector runs; with one it is harmless);
5. hand the invocations to the step executor (a step's call as soon as its own status write returned;
   the status writes of several steps moving together go out concurrently);
6. wake the callback sender;
7. record Kubernetes Events (once the workflow's status write succeeded, even if a later write fails:
   the phase moved, so the next decision will not repeat them).

At most one status write per object. Every successful write is remembered in the expectations and its
response in the :class:`~reconcilers.fresh.FreshCache` (so the next reconcile and the step workers act
on it at once, not on an older cached copy); a 409 is remembered too (the cached copy is known to be
old) and re-raised as :class:`~reconcilers.kube.Conflict` for the caller to requeue.

A workflow status change the Decision marks ``status_can_wait`` (it only summarises the steps, or
first records Pending) is postponed up to ``status_delay`` seconds from when it was first wanted and
then written, unless a change that cannot wait writes it sooner; the result says when to look again.
Events marked ``with_status`` wait with it. The postponement lives in memory: after a restart the next
reconcile simply starts the delay again.

Status patches are computed against the *codec's view* of the cached status
(``StepStatus.from_dict(cached).to_status()``), so fields this engine does not know (written by a newer
version, or by another component) are left alone, while fields the new status drops are removed.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar

import structlog

from informers import Resource
from reconcilers.expectations import Expectations, object_key
from reconcilers.fresh import FreshCache
from reconcilers.gate import Priority, current_priority
from reconcilers.kube import (
    STEPS,
    WORKFLOWS,
    AlreadyExists,
    Conflict,
    Kube,
    KubeError,
    NotFound,
    TransportError,
    merge_patch,
)
from reconcilers.settings import CallbackWaker, EventSink
from reconcilers.state_machine.decision import Decision, FinalizerChange, Invocation
from reconcilers.state_machine.types import StepStatus, WorkflowStatus

__all__ = ["Applied", "Applier", "Obj"]

_T = TypeVar("_T")

log = structlog.get_logger(__name__)

Obj = Mapping[str, Any]


def _meta(obj: Obj) -> Mapping[str, Any]:
    meta: Mapping[str, Any] = obj.get("metadata") or {}
    return meta


def _resource(kind: str) -> Resource:
    return WORKFLOWS if kind == "Workflow" else STEPS


def _rv(obj: Obj) -> str:
    return str(_meta(obj).get("resourceVersion") or "")


@dataclass
class Applied:
    """What one :meth:`Applier.apply` did: the number of API writes, when to look again for a postponed
    workflow status write (None: nothing postponed), the invocations it did not hand over."""

    writes: int = 0
    requeue_after: timedelta | None = None
    #: Invocations not handed over (their Step's create found it existing: decide again).
    skipped: int = 0


class Applier:
    """Stateless apart from its collaborators and the postponed status writes (``_waiting``, guarded
    by ``_lock``); called by the workflow workers concurrently (for different workflows: the queue never
    hands one key to two workers)."""

    def __init__(
        self,
        kube: Kube,
        expectations: Expectations,
        *,
        submit: Callable[[str, Invocation], None],
        events: EventSink,
        callbacks: CallbackWaker,
        fresh_workflows: FreshCache | None = None,
        fresh_steps: FreshCache | None = None,
        status_delay: float = 0.0,
        parallel_writes: int = 8,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.expectations = expectations
        self.submit = submit
        self.events = events
        self.callbacks = callbacks
        self.fresh_workflows = fresh_workflows
        self.fresh_steps = fresh_steps
        self.status_delay = status_delay
        self.parallel_writes = parallel_writes
        self._pools: dict[Priority, ThreadPoolExecutor] = {}
        self._timer = timer
        self._lock = threading.Lock()
        self._waiting: dict[str, float] = {}  # workflow key -> when a postponed status write was first due

    def apply(self, workflow: Obj, steps: Mapping[str, Obj], decision: Decision) -> Applied:
        """Apply ``decision``, decided from ``workflow`` and its Step objects (``steps`` by object name).
        Raises Conflict (requeue now), NotFound or another KubeError (requeue with backoff)."""
        meta = _meta(workflow)
        ns, name = str(meta.get("namespace") or ""), str(meta["name"])
        wf_key = f"{ns}/{name}"
        latest: Obj = workflow
        applied = Applied()
        created: dict[str, str] = {}  # object name -> resourceVersion, for the Steps created here

        for step_name, obj in self._run_all(
                [(self._create_step, (ns, c.body)) for c in decision.creates]):
            if obj is not None:
                applied.writes += 1
                created[step_name] = _rv(obj)
            else:
                applied.skipped += 1  # it existed: decide again on what it holds

        if decision.workflow is not None:
            old = WorkflowStatus.from_dict(workflow.get("status")).to_status()
            patch = merge_patch(old, decision.workflow.to_status())
            wait = self._postpone(wf_key, decision.status_can_wait) if patch else None
            if wait is not None:
                applied.requeue_after = timedelta(seconds=wait)
                decision = replace(decision, events=tuple(e for e in decision.events if not e.with_status))
            elif patch:
                latest = self._write_status("Workflow", ns, name, _rv(workflow), patch)
                applied.writes += 1
                try:
                    latest = self._apply_rest(latest, steps, decision, created, applied)
                finally:
                    # The workflow's transition is written: its Events are due even if a later write
                    # failed (the next decide will not repeat them: the phase already moved).
                    self._record_events(latest, steps, decision)
                return applied
            else:
                self._settled(wf_key)
        else:
            self._settled(wf_key)
        latest = self._apply_rest(latest, steps, decision, created, applied)
        self._record_events(latest, steps, decision)
        return applied

    def _create_step(self, ns: str, body: Mapping[str, Any]) -> tuple[str, Obj | None]:
        """Create one Step: ``(name, the created object)``, or ``(name, None)`` if it existed."""
        step_name = str(body["metadata"]["name"])
        try:
            obj = self.kube.create(STEPS, ns, body)
        except AlreadyExists:
            # It exists but our caches do not show it: read it, so no decision is taken on its absence
            # (a rollback would count a step without an object as never run).
            self._adopt(ns, step_name)
            return step_name, None
        except TransportError:
            # Maybe created (the answer was lost): read it back; if that fails too, its absence from the
            # cache proves nothing until the informer shows it (or the expectation expires).
            self._maybe_written("Step", ns, step_name, "0")
            raise
        log.debug("step created", object=step_name)
        return step_name, self._remember("Step", ns, step_name, obj)

    def _adopt(self, ns: str, name: str) -> None:
        try:
            obj = self.kube.get(STEPS, ns, name)
        except KubeError:
            self.expectations.conflicted(object_key("Step", ns, name), "0")
            return
        if self.fresh_steps is not None:
            self.fresh_steps.saw(obj)  # read, not written: its watch event still wakes the workflow

    def _postpone(self, wf_key: str, can_wait: bool) -> float | None:
        """Seconds to wait before writing a workflow status that can wait; None: write it now."""
        now = self._timer()
        with self._lock:
            if not can_wait or self.status_delay <= 0:
                self._waiting.pop(wf_key, None)
                return None
            since = self._waiting.setdefault(wf_key, now)
            left = since + self.status_delay - now
            if left <= 0:
                del self._waiting[wf_key]
                return None
            return left

    def _settled(self, wf_key: str) -> None:
        with self._lock:
            self._waiting.pop(wf_key, None)

    def postponed(self) -> int:
        """Workflow status writes waiting now (for tests and metrics)."""
        with self._lock:
            return len(self._waiting)

    def _apply_rest(self, workflow: Obj, steps: Mapping[str, Obj], decision: Decision,
                    created: Mapping[str, str], applied: Applied) -> Obj:
        """Steps 3 to 6 (after the workflow's status); returns the latest copy of the workflow."""
        meta = _meta(workflow)
        ns = str(meta.get("namespace") or "")
        wf_key = f"{ns}/{meta['name']}"
        latest = workflow
        step_rvs = {n: _rv(o) for n, o in steps.items()}
        skipped: set[str] = set()
        calls: dict[str, list[Invocation]] = {}
        for inv in decision.invocations:
            calls.setdefault(inv.object_name, []).append(inv)
        writes: list[tuple[str, str, Mapping[str, Any]]] = []
        for change in decision.steps:
            rv = change.resource_version
            if not rv:  # a Step this decision created: write with the version the create returned
                if change.object_name not in created:
                    skipped.add(change.object_name)  # not created here (it existed): decide again
                    continue
                rv = created[change.object_name]
            cached = steps.get(change.object_name)
            old = StepStatus.from_dict(cached.get("status") if cached else None).to_status()
            patch = merge_patch(old, change.status.to_status())
            if patch:
                writes.append((change.object_name, rv, patch))

        def written(obj_name: str, obj: Obj) -> None:
            # A step's call is handed over as soon as its own status is written (the first leaf of a
            # wide fan-out does not wait for the writes of the others).
            applied.writes += 1
            step_rvs[obj_name] = _rv(obj)
            for inv in calls.pop(obj_name, ()):
                self.submit(wf_key, inv)

        if len(writes) > 1:
            # Several steps move at once (a fan-out starts, independent branches roll back): the writes
            # go out together. Their order does not matter: decide only moves a step to RollingBack
            # once everything depending on it is settled, and the only settling in the same decision is
            # Pending -> RollBacked of steps that never ran and can no longer start (the workflow is
            # rolling back), so a write that fails while another succeeds leaves nothing undone early.
            for obj_name, status_written in self._run_all(
                    [(self._write_step_status, (ns, obj_name, rv, patch)) for obj_name, rv, patch in writes]):
                written(obj_name, status_written)
        else:
            for obj_name, rv, patch in writes:
                written(obj_name, self._write_status("Step", ns, obj_name, rv, patch))

        released = False
        for fin in decision.finalizers:
            if fin.kind == "Step":
                obj = steps.get(fin.name)
                if obj is None:
                    continue
                changed = self._finalizer(obj, fin, step_rvs.get(fin.name) or _rv(obj))
                if changed is not obj:
                    step_rvs[fin.name] = _rv(changed)
                    applied.writes += 1
            else:
                changed = self._finalizer(latest, fin, _rv(latest))
                if changed is not latest:
                    latest = changed
                    applied.writes += 1
                released = released or (not fin.add and bool(meta.get("deletionTimestamp")))
        if released:
            self.expectations.forget(object_key("Workflow", ns, str(meta["name"])))
            self._settled(wf_key)
            if self.fresh_workflows is not None:
                self.fresh_workflows.forget(wf_key)
            for obj_name in steps:
                self.expectations.forget(object_key("Step", ns, obj_name))
                if self.fresh_steps is not None:
                    self.fresh_steps.forget(f"{ns}/{obj_name}")
                with contextlib.suppress(NotFound):
                    self.kube.delete(STEPS, ns, obj_name)
            log.info("workflow released", steps_deleted=len(steps))

        for obj_name, invs in calls.items():  # calls of steps whose status did not change
            if obj_name in skipped:
                applied.skipped += len(invs)
            else:
                for inv in invs:
                    self.submit(wf_key, inv)

        pending = ((latest.get("status") or {}).get("callbacks") or {}).get("pending")
        if decision.callbacks or pending:
            self.callbacks.wake(wf_key, resource_version=_rv(latest) or None)
        return latest

    def _write_step_status(self, ns: str, name: str, rv: str, patch: Mapping[str, Any]) -> tuple[str, Obj]:
        return name, self._write_status("Step", ns, name, rv, patch)

    def _run_all(self, tasks: list[tuple[Callable[..., _T], tuple[Any, ...]]]) -> Iterator[_T]:
        """Run independent writes concurrently (several Steps created, or moving, at once), each with
        the caller's context (its write priority, its log context); yields each result on this thread
        as it returns; the first error is raised once every write has returned. One task runs inline."""
        if len(tasks) <= 1 or self.parallel_writes <= 1:
            for fn, args in tasks:
                yield fn(*args)
            return
        level = current_priority()
        with self._lock:  # a pool per write priority: a hand-off never queues behind a new workflow's
            pool = self._pools.get(level)
            if pool is None:
                pool = self._pools[level] = ThreadPoolExecutor(
                    self.parallel_writes, f"applier-write-{level.name.lower()}")
        futures = [pool.submit(contextvars.copy_context().run, fn, *args) for fn, args in tasks]
        error: BaseException | None = None
        for future in as_completed(futures):
            try:
                result = future.result()
            except BaseException as exc:  # re-raised below, after every write has returned
                error = error or exc
                continue
            yield result
        if error is not None:
            raise error

    def close(self) -> None:
        """Stop the pool of :meth:`_run_all` (idle threads exit; nothing in flight is cut)."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=False)

    def _record_events(self, workflow: Obj, steps: Mapping[str, Obj], decision: Decision) -> None:
        for event in decision.events:
            involved = workflow if event.object_kind == "Workflow" else steps.get(event.object_name)
            if involved is not None:
                self.events.record(involved, event.type, event.reason, event.message)

    def _write_status(self, kind: str, ns: str, name: str, rv: str, patch: Mapping[str, Any]) -> Obj:
        key = object_key(kind, ns, name)
        try:
            written = self.kube.patch_status(_resource(kind), ns, name, patch, resource_version=rv)
        except Conflict:
            self.expectations.conflicted(key, rv)
            raise
        except TransportError:
            self._maybe_written(kind, ns, name, rv)
            raise
        return self._remember(kind, ns, name, written)

    def _maybe_written(self, kind: str, ns: str, name: str, rv: str) -> None:
        """A write whose answer was lost may have landed: read the object back into the FreshCache, so
        the next decision is taken on what the server holds; if that read fails too, hold decisions on
        the cached version until the informer shows a newer one (or the expectation expires)."""
        fresh = self._fresh(kind)
        try:
            obj = self.kube.get(_resource(kind), ns, name)
        except NotFound:
            return
        except KubeError:
            self.expectations.conflicted(object_key(kind, ns, name), rv)
            return
        if fresh is not None:
            fresh.saw(obj)

    def _remember(self, kind: str, ns: str, name: str, written: Obj) -> Obj:
        """Our write of ``written`` succeeded: expectations and the FreshCache learn its version."""
        self.expectations.wrote(object_key(kind, ns, name), _rv(written))
        fresh = self._fresh(kind)
        return fresh.wrote(written) if fresh is not None else written

    def _fresh(self, kind: str) -> FreshCache | None:
        return self.fresh_workflows if kind == "Workflow" else self.fresh_steps

    def _finalizer(self, obj: Obj, change: FinalizerChange, rv: str) -> Obj:
        meta = _meta(obj)
        ns, name = str(meta.get("namespace") or ""), str(meta["name"])
        current = [str(f) for f in meta.get("finalizers") or ()]
        wanted = [f for f in current if f != change.finalizer]
        if change.add:
            wanted.append(change.finalizer)
        if wanted == current:
            return obj
        key = object_key(change.kind, ns, name)
        try:
            written = self.kube.patch(_resource(change.kind), ns, name, {"metadata": {"finalizers": wanted}},
                                      resource_version=rv)
        except Conflict:
            self.expectations.conflicted(key, rv)
            raise
        log.debug("finalizer changed", kind=change.kind, object=name, add=change.add)
        return self._remember(change.kind, ns, name, written)
