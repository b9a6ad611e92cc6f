"""Table tests: the workflow's status (stepPhases, attribute merge, errors) and the callback outbox."""

from __future__ import annotations

from typing import Any

import pytest

from reconcilers.state_machine.config import EngineConfig
from reconcilers.state_machine.decision import CallbackType
from tests.unit.state_machine.builders import run, spec_step, step_obj, workflow


@pytest.mark.parametrize(
    ("steps", "attributes", "expected"),
    [
        pytest.param([spec_step("b", "a"), spec_step("a")], {"a": {"k": "from-a"}, "b": {"k": "from-b"}},
                     {"k": "from-b"}, id="dependent-wins-even-when-listed-first"),
        pytest.param([spec_step("a"), spec_step("c")], {"a": {"k": "a", "x": "1"}, "c": {"k": "c"}},
                     {"k": "c", "x": "1"}, id="independent-steps-later-in-the-spec-wins"),
        pytest.param([spec_step("a"), spec_step("b", "a"), spec_step("c", "b")],
                     {"a": {"k": "a"}, "c": {"k": "c"}, "b": {"k": "b", "y": "2"}}, {"k": "c", "y": "2"},
                     id="chain-last-wins"),
    ],
)
def test_attribute_merge_later_in_topological_order_wins(
    steps: list[dict[str, Any]], attributes: dict[str, dict[str, str]], expected: dict[str, str]
) -> None:
    wf = workflow(*steps)
    objs = [step_obj(wf, name, "Success", attributes=attrs) for name, attrs in attributes.items()]
    status = run(wf, objs).workflow
    assert status is not None
    assert dict(status.attributes) == expected


def test_step_phases_and_errors_are_aggregated_in_topological_order() -> None:
    wf = workflow(spec_step("b", "a"), spec_step("a"), spec_step("c"))
    objs = [step_obj(wf, "a", "Success", syncError="slow"), step_obj(wf, "b", "Running", runError="retry me"),
            step_obj(wf, "c", "Running", runError="flaky")]
    status = run(wf, objs).workflow
    assert status is not None
    assert dict(status.step_phases) == {"Pending": 0, "Running": 2, "Success": 1, "RollingBack": 0,
                                        "RollBacked": 0, "Failed": 0}
    assert status.run_error == "b: retry me; c: flaky"
    assert status.sync_error == "a: slow"
    assert status.observed_generation == 1


def _loop(wf: dict[str, Any], objs: list[dict[str, Any]], times: int) -> list[CallbackType]:
    """Reconcile ``times`` times, writing the status back each time; every callback emitted."""
    emitted: list[CallbackType] = []
    for _ in range(times):
        decision = run(wf, objs)
        emitted += [c.type for c in decision.callbacks]
        if decision.workflow is not None:
            wf["status"] = decision.workflow.to_status()
    return emitted


@pytest.mark.parametrize(
    ("phase", "phases", "expected"),
    [
        pytest.param("Running", {"a": "Running", "b": None}, [CallbackType.WORKFLOW_STARTED],
                     id="started-once"),
        pytest.param("Running", {"a": "Success", "b": "Running"},
                     [CallbackType.WORKFLOW_STARTED, CallbackType.STEP_SUCCEEDED], id="step-succeeded-once"),
        pytest.param("Running", {"a": "Success", "b": "Success"},
                     [CallbackType.WORKFLOW_STARTED, CallbackType.STEP_SUCCEEDED, CallbackType.STEP_SUCCEEDED,
                      CallbackType.WORKFLOW_SUCCEEDED], id="workflow-succeeded-once"),
        pytest.param("RollingBack", {"a": "RollBacked", "b": {"phase": "RollBacked", "failure": "Run"}},
                     [CallbackType.WORKFLOW_STARTED, CallbackType.STEP_FAILED,
                      CallbackType.WORKFLOW_ROLLING_BACK,
                      CallbackType.WORKFLOW_ROLLED_BACK], id="rolled-back-once"),
        pytest.param("RollingBack", {"a": "Success", "b": {"phase": "Failed", "failure": "Run"}},
                     [CallbackType.WORKFLOW_STARTED, CallbackType.STEP_SUCCEEDED, CallbackType.STEP_FAILED,
                      CallbackType.STEP_ROLLBACK_FAILED,
                      CallbackType.WORKFLOW_ROLLING_BACK, CallbackType.WORKFLOW_FAILED], id="failed-once"),
    ],
)
def test_each_callback_is_emitted_once_however_many_reconciles(phase: str, phases: dict[str, Any],
                                                             expected: list[CallbackType]) -> None:
    wf = workflow(spec_step("a"), spec_step("b", "a"), phase=phase)
    objs = [step_obj(wf, n, **(p if isinstance(p, dict) else {"phase": p} if p else {}))
            for n, p in phases.items()]
    assert _loop(wf, objs, times=4) == expected
    assert len(wf["status"]["callbacks"]["pending"]) == len(expected)
    assert len(set(wf["status"]["callbacks"]["emitted"])) == len(expected)


def test_callback_event_ids_and_payload() -> None:
    wf = workflow(spec_step("a"), spec_step("b", "a"))
    decision = run(wf, [step_obj(wf, "a", "Success", attributes={"ip": "10.0.0.1"}),
                        step_obj(wf, "b", "Running")])
    started, succeeded = decision.callbacks
    assert started.id == "wf-uid:WorkflowStarted"
    assert succeeded.id == "wf-uid:StepSucceeded:a"
    assert dict(succeeded.payload) == {
        "id": "wf-uid:StepSucceeded:a", "type": "StepSucceeded", "timestamp": "2026-01-01T00:00:00Z",
        "name": "wf", "namespace": "ns", "uid": "wf-uid", "phase": "Running",
        "attributes": {"ip": "10.0.0.1"},
        "runError": "", "rollbackError": "", "syncError": "", "step": "a", "stepPhase": "Success",
    }
    assert [e.reason for e in decision.events if e.reason == "StepSucceeded"] == ["StepSucceeded"]


def test_without_a_callback_url_only_ids_that_post_an_event_are_recorded() -> None:
    wf = workflow(spec_step("a"), spec_step("b"), callback=False)
    decision = run(wf, [step_obj(wf, "a", "Success"), step_obj(wf, "b", "RollingBack", failure="Run")])
    assert decision.callbacks == ()
    status = decision.workflow
    assert status is not None
    assert status.callbacks.pending == ()
    # Nobody consumes WorkflowStarted / StepSucceeded ids without a callback URL: recording them would
    # cost a status write of its own. A step failing for good posts a Warning Event, once: its id is kept.
    assert status.callbacks.emitted == ("wf-uid:StepFailed:b",)
    assert [e.reason for e in decision.events if e.reason == "StepFailed"] == ["StepFailed"]


def test_without_a_callback_url_step_events_record_successes_too() -> None:
    wf = workflow(spec_step("a"), callback=False)
    decision = run(wf, [step_obj(wf, "a", "Success")], config=EngineConfig(step_events=True))
    assert decision.workflow is not None
    assert decision.workflow.callbacks.emitted == ("wf-uid:StepSucceeded:a",)
    assert [e.reason for e in decision.events if e.reason == "StepSucceeded"] == ["StepSucceeded"]


def test_a_delivered_callback_leaves_the_outbox_and_is_not_emitted_again() -> None:
    wf = workflow(spec_step("a"))
    status = run(wf, [step_obj(wf, "a", "Running")]).workflow
    assert status is not None
    delivered = status.with_(callbacks=status.callbacks.with_delivered(frozenset({"wf-uid:WorkflowStarted"})))
    wf["status"] = delivered.to_status()
    assert wf["status"]["callbacks"] == {"emitted": ["wf-uid:WorkflowStarted"]}
    assert run(wf, [step_obj(wf, "a", "Running")]).callbacks == ()


def test_a_terminal_workflow_is_left_alone() -> None:
    wf = workflow(spec_step("a"), phase="Success")
    assert run(wf, [step_obj(wf, "a", "Success", syncError="x")]).is_noop
