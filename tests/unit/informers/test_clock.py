from __future__ import annotations

import threading

from informers.clock import FakeClock, RealClock


def test_fake_clock_wakes_a_waiter_only_when_its_deadline_comes() -> None:
    clock = FakeClock()
    cond = threading.Condition()
    woke = threading.Event()

    def waiter() -> None:
        with cond:
            clock.wait(cond, 5.0)
        woke.set()

    t = threading.Thread(target=waiter)
    t.start()
    clock.block_until_waiters(1)
    assert clock.next_deadline() == clock.now() + 5.0
    clock.advance(4.999)
    assert clock.waiters() == 1
    assert not woke.is_set()
    clock.advance(0.001)
    t.join(5)
    assert woke.is_set()
    assert clock.waiters() == 0


def test_fake_clock_wait_without_timeout_is_woken_by_notify() -> None:
    clock = FakeClock()
    cond = threading.Condition()
    done = threading.Event()

    def waiter() -> None:
        with cond:
            clock.wait(cond, None)
        done.set()

    t = threading.Thread(target=waiter)
    t.start()
    clock.block_until_waiters(1)
    clock.advance(1e9)
    assert not done.is_set()
    with cond:
        cond.notify_all()
    t.join(5)
    assert done.is_set()


def test_zero_timeout_returns_at_once() -> None:
    cond = threading.Condition()
    with cond:
        FakeClock().wait(cond, 0)
        RealClock().wait(cond, 0)
    assert FakeClock(5.0).now() == 5.0


def test_an_advance_between_reading_now_and_waiting_loses_no_wake_up() -> None:
    clock = FakeClock()
    cond = threading.Condition()
    read = threading.Event()
    go = threading.Event()
    woke = threading.Event()

    def waiter() -> None:
        with cond:
            timeout = clock.now() + 1.0 - clock.now()  # computed from a reading of now() ...
            read.set()
            go.wait(5)  # ... then the test advances the clock right here, before the wait
            clock.wait(cond, timeout)
        woke.set()

    t = threading.Thread(target=waiter)
    t.start()
    read.wait(5)
    clock.advance(1.0)  # the deadline has passed before the waiter even parks
    go.set()
    t.join(5)
    assert woke.is_set()
