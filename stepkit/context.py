"""The read-only context handed to every step call.

The engine builds one ``StepContext`` per call; the step reads it and returns a ``StepResult``. Nothing
in it is writable: mappings are ``MappingProxyType`` views of private copies and the dataclasses are
frozen, so a step cannot corrupt the engine's cached objects.

Idempotency: ``idempotency_key`` is ``derive_idempotency_key(workflow.uid, step_name, direction)`` —
the same for every attempt of the same step in the same direction (all run attempts share one key, all
rollback attempts another, all sync calls a third), different across workflows (the uid changes when a
workflow is re-created under the same name). A step that creates something remote should pass it along
(as an ``Idempotency-Key`` header, a client token, a deterministic name) so a repeated call after a
crash finds the earlier result instead of creating a duplicate.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

from stepkit.outputs import ResourceStatus, frozen_str_map

__all__ = ["DIRECTIONS", "Direction", "StepContext", "StepLogger", "WorkflowInfo", "derive_idempotency_key"]

Direction = Literal["run", "rollback", "sync"]
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)


class StepLogger(Protocol):
    """The part of a structlog bound logger a step may use: a constant event plus key/values.

    ``log.info("bucket created", bucket=name)`` — never an f-string as the event. Any structlog
    ``BoundLogger`` (``structlog.get_logger().bind(...)``) satisfies it.
    """

    def bind(self, **new_values: Any) -> StepLogger: ...
    def debug(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def info(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def warning(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def error(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def exception(self, event: str, *args: Any, **kw: Any) -> Any: ...


def derive_idempotency_key(workflow_uid: str, step_name: str, direction: Direction) -> str:
    """The stable idempotency key of one step in one direction: 32 hex characters (128 bits).

    Hashing keeps the key short and header-safe whatever the names contain.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    digest = hashlib.sha256("\x00".join((workflow_uid, step_name, direction)).encode()).hexdigest()
    return digest[:32]


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """The workflow a step belongs to, as of the snapshot the engine acted on.

    ``parameters`` is ``spec.parameters``; ``attributes`` is ``status.attributes`` (the merged outputs
    of the steps that ran before — how steps exchange data).
    """

    name: str
    namespace: str
    uid: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", frozen_str_map(self.parameters, "WorkflowInfo.parameters"))
        object.__setattr__(self, "attributes", frozen_str_map(self.attributes, "WorkflowInfo.attributes"))


@dataclass(frozen=True, slots=True)
class StepContext:
    """Everything one call of ``run`` / ``rollback`` / ``sync`` may know.

    - ``workflow``: the owning workflow (read-only).
    - ``step_name`` / ``step_type``: the step's name in the workflow and its plugin name.
    - ``parameters``: ``stepTemplate.parameters`` (strings; parse them yourself, raise ``PermanentError``
      on a bad value).
    - ``attempt``: 1 for the first attempt in this direction, 2 for the first retry, ... Ignorable errors
      do not advance it. For ``sync`` it is 1 unless the engine counts consecutive failed syncs.
    - ``direction``: which method is being called.
    - ``idempotency_key``: see the module docstring.
    - ``deadline``: a ``time.monotonic()`` value; finish (or raise ``RetryableError``) before it. The
      engine does not kill a late step, but it treats an overrun as a retryable failure.
    - ``resource``: the step's current ``status.resource`` (empty on the first run).
    - ``log``: a structlog logger already bound to workflow, namespace, step and direction.
    """

    workflow: WorkflowInfo
    step_name: str
    step_type: str
    parameters: Mapping[str, str]
    attempt: int
    direction: Direction
    idempotency_key: str
    deadline: float
    resource: ResourceStatus
    log: StepLogger

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.attempt < 1:
            raise ValueError(f"attempt starts at 1, got {self.attempt}")
        if not self.idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        object.__setattr__(self, "parameters", frozen_str_map(self.parameters, "StepContext.parameters"))

    def remaining(self) -> float:
        """Seconds left before ``deadline`` (never negative)."""
        return max(0.0, self.deadline - time.monotonic())
