"""The rate-limiting queue (client-go ``rate_limiting_queue.go``): a delaying queue plus a limiter.

``add_rate_limited(x)`` re-adds ``x`` after ``limiter.when(x)`` (and counts a retry); ``forget(x)``
clears ``x``'s failure history (only the worker loop calls it, after a success);
``num_requeues(x)`` reads it. Adds may be low priority (initial list, resync) so that a flood of them
never delays real changes.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

from informers.clock import Clock
from informers.delaying import DelayingQueue
from informers.metrics import MetricsProvider
from informers.ratelimit import RateLimiter, default_controller_rate_limiter

__all__ = ["RateLimitingQueue"]

T = TypeVar("T", bound=Hashable)


class RateLimitingQueue(DelayingQueue[T]):
    """Contract: as :class:`~informers.delaying.DelayingQueue`; the limiter is thread-safe on its own."""

    def __init__(
        self,
        name: str = "",
        *,
        rate_limiter: RateLimiter | None = None,
        clock: Clock | None = None,
        metrics_provider: MetricsProvider | None = None,
    ) -> None:
        super().__init__(name, clock=clock, metrics_provider=metrics_provider)
        self.rate_limiter: RateLimiter = rate_limiter or default_controller_rate_limiter(self._clock)

    def add_rate_limited(self, item: T, *, low_priority: bool = False) -> None:
        """Re-add ``item`` when the limiter allows it; counts one retry."""
        if self.shutting_down():
            return
        self._metrics.retry()
        self.add_after(item, self.rate_limiter.when(item), low_priority=low_priority)

    def forget(self, item: T) -> None:
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)
