"""What ``decide`` returns: everything the workflow reconciler must do, as frozen values.

The applier carries a Decision out in this order and stops at the first conflict (409 = requeue):

1. ``creates``      create the missing Step objects (AlreadyExists is fine: creation is idempotent);
2. ``workflow``     write the workflow's status (with the resourceVersion it was decided from);
3. ``steps``        write each changed Step status (with the Step's resourceVersion; several at once
                   may go out concurrently: their order does not matter, see the applier);
4. ``finalizers``   remove/add finalizers (Steps before the Workflow);
5. ``invocations``  hand the calls to the step queues (deduplicated by ``Invocation.key``); a call may
                   name a Step created by this decision (its status change carries no
                   resourceVersion: the applier uses the one the create returned, and drops the change
                   and the call if the create did not happen);
6. ``callbacks``    wake the callback sender (the events are already in the workflow's status outbox);
7. ``events``       post Kubernetes Events;
8. ``requeue_after`` look at the workflow again after this long (None: only when something changes).

Writing the workflow status before the steps means the outbox is recorded before the step
transitions that follow it, so a failed write neither loses nor repeats a callback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from reconcilers.state_machine.types import StepStatus, WorkflowStatus, format_time


class CallKind(StrEnum):
    RUN = "run"
    ROLLBACK = "rollback"
    SYNC = "sync"


@dataclass(frozen=True)
class StepCreate:
    step: str
    body: Mapping[str, Any]


@dataclass(frozen=True)
class StepStatusChange:
    step: str
    object_name: str
    resource_version: str
    status: StepStatus


@dataclass(frozen=True)
class FinalizerChange:
    kind: str  # "Step" or "Workflow"
    name: str
    finalizer: str
    add: bool


@dataclass(frozen=True)
class Invocation:
    """One plugin call to make. ``attempt`` counts from 1 (always 1 for sync); ``idempotency_key`` is the same
    for every attempt of the same step and direction (what plugins deduplicate on); ``key`` names this
    attempt (what the step queue deduplicates on, since ``decide`` repeats a due call until its
    outcome is written)."""

    kind: CallKind
    step: str
    object_name: str
    attempt: int
    idempotency_key: str
    due_at: datetime | None = None

    @property
    def key(self) -> str:
        when = format_time(self.due_at) if self.kind is CallKind.SYNC and self.due_at else ""
        return f"{self.object_name}/{self.kind}/{self.attempt}/{when}"


class CallbackType(StrEnum):
    WORKFLOW_STARTED = "WorkflowStarted"
    WORKFLOW_SUCCEEDED = "WorkflowSucceeded"
    WORKFLOW_ROLLING_BACK = "WorkflowRollingBack"
    WORKFLOW_ROLLED_BACK = "WorkflowRolledBack"
    WORKFLOW_FAILED = "WorkflowFailed"
    STEP_SUCCEEDED = "StepSucceeded"
    STEP_FAILED = "StepFailed"
    STEP_ROLLBACK_FAILED = "StepRollbackFailed"


@dataclass(frozen=True)
class CallbackEvent:
    """A callback to POST. ``id`` is stable (``<workflow uid>:<type>[:<step>]``): each transition has
    one id, so the receiver and the sender can deduplicate. ``payload`` is the JSON body."""

    id: str
    type: CallbackType
    step: str | None
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class K8sEvent:
    object_kind: str  # "Workflow" or "Step"
    object_name: str
    type: str  # "Normal" or "Warning"
    reason: str
    message: str
    #: Post it only together with the workflow status write of the same decision (when that write is
    #: postponed, so is the Event: the next decision repeats both).
    with_status: bool = False


@dataclass(frozen=True)
class Decision:
    creates: tuple[StepCreate, ...] = ()
    workflow: WorkflowStatus | None = None  # the new status, or None when it does not change
    steps: tuple[StepStatusChange, ...] = ()
    finalizers: tuple[FinalizerChange, ...] = ()
    invocations: tuple[Invocation, ...] = ()
    callbacks: tuple[CallbackEvent, ...] = ()
    events: tuple[K8sEvent, ...] = ()
    requeue_after: timedelta | None = None
    #: The workflow status change only summarises the steps (or first records Pending): the applier may
    #: postpone it briefly and write it together with a later change (``EngineSettings.status_delay``).
    status_can_wait: bool = False

    @property
    def is_noop(self) -> bool:
        return self == Decision()
