"""Table tests: admission (Pending -> Running) by FIFO and FAIR, counting only active workflows."""

from __future__ import annotations

from datetime import datetime

import pytest

from reconcilers.state_machine.admission import Candidate, admit, start
from reconcilers.state_machine.config import EngineConfig, QueueStrategy
from reconcilers.state_machine.types import Phase
from tests.unit.state_machine.builders import NOW, at, spec_step, workflow

FIFO = EngineConfig(queue_strategy=QueueStrategy.FIFO, max_running_count=3)
FAIR = EngineConfig(queue_strategy=QueueStrategy.FAIR, max_running_count=3)


def c(
    name: str,
    queue: str,
    phase: Phase = Phase.PENDING,
    created: float = 0,
    started: float | None = None,
    deleting: bool = False,
) -> Candidate:
    return Candidate(
        "ns", name, queue, phase, at(created), at(started) if started is not None else None, deleting
    )


@pytest.mark.parametrize(
    ("config", "workflows", "admitted"),
    [
        pytest.param(
            FIFO,
            [c("new", "a", created=2), c("old", "b", created=1)],
            ["old", "new"],
            id="fifo-oldest-first-across-queues",
        ),
        pytest.param(
            FIFO,
            [c(f"p{i}", "a", created=i) for i in range(5)],
            ["p0", "p1", "p2"],
            id="fifo-up-to-maxRunningCount",
        ),
        pytest.param(
            FIFO,
            [
                c("r1", "a", Phase.RUNNING),
                c("r2", "a", Phase.ROLLING_BACK),
                c("p", "a", created=1),
                c("q", "a", created=2),
            ],
            ["p"],
            id="running-and-rolling-back-hold-slots",
        ),
        pytest.param(
            FIFO,
            [c("gone", "a", deleting=True), c("p", "a", created=1)],
            ["p"],
            id="a-deleted-pending-workflow-is-not-admitted",
        ),
        pytest.param(
            FAIR,
            [c("r1", "a", Phase.RUNNING, started=0), c("a1", "a", created=1), c("b1", "b", created=5)],
            ["b1", "a1"],
            id="fair-queue-with-fewest-active-first",
        ),
        pytest.param(
            FAIR,
            [
                c("a1", "a", created=1),
                c("a2", "a", created=2),
                c("b1", "b", created=3),
                c("b2", "b", created=4),
            ],
            ["a1", "b1", "a2"],
            id="fair-alternates-between-queues",
        ),
        pytest.param(
            FAIR,
            [
                c("a-done", "a", Phase.SUCCESS, started=5),
                c("b-done", "b", Phase.SUCCESS, started=1),
                c("a1", "a", created=1),
                c("b1", "b", created=2),
            ],
            ["b1", "a1"],
            id="fair-tie-goes-to-the-queue-admitted-least-recently",
        ),
    ],
)
def test_admission(config: EngineConfig, workflows: list[Candidate], admitted: list[str]) -> None:
    assert [w.name for w in admit(workflows, config)] == admitted


def test_start_moves_pending_to_running_once() -> None:
    wf = workflow(spec_step("a"), phase="Pending")
    decision = start(wf, NOW)
    assert decision.workflow is not None
    assert (decision.workflow.phase, decision.workflow.started_at) == (Phase.RUNNING, NOW)
    assert [e.reason for e in decision.events] == ["Started"]
    wf["status"] = decision.workflow.to_status()
    assert start(wf, NOW).is_noop


def test_start_records_spec_valid_and_never_admits_a_cycle() -> None:
    wf = workflow(spec_step("a"), phase=None)  # admitted before its Pending status was written
    decision = start(wf, NOW)
    assert decision.workflow is not None
    valid = decision.workflow.condition("SpecValid")
    assert valid is not None
    assert valid.status == "True"
    cyclic = workflow(spec_step("a", "b"), spec_step("b", "a"), phase="Pending")
    assert start(cyclic, NOW).is_noop  # left for the reconciler, which rejects it


def test_candidate_from_a_workflow_object() -> None:
    cand = Candidate.from_workflow(
        workflow(spec_step("a"), phase="Pending", created=datetime(2025, 5, 1, tzinfo=NOW.tzinfo))
    )
    assert (cand.key, cand.queue, cand.phase, cand.created_at.year) == (
        "ns/wf",
        "default",
        Phase.PENDING,
        2025,
    )
