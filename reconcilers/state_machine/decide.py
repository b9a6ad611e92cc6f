"""``decide(workflow, steps, now, config) -> Decision``: the workflow reconciler's whole logic.

Read top to bottom. A workflow is handled by its phase:

- **Pending** (not admitted yet; admission is :mod:`.admission`): validate, record ``Pending``; a
  deletion just drops the finalizer (nothing ran). A spec the CRD could not check (cycle, unknown step
  type, ...) goes straight to ``Failed`` with a ``SpecValid=False`` condition and a Warning Event.
- **Running**: create the missing Step objects; move each Pending step whose dependOns are satisfied
  to Running; ask for the run/sync call each Running/Success step is due for. All steps Success ->
  ``Success``. As soon as a step failed for good (or the workflow is being deleted) -> ``RollingBack``.
- **RollingBack**: walk the steps in reverse topological order (dependents first): a Pending step
  becomes RollBacked without a call; a Running or Success step starts rolling back once every step
  depending on it is settled (RollBacked, or Failed with rollbackPolicy Always); a RollingBack step is
  asked for its rollback call when due. Independent branches therefore roll back in parallel. When
  nothing is left moving: all RollBacked -> ``RollBacked``, else ``Failed`` (a rollback failed for good).
- **Success, RollBacked, Failed** are terminal: the phase never changes again and nothing runs. A
  deletion still undoes the steps (DESIGN.md §4.7) — the step phases move through the same rollback
  walk, shown by ``stepPhases`` and a ``Deleting`` condition — but the workflow keeps the phase it
  finished with. The finalizers go once every step is settled; with PreserveOnFailure a step whose
  rollback failed keeps them (and the object) for a human.

The workflow phase only concludes (and finalizers only go) on what was observed, never in the same
decision that still changes a step, so a failed step write cannot leave a finished workflow behind
with unfinished steps.

Callbacks and their Events derive from the observed state: each event has a stable id and is emitted
when its condition holds and its id is not yet in ``status.callbacks.emitted`` (one per transition,
whatever the number of reconciles).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from reconcilers.state_machine.config import EngineConfig
from reconcilers.state_machine.dag import Problem, downstream, topological_order, validate
from reconcilers.state_machine.decision import (
    CallbackEvent,
    CallbackType,
    Decision,
    FinalizerChange,
    Invocation,
    K8sEvent,
    StepCreate,
    StepStatusChange,
)
from reconcilers.state_machine.naming import FINALIZER, idempotency_key, step_body, step_object_name
from reconcilers.state_machine.schedule import is_due, next_call
from reconcilers.state_machine.types import (
    ACTIVE,
    TERMINAL,
    Condition,
    Failure,
    Outbox,
    Phase,
    RollbackPolicy,
    Step,
    StepSpec,
    StepStatus,
    Workflow,
    WorkflowStatus,
    format_time,
)

SPEC_VALID = "SpecValid"
DELETING = "Deleting"


def decide(
    workflow: Workflow | Mapping[str, Any],
    steps: Iterable[Step | Mapping[str, Any]],
    now: datetime,
    config: EngineConfig,
) -> Decision:
    """Everything to do for ``workflow`` given its Step objects (others in ``steps`` are ignored)."""
    wf = workflow if isinstance(workflow, Workflow) else Workflow.from_dict(workflow)
    if wf.status.phase in TERMINAL and not wf.deleting:
        return Decision()  # before reading the steps: most workflows a cluster keeps are finished
    objects = _by_step_name(wf, steps)
    if wf.status.phase is Phase.PENDING:
        return _pending(wf, objects, now, config)
    if problems := validate(wf.spec, config.step_types):
        if wf.status.phase in TERMINAL:
            # Deleted after it was rejected: its graph or step types cannot be run or rolled back here.
            return Decision(finalizers=_release(wf, objects))
        return _reject(wf, objects, problems, now)
    return _advance(wf, objects, now, config)


def _by_step_name(wf: Workflow, steps: Iterable[Step | Mapping[str, Any]]) -> dict[str, Step]:
    by_object = {s.object_name: s for s in (x if isinstance(x, Step) else Step.from_dict(x) for x in steps)}
    wanted = {step_object_name(wf.name, s.name): s.name for s in wf.spec.steps}
    return {wanted[name]: step for name, step in sorted(by_object.items()) if name in wanted}


# ------------------------------------------------------------------------------------ Pending / bad


def _pending(wf: Workflow, objects: Mapping[str, Step], now: datetime, config: EngineConfig) -> Decision:
    if wf.deleting:
        return Decision(finalizers=_release(wf, objects))
    if problems := validate(wf.spec, config.step_types):
        return _reject(wf, objects, problems, now)
    phases = {s.name: Phase.PENDING for s in wf.spec.steps}
    status = _summary(wf, Phase.PENDING, phases, {}, (), now, config)
    status = status.with_condition(Condition(SPEC_VALID, "True", "Valid"), now)
    first = wf.status == WorkflowStatus()
    # Recording "Pending" can wait: admission usually moves a new workflow on before the status write
    # would land, and then the write (and its Event) is not needed at all.
    events = (_event(wf, "Normal", "Queued", f"waiting for admission in queue {wf.spec.queue!r}",
                     with_status=True),) if first else ()
    return Decision(workflow=_changed(wf, status), finalizers=_hold(wf), events=events,
                    status_can_wait=first or _only_summary(wf.status, status))


def _reject(
    wf: Workflow, objects: Mapping[str, Step], problems: tuple[Problem, ...], now: datetime
) -> Decision:
    message = "; ".join(p.message for p in problems)
    status = wf.status.with_(phase=Phase.FAILED, finished_at=now, observed_generation=wf.generation)
    status = status.with_condition(Condition(SPEC_VALID, "False", problems[0].reason, message), now)
    status, callbacks, events = _notify(wf, status, {}, (), now, EngineConfig())
    return Decision(
        workflow=status,
        finalizers=_release(wf, objects) if wf.deleting else (),
        callbacks=callbacks,
        events=(_event(wf, "Warning", problems[0].reason, message), *events),
    )


# ------------------------------------------------------------------------- Running and rolling back


@dataclass
class _Plan:
    """The decision under construction (local to one ``decide`` call). ``phases`` is every step's
    phase once this decision is applied; a step without an object is Pending (RollBacked once a
    rollback reaches it: it never ran)."""

    wf: Workflow
    objects: Mapping[str, Step]
    now: datetime
    phases: dict[str, Phase]
    changes: dict[str, StepStatus] = field(default_factory=dict)
    invocations: list[Invocation] = field(default_factory=list)
    wakeups: list[datetime] = field(default_factory=list)
    events: list[K8sEvent] = field(default_factory=list)
    step_events: bool = False

    def status(self, name: str) -> StepStatus:
        return self.changes.get(name) or self.objects[name].status

    def move(self, name: str, phase: Phase) -> None:
        self.phases[name] = phase
        if name in self.objects:
            self.changes[name] = self.status(name).with_phase(phase)

    def call(self, name: str) -> None:
        """Ask for the call ``name`` is due for now, or remember when it will be."""
        step = self.objects[name]
        call = next_call(step.spec, self.status(name), seed=f"{self.wf.uid}/{name}")
        if call is None:
            return
        if is_due(call, self.now):
            key = idempotency_key(self.wf.uid, name, call.kind)
            self.invocations.append(
                Invocation(call.kind, name, step.object_name, call.attempt, key, call.due_at))
        elif call.due_at is not None:
            self.wakeups.append(call.due_at)

    def policy(self, name: str) -> RollbackPolicy:
        step = self.objects.get(name)
        return step.spec.rollback_policy if step and step.spec.rollback_policy else (
            self.wf.spec.policy_of(self.wf.spec.step(name)))

    def settled(self, name: str) -> bool:
        """Rolled back, or counts as such: its rollback failed for good under rollbackPolicy Always."""
        phase = self.phases[name]
        if phase is Phase.FAILED:
            return self.policy(name) is RollbackPolicy.ALWAYS
        return phase is Phase.ROLLED_BACK


def _advance(wf: Workflow, objects: Mapping[str, Step], now: datetime, config: EngineConfig) -> Decision:
    order = topological_order(wf.spec)
    observed = {name: objects[name].status for name in order if name in objects}
    rolling_back = (wf.deleting or wf.status.phase is Phase.ROLLING_BACK
                    or any(map(_failed, observed.values())))
    creates: tuple[StepCreate, ...] = ()
    if not rolling_back:
        creates = tuple(StepCreate(s.name, step_body(wf, s)) for s in wf.spec.steps if s.name not in objects)
        if creates and FINALIZER not in wf.finalizers:
            # Admitted before its first reconcile held it: no Step exists without the finalizer that
            # makes a deletion roll them back.
            return Decision(finalizers=_hold(wf))
        # A step created by this decision is planned as a Pending object with no resourceVersion yet:
        # if it is ready it starts in the same decision (the applier writes its Running status with the
        # version the create returned), saving a reconcile and a workflow status write per workflow.
        objects = {**objects, **{c.step: Step.from_dict(c.body) for c in creates}}
    plan = _Plan(wf, objects, now, {name: observed[name].phase if name in observed else Phase.PENDING
                                    for name in order}, step_events=config.step_events)
    if rolling_back:
        _plan_rollback(plan, order)
    else:
        _plan_run(plan, order, observed)

    phase = _next_phase(wf.status.phase, plan, rolling_back)
    finished = not plan.changes and not _moving(plan)
    done = finished and all(plan.settled(name) for name in order)
    status = _summary(wf, phase, plan.phases, {**observed, **plan.changes}, order, now, config)
    if status.condition(SPEC_VALID) is None:  # admitted before its Pending status was ever written
        status = status.with_condition(Condition(SPEC_VALID, "True", "Valid"), now)
    if wf.deleting and not done:
        undoing = Condition(DELETING, "True", "RollingBack",
                            "rolling back every step that ran before removing the finalizers")
        status = status.with_condition(_deletion_blocked(plan, order) if finished else undoing, now)
    status, callbacks, events = _notify(wf, status, observed, order, now, config)
    if phase is not wf.status.phase:
        events = (_phase_event(wf, phase, plan, order), *events)
    wakeups = sorted(plan.wakeups)
    return Decision(
        status_can_wait=_only_summary(wf.status, status),
        creates=creates,
        workflow=_changed(wf, status),
        steps=tuple(StepStatusChange(name, objects[name].object_name, objects[name].resource_version, st)
                    for name, st in sorted(plan.changes.items(), key=lambda kv: order.index(kv[0]))),
        finalizers=(_release(wf, objects) if done else ()) if wf.deleting else _hold(wf),
        invocations=tuple(plan.invocations),
        callbacks=callbacks,
        events=(*events, *plan.events),
        requeue_after=wakeups[0] - now if wakeups else None,
    )


def _failed(status: StepStatus) -> bool:
    """A step that failed for good (or is already being undone) makes the whole workflow roll back."""
    return status.failure is not None or status.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.FAILED)


def _ready(step: StepSpec, observed: Mapping[str, StepStatus]) -> bool:
    """Every dependOn names a step in the wanted phase (and resource status, if one is asked for)."""
    return all(
        (up := observed.get(d.name)) is not None and up.phase is d.phase
        and (d.resource_status is None or up.resource.status == d.resource_status)
        for d in step.depend_ons
    )


def _plan_run(plan: _Plan, order: tuple[str, ...], observed: Mapping[str, StepStatus]) -> None:
    for name in order:
        if name not in plan.objects:
            continue  # created by this decision; it starts once it is observed
        if plan.phases[name] is Phase.PENDING and _ready(plan.wf.spec.step(name), observed):
            plan.move(name, Phase.RUNNING)
            if plan.step_events:
                plan.events.append(_event(plan.wf, "Normal", "StepStarted", f"step {name} started"))
        plan.call(name)  # run when Running, sync when Success


def _plan_rollback(plan: _Plan, order: tuple[str, ...]) -> None:
    below = downstream(plan.wf.spec)
    for name in reversed(order):  # dependents before the steps they depend on
        phase = plan.phases[name]
        if phase is Phase.PENDING:
            plan.move(name, Phase.ROLLED_BACK)  # never ran: nothing to undo, no call
        elif phase in (Phase.RUNNING, Phase.SUCCESS) and all(plan.settled(d) for d in below[name]):
            plan.move(name, Phase.ROLLING_BACK)
        if plan.phases[name] is Phase.ROLLING_BACK:
            plan.call(name)


def _moving(plan: _Plan) -> bool:
    return any(p in (Phase.RUNNING, Phase.ROLLING_BACK) for p in plan.phases.values())


def _next_phase(current: Phase, plan: _Plan, rolling_back: bool) -> Phase:
    if current in TERMINAL:
        return current
    if not rolling_back:
        return Phase.SUCCESS if all(p is Phase.SUCCESS for p in plan.phases.values()) else Phase.RUNNING
    if plan.changes or _moving(plan):
        return Phase.ROLLING_BACK
    return Phase.ROLLED_BACK if all(p is Phase.ROLLED_BACK for p in plan.phases.values()) else Phase.FAILED


def _deletion_blocked(plan: _Plan, order: tuple[str, ...]) -> Condition:
    failed = [n for n in order if plan.phases[n] is Phase.FAILED]
    kept = [n for n in order if plan.phases[n] is Phase.SUCCESS]
    return Condition(DELETING, "True", "RollbackFailed",
                     f"rollback of {', '.join(failed)} failed for good (rollbackPolicy PreserveOnFailure); "
                     f"kept as they are: {', '.join(kept) or 'none'}; the finalizer stays until a human acts")


# ------------------------------------------------------------------------------ status and outputs


def _summary(wf: Workflow, phase: Phase, phases: Mapping[str, Phase], statuses: Mapping[str, StepStatus],
             order: Iterable[str], now: datetime, config: EngineConfig) -> WorkflowStatus:
    """stepPhases, merged attributes (later in topological order wins) and aggregated errors."""
    order = tuple(order)
    counts = {str(p): 0 for p in Phase}
    for p in phases.values():
        counts[str(p)] += 1
    attributes: dict[str, str] = {}
    for name in order:
        if name in statuses:
            attributes.update(statuses[name].attributes)

    def errors(pick: str) -> str:
        joined = "; ".join(f"{n}: {getattr(statuses[n], pick)}" for n in order
                           if n in statuses and getattr(statuses[n], pick))
        return joined[: config.max_error_length]

    status = wf.status.with_(
        phase=phase, step_phases=MappingProxyType(counts), attributes=MappingProxyType(attributes),
        run_error=errors("run_error"), rollback_error=errors("rollback_error"),
        sync_error=errors("sync_error"),
        observed_generation=wf.generation,
    )
    if phase in ACTIVE and status.started_at is None:
        status = status.with_(started_at=now)
    if phase in TERMINAL and status.finished_at is None:
        status = status.with_(finished_at=now)
    return status


def _notify(wf: Workflow, status: WorkflowStatus, observed: Mapping[str, StepStatus], order: Iterable[str],
            now: datetime, config: EngineConfig,
            ) -> tuple[WorkflowStatus, tuple[CallbackEvent, ...], tuple[K8sEvent, ...]]:
    """The callback events whose condition holds and that were not emitted yet, recorded in the outbox.

    Without ``spec.callback`` only the events that also post a Kubernetes Event are recorded (a step
    failing for good, its rollback failing for good; a step's success with ``stepEvents``): an id
    nobody consumes would cost a status write of its own."""
    wanted: list[tuple[CallbackType, str | None]] = []
    if status.started_at is not None:
        wanted.append((CallbackType.WORKFLOW_STARTED, None))
    for name in order:
        step = observed.get(name)
        if step and step.phase is Phase.SUCCESS:
            wanted.append((CallbackType.STEP_SUCCEEDED, name))
        if step and step.failure is not None:
            wanted.append((CallbackType.STEP_FAILED, name))
        if step and step.phase is Phase.FAILED:
            wanted.append((CallbackType.STEP_ROLLBACK_FAILED, name))
    valid = status.condition(SPEC_VALID)
    rolled_back = status.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.FAILED)
    if status.started_at is not None and rolled_back and not (valid and valid.status == "False"):
        wanted.append((CallbackType.WORKFLOW_ROLLING_BACK, None))
    wanted += {Phase.SUCCESS: [(CallbackType.WORKFLOW_SUCCEEDED, None)],
               Phase.ROLLED_BACK: [(CallbackType.WORKFLOW_ROLLED_BACK, None)],
               Phase.FAILED: [(CallbackType.WORKFLOW_FAILED, None)]}.get(status.phase, [])

    if not wf.spec.callback:
        evented = {CallbackType.STEP_FAILED, CallbackType.STEP_ROLLBACK_FAILED}
        if config.step_events:
            evented.add(CallbackType.STEP_SUCCEEDED)
        wanted = [(t, s) for t, s in wanted if t in evented]
    uid = wf.uid or f"{wf.namespace}/{wf.name}"
    emitted = set(status.callbacks.emitted)
    new: list[CallbackEvent] = []
    for type_, step_name in wanted:
        event_id = f"{uid}:{type_}" + (f":{step_name}" if step_name else "")
        if event_id not in emitted:
            payload = _payload(wf, status, event_id, type_, step_name, observed, now)
            new.append(CallbackEvent(event_id, type_, step_name, payload))
    if not new:
        return status, (), ()
    outbox = status.callbacks
    pending = (*outbox.pending, *(e.payload for e in new)) if wf.spec.callback else outbox.pending
    status = status.with_(callbacks=Outbox((*outbox.emitted, *(e.id for e in new)), pending))
    events = tuple(_event(wf, "Normal" if e.type is CallbackType.STEP_SUCCEEDED else "Warning", str(e.type),
                          _step_message(e, observed)) for e in new if e.step)
    return status, tuple(new) if wf.spec.callback else (), events


def _payload(wf: Workflow, status: WorkflowStatus, event_id: str, type_: CallbackType, step: str | None,
             observed: Mapping[str, StepStatus], now: datetime) -> Mapping[str, Any]:
    errors: WorkflowStatus | StepStatus = observed[step] if step else status
    payload: dict[str, Any] = {
        "id": event_id, "type": str(type_), "timestamp": format_time(now),
        "name": wf.name, "namespace": wf.namespace, "uid": wf.uid, "phase": str(status.phase),
        "attributes": dict(status.attributes), "runError": errors.run_error,
        "rollbackError": errors.rollback_error, "syncError": errors.sync_error,
    }
    if step:
        payload["step"] = step
        payload["stepPhase"] = str(observed[step].phase)
    return MappingProxyType(payload)


def _step_message(event: CallbackEvent, observed: Mapping[str, StepStatus]) -> str:
    step = observed[event.step or ""]
    if event.type is CallbackType.STEP_SUCCEEDED:
        return f"step {event.step} succeeded"
    if event.type is CallbackType.STEP_FAILED:
        error = step.run_error if step.failure is Failure.RUN else step.sync_error
        return f"step {event.step}: {step.failure} failed for good: {error}"
    return f"step {event.step}: rollback failed for good: {step.rollback_error}"


def _phase_event(wf: Workflow, phase: Phase, plan: _Plan, order: tuple[str, ...]) -> K8sEvent:
    if phase is Phase.SUCCESS:
        return _event(wf, "Normal", "Succeeded", f"all {len(order)} steps succeeded")
    if phase is Phase.ROLLED_BACK:
        return _event(wf, "Normal", "RolledBack", f"all {len(order)} steps rolled back")
    if phase is Phase.FAILED:
        failed = ", ".join(n for n in order if plan.phases[n] is Phase.FAILED)
        return _event(wf, "Warning", "Failed", f"rollback failed for good: {failed}")
    failed = ", ".join(n for n in order if n in plan.objects and plan.objects[n].status.failure)
    why = "the workflow is being deleted" if wf.deleting else f"step(s) failed for good: {failed}"
    return _event(wf, "Warning", "RollingBack", f"rolling back: {why}")


def _event(wf: Workflow, type_: str, reason: str, message: str, *, with_status: bool = False) -> K8sEvent:
    return K8sEvent("Workflow", wf.name, type_, reason, message, with_status=with_status)


#: What a workflow status only summarises from its Step objects (the printer columns' counts, merged
#: attributes, aggregated errors): a change to these alone may be written a little later, together with
#: the next change that matters (a phase, a condition, the callback outbox).
_SUMMARY = ("step_phases", "attributes", "run_error", "rollback_error", "sync_error", "observed_generation")


def _only_summary(old: WorkflowStatus, new: WorkflowStatus) -> bool:
    return new != old and new.with_(**{f: getattr(old, f) for f in _SUMMARY}) == old


def _changed(wf: Workflow, status: WorkflowStatus) -> WorkflowStatus | None:
    return None if status == wf.status else status


def _hold(wf: Workflow) -> tuple[FinalizerChange, ...]:
    return () if FINALIZER in wf.finalizers else (FinalizerChange("Workflow", wf.name, FINALIZER, add=True),)


def _release(wf: Workflow, objects: Mapping[str, Step]) -> tuple[FinalizerChange, ...]:
    """Remove the finalizers: the Steps' first, then the Workflow's."""
    steps = tuple(FinalizerChange("Step", s.object_name, FINALIZER, add=False)
                  for s in objects.values() if FINALIZER in s.finalizers)
    own = (FinalizerChange("Workflow", wf.name, FINALIZER, add=False),) if FINALIZER in wf.finalizers else ()
    return (*steps, *own)
