"""Injected time: every timer in :mod:`informers` reads and waits through a :class:`Clock`.

``Clock.now()`` is a monotonic number of seconds. ``Clock.wait(cond, timeout)`` is the only way the
package blocks with a timeout: it must be called with ``cond`` held, like ``Condition.wait``, and
returns when ``cond`` is notified *or* ``timeout`` seconds of this clock's time have passed (spurious
wake-ups are allowed, callers re-check their predicate in a loop).

:class:`FakeClock` is the test double: its time only moves when a test calls :meth:`FakeClock.advance`,
which wakes every waiter whose deadline has come. ``block_until_waiters(n)`` lets a test wait (on real
time, bounded) until ``n`` threads are parked on the fake clock, the way client-go's fake clock tests
synchronise, so no test sleeps to "avoid a race".
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "RealClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        """Like ``cond.wait(timeout)`` (``cond`` held), with ``timeout`` measured on this clock."""
        ...


class RealClock:
    """The wall (monotonic) clock. Stateless and thread-safe."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        if timeout is not None and timeout <= 0:
            return
        cond.wait(timeout)


class FakeClock:
    """A clock that moves only when told to.

    Contract: any thread may call any method. A ``wait`` timeout counts from the moment the calling
    thread last read ``now()`` (when it computed the timeout), so no wake-up is lost to an ``advance``
    that lands between the two calls. ``_lock`` guards ``_now`` and ``_waiters``; a waiter
    registers itself under ``_lock`` while already holding its own condition, and ``advance`` notifies
    a waiter only after releasing ``_lock`` and acquiring that condition, so a notification can never
    fall between a waiter's deadline check and its ``cond.wait()`` (no lost wake-ups) and the lock
    order is always ``cond`` then ``_lock`` on the waiting side, never both on the advancing side.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._lock = threading.Condition()
        self._now = start
        # token -> (deadline, condition); deadline None = wait without timeout (still counted).
        self._waiters: dict[int, tuple[float | None, threading.Condition]] = {}
        self._next_token = 0
        self._seen = threading.local()  # per thread: the time it last read

    def now(self) -> float:
        with self._lock:
            self._seen.now = self._now
            return self._now

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        if timeout is not None and timeout <= 0:
            return
        with self._lock:
            # The timeout counts from the last time this thread read now(), i.e. when the caller
            # computed it: an advance() in between cannot push the deadline later and lose a wake-up.
            base = getattr(self._seen, "now", self._now)
            self._seen.now = self._now
            token = self._next_token
            self._next_token += 1
            deadline = None if timeout is None else base + timeout
            if deadline is not None and deadline <= self._now:
                return
            self._waiters[token] = (deadline, cond)
            self._lock.notify_all()  # for block_until_waiters
        try:
            cond.wait()
        finally:
            with self._lock:
                self._waiters.pop(token, None)
                self._seen.now = self._now
                self._lock.notify_all()

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every waiter whose deadline is now due."""
        with self._lock:
            self._now += seconds
            due = [(t, c) for t, (d, c) in self._waiters.items() if d is not None and d <= self._now]
            for t, _ in due:
                self._waiters.pop(t, None)
        for _, cond in due:
            with cond:
                cond.notify_all()

    def set(self, now: float) -> None:
        """Jump to an absolute time (never backwards)."""
        delta = now - self.now()
        if delta < 0:
            raise ValueError("a FakeClock never goes backwards")
        self.advance(delta)

    def waiters(self) -> int:
        """Threads currently parked in :meth:`wait`."""
        with self._lock:
            return len(self._waiters)

    def next_deadline(self) -> float | None:
        """The earliest deadline among parked waiters, if any."""
        with self._lock:
            ds = [d for d, _ in self._waiters.values() if d is not None]
            return min(ds) if ds else None

    def block_until_waiters(self, n: int, timeout: float = 10.0) -> None:
        """Block (real time, bounded) until at least ``n`` threads wait on this clock."""
        end = time.monotonic() + timeout
        with self._lock:
            while len(self._waiters) < n:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._waiters)} waiters on the fake clock, expected {n}")
                self._lock.wait(left)
