"""The Workflow and Step CRDs of deploy/crds/ against the real kube-apiserver: the seed README's example
is accepted unchanged with the original's defaults; what CEL can check is rejected with a readable
message; printer columns, the short name and the status subresource work."""

from __future__ import annotations

import copy
import json
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetestenv import REPO_ROOT, ControlPlane
from kubetestenv.crds import install_crds
from reconcilers.state_machine import EngineConfig, decide, start

GROUP, VERSION = "workflow.example.com", "v1alpha1"
CRD_DIR = REPO_ROOT / "deploy" / "crds"
SEED_EXAMPLE = REPO_ROOT / "examples" / "seed-example.yaml"


@pytest.fixture(scope="module")
def crds(api_client: client.ApiClient) -> client.CustomObjectsApi:
    install_crds(api_client)
    return client.CustomObjectsApi(api_client)


def _seed() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(SEED_EXAMPLE.read_text())
    return body


def _create(api: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "workflows", body
    )
    return created


def _rejection(api: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as info:
        _create(api, namespace, body)
    assert info.value.status == 422, info.value.body
    message: str = json.loads(info.value.body)["message"]
    return message


def _step(name: str, *depends: str) -> dict[str, Any]:
    step: dict[str, Any] = {"name": name, "stepTemplate": {"type": "empty"}}
    if depends:
        step["dependOns"] = [{"name": d} for d in depends]
    return step


def _workflow(name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"steps": steps},
    }


def test_seed_example_is_accepted_unchanged_with_defaults(
    crds: client.CustomObjectsApi, namespace: str
) -> None:
    created = _create(crds, namespace, _seed())
    spec = created["spec"]
    assert spec["queue"] == "default"
    assert spec["rollbackPolicy"] == "PreserveOnFailure"
    assert spec["callback"] == {"url": "http://locahost:8080/abc", "ignoreNotFound": True}
    step1, step2, step3 = spec["steps"]
    assert step2["dependOns"] == [{"name": "step1", "phase": "Success"}]
    # step1's explicit retry policy is kept; the others get the original's defaults 3/60/3/60.
    keys = ("runRetryLimit", "runRetryPeriodSeconds", "rollbackRetryLimit", "rollbackRetryPeriodSeconds")
    assert [step1["stepTemplate"]["retryPolicy"][k] for k in keys] == [3, 10, 3, 3]
    for step in (step2, step3):
        policy = step["stepTemplate"]["retryPolicy"]
        assert (
            policy["runRetryLimit"],
            policy["runRetryPeriodSeconds"],
            policy["rollbackRetryLimit"],
            policy["rollbackRetryPeriodSeconds"],
        ) == (3, 60, 3, 60)
        assert policy["backoff"] == "Fixed"
        assert step["stepTemplate"]["syncPeriodSeconds"] == 0
        assert step["stepTemplate"]["parameters"] == {"sleepSeconds": "20"}


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param(
            [_step("a"), _step("a")], "step names must be unique within a workflow", id="duplicate-step-name"
        ),
        pytest.param(
            [_step("a"), _step("b", "missing")],
            "every dependOns name must be the name of a step of this workflow",
            id="unknown-dependOn",
        ),
        pytest.param([_step("a", "a")], 'step "a" depends on itself', id="self-dependency"),
        pytest.param([], "spec.steps: Invalid value: 0", id="no-steps"),
        pytest.param(
            [
                {
                    "name": "a",
                    "stepTemplate": {"type": "empty"},
                    "dependOns": [{"name": "b", "phase": "RollBacked"}],
                },
                _step("b"),
            ],
            'Unsupported value: "RollBacked"',
            id="dependOn-phase-other-than-Success",
        ),
        pytest.param([_step("a" * 64)], "spec.steps[0].name: Too long", id="step-name-too-long"),
    ],
)
def test_invalid_workflows_are_rejected_with_a_readable_message(
    crds: client.CustomObjectsApi, namespace: str, steps: list[dict[str, Any]], expected: str
) -> None:
    message = _rejection(crds, namespace, _workflow("bad", steps))
    assert expected in message


def test_too_many_steps_are_rejected(crds: client.CustomObjectsApi, namespace: str) -> None:
    message = _rejection(crds, namespace, _workflow("big", [_step(f"s{i}") for i in range(65)]))
    assert "spec.steps: Too many" in message


def test_the_largest_allowed_workflow_is_accepted(crds: client.CustomObjectsApi, namespace: str) -> None:
    """64 steps, each depending on up to 16 earlier ones: the CEL rules stay inside the cost budget."""
    steps = [_step(f"step-{i:02d}", *[f"step-{j:02d}" for j in range(max(0, i - 16), i)]) for i in range(64)]
    created = _create(crds, namespace, _workflow("big", steps))
    assert len(created["spec"]["steps"]) == 64


def test_steps_are_immutable(crds: client.CustomObjectsApi, namespace: str) -> None:
    _create(crds, namespace, _seed())
    with pytest.raises(ApiException) as info:
        crds.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "workflows", "example", {"spec": {"steps": [_step("other")]}}
        )
    assert info.value.status == 422
    message = json.loads(info.value.body)["message"]
    assert "the steps of a workflow cannot be changed once it is created" in message


def test_step_checks_run_at_create_and_immutability_covers_updates(
    crds: client.CustomObjectsApi, namespace: str
) -> None:
    """The quadratic step checks are skipped on updates (optionalOldSelf): other spec fields still change,
    and steps made invalid by an update are refused by the immutability rule."""
    _create(crds, namespace, _seed())
    updated = crds.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "workflows", "example", {"spec": {"queue": "team-b"}}
    )
    assert updated["spec"]["queue"] == "team-b"
    with pytest.raises(ApiException) as info:
        crds.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "workflows", "example",
            {"spec": {"steps": [_step("a"), _step("a", "x")]}},
        )
    assert info.value.status == 422
    message = json.loads(info.value.body)["message"]
    assert "the steps of a workflow cannot be changed once it is created" in message
    # The create-time checks did not run on this update (the CRD before they were guarded said both).
    assert "step names must be unique" not in message
    assert "every dependOns name must be" not in message


def test_status_subresource(crds: client.CustomObjectsApi, namespace: str) -> None:
    created = _create(crds, namespace, _seed())
    status = {
        "phase": "Running",
        "stepPhases": {"Running": 2, "Success": 1, "RollingBack": 0, "RollBacked": 0},
    }
    # A status sent to the main resource is ignored ...
    body = copy.deepcopy(created)
    body["status"] = {"phase": "Failed"}
    replaced = crds.replace_namespaced_custom_object(GROUP, VERSION, namespace, "workflows", "example", body)
    assert "status" not in replaced
    # ... and written through /status, with a resourceVersion precondition.
    replaced["status"] = status
    written = crds.replace_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "workflows", "example", replaced
    )
    assert written["status"] == status
    stale = copy.deepcopy(replaced)
    with pytest.raises(ApiException) as info:
        crds.replace_namespaced_custom_object_status(GROUP, VERSION, namespace, "workflows", "example", stale)
    assert info.value.status == 409


def test_step_crd_defaults_and_status(crds: client.CustomObjectsApi, namespace: str) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Step",
        "metadata": {"name": "example-step1-0"},
        "spec": {"type": "random", "parameters": {"sleepSeconds": "20"}},
    }
    created = crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "steps", body)
    assert created["spec"]["rollbackPolicy"] == "PreserveOnFailure"
    assert created["spec"]["retryPolicy"]["runRetryLimit"] == 3
    created["status"] = {
        "phase": "Success",
        "resource": {"status": "Ready", "address": "10.0.0.1"},
        "attributes": {"k": "v"},
        "latestSyncAt": "2026-01-01T00:00:00Z",
    }
    written = crds.replace_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "steps", "example-step1-0", created
    )
    assert written["status"]["resource"]["address"] == "10.0.0.1"


def _kubectl(plane: ControlPlane, *args: str) -> str:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(plane.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_kubectl_short_name_and_printer_columns(
    crds: client.CustomObjectsApi, namespace: str, control_plane: ControlPlane
) -> None:
    created = _create(crds, namespace, _seed())
    created["status"] = {
        "phase": "Running",
        "stepPhases": {"Running": 2, "Success": 1, "RollingBack": 0, "RollBacked": 0},
    }
    crds.replace_namespaced_custom_object_status(GROUP, VERSION, namespace, "workflows", "example", created)
    table = _kubectl(control_plane, "-n", namespace, "get", "wf")
    header, row = table.strip().splitlines()
    assert header.split() == [
        "NAME",
        "QUEUE",
        "PHASE",
        "RUNNING",
        "SUCCESS",
        "ROLLINGBACK",
        "ROLLBACKED",
        "AGE",
    ]
    assert row.split()[:7] == ["example", "default", "Running", "2", "1", "0", "0"]
    applied = _kubectl(control_plane, "-n", namespace, "apply", "--dry-run=server", "-f", str(SEED_EXAMPLE))
    assert "example" in applied
    step = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Step",
        "metadata": {"name": "s"},
        "spec": {"type": "random"},
    }
    crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "steps", step)
    header = _kubectl(control_plane, "-n", namespace, "get", "steps").splitlines()[0]
    assert header.split() == ["NAME", "TYPE", "PHASE", "ADDRESS", "STATUS", "AGE"]


def test_crd_files_parse() -> None:
    """The manifests are plain YAML documents a `kubectl apply -f deploy/crds/` accepts (no templating)."""
    for path in CRD_DIR.glob("*.yaml"):
        docs = list(yaml.safe_load_all(path.read_text()))
        assert [d["kind"] for d in docs] == ["CustomResourceDefinition"]


def test_the_state_machine_output_fits_the_crds(crds: client.CustomObjectsApi, namespace: str) -> None:
    """The Step bodies and statuses ``decide`` produces are accepted as they are by the API server (the
    codecs and the CRD schemas agree): a short walk of the seed example through admission, step creation
    and the first runs, writing every status with its resourceVersion precondition."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    config = EngineConfig()

    def workflow() -> dict[str, Any]:
        wf: dict[str, Any] = crds.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "workflows", "example"
        )
        return wf

    def steps() -> list[dict[str, Any]]:
        listed = crds.list_namespaced_custom_object(
            GROUP, VERSION, namespace, "steps", label_selector="workflow=example"
        )
        items: list[dict[str, Any]] = listed["items"]
        return items

    def write(kind: str, obj: dict[str, Any], status: dict[str, Any]) -> None:
        body = {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "status": status,
            "metadata": {
                "name": obj["metadata"]["name"],
                "resourceVersion": obj["metadata"]["resourceVersion"],
            },
        }
        crds.replace_namespaced_custom_object_status(
            GROUP, VERSION, namespace, kind, obj["metadata"]["name"], body
        )

    _create(crds, namespace, _seed())
    pending = decide(workflow(), [], now, config)
    assert pending.workflow is not None
    write("workflows", workflow(), pending.workflow.to_status())
    admitted = start(workflow(), now)
    assert admitted.workflow is not None
    write("workflows", workflow(), admitted.workflow.to_status())

    # The finalizer the Pending decision holds (a metadata patch, not a status write) comes before any
    # Step is created.
    assert [(f.kind, f.add) for f in pending.finalizers] == [("Workflow", True)]
    crds.patch_namespaced_custom_object(GROUP, VERSION, namespace, "workflows", "example",
                                        {"metadata": {"finalizers": [pending.finalizers[0].finalizer]}})

    running = decide(workflow(), [], now, config)
    assert len(running.creates) == 3
    created = {}
    for create in running.creates:
        obj = crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "steps", dict(create.body))
        created[obj["metadata"]["name"]] = obj
    assert running.workflow is not None
    write("workflows", workflow(), running.workflow.to_status())
    # The steps ready at creation start in the same decision: their Running status carries no
    # resourceVersion (the applier takes the create's).
    assert sorted(i.step for i in running.invocations) == ["step1", "step3"]
    for change in running.steps:
        assert change.resource_version == ""
        write("steps", created[change.object_name], change.status.to_status())
    stored = {s["metadata"]["annotations"]["workflow.example.com/step"]: s for s in steps()}
    assert {name: s.get("status", {}).get("phase") for name, s in stored.items()} == {
        "step1": "Running",
        "step2": None,
        "step3": "Running",
    }
    assert stored["step1"]["metadata"]["ownerReferences"][0]["uid"] == workflow()["metadata"]["uid"]
    # The outbox with its pending callback event is kept by the status schema.
    assert workflow()["status"]["callbacks"]["emitted"] == [
        f"{workflow()['metadata']['uid']}:WorkflowStarted"
    ]
    assert workflow()["status"]["callbacks"]["pending"][0]["type"] == "WorkflowStarted"
