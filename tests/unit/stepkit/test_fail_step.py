"""``fail``: scripted failures and the multi-process call log."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from stepkit import IgnorableError, PermanentError, RetryableError, StepError
from stepkit.builtin.fail import CALL_LOG_ENV, FailStep, read_call_log
from stepkit.testing import StepHarness
from tests.unit.stepkit.conftest import FakeSleep


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "calls.jsonl"


@pytest.fixture
def harness() -> StepHarness:
    return StepHarness(FailStep(sleep=FakeSleep()), step_type="fail", step_name="s1")


def outcomes(path: Path) -> list[tuple[str, int, str]]:
    return [(r.direction, r.attempt, r.outcome) for r in read_call_log(path)]


def test_default_succeeds_with_a_deterministic_resource_id(harness: StepHarness, log_path: Path) -> None:
    params = {"callLog": str(log_path), "attributes": '{"db": "orders"}', "resourceStatus": "Ready"}
    first = harness.run(params)
    repeat = harness.run(params)  # at-least-once: the repeat reports the same id
    assert first == repeat
    assert first is not None
    assert first.attributes == {"db": "orders"}
    assert first.resource is not None
    assert first.resource.id == f"fail-{harness.idempotency_key('run')[:12]}"
    assert first.resource.status == "Ready"
    assert harness.rollback(params) is None
    assert harness.sync(params) is None
    assert outcomes(log_path) == [
        ("run", 1, "ok"),
        ("run", 1, "ok"),
        ("rollback", 1, "ok"),
        ("sync", 1, "ok"),
    ]


def test_call_records_carry_workflow_step_and_idempotency_key(harness: StepHarness, log_path: Path) -> None:
    harness.run({"callLog": str(log_path)}, attempt=2)
    (record,) = read_call_log(log_path)
    assert record.workflow == "test-workflow"
    assert record.namespace == "default"
    assert record.workflow_uid == harness.workflow.uid
    assert (record.step, record.step_type, record.direction, record.attempt) == ("s1", "fail", "run", 2)
    assert record.idempotency_key == harness.idempotency_key("run")
    assert record.outcome == "ok"
    assert record.ts > 0


def test_fail_first_n_runs_retryably(harness: StepHarness, log_path: Path) -> None:
    params = {"failRuns": "2", "delaySeconds": "4", "callLog": str(log_path)}
    for attempt in (1, 2):
        with pytest.raises(RetryableError) as info:
            harness.run(params, attempt=attempt)
        assert info.value.delay == 4.0
        assert info.value.code == "Scripted"
    assert harness.run(params, attempt=3) is not None
    assert outcomes(log_path) == [("run", 1, "retryable"), ("run", 2, "retryable"), ("run", 3, "ok")]


def test_run_error_alone_fails_every_attempt(harness: StepHarness) -> None:
    for attempt in (1, 7):
        with pytest.raises(PermanentError):
            harness.run({"runError": "permanent"}, attempt=attempt)


def test_permanent_first_run_only(harness: StepHarness) -> None:
    params = {"runError": "permanent", "failRuns": "1"}
    with pytest.raises(PermanentError):
        harness.run(params, attempt=1)
    assert harness.run(params, attempt=2) is not None


@pytest.mark.parametrize(
    ("params", "failing", "expected"),
    [
        pytest.param(
            {"rollbackError": "permanent"}, [1, 2, 3], PermanentError, id="rollback-always-permanent"
        ),
        pytest.param({"failRollbacks": "2"}, [1, 2], RetryableError, id="rollback-first-two-retryable"),
        pytest.param({"failRollbacks": "always"}, [1, 2, 3], RetryableError, id="rollback-always"),
    ],
)
def test_scripted_rollback_failures(
    harness: StepHarness, params: dict[str, str], failing: list[int], expected: type[StepError]
) -> None:
    for attempt in (1, 2, 3):
        if attempt in failing:
            with pytest.raises(expected):
                harness.rollback(params, attempt=attempt)
        else:
            assert harness.rollback(params, attempt=attempt) is None
    assert harness.run(params) is not None  # run is unaffected


def test_scripted_sync(harness: StepHarness) -> None:
    with pytest.raises(PermanentError, match="sync"):
        harness.sync({"syncError": "permanent"})
    result = harness.sync({"syncResourceStatus": "Available"})
    assert result is not None
    assert result.resource is not None
    assert result.resource.status == "Available"


def test_ignorable_errors_are_counted_from_the_call_log(harness: StepHarness, log_path: Path) -> None:
    params = {"ignorable": "2", "callLog": str(log_path)}
    for _ in range(2):
        with pytest.raises(IgnorableError):
            harness.run(params, attempt=1)  # the attempt does not advance on ignorable errors
    assert harness.run(params, attempt=1) is not None
    assert outcomes(log_path) == [("run", 1, "ignorable"), ("run", 1, "ignorable"), ("run", 1, "ok")]
    # a fresh process (a new FailStep instance) reads the same log and does not repeat them
    fresh = StepHarness(FailStep(), step_name="s1")
    assert fresh.run(params, attempt=1) is not None


def test_ignorable_without_a_log_counts_in_memory(harness: StepHarness) -> None:
    with pytest.raises(IgnorableError):
        harness.rollback({"ignorableRollbacks": "1"})
    assert harness.rollback({"ignorableRollbacks": "1"}) is None


def test_ignorable_comes_before_scripted_failures(harness: StepHarness, log_path: Path) -> None:
    params = {"ignorable": "1", "failRuns": "1", "callLog": str(log_path)}
    with pytest.raises(IgnorableError):
        harness.run(params, attempt=1)
    with pytest.raises(RetryableError) as info:
        harness.run(params, attempt=1)
    assert not info.value.ignorable
    assert harness.run(params, attempt=2) is not None


def test_call_log_from_environment(
    harness: StepHarness, log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CALL_LOG_ENV, str(log_path))
    harness.run()
    assert outcomes(log_path) == [("run", 1, "ok")]


def test_sleep_and_deadline(log_path: Path) -> None:
    sleep = FakeSleep()
    harness = StepHarness(FailStep(sleep=sleep))
    harness.run({"sleepSeconds": "3"})
    assert sleep.calls == [3.0]
    with pytest.raises(RetryableError, match="deadline"):
        harness.run({"sleepSeconds": "3", "callLog": str(log_path)}, deadline=time.monotonic() + 1)
    assert outcomes(log_path) == [("run", 1, "retryable")]


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"failRuns": "two"}, id="bad-count"),
        pytest.param({"runError": "sometimes"}, id="bad-kind"),
        pytest.param({"attributes": "[1]"}, id="attributes-not-object"),
        pytest.param({"attributes": "{"}, id="attributes-not-json"),
    ],
)
def test_bad_parameters_are_permanent_and_logged(
    harness: StepHarness, log_path: Path, params: dict[str, str]
) -> None:
    with pytest.raises(PermanentError) as info:
        harness.run({**params, "callLog": str(log_path)})
    assert info.value.code == "BadParameter"
    assert outcomes(log_path) == [("run", 1, "permanent")]


def test_read_missing_log_is_empty(tmp_path: Path) -> None:
    assert read_call_log(tmp_path / "absent.jsonl") == []


WRITER = textwrap.dedent(
    """
    import sys
    from stepkit.builtin.fail import FailStep
    from stepkit.testing import StepHarness

    harness = StepHarness(FailStep(), step_name=sys.argv[2])
    for attempt in range(1, 201):
        harness.run({"callLog": sys.argv[1]}, attempt=attempt)
    """
)


def test_several_processes_append_to_one_log(log_path: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(log_path), f"writer{i}"], stderr=subprocess.PIPE)
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    records = read_call_log(log_path)  # every line parses: no interleaved writes
    assert len(records) == 400
    for writer in ("writer0", "writer1"):
        attempts = [r.attempt for r in records if r.step == writer]
        assert attempts == list(range(1, 201))  # each process's lines stay in its order
