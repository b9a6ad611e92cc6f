"""Admission (Pending -> Running under maxRunningCount, FIFO and FAIR) and bad specs, with the engine
in-process on the real API server. Admission order is read from ``status.startedAt`` (written by the
single admission thread, one fresh timestamp per workflow)."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from reconcilers.state_machine.config import EngineConfig, QueueStrategy
from reconcilers.state_machine.types import parse_time
from tests.integration.engine_fixtures import (
    crds,
    create,
    events_of,
    get,
    running_engine,
    settings,
    step,
    wait_for,
    wait_phase,
    workflow,
)

__all__ = ["crds"]


def _short(name: str, queue: str = "default", seconds: str = "0") -> dict[str, Any]:
    return workflow(name, [step("only", "fail", parameters={"sleepSeconds": seconds})], queue=queue)


def _max_overlap(workflows: list[dict[str, Any]]) -> int:
    edges = []
    for wf in workflows:
        edges.append((parse_time(wf["status"]["startedAt"]), 1))
        edges.append((parse_time(wf["status"]["finishedAt"]), -1))
    active = peak = 0
    for _, delta in sorted(edges, key=lambda e: (e[0], e[1])):  # an end before a start at the same time
        active += delta
        peak = max(peak, active)
    return peak


def _by_start(workflows: list[dict[str, Any]]) -> list[str]:
    ordered = sorted(workflows, key=lambda w: parse_time(w["status"]["startedAt"]))
    return [wf["metadata"]["name"] for wf in ordered]


def test_fifo_admits_by_creation_time_and_finished_workflows_do_not_count(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str) -> None:
    created = ["fifo-d", "fifo-b", "fifo-c", "fifo-a"]  # not name order: creation time must decide
    for i, name in enumerate(created):
        if i:
            time.sleep(1.05)  # creationTimestamp has one-second resolution
        create(crds, namespace, _short(name, queue=f"q{i % 2}"))
    engine_settings = settings(namespace, engine=EngineConfig(queue_strategy=QueueStrategy.FIFO,
                                                              max_running_count=1))
    with running_engine(api_client, engine_settings):
        done = [wait_phase(crds, namespace, name, "Success") for name in created]
    assert _by_start(done) == created
    assert _max_overlap(done) == 1


def test_fair_admits_round_the_queues(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str) -> None:
    backlog = {"a": 4, "b": 2, "c": 1}
    names = []
    for queue, n in backlog.items():  # queue a's workflows are the oldest: FIFO would run them first
        for i in range(1, n + 1):
            names.append(f"{queue}{i}")
            create(crds, namespace, _short(f"{queue}{i}", queue=queue, seconds="1"))
    engine_settings = settings(namespace, engine=EngineConfig(queue_strategy=QueueStrategy.FAIR,
                                                              max_running_count=2))
    with running_engine(api_client, engine_settings):
        done = [wait_phase(crds, namespace, name, "Success") for name in names]
    order = _by_start(done)
    queues = [name[0] for name in order]
    assert set(queues[:3]) == {"a", "b", "c"}, order
    # Round the queues: each admission goes to a queue admitted no more often so far than any other
    # queue that still has work waiting (e.g. a b c a b a a, or b a c b a a a after a lost race).
    admitted = dict.fromkeys(backlog, 0)
    for q in queues:
        waiting = [other for other in backlog if admitted[other] < backlog[other]]
        assert all(admitted[q] <= admitted[other] for other in waiting), order
        admitted[q] += 1
    for queue in backlog:
        mine = [n for n in order if n[0] == queue]
        assert mine == sorted(mine), order  # FIFO within a queue
    assert _max_overlap(done) <= 2


def test_a_bad_spec_fails_with_a_condition_and_an_event_and_others_still_run(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str) -> None:
    cycle = workflow("cycle", [step("x", "empty", "y"), step("y", "empty", "x")])
    unknown = workflow("unknown", [step("x", "no-such-type")])
    with running_engine(api_client, settings(namespace)):
        create(crds, namespace, cycle)
        create(crds, namespace, unknown)
        create(crds, namespace, _short("fine"))
        for name, reason in (("cycle", "Cycle"), ("unknown", "UnknownStepType")):
            wf = wait_phase(crds, namespace, name, "Failed", "Success", "RollBacked")
            assert wf["status"]["phase"] == "Failed"
            conditions = {c["type"]: c for c in wf["status"]["conditions"]}
            assert conditions["SpecValid"]["status"] == "False"
            assert conditions["SpecValid"]["reason"] == reason, conditions
            wait_for(lambda n=name, r=reason: any(  # type: ignore[misc]
                e.type == "Warning" and e.reason == r for e in events_of(api_client, namespace, n)),
                message=lambda n=name: f"a Warning Event for {n}: {events_of(api_client, namespace, n)}")
        assert wait_phase(crds, namespace, "fine", "Success", "Failed")["status"]["phase"] == "Success"
        assert get(crds, namespace, "cycle") is not None
