"""Table tests: a Running workflow — creating steps, readiness, runs and their retries, syncs, Success."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from reconcilers.state_machine.config import EngineConfig
from reconcilers.state_machine.types import Phase
from stepkit.context import derive_idempotency_key
from tests.unit.state_machine.builders import (
    at,
    calls,
    moved,
    object_name,
    run,
    spec_step,
    step_obj,
    ts,
    workflow,
)

A, B, C = spec_step("a"), spec_step("b", "a"), spec_step("c")


@pytest.mark.parametrize(
    ("steps", "existing", "creates"),
    [
        pytest.param([A, B, C], [], ["a", "b", "c"], id="first-reconcile-creates-every-step"),
        pytest.param([A, B, C], ["a"], ["b", "c"], id="creates-only-the-missing-ones"),
        pytest.param([A, B, C], ["a", "b", "c"], [], id="nothing-to-create"),
    ],
)
def test_step_objects_are_created_idempotently(steps: list[dict[str, Any]], existing: list[str],
                                               creates: list[str]) -> None:
    wf = workflow(*steps)
    decision = run(wf, [step_obj(wf, s) for s in existing])
    assert [c.step for c in decision.creates] == creates
    for create in decision.creates:
        meta = create.body["metadata"]
        assert meta["name"] == object_name(create.step)
        assert meta["labels"] == {"workflow": "wf", "step": create.step}
        assert meta["ownerReferences"][0]["controller"] is True
        assert meta["finalizers"] == ["workflow.example.com/rollback"]
        assert create.body["spec"]["rollbackPolicy"] == "PreserveOnFailure"


READY = spec_step("b", "a", resource_status="Ready")


@pytest.mark.parametrize(
    ("steps", "phases", "resource", "started"),
    [
        pytest.param([A, spec_step("x"), C], {"a": None, "x": None, "c": None}, "", ["a", "x", "c"],
                     id="steps-without-dependencies-start-together"),
        pytest.param([A, B], {"a": "Running", "b": None}, "", [], id="waits-while-upstream-runs"),
        pytest.param([A, B], {"a": "Success", "b": None}, "", ["b"], id="starts-once-upstream-succeeded"),
        pytest.param([A, READY], {"a": "Success", "b": None}, "Creating", [],
                     id="waits-for-upstream-resource-status"),
        pytest.param([A, READY], {"a": "Success", "b": None}, "Ready", ["b"],
                     id="starts-on-upstream-resource-status"),
        pytest.param([A, C, spec_step("d", "a", "c")], {"a": "Success", "c": "Running", "d": None}, "", [],
                     id="waits-for-every-dependOn"),
        pytest.param([A, C, spec_step("d", "a", "c")], {"a": "Success", "c": "Success", "d": None}, "", ["d"],
                     id="starts-when-every-dependOn-is-satisfied"),
    ],
)
def test_readiness(steps: list[dict[str, Any]], phases: dict[str, str | None], resource: str,
                   started: list[str]) -> None:
    wf = workflow(*steps)
    objs = [step_obj(wf, name, phase, **({"resource": {"status": resource}} if name == "a" else {}))
            for name, phase in phases.items()]
    decision = run(wf, objs, config=EngineConfig(step_events=True))
    assert moved(decision) == dict.fromkeys(started, "Running")
    runs = {step for kind, step, _ in calls(decision) if kind == "run"}
    assert runs == set(started) | {name for name, phase in phases.items() if phase == "Running"}
    started_events = [e.message for e in decision.events if e.reason == "StepStarted"]
    assert started_events == [f"step {s} started" for s in started]
    # Per-step Normal Events are opt-in (stepEvents): by default a start posts none.
    assert not [e for e in run(wf, objs).events if e.reason == "StepStarted"]


def test_steps_ready_when_created_start_in_the_same_decision() -> None:
    wf = workflow(A, B)
    decision = run(wf, [])
    assert [c.step for c in decision.creates] == ["a", "b"]
    # "a" has no dependOns: its Running status (no resourceVersion yet: the applier uses the create's)
    # and its first run are in the decision that creates it; "b" waits for "a".
    changes = [(c.step, c.resource_version, str(c.status.phase)) for c in decision.steps]
    assert changes == [("a", "", "Running")]
    assert calls(decision) == [("run", "a", 1)]


def test_no_step_is_created_before_the_workflow_holds_its_finalizer() -> None:
    wf = workflow(A)
    wf["metadata"]["finalizers"] = []
    decision = run(wf, [])
    assert decision.creates == ()
    assert decision.steps == ()
    assert [(f.kind, f.add) for f in decision.finalizers] == [("Workflow", True)]


@pytest.mark.parametrize(
    ("step", "status", "now", "expected_call", "requeue"),
    [
        pytest.param(spec_step("a"), {}, 0, ("run", "a", 1), None, id="first-attempt-at-once"),
        pytest.param(spec_step("a", period=60), {"runRetryCount": 1, "latestRunRetryAt": ts(0)}, 30, None, 30,
                     id="retry-waits-for-the-period"),
        pytest.param(spec_step("a", period=60), {"runRetryCount": 1, "latestRunRetryAt": ts(0)}, 60,
                     ("run", "a", 2), None, id="retry-after-the-period"),
        pytest.param(spec_step("a", period=60), {"runRetryCount": 0, "latestRunRetryAt": ts(0)}, 59, None, 1,
                     id="ignorable-error-waits-without-using-an-attempt"),
        pytest.param(spec_step("a", period=60), {"runRetryCount": 0, "latestRunRetryAt": ts(0)}, 60,
                     ("run", "a", 1), None, id="ignorable-error-retries-the-same-attempt"),
        pytest.param(spec_step("a", period=0), {"runRetryCount": 2, "latestRunRetryAt": ts(0)}, 0,
                     ("run", "a", 3), None, id="zero-period-retries-at-once"),
    ],
)
def test_run_attempts(step: dict[str, Any], status: dict[str, Any], now: float,
                      expected_call: tuple[str, str, int] | None, requeue: float | None) -> None:
    wf = workflow(step)
    decision = run(wf, [step_obj(wf, "a", "Running", **status)], now=at(now))
    assert calls(decision) == ([expected_call] if expected_call else [])
    assert decision.requeue_after == (timedelta(seconds=requeue) if requeue is not None else None)
    assert decision.steps == ()


def test_exponential_backoff_doubles_the_wait_up_to_the_cap() -> None:
    step = spec_step("a", period=10)
    step["stepTemplate"]["retryPolicy"].update(backoff="Exponential", maxRetryPeriodSeconds=25)
    wf = workflow(step)
    waits = [run(wf, [step_obj(wf, "a", "Running", runRetryCount=n, latestRunRetryAt=ts(0))]).requeue_after
             for n in (1, 2, 3)]
    assert waits == [timedelta(seconds=10), timedelta(seconds=20), timedelta(seconds=25)]


@pytest.mark.parametrize(
    ("sync", "status", "now", "expected_call", "requeue"),
    [
        pytest.param(30, {"latestSyncAt": ts(0)}, 10, None, 20, id="sync-waits-for-its-period"),
        pytest.param(30, {"latestSyncAt": ts(0)}, 30, ("sync", "a", 1), None, id="sync-when-due"),
        pytest.param(30, {}, 0, ("sync", "a", 1), None, id="first-sync-at-once-without-latestSyncAt"),
        pytest.param(0, {"latestSyncAt": ts(0)}, 3600, None, None, id="syncPeriodSeconds-0-never-syncs"),
    ],
)
def test_sync_of_succeeded_steps(sync: int, status: dict[str, Any], now: float,
                                 expected_call: tuple[str, str, int] | None, requeue: float | None) -> None:
    wf = workflow(spec_step("a", sync=sync), spec_step("b", "a", resource_status="Ready"))
    decision = run(wf, [step_obj(wf, "a", "Success", **status), step_obj(wf, "b")], now=at(now))
    assert calls(decision) == ([expected_call] if expected_call else [])
    assert decision.requeue_after == (timedelta(seconds=requeue) if requeue is not None else None)


def test_sync_invocations_of_successive_periods_have_distinct_queue_keys() -> None:
    wf = workflow(spec_step("a", sync=30), spec_step("b", "a", resource_status="Ready"))
    first = run(wf, [step_obj(wf, "a", "Success", latestSyncAt=ts(0)), step_obj(wf, "b")], now=at(30))
    second = run(wf, [step_obj(wf, "a", "Success", latestSyncAt=ts(30)), step_obj(wf, "b")], now=at(60))
    assert first.invocations[0].key != second.invocations[0].key
    assert first.invocations[0].idempotency_key == second.invocations[0].idempotency_key


def test_a_due_call_is_repeated_with_the_same_keys_until_its_outcome_is_written() -> None:
    wf = workflow(spec_step("a"))
    objs = [step_obj(wf, "a", "Running")]
    first, again = run(wf, objs), run(wf, objs, now=at(5))
    assert first.invocations[0].key == again.invocations[0].key
    assert first.invocations[0].idempotency_key == derive_idempotency_key("wf-uid", "a", "run")


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        pytest.param({"a": "Success", "b": "Success", "c": "Success"}, Phase.SUCCESS, id="all-success"),
        pytest.param({"a": "Success", "b": "Running", "c": "Success"}, Phase.RUNNING, id="one-still-running"),
        pytest.param({"a": "Success", "c": "Success"}, Phase.RUNNING, id="a-step-object-is-missing"),
    ],
)
def test_workflow_success(phases: dict[str, str], expected: Phase) -> None:
    wf = workflow(A, B, C)
    decision = run(wf, [step_obj(wf, n, p) for n, p in phases.items()])
    status = decision.workflow
    assert status is not None
    assert status.phase is expected
    if expected is Phase.SUCCESS:
        assert status.finished_at is not None
        assert decision.events[0].reason == "Succeeded"
        assert decision.invocations == ()
