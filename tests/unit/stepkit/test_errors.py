from __future__ import annotations

import pytest

from stepkit import (
    IgnorableError,
    PermanentError,
    ResourceStatus,
    RetryableError,
    StepError,
    StepResult,
    classify,
)


@pytest.mark.parametrize(
    ("error", "retryable", "ignorable"),
    [
        pytest.param(PermanentError("x"), False, False, id="permanent"),
        pytest.param(RetryableError("x"), True, False, id="retryable"),
        pytest.param(IgnorableError("x"), True, True, id="ignorable"),
        pytest.param(StepError("x", retryable=True), True, False, id="base-retryable"),
        pytest.param(StepError("x", retryable=False), False, False, id="base-permanent"),
    ],
)
def test_flags(error: StepError, retryable: bool, ignorable: bool) -> None:
    assert (error.retryable, error.ignorable) == (retryable, ignorable)
    assert isinstance(error, StepError)


def test_code_delay_and_partial_result_are_kept() -> None:
    partial = StepResult(resource=ResourceStatus(id="db-1"))
    err = RetryableError("busy", delay=2.5, code="HTTP503", result=partial)
    assert (err.code, err.delay, err.result, err.message) == ("HTTP503", 2.5, partial, "busy")
    assert str(err) == "HTTP503: busy"
    assert str(PermanentError("bad input")) == "bad input"
    assert "retryable=True" in repr(err)


def test_ignorable_must_be_retryable() -> None:
    with pytest.raises(ValueError, match="ignorable"):
        StepError("x", retryable=False, ignorable=True)


@pytest.mark.parametrize("delay", [-1.0, float("nan"), float("inf")])
def test_bad_delay_is_rejected(delay: float) -> None:
    with pytest.raises(ValueError, match="delay"):
        RetryableError("x", delay=delay)


def test_classify_keeps_step_errors() -> None:
    err = PermanentError("gone")
    assert classify(err) is err


def test_classify_turns_other_exceptions_into_retryable() -> None:
    original = ConnectionResetError("peer reset")
    err = classify(original)
    assert type(err) is RetryableError
    assert err.code == "ConnectionResetError"
    assert err.message == "peer reset"
    assert err.__cause__ is original


def test_classify_uses_type_name_when_message_is_empty() -> None:
    assert classify(KeyError()).message == "KeyError"


def test_classify_refuses_interpreter_exits() -> None:
    with pytest.raises(TypeError, match="propagate"):
        classify(KeyboardInterrupt())
