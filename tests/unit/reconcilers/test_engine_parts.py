"""Unit tests of the engine's pure parts: expectations, merge patches, outcome mapping, settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from informers import FakeClock, Indexer
from reconcilers.expectations import Expectations
from reconcilers.fresh import FreshCache
from reconcilers.kube import merge_patch
from reconcilers.settings import EngineSettings, StepLimits
from reconcilers.state_machine.decision import CallKind, Invocation
from reconcilers.state_machine.types import Failure, Phase, Resource, Step, StepStatus, StepTemplate
from reconcilers.steps import CallOutcome, StepExecutor, _apply_outcome, _TypeQueue
from reconcilers.workflow import owned_by, owner_key
from stepkit import IgnorableError, PermanentError, ResourceStatus, RetryableError, StepResult

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

# ------------------------------------------------------------------------------------ expectations


@pytest.mark.parametrize(("wrote", "cached", "stale"), [
    pytest.param("10", "9", True, id="older-is-stale"),
    pytest.param("10", "10", False, id="same-is-fresh"),
    pytest.param("10", "11", False, id="newer-is-fresh"),
    pytest.param("abc", "abd", True, id="non-numeric-other-is-stale"),
    pytest.param("abc", "abc", False, id="non-numeric-equal-is-fresh"),
])
def test_a_write_holds_back_older_cached_copies(wrote: str, cached: str, stale: bool) -> None:
    exp = Expectations()
    exp.wrote("Step/ns/a", wrote)
    assert exp.is_stale("Step/ns/a", cached) is stale
    assert not exp.is_stale("Step/ns/other", "1")


def test_a_met_expectation_is_dropped() -> None:
    exp = Expectations()
    exp.wrote("k", "10")
    assert not exp.is_stale("k", "10")
    assert not exp.expects("k")
    assert not exp.is_stale("k", "3")  # nothing held any more: a relist may show anything


@pytest.mark.parametrize(("conflicted", "cached", "stale"), [
    pytest.param("10", "10", True, id="same-as-conflicted-is-stale"),
    pytest.param("10", "11", False, id="newer-is-fresh"),
    pytest.param("x", "x", True, id="non-numeric-same-is-stale"),
    pytest.param("x", "y", False, id="non-numeric-other-is-fresh"),
])
def test_a_conflict_holds_back_the_copy_it_was_written_against(conflicted: str, cached: str,
                                                                stale: bool) -> None:
    exp = Expectations()
    exp.conflicted("k", conflicted)
    assert exp.is_stale("k", cached) is stale


def test_the_stronger_expectation_wins() -> None:
    exp = Expectations()
    exp.wrote("k", "20")
    exp.conflicted("k", "10")  # weaker: needs > 10, while 20 is already required
    assert exp.is_stale("k", "15")
    assert not exp.is_stale("k", "20")


def test_expectations_expire() -> None:
    clock = FakeClock()
    exp = Expectations(ttl=30, timer=clock.now)
    exp.wrote("k", "10")
    clock.advance(31)
    assert not exp.is_stale("k", "1")


# ------------------------------------------------------------------------------------ merge patch


def test_merge_patch_sends_changes_and_nulls_dropped_keys() -> None:
    old = {"phase": "Running", "runError": "boom", "resource": {"id": "1", "status": "Creating"},
           "attributes": {"a": "1", "b": "2"}}
    new = {"phase": "Success", "resource": {"id": "1", "status": "Ready"}, "attributes": {"a": "1"},
           "latestSyncAt": "t"}
    assert merge_patch(old, new) == {"phase": "Success", "runError": None, "resource": {"status": "Ready"},
                                     "attributes": {"b": None}, "latestSyncAt": "t"}
    assert merge_patch(new, new) == {}


def test_merge_patch_replaces_lists_whole() -> None:
    assert merge_patch({"pending": [1, 2]}, {"pending": [2]}) == {"pending": [2]}


# ------------------------------------------------------------------------------------ outcomes

TEMPLATE = StepTemplate.from_dict({"type": "fail", "retryPolicy": {"runRetryLimit": 3,
                                                                   "rollbackRetryLimit": 2}})


def _step(phase: Phase, **status: object) -> Step:
    return Step("wf-s-0123456789", TEMPLATE, StepStatus(phase=phase).with_(**status), resource_version="5")


def _inv(kind: CallKind, attempt: int = 1) -> Invocation:
    return Invocation(kind, "s", "wf-s-0123456789", attempt, "key")


def test_a_successful_run_records_resource_and_attributes() -> None:
    result = StepResult(attributes={"k": "v"}, resource=ResourceStatus(id="r-1", status="Ready"))
    new = _apply_outcome(_step(Phase.RUNNING), _inv(CallKind.RUN), CallOutcome(result=result), NOW)
    assert new.phase is Phase.SUCCESS
    assert new.resource == Resource(status="Ready", id="r-1")
    assert dict(new.attributes) == {"k": "v"}


def test_a_failed_run_keeps_its_partial_result_and_counts_an_attempt() -> None:
    partial = StepResult(resource=ResourceStatus(id="half"))
    error = RetryableError("later", code="HTTP503", delay=5, result=partial)
    new = _apply_outcome(_step(Phase.RUNNING), _inv(CallKind.RUN), CallOutcome(error=error), NOW)
    assert new.phase is Phase.RUNNING
    assert new.run_retry_count == 1
    assert new.resource.id == "half"
    assert new.run_error == "HTTP503: later"
    assert new.retry_not_before == NOW + timedelta(seconds=5)


def test_an_ignorable_error_uses_no_attempt_and_a_permanent_one_rolls_back() -> None:
    ignored = _apply_outcome(_step(Phase.RUNNING), _inv(CallKind.RUN),
                             CallOutcome(error=IgnorableError("throttled")), NOW)
    assert (ignored.phase, ignored.run_retry_count) == (Phase.RUNNING, 0)
    failed = _apply_outcome(_step(Phase.RUNNING), _inv(CallKind.RUN),
                            CallOutcome(error=PermanentError("no")), NOW)
    assert (failed.phase, failed.failure) == (Phase.ROLLING_BACK, Failure.RUN)


def test_a_late_run_result_never_moves_a_rolling_back_step_back() -> None:
    new = _apply_outcome(_step(Phase.ROLLING_BACK), _inv(CallKind.RUN),
                         CallOutcome(result=StepResult(resource=ResourceStatus(id="made"))), NOW)
    assert new.phase is Phase.ROLLING_BACK
    assert new.resource.id == "made"  # recorded, so the rollback can find it


def test_rollback_outcomes() -> None:
    done = _apply_outcome(_step(Phase.ROLLING_BACK), _inv(CallKind.ROLLBACK), CallOutcome(), NOW)
    assert done.phase is Phase.ROLLED_BACK
    exhausted = _apply_outcome(_step(Phase.ROLLING_BACK, rollback_retry_count=1), _inv(CallKind.ROLLBACK, 2),
                               CallOutcome(error=RetryableError("again")), NOW)
    assert exhausted.phase is Phase.FAILED


def test_a_permanent_sync_error_marks_the_step_for_rollback() -> None:
    new = _apply_outcome(_step(Phase.SUCCESS), _inv(CallKind.SYNC), CallOutcome(error=PermanentError("gone")),
                         NOW)
    assert (new.phase, new.failure) == (Phase.SUCCESS, Failure.SYNC)


@pytest.mark.parametrize(("outcome", "label"), [
    (CallOutcome(), "success"),
    (CallOutcome(error=RetryableError("x")), "retryable"),
    (CallOutcome(error=PermanentError("x")), "permanent"),
    (CallOutcome(error=IgnorableError("x")), "ignorable"),
    (CallOutcome(error=RetryableError("x"), timed_out=True), "timeout"),
])
def test_call_outcome_labels(outcome: CallOutcome, label: str) -> None:
    assert outcome.label == label


# ------------------------------------------------------------------------------------ misc


def test_step_limits_and_call_deadlines() -> None:
    s = EngineSettings(rpc_timeout=5.0, call_timeout=600.0,
                       step_limits={"fast": StepLimits(qps=2.5, concurrency=1, call_timeout=1.0)})
    assert s.limits("fast").burst == 3
    assert s.limits("other") == StepLimits()
    assert s.deadline_seconds("fast") == 1.0
    assert s.deadline_seconds("other") == 600.0
    assert EngineSettings(rpc_timeout=900.0).deadline_seconds("other") == 900.0
    with pytest.raises(TypeError):
        s.step_limits["x"] = StepLimits()  # type: ignore[index]


def test_a_step_belongs_to_its_controlling_workflow_incarnation() -> None:
    ref = {"kind": "Workflow", "name": "wf", "uid": "u1", "controller": True}
    step = {"metadata": {"namespace": "ns", "name": "wf-a-1", "labels": {"workflow": "wf"},
                         "ownerReferences": [ref]}}
    assert owner_key(step) == "ns/wf"
    assert owned_by(step, "u1")
    assert not owned_by(step, "u2")
    assert owner_key({"metadata": {"namespace": "ns", "name": "x", "labels": {"workflow": "w"}}}) == "ns/w"
    assert owner_key({"metadata": {"namespace": "ns", "name": "x"}}) is None


# ------------------------------------------------------------------------------------ step tokens


def test_a_key_without_a_token_waits_with_a_reservation_and_redeems_it() -> None:
    clock = FakeClock()
    none: Any = None
    executor = StepExecutor(kube=none, registry=none, workflows=none, steps=none,
                            expectations=Expectations(), settings=EngineSettings(), now=lambda: NOW,
                            clock=clock, metrics=none, fresh_workflows=FreshCache(Indexer()),
                            fresh_steps=FreshCache(Indexer()))
    tq = _TypeQueue("fail", qps=2.0, burst=2, concurrency=1, clock=clock, metrics=None)
    try:
        assert executor._token(tq, "ns/a")
        assert executor._token(tq, "ns/b")
        assert not executor._token(tq, "ns/c")  # the bucket is empty: c waits 0.5 s for its token
        assert tq.reservations == {"ns/c": clock.now() + 0.5}
        assert tq.queue.waiting() == 1
        assert not executor._token(tq, "ns/c")  # woken early: still not its time, no second token
        clock.advance(0.5)
        assert executor._token(tq, "ns/c")
        assert tq.reservations == {}
        assert not executor._token(tq, "ns/d")  # c's token was the one refilled meanwhile
    finally:
        tq.queue.shutdown()
