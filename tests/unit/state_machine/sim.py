"""A tiny world for driving ``decide`` to a fixed point: it plays the API server (applies the
Decision's creates, status writes and finalizers to dicts), admission, and the step workers (start
due calls, finish them a little later with the outcome the script says, through the pure transitions
of :mod:`reconcilers.state_machine.outcomes`). It records what the invariants need."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from reconcilers.state_machine.admission import start
from reconcilers.state_machine.config import EngineConfig
from reconcilers.state_machine.dag import downstream
from reconcilers.state_machine.decide import decide
from reconcilers.state_machine.decision import CallKind, Decision, Invocation
from reconcilers.state_machine.naming import step_object_name
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
from reconcilers.state_machine.types import (
    Phase,
    Resource,
    RollbackPolicy,
    Step,
    StepStatus,
    Workflow,
    format_time,
)
from tests.unit.state_machine.builders import NOW

OK, RETRY, FATAL, IGNORE = "ok", "retry", "fatal", "ignore"
KINDS = {RETRY: ErrorKind.RETRYABLE, FATAL: ErrorKind.PERMANENT, IGNORE: ErrorKind.IGNORABLE}

#: Allowed phase moves: anything else means a phase moved backwards or skipped illegally.
WORKFLOW_MOVES = {
    Phase.PENDING: {Phase.RUNNING, Phase.FAILED},
    Phase.RUNNING: {Phase.SUCCESS, Phase.ROLLING_BACK, Phase.ROLLED_BACK, Phase.FAILED},
    Phase.ROLLING_BACK: {Phase.ROLLED_BACK, Phase.FAILED},
}
STEP_MOVES = {
    Phase.PENDING: {Phase.RUNNING, Phase.ROLLED_BACK},
    Phase.RUNNING: {Phase.SUCCESS, Phase.ROLLING_BACK},
    Phase.SUCCESS: {Phase.ROLLING_BACK},
    Phase.ROLLING_BACK: {Phase.ROLLED_BACK, Phase.FAILED},
}


@dataclass
class Script:
    """Outcome of the n-th call of each kind per step (beyond the list: ok); when the workflow is
    deleted (a round number, or None); and a seed for which due calls workers pick up when."""

    run: dict[str, list[str]] = field(default_factory=dict)
    rollback: dict[str, list[str]] = field(default_factory=dict)
    sync: dict[str, list[str]] = field(default_factory=dict)
    delete_at: int | None = None
    seed: int = 0


@dataclass
class InFlight:
    invocation: Invocation
    done_round: int


class World:
    def __init__(self, wf: dict[str, Any], script: Script, config: EngineConfig | None = None) -> None:
        self.wf = copy.deepcopy(wf)
        self.script = script
        self.config = config or EngineConfig()
        self.rng = random.Random(script.seed)
        self.objects: dict[str, dict[str, Any]] = {}
        self.now: datetime = NOW
        self.round = 0
        self.gone = False
        self.inflight: dict[str, InFlight] = {}
        self.used: dict[tuple[str, CallKind], int] = {}
        self.spec = Workflow.from_dict(self.wf).spec
        self.below = downstream(self.spec)
        # what the invariants look at
        self.workflow_phases: list[Phase] = [Phase.PENDING]
        self.ever_running: set[str] = set()
        self.run_called: set[str] = set()
        self.rollback_called: set[str] = set()
        self.decisions: list[Decision] = []

    # ----------------------------------------------------------------------------------- the loop

    def run_to_fixed_point(self, max_rounds: int = 3000) -> None:
        while self.round < max_rounds:
            if not self.step():
                return
        raise AssertionError(f"no fixed point after {max_rounds} rounds: {self.wf['status']}")

    def step(self) -> bool:
        """One round; False once nothing can change any more."""
        if self.gone:
            return False
        self.round += 1
        if self.script.delete_at is not None and self.round >= self.script.delete_at:
            self.wf["metadata"].setdefault("deletionTimestamp", format_time(self.now))
        decision = self.decide()
        progress = self.apply(decision)
        if not self.gone and self.phase is Phase.PENDING and not self.wf["metadata"].get("deletionTimestamp"):
            progress |= self.apply(start(self.wf, self.now))
        progress |= self.work(decision)
        if self.gone:
            return False
        if not progress and not decision.invocations:  # a due call a slow worker skipped is still work
            if decision.requeue_after is not None:
                self.now += max(decision.requeue_after, timedelta(seconds=1))
            elif self.script.delete_at is not None and self.round < self.script.delete_at:
                self.round = self.script.delete_at - 1  # nothing moves until the deletion
            else:
                return False
        else:
            self.now += timedelta(seconds=1)
        return True

    def decide(self) -> Decision:
        listed = list(self.objects.values())
        decision = decide(self.wf, listed, self.now, self.config)
        shuffled = listed[:]
        self.rng.shuffle(shuffled)
        again = decide(copy.deepcopy(self.wf), copy.deepcopy(shuffled), self.now, self.config)
        assert again == decision, "decide is not a pure function of its inputs"
        assert decision.requeue_after is None or decision.requeue_after > timedelta(0)
        creating = {c.body["metadata"]["name"] for c in decision.creates}
        assert all(i.object_name in self.objects or i.object_name in creating for i in decision.invocations)
        self.decisions.append(decision)
        return decision

    # ------------------------------------------------------------------------------ API server

    @property
    def phase(self) -> Phase:
        return Phase(self.wf.get("status", {}).get("phase") or Phase.PENDING)

    def step_status(self, step: str) -> StepStatus | None:
        obj = self.objects.get(step_object_name(self.wf["metadata"]["name"], step))
        return StepStatus.from_dict(obj.get("status")) if obj else None

    def apply(self, decision: Decision) -> bool:
        progress = False
        for create in decision.creates:
            name = create.body["metadata"]["name"]
            if name not in self.objects:
                obj = copy.deepcopy(dict(create.body))
                obj["metadata"].update(uid=f"uid-{create.step}", resourceVersion="1")
                self.objects[name] = obj
                progress = True
        if decision.workflow is not None:
            new = decision.workflow.phase
            if new is not self.phase:
                assert new in WORKFLOW_MOVES.get(self.phase, set()), f"workflow {self.phase} -> {new}"
                self.workflow_phases.append(new)
            self.wf["status"] = decision.workflow.to_status()
            progress = True
        for change in decision.steps:
            self.write_step(change.step, change.status)
            progress = True
        for fin in decision.finalizers:
            progress = True
            if fin.kind == "Workflow":
                meta = self.wf["metadata"]
                current = [f for f in meta.get("finalizers", []) if f != fin.finalizer]
                meta["finalizers"] = [*current, fin.finalizer] if fin.add else current
                if not meta["finalizers"] and meta.get("deletionTimestamp"):
                    self.gone = True
            else:
                self.objects[fin.name]["metadata"]["finalizers"] = []
        return progress

    def write_step(self, step: str, status: StepStatus) -> None:
        old = self.step_status(step)
        assert old is not None
        if status.phase is not old.phase:
            allowed = STEP_MOVES.get(old.phase, set())
            assert status.phase in allowed, f"step {step}: {old.phase} -> {status.phase}"
        if status.phase is Phase.RUNNING:
            self.ever_running.add(step)
        if status.phase is Phase.ROLLING_BACK and old.phase is not Phase.ROLLING_BACK:
            for below in self.below[step]:  # nothing that depends on it may still stand (or run)
                st = self.step_status(below)
                if st is None or st.phase in (Phase.PENDING, Phase.ROLLED_BACK):
                    continue
                policy = Workflow.from_dict(self.wf).spec.policy_of(self.spec.step(below))
                settled = st.phase is Phase.FAILED and policy is RollbackPolicy.ALWAYS
                assert settled, f"{step} starts rolling back while {below} depending on it is {st.phase}"
        self.objects[step_object_name(self.wf["metadata"]["name"], step)]["status"] = status.to_status()

    # ----------------------------------------------------------------------------- step workers

    def work(self, decision: Decision) -> bool:
        progress = False
        for inv in decision.invocations:
            if inv.step in self.inflight or self.rng.random() < 0.2:
                continue  # the workqueue runs one call per step at a time; or a worker is slow
            step = Step.from_dict(self.objects[inv.object_name])
            call = next_call(step.spec, step.status, seed=f"{self.wf['metadata']['uid']}/{inv.step}")
            assert call is not None
            assert is_due(call, self.now)
            assert (call.kind, call.attempt) == (inv.kind, inv.attempt), "decide asked for a call not due"
            self.check_call_may_start(inv)
            self.inflight[inv.step] = InFlight(inv, self.round + self.rng.randint(0, 2))
            progress = True
        for name, flight in sorted(self.inflight.items()):
            if flight.done_round <= self.round:
                del self.inflight[name]
                self.finish(flight.invocation)
                progress = True
        return progress or bool(self.inflight)

    def check_call_may_start(self, inv: Invocation) -> None:
        spec = self.spec.step(inv.step)
        if inv.kind is CallKind.RUN:
            self.run_called.add(inv.step)
            for dep in spec.depend_ons:
                up = self.step_status(dep.name)
                assert up is not None, f"{inv.step} runs before {dep.name} exists"
                assert up.phase is Phase.SUCCESS, f"{inv.step} runs before {dep.name}"
                assert dep.resource_status in (None, up.resource.status), f"{inv.step} runs before {dep.name}"
        elif inv.kind is CallKind.ROLLBACK:
            self.rollback_called.add(inv.step)
            for below in self.below[inv.step]:
                st = self.step_status(below)
                if st is None or st.phase is Phase.ROLLED_BACK:
                    continue
                policy = Workflow.from_dict(self.wf).spec.policy_of(self.spec.step(below))
                settled = st.phase is Phase.FAILED and policy is RollbackPolicy.ALWAYS
                assert settled, f"rollback of {inv.step} started while {below} depending on it is {st.phase}"

    def outcome(self, step: str, kind: CallKind) -> str:
        scripts = {CallKind.RUN: self.script.run, CallKind.ROLLBACK: self.script.rollback,
                   CallKind.SYNC: self.script.sync}[kind]
        n = self.used.get((step, kind), 0)
        self.used[(step, kind)] = n + 1
        planned = scripts.get(step, [])
        return planned[n] if n < len(planned) else OK

    def finish(self, inv: Invocation) -> None:
        status = self.step_status(inv.step)
        assert status is not None
        template = self.spec.step(inv.step).template
        result = self.outcome(inv.step, inv.kind)
        now = self.now
        if inv.kind is CallKind.RUN:
            resource = Resource(status="Creating" if template.sync_period_seconds else "Ready",
                                id=f"id-{inv.step}")
            attrs = {"who": inv.step, f"from-{inv.step}": "1"}
            new = (run_succeeded(status, now, resource=resource, attributes=attrs) if result == OK
                   else run_failed(status, template, KINDS[result], f"run {result}", now))
        elif inv.kind is CallKind.ROLLBACK:
            new = (rollback_succeeded(status, now) if result == OK
                   else rollback_failed(status, template, KINDS[result], f"rollback {result}", now))
        else:
            new = (sync_succeeded(status, now, resource=Resource(status="Ready", id=f"id-{inv.step}"))
                   if result == OK else sync_failed(status, KINDS[result], f"sync {result}", now))
        if new != status:
            self.write_step(inv.step, new)
