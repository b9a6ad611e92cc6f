"""Memory of the controller's informer caches for N finished workflows (K=5 steps each), in process:
the same objects as ``bench.scale`` stores (a finished 5-step ``fail`` chain as the engine leaves it),
served as LIST pages of 500 (JSON bytes, parsed with orjson per page as ``ApiListerWatcher`` does; the
API server pages the reflector's default consistent lists, not ``RV="0"`` ones) to two
started ``SharedIndexInformer``s (the reflector's paged first LIST, transform, store, the Step owner
index), with one no-op event handler each as the engine has — the path of an informer's first LIST
without the API server, so a change to the informers can be measured in seconds instead of the ~15
minutes ``bench.scale`` needs to store 60,000 objects. Storage mode: compact (the factory's default) or
``--plain``.

Run from the repo root::

    .venv/bin/python -m bench.cache_memory                 # 10,000 workflows + 50,000 steps
    .venv/bin/python -m bench.cache_memory --workflows 2000 --tracemalloc
    .venv/bin/python -m bench.cache_memory --plain         # the plain (objects, not bytes) store

The templates carry no managedFields: the API server sends them and the informers' transform drops them
after parsing, so the real first LIST parses more than this does (``bench.scale`` is the real figure).
Figures for 10,000 workflows (2026-11-30, 2 shared cores): plain store before the compact mode +413 MiB
RSS (272 MiB live, 380 MiB at the peak); plain now +304 MiB; compact +96 MiB (89 MiB live, 91 MiB peak).

Prints RSS before/after and the peak (VmHWM) during the LIST, and bytes per object; with
``--tracemalloc`` also the bytes Python holds at the end and at its peak (what is live, as opposed to what
the process keeps from the allocator); then the read cost: µs per ``get_by_key`` of a Workflow and of a
Step, and per ``by_index(OWNER_INDEX)`` (a workflow's 5 Steps), as a reconcile reads them.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from informers import ListOptions, ListPage, SharedIndexInformer  # noqa: E402
from informers.shared_informer import ResourceEventHandlerFuncs  # noqa: E402
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


def list_items(n: int) -> tuple[list[bytes], list[bytes]]:
    """The JSON of ``n`` workflows and of their 5 steps each (unique names and uids)."""
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
    return wfs, sts


class PagedLister:
    """A ListerWatcher serving LIST pages of JSON bytes (parsed per request, as ``ApiListerWatcher``
    does) and a watch that stays silent until closed."""

    def __init__(self, items: list[bytes], page_size: int = 500) -> None:
        head = b'{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":"1"%s},"items":[%s]}'
        self.pages = [head % (b',"continue":"%d"' % (i + page_size) if i + page_size < len(items) else b"",
                              b",".join(items[i:i + page_size])) for i in range(0, len(items), page_size)]
        self.page_size = page_size

    def list(self, options: ListOptions) -> ListPage:
        start = int(options.continue_token or 0)
        body = orjson.loads(self.pages[start // self.page_size])
        return ListPage(body["items"], body["metadata"]["resourceVersion"], body["metadata"].get("continue"))

    def watch(self, options: ListOptions, *, idle_timeout: float) -> _Silent:
        return _Silent()


class _Silent:
    def __init__(self) -> None:
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        self._closed.wait()
        return iter(())

    def close(self) -> None:
        self._closed.set()


def per_read_us(fn: Any, args: list[Any]) -> float:
    t0 = time.perf_counter()
    for a in args:
        fn(*a)
    return (time.perf_counter() - t0) / len(args) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workflows", type=int, default=10_000)
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--plain", action="store_true", help="the plain store (objects) instead of compact")
    args = ap.parse_args()
    n = args.workflows
    wf_items, st_items = list_items(n)
    wf_lw, st_lw = PagedLister(wf_items), PagedLister(st_items)
    body_mib = (sum(map(len, wf_lw.pages)) + sum(map(len, st_lw.pages))) >> 20
    del wf_items, st_items
    gc.collect()
    before = status_kb()
    if args.tracemalloc:
        import tracemalloc
        tracemalloc.start()
    t0 = time.perf_counter()
    compact = not args.plain
    workflows = SharedIndexInformer(wf_lw, name="workflows", transform=drop_managed_fields, compact=compact)
    steps = SharedIndexInformer(st_lw, name="steps", transform=drop_managed_fields,
                                indexers={OWNER_INDEX: owner_index}, compact=compact)
    for informer in (workflows, steps):  # the engine's handlers look at the objects; these only receive them
        informer.add_event_handler(ResourceEventHandlerFuncs(add_func=lambda obj, initial: None))
        informer.start()
        informer.wait_for_sync()
    took = time.perf_counter() - t0
    gc.collect()
    after = status_kb()
    objects = 6 * n
    grew = after["VmRSS"] - before["VmRSS"]
    print(f"{'compact' if compact else 'plain'}: {n} workflows + {5 * n} steps cached in {took:.1f}s: RSS "
          f"{before['VmRSS']:.0f} -> {after['VmRSS']:.0f} MiB (+{grew:.0f}), peak {after['VmHWM']:.0f} MiB; "
          f"{grew * 2**20 / objects:.0f} bytes/object (the LIST pages, {body_mib} MiB, were in RSS before)")
    if args.tracemalloc:
        cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"  Python allocations live at the end {cur / 2**20:.0f} MiB ({cur / objects:.0f} "
              f"bytes/object), at their peak {peak / 2**20:.0f} MiB")
    print(f"  (cached: {len(workflows.indexer)} workflows, {len(steps.indexer)} steps)")
    rng = random.Random(1)
    wf_keys = [(k,) for k in rng.sample(workflows.indexer.list_keys(), min(n, 2000))]
    st_keys = [(k,) for k in rng.sample(steps.indexer.list_keys(), min(5 * n, 2000))]
    wf_us = per_read_us(workflows.indexer.get_by_key, wf_keys)
    st_us = per_read_us(steps.indexer.get_by_key, st_keys)
    owned_us = per_read_us(lambda k: steps.indexer.by_index(OWNER_INDEX, k), wf_keys)
    print(f"  read cost: get_by_key {wf_us:.1f} µs per Workflow, {st_us:.1f} µs per Step; "
          f"by_index(OWNER_INDEX) {owned_us:.1f} µs per workflow (5 Steps)")
    workflows.stop()
    steps.stop()


if __name__ == "__main__":
    main()
