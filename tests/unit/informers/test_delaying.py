from __future__ import annotations

import threading

from informers.clock import FakeClock
from informers.delaying import DelayingQueue
from informers.testing import wait_until


def _make() -> tuple[FakeClock, DelayingQueue[str]]:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue("d", clock=clock)
    clock.block_until_waiters(1)  # the waiting thread is parked (no deadline yet)
    return clock, q


def test_add_after_becomes_ready_at_its_time() -> None:
    clock, q = _make()
    q.add_after("a", 1.0)
    assert q.waiting() == 1
    clock.advance(0.5)
    assert len(q) == 0
    clock.advance(0.5)
    assert q.get().key == "a"  # blocks until the waiting thread moved it
    assert q.waiting() == 0
    q.shutdown()


def test_earliest_ready_time_wins() -> None:
    clock, q = _make()
    q.add_after("a", 10.0)
    q.add_after("a", 2.0)
    q.add_after("a", 5.0)  # later than the pending 2 s: ignored
    assert q.waiting() == 1
    clock.advance(2.0)
    assert q.get().key == "a"
    q.done("a")
    clock.advance(100.0)
    # The superseded 10 s and 5 s entries never fire: the waiting thread re-parks with nothing left.
    clock.block_until_waiters(1)
    assert len(q) == 0
    assert q.waiting() == 0
    q.shutdown()


def test_ordering_by_ready_time() -> None:
    clock, q = _make()
    q.add_after("c", 3.0)
    q.add_after("a", 1.0)
    q.add_after("b", 2.0)
    clock.advance(3.0)
    assert [q.get().key for _ in range(3)] == ["a", "b", "c"]
    q.shutdown()


def test_plain_add_runs_now_and_cancels_the_pending_delay() -> None:
    clock, q = _make()
    q.add_after("a", 60.0)
    q.add("a")
    assert len(q) == 1
    assert q.waiting() == 0
    assert q.get().key == "a"
    q.done("a")
    clock.advance(60.0)
    clock.block_until_waiters(1)
    assert len(q) == 0
    q.shutdown()


def test_non_positive_delay_is_a_plain_add() -> None:
    _, q = _make()
    q.add_after("a", 0)
    q.add_after("b", -1)
    assert len(q) == 2
    q.shutdown()


def test_one_waiting_thread_no_matter_how_many_items() -> None:
    clock, q = _make()
    before = threading.active_count()
    for i in range(1000):
        q.add_after(f"k{i}", 1.0 + i / 1000)
    assert threading.active_count() == before
    clock.advance(2.0)
    got = {q.get().key for _ in range(1000)}
    assert len(got) == 1000
    q.shutdown()


def test_low_priority_delayed_add_is_raised_by_a_normal_one() -> None:
    clock, q = _make()
    q.add("x", low_priority=True)
    q.add_after("a", 1.0, low_priority=True)
    q.add_after("a", 1.0)
    clock.advance(1.0)
    wait_until(lambda: len(q) == 2, what="the delayed item to become ready")
    assert [q.get().key, q.get().key] == ["a", "x"]
    q.shutdown()


def test_shutdown_stops_the_waiting_thread_and_drops_waiting_items() -> None:
    _, q = _make()
    q.add_after("a", 5.0)
    q.shutdown()
    q._thread.join(5)
    assert not q._thread.is_alive()
    assert q.waiting() == 0
    assert q.get().shutdown
