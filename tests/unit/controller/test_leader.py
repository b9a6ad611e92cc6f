"""controller.leader with a FakeLeaseStore and a FakeClock: acquire, stand by, expiry by local observed
time, release, 409 races, loss of the lease after the renew deadline, MicroTime format."""

from __future__ import annotations

import random
import re
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from controller.config import LeaderElectionConfig
from controller.leader import (
    ElectorState,
    FakeLeaseStore,
    LeaderElector,
    LeadershipEnd,
    LeaseConflict,
    format_micro_time,
)
from informers import FakeClock

MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
CFG = LeaderElectionConfig(namespace="ns", name="lease", lease_duration=15, renew_deadline=10, retry_period=2)


class NoJitter(random.Random):
    def random(self) -> float:
        return 0.0


class Calls:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.stopped = threading.Event()

    def started(self) -> None:
        self.events.append("started")

    def ended(self, end: LeadershipEnd) -> None:
        self.events.append(f"stopped:{end}")
        self.stopped.set()


class Status:
    def __init__(self) -> None:
        self.values: list[tuple[str, bool]] = []

    def set_leader_status(self, name: str, leading: bool) -> None:
        self.values.append((name, leading))


def elector(identity: str, store: FakeLeaseStore, clock: FakeClock, calls: Calls | None = None,
            status: Status | None = None, config: LeaderElectionConfig = CFG) -> LeaderElector:
    calls = calls or Calls()
    return LeaderElector(
        LeaderElectionConfig(**{**config.__dict__, "identity": identity}), store,
        on_started_leading=calls.started, on_stopped_leading=calls.ended, status=status,
        clock=clock, rng=NoJitter(), wall=lambda: datetime(2026, 11, 29, 22, 13, 43, tzinfo=UTC),
    )


def spec(store: FakeLeaseStore) -> dict[str, Any]:
    lease = store.lease
    assert lease is not None
    return dict(lease["spec"])


@pytest.mark.parametrize(("dt", "text"), [
    (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05.000000Z"),
    (datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), "2026-01-02T03:04:05.123456Z"),
    (datetime(2026, 1, 2, 3, 4, 5, 7), "2026-01-02T03:04:05.000007Z"),
    (datetime(2026, 1, 2, 5, 4, 5, 10, tzinfo=timezone(timedelta(hours=2))), "2026-01-02T03:04:05.000010Z"),
], ids=["zero-micro", "micro", "naive-is-utc", "offset"])
def test_micro_time_always_has_six_digits_and_z(dt: datetime, text: str) -> None:
    assert format_micro_time(dt) == text
    assert MICRO.match(text)


def test_first_candidate_creates_the_lease() -> None:
    store, clock = FakeLeaseStore(), FakeClock()
    a = elector("a", store, clock)
    assert a.try_acquire_or_renew(1.0)
    s = spec(store)
    assert s["holderIdentity"] == "a"
    assert s["leaseDurationSeconds"] == 15
    assert s["leaseTransitions"] == 0
    assert s["acquireTime"] == s["renewTime"] == "2026-11-29T22:13:43.000000Z"


def test_renewal_keeps_acquire_time_and_transitions() -> None:
    store, clock = FakeLeaseStore(), FakeClock()
    now = [datetime(2026, 11, 29, 22, 0, 0, tzinfo=UTC)]
    a = LeaderElector(LeaderElectionConfig(**{**CFG.__dict__, "identity": "a"}), store,
                      on_started_leading=lambda: None, on_stopped_leading=lambda e: None, clock=clock,
                      wall=lambda: now[0])
    assert a.try_acquire_or_renew(1.0)
    now[0] += timedelta(seconds=2)
    clock.advance(2)
    assert a.try_acquire_or_renew(1.0)
    s = spec(store)
    assert s["acquireTime"] == "2026-11-29T22:00:00.000000Z"
    assert s["renewTime"] == "2026-11-29T22:00:02.000000Z"
    assert s["leaseTransitions"] == 0


def test_standby_waits_a_full_lease_duration_after_the_last_change_it_observed() -> None:
    store, clock = FakeLeaseStore(), FakeClock()
    a, b = elector("a", store, clock), elector("b", store, clock)
    assert a.try_acquire_or_renew(1.0)
    assert not b.try_acquire_or_renew(1.0)          # b observes a's record now
    assert b.observed_holder == "a"
    clock.advance(14)
    assert a.try_acquire_or_renew(1.0)              # a renews: the record changes ...
    clock.advance(1)
    assert not b.try_acquire_or_renew(1.0)          # ... so b's observation restarts here
    clock.advance(14.9)
    assert not b.try_acquire_or_renew(1.0)
    clock.advance(0.2)                              # 15.1 s without a change: a is presumed dead
    assert b.try_acquire_or_renew(1.0)
    s = spec(store)
    assert s["holderIdentity"] == "b"
    assert s["leaseTransitions"] == 1


def test_a_released_lease_is_acquired_at_once() -> None:
    store, clock = FakeLeaseStore(), FakeClock()
    a, b = elector("a", store, clock), elector("b", store, clock)
    assert a.try_acquire_or_renew(1.0)
    assert not b.try_acquire_or_renew(1.0)
    a._release()
    assert spec(store)["holderIdentity"] == ""
    assert spec(store)["leaseDurationSeconds"] == 1
    assert b.try_acquire_or_renew(1.0)              # no waiting for the lease duration
    assert spec(store)["holderIdentity"] == "b"


class RacingStore(FakeLeaseStore):
    """Lets another candidate write between this candidate's read and its update."""

    def __init__(self) -> None:
        super().__init__()
        self.between: Any = None

    def get(self, timeout: float) -> dict[str, Any] | None:
        lease = super().get(timeout)
        hook, self.between = self.between, None
        if hook is not None:
            hook()
        return lease


def test_a_lost_race_is_a_409_and_not_leadership() -> None:
    store, clock = RacingStore(), FakeClock()
    a, b = elector("a", store, clock), elector("b", store, clock)
    assert a.try_acquire_or_renew(1.0)
    a._release()
    store.between = lambda: b.try_acquire_or_renew(1.0)   # b wins while a is between read and write
    assert not a.try_acquire_or_renew(1.0)
    assert spec(store)["holderIdentity"] == "b"
    with pytest.raises(LeaseConflict):
        store.update({"metadata": {"resourceVersion": "1"}, "spec": {}}, 1.0)


def test_run_leads_and_releases_on_stop() -> None:
    store, clock, calls, status = FakeLeaseStore(), FakeClock(), Calls(), Status()
    a = elector("a", store, clock, calls, status)
    t = a.start()
    clock.block_until_waiters(1)                    # leading, parked until the next renewal
    assert a.is_leader()
    assert calls.events == ["started"]
    for _ in range(3):
        clock.advance(2)
        clock.block_until_waiters(1)
    assert a.is_leader()
    a.stop()
    t.join(10)
    assert calls.events == ["started", "stopped:Stopped"]
    assert a.state is ElectorState.STOPPED
    assert spec(store)["holderIdentity"] == ""
    assert status.values == [("lease", False), ("lease", True), ("lease", False)]


def test_run_stops_leading_at_the_renew_deadline_and_does_not_release() -> None:
    store, clock, calls = FakeLeaseStore(), FakeClock(), Calls()
    a = elector("a", store, clock, calls)
    t = a.start()
    clock.block_until_waiters(1)
    store.fail = True                               # partition: no renewal succeeds from now on
    for _ in range(4):                              # 2, 4, 6, 8 s: renewals fail, still inside the deadline
        clock.advance(2)
        clock.block_until_waiters(1)
        assert a.is_leader()
        assert calls.events == ["started"]
    clock.advance(2)                                # 10 s = renew deadline: stop at once
    assert calls.stopped.wait(10)
    t.join(10)
    assert calls.events == ["started", "stopped:Lost"]
    store.fail = False
    assert spec(store)["holderIdentity"] == "a"     # not released: it could not even renew


def test_stop_before_leading_calls_no_callback() -> None:
    store, clock, calls = FakeLeaseStore(), FakeClock(), Calls()
    a = elector("a", store, clock, calls)
    assert elector("other", store, clock).try_acquire_or_renew(1.0)
    t = a.start()
    clock.block_until_waiters(1)                    # standing by
    assert a.state is ElectorState.CANDIDATE
    a.stop()
    t.join(10)
    assert calls.events == []
    assert spec(store)["holderIdentity"] == "other"


def test_standby_takes_over_after_the_leader_stops_renewing() -> None:
    store, clock, ca, cb = FakeLeaseStore(), FakeClock(), Calls(), Calls()
    no_release = LeaderElectionConfig(**{**CFG.__dict__, "release_on_cancel": False})
    a = elector("a", store, clock, ca, config=no_release)
    ta = a.start()
    clock.block_until_waiters(1)
    b = elector("b", store, clock, cb)
    tb = b.start()
    clock.block_until_waiters(2)
    a.stop()                                        # a "crashes": no release, no more renewals
    ta.join(10)
    waited = 0.0
    while not b.is_leader():
        assert waited <= 17.0
        clock.advance(1)
        waited += 1
        clock.block_until_waiters(1)
    assert 15.0 <= waited <= 17.0                   # the lease duration, plus at most one retry period
    assert spec(store)["holderIdentity"] == "b"
    b.stop()
    tb.join(10)
    assert cb.events == ["started", "stopped:Stopped"]


def test_identity_is_required() -> None:
    with pytest.raises(ValueError, match="identity"):
        LeaderElector(
            CFG, FakeLeaseStore(), on_started_leading=lambda: None, on_stopped_leading=lambda e: None
        )


def test_a_failing_on_started_leading_releases_and_ends_as_lost() -> None:
    store, clock = FakeLeaseStore(), FakeClock()
    ends: list[LeadershipEnd] = []

    def boom() -> None:
        raise RuntimeError("cannot start workers")

    a = LeaderElector(LeaderElectionConfig(**{**CFG.__dict__, "identity": "a"}), store,
                      on_started_leading=boom, on_stopped_leading=ends.append, clock=clock)
    assert a.run() is LeadershipEnd.LOST
    assert ends == [LeadershipEnd.LOST]
    assert spec(store)["holderIdentity"] == ""
