"""``make bench`` / ``python -m bench``: every engine benchmark on one local control plane, a table, and
JSON in ``bench/results/``.

The default size finishes in about two minutes on an idle 2-core machine (more under load)::

    .venv/bin/python -m bench
    .venv/bin/python -m bench --chains 200x5 --fanouts 50x20 --rollback-chains 50x5 --scale 10000

Parts (each also runs on its own: ``python -m bench.throughput`` etc.; see their docstrings):
throughput (chains, fan-outs), floor (the same step count's minimal writes from a bare client, the same
concurrency as the engine's API-writing threads; then the engine's whole happy-path request mix from
that client, which splits the engine/floor ratio into the design's API work and the controller's own
share), rollback (chains, fan-outs), scale (finished
workflows stored before the controller starts). ``--only throughput,floor`` picks parts.
Every figure comes with the load average: on a shared machine, figures taken under load are slower.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Any

from bench import floor, rollback, scale, throughput
from bench.common import Plane, fmt_ms, load, write_json
from bench.throughput import add_controller_flags, controller_options, parse_size

PARTS = ("throughput", "floor", "rollback", "scale")


def throughput_and_floor(plane: Plane, args: argparse.Namespace, options: Any, parts: set[str],
                         out: dict[str, Any], rows: list[tuple[str, str, str]],
                         ratios: dict[tuple[str, str], list[float]]) -> None:
    """One repetition: each throughput run, then at once its floor and request mix (plain, then watched
    as the engine run), so a ratio compares runs taken minutes apart at most. Each ratio also goes to
    ``ratios`` for the summary over repetitions."""
    out.setdefault("throughput", [])
    out.setdefault("floor", [])
    threads = options.workflow_workers + options.step_concurrency

    def ratio_row(label: str, what: str, a: float, b: float, note: str) -> None:
        if not math.isnan(a / b):  # the floor alone has no engine time to compare
            ratios.setdefault((label, what), []).append(a / b)
        rows.append((label, what, f"{a:.1f}s / {b:.1f}s = {a / b:.2f}x  ({note})"))

    def floors_for(r_tp: dict[str, Any]) -> None:
        for watched in (False, True):
            f = floor.run_floor(plane, r_tp["steps"], threads, watched=watched)
            floor.report(f)
            f["engine_over_floor"] = r_tp["elapsed_s"] / f["elapsed_s"]
            f["shape"] = r_tp["shape"]
            out["floor"].append(f)
            what = "floor time, watched as the engine run" if watched else "floor time"
            floor_label = f"floor, {f['steps']} steps ({r_tp['shape']}s)"
            ratio_row(floor_label, f"engine time / {what}", r_tp["elapsed_s"], f["elapsed_s"],
                      f"target <= 1.5; load {f['load_after']:.1f}")
            if r_tp.get("apiserver_cpu_s") and f.get("apiserver_cpu_s"):
                cpu_what = "floor, watched" if watched else "floor"
                rows.append((floor_label, f"kube-apiserver CPU, engine / {cpu_what}",
                             f"{r_tp['apiserver_cpu_s']:.1f}s / {f['apiserver_cpu_s']:.1f}s = "
                             f"{r_tp['apiserver_cpu_s'] / f['apiserver_cpu_s']:.2f}x"))
            if "workflows" not in r_tp:  # the floor alone: no engine run to mirror
                continue
            # The engine's request mix from the same bare client, right after its floor: what the
            # design's API work costs without a controller, and so the controller's own share.
            m = floor.run_request_mix(plane, r_tp["shape"], r_tp["workflows"],
                                      r_tp["steps"] // r_tp["workflows"], threads, watched=watched)
            floor.report_mix(m)
            m["floor_elapsed_s"] = f["elapsed_s"]
            out["floor"].append(m)
            w = ", watched" if watched else ""
            label = f"request mix, {m['workflows']}x{m['steps'] // m['workflows']} {m['shape']}s"
            ratio_row(label, f"request-mix time / floor time{w}", m["elapsed_s"], f["elapsed_s"],
                      "the design's API work alone, no controller")
            ratio_row(label, f"engine time / request-mix time{w}", r_tp["elapsed_s"], m["elapsed_s"],
                      "the controller's own share")

    if "throughput" not in parts:
        if "floor" in parts:
            floors_for({"steps": args.chains[0] * args.chains[1], "elapsed_s": math.nan, "shape": "chain"})
        return
    for shape, (n, k) in (("chain", args.chains), ("fanout", args.fanouts)):
        if not (n and k):
            continue
        r = throughput.run_shape(plane, shape, n, k, options)
        throughput.report(r)
        out["throughput"].append(r)
        label = f"{n}x{k} {shape}s"
        lo = f"load {r['load_before']:.1f}-{r['load_after']:.1f}"
        rows += [
            (label, "workflows/s, steps/s",
             f"{r['workflows_per_s']:.1f}, {r['steps_per_s']:.1f}  ({lo})"),
            (label, "hand-off p50 / p99",
             f"{fmt_ms(r['handoff_p50_s'])} / {fmt_ms(r['handoff_p99_s'])}"
             "  (target < 50 / < 250 ms)"),
            (label, "API writes per step",
             f"{r['api_writes_per_step']:.2f}  (target <= 6) "
             + " ".join(f"{k2.split()[1]}:{v / r['steps']:.1f}"
                        for k2, v in r["api_writes_by_resource"].items())),
            (label, "controller CPU, peak RSS",
             f"{r['controller_cpu_s']:.1f}s ({r['controller_cpu_ms_per_step']:.1f} ms/step), "
             f"{r['controller_peak_rss_mib']:.0f} MiB"),
            (label, "kube-apiserver, etcd CPU",
             f"{r['apiserver_cpu_s']:.1f}s ({r['apiserver_cpu_s'] / r['steps'] * 1000:.1f} ms/step), "
             f"{r['etcd_cpu_s']:.1f}s"),
        ]
        if "floor" in parts:
            floors_for(r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chains", type=parse_size, default=(20, 5), metavar="NxK",
                    help="throughput chains (default 20x5; the acceptance size is 200x5)")
    ap.add_argument("--fanouts", type=parse_size, default=(5, 20), metavar="NxK",
                    help="throughput fan-outs: a root and K-1 leaves (default 5x20; acceptance 50x20)")
    ap.add_argument("--rollback-chains", type=parse_size, default=(5, 5), metavar="NxK")
    ap.add_argument("--rollback-fanouts", type=parse_size, default=(2, 20), metavar="NxK")
    ap.add_argument("--scale", type=int, default=100, metavar="N",
                    help="workflows stored before the controller starts (acceptance: 10000)")
    ap.add_argument("--scale-steps", type=int, default=5)
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {PARTS}")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run throughput and floor N times, each engine run followed by its floors, and "
                         "print the median of each ratio (on a shared machine one run moves by 20-30 %%)")
    add_controller_flags(ap)
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat: at least 1")
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}")
    options = controller_options(args)

    started = time.time()
    print(f"bench: starting the control plane ({os.cpu_count()} CPUs, load {load():.1f}) ...", flush=True)
    plane = Plane()
    out: dict[str, Any] = {"at": started, "cpus": os.cpu_count(), "args": vars(args)}
    rows: list[tuple[str, str, str]] = []
    try:
        ratios: dict[tuple[str, str], list[float]] = {}
        for rep in range(args.repeat):
            if args.repeat > 1:
                print(f"--- repetition {rep + 1} of {args.repeat} (load {load():.1f})", flush=True)
            throughput_and_floor(plane, args, options, parts, out, rows, ratios)
        if args.repeat > 1:
            for (label, what), values in ratios.items():
                rows.append((label, f"{what}, median of {len(values)}",
                             f"{statistics.median(values):.2f}x  "
                             f"(min {min(values):.2f}x, max {max(values):.2f}x)"))
        if "rollback" in parts:
            out["rollback"] = []
            for shape, (n, k) in (("chain", args.rollback_chains), ("fanout", args.rollback_fanouts)):
                if not (n and k):
                    continue
                r = rollback.run_rollback(plane, shape, n, k, options)
                rollback.report(r)
                out["rollback"].append(r)
                rows.append((f"rollback {n}x{k} {shape}s", "failed call -> RollBacked p50 / max",
                             f"{fmt_ms(r['rollback_p50_s'])} / {fmt_ms(r['rollback_max_s'] or math.nan)}  "
                             f"(load {r['load_after']:.1f})"))
        if "scale" in parts and args.scale:
            r = scale.run_scale(plane, args.scale, args.scale_steps, options)
            scale.report(r)
            out["scale"] = r
            label = f"scale {args.scale}x{args.scale_steps}"
            synced = f"{r['synced_s']:.1f}s" if r["synced_s"] is not None else "n/a"
            rows += [
                (label, "synced, ready, first reconciles done",
                 f"{synced}, {r['ready_s']:.1f}s, {r['first_reconciles_done_s']:.1f}s"
                 f"  (load {r['load']:.1f})"),
                (label, "steady RSS, per object",
                 f"{r['steady_rss_mib']:.0f} MiB, {r['rss_per_object_bytes']:.0f} B"
                 "  (target < 300 MiB at 10,000)"),
            ]
    finally:
        plane.stop()
    out["took_s"] = time.time() - started
    print()
    width = max((len(r[0]) for r in rows), default=10)
    width2 = max((len(r[1]) for r in rows), default=10)
    for a, b, c in rows:
        print(f"{a:<{width}}  {b:<{width2}}  {c}")
    print(f"\ntook {out['took_s']:.0f}s; load average now {load():.1f}; results: {write_json('bench', out)}")


if __name__ == "__main__":
    main()
