"""Table tests: what the CRD cannot check puts the workflow in a terminal phase with a condition and a
Warning Event naming the problem; a valid Pending workflow waits for admission."""

from __future__ import annotations

from typing import Any

import pytest

from reconcilers.state_machine.config import EngineConfig
from reconcilers.state_machine.decision import CallbackType, FinalizerChange
from reconcilers.state_machine.naming import FINALIZER
from reconcilers.state_machine.types import Phase
from tests.unit.state_machine.builders import run, spec_step, workflow

TYPES = EngineConfig(step_types=frozenset({"empty", "random"}))


@pytest.mark.parametrize(
    ("steps", "reason", "message"),
    [
        pytest.param([spec_step("a", "c"), spec_step("b", "a"), spec_step("c", "b")], "Cycle",
                     "the dependOns form a cycle: a -> c -> b -> a", id="cycle"),
        pytest.param([spec_step("a"), spec_step("b", type_="teleport")], "UnknownStepType",
                     'step type "teleport" (used by b) is not installed; known types: empty, random',
                     id="unknown-step-type"),
        pytest.param([spec_step("a", "nope")], "UnknownDependOn",
                     'step "a" depends on "nope", which is not a step of this workflow',
                     id="unknown-dependOn"),
        pytest.param([spec_step("a"), spec_step("a")], "DuplicateStepName",
                     "step names used more than once: a", id="duplicate-step-name"),
        pytest.param([spec_step("a", "a")], "SelfDependency", 'step "a" depends on itself',
                     id="self-dependency"),
    ],
)
@pytest.mark.parametrize("phase", ["Pending", "Running"])
def test_bad_input_fails_the_workflow_with_a_condition_and_an_event(
    steps: list[dict[str, Any]], reason: str, message: str, phase: str
) -> None:
    decision = run(workflow(*steps, phase=phase), [], config=TYPES)
    status = decision.workflow
    assert status is not None
    assert status.phase is Phase.FAILED
    assert status.finished_at is not None
    condition = status.condition("SpecValid")
    assert condition is not None
    assert (condition.status, condition.reason, condition.message) == ("False", reason, message)
    assert (decision.events[0].type, decision.events[0].reason, decision.events[0].message) == (
        "Warning", reason, message)
    assert decision.creates == ()
    assert decision.invocations == ()
    assert [c.type for c in decision.callbacks] == (
        [CallbackType.WORKFLOW_STARTED, CallbackType.WORKFLOW_FAILED] if phase == "Running"
        else [CallbackType.WORKFLOW_FAILED])


def test_a_failed_invalid_workflow_stays_failed_and_its_deletion_completes() -> None:
    wf = workflow(spec_step("a", "a"), phase="Failed")
    assert run(wf, []).is_noop
    deleting = workflow(spec_step("a", "a"), phase="Failed", deleting=True)
    assert run(deleting, []).finalizers == (FinalizerChange("Workflow", "wf", FINALIZER, add=False),)


def test_a_valid_pending_workflow_waits_for_admission() -> None:
    wf = workflow(spec_step("a"), spec_step("b", "a"), phase=None, finalizers=False)
    decision = run(wf, [], config=TYPES)
    status = decision.workflow
    assert status is not None
    assert status.phase is Phase.PENDING
    assert status.step_phases["Pending"] == 2
    valid = status.condition("SpecValid")
    assert valid is not None
    assert valid.status == "True"
    assert decision.finalizers == (FinalizerChange("Workflow", "wf", FINALIZER, add=True),)
    assert [e.reason for e in decision.events] == ["Queued"]
    assert decision.creates == ()  # steps are created once admitted
    # Recorded: the next reconcile has nothing to do.
    wf["status"] = status.to_status()
    wf["metadata"]["finalizers"] = [FINALIZER]
    assert run(wf, [], config=TYPES).is_noop


def test_the_graph_analysis_is_kept_on_the_spec_and_is_invisible_to_equality() -> None:
    from reconcilers.state_machine.dag import topological_order, validate
    from reconcilers.state_machine.types import WorkflowSpec

    raw = {"steps": [{"name": "b", "stepTemplate": {"type": "empty"}, "dependOns": [{"name": "a"}]},
                     {"name": "a", "stepTemplate": {"type": "empty"}}]}
    spec, twin = WorkflowSpec.from_dict(raw), WorkflowSpec.from_dict(raw)
    assert topological_order(spec) == ("a", "b")
    assert topological_order(spec) is topological_order(spec)      # worked out once
    assert validate(spec, frozenset({"empty"})) == ()
    assert validate(spec, frozenset()) != ()                        # a memo per step type set
    assert spec == twin
    assert repr(spec) == repr(twin)
