"""Table tests: the step worker's transitions (run, rollback and sync outcomes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from reconcilers.state_machine.outcomes import (
    ErrorKind,
    rollback_failed,
    rollback_succeeded,
    run_failed,
    run_succeeded,
    sync_failed,
    sync_succeeded,
)
from reconcilers.state_machine.schedule import next_call
from reconcilers.state_machine.types import Failure, Phase, Resource, RetryPolicy, StepStatus, StepTemplate
from tests.unit.state_machine.builders import NOW

TEMPLATE = StepTemplate("empty", retry_policy=RetryPolicy(run_retry_limit=3, rollback_retry_limit=2))
UNLIMITED = StepTemplate("empty", retry_policy=RetryPolicy(rollback_retry_limit=0))

Outcome = Callable[[StepStatus], StepStatus]


@pytest.mark.parametrize(
    ("before", "outcome", "phase", "count", "failure"),
    [
        pytest.param(
            StepStatus(Phase.RUNNING),
            lambda s: run_succeeded(s, NOW),
            Phase.SUCCESS,
            0,
            None,
            id="run-ok-succeeds",
        ),
        pytest.param(
            StepStatus(Phase.RUNNING),
            lambda s: run_failed(s, TEMPLATE, ErrorKind.RETRYABLE, "e", NOW),
            Phase.RUNNING,
            1,
            None,
            id="run-retryable-uses-an-attempt",
        ),
        pytest.param(
            StepStatus(Phase.RUNNING, run_retry_count=2),
            lambda s: run_failed(s, TEMPLATE, ErrorKind.RETRYABLE, "e", NOW),
            Phase.ROLLING_BACK,
            3,
            Failure.RUN,
            id="run-attempts-exhausted-rolls-back",
        ),
        pytest.param(
            StepStatus(Phase.RUNNING),
            lambda s: run_failed(s, TEMPLATE, ErrorKind.PERMANENT, "e", NOW),
            Phase.ROLLING_BACK,
            1,
            Failure.RUN,
            id="run-permanent-rolls-back",
        ),
        pytest.param(
            StepStatus(Phase.RUNNING, run_retry_count=2),
            lambda s: run_failed(s, TEMPLATE, ErrorKind.IGNORABLE, "throttled", NOW),
            Phase.RUNNING,
            2,
            None,
            id="run-ignorable-uses-no-attempt",
        ),
        pytest.param(
            StepStatus(Phase.ROLLING_BACK),
            lambda s: run_succeeded(s, NOW),
            Phase.ROLLING_BACK,
            0,
            None,
            id="late-run-outcome-never-moves-the-phase-back",
        ),
        pytest.param(
            StepStatus(Phase.ROLLING_BACK),
            lambda s: rollback_succeeded(s, NOW),
            Phase.ROLLED_BACK,
            0,
            None,
            id="rollback-ok",
        ),
        pytest.param(
            StepStatus(Phase.ROLLING_BACK, rollback_retry_count=1),
            lambda s: rollback_failed(s, TEMPLATE, ErrorKind.RETRYABLE, "e", NOW),
            Phase.FAILED,
            2,
            None,
            id="rollback-attempts-exhausted-fails",
        ),
        pytest.param(
            StepStatus(Phase.ROLLING_BACK, rollback_retry_count=50),
            lambda s: rollback_failed(s, UNLIMITED, ErrorKind.RETRYABLE, "e", NOW),
            Phase.ROLLING_BACK,
            51,
            None,
            id="rollback-limit-0-is-unlimited",
        ),
        pytest.param(
            StepStatus(Phase.ROLLING_BACK),
            lambda s: rollback_failed(s, UNLIMITED, ErrorKind.PERMANENT, "e", NOW),
            Phase.FAILED,
            1,
            None,
            id="rollback-permanent-fails",
        ),
        pytest.param(
            StepStatus(Phase.SUCCESS),
            lambda s: sync_failed(s, ErrorKind.RETRYABLE, "e", NOW),
            Phase.SUCCESS,
            0,
            None,
            id="sync-retryable-keeps-the-step",
        ),
        pytest.param(
            StepStatus(Phase.SUCCESS),
            lambda s: sync_failed(s, ErrorKind.PERMANENT, "e", NOW),
            Phase.SUCCESS,
            0,
            Failure.SYNC,
            id="sync-permanent-marks-the-failure-for-the-reconciler",
        ),
    ],
)
def test_outcomes(
    before: StepStatus, outcome: Outcome, phase: Phase, count: int, failure: Failure | None
) -> None:
    after = outcome(before)
    assert after.phase is phase
    assert max(after.run_retry_count, after.rollback_retry_count) == count
    assert after.failure is failure


def test_run_success_records_resource_attributes_and_starts_the_sync_clock() -> None:
    before = StepStatus(Phase.RUNNING, run_error="old", attributes={"keep": "1"})  # type: ignore[arg-type]
    after = run_succeeded(
        before, NOW, resource=Resource(status="Ready", id="i-1"), attributes={"ip": "10.0.0.1"}
    )
    assert (after.phase, after.run_error, after.latest_sync_at) == (Phase.SUCCESS, "", NOW)
    assert after.resource.id == "i-1"
    assert dict(after.attributes) == {"keep": "1", "ip": "10.0.0.1"}


def test_an_error_delay_hint_holds_the_next_attempt_back_beyond_the_retry_period() -> None:
    template = StepTemplate("empty", retry_policy=RetryPolicy(run_retry_period_seconds=10))
    after = run_failed(
        StepStatus(Phase.RUNNING), template, ErrorKind.RETRYABLE, "429", NOW, delay=timedelta(minutes=5)
    )
    assert after.retry_not_before == NOW + timedelta(minutes=5)
    call = next_call(template, after)
    assert call is not None
    assert (call.attempt, call.due_at) == (2, NOW + timedelta(minutes=5))
    short = run_failed(
        StepStatus(Phase.RUNNING), template, ErrorKind.RETRYABLE, "x", NOW, delay=timedelta(seconds=1)
    )
    call = next_call(template, short)
    assert call is not None
    assert call.due_at == NOW + timedelta(seconds=10)  # the retry period stays the floor
    assert run_succeeded(after.with_(run_retry_count=1), NOW).retry_not_before is None


def test_sync_success_updates_the_resource() -> None:
    after = sync_succeeded(StepStatus(Phase.SUCCESS, sync_error="x"), NOW, resource=Resource(status="Ready"))
    assert (after.resource.status, after.sync_error, after.latest_sync_at) == ("Ready", "", NOW)
