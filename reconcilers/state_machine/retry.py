"""How long to wait before the next attempt: tenacity's wait strategies used as pure functions.

tenacity computes a wait from a ``RetryCallState``; we build one holding only ``attempt_number`` and
never let tenacity sleep. ``Fixed`` is the original's behaviour (the retry period between attempts);
``Exponential`` doubles the period per failed attempt up to a cap. Jitter spreads a wait over [50 %,
100 %] of its value with a ``random.Random`` seeded from the caller's seed and the attempt, so the
same step and attempt always get the same wait (``decide`` must be deterministic).

(``RetryCallState.__init__`` records ``time.monotonic()`` as its start time; the fixed and exponential
strategies never read it, so the wait depends on the arguments only.)
"""

from __future__ import annotations

import random
from datetime import timedelta

import tenacity

from reconcilers.state_machine.types import Backoff


def retry_wait(
    period_seconds: int,
    failed_attempts: int,
    *,
    backoff: Backoff = Backoff.FIXED,
    max_period_seconds: int = 3600,
    jitter: bool = False,
    seed: str = "",
) -> timedelta:
    """The wait after ``failed_attempts`` (>= 1) failed attempts."""
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = max(1, failed_attempts)
    strategy: tenacity.wait.wait_base
    if backoff is Backoff.EXPONENTIAL:
        cap = max(period_seconds, max_period_seconds)
        strategy = tenacity.wait_exponential(multiplier=period_seconds, max=cap)
    else:
        strategy = tenacity.wait_fixed(period_seconds)
    seconds = float(strategy(state))
    if jitter:
        seconds *= 0.5 + 0.5 * random.Random(f"{seed}:{state.attempt_number}").random()
    return timedelta(seconds=seconds)
