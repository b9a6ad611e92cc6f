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
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import GROUP, VERSION, Plane, Watcher, load, make_api, write_json
from reconcilers.kube import STEPS, Kube


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


def run_floor(plane: Plane, steps: int, threads: int, steps_per_workflow: int = 5, *,
              watched: bool = False) -> dict[str, Any]:
    """``watched``: with the throughput bench's own Watcher on the namespace, as during an engine run
    (it times the hand-offs; the API server serves its two watch streams on top of the engine's)."""
    ns = plane.namespace("floor")
    watcher = Watcher(plane.api, ns).start() if watched else None
    api = make_api(plane.kubeconfig, pool=threads + 2)
    kube = Kube(api, timeout=30, connect_timeout=30)

    def one(i: int) -> None:
        wf, st = f"wf-{i // steps_per_workflow:05d}", f"s{i % steps_per_workflow}"
        created = kube.create(STEPS, ns, step_object(ns, wf, st))
        name = created["metadata"]["name"]
        running = kube.patch_status(STEPS, ns, name, {"phase": "Running"},
                                    resource_version=created["metadata"]["resourceVersion"])
        kube.patch_status(STEPS, ns, name,
                          {"phase": "Success", "resource": {"id": f"fail-{i:012d}"}},
                          resource_version=running["metadata"]["resourceVersion"])

    load0 = load()
    cpu0 = plane.cpu_seconds()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(steps)))
    elapsed = time.perf_counter() - t0
    cpu = plane.cpu_used(cpu0)
    api.close()  # type: ignore[no-untyped-call]
    if watcher is not None:
        watcher.stop()
    return {"steps": steps, "threads": threads, "writes": 3 * steps, "elapsed_s": elapsed, "watched": watched,
            "steps_per_s": steps / elapsed, "writes_per_s": 3 * steps / elapsed,
            "load_before": load0, "load_after": load(),
            "apiserver_cpu_s": cpu.get("kube-apiserver"), "etcd_cpu_s": cpu.get("etcd")}


def report(r: dict[str, Any]) -> None:
    watched = " (watched like the engine run)" if r.get("watched") else ""
    print(f"floor{watched}: {r['steps']} steps x 3 writes from {r['threads']} threads: "
          f"{r['elapsed_s']:.1f}s  "
          f"{r['steps_per_s']:.0f} steps/s  {r['writes_per_s']:.0f} writes/s  "
          f"(load {r['load_before']:.1f} -> {r['load_after']:.1f}); "
          f"kube-apiserver {r['apiserver_cpu_s']:.1f} CPU s, etcd {r['etcd_cpu_s']:.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=10)
    args = ap.parse_args()
    plane = Plane()
    try:
        r = run_floor(plane, args.steps, args.threads)
        report(r)
    finally:
        plane.stop()
    print(f"results: {write_json('floor', r)}")


if __name__ == "__main__":
    main()
