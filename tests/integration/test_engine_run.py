"""The engine running in-process against the real API server: runs, failures, rollbacks and retries.

Orders and counts come from the ``fail`` step's call log (every call appends one line); no test
asserts a duration.
"""

from __future__ import annotations

import copy
import itertools
import threading
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.engine_fixtures import (
    GROUP,
    SEED_EXAMPLE,
    VERSION,
    calls,
    crds,
    create,
    events_of,
    running_engine,
    settings,
    step,
    step_phases,
    wait_for,
    wait_phase,
    workflow,
)

__all__ = ["crds"]  # the module-scoped fixture, re-exported for pytest


def test_the_seed_example_succeeds(api_client: client.ApiClient, crds: client.CustomObjectsApi,
                                   namespace: str) -> None:
    body: dict[str, Any] = yaml.safe_load(SEED_EXAMPLE.read_text())
    for s in body["spec"]["steps"]:
        s["stepTemplate"]["parameters"]["sleepSeconds"] = "1"  # the example sleeps 20 s per step
    with running_engine(api_client, settings(namespace)) as engine:
        create(crds, namespace, body)
        wf = wait_phase(crds, namespace, "example", "Success", "Failed", "RollBacked")
        assert engine.healthy() is None
        wait_for(lambda: engine.phase_counts() == {"Success": 1}, message="the cache to show Success")
        assert wf["status"]["phase"] == "Success", wf["status"]
        assert step_phases(crds, namespace, "example") == {"step1": "Success", "step2": "Success",
                                                           "step3": "Success"}
        assert wf["status"]["stepPhases"]["Success"] == 3
        assert wf["status"]["startedAt"] <= wf["status"]["finishedAt"]
        assert "workflow.example.com/rollback" in wf["metadata"]["finalizers"]


def _fail(log: Path, **params: str) -> dict[str, str]:
    return {"callLog": str(log), **params}


def _order(records: list[Any], direction: str) -> list[str]:
    return [r.step for r in records if r.direction == direction]


def test_a_chain_whose_step_3_fails_rolls_back_2_then_1(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    names = ["s1", "s2", "s3", "s4", "s5"]
    steps = []
    for i, name in enumerate(names):
        params = _fail(log, runError="permanent") if name == "s3" else _fail(log)
        steps.append(step(name, "fail", *names[i - 1:i], parameters=params))
    with running_engine(api_client, settings(namespace)):
        create(crds, namespace, workflow("chain", steps))
        wf = wait_phase(crds, namespace, "chain", "RollBacked", "Failed", "Success")
    assert wf["status"]["phase"] == "RollBacked", wf["status"]
    records = calls(log, workflow_name="chain")
    assert _order(records, "run") == ["s1", "s2", "s3"]
    # s3's own partial effects are undone too, before the steps it depends on
    assert _order(records, "rollback") == ["s3", "s2", "s1"]
    assert not {"s4", "s5"} & {r.step for r in records}
    assert step_phases(crds, namespace, "chain") == dict.fromkeys(names, "RollBacked")
    reasons = {e.reason for e in events_of(api_client, namespace, "chain")}
    assert {"RollingBack", "RolledBack"} <= reasons, reasons


def test_a_diamond_rolls_b_and_c_back_concurrently_then_a(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    slow = _fail(log, sleepSeconds="1")
    steps = [
        step("a", "fail", parameters=_fail(log)),
        step("b", "fail", "a", parameters=slow),
        step("c", "fail", "a", parameters=slow),
        step("d", "fail", "b", "c", parameters=_fail(log, runError="permanent")),
    ]
    with running_engine(api_client, settings(namespace)):
        create(crds, namespace, workflow("diamond", steps))
        wf = wait_phase(crds, namespace, "diamond", "RollBacked", "Failed", "Success")
    assert wf["status"]["phase"] == "RollBacked", wf["status"]
    records = calls(log, workflow_name="diamond")
    rollbacks = {r.step: r for r in records if r.direction == "rollback"}
    assert list(rollbacks) in (["d", "b", "c", "a"], ["d", "c", "b", "a"])
    # The log line is written when a call ends; b and c sleep 1 s, so their intervals are [end-1, end].
    b_end, c_end = rollbacks["b"].ts, rollbacks["c"].ts
    assert b_end - 1.0 < c_end, "b and c were not rolled back concurrently"
    assert c_end - 1.0 < b_end, "b and c were not rolled back concurrently"
    assert rollbacks["a"].ts >= max(b_end, c_end)
    assert rollbacks["d"].ts <= min(b_end, c_end) - 1.0 + 0.05  # d's rollback ended before b's and c's began


def test_run_retries_honour_the_limit_and_period_and_ignorable_errors_are_free(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    retry = {"runRetryLimit": 3, "runRetryPeriodSeconds": 1}
    steps = [
        # fails retryably on attempts 1 and 2, succeeds on 3 (the limit): Success
        step("flaky", "fail", parameters=_fail(log, failRuns="2"), retry=retry),
        # two ignorable errors first (no attempt used), then 2 retryable failures, success on attempt 3
        step("throttled", "fail", parameters=_fail(log, ignorable="2", failRuns="2"), retry=retry),
    ]
    with running_engine(api_client, settings(namespace)):
        create(crds, namespace, workflow("retries", steps))
        wf = wait_phase(crds, namespace, "retries", "Success", "RollBacked", "Failed")
        assert wf["status"]["phase"] == "Success", wf["status"]

        create(crds, namespace, workflow("exhausted", [
            step("never", "fail", parameters=_fail(log, failRuns="always"), retry=retry)]))
        wf = wait_phase(crds, namespace, "exhausted", "RollBacked", "Failed", "Success")
        assert wf["status"]["phase"] == "RollBacked", wf["status"]

    flaky = [r for r in calls(log, workflow_name="retries") if r.step == "flaky"]
    assert [(r.attempt, r.outcome) for r in flaky] == [(1, "retryable"), (2, "retryable"), (3, "ok")]
    throttled = [r for r in calls(log, workflow_name="retries") if r.step == "throttled"]
    assert [(r.attempt, r.outcome) for r in throttled] == [
        (1, "ignorable"), (1, "ignorable"), (1, "retryable"), (2, "retryable"), (3, "ok")]
    for series in (flaky, throttled):
        for before, after in itertools.pairwise(series):
            # the log's ts is when a call ended; the next attempt starts a period after the failure
            assert after.ts - before.ts >= 1.0 - 0.05, [(r.attempt, r.ts) for r in series]
    never = [r for r in calls(log, workflow_name="exhausted") if r.step == "never"]
    assert [(r.direction, r.attempt) for r in never] == [("run", 1), ("run", 2), ("run", 3), ("rollback", 1)]


def test_step_attributes_are_merged_into_the_workflow(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    steps = [
        step("producer", "fail", parameters=_fail(log, attributes='{"bucket": "b-1"}')),
        step("consumer", "fail", "producer", parameters=_fail(log)),
    ]
    with running_engine(api_client, settings(namespace)):
        create(crds, namespace, workflow("data", copy.deepcopy(steps)))
        wf = wait_phase(crds, namespace, "data", "Success", "RollBacked", "Failed")
    assert wf["status"]["phase"] == "Success"
    assert wf["status"]["attributes"] == {"bucket": "b-1"}


def test_a_dependent_waits_for_the_resource_status_its_upstream_reports_through_sync(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    steps = [
        # run reports the resource as Creating; the first sync (1 s later) reports it Ready
        step("db", "fail", parameters=_fail(log, resourceStatus="Creating", syncResourceStatus="Ready"),
             syncPeriodSeconds=1),
        {**step("app", "fail", parameters=_fail(log)),
         "dependOns": [{"name": "db", "phase": "Success", "resourceStatus": "Ready"}]},
    ]
    with running_engine(api_client, settings(namespace)):
        create(crds, namespace, workflow("async", steps))
        wf = wait_phase(crds, namespace, "async", "Success", "RollBacked", "Failed")
    assert wf["status"]["phase"] == "Success"
    records = [(r.step, r.direction) for r in calls(log, workflow_name="async")]
    assert records.index(("db", "sync")) < records.index(("app", "run")), records
    assert records[0] == ("db", "run")


def test_a_finished_workflow_is_not_reconciled_again_after_its_final_write(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str, tmp_path: Path) -> None:
    """The reconcile that writes the final phase queues the workflow for no other look, at once or after the
    quiet-minute safety net (decide does nothing for a finished workflow); a change by someone else, such
    as a deletion, still wakes it."""
    log = tmp_path / "calls.jsonl"
    with running_engine(api_client, settings(namespace)) as engine:
        reconciler = engine.reconciler
        local = threading.local()
        finals: list[tuple[int, float | None]] = []  # the final write's reconcile: its own adds, its requeue
        after_success: list[str] = []
        reconcile, add = reconciler.reconcile, reconciler.queue.add

        def phase(key: str) -> str:
            obj = reconciler.fresh_workflows.get_by_key(key)
            return str(((obj or {}).get("status") or {}).get("phase") or "Pending")

        def counting(key: str) -> float | None:
            before, local.adds, after = phase(key), 0, None
            try:
                after = reconcile(key)
                return after
            finally:
                if before == "Success":
                    after_success.append(key)
                elif phase(key) == "Success":
                    finals.append((local.adds, after))  # nor the quiet-minute safety net
                local.adds = None

        def adding(key: str, **kwargs: Any) -> None:
            if getattr(local, "adds", None) is not None:
                local.adds += 1
            add(key, **kwargs)

        reconciler.reconcile = counting  # type: ignore[method-assign]
        reconciler.queue.add = adding  # type: ignore[method-assign]
        create(crds, namespace, workflow("done", [step("a", "fail", parameters=_fail(log)),
                                                  step("b", "fail", "a", parameters=_fail(log))]))
        wait_phase(crds, namespace, "done", "Success", "Failed", "RollBacked")
        wait_for(lambda: finals, message="the reconcile that wrote Success")
        assert finals == [(0, None)]
        crds.delete_namespaced_custom_object(GROUP, VERSION, namespace, "workflows", "done")
        wait_for(lambda: after_success, message="the deletion to wake the finished workflow")
        wait_for(lambda: _gone(crds, namespace, "done"), timeout=60,
                 message="the deletion to finish (finalizers released)")


def _gone(crds: client.CustomObjectsApi, namespace: str, name: str) -> bool:
    try:
        crds.get_namespaced_custom_object(GROUP, VERSION, namespace, "workflows", name)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False
