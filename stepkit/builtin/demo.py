"""The original's four demo step types, same names and behaviour, so its manifests run unchanged.

"First run" is decided by ``ctx.attempt`` (1 = first): steps are stateless across processes.

- ``empty`` — does nothing in every direction.
- ``random`` — ``run`` sleeps ``sleepSeconds`` (string, seconds, default ``"0"``; must fit the call
  deadline) and sets ``resource.id`` to a random UUID; ``sync`` replaces the id with a new random one
  about half of the time (a stand-in for an asynchronous resource that changes); ``rollback`` does
  nothing. No other parameters.
- ``error`` — the first run sets ``resource.id`` and then fails permanently (the id is recorded, so the
  rollback sees it); a later run attempt succeeds; ``rollback`` always fails permanently; ``sync``
  does nothing. No parameters.
- ``retryable_error`` — the first run fails retryably, the next succeeds; ``rollback`` and ``sync``
  succeed. No parameters.
"""

from __future__ import annotations

import random
import time
import uuid

from stepkit.builtin import _params
from stepkit.builtin._sleep import Sleeper, sleep_within_deadline
from stepkit.context import StepContext
from stepkit.errors import PermanentError, RetryableError
from stepkit.outputs import ResourceStatus, StepResult
from stepkit.protocol import BaseStep

__all__ = ["EmptyStep", "ErrorStep", "RandomStep", "RetryableErrorStep"]


class EmptyStep(BaseStep):
    """``empty``: succeeds without doing anything."""

    def run(self, ctx: StepContext) -> StepResult | None:
        return None


class RandomStep(BaseStep):
    """``random``: sleeps ``sleepSeconds`` then sets a random ``resource.id``; ``sync`` may change it.

    ``sleep`` and ``rng`` are injectable for tests; the defaults are ``time.sleep`` and a private
    ``random.Random`` (thread-safe for these calls).
    """

    def __init__(self, sleep: Sleeper = time.sleep, rng: random.Random | None = None) -> None:
        self._sleep = sleep
        self._rng = rng or random.Random()

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def run(self, ctx: StepContext) -> StepResult | None:
        sleep_within_deadline(ctx, _params.seconds(ctx.parameters, "sleepSeconds"), self._sleep)
        return StepResult(resource=ResourceStatus(id=self._new_id()))

    def sync(self, ctx: StepContext) -> StepResult | None:
        if self._rng.random() < 0.5:
            return None
        new_id = self._new_id()
        ctx.log.info("random resource changed", old_id=ctx.resource.id, new_id=new_id)
        return StepResult(resource=ResourceStatus(id=new_id))


class ErrorStep(BaseStep):
    """``error``: the first run records a resource id and fails permanently; rollback always fails."""

    def run(self, ctx: StepContext) -> StepResult | None:
        if ctx.attempt > 1:
            return None
        partial = StepResult(resource=ResourceStatus(id=str(uuid.uuid4())))
        raise PermanentError("error step: the first run always fails", code="DemoError", result=partial)

    def rollback(self, ctx: StepContext) -> StepResult | None:
        raise PermanentError("error step: rollback always fails", code="DemoError")


class RetryableErrorStep(BaseStep):
    """``retryable_error``: the first run fails retryably, the next succeeds; rollback succeeds."""

    def run(self, ctx: StepContext) -> StepResult | None:
        if ctx.attempt == 1:
            raise RetryableError("retryable_error step: the first run fails", code="DemoError")
        return None
