"""reconcilers.typed: one parse per object version."""

from __future__ import annotations

from typing import Any

from reconcilers.state_machine import Step, Workflow
from reconcilers.typed import TypedCache


def _workflow(rv: str, uid: str = "u1") -> dict[str, Any]:
    return {"metadata": {"name": "wf", "namespace": "ns", "uid": uid, "resourceVersion": rv},
            "spec": {"steps": [{"name": "a", "stepTemplate": {"type": "empty"}}]}}


def _step(rv: str) -> dict[str, Any]:
    return {"metadata": {"name": "wf-a", "namespace": "ns", "uid": "s1", "resourceVersion": rv,
                         "annotations": {"workflow.example.com/step": "a"}},
            "spec": {"type": "empty"}, "status": {"phase": "Running"}}


def test_a_version_is_parsed_once_and_a_new_version_again() -> None:
    cache = TypedCache()
    first = cache.workflow(_workflow("1"))
    assert isinstance(first, Workflow)
    assert first.resource_version == "1"
    assert cache.workflow(_workflow("1")) is first
    second = cache.workflow(_workflow("2"))
    assert second is not first
    assert second.resource_version == "2"
    step = cache.step(_step("7"))
    assert isinstance(step, Step)
    assert cache.step(_step("7")) is step
    assert cache.parsed == 3


def test_kinds_and_uids_do_not_share_entries() -> None:
    cache = TypedCache()
    assert cache.workflow(_workflow("1", uid="u1")) is not cache.workflow(_workflow("1", uid="u2"))
    assert cache.parsed == 2


def test_objects_without_a_version_are_parsed_every_time_and_the_oldest_entries_go_first() -> None:
    cache = TypedCache(size=2)
    unversioned = _workflow("")
    assert cache.workflow(unversioned) is not cache.workflow(unversioned)
    a, b = cache.workflow(_workflow("1")), cache.workflow(_workflow("2"))
    cache.workflow(_workflow("3"))              # drops "1"
    assert cache.workflow(_workflow("2")) is b
    assert cache.workflow(_workflow("1")) is not a


def test_a_new_version_of_the_same_generation_reuses_the_parsed_spec() -> None:
    cache = TypedCache()
    one = _workflow("1")
    one["metadata"]["generation"] = 1
    two = {**one, "metadata": {**one["metadata"], "resourceVersion": "2"}, "status": {"phase": "Running"}}
    first, second = cache.workflow(one), cache.workflow(two)
    assert second is not first
    assert second.spec is first.spec
    assert second.status.phase.value == "Running"
    three = {**two, "metadata": {**two["metadata"], "resourceVersion": "3", "generation": 2},
             "spec": {"steps": [{"name": "b", "stepTemplate": {"type": "empty"}}]}}
    assert [s.name for s in cache.workflow(three).spec.steps] == ["b"]


def test_a_spec_outlives_the_churn_of_other_values() -> None:
    """The step workers and the reconciler share the cache: many new step versions must not push out the
    parsed spec (and its graph analysis) of a running workflow."""
    cache = TypedCache(size=4)
    one = _workflow("1")
    one["metadata"]["generation"] = 1
    spec = cache.workflow(one).spec
    for rv in range(10, 30):
        cache.step(_step(str(rv)))
    later = {**one, "metadata": {**one["metadata"], "resourceVersion": "40"}}
    assert cache.workflow(later).spec is spec
