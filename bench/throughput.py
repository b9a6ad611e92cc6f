"""Throughput: N workflows x K steps (chains or fan-outs) submitted at once to the controller running as a
subprocess against the local control plane.

Run from the repo root::

    .venv/bin/python -m bench.throughput                       # 20 chains of 5 and 5 fan-outs of 20
    .venv/bin/python -m bench.throughput --chains 200x5 --fanouts 50x20
    .venv/bin/python -m bench.throughput --chains 200x5 --fanouts 0x0 --profile bench/results/tp.prof

Steps are the built-in ``fail`` step with no failure scripted (an ``empty`` that logs each call with
its wall-clock time to ``STEPKIT_CALL_LOG``). Prints, per shape:

- workflows/s and steps/s from the first create to the last workflow seen Success (by a watch);
- hand-off latency p50/p99: from the moment the bench's watch saw a step's last upstream ``Success``
  to the dependent's run call (the call log's time, written as the call returns — an ``empty``-like
  call takes microseconds). The watch sees a write a few ms after it happened, so this slightly
  *under*states the hand-off; it includes the watch delivery to the controller, the workflow
  reconcile, the Pending->Running write and the step queue;
- API mutating requests per step by resource (the API server's ``apiserver_request_total`` before and
  after, the bench's own workflow creates left out; Events are counted once the recorder went quiet);
- controller CPU seconds (``/proc/<pid>/stat`` utime+stime, during the run) and peak RSS (VmHWM).

The controller's limits for the bench: per-kind ``qps`` 10000 (i.e. off), ``concurrency`` 8,
2 workflow workers, ``maxRunningCount`` large, ``throttleQPS`` 0 (no client-side limit): the point is
to find what the engine costs, not its safety limits.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.common import (
    ControllerOptions,
    Plane,
    chain_spec,
    diff_totals,
    engine_writes,
    fanout_spec,
    fmt_ms,
    handoffs,
    load,
    mean_of,
    metric_sum,
    mutating_by_resource,
    percentile,
    run_workflows,
    write_json,
)
from stepkit.builtin.fail import read_call_log


def run_shape(plane: Plane, shape: str, n: int, k: int, options: ControllerOptions,
              timeout: float = 1800.0, apiserver_profile: Path | None = None) -> dict[str, Any]:
    """One throughput run: a fresh namespace and controller; the figures as a dict."""
    spec = chain_spec(k) if shape == "chain" else fanout_spec(k)
    names = [f"{shape}-{i:05d}" for i in range(n)]
    run = run_workflows(plane, f"tp-{shape}", names, spec, options, timeout,
                        apiserver_profile=apiserver_profile)
    watcher, t0, t_end, phases, call_log = run.watcher, run.t0, run.t_end, run.phases, run.call_log
    s0, s1, s2, totals0, totals1 = run.s0, run.s1, run.s2, run.totals0, run.totals1
    load0, load1, cmetrics, dropped, code, ready_s = (
        run.load0, run.load1, run.controller_metrics, run.events_dropped, run.exit_code, run.ready_s)

    elapsed = t_end - t0
    steps = n * k
    calls = read_call_log(call_log)
    run_at: dict[tuple[str, str], float] = {}
    for rec in calls:
        if rec.direction == "run":
            run_at.setdefault((rec.workflow, rec.step), rec.ts)
    success_at = {(wf, st): t for (wf, st, ph), t in watcher.step_phase_at.items() if ph == "Success"}
    hand = handoffs({nm: spec for nm in names}, success_at, run_at)
    # where a hand-off goes: upstream Success seen -> dependent Running seen (the workflow reconcile,
    # its queue wait included) and dependent Running seen -> its run call (the step queue and worker)
    running_at = {(wf, st): t for (wf, st, ph), t in watcher.step_phase_at.items() if ph == "Running"}
    to_running = handoffs({nm: spec for nm in names}, success_at, running_at)
    to_call = [run_at[k] - running_at[k] for k in run_at if k in running_at and k[1] != "s0"]
    first_run = [run_at[(nm, "s0")] - t0 for nm in names if (nm, "s0") in run_at]
    delta = diff_totals(totals0, totals1)
    by_resource = mutating_by_resource(delta)
    conflicts = engine_writes(mutating_by_resource(delta, frozenset({"409"})))
    by_resource["create workflows"] = by_resource.get("create workflows", 0) - n  # the bench's own
    other = {k2: v for k2, v in by_resource.items() if v and k2 not in engine_writes(by_resource)}
    by_resource = engine_writes(by_resource)
    writes_total = sum(by_resource.values())
    return {
        "shape": shape, "workflows": n, "steps_per_workflow": k, "steps": steps,
        "phases": {p: sum(1 for v in phases.values() if v == p) for p in set(phases.values())},
        "elapsed_s": elapsed, "workflows_per_s": n / elapsed, "steps_per_s": steps / elapsed,
        "handoff_p50_s": percentile(hand, 50), "handoff_p99_s": percentile(hand, 99),
        "handoff_max_s": max(hand) if hand else None, "handoffs": len(hand),
        "success_to_running_p50_s": percentile(to_running, 50),
        "success_to_running_p99_s": percentile(to_running, 99),
        "running_to_call_p50_s": percentile(to_call, 50), "running_to_call_p99_s": percentile(to_call, 99),
        "first_run_p50_s": percentile(first_run, 50),
        "run_calls": sum(1 for r in calls if r.direction == "run"),
        "workflow_queue_wait_mean_s": mean_of(cmetrics, "workqueue_queue_duration_seconds", name="workflow"),
        "workflow_reconcile_mean_s": mean_of(cmetrics, "controller_runtime_reconcile_time_seconds",
                                             controller="workflow"),
        "workflow_reconciles": metric_sum(cmetrics, "controller_runtime_reconcile_total",
                                          controller="workflow"),
        "step_queue_wait_mean_s": mean_of(cmetrics, "workqueue_queue_duration_seconds", name="step-fail"),
        "api_writes_by_resource": by_resource, "api_writes_not_engine": other,
        "api_write_conflicts": conflicts, "events_dropped": dropped, "api_writes": writes_total,
        "api_writes_per_step": writes_total / steps,
        "controller_cpu_s": s1.cpu_seconds - s0.cpu_seconds,
        "controller_cpu_s_incl_event_flush": s2.cpu_seconds - s0.cpu_seconds,
        "controller_cpu_ms_per_step": (s1.cpu_seconds - s0.cpu_seconds) / steps * 1000,
        "controller_peak_rss_mib": s2.hwm_bytes / 2**20, "controller_rss_mib": s2.rss_bytes / 2**20,
        "controller_ready_s": ready_s, "controller_exit": code,
        "apiserver_cpu_s": run.plane_cpu.get("kube-apiserver"), "etcd_cpu_s": run.plane_cpu.get("etcd"),
        "harness_cpu_s": run.harness_cpu_s,
        "load_before": load0, "load_after": load1, "options": vars(options),
    }


def report(r: dict[str, Any]) -> None:
    print(f"{r['workflows']} x {r['steps_per_workflow']}-step {r['shape']}s: {r['elapsed_s']:.1f}s  "
          f"{r['workflows_per_s']:.1f} workflows/s  {r['steps_per_s']:.1f} steps/s  "
          f"phases {r['phases']}  (load {r['load_before']:.1f} -> {r['load_after']:.1f})")
    print(f"  hand-off p50 {fmt_ms(r['handoff_p50_s'])}  p99 {fmt_ms(r['handoff_p99_s'])}  "
          f"max {fmt_ms(r['handoff_max_s'] or float('nan'))}  ({r['handoffs']} hand-offs); "
          f"submit -> first run p50 {fmt_ms(r['first_run_p50_s'])}; run calls {r['run_calls']}")
    print(f"  of a hand-off: upstream Success -> dependent Running (workflow queue + reconcile) p50 "
          f"{fmt_ms(r['success_to_running_p50_s'])} p99 {fmt_ms(r['success_to_running_p99_s'])}; "
          f"Running -> run call (step queue + worker) p50 {fmt_ms(r['running_to_call_p50_s'])} "
          f"p99 {fmt_ms(r['running_to_call_p99_s'])}")
    per_step = r["workflow_reconciles"] / r["steps"]
    print(f"  workflow reconciles {r['workflow_reconciles']:.0f} ({per_step:.1f}/step): mean "
          f"{fmt_ms(r['workflow_reconcile_mean_s'])}, mean queue wait "
          f"{fmt_ms(r['workflow_queue_wait_mean_s'])}; "
          f"step queue wait mean {fmt_ms(r['step_queue_wait_mean_s'])}")
    print(f"  API writes per step {r['api_writes_per_step']:.2f} ({r['api_writes']} in all): "
          + ", ".join(f"{k} {v / r['steps']:.2f}" for k, v in r["api_writes_by_resource"].items())
          + f"; of which 409 Conflict: {r['api_write_conflicts'] or 'none'}; "
          f"Events dropped by the recorder (queue full, not written): {r['events_dropped']}")
    print(f"  controller CPU {r['controller_cpu_s']:.1f}s ({r['controller_cpu_ms_per_step']:.1f} ms/step; "
          f"{r['controller_cpu_s_incl_event_flush']:.1f}s incl. the Event flush), "
          f"peak RSS {r['controller_peak_rss_mib']:.0f} MiB, exit {r['controller_exit']}", flush=True)
    if r.get("apiserver_cpu_s") is not None:
        print(f"  control plane CPU during the run: kube-apiserver {r['apiserver_cpu_s']:.1f}s, "
              f"etcd {r['etcd_cpu_s']:.1f}s ({r['apiserver_cpu_s'] / r['steps'] * 1000:.1f} ms of API server "
              f"per step); the bench itself (submit and watch) {r.get('harness_cpu_s', 0.0):.1f}s",
              flush=True)


def parse_size(text: str) -> tuple[int, int]:
    n, _, k = text.partition("x")
    return int(n), int(k or 5)


def add_controller_flags(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--step-concurrency", type=int, default=ControllerOptions.step_concurrency)
    ap.add_argument("--workflow-workers", type=int, default=ControllerOptions.workflow_workers)
    ap.add_argument("--write-concurrency", type=int, default=ControllerOptions.write_concurrency,
                    help="controllerConfig.writeConcurrency (0: no write gate, no priorities)")
    ap.add_argument("--throttle-qps", type=float, default=ControllerOptions.throttle_qps)
    ap.add_argument("--log-level", default=ControllerOptions.log_level)
    ap.add_argument("--no-events", action="store_true", help="controllerConfig.events.enabled: false")
    ap.add_argument("--profile", type=Path,
                    help="run the controller under cProfile (main thread only), write the profile here")
    ap.add_argument("--py-spy", type=Path, help="sample the controller's threads with py-spy (collapsed "
                    "stacks of every thread, waiting included) into this file; needs "
                    "`.venv/bin/pip install py-spy`")
    ap.add_argument("--py-spy-gil", action="store_true", help="py-spy: only samples holding the GIL")
    ap.add_argument("--apiserver-profile", type=Path,
                    help="a Go CPU profile of kube-apiserver over the first 10 s after the submit, per shape "
                         "(<file>.<shape>.pb.gz); read with `go tool pprof -top`")


def controller_options(args: argparse.Namespace) -> ControllerOptions:
    return ControllerOptions(step_concurrency=args.step_concurrency, workflow_workers=args.workflow_workers,
                             write_concurrency=args.write_concurrency,
                             throttle_qps=args.throttle_qps, log_level=args.log_level,
                             events=not args.no_events, profile=args.profile,
                             py_spy=args.py_spy, py_spy_gil=args.py_spy_gil)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chains", type=parse_size, default=(20, 5), metavar="NxK")
    ap.add_argument("--fanouts", type=parse_size, default=(5, 20), metavar="NxK")
    add_controller_flags(ap)
    args = ap.parse_args()
    print(f"starting the control plane (load {load():.1f}) ...", flush=True)
    plane = Plane()
    results = []
    try:
        for shape, (n, k) in (("chain", args.chains), ("fanout", args.fanouts)):
            if n and k:
                prof = (args.apiserver_profile.with_suffix(f".{shape}.pb.gz") if args.apiserver_profile
                        else None)
                r = run_shape(plane, shape, n, k, controller_options(args), apiserver_profile=prof)
                report(r)
                results.append(r)
    finally:
        plane.stop()
    print(f"results: {write_json('throughput', {'runs': results, 'at': time.time()})}")


if __name__ == "__main__":
    main()
