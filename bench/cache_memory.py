"""Memory of the controller's informer caches for N finished workflows (K=5 steps each), in process:
the same objects as ``bench.scale`` stores (a finished 5-step ``fail`` chain as the engine leaves it),
served as one LIST body, parsed with orjson and handed to ``SharedIndexInformer.replace`` (transform,
freeze, store, the Step owner index) — the path of an informer's first LIST without the API server, so a
change to the informers can be measured in seconds instead of the ~15 minutes ``bench.scale`` needs to
store 60,000 objects.

Run from the repo root::

    .venv/bin/python -m bench.cache_memory                 # 10,000 workflows + 50,000 steps
    .venv/bin/python -m bench.cache_memory --workflows 2000 --tracemalloc

The templates carry no managedFields: the API server sends them and the informers' transform drops them
after parsing, so the real first LIST parses more than this does (``bench.scale`` is the real figure:
steady RSS 635 MiB, peak 942 MiB for 10,000 workflows; this harness: +398 MiB).

Prints RSS before/after and the peak (VmHWM) during the replace, and bytes per object; with
``--tracemalloc`` also the bytes Python holds at the end and at its peak (what is live, as opposed to what
the process keeps from the allocator).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from informers import SharedIndexInformer  # noqa: E402
from informers.store import drop_managed_fields  # noqa: E402
from reconcilers.workflow import OWNER_INDEX, owner_index  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
#: A finished 5-step chain and one of its Steps as the engine leaves them (managedFields dropped).
WORKFLOW: dict[str, Any] = orjson.loads((DATA / "finished-workflow.json").read_bytes())
STEP: dict[str, Any] = orjson.loads((DATA / "finished-step.json").read_bytes())


def status_kb() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) / 1024
    return out


def list_bodies(n: int) -> tuple[bytes, bytes]:
    """The LIST bodies of ``n`` workflows and their 5 steps each (unique names and uids)."""
    wf_raw, st_raw = orjson.dumps(WORKFLOW), orjson.dumps(STEP)
    wf_uid = WORKFLOW["metadata"]["uid"].encode()
    st_uid = STEP["metadata"]["uid"].encode()
    owner_uid = STEP["metadata"]["ownerReferences"][0]["uid"].encode()
    wfs, sts = [], []
    for i in range(n):
        uid = str(uuid.uuid4()).encode()
        name = f"wf-{i:05d}".encode()
        wfs.append(wf_raw.replace(b"wf-00001", name).replace(wf_uid, uid))
        for j in range(5):
            sts.append(st_raw.replace(b"wf-00001", name).replace(b"-s0-", f"-s{j}-".encode())
                       .replace(owner_uid, uid).replace(st_uid, str(uuid.uuid4()).encode()))

    def body(items: list[bytes]) -> bytes:
        return b'{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":"1"},"items":[' + \
            b",".join(items) + b"]}"

    return body(wfs), body(sts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workflows", type=int, default=10_000)
    ap.add_argument("--tracemalloc", action="store_true")
    args = ap.parse_args()
    n = args.workflows
    wf_body, st_body = list_bodies(n)
    gc.collect()
    before = status_kb()
    if args.tracemalloc:
        import tracemalloc
        tracemalloc.start()
    t0 = time.perf_counter()
    workflows = SharedIndexInformer(None, name="workflows", transform=drop_managed_fields)  # type: ignore[arg-type]
    steps = SharedIndexInformer(None, name="steps", transform=drop_managed_fields,  # type: ignore[arg-type]
                                indexers={OWNER_INDEX: owner_index})
    workflows.replace(orjson.loads(wf_body)["items"], "1")
    steps.replace(orjson.loads(st_body)["items"], "1")
    took = time.perf_counter() - t0
    gc.collect()
    after = status_kb()
    objects = 6 * n
    grew = after["VmRSS"] - before["VmRSS"]
    print(f"{n} workflows + {5 * n} steps cached in {took:.1f}s: RSS {before['VmRSS']:.0f} -> "
          f"{after['VmRSS']:.0f} MiB (+{grew:.0f}), peak {after['VmHWM']:.0f} MiB; "
          f"{grew * 2**20 / objects:.0f} bytes/object "
          f"(the LIST bodies, {len(wf_body) + len(st_body) >> 20} MiB, were in RSS before)")
    if args.tracemalloc:
        cur, peak = tracemalloc.get_traced_memory()
        print(f"  Python allocations live at the end {cur / 2**20:.0f} MiB ({cur / objects:.0f} "
              f"bytes/object), at their peak {peak / 2**20:.0f} MiB")
    print(f"  (cached: {len(workflows.indexer.list())} workflows, {len(steps.indexer.list())} steps)")


if __name__ == "__main__":
    main()
