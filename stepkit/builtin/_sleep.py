"""Sleeping inside a step without overrunning its deadline."""

from __future__ import annotations

from collections.abc import Callable

from stepkit.context import StepContext
from stepkit.errors import RetryableError

Sleeper = Callable[[float], None]


def sleep_within_deadline(ctx: StepContext, seconds: float, sleep: Sleeper) -> None:
    """Sleep ``seconds``, or fail at once with a ``RetryableError`` if that would pass the deadline.

    Failing early (instead of sleeping until the deadline) makes a too-short engine deadline visible
    in the step's error at once; the message names both numbers.
    """
    if seconds <= 0:
        return
    remaining = ctx.remaining()
    if seconds > remaining:
        raise RetryableError(
            f"sleeping {seconds:g}s would pass the call deadline ({remaining:.1f}s left)",
            code="DeadlineExceeded",
        )
    ctx.log.debug("step sleeping", seconds=seconds)
    sleep(seconds)
