"""Admission: which Pending workflows start now (Pending -> Running), as pure functions.

Only *active* workflows (Running, RollingBack) hold a slot: finished ones never count (the original
counted every workflow that existed, so admission stopped for good after ``maxRunningCount`` of them).
``FIFO``: oldest creationTimestamp first across all queues. ``FAIR``: the queue with the fewest active
workflows first (counting the ones admitted in this round), ties broken by the queue admitted least
recently, then by name; the oldest workflow within it. (The original tested FIFO twice, so FAIR was
unreachable.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconcilers.state_machine.config import EngineConfig, QueueStrategy
from reconcilers.state_machine.dag import validate
from reconcilers.state_machine.decision import Decision, K8sEvent
from reconcilers.state_machine.types import ACTIVE, Condition, Phase, Workflow

_EPOCH = datetime.min.replace(tzinfo=UTC)

#: The condition type ``decide`` sets (repeated here: decide imports nothing from admission).
SPEC_VALID = "SpecValid"


@dataclass(frozen=True)
class Candidate:
    """What admission needs to know about one workflow."""

    namespace: str
    name: str
    queue: str
    phase: Phase
    created_at: datetime
    started_at: datetime | None = None
    deleting: bool = False

    @classmethod
    def from_workflow(cls, wf: Workflow | Mapping[str, Any]) -> Candidate:
        wf = wf if isinstance(wf, Workflow) else Workflow.from_dict(wf)
        return cls(wf.namespace, wf.name, wf.spec.queue, wf.status.phase, wf.created_at or _EPOCH,
                   wf.status.started_at, wf.deleting)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def admit(workflows: Iterable[Candidate], config: EngineConfig) -> tuple[Candidate, ...]:
    """The Pending workflows to start now, in admission order."""
    everyone = sorted(workflows, key=lambda c: (c.created_at, c.namespace, c.name))
    active: dict[str, int] = {}
    # When each queue last had a workflow admitted: (time, order within this round).
    last_start: dict[str, tuple[datetime, int]] = {}
    for c in everyone:
        if c.phase in ACTIVE:
            active[c.queue] = active.get(c.queue, 0) + 1
        if c.started_at is not None:
            last_start[c.queue] = max(last_start.get(c.queue, (_EPOCH, 0)), (c.started_at, 0))
    waiting = [c for c in everyone if c.phase is Phase.PENDING and not c.deleting]
    slots = max(0, config.max_running_count - sum(active.values()))
    if config.queue_strategy is QueueStrategy.FIFO:
        return tuple(waiting[:slots])

    admitted: list[Candidate] = []
    while waiting and len(admitted) < slots:
        queue = min(sorted({c.queue for c in waiting}),
                    key=lambda q: (active.get(q, 0), last_start.get(q, (_EPOCH, 0))))
        chosen = next(c for c in waiting if c.queue == queue)
        waiting.remove(chosen)
        admitted.append(chosen)
        active[queue] = active.get(queue, 0) + 1
        last_start[queue] = (datetime.max.replace(tzinfo=UTC), len(admitted))
    return tuple(admitted)


def start(workflow: Workflow | Mapping[str, Any], now: datetime) -> Decision:
    """The decision that admits ``workflow``: Pending -> Running, ``startedAt = now``. The
    WorkflowStarted callback follows from the next ``decide`` (its id makes it happen once)."""
    wf = workflow if isinstance(workflow, Workflow) else Workflow.from_dict(workflow)
    if wf.status.phase is not Phase.PENDING or validate(wf.spec, None):
        return Decision()  # an invalid graph is never admitted: its first reconcile rejects it
    # SpecValid here too: a workflow admitted before its Pending status was written (the reconciler
    # postpones that write) gets the condition with this write instead of a write of its own.
    status = wf.status.with_(phase=Phase.RUNNING, started_at=now).with_condition(
        Condition(SPEC_VALID, "True", "Valid"), now)
    return Decision(workflow=status, events=(
        K8sEvent("Workflow", wf.name, "Normal", "Started", f"admitted from queue {wf.spec.queue!r}"),))
