"""``StepHarness``: call a step's ``run`` / ``rollback`` / ``sync`` without a cluster.

The harness builds the same frozen ``StepContext`` the engine would (a fixed test workflow, the
idempotency key from ``derive_idempotency_key``, a generous deadline, a real structlog logger whose
events are recorded in ``harness.events``) and treats the outcome the way the engine does:

- a returned ``StepResult`` (or ``None``) is returned; anything else raises ``TypeError`` (a plugin bug
  the engine would also reject);
- a ``StepError`` propagates unchanged;
- any other exception is re-raised as the ``RetryableError`` the engine would record
  (``stepkit.errors.classify``), with the original as ``__cause__``.

Example::

    harness = StepHarness(MyStep())
    result = harness.run({"bucket": "b1"})
    assert result is not None and result.resource is not None
    harness.rollback({"bucket": "b1"}, resource=result.resource)
    assert harness.events[-1]["event"] == "bucket deleted"

Not thread-safe: one harness per test.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
from structlog.testing import LogCapture

from stepkit.context import Direction, StepContext, StepLogger, WorkflowInfo, derive_idempotency_key
from stepkit.errors import StepError, classify
from stepkit.outputs import ResourceStatus, StepResult
from stepkit.protocol import Step

__all__ = ["DEFAULT_WORKFLOW", "StepHarness", "capturing_logger"]

DEFAULT_WORKFLOW = WorkflowInfo(
    name="test-workflow", namespace="default", uid="00000000-0000-4000-8000-000000000000"
)


def capturing_logger() -> tuple[StepLogger, list[MutableMapping[str, Any]]]:
    """A real structlog bound logger (the engine's kind) and the list its events are appended to.

    Events have the ``structlog.testing.capture_logs`` form ``{"event": ..., "log_level": ...,
    **bound, **kw}``. No global structlog configuration is touched, so tests may run in parallel.
    """
    capture = LogCapture()
    logger: StepLogger = structlog.wrap_logger(
        None,
        processors=[capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        context_class=dict,
    )
    return logger, capture.entries


class StepHarness:
    """Runs one step instance with fake contexts; see the module docstring.

    ``step_type`` / ``step_name`` / ``workflow`` / ``timeout`` (seconds until the deadline) are defaults
    for every call; each call may override ``workflow`` and pass a ``deadline`` (a ``time.monotonic()``
    value) of its own. ``contexts`` holds every context built, ``events`` every log event.
    """

    def __init__(
        self,
        step: Step,
        *,
        step_type: str = "test",
        step_name: str = "step",
        workflow: WorkflowInfo = DEFAULT_WORKFLOW,
        timeout: float = 300.0,
    ) -> None:
        self.step = step
        self.step_type = step_type
        self.step_name = step_name
        self.workflow = workflow
        self.timeout = timeout
        self.logger, self._events = capturing_logger()
        self.contexts: list[StepContext] = []

    @property
    def events(self) -> list[MutableMapping[str, Any]]:
        """Every log event the step emitted, in order."""
        return self._events

    def idempotency_key(self, direction: Direction, workflow: WorkflowInfo | None = None) -> str:
        """The key the step sees for ``direction`` (same derivation as the engine)."""
        return derive_idempotency_key((workflow or self.workflow).uid, self.step_name, direction)

    def context(
        self,
        direction: Direction,
        parameters: Mapping[str, str] | None = None,
        *,
        attempt: int = 1,
        workflow: WorkflowInfo | None = None,
        resource: ResourceStatus | None = None,
        deadline: float | None = None,
    ) -> StepContext:
        """The context a call with these arguments gets (also used by ``run`` / ``rollback`` / ``sync``)."""
        wf = workflow or self.workflow
        log: StepLogger = self.logger.bind(
            workflow=wf.name, namespace=wf.namespace, step=self.step_name, direction=direction
        )
        return StepContext(
            workflow=wf,
            step_name=self.step_name,
            step_type=self.step_type,
            parameters=parameters or {},
            attempt=attempt,
            direction=direction,
            idempotency_key=self.idempotency_key(direction, wf),
            deadline=time.monotonic() + self.timeout if deadline is None else deadline,
            resource=resource or ResourceStatus(),
            log=log,
        )

    def call(self, ctx: StepContext) -> StepResult | None:
        """Call the method ``ctx.direction`` names and apply the engine's outcome rules."""
        self.contexts.append(ctx)
        method = getattr(self.step, ctx.direction)
        try:
            result = method(ctx)
        except StepError:
            raise
        except Exception as exc:
            raise classify(exc) from exc
        if result is not None and not isinstance(result, StepResult):
            raise TypeError(
                f"{type(self.step).__name__}.{ctx.direction} returned {type(result).__name__}; "
                "expected StepResult or None"
            )
        return result

    def run(
        self,
        parameters: Mapping[str, str] | None = None,
        *,
        attempt: int = 1,
        workflow: WorkflowInfo | None = None,
        resource: ResourceStatus | None = None,
        deadline: float | None = None,
    ) -> StepResult | None:
        """Call ``step.run``; returns its result or raises its ``StepError``."""
        ctx = self.context(
            "run", parameters, attempt=attempt, workflow=workflow, resource=resource, deadline=deadline
        )
        return self.call(ctx)

    def rollback(
        self,
        parameters: Mapping[str, str] | None = None,
        *,
        attempt: int = 1,
        workflow: WorkflowInfo | None = None,
        resource: ResourceStatus | None = None,
        deadline: float | None = None,
    ) -> StepResult | None:
        """Call ``step.rollback``; returns its result or raises its ``StepError``."""
        ctx = self.context(
            "rollback", parameters, attempt=attempt, workflow=workflow, resource=resource, deadline=deadline
        )
        return self.call(ctx)

    def sync(
        self,
        parameters: Mapping[str, str] | None = None,
        *,
        attempt: int = 1,
        workflow: WorkflowInfo | None = None,
        resource: ResourceStatus | None = None,
        deadline: float | None = None,
    ) -> StepResult | None:
        """Call ``step.sync``; returns its result or raises its ``StepError``."""
        ctx = self.context(
            "sync", parameters, attempt=attempt, workflow=workflow, resource=resource, deadline=deadline
        )
        return self.call(ctx)
