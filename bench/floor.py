"""The API server's floor for the engine's work: the minimal writes one step needs — create the Step
object, then the status writes for Running and for Success, each with a resourceVersion precondition —
issued by a bare client (the engine's own ``reconcilers.kube.Kube``: the same HTTP path and JSON codec)
from T threads, for S steps. No controller runs.

Run from the repo root::

    .venv/bin/python -m bench.floor                        # 100 steps, 10 threads
    .venv/bin/python -m bench.floor --steps 1000 --threads 10

``engine time / floor time`` (printed by ``python -m bench``) compares the engine's end-to-end time for
S steps with this. T defaults to the engine's API-writing threads in the bench's configuration
(2 workflow workers + 8 step workers). The floor leaves out what the engine must also do (the workflow's
own status writes, Events, the watches, the hand-offs between dependent steps), so a ratio of 1 is not
reachable; the target is <= 1.5.

**The request mix** (``--mix``, and a row of ``python -m bench``): the same bare client issues every
request a workflow needs on the engine's happy path — the Workflow create (the user's), the finalizer
patch, the status writes for Running and for Success, the two Events (Started, Succeeded), and for each
step the floor's three writes — with no controller. It is what the design's API work costs by itself:
``request-mix time / floor time`` is the part of the engine's ratio no controller can remove, and
``engine time / request-mix time`` is the controller's own share (its CPU on the same two cores, its
watches, its hand-offs).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import (
    GROUP,
    VERSION,
    Plane,
    Watcher,
    chain_spec,
    fanout_spec,
    load,
    make_api,
    workflow_body,
    write_json,
)
from informers import Resource
from reconcilers.kube import STEPS, WORKFLOWS, Kube

EVENTS = Resource("", "v1", "events")
FINALIZER = "workflow.example.com/rollback"


def step_object(ns: str, wf: str, step: str) -> dict[str, Any]:
    """A Step object like the engine creates (labels, annotation, finalizer, controller ownerReference)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Step",
        "metadata": {
            "name": f"{wf}-{step}", "namespace": ns,
            "labels": {"workflow": wf, "step": step},
            "annotations": {"workflow.example.com/step": step},
            "finalizers": ["workflow.example.com/rollback"],
            "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workflow", "name": wf,
                                 "uid": "00000000-0000-0000-0000-000000000000", "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {"type": "fail", "parameters": {}, "rollbackPolicy": "PreserveOnFailure",
                 "retryPolicy": {"runRetryLimit": 1, "runRetryPeriodSeconds": 1,
                                 "rollbackRetryLimit": 1, "rollbackRetryPeriodSeconds": 1}},
    }


def _step_writes(kube: Kube, ns: str, wf: str, step: str, resource_id: str) -> None:
    """One step's minimal writes: create, then the status writes for Running and Success, each with the
    resourceVersion the previous answer gave as its precondition."""
    created = kube.create(STEPS, ns, step_object(ns, wf, step))
    name = created["metadata"]["name"]
    running = kube.patch_status(STEPS, ns, name, {"phase": "Running"},
                                resource_version=created["metadata"]["resourceVersion"])
    kube.patch_status(STEPS, ns, name, {"phase": "Success", "resource": {"id": resource_id}},
                      resource_version=running["metadata"]["resourceVersion"])


def _bare_client_run(plane: Plane, ns_prefix: str, threads: int, watched: bool, count: int,
                     one: Callable[[Kube, str, int], None]) -> dict[str, Any]:
    """``one(kube, namespace, i)`` for i in ``range(count)`` from ``threads`` threads of a bare client in
    a fresh namespace (with the throughput bench's Watcher if ``watched``): the elapsed time, the load
    and the CPU seconds of the control plane and of this process."""
    ns = plane.namespace(ns_prefix)
    watcher = Watcher(plane.api, ns).start() if watched else None
    api = make_api(plane.kubeconfig, pool=threads + 2)
    kube = Kube(api, timeout=30, connect_timeout=30)
    load0 = load()
    cpu0 = plane.cpu_seconds()
    harness0 = time.process_time()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: one(kube, ns, i), range(count)))
    elapsed = time.perf_counter() - t0
    harness_cpu = time.process_time() - harness0
    cpu = plane.cpu_used(cpu0)
    api.close()  # type: ignore[no-untyped-call]
    if watcher is not None:
        watcher.stop()
    return {"threads": threads, "watched": watched, "elapsed_s": elapsed, "load_before": load0,
            "load_after": load(), "apiserver_cpu_s": cpu.get("kube-apiserver"), "etcd_cpu_s": cpu.get("etcd"),
            "harness_cpu_s": harness_cpu}


def run_floor(plane: Plane, steps: int, threads: int, steps_per_workflow: int = 5, *,
              watched: bool = False) -> dict[str, Any]:
    """``watched``: with the throughput bench's own Watcher on the namespace, as during an engine run
    (it times the hand-offs; the API server serves its two watch streams on top of the engine's)."""
    def one(kube: Kube, ns: str, i: int) -> None:
        _step_writes(kube, ns, f"wf-{i // steps_per_workflow:05d}", f"s{i % steps_per_workflow}",
                     f"fail-{i:012d}")

    r = _bare_client_run(plane, "floor", threads, watched, steps, one)
    elapsed = r["elapsed_s"]
    return {**r, "steps": steps, "writes": 3 * steps, "steps_per_s": steps / elapsed,
            "writes_per_s": 3 * steps / elapsed}


def mix_plan(k: int) -> list[str]:
    """The requests of one ``k``-step workflow on the engine's happy path, in order (what
    :func:`run_request_mix` issues; the engine's own counts are printed by the throughput bench)."""
    steps = ["create step", "patch step status (Running)", "patch step status (Success)"] * k
    return ["create workflow", "patch workflow (finalizer)", "patch workflow status (Running)",
            "create event (Started)", *steps, "patch workflow status (Success)", "create event (Succeeded)"]


def _event(ns: str, wf: str, reason: str, message: str) -> dict[str, Any]:
    return {"metadata": {"generateName": f"{wf}."}, "reason": reason, "message": message, "type": "Normal",
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workflow", "name": wf,
                               "namespace": ns},
            "source": {"component": "workflow-controller"}}


def run_request_mix(plane: Plane, shape: str, n: int, k: int, threads: int, *,
                    watched: bool = False) -> dict[str, Any]:
    """The engine's happy-path requests for ``n`` workflows of ``k`` steps (:func:`mix_plan`), issued by a
    bare client from ``threads`` threads (a workflow's requests in order on one thread), no controller.
    Status bodies are shaped like the engine's (phase, times, the SpecValid condition, step counts)."""
    spec = chain_spec(k) if shape == "chain" else fanout_spec(k)
    stamp = "2026-01-01T00:00:00.000000Z"

    def one(kube: Kube, ns: str, i: int) -> None:
        wf = f"wf-{i:05d}"
        obj = kube.create(WORKFLOWS, ns, workflow_body(wf, spec))
        obj = kube.patch(WORKFLOWS, ns, wf, {"metadata": {"finalizers": [FINALIZER]}},
                         resource_version=obj["metadata"]["resourceVersion"])
        obj = kube.patch_status(WORKFLOWS, ns, wf, {
            "phase": "Running", "startedAt": stamp, "observedGeneration": 1,
            "conditions": [{"type": "SpecValid", "status": "True", "reason": "Valid",
                            "lastTransitionTime": stamp}],
            "stepPhases": {"Pending": k, "Running": 0, "Success": 0, "RollingBack": 0, "RollBacked": 0,
                           "Failed": 0}}, resource_version=obj["metadata"]["resourceVersion"])
        kube.create(EVENTS, ns, _event(ns, wf, "Started", "workflow started"))
        for j in range(k):
            _step_writes(kube, ns, wf, f"s{j}", f"fail-{i:06d}{j:06d}")
        kube.patch_status(WORKFLOWS, ns, wf, {"phase": "Success", "finishedAt": stamp,
                                              "stepPhases": {"Pending": 0, "Success": k}},
                          resource_version=obj["metadata"]["resourceVersion"])
        kube.create(EVENTS, ns, _event(ns, wf, "Succeeded", "workflow succeeded"))

    r = _bare_client_run(plane, "mix", threads, watched, n, one)
    requests = n * len(mix_plan(k))
    return {**r, "mix": True, "shape": shape, "workflows": n, "steps": n * k, "requests": requests,
            "requests_per_s": requests / r["elapsed_s"]}


def report_mix(r: dict[str, Any]) -> None:
    watched = " (watched like the engine run)" if r.get("watched") else ""
    print(f"request mix{watched}: {r['workflows']} x {r['steps'] // r['workflows']}-step {r['shape']}s, "
          f"{r['requests']} requests from {r['threads']} threads, no controller: {r['elapsed_s']:.1f}s  "
          f"(load {r['load_before']:.1f} -> {r['load_after']:.1f}); "
          f"kube-apiserver {r['apiserver_cpu_s']:.1f} CPU s, etcd {r['etcd_cpu_s']:.1f}, "
          f"this client (threads and watch) {r['harness_cpu_s']:.1f}",
          flush=True)


def report(r: dict[str, Any]) -> None:
    watched = " (watched like the engine run)" if r.get("watched") else ""
    print(f"floor{watched}: {r['steps']} steps x 3 writes from {r['threads']} threads: "
          f"{r['elapsed_s']:.1f}s  "
          f"{r['steps_per_s']:.0f} steps/s  {r['writes_per_s']:.0f} writes/s  "
          f"(load {r['load_before']:.1f} -> {r['load_after']:.1f}); "
          f"kube-apiserver {r['apiserver_cpu_s']:.1f} CPU s, etcd {r['etcd_cpu_s']:.1f}, "
          f"this client (threads and watch) {r['harness_cpu_s']:.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=10)
    ap.add_argument("--mix", metavar="SHAPE:NxK",
                    help="also the request mix, e.g. chain:200x5 or fanout:50x20")
    args = ap.parse_args()
    plane = Plane()
    try:
        r = run_floor(plane, args.steps, args.threads)
        report(r)
        if args.mix:
            shape, _, size = args.mix.partition(":")
            n, _, k = size.partition("x")
            if shape not in ("chain", "fanout") or not (n.isdigit() and k.isdigit()):
                ap.error(f"--mix: expected chain:NxK or fanout:NxK, got {args.mix!r}")
            r["request_mix"] = run_request_mix(plane, shape, int(n), int(k), args.threads)
            report_mix(r["request_mix"])
    finally:
        plane.stop()
    print(f"results: {write_json('floor', r)}")


if __name__ == "__main__":
    main()
