"""The write gate: at most ``slots`` mutating API requests of this process in flight, handed out by
priority — the work of workflows already running first.

Why: the API server's write capacity is what bounds the engine (DESIGN.md, bench/README.md). Past a
handful of concurrent writes its throughput stops growing and every write just waits longer in its
queue, where all writes are equal. Holding the excess here instead keeps the server's latency low and
lets us choose the order: a step's outcome and its dependent's start (a *hand-off*) go before starting
a new workflow, and both before Kubernetes Events. Running workflows therefore finish first (the
number of workflows in progress settles where their hand-offs fill the server) instead of every
workflow crawling at once, which lowers the mean time to finish a workflow as well as the hand-off
latency. Under a load the server can serve there is no queue and the order does not matter.

Strict priority: lower levels wait while higher ones want every slot. That starves only while running
workflows alone saturate the API server (then nothing else could be served faster anyway); Events may
then be dropped by the recorder's bounded queue, as client-go drops them.

The level of a request is taken from a context variable (:func:`priority`), so callers mark whole
operations (a reconcile, a step outcome, the Event recorder's thread) without threading a parameter
through every API helper. Reads (GET, LIST, WATCH) never pass the gate.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Iterator
from contextvars import ContextVar
from enum import IntEnum
from typing import Any

from informers import rawhttp

__all__ = ["GatedApiClient", "Priority", "WriteGate", "current_priority", "priority"]


class Priority(IntEnum):
    #: A running workflow's progress: a step outcome, the next step's start, its rollback, its status.
    HANDOFF = 0
    #: Everything else the engine writes: admission, a new workflow's finalizer and Steps, callbacks.
    NORMAL = 1
    #: Kubernetes Events.
    BACKGROUND = 2


_current: ContextVar[Priority] = ContextVar("kube_workflow_write_priority", default=Priority.NORMAL)


def current_priority() -> Priority:
    return _current.get()


@contextlib.contextmanager
def priority(level: Priority) -> Iterator[None]:
    """Writes made inside the block (by this thread) pass the gate at ``level``."""
    token = _current.set(level)
    try:
        yield
    finally:
        _current.reset(token)


class _Waiter:
    """One blocked request: woken alone when a slot is handed to it (no thundering herd). A lock taken
    at birth and released by the granter: the cheapest hand-over CPython has (an ``Event`` costs a
    ``Condition``, its lock and a ``notify_all``)."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def grant(self) -> None:
        self._lock.release()

    def wait(self) -> None:
        self._lock.acquire()


class WriteGate:
    """Contract: thread-safe; ``slot()`` blocks until a slot is free for the caller's level (FIFO within
    a level). ``slots`` >= 1. Not reentrant: a thread holding a slot must not ask for another.
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        self._lock = threading.Lock()
        self._free = slots
        self._waiting: dict[Priority, deque[_Waiter]] = {p: deque() for p in Priority}
        self.waited = 0  # requests that had to wait (for tests and the bench)

    @contextlib.contextmanager
    def slot(self, level: Priority | None = None) -> Iterator[None]:
        self._acquire(current_priority() if level is None else level)
        try:
            yield
        finally:
            self._release()

    def _acquire(self, level: Priority) -> None:
        with self._lock:
            if self._free > 0 and not any(self._waiting[p] for p in Priority if p <= level):
                self._free -= 1
                return
            me = _Waiter()
            self._waiting[level].append(me)
            self.waited += 1
        me.wait()

    def _release(self) -> None:
        with self._lock:
            for p in Priority:
                if self._waiting[p]:
                    self._waiting[p].popleft().grant()  # the slot passes straight to it
                    return
            self._free += 1

    def in_flight(self) -> int:
        with self._lock:
            return self.slots - self._free

    def queued(self) -> dict[str, int]:
        with self._lock:
            return {p.name: len(q) for p, q in self._waiting.items()}


class GatedApiClient:
    """An ``ApiClient`` whose mutating requests (anything but GET) pass ``gate``; everything else is the
    wrapped client's (reads, watches, ``param_serialize``, the configuration). Short requests without
    the model layer (``call_raw``, ``informers.rawhttp``) pass the same gate."""

    def __init__(self, api_client: Any, gate: WriteGate) -> None:
        self._api_client = api_client
        self.gate = gate

    def call_api(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() == "GET":
            return self._api_client.call_api(method, *args, **kwargs)
        with self.gate.slot():
            return self._api_client.call_api(method, *args, **kwargs)

    def call_raw(self, method: str, path: str, body: bytes | None = None, *,
                 content_type: str | None = "application/json",
                 timeout: tuple[float, float] = (5.0, 5.0)) -> rawhttp.RawResponse:
        with contextlib.nullcontext() if method.upper() == "GET" else self.gate.slot():
            return rawhttp.request(self._api_client, method, path, body, content_type=content_type,
                                   timeout=timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api_client, name)
