"""The original's demo steps (empty, random, error, retryable_error) and ``sleep``."""

from __future__ import annotations

import random
import time
import uuid

import pytest

from stepkit import PermanentError, ResourceStatus, RetryableError, StepResult
from stepkit.builtin import EmptyStep, ErrorStep, RandomStep, RetryableErrorStep, SleepStep
from stepkit.testing import StepHarness
from tests.unit.stepkit.conftest import FakeSleep


def resource_id(result: StepResult | None) -> str:
    assert result is not None
    assert result.resource is not None
    assert result.resource.id is not None
    return result.resource.id


def test_empty_does_nothing_in_every_direction() -> None:
    harness = StepHarness(EmptyStep())
    assert (harness.run(), harness.rollback(), harness.sync()) == (None, None, None)


def test_random_sleeps_then_sets_a_random_resource_id(fake_sleep: FakeSleep) -> None:
    harness = StepHarness(RandomStep(sleep=fake_sleep, rng=random.Random(1)))
    first = harness.run({"sleepSeconds": "20"})
    second = harness.run({"sleepSeconds": "20"})
    assert fake_sleep.calls == [20.0, 20.0]
    first_id, second_id = resource_id(first), resource_id(second)
    assert uuid.UUID(first_id).version == 4
    assert first_id != second_id
    assert harness.rollback() is None


def test_random_without_sleep_seconds_does_not_sleep(fake_sleep: FakeSleep) -> None:
    StepHarness(RandomStep(sleep=fake_sleep)).run()
    assert fake_sleep.calls == []


def test_random_sync_sometimes_changes_the_id(fake_sleep: FakeSleep) -> None:
    harness = StepHarness(RandomStep(sleep=fake_sleep, rng=random.Random(7)))
    current = ResourceStatus(id="original")
    outcomes = [harness.sync(resource=current) for _ in range(40)]
    changed = [r for r in outcomes if r is not None]
    assert 0 < len(changed) < 40
    assert all(r.resource is not None and r.resource.id not in (None, "original") for r in changed)
    assert any(e["event"] == "random resource changed" and e["old_id"] == "original" for e in harness.events)


def test_random_sleep_must_fit_the_deadline(fake_sleep: FakeSleep) -> None:
    harness = StepHarness(RandomStep(sleep=fake_sleep))
    with pytest.raises(RetryableError, match="deadline") as info:
        harness.run({"sleepSeconds": "20"}, deadline=time.monotonic() + 5)
    assert info.value.code == "DeadlineExceeded"
    assert fake_sleep.calls == []


@pytest.mark.parametrize("bad", ["abc", "-1", "nan", "inf"])
def test_random_rejects_bad_sleep_seconds(bad: str, fake_sleep: FakeSleep) -> None:
    with pytest.raises(PermanentError, match="sleepSeconds") as info:
        StepHarness(RandomStep(sleep=fake_sleep)).run({"sleepSeconds": bad})
    assert info.value.code == "BadParameter"


def test_error_first_run_fails_permanently_after_setting_a_resource_id() -> None:
    harness = StepHarness(ErrorStep())
    with pytest.raises(PermanentError) as info:
        harness.run(attempt=1)
    assert info.value.result is not None
    assert info.value.result.resource is not None
    assert info.value.result.resource.id
    assert harness.run(attempt=2) is None


def test_error_rollback_always_fails_permanently() -> None:
    harness = StepHarness(ErrorStep())
    for attempt in (1, 2, 5):
        with pytest.raises(PermanentError, match="rollback"):
            harness.rollback(attempt=attempt, resource=ResourceStatus(id="x"))


def test_retryable_error_fails_once_then_succeeds() -> None:
    harness = StepHarness(RetryableErrorStep())
    with pytest.raises(RetryableError):
        harness.run(attempt=1)
    assert harness.run(attempt=2) is None
    assert harness.rollback() is None
    assert harness.sync() is None


def test_sleep_step_sleeps_per_direction(fake_sleep: FakeSleep) -> None:
    harness = StepHarness(SleepStep(sleep=fake_sleep))
    params = {"seconds": "1.5", "rollbackSeconds": "0.25", "syncSeconds": "0"}
    assert harness.run(params) is None
    assert harness.rollback(params) is None
    assert harness.sync(params) is None
    assert fake_sleep.calls == [1.5, 0.25]


def test_sleep_step_fails_retryably_when_the_deadline_is_too_close(fake_sleep: FakeSleep) -> None:
    with pytest.raises(RetryableError, match=r"sleeping 10s would pass the call deadline"):
        StepHarness(SleepStep(sleep=fake_sleep)).run({"seconds": "10"}, deadline=time.monotonic() + 1)
    assert fake_sleep.calls == []
