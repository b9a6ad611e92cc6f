"""Proof that the control plane from hack/kube-testenv is a real Kubernetes API server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubetestenv import REPO_ROOT, ControlPlane

GROUP, VERSION, PLURAL = "testenv.example.com", "v1", "widgets"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget"},
        "versions": [{
            "name": VERSION, "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 0}}},
            }}},
        }],
    },
}


def install_widgets(api_client: client.ApiClient) -> client.CustomObjectsApi:
    """Register the Widget CRD (idempotent) and wait until its resource answers."""
    ext = client.ApiextensionsV1Api(api_client)
    try:
        ext.create_custom_resource_definition(WIDGET_CRD)
    except ApiException as exc:
        if exc.status != 409:
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []):
            break
        time.sleep(0.1)
    else:
        pytest.fail("CRD not established in 30s")
    custom = client.CustomObjectsApi(api_client)
    # Discovery can lag behind Established for a moment: wait until the resource answers.
    while time.monotonic() < deadline:
        try:
            custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            break
        except ApiException as exc:
            if exc.status != 404:
                raise
            time.sleep(0.1)
    return custom


@pytest.fixture(scope="module")
def widgets(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return install_widgets(api_client)


@pytest.fixture(scope="module")
def uncached() -> Iterator[tuple[ControlPlane, client.CustomObjectsApi]]:
    """A second plane with the watch cache off, so that reads at old resourceVersions go to etcd.

    With the watch cache on (the default, and the session plane), kube-apiserver serves watches and
    exact reads at recent resourceVersions from memory, so a compaction done behind its back does not
    show; with it off, every such request reaches etcd and a compacted revision is 410 Gone.
    """
    with ControlPlane(apiserver_args=["--watch-cache=false"]) as plane:
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "gone"}})
        try:
            yield plane, install_widgets(api)
        finally:
            api.close()


def _widget(name: str, size: int = 1) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": name},
            "spec": {"size": size}}


def _watch_events(custom: client.CustomObjectsApi, namespace: str, rv: str, want: int,
                  timeout: int = 10) -> Iterator[dict[str, Any]]:
    """Raw watch (no client models), one JSON event per line, like our reflector will read it."""
    resp = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, watch=True, resource_version=rv,
        timeout_seconds=timeout, allow_watch_bookmarks=False, _preload_content=False,
    )
    seen = 0
    try:
        buf = b""
        for chunk in resp.stream(amt=None, decode_content=True):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)
                    seen += 1
                    if seen >= want:
                        return
    finally:
        resp.release_conn()


def test_crd_and_custom_objects(widgets: client.CustomObjectsApi, namespace: str) -> None:
    created = widgets.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _widget("a", 3))
    assert created["metadata"]["uid"]
    assert created["spec"] == {"size": 3}
    got = widgets.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "a")
    assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    # Structural schema validation is enforced by the server.
    with pytest.raises(ApiException) as err:
        widgets.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _widget("b", -1))
    assert err.value.status == 422
    assert "spec.size" in err.value.body


def test_watch_from_resource_version_sees_later_changes(
    widgets: client.CustomObjectsApi, namespace: str
) -> None:
    first = widgets.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _widget("w1"))
    rv = first["metadata"]["resourceVersion"]
    widgets.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _widget("w2"))
    widgets.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w1", {"spec": {"size": 9}})
    widgets.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w2")

    events = list(_watch_events(widgets, namespace, rv, want=3))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w2"), ("MODIFIED", "w1"), ("DELETED", "w2"),
    ]
    assert events[1]["object"]["spec"]["size"] == 9
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs)
    assert rvs[0] > int(rv)


def test_expired_resource_version_gets_410_gone(
    uncached: tuple[ControlPlane, client.CustomObjectsApi],
) -> None:
    plane, widgets = uncached
    ns = "gone"
    old = widgets.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _widget("old"))
    old_rv = old["metadata"]["resourceVersion"]
    for i in range(5):
        widgets.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "old", {"spec": {"size": i}})
    compacted = plane.compact_etcd()
    assert compacted > int(old_rv)

    # A watch from a compacted revision: one ERROR event carrying a 410 Expired Status.
    events = list(_watch_events(widgets, ns, old_rv, want=1, timeout=5))
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] == "Expired"

    # An exact list at that revision: 410 Gone as an HTTP status.
    with pytest.raises(ApiException) as err:
        widgets.list_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, resource_version=old_rv, resource_version_match="Exact",
        )
    assert err.value.status == 410
    assert json.loads(err.value.body)["reason"] == "Expired"

    # The current revision still works.
    listed = widgets.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
    assert [o["metadata"]["name"] for o in listed["items"]] == ["old"]


def test_continue_token_expires_after_compaction(
    uncached: tuple[ControlPlane, client.CustomObjectsApi],
) -> None:
    plane, widgets = uncached
    ns = "gone"
    for i in range(3):
        widgets.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _widget(f"p{i}"))
    page = widgets.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, limit=1)
    token = page["metadata"]["continue"]
    assert token
    for i in range(3):
        widgets.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "p0", {"spec": {"size": i}})
    plane.compact_etcd()
    with pytest.raises(ApiException) as err:
        widgets.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, limit=1, _continue=token)
    assert err.value.status == 410


def test_unprivileged_user_gets_403_until_rbac_grants_access(
    control_plane: ControlPlane, api_client: client.ApiClient,
    widgets: client.CustomObjectsApi, namespace: str,
) -> None:
    alice = config.new_client_from_config(config_file=str(control_plane.kubeconfig_for("alice")))
    try:
        as_alice = client.CustomObjectsApi(alice)
        with pytest.raises(ApiException) as err:
            as_alice.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        assert err.value.status == 403
        assert 'User "alice" cannot list resource "widgets"' in json.loads(err.value.body)["message"]

        rbac = client.RbacAuthorizationV1Api(api_client)
        rbac.create_namespaced_role(namespace, {
            "metadata": {"name": "widget-reader"},
            "rules": [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]}],
        })
        rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": "alice-reads-widgets"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "widget-reader"},
            "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
        })
        widgets.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _widget("visible"))
        # The RBAC authorizer reads roles from its informer: allow a moment for it to see them.
        deadline = time.monotonic() + 10
        while True:
            try:
                listed = as_alice.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
                break
            except ApiException as exc:
                if exc.status != 403 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert [o["metadata"]["name"] for o in listed["items"]] == ["visible"]
        # Granted read, not write.
        with pytest.raises(ApiException) as err:
            as_alice.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _widget("nope"))
        assert err.value.status == 403
    finally:
        alice.close()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_works_with_the_written_kubeconfig(
    kubeconfig: Path, widgets: client.CustomObjectsApi, namespace: str
) -> None:
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "get", "ns", namespace, "-o", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert json.loads(out.stdout)["metadata"]["name"] == namespace
    applied = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "-n", namespace, "apply", "-f", "-"],
        input=json.dumps(_widget("from-kubectl", 7)), capture_output=True, text=True, timeout=60, check=True,
    )
    assert "widget.testenv.example.com/from-kubectl created" in applied.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_stop_leaves_no_processes_or_files() -> None:
    plane = ControlPlane().start()
    pids = list(plane.processes())
    workdir = plane.workdir
    assert len(pids) == 2
    assert all(_alive(p) for p in pids)
    plane.stop()
    plane.stop()  # idempotent
    assert not any(_alive(p) for p in pids)
    assert not workdir.exists()


def test_up_command_serves_until_ctrl_c_then_stops_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "kubeconfig"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "hack")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubetestenv", "up", "--kubeconfig-out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        printed = proc.stdout.readline().strip()  # blocks until the plane is ready
        assert printed == str(out.resolve()), proc.stderr.read() if proc.stderr else ""
        got = subprocess.run(["kubectl", "--kubeconfig", printed, "get", "ns", "default", "-o", "name"],
                             capture_output=True, text=True, timeout=60, check=True)
        assert got.stdout.strip() == "namespace/default"
        children = _children(proc.pid)
        assert {_comm(p) for p in children} == {"etcd", "kube-apiserver"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert not any(_alive(p) for p in children)
        assert not out.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()
