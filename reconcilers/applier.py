"""The applier: carries one :class:`~reconcilers.state_machine.decision.Decision` out against the API,
in the order ``decision.py`` documents, and stops at the first conflict.

1. create the missing Step objects (AlreadyExists is fine);
2. write the workflow's status (merge patch of what changed, with the resourceVersion it was decided
   from);
3. write each changed Step status (each with the Step's resourceVersion);
4. change finalizers (Steps before the Workflow), each with the latest resourceVersion we know; once a
   deleted workflow's own finalizer is gone, delete its Step objects too (nothing else does when no
   garbage collector runs; with one it is harmless);
5. hand the invocations to the step executor;
6. wake the callback sender;
7. record Kubernetes Events (once the workflow's status write succeeded, even if a later write fails:
   the phase moved, so the next decision will not repeat them).

At most one status write per object. Every successful write is remembered in the expectations (so the
next reconcile does not act on an older cached copy); a 409 is remembered too (the cached copy is known
to be old) and re-raised as :class:`~reconcilers.kube.Conflict` for the caller to requeue.

Status patches are computed against the *codec's view* of the cached status
(``StepStatus.from_dict(cached).to_status()``), so fields this engine does not know (written by a newer
version, or by another component) are left alone, while fields the new status drops are removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from reconcilers.expectations import Expectations, object_key
from reconcilers.kube import STEPS, WORKFLOWS, AlreadyExists, Conflict, Kube, NotFound, merge_patch
from reconcilers.settings import CallbackWaker, EventSink
from reconcilers.state_machine.decision import Decision, FinalizerChange, Invocation
from reconcilers.state_machine.types import StepStatus, WorkflowStatus

__all__ = ["Applier", "Obj"]

log = structlog.get_logger(__name__)

Obj = Mapping[str, Any]


def _meta(obj: Obj) -> Mapping[str, Any]:
    meta: Mapping[str, Any] = obj.get("metadata") or {}
    return meta


def _rv(obj: Obj) -> str:
    return str(_meta(obj).get("resourceVersion") or "")


class Applier:
    """Stateless apart from its collaborators; called by the workflow workers concurrently (for
    different workflows: the queue never hands one key to two workers)."""

    def __init__(
        self,
        kube: Kube,
        expectations: Expectations,
        *,
        submit: Callable[[str, Invocation], None],
        events: EventSink,
        callbacks: CallbackWaker,
    ) -> None:
        self.kube = kube
        self.expectations = expectations
        self.submit = submit
        self.events = events
        self.callbacks = callbacks

    def apply(self, workflow: Obj, steps: Mapping[str, Obj], decision: Decision) -> None:
        """Apply ``decision``, decided from ``workflow`` and its Step objects (``steps`` by object name).
        Raises Conflict (requeue now), NotFound or another KubeError (requeue with backoff)."""
        meta = _meta(workflow)
        ns, name = str(meta.get("namespace") or ""), str(meta["name"])
        latest: Obj = workflow

        for create in decision.creates:
            body = create.body
            step_name = str(body["metadata"]["name"])
            try:
                created = self.kube.create(STEPS, ns, body)
            except AlreadyExists:
                continue
            self.expectations.wrote(object_key("Step", ns, step_name), _rv(created))
            log.debug("step created", step=create.step, object=step_name)

        if decision.workflow is not None:
            old = WorkflowStatus.from_dict(workflow.get("status")).to_status()
            patch = merge_patch(old, decision.workflow.to_status())
            if patch:
                latest = self._write_status("Workflow", ns, name, _rv(workflow), patch)
                try:
                    latest = self._apply_rest(latest, steps, decision)
                finally:
                    # The workflow's transition is written: its Events are due even if a later write
                    # failed (the next decide will not repeat them: the phase already moved).
                    self._record_events(latest, steps, decision)
                return
        latest = self._apply_rest(latest, steps, decision)
        self._record_events(latest, steps, decision)

    def _apply_rest(self, workflow: Obj, steps: Mapping[str, Obj], decision: Decision) -> Obj:
        """Steps 3 to 6 (after the workflow's status); returns the latest copy of the workflow."""
        meta = _meta(workflow)
        ns = str(meta.get("namespace") or "")
        wf_key = f"{ns}/{meta['name']}"
        latest = workflow
        step_rvs = {n: _rv(o) for n, o in steps.items()}
        for change in decision.steps:
            cached = steps.get(change.object_name)
            old = StepStatus.from_dict(cached.get("status") if cached else None).to_status()
            patch = merge_patch(old, change.status.to_status())
            if patch:
                written = self._write_status("Step", ns, change.object_name, change.resource_version, patch)
                step_rvs[change.object_name] = _rv(written)

        released = False
        for fin in decision.finalizers:
            if fin.kind == "Step":
                obj = steps.get(fin.name)
                if obj is None:
                    continue
                step_rvs[fin.name] = _rv(self._finalizer(obj, fin, step_rvs.get(fin.name) or _rv(obj)))
            else:
                latest = self._finalizer(latest, fin, _rv(latest))
                released = released or (not fin.add and bool(meta.get("deletionTimestamp")))
        if released:
            self.expectations.forget(object_key("Workflow", ns, str(meta["name"])))
            for obj_name in steps:
                self.expectations.forget(object_key("Step", ns, obj_name))
                with contextlib.suppress(NotFound):
                    self.kube.delete(STEPS, ns, obj_name)
            log.info("workflow released", steps_deleted=len(steps))

        for inv in decision.invocations:
            self.submit(wf_key, inv)

        pending = ((latest.get("status") or {}).get("callbacks") or {}).get("pending")
        if decision.callbacks or pending:
            self.callbacks.wake(wf_key, resource_version=_rv(latest) or None)
        return latest

    def _record_events(self, workflow: Obj, steps: Mapping[str, Obj], decision: Decision) -> None:
        for event in decision.events:
            involved = workflow if event.object_kind == "Workflow" else steps.get(event.object_name)
            if involved is not None:
                self.events.record(involved, event.type, event.reason, event.message)

    def _write_status(self, kind: str, ns: str, name: str, rv: str, patch: Mapping[str, Any]) -> Obj:
        resource = WORKFLOWS if kind == "Workflow" else STEPS
        key = object_key(kind, ns, name)
        try:
            written = self.kube.patch_status(resource, ns, name, patch, resource_version=rv)
        except Conflict:
            self.expectations.conflicted(key, rv)
            raise
        self.expectations.wrote(key, _rv(written))
        return written

    def _finalizer(self, obj: Obj, change: FinalizerChange, rv: str) -> Obj:
        meta = _meta(obj)
        ns, name = str(meta.get("namespace") or ""), str(meta["name"])
        current = [str(f) for f in meta.get("finalizers") or ()]
        wanted = [f for f in current if f != change.finalizer]
        if change.add:
            wanted.append(change.finalizer)
        if wanted == current:
            return obj
        resource = WORKFLOWS if change.kind == "Workflow" else STEPS
        key = object_key(change.kind, ns, name)
        try:
            written = self.kube.patch(resource, ns, name, {"metadata": {"finalizers": wanted}},
                                      resource_version=rv)
        except Conflict:
            self.expectations.conflicted(key, rv)
            raise
        self.expectations.wrote(key, _rv(written))
        log.debug("finalizer changed", kind=change.kind, object=name, add=change.add)
        return written
