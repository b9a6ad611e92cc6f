"""The write gate: slot count, strict priority between levels, FIFO within a level, reads pass."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from reconcilers.gate import GatedApiClient, Priority, WriteGate, current_priority, priority


def _wait_until(cond: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.001)


def test_priority_is_a_context_variable_with_normal_as_default() -> None:
    assert current_priority() is Priority.NORMAL
    with priority(Priority.HANDOFF):
        assert current_priority() is Priority.HANDOFF
        seen: list[Priority] = []
        t = threading.Thread(target=lambda: seen.append(current_priority()))
        t.start()
        t.join()
        assert seen == [Priority.NORMAL]  # another thread keeps its own
    assert current_priority() is Priority.NORMAL


def test_no_more_than_slots_in_flight() -> None:
    gate = WriteGate(2)
    inside, peak, lock = 0, 0, threading.Lock()

    def work() -> None:
        nonlocal inside, peak
        with gate.slot():
            with lock:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.01)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2
    assert gate.in_flight() == 0


def test_waiters_are_served_by_level_then_in_arrival_order() -> None:
    gate = WriteGate(1)
    order: list[str] = []
    release = threading.Event()

    def holder() -> None:
        with gate.slot(Priority.NORMAL):
            release.wait(5)

    def waiter(name: str, level: Priority) -> None:
        with gate.slot(level):
            order.append(name)

    h = threading.Thread(target=holder)
    h.start()
    _wait_until(lambda: gate.in_flight() == 1)
    threads = []
    for name, level in (("event", Priority.BACKGROUND), ("new-1", Priority.NORMAL),
                        ("handoff-1", Priority.HANDOFF), ("new-2", Priority.NORMAL),
                        ("handoff-2", Priority.HANDOFF)):
        t = threading.Thread(target=waiter, args=(name, level))
        t.start()
        threads.append(t)
        expected = len(threads)
        _wait_until(lambda expected=expected: sum(gate.queued().values()) == expected)  # type: ignore[misc]
    release.set()
    for t in (h, *threads):
        t.join(5)
    assert order == ["handoff-1", "handoff-2", "new-1", "new-2", "event"]


def test_a_free_slot_is_not_taken_past_a_waiter_of_a_higher_level() -> None:
    gate = WriteGate(1)
    gate._acquire(Priority.NORMAL)  # held
    got: list[str] = []
    t = threading.Thread(target=lambda: (gate._acquire(Priority.HANDOFF), got.append("handoff")))
    t.start()
    _wait_until(lambda: gate.queued()["HANDOFF"] == 1)
    gate._release()  # passes straight to the waiting hand-off
    t.join(5)
    assert got == ["handoff"]
    assert gate.in_flight() == 1


def test_slots_must_be_positive() -> None:
    with pytest.raises(ValueError, match="slots"):
        WriteGate(0)


class _Client:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.configuration = "config"
        self.gate: WriteGate | None = None

    def call_api(self, method: str, *args: Any, **kwargs: Any) -> str:
        assert self.gate is not None
        self.calls.append((method, self.gate.in_flight()))
        return "response"

    def call_raw(self, method: str, path: str, body: bytes | None = None, **kwargs: Any) -> str:
        assert self.gate is not None
        self.calls.append((f"raw {method}", self.gate.in_flight()))
        return "raw response"


def test_the_gated_client_gates_writes_only_and_delegates_the_rest() -> None:
    inner = _Client()
    gate = WriteGate(3)
    inner.gate = gate
    api = GatedApiClient(inner, gate)
    assert api.call_api("GET", "/x") == "response"
    assert api.call_api("PATCH", "/x") == "response"
    assert api.call_raw("GET", "/x") == "raw response"
    assert api.call_raw("POST", "/x", b"{}") == "raw response"
    assert api.configuration == "config"
    assert inner.calls == [("GET", 0), ("PATCH", 1), ("raw GET", 0), ("raw POST", 1)]
