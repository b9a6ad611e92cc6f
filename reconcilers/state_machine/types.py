"""Frozen values for workflows and steps, with explicit codecs from and to the API's dicts.

``X.from_dict(d)`` reads what the API server returns (defaults filled in here too, so a value built
without the CRD's defaulting — a unit test, an old object — means the same thing); ``to_dict()`` /
``to_status()`` write the camelCase dict the API expects, omitting empty fields. Values never hold a
reference into the dict they were read from (informer caches are read-only), and ``with_*`` methods
return changed copies.

Phases (absent phase = Pending)::

    workflow:  Pending -> Running -> Success
                          Running -> RollingBack -> RollBacked | Failed
    step:      Pending -> Running -> Success -> RollingBack -> RollBacked | Failed
               Pending -> RollBacked                 (never ran; no call)
               Running -> RollingBack
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Self


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCESS = "Success"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RollBacked"
    FAILED = "Failed"


#: Nothing moves a workflow out of these phases (a deletion still undoes its steps, see ``decide``).
TERMINAL: frozenset[Phase] = frozenset({Phase.SUCCESS, Phase.ROLLED_BACK, Phase.FAILED})
#: Workflows in these phases hold an admission slot (maxRunningCount).
ACTIVE: frozenset[Phase] = frozenset({Phase.RUNNING, Phase.ROLLING_BACK})


class RollbackPolicy(StrEnum):
    ALWAYS = "Always"
    PRESERVE_ON_FAILURE = "PreserveOnFailure"


class Backoff(StrEnum):
    FIXED = "Fixed"
    EXPONENTIAL = "Exponential"


class Failure(StrEnum):
    """Why a step failed for good: set by the step worker, it is what starts the workflow's rollback."""

    RUN = "Run"
    SYNC = "Sync"


Strings = Mapping[str, str]
EMPTY: Strings = MappingProxyType({})


def no_strings() -> Strings:
    return EMPTY


def frozen(value: Mapping[str, Any] | None) -> Strings:
    """A read-only copy of a string map (values stringified: the CRD only allows strings)."""
    return MappingProxyType({str(k): str(v) for k, v in (value or {}).items()}) if value else EMPTY


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def format_time(value: datetime) -> str:
    value = value.astimezone(UTC)
    pattern = "%Y-%m-%dT%H:%M:%S.%fZ" if value.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return value.strftime(pattern)


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    """Drop unset fields (None, "", empty maps/lists) so statuses stay small and diffs stay quiet."""
    return {k: v for k, v in d.items() if v not in (None, "", {}, [])}


# --------------------------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class RetryPolicy:
    """``runRetryLimit`` is the number of run attempts (a retryable failure uses one, an ignorable one
    does not); ``rollbackRetryLimit`` the same for rollback, ``<= 0`` meaning unlimited. Periods are
    seconds; ``backoff``/``maxRetryPeriodSeconds``/``jitter`` extend the original (fixed period)."""

    run_retry_limit: int = 3
    run_retry_period_seconds: int = 60
    rollback_retry_limit: int = 3
    rollback_retry_period_seconds: int = 60
    backoff: Backoff = Backoff.FIXED
    max_retry_period_seconds: int = 3600
    jitter: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Self:
        d = d or {}
        return cls(
            run_retry_limit=int(d.get("runRetryLimit", 3)),
            run_retry_period_seconds=int(d.get("runRetryPeriodSeconds", 60)),
            rollback_retry_limit=int(d.get("rollbackRetryLimit", 3)),
            rollback_retry_period_seconds=int(d.get("rollbackRetryPeriodSeconds", 60)),
            backoff=Backoff(d.get("backoff", Backoff.FIXED)),
            max_retry_period_seconds=int(d.get("maxRetryPeriodSeconds", 3600)),
            jitter=bool(d.get("jitter", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "runRetryLimit": self.run_retry_limit,
            "runRetryPeriodSeconds": self.run_retry_period_seconds,
            "rollbackRetryLimit": self.rollback_retry_limit,
            "rollbackRetryPeriodSeconds": self.rollback_retry_period_seconds,
            "backoff": str(self.backoff),
            "maxRetryPeriodSeconds": self.max_retry_period_seconds,
            "jitter": self.jitter,
        }


@dataclass(frozen=True)
class StepTemplate:
    """A step's ``stepTemplate`` in the workflow, and the ``spec`` of its Step object.
    ``rollback_policy`` None means "the workflow's" (a Step object always carries the effective one)."""

    type: str
    parameters: Strings = field(default_factory=no_strings)
    rollback_policy: RollbackPolicy | None = None
    retry_policy: RetryPolicy = RetryPolicy()
    sync_period_seconds: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        policy = d.get("rollbackPolicy")
        return cls(
            type=str(d["type"]),
            parameters=frozen(d.get("parameters")),
            rollback_policy=RollbackPolicy(policy) if policy else None,
            retry_policy=RetryPolicy.from_dict(d.get("retryPolicy")),
            sync_period_seconds=int(d.get("syncPeriodSeconds", 0)),
        )

    def to_dict(self) -> dict[str, Any]:
        return _compact({
            "type": self.type,
            "parameters": dict(self.parameters),
            "rollbackPolicy": str(self.rollback_policy) if self.rollback_policy else None,
            "retryPolicy": self.retry_policy.to_dict(),
            "syncPeriodSeconds": self.sync_period_seconds,
        })


@dataclass(frozen=True)
class DependOn:
    name: str
    phase: Phase = Phase.SUCCESS
    resource_status: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        return cls(str(d["name"]), Phase(d.get("phase", Phase.SUCCESS)), d.get("resourceStatus") or None)


@dataclass(frozen=True)
class StepSpec:
    name: str
    depend_ons: tuple[DependOn, ...]
    template: StepTemplate

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            name=str(d["name"]),
            depend_ons=tuple(DependOn.from_dict(x) for x in d.get("dependOns") or ()),
            template=StepTemplate.from_dict(d["stepTemplate"]),
        )


@dataclass(frozen=True)
class Callback:
    url: str
    ignore_not_found: bool = True


@dataclass(frozen=True)
class WorkflowSpec:
    steps: tuple[StepSpec, ...]
    queue: str = "default"
    rollback_policy: RollbackPolicy = RollbackPolicy.PRESERVE_ON_FAILURE
    parameters: Strings = field(default_factory=no_strings)
    callback: Callback | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        cb = d.get("callback")
        return cls(
            steps=tuple(StepSpec.from_dict(s) for s in d.get("steps") or ()),
            queue=str(d.get("queue") or "default"),
            rollback_policy=RollbackPolicy(d.get("rollbackPolicy") or RollbackPolicy.PRESERVE_ON_FAILURE),
            parameters=frozen(d.get("parameters")),
            callback=Callback(str(cb["url"]), bool(cb.get("ignoreNotFound", True))) if cb else None,
        )

    def step(self, name: str) -> StepSpec:
        return next(s for s in self.steps if s.name == name)

    def policy_of(self, step: StepSpec) -> RollbackPolicy:
        return step.template.rollback_policy or self.rollback_policy


# --------------------------------------------------------------------------------------------- step


@dataclass(frozen=True)
class Resource:
    """What a step created, as its plugin reports it; ``status`` is what dependOns.resourceStatus waits on."""

    status: str = ""
    id: str = ""
    name: str = ""
    address: str = ""
    attributes: Strings = field(default_factory=no_strings)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Self:
        d = d or {}
        return cls(str(d.get("status", "")), str(d.get("id", "")), str(d.get("name", "")),
                   str(d.get("address", "")), frozen(d.get("attributes")))

    def to_dict(self) -> dict[str, Any]:
        return _compact({"status": self.status, "id": self.id, "name": self.name, "address": self.address,
                         "attributes": dict(self.attributes)})


@dataclass(frozen=True)
class StepStatus:
    """A Step object's ``status`` (DESIGN.md §3), plus ``failure`` (see :class:`Failure`) and
    ``retry_not_before`` (a step error's ``delay`` hint: no next call before it). Counts are failed
    attempts so far; ``latest*At`` are when the latest attempt failed (or sync ran)."""

    phase: Phase = Phase.PENDING
    resource: Resource = Resource()
    attributes: Strings = field(default_factory=no_strings)
    run_retry_count: int = 0
    latest_run_retry_at: datetime | None = None
    rollback_retry_count: int = 0
    latest_rollback_retry_at: datetime | None = None
    latest_sync_at: datetime | None = None
    retry_not_before: datetime | None = None
    run_error: str = ""
    rollback_error: str = ""
    sync_error: str = ""
    failure: Failure | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Self:
        d = d or {}
        failure = d.get("failure")
        return cls(
            phase=Phase(d.get("phase") or Phase.PENDING),
            resource=Resource.from_dict(d.get("resource")),
            attributes=frozen(d.get("attributes")),
            run_retry_count=int(d.get("runRetryCount", 0)),
            latest_run_retry_at=parse_time(d.get("latestRunRetryAt")),
            rollback_retry_count=int(d.get("rollbackRetryCount", 0)),
            latest_rollback_retry_at=parse_time(d.get("latestRollbackRetryAt")),
            latest_sync_at=parse_time(d.get("latestSyncAt")),
            retry_not_before=parse_time(d.get("retryNotBefore")),
            run_error=str(d.get("runError", "")),
            rollback_error=str(d.get("rollbackError", "")),
            sync_error=str(d.get("syncError", "")),
            failure=Failure(failure) if failure else None,
        )

    def to_status(self) -> dict[str, Any]:
        def t(v: datetime | None) -> str | None:
            return format_time(v) if v else None

        return _compact({
            "phase": str(self.phase),
            "resource": self.resource.to_dict(),
            "attributes": dict(self.attributes),
            "runRetryCount": self.run_retry_count or None,
            "latestRunRetryAt": t(self.latest_run_retry_at),
            "rollbackRetryCount": self.rollback_retry_count or None,
            "latestRollbackRetryAt": t(self.latest_rollback_retry_at),
            "latestSyncAt": t(self.latest_sync_at),
            "retryNotBefore": t(self.retry_not_before),
            "runError": self.run_error,
            "rollbackError": self.rollback_error,
            "syncError": self.sync_error,
            "failure": str(self.failure) if self.failure else None,
        })

    def with_phase(self, phase: Phase) -> StepStatus:
        return dataclasses.replace(self, phase=phase)

    def with_(self, **changes: Any) -> StepStatus:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Step:
    """A Step object as the reconciler sees it. ``spec.rollback_policy`` is the effective one."""

    object_name: str
    spec: StepTemplate
    status: StepStatus = StepStatus()
    uid: str = ""
    resource_version: str = ""
    finalizers: tuple[str, ...] = ()
    deleting: bool = False

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Self:
        meta = obj.get("metadata") or {}
        return cls(
            object_name=str(meta["name"]),
            spec=StepTemplate.from_dict(obj["spec"]),
            status=StepStatus.from_dict(obj.get("status")),
            uid=str(meta.get("uid", "")),
            resource_version=str(meta.get("resourceVersion", "")),
            finalizers=tuple(meta.get("finalizers") or ()),
            deleting=bool(meta.get("deletionTimestamp")),
        )


# ----------------------------------------------------------------------------------------- workflow


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str = ""
    last_transition_time: datetime | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        return cls(str(d["type"]), str(d["status"]), str(d.get("reason", "")), str(d.get("message", "")),
                   parse_time(d.get("lastTransitionTime")))

    def to_dict(self) -> dict[str, Any]:
        return _compact({"type": self.type, "status": self.status, "reason": self.reason,
                         "message": self.message,
                         "lastTransitionTime": format_time(self.last_transition_time)
                         if self.last_transition_time else None})


@dataclass(frozen=True)
class Outbox:
    """The callback outbox kept in the workflow's status: the id of every event emitted so far (so an
    event is emitted once per transition, not once per reconcile, across restarts) and the events the
    callback sender has not delivered yet (it removes them with :meth:`with_delivered`)."""

    emitted: tuple[str, ...] = ()
    pending: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Self:
        d = d or {}
        pending = tuple(MappingProxyType(dict(e)) for e in d.get("pending") or ())
        return cls(tuple(d.get("emitted") or ()), pending)

    def to_dict(self) -> dict[str, Any]:
        return _compact({"emitted": list(self.emitted), "pending": [dict(e) for e in self.pending]})

    def with_delivered(self, ids: frozenset[str]) -> Outbox:
        return Outbox(self.emitted, tuple(e for e in self.pending if e.get("id") not in ids))


@dataclass(frozen=True)
class WorkflowStatus:
    phase: Phase = Phase.PENDING
    step_phases: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    attributes: Strings = field(default_factory=no_strings)
    run_error: str = ""
    rollback_error: str = ""
    sync_error: str = ""
    conditions: tuple[Condition, ...] = ()
    observed_generation: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    callbacks: Outbox = field(default_factory=Outbox)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Self:
        d = d or {}
        return cls(
            phase=Phase(d.get("phase") or Phase.PENDING),
            step_phases=MappingProxyType({str(k): int(v) for k, v in (d.get("stepPhases") or {}).items()}),
            attributes=frozen(d.get("attributes")),
            run_error=str(d.get("runError", "")),
            rollback_error=str(d.get("rollbackError", "")),
            sync_error=str(d.get("syncError", "")),
            conditions=tuple(Condition.from_dict(c) for c in d.get("conditions") or ()),
            observed_generation=int(d.get("observedGeneration", 0)),
            started_at=parse_time(d.get("startedAt")),
            finished_at=parse_time(d.get("finishedAt")),
            callbacks=Outbox.from_dict(d.get("callbacks")),
        )

    def to_status(self) -> dict[str, Any]:
        return _compact({
            "phase": str(self.phase),
            "stepPhases": dict(self.step_phases),
            "attributes": dict(self.attributes),
            "runError": self.run_error,
            "rollbackError": self.rollback_error,
            "syncError": self.sync_error,
            "conditions": [c.to_dict() for c in self.conditions],
            "observedGeneration": self.observed_generation or None,
            "startedAt": format_time(self.started_at) if self.started_at else None,
            "finishedAt": format_time(self.finished_at) if self.finished_at else None,
            "callbacks": self.callbacks.to_dict(),
        })

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def with_condition(self, new: Condition, now: datetime) -> WorkflowStatus:
        """Set a condition; its lastTransitionTime only moves when its status changes."""
        old = self.condition(new.type)
        since = old.last_transition_time if old and old.status == new.status else now
        kept = tuple(c for c in self.conditions if c.type != new.type)
        conditions = tuple(sorted((*kept, dataclasses.replace(new, last_transition_time=since)),
                                  key=lambda c: c.type))
        return dataclasses.replace(self, conditions=conditions)

    def with_(self, **changes: Any) -> WorkflowStatus:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Workflow:
    name: str
    spec: WorkflowSpec
    status: WorkflowStatus = WorkflowStatus()
    namespace: str = ""
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    created_at: datetime | None = None
    deleting: bool = False
    finalizers: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], *, spec: WorkflowSpec | None = None) -> Self:
        """``spec``: the already parsed spec of this object's generation (only its status and metadata
        are read then)."""
        meta = obj.get("metadata") or {}
        return cls(
            name=str(meta["name"]),
            spec=spec if spec is not None else WorkflowSpec.from_dict(obj.get("spec") or {}),
            status=WorkflowStatus.from_dict(obj.get("status")),
            namespace=str(meta.get("namespace", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation", 0)),
            resource_version=str(meta.get("resourceVersion", "")),
            created_at=parse_time(meta.get("creationTimestamp")),
            deleting=bool(meta.get("deletionTimestamp")),
            finalizers=tuple(meta.get("finalizers") or ()),
        )
