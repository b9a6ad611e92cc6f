"""Scale: N finished workflows of K steps each already stored when the controller starts — time until
its caches are synced, its steady-state RSS and RSS per cached object.

Run from the repo root::

    .venv/bin/python -m bench.scale                        # 500 workflows x 5 steps
    .venv/bin/python -m bench.scale --workflows 10000      # the acceptance size: 50,000 steps

How the objects are stored: one template workflow (a K-step chain of ``fail`` steps) runs to Success
through a controller (whose RSS on the then empty namespace is the baseline); the bench reads the
finished Workflow and Step objects and clones them N times with a bare client — create + status write
for the Workflow and each Step, ownerReferences pointing at the clone's uid, names as the engine derives
them — so the stored state is exactly what the engine leaves behind, without running 50,000 steps.
Then a fresh controller starts. Printed:

- the create rate (the bench's own, from 32 threads);
- seconds from process start to the ``caches synced`` log line and to a passing ``/readyz`` (with
  ``--no-leader-elect`` the health server answers ready before the engine starts — a standby counts as
  ready — so /readyz can pass before the caches synced: the log line is the figure to read);
- seconds until the first reconcile of every workflow is done (the workflow queue drained: the
  controller's ``workqueue_depth{name="workflow"}`` is 0 and no reconcile was counted for 2 s);
- the API writes that start-up cost (finished workflows should cost none);
- steady-state RSS (VmRSS 5 s after idle), peak RSS (VmHWM), and (steady - baseline) / objects.
"""

from __future__ import annotations

import argparse
import copy
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import (
    Controller,
    ControllerOptions,
    Plane,
    Watcher,
    chain_spec,
    diff_totals,
    engine_writes,
    load,
    make_api,
    metric_sum,
    mutating_by_resource,
    submit,
    workflow_body,
    write_json,
)
from bench.throughput import add_controller_flags, controller_options
from reconcilers.kube import STEPS, WORKFLOWS, Kube
from reconcilers.state_machine.naming import step_object_name

_STRIP = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink")


def _clean_meta(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in _STRIP}


def populate(plane: Plane, ns: str, template_wf: dict[str, Any], template_steps: list[dict[str, Any]],
             n: int, threads: int = 32) -> float:
    """Store ``n`` clones of the finished template; returns the seconds it took."""
    api = make_api(plane.kubeconfig, pool=threads + 2)
    kube = Kube(api, timeout=60, connect_timeout=30)
    tmpl_name = template_wf["metadata"]["name"]
    done = [0]
    lock = threading.Lock()

    def one(i: int) -> None:
        name = f"wf-{i:05d}"
        wf = copy.deepcopy(template_wf)
        wf["metadata"] = {**_clean_meta(wf["metadata"]), "name": name, "namespace": ns}
        status = wf.pop("status", None)
        created = kube.create(WORKFLOWS, ns, wf)
        uid = created["metadata"]["uid"]
        if status:
            kube.patch_status(WORKFLOWS, ns, name, status)
        for st in template_steps:
            step_name = st["metadata"]["labels"]["step"]
            body = copy.deepcopy(st)
            meta = _clean_meta(body["metadata"])
            meta["name"] = step_object_name(name, step_name)
            meta["namespace"] = ns
            meta["labels"] = {**meta.get("labels", {}), "workflow": name}
            meta["ownerReferences"] = [{**ref, "name": name, "uid": uid}
                                       for ref in meta.get("ownerReferences", [])]
            body["metadata"] = meta
            st_status = body.pop("status", None)
            kube.create(STEPS, ns, body)
            if st_status:
                kube.patch_status(STEPS, ns, meta["name"], _rename(st_status, tmpl_name, name))
        with lock:
            done[0] += 1
            if done[0] % 1000 == 0:
                print(f"  ... {done[0]} workflows stored (load {load():.1f})", flush=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(n)))
    api.close()  # type: ignore[no-untyped-call]
    return time.perf_counter() - t0


def _rename(status: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    out: dict[str, Any] = copy.deepcopy(status)
    return out if old == new else _replace_strings(out, re.compile(re.escape(old)), new)


def _replace_strings(value: Any, pattern: re.Pattern[str], new: str) -> Any:
    if isinstance(value, dict):
        return {k: _replace_strings(v, pattern, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_strings(v, pattern, new) for v in value]
    return pattern.sub(new, value) if isinstance(value, str) else value


def wait_synced(ctrl: Controller, timeout: float) -> float:
    """Seconds from the controller's start to its ``caches synced`` log line."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        at = ctrl.log_time("caches synced")
        if at is not None:
            return at - ctrl.started_at
        if ctrl.proc is not None and ctrl.proc.poll() is not None:
            raise RuntimeError(f"controller exited: {ctrl.tail()}")
        time.sleep(0.25)
    raise TimeoutError(f"no 'caches synced' after {timeout}s")


def wait_idle(ctrl: Controller, workflows: int, timeout: float, quiet: float = 2.0) -> float:
    """Seconds (since the controller started) until every workflow was reconciled at least once, the
    workflow queue is empty and no reconcile was counted for ``quiet`` seconds."""
    end = time.monotonic() + timeout
    last = -1.0
    last_change = time.time()
    while time.monotonic() < end:
        try:
            text = ctrl.metrics()
        except OSError:
            time.sleep(0.5)
            continue
        depth = metric_sum(text, "workqueue_depth", name="workflow")
        reconciles = metric_sum(text, "controller_runtime_reconcile_total", controller="workflow")
        if reconciles != last:
            last, last_change = reconciles, time.time()
        elif reconciles >= workflows and depth == 0 and time.time() - last_change >= quiet:
            return last_change - ctrl.started_at
        time.sleep(0.25)
    raise TimeoutError(f"controller not idle after {timeout}s")


def run_scale(plane: Plane, n: int, k: int, options: ControllerOptions,
              timeout: float = 3600.0) -> dict[str, Any]:
    ns = plane.namespace("scale")
    # 1. baseline controller on the empty namespace; it runs the template workflow
    base = Controller(plane.kubeconfig, ns, options).start()
    try:
        base.wait_ready()
        time.sleep(2)
        baseline = base.stats()
        watcher = Watcher(plane.api, ns).start()
        submit(plane.api, ns, [workflow_body("tmpl", chain_spec(k))])
        watcher.wait_terminal(["tmpl"], 120)
        watcher.stop()
        time.sleep(1)
    finally:
        base.stop()
    kube = Kube(plane.api, timeout=30)
    tmpl = kube.get(WORKFLOWS, ns, "tmpl")
    steps = kube._call("GET", f"{STEPS.path(ns)}?labelSelector=workflow%3Dtmpl")["items"]
    if (tmpl.get("status") or {}).get("phase") != "Success" or len(steps) != k:
        raise RuntimeError(f"the template workflow did not finish: {tmpl.get('status')}")

    # 2. store N clones with the controller stopped
    print(f"  storing {n} workflows x {k} steps (load {load():.1f}) ...", flush=True)
    stored_s = populate(plane, ns, tmpl, steps, n)
    objects = n * (1 + k)
    print(f"  stored {objects} objects in {stored_s:.0f}s ({n * 2 * (1 + k) / stored_s:.0f} writes/s; "
          f"load {load():.1f})", flush=True)

    # 3. a fresh controller
    totals0 = plane.request_totals()
    ctrl = Controller(plane.kubeconfig, ns, options).start()
    try:
        ready_s = ctrl.wait_ready(timeout)
        synced_s = wait_synced(ctrl, timeout)
        idle_s = wait_idle(ctrl, n + 1, timeout)
        time.sleep(5)
        steady = ctrl.stats()
        load1 = load()
        totals1 = plane.settled_totals()
    finally:
        code = ctrl.stop()
    writes = mutating_by_resource(diff_totals(totals0, totals1))
    writes = engine_writes(writes)
    return {
        "workflows": n, "steps_per_workflow": k, "objects": objects + k + 1,
        "store_s": stored_s,
        "synced_s": synced_s, "ready_s": ready_s,
        "first_reconciles_done_s": idle_s,
        "startup_api_writes": writes,
        "baseline_rss_mib": baseline.rss_bytes / 2**20, "steady_rss_mib": steady.rss_bytes / 2**20,
        "peak_rss_mib": steady.hwm_bytes / 2**20,
        "rss_per_object_bytes": (steady.rss_bytes - baseline.rss_bytes) / (objects + k + 1),
        "controller_cpu_s": steady.cpu_seconds, "controller_exit": code, "load": load1,
    }


def report(r: dict[str, Any]) -> None:
    synced = f"{r['synced_s']:.1f}s" if r["synced_s"] is not None else "n/a"
    print(f"scale: {r['workflows']} workflows x {r['steps_per_workflow']} steps stored "
          f"({r['objects']} objects): "
          f"caches synced {synced}, /readyz {r['ready_s']:.1f}s, first reconciles done "
          f"{r['first_reconciles_done_s']:.1f}s after start  (load {r['load']:.1f})")
    print(f"  steady RSS {r['steady_rss_mib']:.0f} MiB (baseline {r['baseline_rss_mib']:.0f} MiB, "
          f"peak {r['peak_rss_mib']:.0f} MiB), {r['rss_per_object_bytes']:.0f} bytes/object; "
          f"controller CPU {r['controller_cpu_s']:.1f}s; "
          f"start-up API writes {r['startup_api_writes'] or 'none'}; "
          f"exit {r['controller_exit']}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workflows", type=int, default=500)
    ap.add_argument("--steps", type=int, default=5)
    add_controller_flags(ap)
    args = ap.parse_args()
    plane = Plane()
    try:
        r = run_scale(plane, args.workflows, args.steps, controller_options(args))
        report(r)
    finally:
        plane.stop()
    print(f"results: {write_json('scale', r)}")


if __name__ == "__main__":
    main()
