"""Each defect of the original (DESIGN.md §6) that concerns the state machine, as a test that fails on
the original's behaviour."""

from __future__ import annotations

from reconcilers.state_machine.admission import Candidate, admit
from reconcilers.state_machine.config import EngineConfig, QueueStrategy
from reconcilers.state_machine.decision import CallbackType
from reconcilers.state_machine.naming import step_object_name
from reconcilers.state_machine.types import Phase
from tests.unit.state_machine.builders import at, run, spec_step, step_obj, workflow


def test_fair_admission_is_reachable_and_differs_from_fifo() -> None:
    """The original tested ``strategy == FIFO`` twice, so FAIR behaved as FIFO. Queue ``busy`` has two
    active workflows and the oldest pending one; FAIR must prefer queue ``idle``."""
    workflows = [
        Candidate("ns", "busy-1", "busy", Phase.RUNNING, at(0), at(0)),
        Candidate("ns", "busy-2", "busy", Phase.RUNNING, at(0), at(0)),
        Candidate("ns", "busy-3", "busy", Phase.PENDING, at(1)),
        Candidate("ns", "idle-1", "idle", Phase.PENDING, at(2)),
    ]
    fifo = admit(workflows, EngineConfig(queue_strategy=QueueStrategy.FIFO, max_running_count=3))
    fair = admit(workflows, EngineConfig(queue_strategy=QueueStrategy.FAIR, max_running_count=3))
    assert [w.name for w in fifo] == ["busy-3"]
    assert [w.name for w in fair] == ["idle-1"]


def test_finished_workflows_do_not_count_towards_max_running_count() -> None:
    """The original counted every workflow, so admission stopped for good after 100 of them existed."""
    finished = [Candidate("ns", f"done-{i}", "default", phase, at(0), at(0))
                for i, phase in enumerate([Phase.SUCCESS, Phase.ROLLED_BACK, Phase.FAILED] * 40)]
    pending = Candidate("ns", "new", "default", Phase.PENDING, at(1))
    assert admit([*finished, pending], EngineConfig(max_running_count=100)) == (pending,)


def _reconcile(wf: dict[str, object], objs: list[dict[str, object]], times: int) -> list[CallbackType]:
    emitted: list[CallbackType] = []
    for i in range(times):
        decision = run(wf, objs, now=at(10 * i))  # the original's 10 s resync
        emitted += [c.type for c in decision.callbacks]
        if decision.workflow is not None:
            wf["status"] = decision.workflow.to_status()
    return emitted


def test_start_callback_fires_once_not_every_resync() -> None:
    wf = workflow(spec_step("a", period=3600))
    objs = [step_obj(wf, "a", "Running", runRetryCount=1, latestRunRetryAt="2026-01-01T00:00:00Z")]
    assert _reconcile(wf, objs, times=6) == [CallbackType.WORKFLOW_STARTED]


def test_no_change_callback_on_a_reconcile_that_changes_nothing() -> None:
    wf = workflow(spec_step("a"), spec_step("b", "a"))
    objs = [step_obj(wf, "a", "Success"), step_obj(wf, "b", "Running")]
    _reconcile(wf, objs, times=1)
    again = run(wf, objs)
    assert again.callbacks == ()
    assert again.workflow is None  # not even a status write


def test_unknown_depend_on_fails_the_workflow_instead_of_hanging() -> None:
    wf = workflow(spec_step("a"), spec_step("b", "a"), spec_step("c", "does-not-exist"))
    decision = run(wf, [])
    assert decision.workflow is not None
    assert decision.workflow.phase is Phase.FAILED
    condition = decision.workflow.condition("SpecValid")
    assert condition is not None
    assert condition.reason == "UnknownDependOn"
    assert '"does-not-exist"' in condition.message
    assert decision.creates == ()


def test_step_names_do_not_collide() -> None:
    """The original's ``<workflow>-<step>`` made workflow a-b/step c and workflow a/step b-c one object."""
    assert step_object_name("a-b", "c") != step_object_name("a", "b-c")
    assert step_object_name("a-b", "c").startswith("a-b-c-")
