"""Admission's own candidate map: fed by the Workflow informer's events, used by every pass and by
``phase_counts``, never a scan of the (compact) cache. The informer is driven synchronously through its
reflector-store methods (``replace``/``update``/``delete``), without threads."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from informers import Resource, SharedIndexInformer
from informers.testing import FakeListerWatcher
from reconcilers.admission import Admission
from reconcilers.expectations import Expectations
from reconcilers.kube import Kube
from reconcilers.settings import NoopEventSink
from reconcilers.state_machine.config import EngineConfig, QueueStrategy

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def wf(name: str, phase: str | None = None, *, rv: int = 1, created: int = 0, **meta: Any) -> dict[str, Any]:
    status = {"phase": phase, "startedAt": "2026-01-01T00:00:00Z"} if phase else {}
    return {"apiVersion": "workflow.example.com/v1alpha1", "kind": "Workflow",
            "metadata": {"namespace": "ns", "name": name, "resourceVersion": str(rv), "uid": f"u-{name}",
                         "creationTimestamp": f"2026-01-01T00:00:{created:02d}Z", **meta},
            "spec": {"steps": [{"name": "a", "stepTemplate": {"type": "fail"}}]}, "status": status}


class FakeKube:
    """Records status patches; answers with the object at the next resourceVersion."""

    def __init__(self) -> None:
        self.patches: list[tuple[str, Mapping[str, Any], str | None]] = []

    def patch_status(self, resource: Resource, namespace: str, name: str, status_patch: Mapping[str, Any],
                     *, resource_version: str | None = None) -> dict[str, Any]:
        self.patches.append((name, status_patch, resource_version))
        return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": f"{resource_version}0"}}


def admission(informer: SharedIndexInformer, kube: FakeKube, max_running: int) -> Admission:
    config = EngineConfig(queue_strategy=QueueStrategy.FIFO, max_running_count=max_running)
    return Admission(workflows=informer, kube=cast(Kube, kube), expectations=Expectations(),
                     engine_config=config, events=NoopEventSink(), now=lambda: NOW)


def forbid_scans(inf: SharedIndexInformer, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_scans() -> None:
        raise AssertionError("admission must not scan the cache")

    monkeypatch.setattr(inf.indexer, "list", no_scans)
    monkeypatch.setattr(inf.indexer, "iter_objects", no_scans)


@pytest.fixture
def informer(monkeypatch: pytest.MonkeyPatch) -> SharedIndexInformer:
    inf = SharedIndexInformer(FakeListerWatcher([]), name="workflows", compact=True)
    forbid_scans(inf, monkeypatch)
    return inf


@pytest.mark.parametrize("late", [False, True], ids=["added-before-the-list", "added-late-replayed"])
def test_a_pass_admits_from_the_map_and_holds_back_what_it_just_admitted(
        informer: SharedIndexInformer, monkeypatch: pytest.MonkeyPatch, late: bool) -> None:
    kube = FakeKube()
    adm = admission(informer, kube, max_running=3)
    objs = [wf("run-1", "Running"), wf("run-2", "Running"), wf("done", "Success"),
            wf("p-late", created=9), wf("p-early", "Pending", created=1), wf("p-mid", created=5)]
    if not late:
        informer.add_event_handler(adm)
    informer.replace([informer.prepare(o) for o in objs], "1")
    if late:
        monkeypatch.undo()  # the replay of a handler added late iterates the cache
        informer.add_event_handler(adm)
        forbid_scans(informer, monkeypatch)
    assert adm.phase_counts() == {"Running": 2, "Success": 1, "Pending": 3}

    assert adm.run_once() == 1
    assert [(name, patch["phase"], rv) for name, patch, rv in kube.patches] == [("p-early", "Running", "1")]
    assert adm.run_once() == 0  # the cache still shows p-early Pending: stale, so counted as active

    informer.update(wf("p-early", "Running", rv=10))  # the watch brings our write
    assert adm.run_once() == 0
    informer.delete(wf("run-1", "Running"))  # a slot frees up
    assert adm.phase_counts() == {"Running": 2, "Success": 1, "Pending": 2}
    assert adm.run_once() == 1
    assert kube.patches[-1][0] == "p-mid"


def test_updates_and_unparseable_workflows_in_the_map(informer: SharedIndexInformer) -> None:
    adm = admission(informer, FakeKube(), max_running=10)
    informer.add_event_handler(adm)
    informer.replace([informer.prepare(wf("a")), informer.prepare(wf("b", "Running"))], "1")
    informer.update(wf("a", "Bogus", rv=2))  # not a phase admission knows: never admitted, still counted
    informer.update(wf("b", "Success", rv=2))
    informer.update(wf("c", "Pending", rv=3, deletionTimestamp="2026-01-01T00:01:00Z"))  # deleting
    assert adm.phase_counts() == {"Bogus": 1, "Success": 1, "Pending": 1}
    assert adm.run_once() == 0
    informer.replace([informer.prepare(wf("b", "Success", rv=2))], "4")  # a relist: a and c are gone
    assert adm.phase_counts() == {"Success": 1}


def test_a_pass_costs_the_unfinished_workflows_not_the_finished_ones(
        informer: SharedIndexInformer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of finished workflows: no staleness lookups for them, and FAIR still sees when each
    queue last started one (its tie-break)."""
    kube = FakeKube()
    config = EngineConfig(queue_strategy=QueueStrategy.FAIR, max_running_count=1)
    expectations = Expectations()
    adm = Admission(workflows=informer, kube=cast(Kube, kube), expectations=expectations,
                    engine_config=config, events=NoopEventSink(), now=lambda: NOW)
    informer.add_event_handler(adm)
    done_a = [wf(f"a-{i}", "Success") for i in range(2000)]
    done_a[7]["status"]["startedAt"] = "2026-01-01T00:30:00Z"           # queue "a" last started at 00:30
    done_b = wf("b-done", "Success")                                    # queue "b" at 00:00
    pending = [wf("p-a", created=1), wf("p-b", created=2)]
    pending[0]["spec"]["queue"], pending[1]["spec"]["queue"] = "a", "b"
    for o in done_a:
        o["spec"]["queue"] = "a"
    done_b["spec"]["queue"] = "b"
    informer.replace([informer.prepare(o) for o in [*done_a, done_b, *pending]], "1")
    looked_up: list[str] = []
    real = expectations.is_stale

    def counting(key: str, rv: str) -> bool:
        looked_up.append(key)
        return real(key, rv)

    monkeypatch.setattr(expectations, "is_stale", counting)
    assert adm.run_once() == 1
    assert sorted(looked_up) == ["Workflow/ns/p-a", "Workflow/ns/p-b"]
    # queue "b" started least recently: it goes first (by name alone, "a" would)
    assert [p[0] for p in kube.patches] == ["p-b"]
