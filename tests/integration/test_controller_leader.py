"""Leader election on a real coordination.k8s.io/v1 Lease (kube-testenv API server).

Short timings (lease 2 s, renew deadline 1.5 s, retry 0.2 s) keep it fast; no assertion depends on
how fast the machine is: waits are bounded, and the one time comparison is a lower bound the protocol
guarantees (a standby cannot take over before the lease duration has passed since the last renewal).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from kubernetes import client

from controller.config import LeaderElectionConfig
from controller.leader import ApiLeaseStore, LeaderElector, LeadershipEnd
from informers.testing import wait_until

MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@dataclass
class Candidate:
    elector: LeaderElector
    thread: threading.Thread | None = None
    started_at: float | None = None
    ends: list[LeadershipEnd] = field(default_factory=list)

    def start(self) -> Candidate:
        self.thread = self.elector.start()
        return self

    def stop(self) -> None:
        self.elector.stop()
        assert self.thread is not None
        self.thread.join(15)
        assert not self.thread.is_alive()


@pytest.fixture
def candidates(api_client: client.ApiClient, namespace: str) -> Iterator[Any]:
    made: list[Candidate] = []

    def make(identity: str, *, lease: float = 2.0, renew: float = 1.5, retry: float = 0.2,
             release: bool = True) -> Candidate:
        cfg = LeaderElectionConfig(namespace=namespace, name="kube-workflow-controller", identity=identity,
                                   lease_duration=lease, renew_deadline=renew, retry_period=retry,
                                   release_on_cancel=release)
        cand: Candidate

        def started() -> None:
            cand.started_at = time.monotonic()

        cand = Candidate(LeaderElector(
            cfg, ApiLeaseStore(api_client, namespace, cfg.name),
            on_started_leading=started, on_stopped_leading=lambda end: cand.ends.append(end),
            request_timeout=2.0,
        ))
        made.append(cand)
        return cand

    yield make
    for c in made:
        c.elector.stop()
        if c.thread is not None:
            c.thread.join(15)


def read_lease_raw(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    resp = client.CoordinationV1Api(api).read_namespaced_lease(
        "kube-workflow-controller", namespace, _preload_content=False
    )
    lease: dict[str, Any] = orjson.loads(resp.data)
    return lease


def test_one_leads_the_other_stands_by_and_release_hands_over_at_once(
    candidates: Any, api_client: client.ApiClient, namespace: str
) -> None:
    # A long lease: if release did not work, b would need 30 s and the 10 s wait below would fail.
    a = candidates("a", lease=30.0, renew=20.0).start()
    wait_until(a.elector.is_leader, timeout=10, what="a leads")
    b = candidates("b", lease=30.0, renew=20.0).start()
    wait_until(lambda: b.elector.observed_holder == "a", timeout=10, what="b sees a")
    assert not b.elector.is_leader()

    lease = read_lease_raw(api_client, namespace)
    assert lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["leaseDurationSeconds"] == 30
    assert MICRO.match(lease["spec"]["acquireTime"])
    assert MICRO.match(lease["spec"]["renewTime"])

    a.stop()
    assert a.ends == [LeadershipEnd.STOPPED]
    wait_until(b.elector.is_leader, timeout=10, what="b acquires the released lease")
    lease = read_lease_raw(api_client, namespace)
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    assert MICRO.match(lease["spec"]["renewTime"])


def test_standby_takes_over_only_after_the_crashed_leader_s_lease_expires(
    candidates: Any, api_client: client.ApiClient, namespace: str
) -> None:
    a = candidates("a", release=False).start()
    wait_until(a.elector.is_leader, timeout=10, what="a leads")
    b = candidates("b").start()
    wait_until(lambda: b.elector.observed_holder == "a", timeout=10, what="b sees a")
    assert not b.elector.is_leader()

    a.stop()                       # "crash": renewals stop, the lease is not released
    last_renew = a.elector.last_renew
    assert last_renew is not None
    assert read_lease_raw(api_client, namespace)["spec"]["holderIdentity"] == "a"

    # is_leader turns true just before on_started_leading runs (on the elector's thread): wait for the
    # callback, not only for the state.
    wait_until(lambda: b.started_at is not None, timeout=15, what="b takes over the expired lease")
    assert b.started_at is not None
    assert b.elector.is_leader()
    # Never before the lease duration has passed since a's last write: last_renew is taken before that
    # write was sent, so b cannot have observed it earlier (a bound the protocol guarantees).
    assert b.started_at - last_renew >= 2.0
    lease = read_lease_raw(api_client, namespace)
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1
    assert lease["spec"]["leaseDurationSeconds"] == 2
