"""Rate limiters for the workqueue (client-go ``default_rate_limiters.go``).

A limiter answers "how long should this item wait before its next try?" and never sleeps:

* ``when(item)`` records one more failure (or one more request) and returns the delay in seconds;
* ``forget(item)`` clears the item's history (call it when the item was processed successfully);
* ``num_requeues(item)`` is how many times ``when`` was called since the last ``forget``.

:class:`ItemExponentialFailureRateLimiter` computes its delays with a tenacity wait strategy evaluated as
a pure function of the attempt number (``wait_exponential(multiplier=base, max=max_delay)``), so the
default is exactly client-go's 5 ms, 10 ms, 20 ms ... capped at 1000 s. :class:`BucketRateLimiter` is a
token bucket (``golang.org/x/time/rate`` ``Reserve().Delay()``): every call takes a token, possibly
borrowed from the future. :class:`MaxOfRateLimiter` takes the largest answer.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Protocol

from tenacity import RetryCallState, wait_exponential
from tenacity.wait import wait_base

from informers.clock import Clock, RealClock

__all__ = [
    "BucketRateLimiter",
    "ItemExponentialFailureRateLimiter",
    "MaxOfRateLimiter",
    "RateLimiter",
    "default_controller_rate_limiter",
    "delay_for_attempt",
]


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float: ...
    def forget(self, item: Hashable) -> None: ...
    def num_requeues(self, item: Hashable) -> int: ...


def delay_for_attempt(wait: wait_base, attempt_number: int) -> float:
    """Evaluate a tenacity wait strategy for a 1-based attempt number, without sleeping.

    Only for strategies that read ``attempt_number`` alone (``wait_fixed``, ``wait_exponential``,
    ``wait_incrementing``, ``wait_chain``, and their random variants).
    """
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt_number
    return float(wait(state))


class ItemExponentialFailureRateLimiter:
    """``base * 2**failures`` capped at ``max_delay``, per item.

    Contract: thread-safe (one lock around the failure counts). ``when`` is called by the worker that
    failed an item; ``forget`` by the worker that succeeded. The first ``when`` after a ``forget``
    returns ``base``.
    """

    def __init__(self, base: float = 0.005, max_delay: float = 1000.0) -> None:
        self._wait = wait_exponential(multiplier=base, max=max_delay)
        self._lock = threading.Lock()
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        with self._lock:
            failures = self._failures.get(item, 0)
            self._failures[item] = failures + 1
        # failures so far = k  ->  attempt_number = k + 1  ->  base * 2**k
        return delay_for_attempt(self._wait, failures + 1)

    def forget(self, item: Hashable) -> None:
        with self._lock:
            self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        with self._lock:
            return self._failures.get(item, 0)


class BucketRateLimiter:
    """A token bucket shared by all items: ``qps`` tokens per second, at most ``burst`` stored.

    Contract: thread-safe. Each ``when`` reserves one token and returns how long until that token
    exists (0 while the bucket has tokens); tokens may go negative, so concurrent callers get
    increasing delays, exactly like ``rate.Limiter.Reserve()``. ``forget`` does nothing and
    ``num_requeues`` is always 0.
    """

    def __init__(self, qps: float = 10.0, burst: int = 100, *, clock: Clock | None = None) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("qps must be > 0 and burst >= 1")
        self._qps = qps
        self._burst = float(burst)
        self._clock: Clock = clock or RealClock()
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = self._clock.now()

    def when(self, item: Hashable) -> float:
        with self._lock:
            now = self._clock.now()
            if now > self._last:
                self._tokens = min(self._burst, self._tokens + (now - self._last) * self._qps)
                self._last = now
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self._qps

    def forget(self, item: Hashable) -> None:
        pass

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """Asks every limiter (each records the call) and returns the longest delay."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("at least one limiter")
        self._limiters = limiters

    def when(self, item: Hashable) -> float:
        return max([lim.when(item) for lim in self._limiters])

    def forget(self, item: Hashable) -> None:
        for lim in self._limiters:
            lim.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(lim.num_requeues(item) for lim in self._limiters)


def default_controller_rate_limiter(clock: Clock | None = None) -> RateLimiter:
    """client-go's ``DefaultControllerRateLimiter``: max(per item 5 ms..1000 s, bucket 10 qps / burst 100)."""
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.005, 1000.0), BucketRateLimiter(10.0, 100, clock=clock)
    )
