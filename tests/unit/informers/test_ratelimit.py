from __future__ import annotations

import pytest
from tenacity import wait_fixed

from informers.clock import FakeClock
from informers.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    default_controller_rate_limiter,
    delay_for_attempt,
)
from informers.ratelimiting_queue import RateLimitingQueue
from informers.testing import InMemoryMetricsProvider


def test_exact_exponential_sequence_capped_at_1000s() -> None:
    lim = ItemExponentialFailureRateLimiter()
    got = [lim.when("a") for _ in range(25)]
    expected = [min(0.005 * 2**n, 1000.0) for n in range(25)]
    assert got == pytest.approx(expected, rel=1e-12)
    assert got[:5] == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert got[18:] == [1000.0] * 7  # 0.005 * 2**18 = 1310.72 > 1000
    assert lim.num_requeues("a") == 25


def test_exponential_is_per_item_and_forget_resets() -> None:
    lim = ItemExponentialFailureRateLimiter(0.001, 1.0)
    assert [lim.when("a"), lim.when("a"), lim.when("b")] == [0.001, 0.002, 0.001]
    lim.forget("a")
    assert lim.num_requeues("a") == 0
    assert lim.when("a") == 0.001
    assert lim.num_requeues("b") == 1


def test_exponential_does_not_overflow_after_many_failures() -> None:
    lim = ItemExponentialFailureRateLimiter()
    for _ in range(5000):
        last = lim.when("a")
    assert last == 1000.0


def test_delay_for_attempt_evaluates_tenacity_strategies() -> None:
    assert delay_for_attempt(wait_fixed(3), 7) == 3.0


def test_token_bucket_burst_then_qps() -> None:
    clock = FakeClock()
    lim = BucketRateLimiter(qps=10, burst=3, clock=clock)
    assert [lim.when(i) for i in range(3)] == [0, 0, 0]
    # Tokens are borrowed from the future: each further reservation waits one more 1/qps.
    assert [lim.when(i) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    clock.advance(0.3)  # pays back the three borrowed tokens
    assert lim.when("x") == pytest.approx(0.1)
    clock.advance(10)   # refills up to the burst, not beyond
    assert [lim.when(i) for i in range(3)] == [0, 0, 0]
    assert lim.when("y") == pytest.approx(0.1)
    assert lim.num_requeues("y") == 0


def test_max_of_takes_the_longest_and_forgets_everywhere() -> None:
    clock = FakeClock()
    lim = MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.005, 1000), BucketRateLimiter(1, 1, clock=clock)
    )
    assert lim.when("a") == 0.005            # bucket has a token
    assert lim.when("a") == pytest.approx(1.0)  # bucket empty: 1 s beats 10 ms
    assert lim.num_requeues("a") == 2
    lim.forget("a")
    assert lim.num_requeues("a") == 0


def test_default_controller_rate_limiter_is_max_of_exponential_and_bucket() -> None:
    clock = FakeClock()
    lim = default_controller_rate_limiter(clock)
    delays = [lim.when("a") for _ in range(100)]  # within the burst of 100
    assert delays[:3] == pytest.approx([0.005, 0.01, 0.02])
    assert lim.when("b") == pytest.approx(0.1)  # bucket exhausted: 10 qps


def test_rate_limiting_queue_requeues_with_backoff_and_counts_retries() -> None:
    clock = FakeClock()
    metrics = InMemoryMetricsProvider()
    q: RateLimitingQueue[str] = RateLimitingQueue(
        "rl", rate_limiter=ItemExponentialFailureRateLimiter(), clock=clock, metrics_provider=metrics
    )
    clock.block_until_waiters(1)
    q.add("a")
    with q.get() as key:
        q.add_rate_limited(key)  # failed: retry in 5 ms
    assert q.num_requeues("a") == 1
    assert len(q) == 0
    clock.advance(0.004)
    assert len(q) == 0
    clock.advance(0.001)
    with q.get() as key:
        q.add_rate_limited(key)  # failed again: 10 ms
    clock.advance(0.01)
    with q.get() as key:
        q.forget(key)  # success
    assert q.num_requeues("a") == 0
    assert metrics.metrics[("workqueue_retries_total", "rl")].value == 2
    q.shutdown()
    q.add_rate_limited("b")  # ignored after shutdown
    assert metrics.metrics[("workqueue_retries_total", "rl")].value == 2
