"""Reliability drills (issue 9): the controller as a subprocess against a real kube-apiserver, while
things break - SIGKILLs, API-server restarts and etcd compactions, a callback receiver that is down,
slow or failing, and hostile Workflow specs.

The drills share ONE control plane of their own (``drill_plane``), started with
``--watch-cache=false``: with the watch cache on, a compaction behind the API server's back never
reaches the controller's watches as 410 Gone; with it off it does. Each drill gets its own namespace
and its own controller processes (see :mod:`tests.reliability.drills`); every process a drill starts
is killed in a ``finally``.

Run them with ``.venv/bin/pytest -m reliability -s`` (``-s`` shows each drill's summary line).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from kubetestenv import ControlPlane
from tests.reliability.drills import SUMMARIES, install_drill_crds


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability: crash/restart drills (slower)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in str(item.path):
            item.add_marker(pytest.mark.reliability)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Repeat the drills' summary lines at the end (they are printed with ``-s`` too)."""
    if SUMMARIES:
        terminalreporter.section("reliability drills")
        for line in SUMMARIES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def drill_plane() -> Iterator[ControlPlane]:
    with ControlPlane(apiserver_args=["--watch-cache=false"]) as plane:
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        try:
            install_drill_crds(api)
        finally:
            api.close()
        yield plane


@pytest.fixture
def drill_api(drill_plane: ControlPlane) -> Iterator[client.ApiClient]:
    """A fresh client per drill: a drill that restarts the API server leaves no broken pool behind."""
    api = config.new_client_from_config(config_file=str(drill_plane.kubeconfig))
    yield api
    api.close()


@pytest.fixture
def drill_namespace(drill_api: client.ApiClient) -> str:
    name = f"drill-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(drill_api).create_namespace({"metadata": {"name": name}})
    return name
