"""What one request of each kind the engine makes costs the API server: kube-apiserver CPU milliseconds
per request (``/proc`` of its process before and after), requests issued one at a time by a bare client
(``reconcilers.kube.Kube``) on a fresh control plane.

Run from the repo root::

    .venv/bin/python -m bench.apiserver                  # 500 requests of each kind
    .venv/bin/python -m bench.apiserver --without-cel    # the Workflow CRD without its CEL rules
    .venv/bin/python -m bench.apiserver --steps 20       # 20-step Workflows (the rules grow with steps)

Kinds: Step create / status patch (the floor's writes), Workflow create / status patch / metadata
patch (the finalizer), Event create. ``--without-cel`` installs the Workflow CRD with its
``x-kubernetes-validations`` removed, to show what the rules cost: the API server evaluates every rule
of the object on every write, status writes included (apiextensions' status strategy validates the
whole object). The quadratic step checks run only when a Workflow is created (``optionalOldSelf``); the
immutability rule (``self == oldSelf`` on the steps) runs on every update and grows with the steps.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import GROUP, VERSION, Plane, chain_spec, workflow_body, write_json
from bench.floor import step_object
from informers import Resource
from reconcilers.kube import STEPS, WORKFLOWS, Kube

EVENTS = Resource("", "v1", "events")
CRDS = Path(__file__).resolve().parent.parent / "deploy" / "crds"


def without_cel(doc: dict[str, Any]) -> dict[str, Any]:
    """The CRD with every ``x-kubernetes-validations`` removed."""
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "x-kubernetes-validations"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node
    out: dict[str, Any] = strip(copy.deepcopy(doc))
    return out


def measure(plane: Plane, kube: Kube, ns: str, n: int, k: int = 5) -> dict[str, float]:
    """ms of kube-apiserver CPU per request, by kind (Workflows of ``k`` chained steps)."""
    out: dict[str, float] = {}

    def timed(kind: str, calls: list[Any]) -> list[Any]:
        before = plane.cpu_seconds()
        results = [call() for call in calls]
        used = plane.cpu_used(before).get("kube-apiserver", 0.0)
        out[kind] = used / len(calls) * 1000
        return results

    steps = timed("Step create", [lambda i=i: kube.create(STEPS, ns, step_object(ns, f"w{i}", "s0"))
                                  for i in range(n)])
    timed("Step status patch", [
        lambda s=s: kube.patch_status(STEPS, ns, s["metadata"]["name"], {"phase": "Running"},
                                      resource_version=s["metadata"]["resourceVersion"]) for s in steps])
    wfs = timed(f"Workflow create ({k} steps)", [
        lambda i=i: kube.create(WORKFLOWS, ns, workflow_body(f"w{i}", chain_spec(k))) for i in range(n)])
    wfs = timed("Workflow status patch", [
        lambda w=w: kube.patch_status(WORKFLOWS, ns, w["metadata"]["name"], {"phase": "Running"},
                                      resource_version=w["metadata"]["resourceVersion"]) for w in wfs])
    timed("Workflow metadata patch (finalizer)", [
        lambda w=w: kube.patch(WORKFLOWS, ns, w["metadata"]["name"],
                               {"metadata": {"finalizers": ["workflow.example.com/rollback"]}},
                               resource_version=w["metadata"]["resourceVersion"]) for w in wfs])
    timed("Event create", [lambda i=i: kube.create(EVENTS, ns, {
        "metadata": {"generateName": "w-"}, "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Workflow", "name": f"w{i}", "namespace": ns},
        "reason": "Started", "message": "workflow started", "type": "Normal",
        "source": {"component": "workflow-controller"}}) for i in range(n)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=500, help="requests of each kind")
    ap.add_argument("--without-cel", action="store_true", help="the Workflow CRD without its CEL rules")
    ap.add_argument("--steps", type=int, default=5, help="steps per Workflow (the CEL rules grow with them)")
    args = ap.parse_args()
    plane = Plane()
    try:
        if args.without_cel:
            from kubernetes import client
            ext = client.ApiextensionsV1Api(plane.api)
            doc = without_cel(yaml.safe_load((CRDS / "workflow.example.com_workflows.yaml").read_text()))
            doc["metadata"]["resourceVersion"] = ext.read_custom_resource_definition(
                doc["metadata"]["name"]).metadata.resource_version
            ext.replace_custom_resource_definition(doc["metadata"]["name"], doc)
            time.sleep(3)  # the new schema reaches the handlers
        ns = plane.namespace("cost")
        kube = Kube(plane.api, timeout=30, connect_timeout=30)
        costs = measure(plane, kube, ns, args.requests, args.steps)
    finally:
        plane.stop()
    label = "without the CEL rules" if args.without_cel else "CRDs as shipped"
    print(f"kube-apiserver CPU per request, one at a time, {args.requests} of each ({label}):")
    for kind, ms in costs.items():
        print(f"  {kind:<40} {ms:6.2f} ms")
    saved = write_json("apiserver", {"costs_ms": costs, "without_cel": args.without_cel, "steps": args.steps})
    print(f"results: {saved}")


if __name__ == "__main__":
    main()
