"""Values and codecs, step object names, the DAG helpers and retry waits."""

from __future__ import annotations

import copy
import re
from datetime import timedelta

import pytest
import yaml

from informers.frozen import freeze
from reconcilers.state_machine import decide
from reconcilers.state_machine.dag import find_cycle, topological_order
from reconcilers.state_machine.naming import label_value, step_labels, step_object_name
from reconcilers.state_machine.retry import retry_wait
from reconcilers.state_machine.types import (
    Backoff,
    Failure,
    Phase,
    Resource,
    RollbackPolicy,
    StepStatus,
    Workflow,
    WorkflowSpec,
)
from tests.unit.state_machine.builders import CONFIG, NOW, REPO, at, spec_step, step_obj, workflow

DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
LABEL = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def test_the_seed_example_reads_with_the_originals_defaults() -> None:
    wf = Workflow.from_dict(yaml.safe_load((REPO / "examples" / "seed-example.yaml").read_text()))
    assert (wf.spec.queue, wf.spec.rollback_policy) == ("default", RollbackPolicy.PRESERVE_ON_FAILURE)
    assert wf.spec.callback is not None
    assert (wf.spec.callback.url, wf.spec.callback.ignore_not_found) == ("http://locahost:8080/abc", True)
    step1, step2, _ = wf.spec.steps
    assert (
        step1.template.retry_policy.run_retry_period_seconds,
        step2.template.retry_policy.run_retry_limit,
    ) == (10, 3)
    assert step2.depend_ons[0].phase is Phase.SUCCESS
    assert dict(step1.template.parameters) == {"sleepSeconds": "20"}


def test_step_status_round_trips_and_omits_empty_fields() -> None:
    status = StepStatus(
        Phase.ROLLING_BACK,
        Resource(status="Ready", id="1", attributes={"a": "b"}),  # type: ignore[arg-type]
        run_retry_count=2,
        latest_run_retry_at=at(1.5),
        latest_sync_at=NOW,
        run_error="boom",
        failure=Failure.RUN,
    )
    encoded = status.to_status()
    assert encoded == {
        "phase": "RollingBack",
        "resource": {"status": "Ready", "id": "1", "attributes": {"a": "b"}},
        "runRetryCount": 2,
        "latestRunRetryAt": "2026-01-01T00:00:01.500000Z",
        "latestSyncAt": "2026-01-01T00:00:00Z",
        "runError": "boom",
        "failure": "Run",
    }
    assert StepStatus.from_dict(encoded) == status
    assert StepStatus().to_status() == {"phase": "Pending"}


def test_values_do_not_share_the_cached_dict() -> None:
    raw = {"metadata": {"name": "w"}, "spec": {"parameters": {"k": "v"}, "steps": [spec_step("a")]}}
    wf = Workflow.from_dict(raw)
    raw["spec"]["parameters"]["k"] = "changed"  # type: ignore[index]
    assert wf.spec.parameters["k"] == "v"
    with pytest.raises(TypeError):
        wf.spec.parameters["k"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(
    ("workflow", "step"),
    [
        pytest.param("wf", "step1", id="short"),
        pytest.param("w" * 253, "s" * 63, id="longest-names"),
        pytest.param("wf", "Step_One.Two", id="step-name-that-is-no-dns-label"),
    ],
)
def test_step_object_names_are_valid_dns_subdomains(workflow: str, step: str) -> None:
    name = step_object_name(workflow, step)
    assert len(name) <= 253
    assert DNS_SUBDOMAIN.fullmatch(name)
    labels = step_labels(workflow, step)
    assert all(len(v) <= 63 and LABEL.fullmatch(v) for v in labels.values())


def test_long_label_values_are_cut_and_hashed_apart() -> None:
    assert label_value("step1") == "step1"
    a, b = label_value("x" * 70 + "a"), label_value("x" * 70 + "b")
    assert a != b
    assert len(a) <= 63


def test_topological_order_is_deterministic_and_follows_the_spec_among_ready_steps() -> None:
    spec = WorkflowSpec.from_dict(
        {"steps": [spec_step("c", "b"), spec_step("b", "a"), spec_step("x"), spec_step("a")]}
    )
    assert topological_order(spec) == ("x", "a", "b", "c")
    assert find_cycle(spec) is None


def test_find_cycle_names_the_loop() -> None:
    spec = WorkflowSpec.from_dict(
        {"steps": [spec_step("a"), spec_step("b", "a", "d"), spec_step("c", "b"), spec_step("d", "c")]}
    )
    assert find_cycle(spec) == ("b", "d", "c", "b")


@pytest.mark.parametrize(
    ("backoff", "failed", "cap", "expected"),
    [
        pytest.param(Backoff.FIXED, 1, 3600, 10, id="fixed-1"),
        pytest.param(Backoff.FIXED, 5, 3600, 10, id="fixed-5"),
        pytest.param(Backoff.EXPONENTIAL, 1, 3600, 10, id="exponential-1"),
        pytest.param(Backoff.EXPONENTIAL, 4, 3600, 80, id="exponential-4"),
        pytest.param(Backoff.EXPONENTIAL, 30, 300, 300, id="exponential-capped"),
    ],
)
def test_retry_waits(backoff: Backoff, failed: int, cap: int, expected: float) -> None:
    assert retry_wait(10, failed, backoff=backoff, max_period_seconds=cap) == timedelta(seconds=expected)


def test_jitter_is_deterministic_per_seed_and_attempt_and_within_half_to_full() -> None:
    waits = [retry_wait(100, n, jitter=True, seed="wf/a") for n in range(1, 50)]
    assert waits == [retry_wait(100, n, jitter=True, seed="wf/a") for n in range(1, 50)]
    assert all(timedelta(seconds=50) <= w <= timedelta(seconds=100) for w in waits)
    assert len(set(waits)) > 40
    assert retry_wait(100, 1, jitter=True, seed="wf/b") != waits[0]


def test_decide_reads_frozen_informer_objects_and_leaves_them_unchanged() -> None:
    """The informer cache hands out deep-frozen dicts shared by every worker (STYLE.md rule 6)."""
    wf = workflow(spec_step("a"), spec_step("b", "a"))
    objs = [step_obj(wf, "a", "Success", attributes={"k": "v"}), step_obj(wf, "b")]
    frozen_wf, frozen_objs = freeze(copy.deepcopy(wf)), [freeze(copy.deepcopy(o)) for o in objs]
    decision = decide(frozen_wf, frozen_objs, NOW, CONFIG)
    assert decision == decide(wf, objs, NOW, CONFIG)
    assert (frozen_wf, frozen_objs) == (wf, objs)
    assert [c.step for c in decision.steps] == ["b"]
