from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from stepkit import ResourceStatus, StepContext, StepResult, WorkflowInfo, derive_idempotency_key
from stepkit.testing import capturing_logger


def make_ctx(**overrides: Any) -> StepContext:
    fields: dict[str, Any] = {
        "workflow": WorkflowInfo("wf", "ns", "uid-1", {"region": "eu"}, {"db": "d1"}),
        "step_name": "s1",
        "step_type": "empty",
        "parameters": {"a": "1"},
        "attempt": 1,
        "direction": "run",
        "idempotency_key": derive_idempotency_key("uid-1", "s1", "run"),
        "deadline": time.monotonic() + 60,
        "resource": ResourceStatus(),
        "log": capturing_logger()[0],
    }
    fields.update(overrides)
    return StepContext(**fields)


def test_idempotency_key_is_stable_per_step_and_direction() -> None:
    key = derive_idempotency_key("uid-1", "s1", "run")
    assert key == derive_idempotency_key("uid-1", "s1", "run")
    assert len(key) == 32
    others = {
        derive_idempotency_key("uid-1", "s1", "rollback"),
        derive_idempotency_key("uid-1", "s1", "sync"),
        derive_idempotency_key("uid-2", "s1", "run"),
        derive_idempotency_key("uid-1", "s2", "run"),
        # no ambiguity from concatenation: ("uid-1", "s1") vs ("uid-1s", "1")
        derive_idempotency_key("uid-1s", "1", "run"),
    }
    assert key not in others
    assert len(others) == 5


def test_idempotency_key_rejects_unknown_direction() -> None:
    with pytest.raises(ValueError, match="direction"):
        derive_idempotency_key("u", "s", "undo")  # type: ignore[arg-type]


def test_context_is_frozen_and_its_mappings_read_only() -> None:
    ctx = make_ctx()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.attempt = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        ctx.parameters["a"] = "2"  # type: ignore[index]
    with pytest.raises(TypeError):
        ctx.workflow.attributes["db"] = "d2"  # type: ignore[index]
    with pytest.raises(TypeError):
        ctx.workflow.parameters["region"] = "us"  # type: ignore[index]


def test_context_copies_the_callers_mapping() -> None:
    params = {"a": "1"}
    ctx = make_ctx(parameters=params)
    params["a"] = "changed"
    assert ctx.parameters["a"] == "1"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        pytest.param({"attempt": 0}, "attempt", id="attempt-0"),
        pytest.param({"direction": "undo"}, "direction", id="bad-direction"),
        pytest.param({"idempotency_key": ""}, "idempotency_key", id="empty-key"),
    ],
)
def test_context_validates(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_ctx(**overrides)


def test_context_rejects_non_string_parameters() -> None:
    with pytest.raises(TypeError, match="'port'"):
        make_ctx(parameters={"port": 80})


def test_remaining_counts_down_to_zero() -> None:
    assert 0 < make_ctx(deadline=time.monotonic() + 100).remaining() <= 100
    assert make_ctx(deadline=time.monotonic() - 5).remaining() == 0.0


def test_step_result_validates_and_freezes() -> None:
    result = StepResult(attributes={"k": "v"}, resource=ResourceStatus(id="1", attributes={"x": "y"}))
    with pytest.raises(TypeError):
        result.attributes["k"] = "w"  # type: ignore[index]
    with pytest.raises(TypeError, match="str to str"):
        StepResult(attributes={"port": 80})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="ResourceStatus"):
        StepResult(resource={"id": "1"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"ResourceStatus\.id"):
        ResourceStatus(id=42)  # type: ignore[arg-type]
    assert StepResult().attributes == {}


def test_resource_updated_with_keeps_unset_fields_and_merges_attributes() -> None:
    current = ResourceStatus(status="Creating", id="db-1", name="orders", attributes={"a": "1", "b": "2"})
    update = ResourceStatus(status="Ready", address="10.0.0.1", attributes={"b": "3"})
    merged = current.updated_with(update)
    assert merged == ResourceStatus(
        status="Ready", id="db-1", name="orders", address="10.0.0.1", attributes={"a": "1", "b": "3"}
    )
    assert current.updated_with(None) is current


def test_resource_round_trips_through_status_json() -> None:
    res = ResourceStatus(status="Ready", id="i-1", attributes={"zone": "a"})
    assert res.to_dict() == {"status": "Ready", "id": "i-1", "attributes": {"zone": "a"}}
    assert ResourceStatus.from_dict(res.to_dict()) == res
    assert ResourceStatus.from_dict(None) == ResourceStatus()
    assert ResourceStatus.from_dict({"id": 7, "attributes": {"n": 1}, "extra": "x"}) == ResourceStatus(
        id="7", attributes={"n": "1"}
    )
