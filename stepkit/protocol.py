"""The ``Step`` protocol: what a step plugin implements.

When the engine calls each method (DESIGN.md §4):

- ``run(ctx)`` — once every ``dependOns`` of the step is satisfied. Return normally = the step is
  ``Success``. Raise ``RetryableError`` (or any non-``StepError`` exception) to be called again after the
  retry period while attempts are left; ``PermanentError`` (or attempts exhausted) rolls the step back.
- ``rollback(ctx)`` — when the workflow rolls back or is deleted, once every step that depends on this
  one is rolled back (or never ran). Also after a *failed* run: ``run`` may have done part of its work
  before failing, so ``rollback`` must undo partial effects and must succeed when there is nothing to
  undo (``ctx.resource`` may be empty). Return normally = ``RollBacked``.
- ``sync(ctx)`` — periodically, every ``syncPeriodSeconds`` (> 0), while the step is ``Success``: report
  progress of asynchronous work through ``StepResult.resource`` (dependents can wait on
  ``resource.status``). A ``PermanentError`` from sync rolls the workflow back.

**At-least-once.** Each call may happen more than once: a controller crash between the call and the
status write repeats it, and a retry repeats a call that timed out after doing its work. Use
``ctx.idempotency_key`` (stable across retries of the same step and direction) to make repeats harmless.
Calls on the same step never overlap: the engine runs at most one call per step at a time, but calls for
different steps run concurrently on worker threads, so a step instance must be thread-safe (keep no
per-call state on ``self``; it is created once per process and shared).

Steps must be stateless across processes: decide everything from the context (``ctx.attempt``,
``ctx.resource``), never from memory of earlier calls.
"""

from __future__ import annotations

import abc
from typing import Protocol, runtime_checkable

from stepkit.context import StepContext
from stepkit.outputs import StepResult

__all__ = ["BaseStep", "Step"]


@runtime_checkable
class Step(Protocol):
    """A step type. See the module docstring for when and how often each method is called."""

    def run(self, ctx: StepContext) -> StepResult | None:
        """Do the work. Returns outputs or ``None``; raises a ``StepError`` to fail."""
        ...

    def rollback(self, ctx: StepContext) -> StepResult | None:
        """Undo ``run`` (fully or partially done). Must succeed when there is nothing to undo."""
        ...

    def sync(self, ctx: StepContext) -> StepResult | None:
        """Refresh the step's outputs while it is ``Success`` (only if ``syncPeriodSeconds`` > 0)."""
        ...


class BaseStep(abc.ABC):
    """Convenience base: implement ``run``; ``rollback`` and ``sync`` default to doing nothing.

    Subclassing is optional — any object with the three methods is a ``Step``.
    """

    @abc.abstractmethod
    def run(self, ctx: StepContext) -> StepResult | None:
        """Do the work."""

    def rollback(self, ctx: StepContext) -> StepResult | None:
        """Nothing to undo by default."""
        return None

    def sync(self, ctx: StepContext) -> StepResult | None:
        """Nothing to refresh by default."""
        return None
