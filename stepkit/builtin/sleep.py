"""``sleep``: waits, then succeeds.

Parameters (strings):

- ``seconds`` — how long ``run`` sleeps (default ``"0"``). Must fit the call deadline: a sleep longer
  than the time left fails at once with a retryable ``DeadlineExceeded`` error.
- ``rollbackSeconds`` — how long ``rollback`` sleeps (default ``"0"``).
- ``syncSeconds`` — how long ``sync`` sleeps (default ``"0"``).

Outputs: none.
"""

from __future__ import annotations

import time

from stepkit.builtin import _params
from stepkit.builtin._sleep import Sleeper, sleep_within_deadline
from stepkit.context import StepContext
from stepkit.outputs import StepResult

__all__ = ["SleepStep"]


class SleepStep:
    """``sleep``; ``sleep`` is injectable for tests (default ``time.sleep``)."""

    def __init__(self, sleep: Sleeper = time.sleep) -> None:
        self._sleep = sleep

    def run(self, ctx: StepContext) -> StepResult | None:
        sleep_within_deadline(ctx, _params.seconds(ctx.parameters, "seconds"), self._sleep)
        return None

    def rollback(self, ctx: StepContext) -> StepResult | None:
        sleep_within_deadline(ctx, _params.seconds(ctx.parameters, "rollbackSeconds"), self._sleep)
        return None

    def sync(self, ctx: StepContext) -> StepResult | None:
        sleep_within_deadline(ctx, _params.seconds(ctx.parameters, "syncSeconds"), self._sleep)
        return None
