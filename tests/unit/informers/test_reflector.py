"""The reflector and shared informer against FakeListerWatcher, with a FakeClock for every backoff."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from informers.clock import FakeClock
from informers.errors import ApiError, TransportError, VeryShortWatchError, WatchIdleTimeout
from informers.listwatch import ListOptions
from informers.reflector import ReflectorConfig
from informers.shared_informer import SharedIndexInformer
from informers.testing import FakeListerWatcher, RecordingHandler, wait_until


class NoJitter(random.Random):
    def random(self) -> float:
        return 0.0


def widget(name: str, ns: str = "ns", size: int = 1) -> dict[str, Any]:
    return {"apiVersion": "t/v1", "kind": "Widget", "metadata": {"namespace": ns, "name": name},
            "spec": {"size": size}}


class Env:
    #: The informer's storage mode; every test here runs in both (the ``storage_mode`` fixture).
    COMPACT = False

    def __init__(self, objects: int = 0, page_size: int = 500, resync: float = 0.0,
                 paged_consistent_lists: bool = False) -> None:
        """``paged_consistent_lists`` is off by default here: most tests are of client-go's RV rules."""
        self.clock = FakeClock()
        self.lw = FakeListerWatcher([widget(f"w{i}") for i in range(objects)])
        self.errors: list[Exception] = []
        self.informer = SharedIndexInformer(
            self.lw, name="widgets", clock=self.clock, rng=NoJitter(), resync_period=resync,
            reflector_config=ReflectorConfig(page_size=page_size,
                                             paged_consistent_lists=paged_consistent_lists),
            watch_error_handler=self.errors.append,
            compact=self.COMPACT,
        )
        self.handler = RecordingHandler()
        self.informer.add_event_handler(self.handler)

    def start(self) -> None:
        self.informer.start()
        wait_until(self.informer.has_synced, what="initial sync")
        self.lw.wait_for_watches(1)

    def rvs(self) -> dict[str, str]:
        return {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
                for o in self.informer.indexer.list()}

    def truth(self) -> dict[str, str]:
        page = self.lw.list(ListOptions())
        self.lw.list_calls.pop()
        return {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
                for o in page.items}

    def wait_parked(self) -> float:
        """Wait until the reflector sleeps in a backoff; return the backoff delay."""
        self.clock.block_until_waiters(1)
        deadline = self.clock.next_deadline()
        assert deadline is not None
        return deadline - self.clock.now()


@pytest.fixture(autouse=True, params=[False, True], ids=["plain", "compact"])
def storage_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(Env, "COMPACT", request.param)
    return bool(request.param)


@pytest.fixture
def env() -> Iterator[Env]:
    e = Env()
    yield e
    e.informer.stop()


def test_initial_list_is_rv0_paged_then_watch_with_bookmarks(env: Env) -> None:
    env = Env(objects=5, page_size=2)
    env.start()
    calls = env.lw.list_calls
    assert [(c.resource_version, c.limit, bool(c.continue_token)) for c in calls] == [
        ("0", 2, False), (None, 2, True), (None, 2, True),
    ]
    assert len(env.informer.indexer) == 5
    assert [c[3] for c in env.handler.of("add")] == [True] * 5  # is_in_initial_list
    w = env.lw.watch_calls[0]
    assert w.resource_version == "5"
    assert w.allow_watch_bookmarks
    assert 300 <= (w.timeout_seconds or 0) <= 600
    env.informer.stop()


def test_by_default_every_list_is_a_consistent_paged_read() -> None:
    assert ReflectorConfig().paged_consistent_lists
    env = Env(objects=5, page_size=2, paged_consistent_lists=True)
    try:
        env.start()
        env.lw.create(widget("new"))
        wait_until(lambda: env.informer.last_sync_resource_version == "6")
        env.lw.compact()
        env.lw.expire_watches()  # ERROR 410 on the open stream: relist
        env.wait_parked()
        env.clock.advance(2)
        env.lw.wait_for_watches(2)
        calls = [(c.resource_version, c.limit, bool(c.continue_token)) for c in env.lw.list_calls]
        paged = [("", 2, False), (None, 2, True), (None, 2, True)]
        assert calls == paged * 2  # the first list and the relist after the 410
        assert env.lw.watch_calls[1].resource_version == "6"
        assert env.rvs() == env.truth()
    finally:
        env.informer.stop()


def test_expired_continue_token_falls_back_to_one_full_list() -> None:
    env = Env(objects=5, page_size=2)
    env.lw.fail_next_list(ApiError(410, "Expired", "continue token expired"), after=1)
    try:
        env.start()
        calls = [(c.resource_version, c.limit, bool(c.continue_token)) for c in env.lw.list_calls]
        assert calls == [("0", 2, False), (None, 2, True), ("0", None, False)]
        assert len(env.informer.indexer) == 5
        assert env.informer.stats().backoffs == 0
    finally:
        env.informer.stop()


def test_watch_events_reach_store_and_handlers(env: Env) -> None:
    env.start()
    env.lw.create(widget("a"))
    env.lw.modify(widget("a", size=2))
    env.lw.create(widget("b"))
    env.lw.delete("ns/a")
    wait_until(lambda: len(env.handler.calls) == 4)
    assert env.handler.calls == [
        ("add", "ns/a", "1", False), ("update", "ns/a", "1", "2"), ("add", "ns/b", "3", False),
        ("delete", "ns/a", False),
    ]
    assert env.rvs() == env.truth() == {"ns/b": "3"}
    env.lw.bookmark()
    wait_until(lambda: env.informer.last_sync_resource_version == "4")
    assert len(env.handler.calls) == 4


def test_normal_close_rewatches_at_once_from_the_last_rv_without_relist(env: Env) -> None:
    env.start()
    env.lw.create(widget("a"))
    wait_until(lambda: len(env.handler.calls) == 1)
    env.lw.end_watches()
    env.lw.wait_for_watches(2)
    assert env.lw.watch_calls[1].resource_version == "1"
    assert len(env.lw.list_calls) == 1
    assert env.informer.stats().backoffs == 0


def test_watch_410_relists_with_last_rv_and_deletes_become_tombstones(env: Env) -> None:
    env.lw.create(widget("keep"))
    env.lw.create(widget("gone"))
    env.start()
    env.lw.create(widget("new"))
    wait_until(lambda: env.informer.last_sync_resource_version == "3")
    env.lw.delete_silently("ns/gone")           # rv 4: deleted without a watch event (we are cut off)
    env.lw.modify(widget("keep", size=9))        # rv 5: seen
    wait_until(lambda: env.informer.last_sync_resource_version == "5")
    env.lw.compact()
    env.lw.expire_watches()                      # ERROR 410 on the open stream
    assert env.wait_parked() == pytest.approx(0.8)  # backoff before the relist
    env.clock.advance(0.8)
    env.lw.wait_for_watches(2)
    wait_until(lambda: len(env.lw.list_calls) == 2)
    relist = env.lw.list_calls[1]
    assert relist.resource_version == "5"
    assert relist.limit is None
    assert ("delete", "ns/gone", True) in env.handler.calls      # a tombstone
    assert env.handler.calls[-2:] == [("update", "ns/keep", "5", "5"), ("update", "ns/new", "3", "3")]
    assert env.rvs() == env.truth()
    assert any(isinstance(e, ApiError) and e.status == 410 for e in env.errors)


def test_list_410_retries_at_once_with_a_quorum_read(env: Env) -> None:
    env.lw.fail_next_list(ApiError(410, "Expired", "too old"))
    env.start()
    assert [c.resource_version for c in env.lw.list_calls] == ["0", ""]
    assert env.informer.stats().backoffs == 0
    # The flag clears after a good list: the next relist asks for the last RV again.
    env.lw.create(widget("a"))
    wait_until(lambda: env.informer.last_sync_resource_version == "1")
    env.lw.expire_watches()
    env.wait_parked()
    env.clock.advance(10)
    wait_until(lambda: len(env.lw.list_calls) == 3)
    assert env.lw.list_calls[2].resource_version == "1"


def test_watch_start_errors_back_off_and_rewatch_without_relist(env: Env) -> None:
    env.start()
    env.lw.fail_next_watch(TransportError("connection refused"))
    env.lw.fail_next_watch(ApiError(429, "TooManyRequests", "slow down"))
    env.lw.create(widget("a"))
    wait_until(lambda: len(env.handler.calls) == 1)
    env.lw.end_watches()
    assert env.wait_parked() == pytest.approx(0.8)
    env.clock.advance(0.8)
    assert env.wait_parked() == pytest.approx(1.6)
    env.clock.advance(1.6)
    env.lw.wait_for_watches(4)
    assert len(env.lw.list_calls) == 1
    assert [c.resource_version for c in env.lw.watch_calls] == ["0", "1", "1", "1"]


def test_idle_timeout_rewatches_at_once_and_is_reported(env: Env) -> None:
    env.start()
    env.lw.stall_watches()
    env.lw.wait_for_watches(2)
    assert env.informer.stats().idle_timeouts == 1
    assert any(isinstance(e, WatchIdleTimeout) for e in env.errors)
    assert len(env.lw.list_calls) == 1
    env.lw.create(widget("after"))
    wait_until(lambda: "ns/after" in env.informer.indexer)


def test_broken_stream_is_a_normal_close(env: Env) -> None:
    env.start()
    env.lw.create(widget("a"))
    wait_until(lambda: len(env.handler.calls) == 1)
    env.lw.break_watches()
    env.lw.wait_for_watches(2)
    assert len(env.lw.list_calls) == 1


def test_very_short_watch_is_an_error_that_relists(env: Env) -> None:
    env.start()
    env.lw.end_watches()  # closed at once, no event, no time passed
    env.wait_parked()
    assert any(isinstance(e, VeryShortWatchError) for e in env.errors)
    env.clock.advance(5)
    wait_until(lambda: len(env.lw.list_calls) == 2)


def test_backoff_doubles_to_30s_and_resets_after_2_quiet_minutes(env: Env) -> None:
    for _ in range(9):
        env.lw.fail_next_list(ApiError(500, "InternalError", "etcd down"))
    env.informer.start()
    delays = []
    for _ in range(8):
        d = env.wait_parked()
        delays.append(d)
        env.clock.advance(d)
    assert delays == pytest.approx([0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0])
    # 2 minutes without backing off reset the backoff to 0.8 s.
    d = env.wait_parked()
    env.clock.advance(d)
    wait_until(env.informer.has_synced)
    env.clock.advance(121)
    env.lw.expire_watches()
    assert env.wait_parked() == pytest.approx(0.8)


def test_backoff_jitter_adds_up_to_100_percent() -> None:
    from informers.reflector import Backoff

    class Half(random.Random):
        def random(self) -> float:
            return 0.5

    b = Backoff(ReflectorConfig(), FakeClock(), Half())
    assert [b.next_delay() for _ in range(3)] == pytest.approx([1.2, 2.4, 4.8])


def test_handler_added_after_start_gets_current_contents(env: Env) -> None:
    env.lw.create(widget("a"))
    env.start()
    env.lw.create(widget("b"))
    wait_until(lambda: len(env.informer.indexer) == 2)
    late = RecordingHandler()
    reg = env.informer.add_event_handler(late)
    assert reg.has_synced()
    assert sorted(late.calls) == [("add", "ns/a", "1", True), ("add", "ns/b", "2", True)]
    env.lw.create(widget("c"))
    wait_until(lambda: len(late.calls) == 3)
    assert late.calls[2] == ("add", "ns/c", "3", False)
    env.informer.remove_event_handler(reg)
    env.lw.create(widget("d"))
    wait_until(lambda: "ns/d" in env.informer.indexer)
    assert len(late.calls) == 3


def test_resync_replays_the_cache_without_calling_the_api() -> None:
    env = Env(objects=3, resync=30.0)
    try:
        env.start()
        lists, watches = len(env.lw.list_calls), len(env.lw.watch_calls)
        env.clock.block_until_waiters(1)  # the resync timer
        env.clock.advance(30)
        wait_until(lambda: len(env.handler.of("update")) == 3)
        assert all(c[2] == c[3] for c in env.handler.of("update"))  # same RV: a sync
        assert (len(env.lw.list_calls), len(env.lw.watch_calls)) == (lists, watches)
    finally:
        env.informer.stop()


def test_a_handler_cannot_corrupt_the_cache(env: Env) -> None:
    seen: list[BaseException] = []

    class Vandal:
        def on_add(self, obj: Any, is_in_initial_list: bool) -> None:
            try:
                obj["spec"]["size"] = 666
            except TypeError as exc:
                seen.append(exc)
            raise RuntimeError("handler bug")  # must not stop the informer

        def on_update(self, old: Any, new: Any) -> None:
            new["metadata"]["labels"] = {"x": "y"}

        def on_delete(self, obj: Any) -> None:
            pass

    env.informer.add_event_handler(Vandal())
    env.start()
    env.lw.create(widget("a", size=1))
    env.lw.modify(widget("a", size=2))
    wait_until(lambda: len(env.handler.calls) == 2)
    cached = env.informer.indexer.get_by_key("ns/a")
    assert cached is not None
    assert cached["spec"]["size"] == 2
    assert "labels" not in cached["metadata"]
    assert len(seen) == 1
    assert isinstance(seen[0], TypeError)
    env.lw.create(widget("b"))
    wait_until(lambda: "ns/b" in env.informer.indexer)


def test_transform_runs_before_objects_are_stored() -> None:
    from informers.store import drop_managed_fields

    lw = FakeListerWatcher([{**widget("a"), "metadata": {"namespace": "ns", "name": "a",
                                                          "managedFields": [{"manager": "x"}]}}])
    inf = SharedIndexInformer(lw, transform=drop_managed_fields, clock=FakeClock())
    inf.start()
    try:
        wait_until(inf.has_synced)
        obj = inf.indexer.get_by_key("ns/a")
        assert obj is not None
        assert "managedFields" not in obj["metadata"]
    finally:
        inf.stop()


def test_stop_ends_the_reflector_thread_mid_watch(env: Env) -> None:
    env.start()
    thread = env.informer.reflector._thread
    assert thread is not None
    assert thread.is_alive()
    env.informer.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert threading.active_count() >= 1


def test_enqueue_handler_gives_initial_list_and_resync_low_priority() -> None:
    from informers.handlers import EnqueueHandler
    from informers.workqueue import Queue

    env = Env(objects=3, resync=30.0)
    q: Queue[str] = Queue()
    env.informer.add_event_handler(EnqueueHandler(q))
    try:
        env.start()
        env.lw.modify(widget("w2", size=5))  # a real change after the initial list
        wait_until(lambda: env.informer.last_sync_resource_version == "4")
        order = [q.get().key for _ in range(3)]
        assert order == ["ns/w2", "ns/w0", "ns/w1"]  # the real change jumps the initial-list adds
        for key in order:
            q.done(key)  # type: ignore[arg-type]
        env.clock.block_until_waiters(1)
        env.clock.advance(30)  # resync: low priority again
        wait_until(lambda: len(q) == 3)
        env.lw.delete("ns/w1")
        wait_until(lambda: "ns/w1" not in env.informer.indexer)
        assert q.get().key == "ns/w1"
    finally:
        env.informer.stop()


def test_wait_for_sync_times_out_on_the_injected_clock() -> None:
    env = Env()
    env.lw.fail_next_list(ApiError(500, "InternalError", "etcd down"))
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(env.informer.wait_for_sync(0.5)))
    env.informer.start()
    t.start()
    try:
        env.clock.block_until_waiters(2)  # the waiter and the reflector's backoff (0.8 s)
        env.clock.advance(0.5)            # the waiter's 0.5 s are over, the backoff is not
        t.join(5)
        assert result == [False]
        env.clock.advance(10)             # the retried LIST succeeds
        wait_until(env.informer.has_synced)
        assert env.informer.wait_for_sync(0.0)
    finally:
        env.informer.stop()


def test_resync_period_of_a_late_handler_is_raised_to_the_check_period() -> None:
    env = Env(resync=30.0)
    try:
        env.start()
        assert env.informer.add_event_handler(RecordingHandler(), resync_period=5.0).resync_period == 30.0
        assert env.informer.add_event_handler(RecordingHandler(), resync_period=0).resync_period == 0.0
        assert env.informer.add_event_handler(RecordingHandler(), resync_period=60).resync_period == 60.0
    finally:
        env.informer.stop()


def test_factory_shares_informers_by_resource_and_selectors() -> None:
    from kubernetes import client

    from informers.factory import SharedInformerFactory
    from informers.listwatch import Resource
    from informers.store import label_index_func

    factory = SharedInformerFactory(client.ApiClient(), namespace="ns")
    res = Resource("g", "v1", "things")
    a = factory.informer_for(res)
    b = factory.informer_for(res, indexers={"wf": label_index_func("workflow")})
    c = factory.informer_for(res, label_selector="x=y")
    d = factory.informer_for(res, namespace="other")
    assert a is b
    assert len({id(a), id(c), id(d)}) == 3
    assert "wf" in a.indexer.indexer_names()
