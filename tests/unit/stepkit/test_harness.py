from __future__ import annotations

import time

import pytest

from stepkit import (
    BaseStep,
    PermanentError,
    ResourceStatus,
    RetryableError,
    StepContext,
    StepResult,
    WorkflowInfo,
    derive_idempotency_key,
)
from stepkit.testing import DEFAULT_WORKFLOW, StepHarness


class Echo(BaseStep):
    """Returns what it saw, so the test can inspect the context the harness built."""

    def run(self, ctx: StepContext) -> StepResult:
        ctx.log.info("echo run", value=ctx.parameters.get("value"))
        return StepResult(
            attributes={"attempt": str(ctx.attempt), "direction": ctx.direction, "key": ctx.idempotency_key},
            resource=ctx.resource,
        )

    def rollback(self, ctx: StepContext) -> StepResult:
        return self.run(ctx)


class Crashes(BaseStep):
    def run(self, ctx: StepContext) -> StepResult | None:
        raise ZeroDivisionError("oops")

    def rollback(self, ctx: StepContext) -> StepResult | None:
        raise PermanentError("nope", code="X")

    def sync(self, ctx: StepContext) -> StepResult | None:
        return {"not": "a result"}  # type: ignore[return-value]


def test_run_builds_the_engine_context() -> None:
    harness = StepHarness(Echo(), step_type="echo", step_name="s1")
    result = harness.run({"value": "v"}, attempt=3, resource=ResourceStatus(id="r1"))
    assert result is not None
    assert result.attributes == {
        "attempt": "3",
        "direction": "run",
        "key": derive_idempotency_key(DEFAULT_WORKFLOW.uid, "s1", "run"),
    }
    assert result.resource == ResourceStatus(id="r1")
    ctx = harness.contexts[-1]
    assert (ctx.step_type, ctx.step_name, ctx.workflow) == ("echo", "s1", DEFAULT_WORKFLOW)
    assert ctx.remaining() > 60
    assert harness.events == [
        {
            "event": "echo run",
            "log_level": "info",
            "workflow": "test-workflow",
            "namespace": "default",
            "step": "s1",
            "direction": "run",
            "value": "v",
        }
    ]


def test_keys_are_stable_across_attempts_and_differ_by_direction_and_workflow() -> None:
    harness = StepHarness(Echo())

    def key(result: StepResult | None) -> str:
        assert result is not None
        return result.attributes["key"]

    first, retry = key(harness.run(attempt=1)), key(harness.run(attempt=2))
    undo = key(harness.rollback())
    other = key(harness.run(workflow=WorkflowInfo("wf2", "default", "another-uid")))
    assert first == retry == harness.idempotency_key("run")
    assert undo == harness.idempotency_key("rollback") != first
    assert other != first


def test_explicit_deadline_is_passed_through() -> None:
    harness = StepHarness(Echo())
    deadline = time.monotonic() + 1.5
    harness.run(deadline=deadline)
    assert harness.contexts[-1].deadline == deadline


def test_outcomes_follow_the_engine_rules() -> None:
    harness = StepHarness(Crashes())
    with pytest.raises(RetryableError, match="oops") as info:
        harness.run()
    assert info.value.code == "ZeroDivisionError"
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    with pytest.raises(PermanentError, match="nope"):
        harness.rollback()
    with pytest.raises(TypeError, match="expected StepResult or None"):
        harness.sync()
