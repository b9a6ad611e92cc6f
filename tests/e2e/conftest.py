"""End-to-end tests: the ``workflow-controller`` console script as a subprocess, against the real
kube-apiserver (hack/kube-testenv), authenticated as the ServiceAccount of deploy/ with exactly its RBAC.

Fixtures:

* ``controller_kubeconfig`` — in the test's namespace: the CRDs installed (cluster-scoped, idempotent),
  the ServiceAccount ``workflow-controller`` and the RBAC of ``deploy/manifests/02-rbac.yaml`` (cluster-scoped
  names suffixed with the namespace), a token from TokenRequest, and a kubeconfig that uses it;
* ``controllers`` — starts controller processes (see :mod:`tests.e2e.harness`) and kills every one of them
  at teardown, whatever happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from kubetestenv import ControlPlane
from tests.e2e.harness import ControllerProcess, Launcher, install_controller_identity


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: the controller as a subprocess against the real kube-apiserver (tests/e2e)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def controller_kubeconfig(control_plane: ControlPlane, api_client: client.ApiClient, namespace: str,
                          tmp_path: Path) -> Iterator[Path]:
    with install_controller_identity(control_plane, api_client, namespace, tmp_path) as path:
        yield path


@pytest.fixture
def controllers(tmp_path: Path) -> Iterator[Launcher]:
    started: list[ControllerProcess] = []

    def launch(kubeconfig: Path, namespace: str, *extra: str, name: str = "controller") -> ControllerProcess:
        proc = ControllerProcess.start(kubeconfig, namespace, tmp_path / name, *extra)
        started.append(proc)
        return proc

    try:
        yield launch
    finally:
        for proc in started:
            proc.kill()
