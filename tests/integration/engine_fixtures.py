"""Shared helpers for the engine's integration tests: CRD installation, an in-process Engine scoped to
the test's namespace, workflow builders, the ``fail`` step's call log, and a polling wait.

Time: tests never assert durations; they poll for a condition with a generous timeout and then
assert orderings and counts (the call log's timestamps are wall-clock seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from informers import ReflectorConfig
from kubetestenv import REPO_ROOT
from kubetestenv.crds import install_crds
from reconcilers.engine import Engine
from reconcilers.settings import EngineSettings, StepLimits
from reconcilers.state_machine.config import EngineConfig, QueueStrategy
from stepkit import StepRegistry
from stepkit.builtin.fail import CallRecord, read_call_log

GROUP, VERSION = "workflow.example.com", "v1alpha1"
CRD_DIR = REPO_ROOT / "deploy" / "crds"
SEED_EXAMPLE = REPO_ROOT / "examples" / "seed-example.yaml"

T = TypeVar("T")

#: Reflector settings for tests: fast backoff, short idle timeout.
FAST_REFLECTOR = ReflectorConfig(backoff_initial=0.1, backoff_max=1.0, watch_idle_timeout=30.0)


@pytest.fixture(scope="module")
def crds(api_client: client.ApiClient) -> client.CustomObjectsApi:
    install_crds(api_client)
    return client.CustomObjectsApi(api_client)


def wait_for(predicate: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.1,
             message: str | Callable[[], str] = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:g}s waiting for {text}")
        time.sleep(interval)


def settings(namespace: str, **changes: Any) -> EngineSettings:
    """Test settings: scoped to ``namespace``, generous step limits, quick safety nets."""
    base: dict[str, Any] = {
        "namespace": namespace,
        "rpc_timeout": 10.0,
        "step_defaults": StepLimits(qps=100.0, concurrency=4),
        "call_timeout": 60.0,
        "reflector": FAST_REFLECTOR,
        "admission_period": 2.0,
        "engine": EngineConfig(queue_strategy=QueueStrategy.FIFO, max_running_count=100),
    }
    base.update(changes)
    return EngineSettings(**base)


@contextmanager
def running_engine(api_client: client.ApiClient, engine_settings: EngineSettings,
                   registry: StepRegistry | None = None, **kwargs: Any) -> Iterator[Engine]:
    engine = Engine(api_client, engine_settings, registry or StepRegistry.default(), **kwargs)
    engine.start()
    try:
        assert engine.wait_for_sync(60), "engine caches did not sync"
        yield engine
    finally:
        engine.stop(grace=10.0)


# ------------------------------------------------------------------------------------ workflows


def step(name: str, type_: str = "empty", *depends: str, parameters: Mapping[str, str] | None = None,
         retry: Mapping[str, Any] | None = None, **template: Any) -> dict[str, Any]:
    tpl: dict[str, Any] = {"type": type_, **template}
    if parameters:
        tpl["parameters"] = dict(parameters)
    if retry:
        tpl["retryPolicy"] = dict(retry)
    out: dict[str, Any] = {"name": name, "stepTemplate": tpl}
    if depends:
        out["dependOns"] = [{"name": d} for d in depends]
    return out


def workflow(name: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workflow", "metadata": {"name": name},
            "spec": {"steps": steps, **spec}}


def create(api: client.CustomObjectsApi, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = api.create_namespaced_custom_object(GROUP, VERSION, namespace, "workflows", body)
    return out


def get(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        out: dict[str, Any] = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "workflows", name)
        return out
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def phase(api: client.CustomObjectsApi, namespace: str, name: str) -> str | None:
    wf = get(api, namespace, name)
    return None if wf is None else str((wf.get("status") or {}).get("phase") or "Pending")


def wait_phase(api: client.CustomObjectsApi, namespace: str, name: str, *phases: str,
               timeout: float = 90.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        wf = get(api, namespace, name)
        if wf is not None and (wf.get("status") or {}).get("phase") in phases:
            return wf
        return None

    return wait_for(done, timeout=timeout,
                    message=lambda: f"{name} in {phases}: now {get(api, namespace, name)!r:.2000}")


def steps_of(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    """The workflow's Step objects by step name."""
    listed = api.list_namespaced_custom_object(GROUP, VERSION, namespace, "steps",
                                               label_selector=f"workflow={name}")
    return {s["metadata"]["labels"]["step"]: s for s in listed["items"]}


def step_phases(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, str]:
    return {n: str((s.get("status") or {}).get("phase") or "Pending")
            for n, s in steps_of(api, namespace, name).items()}


def events_of(api_client: client.ApiClient, namespace: str, name: str) -> list[Any]:
    core = client.CoreV1Api(api_client)
    listed = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return list(listed.items)


def calls(path: Path, *, workflow_name: str | None = None) -> list[CallRecord]:
    return [r for r in read_call_log(path) if workflow_name is None or r.workflow == workflow_name]
