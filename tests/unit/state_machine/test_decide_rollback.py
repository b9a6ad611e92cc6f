"""Table tests: rollback orchestration (reverse dependency order, parallel branches, Pending steps,
rollbackPolicy) and delete = undo (finalizers, terminal workflows)."""

from __future__ import annotations

from typing import Any

import pytest

from reconcilers.state_machine.decision import FinalizerChange
from reconcilers.state_machine.naming import FINALIZER
from reconcilers.state_machine.types import Phase
from tests.unit.state_machine.builders import calls, moved, object_name, run, spec_step, step_obj, workflow

# a -> b -> c (c depends on b, b on a) and an independent branch x -> y.
CHAIN = [spec_step("a"), spec_step("b", "a"), spec_step("c", "b"), spec_step("x"), spec_step("y", "x")]
FAILED_RUN = {"phase": "RollingBack", "failure": "Run", "runError": "boom"}


def _objs(wf: dict[str, Any], phases: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, spec in phases.items():
        status = spec if isinstance(spec, dict) else ({"phase": spec} if spec else {})
        out.append(step_obj(wf, name, **status))
    return out


@pytest.mark.parametrize(
    ("phases", "expected_moves", "expected_calls", "workflow_phase"),
    [
        pytest.param({"a": "Success", "b": FAILED_RUN, "c": None, "x": "Success", "y": "Success"},
                     {"c": "RollBacked", "y": "RollingBack"},
                     [("rollback", "y", 1), ("rollback", "b", 1)], Phase.ROLLING_BACK,
                     id="failure-starts-rollback-leaves-first-pending-without-call"),
        pytest.param({"a": "Success", "b": "RollingBack", "c": "RollBacked", "x": "Success",
                      "y": "RollingBack"},
                     {}, [("rollback", "y", 1), ("rollback", "b", 1)], Phase.ROLLING_BACK,
                     id="upstream-waits-while-its-dependent-rolls-back"),
        pytest.param({"a": "Success", "b": "RollBacked", "c": "RollBacked", "x": "Success",
                      "y": "RollBacked"},
                     {"a": "RollingBack", "x": "RollingBack"},
                     [("rollback", "x", 1), ("rollback", "a", 1)], Phase.ROLLING_BACK,
                     id="independent-branches-roll-back-in-parallel"),
        pytest.param({"a": "Success", "b": FAILED_RUN, "c": None, "x": "Running", "y": None},
                     {"c": "RollBacked", "y": "RollBacked", "x": "RollingBack"},
                     [("rollback", "x", 1), ("rollback", "b", 1)], Phase.ROLLING_BACK,
                     id="running-step-is-rolled-back-too"),
        pytest.param({"a": "RollBacked", "b": "RollBacked", "c": "RollBacked", "x": "RollBacked",
                      "y": "RollBacked"}, {}, [], Phase.ROLLED_BACK, id="all-rolled-back"),
        pytest.param({"a": "RollBacked", "b": "RollBacked", "c": None, "x": "RollBacked", "y": "RollBacked"},
                     {"c": "RollBacked"}, [], Phase.ROLLING_BACK,
                     id="concludes-only-after-its-own-step-writes-are-observed"),
        pytest.param({"a": "Success", "b": "Failed", "c": "RollBacked", "x": "RollBacked", "y": "RollBacked"},
                     {}, [], Phase.FAILED, id="failed-rollback-blocks-upstream-with-PreserveOnFailure"),
    ],
)
def test_rollback_orchestration(phases: dict[str, Any], expected_moves: dict[str, str],
                                expected_calls: list[tuple[str, str, int]], workflow_phase: Phase) -> None:
    wf = workflow(*CHAIN, phase="RollingBack")
    decision = run(wf, _objs(wf, phases))
    assert moved(decision) == expected_moves
    assert calls(decision) == expected_calls
    assert (decision.workflow.phase if decision.workflow else Phase.ROLLING_BACK) is workflow_phase


def test_a_running_workflow_starts_rolling_back_when_a_step_fails_for_good() -> None:
    wf = workflow(*CHAIN)
    decision = run(wf, _objs(wf, {"a": "Success", "b": FAILED_RUN, "c": None, "x": "Success", "y": None}))
    assert decision.workflow is not None
    assert decision.workflow.phase is Phase.ROLLING_BACK
    assert decision.creates == ()  # nothing new is created once rolling back
    assert moved(decision) == {"c": "RollBacked", "x": "RollingBack", "y": "RollBacked"}
    assert (decision.events[0].type, decision.events[0].reason) == ("Warning", "RollingBack")
    assert "b" in decision.events[0].message


def test_a_permanent_sync_failure_rolls_back_in_dependency_order() -> None:
    wf = workflow(spec_step("a", sync=10), spec_step("b", "a"))
    decision = run(wf, _objs(wf, {"a": {"phase": "Success", "failure": "Sync", "syncError": "gone"},
                                  "b": "Success"}))
    assert decision.workflow is not None
    assert decision.workflow.phase is Phase.ROLLING_BACK
    assert moved(decision) == {"b": "RollingBack"}  # a waits for b
    assert calls(decision) == [("rollback", "b", 1)]


@pytest.mark.parametrize(
    ("policy", "step_policy", "expected_moves", "workflow_phase"),
    [
        pytest.param("PreserveOnFailure", None, {}, Phase.FAILED, id="workflow-PreserveOnFailure-blocks"),
        pytest.param("Always", None, {"a": "RollingBack"}, Phase.ROLLING_BACK, id="workflow-Always-goes-on"),
        pytest.param("PreserveOnFailure", "Always", {"a": "RollingBack"}, Phase.ROLLING_BACK,
                     id="step-policy-overrides-the-workflow-one"),
    ],
)
def test_rollback_policy_of_a_failed_rollback(policy: str, step_policy: str | None,
                                              expected_moves: dict[str, str], workflow_phase: Phase) -> None:
    wf = workflow(spec_step("a"), spec_step("b", "a", policy=step_policy), phase="RollingBack", policy=policy)
    decision = run(wf, _objs(wf, {"a": "Success", "b": {"phase": "Failed", "rollbackError": "stuck"}}))
    assert moved(decision) == expected_moves
    assert decision.workflow is not None
    assert decision.workflow.phase is workflow_phase
    if workflow_phase is Phase.FAILED:
        assert decision.workflow.rollback_error == "b: stuck"
        assert [e.reason for e in decision.events][:1] == ["Failed"]


def test_rollback_retry_waits_for_its_period_and_unlimited_attempts_go_on() -> None:
    wf = workflow(spec_step("a", rollback_limit=-1, period=60), phase="RollingBack")
    early = run(wf, _objs(wf, {"a": {"phase": "RollingBack", "rollbackRetryCount": 10,
                                     "latestRollbackRetryAt": "2026-01-01T00:00:00Z"}}))
    assert calls(early) == []
    assert early.requeue_after is not None
    assert early.requeue_after.total_seconds() == 60


# ---------------------------------------------------------------------------------------- deletion


def _release_all(steps: list[str]) -> tuple[FinalizerChange, ...]:
    return (*(FinalizerChange("Step", object_name(s), FINALIZER, add=False) for s in steps),
            FinalizerChange("Workflow", "wf", FINALIZER, add=False))


@pytest.mark.parametrize(
    ("phase", "policy", "phases", "expected_moves", "finalizers", "workflow_phase"),
    [
        pytest.param("Pending", None, {}, {}, _release_all([]), Phase.PENDING, id="never-admitted-just-goes"),
        pytest.param("Running", None, {"a": "Success", "b": "Running"}, {"b": "RollingBack"}, (),
                     Phase.ROLLING_BACK, id="running-workflow-rolls-back"),
        pytest.param("Success", None, {"a": "Success", "b": "Success"}, {"b": "RollingBack"}, (),
                     Phase.SUCCESS,
                     id="terminal-success-undoes-its-steps-and-keeps-its-phase"),
        pytest.param("Success", None, {"a": "RollBacked", "b": "RollBacked"}, {}, _release_all(["a", "b"]),
                     Phase.SUCCESS, id="undone-finalizers-go-steps-first"),
        pytest.param("Failed", "PreserveOnFailure", {"a": "Success", "b": "Failed"}, {}, (), Phase.FAILED,
                     id="PreserveOnFailure-keeps-the-object-for-a-human"),
        pytest.param("Failed", "Always", {"a": "Success", "b": "Failed"}, {"a": "RollingBack"}, (),
                     Phase.FAILED,
                     id="Always-goes-on-undoing-after-a-failed-rollback"),
        pytest.param("Failed", "Always", {"a": "RollBacked", "b": "Failed"}, {}, _release_all(["a", "b"]),
                     Phase.FAILED, id="Always-lets-the-deletion-complete"),
        pytest.param("RollBacked", None, {"a": "RollBacked", "b": "RollBacked"}, {}, _release_all(["a", "b"]),
                     Phase.ROLLED_BACK, id="rolled-back-workflow-goes-at-once"),
    ],
)
def test_delete_is_undo(phase: str, policy: str | None, phases: dict[str, str],
                        expected_moves: dict[str, str],
                        finalizers: tuple[FinalizerChange, ...], workflow_phase: Phase) -> None:
    wf = workflow(spec_step("a"), spec_step("b", "a"), phase=phase, policy=policy, deleting=True)
    decision = run(wf, _objs(wf, phases))
    assert moved(decision) == expected_moves
    assert decision.finalizers == finalizers
    assert decision.creates == ()
    status = decision.workflow
    assert (status.phase if status else workflow_phase) is workflow_phase
    if status is not None and not finalizers and phase != "Pending":
        deleting = status.condition("Deleting")
        assert deleting is not None
        blocked = phase == "Failed" and policy == "PreserveOnFailure"
        assert deleting.reason == ("RollbackFailed" if blocked else "RollingBack")
        if blocked:
            assert "b" in deleting.message
            assert "a" in deleting.message


def test_finalizer_is_added_while_running_and_never_while_deleting() -> None:
    running = workflow(spec_step("a"), finalizers=False)
    assert run(running, []).finalizers == (FinalizerChange("Workflow", "wf", FINALIZER, add=True),)
    deleting = workflow(spec_step("a"), finalizers=False, deleting=True)
    assert all(not f.add for f in run(deleting, [step_obj(deleting, "a", "Running")]).finalizers)
