from __future__ import annotations

import threading
from collections import Counter

import pytest

from informers.clock import FakeClock
from informers.testing import InMemoryMetricsProvider
from informers.workqueue import Queue, ShutDown


def test_fifo_and_dedup_of_dirty_items() -> None:
    q: Queue[str] = Queue()
    for k in ["a", "b", "a", "c", "b"]:
        q.add(k)
    assert len(q) == 3
    got = []
    for _ in range(3):
        key, shutdown = q.get()[:2]
        assert not shutdown
        got.append(key)
    assert got == ["a", "b", "c"]
    assert len(q) == 0
    assert q.processing() == 3


def test_add_while_processing_runs_exactly_once_more_after_done() -> None:
    q: Queue[str] = Queue()
    q.add("a")
    _key, _, _ = q.get()
    q.add("a")
    q.add("a")
    assert len(q) == 0  # not handed to a second worker while the first holds it
    q.done("a")
    assert len(q) == 1
    with q.get() as again:
        assert again == "a"
    assert len(q) == 0
    assert q.processing() == 0


def test_context_manager_calls_done_even_when_the_body_raises() -> None:
    q: Queue[str] = Queue()
    q.add("a")
    def work() -> None:
        with q.get() as key:
            assert key == "a"
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        work()
    assert q.processing() == 0
    q.add("a")
    assert len(q) == 1


def test_shutdown_drains_ready_items_then_reports_shutdown() -> None:
    q: Queue[str] = Queue()
    q.add("a")
    q.add("b")
    q.shutdown()
    q.add("c")  # ignored
    assert [q.get().key, q.get().key] == ["a", "b"]
    got = q.get()
    assert got.shutdown
    assert got.key is None
    with pytest.raises(ShutDown), got:
        pass


def test_shutdown_wakes_blocked_getters() -> None:
    q: Queue[str] = Queue()
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(q.get().shutdown)) for _ in range(4)]
    for t in threads:
        t.start()
    q.shutdown()
    for t in threads:
        t.join(5)
    assert results == [True] * 4


def test_shutdown_with_drain_waits_for_items_in_processing() -> None:
    q: Queue[str] = Queue()
    q.add("a")
    q.get()
    drained = threading.Event()
    t = threading.Thread(target=lambda: (q.shutdown_with_drain(), drained.set()))
    t.start()
    assert not drained.wait(0.05)  # still processing "a"
    q.done("a")
    t.join(5)
    assert drained.is_set()


def test_low_priority_items_wait_behind_normal_ones_and_can_be_raised() -> None:
    q: Queue[str] = Queue()
    q.add("init-1", low_priority=True)
    q.add("init-2", low_priority=True)
    q.add("init-3", low_priority=True)
    q.add("real")
    q.add("init-2")  # a real change for an item queued at low priority: raised
    q.add("real", low_priority=True)  # never lowered
    assert len(q) == 4
    order = []
    for _ in range(4):
        key, _, _ = q.get()
        order.append(key)
    assert order == ["real", "init-2", "init-1", "init-3"]
    assert len(q) == 0


def test_priority_raised_while_processing_is_used_on_done() -> None:
    q: Queue[str] = Queue()
    q.add("a")
    q.get()
    q.add("a", low_priority=True)
    q.add("b", low_priority=True)
    q.add("a")  # raised while processing
    q.done("a")
    assert [q.get().key, q.get().key] == ["a", "b"]


def test_metrics_hooks_use_client_go_names() -> None:
    clock = FakeClock()
    provider = InMemoryMetricsProvider()
    q: Queue[str] = Queue("wf", clock=clock, metrics_provider=provider)
    q.add("a")
    q.add("b")
    q.add("a")
    m = {name: metric for (name, queue), metric in provider.metrics.items() if queue == "wf"}
    assert set(m) == {
        "workqueue_depth", "workqueue_adds_total", "workqueue_queue_duration_seconds",
        "workqueue_work_duration_seconds", "workqueue_unfinished_work_seconds",
        "workqueue_longest_running_processor_seconds", "workqueue_retries_total",
    }
    assert m["workqueue_adds_total"].value == 2
    assert m["workqueue_depth"].value == 2
    clock.advance(3)
    q.get()
    assert m["workqueue_queue_duration_seconds"].observations == [3]
    clock.advance(2)
    q.update_unfinished_work()
    assert m["workqueue_unfinished_work_seconds"].value == 2
    assert m["workqueue_longest_running_processor_seconds"].value == 2
    q.done("a")
    assert m["workqueue_work_duration_seconds"].observations == [2]
    assert m["workqueue_depth"].value == 1


def test_stress_no_key_is_ever_processed_concurrently_and_every_add_is_seen() -> None:
    """8 producers, 8 workers, 50 keys. Invariants checked by counting, never by sleeping:
    (1) no key is held by two workers at once; (2) every add is followed by a run that starts after it
    (the last add of each key is always processed)."""
    q: Queue[int] = Queue()
    keys = 50
    adds_per_producer = 2000
    lock = threading.Lock()
    in_flight: set[int] = set()
    violations: list[int] = []
    runs: Counter[int] = Counter()
    added_version = [0] * keys   # bumped by producers before each add
    seen_version = [0] * keys    # the version a worker saw when it started a run

    def producer(seed: int) -> None:
        for i in range(adds_per_producer):
            k = (i * 7 + seed) % keys
            with lock:
                added_version[k] += 1
            q.add(k)

    def worker() -> None:
        while True:
            key, shutdown, _ = q.get()
            if shutdown or key is None:
                return
            with lock:
                if key in in_flight:
                    violations.append(key)
                in_flight.add(key)
                seen_version[key] = added_version[key]
                runs[key] += 1
            with lock:
                in_flight.discard(key)
            q.done(key)

    workers = [threading.Thread(target=worker) for _ in range(8)]
    producers = [threading.Thread(target=producer, args=(s,)) for s in range(8)]
    for t in workers + producers:
        t.start()
    for t in producers:
        t.join(60)
    q.shutdown_with_drain()
    for t in workers:
        t.join(60)
    assert violations == []
    assert seen_version == added_version  # the final state of every key was processed
    assert sum(runs.values()) <= 8 * adds_per_producer
    assert set(runs) == set(range(keys))


def test_max_low_in_flight_keeps_workers_for_normal_priority_items() -> None:
    q: Queue[str] = Queue("capped")
    q.max_low_in_flight = 1
    q.add("low-1", low_priority=True)
    q.add("low-2", low_priority=True)
    assert q.get().key == "low-1"
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(str(q.get().key)))
    t.start()
    t.join(0.2)
    assert t.is_alive()  # low-2 waits: one low-priority item is processing already
    q.add("normal")  # a normal item is taken at once, cap or not
    t.join(5)
    assert got == ["normal"]
    q.done("normal")
    q.add("low-1", low_priority=True)  # re-added while processing: waits for done
    q.done("low-1")  # frees the low slot: low-2 first (FIFO), then low-1
    assert q.get().key == "low-2"
    q.done("low-2")
    assert q.get().key == "low-1"
    q.done("low-1")
    assert len(q) == 0


def test_raising_a_waiting_low_item_lets_it_pass_the_cap() -> None:
    q: Queue[str] = Queue("capped")
    q.max_low_in_flight = 1
    q.add("a", low_priority=True)
    q.add("b", low_priority=True)
    assert q.get().key == "a"
    q.add("b")  # raised to normal priority
    assert q.get().key == "b"
    q.done("a")
    q.done("b")
    assert len(q) == 0
