"""Rollback: how long the engine takes to roll back a K-step chain, and a wide fan-out, after the last
step fails.

Run from the repo root::

    .venv/bin/python -m bench.rollback                          # 10 chains of 5, 5 fan-outs of 20
    .venv/bin/python -m bench.rollback --chains 50x10 --fanouts 10x50

Each workflow's last step (the chain's tail; one leaf of the fan-out, ``s{K-1}``) fails permanently
on its first run (the ``fail`` step, ``runError: permanent``). The rollback time runs from that failed
call (its call-log time) to the moment the bench's watch sees the workflow ``RollBacked``: for a chain,
K-1 rollback calls one after the other (each waits for its dependent to be RollBacked) plus the failed
step's own; for a fan-out, the other K-2 leaves roll back together (they may still be running when the
failure lands), then the root. Printed: p50 and max over the workflows, the rollback calls made, the
controller's CPU, and the API writes per step.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.common import (
    ControllerOptions,
    Plane,
    chain_spec,
    diff_totals,
    engine_writes,
    fanout_spec,
    fmt_ms,
    mutating_by_resource,
    percentile,
    run_workflows,
    write_json,
)
from bench.throughput import add_controller_flags, controller_options, parse_size
from stepkit.builtin.fail import read_call_log


def run_rollback(plane: Plane, shape: str, n: int, k: int, options: ControllerOptions,
                 timeout: float = 1800.0) -> dict[str, Any]:
    spec = (chain_spec if shape == "chain" else fanout_spec)(k, fail_last=True)
    names = [f"rb-{shape}-{i:05d}" for i in range(n)]
    run = run_workflows(plane, f"rb-{shape}", names, spec, options, timeout, profile=False)
    watcher, t0, t_end, phases, call_log = run.watcher, run.t0, run.t_end, run.phases, run.call_log
    s0, s1, totals0, totals1, load0, load1, code = (
        run.s0, run.s1, run.totals0, run.totals1, run.load0, run.load1, run.exit_code)

    calls = read_call_log(call_log)
    failed_at = {r.workflow: r.ts for r in calls if r.direction == "run" and r.outcome == "permanent"}
    rolled = {nm: t for (nm, ph), t in watcher.wf_phase_at.items() if ph == "RollBacked"}
    times = [rolled[nm] - failed_at[nm] for nm in names if nm in rolled and nm in failed_at]
    writes = mutating_by_resource(diff_totals(totals0, totals1))
    writes["create workflows"] = writes.get("create workflows", 0) - n
    writes = engine_writes(writes)
    return {
        "shape": shape, "workflows": n, "steps_per_workflow": k,
        "phases": {p: sum(1 for v in phases.values() if v == p) for p in set(phases.values())},
        "elapsed_s": t_end - t0,
        "rollback_p50_s": percentile(times, 50), "rollback_max_s": max(times) if times else None,
        "rollback_calls": sum(1 for r in calls if r.direction == "rollback"),
        "run_calls": sum(1 for r in calls if r.direction == "run"),
        "api_writes_per_step": sum(writes.values()) / (n * k), "api_writes_by_resource": writes,
        "controller_cpu_s": s1.cpu_seconds - s0.cpu_seconds, "controller_peak_rss_mib": s1.hwm_bytes / 2**20,
        "controller_exit": code, "load_before": load0, "load_after": load1,
    }


def report(r: dict[str, Any]) -> None:
    print(f"rollback of {r['workflows']} x {r['steps_per_workflow']}-step {r['shape']}s: "
          f"failed call -> RollBacked p50 {fmt_ms(r['rollback_p50_s'])} max "
          f"{fmt_ms(r['rollback_max_s'] or float('nan'))}; all done in {r['elapsed_s']:.1f}s; "
          f"phases {r['phases']}  (load {r['load_before']:.1f} -> {r['load_after']:.1f})")
    print(f"  {r['run_calls']} run calls, {r['rollback_calls']} rollback calls; "
          f"API writes per step {r['api_writes_per_step']:.2f}: "
          + ", ".join(f"{k} {v}" for k, v in r["api_writes_by_resource"].items()))
    print(f"  controller CPU {r['controller_cpu_s']:.1f}s, peak RSS {r['controller_peak_rss_mib']:.0f} MiB, "
          f"exit {r['controller_exit']}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chains", type=parse_size, default=(10, 5), metavar="NxK")
    ap.add_argument("--fanouts", type=parse_size, default=(5, 20), metavar="NxK")
    add_controller_flags(ap)
    args = ap.parse_args()
    plane = Plane()
    results = []
    try:
        for shape, (n, k) in (("chain", args.chains), ("fanout", args.fanouts)):
            if n and k:
                r = run_rollback(plane, shape, n, k, controller_options(args))
                report(r)
                results.append(r)
    finally:
        plane.stop()
    print(f"results: {write_json('rollback', {'runs': results, 'at': time.time()})}")


if __name__ == "__main__":
    main()
