"""Install CustomResourceDefinitions from YAML files and wait until the API server serves them."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetestenv import REPO_ROOT

#: The project's CRDs (Workflow, Step).
WORKFLOW_CRDS = REPO_ROOT / "deploy" / "crds"


def install_crds(api_client: client.ApiClient, source: Path | Iterable[Path] = WORKFLOW_CRDS,
                 timeout: float = 60.0) -> list[str]:
    """Create each CRD (or replace it when it exists) and wait until all are Established.

    ``source`` is a directory of ``*.yaml`` files or the files themselves; returns the CRD names.
    """
    paths = sorted(source.glob("*.yaml")) if isinstance(source, Path) else list(source)
    ext = client.ApiextensionsV1Api(api_client)
    names = []
    for path in paths:
        body = yaml.safe_load(path.read_text())
        name = body["metadata"]["name"]
        names.append(name)
        try:
            ext.create_custom_resource_definition(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            meta = ext.read_custom_resource_definition(name).metadata
            body["metadata"]["resourceVersion"] = meta.resource_version if meta else None
            ext.replace_custom_resource_definition(name, body)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = ext.read_custom_resource_definition(name)
            status = crd.status
            conditions = {c.type: c.status for c in ((status.conditions if status else None) or [])}
            if conditions.get("Established") == "True":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not established after {timeout:.0f}s: {conditions}")
            time.sleep(0.1)
    return names
