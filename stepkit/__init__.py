"""The step SDK: what a step author implements, and the built-in steps.

What belongs here: the ``Step`` protocol (``run``, ``rollback``, ``sync``), the frozen
``StepContext`` handed to each call, the step error tree (retryable / permanent / ignorable), the
entry-point registry (group ``stepkit.steps``), a test harness for plugin authors, and the built-in
step types.

This package is importable on its own: it imports nothing from ``controller``, ``reconcilers`` or
``informers``, so a plugin package depends on ``stepkit`` only.

Modules (one concept each):

- ``stepkit.protocol`` — ``Step`` (the protocol; when each method is called, at-least-once) and
  ``BaseStep`` (no-op ``rollback`` / ``sync``).
- ``stepkit.context`` — ``StepContext``, ``WorkflowInfo``, ``StepLogger``, ``derive_idempotency_key``.
- ``stepkit.outputs`` — ``StepResult`` and ``ResourceStatus``: what a call returns and how it merges.
- ``stepkit.errors`` — ``StepError`` / ``PermanentError`` / ``RetryableError`` / ``IgnorableError``,
  ``classify`` (the tree is drawn there).
- ``stepkit.registry`` — ``StepRegistry`` (entry points + explicit registration, ``loaded`` / ``broken``).
- ``stepkit.testing`` — ``StepHarness``: run a step with a fake context, no cluster.
- ``stepkit.builtin`` — ``empty``, ``random``, ``error``, ``retryable_error``, ``sleep``, ``fail``, ``http``.

A minimal plugin::

    from stepkit import BaseStep, PermanentError, ResourceStatus, StepContext, StepResult

    class Greet(BaseStep):
        def run(self, ctx: StepContext) -> StepResult:
            name = ctx.parameters.get("name") or ""
            if not name:
                raise PermanentError("parameter 'name' is required")
            return StepResult(attributes={"greeting": f"hello {name}"}, resource=ResourceStatus(id=name))

The names in ``__all__`` are the public surface third-party plugins depend on; a test pins them.
"""

from stepkit.context import Direction, StepContext, StepLogger, WorkflowInfo, derive_idempotency_key
from stepkit.errors import IgnorableError, PermanentError, RetryableError, StepError, classify
from stepkit.outputs import ResourceStatus, StepResult
from stepkit.protocol import BaseStep, Step
from stepkit.registry import ENTRY_POINT_GROUP, StepFactory, StepNotFoundError, StepRegistry

__all__ = [
    "ENTRY_POINT_GROUP",
    "BaseStep",
    "Direction",
    "IgnorableError",
    "PermanentError",
    "ResourceStatus",
    "RetryableError",
    "Step",
    "StepContext",
    "StepError",
    "StepFactory",
    "StepLogger",
    "StepNotFoundError",
    "StepRegistry",
    "StepResult",
    "WorkflowInfo",
    "classify",
    "derive_idempotency_key",
]
