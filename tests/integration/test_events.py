"""EventRecorder against the real kube-apiserver: aggregation into one core/v1 Event with a count,
``involvedObject`` pointing at the Workflow, what ``kubectl describe`` shows."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubetestenv import REPO_ROOT
from kubetestenv.crds import install_crds
from reconcilers.events import EventRecorder

GROUP, VERSION = "workflow.example.com", "v1alpha1"
CRD_DIR = REPO_ROOT / "deploy" / "crds"


@pytest.fixture(scope="module")
def crds(api_client: client.ApiClient) -> client.CustomObjectsApi:
    install_crds(api_client)
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def workflow(crds: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workflow", "metadata": {"name": "events-wf"},
            "spec": {"steps": [{"name": "a", "stepTemplate": {"type": "empty"}}]}}
    created: dict[str, Any] = crds.create_namespaced_custom_object(GROUP, VERSION, namespace, "workflows",
                                                                   body)
    return created


@pytest.fixture
def recorder(api_client: client.ApiClient) -> Iterator[EventRecorder]:
    rec = EventRecorder(api_client, component="workflow-controller")
    rec.start()
    yield rec
    rec.stop()


def _events(api_client: client.ApiClient, namespace: str, name: str) -> list[Any]:
    core = client.CoreV1Api(api_client)
    selector = f"involvedObject.name={name}"
    items: list[Any] = core.list_namespaced_event(namespace, field_selector=selector).items
    return items


def test_fifty_repeats_make_one_event_with_count_50(api_client: client.ApiClient, namespace: str,
                                                    workflow: dict[str, Any], recorder: EventRecorder,
                                                    kubeconfig: Path) -> None:
    for _ in range(50):
        recorder.record(workflow, "Warning", "CallbackRetrying", "callback to http://x/ failed: HTTP 500")
    assert recorder.flush(30)
    stats = recorder.stats()
    assert stats.failed == 0, stats
    assert stats.deferred == 0, stats
    print(f"\n50 records -> {stats.created} create(s) + {stats.patched} patch(es)")

    (event,) = _events(api_client, namespace, "events-wf")
    assert event.count == 50
    meta = workflow["metadata"]
    inv = event.involved_object
    assert (inv.api_version, inv.kind, inv.name, inv.namespace, inv.uid) == (
        f"{GROUP}/{VERSION}", "Workflow", meta["name"], namespace, meta["uid"])
    assert inv.resource_version == meta["resourceVersion"]
    assert (event.type, event.reason) == ("Warning", "CallbackRetrying")
    assert event.message == "callback to http://x/ failed: HTTP 500"
    assert event.source.component == "workflow-controller"
    assert event.source.host
    assert event.reporting_component == "workflow-controller"
    assert event.reporting_instance
    assert event.first_timestamp is not None
    assert event.last_timestamp >= event.first_timestamp
    assert event.metadata.name.startswith("events-wf.")

    out = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "describe", "workflow", "events-wf",
                          "-n", namespace], capture_output=True, text=True, timeout=60, check=True).stdout
    print(out[out.find("Events:"):])
    assert "CallbackRetrying" in out
    assert "x50" in out
    assert "HTTP 500" in out


def test_repeats_after_a_write_patch_the_same_event(api_client: client.ApiClient, namespace: str,
                                                    workflow: dict[str, Any],
                                                    recorder: EventRecorder) -> None:
    recorder.record(workflow, "Normal", "Started", "workflow started")
    assert recorder.flush(30)
    (first,) = _events(api_client, namespace, "events-wf")
    recorder.record(workflow, "Normal", "Started", "workflow started")
    assert recorder.flush(30)
    (second,) = _events(api_client, namespace, "events-wf")
    assert second.metadata.name == first.metadata.name
    assert (first.count, second.count) == (1, 2)
    assert recorder.stats().patched == 1


def test_different_messages_make_different_events(api_client: client.ApiClient, namespace: str,
                                                  workflow: dict[str, Any], recorder: EventRecorder) -> None:
    for i in range(3):
        for _ in range(i + 1):
            recorder.record(workflow, "Warning", "StepFailed", f"step s{i} failed")
    recorder.record(workflow, "Normal", "StepFailed", "step s0 failed")  # another type: another Event
    assert recorder.flush(30)
    got = sorted((e.type, e.message, e.count) for e in _events(api_client, namespace, "events-wf"))
    assert got == [("Normal", "step s0 failed", 1), ("Warning", "step s0 failed", 1),
                   ("Warning", "step s1 failed", 2), ("Warning", "step s2 failed", 3)]


def test_long_messages_are_truncated_and_accepted(api_client: client.ApiClient, namespace: str,
                                                  workflow: dict[str, Any], recorder: EventRecorder) -> None:
    recorder.record(workflow, "Warning", "Failed", "x" * 5000)
    assert recorder.flush(30)
    (event,) = _events(api_client, namespace, "events-wf")
    assert len(event.message) == 1024
    assert event.message.endswith("...")
