"""Benchmark of the informer stack against a real kube-apiserver + etcd (hack/kube-testenv).

Run from the repo root::

    .venv/bin/python -m bench.informers            # or: .venv/bin/python bench/informers.py
    .venv/bin/python -m bench.informers --objects 2000 --updates 4000 --profile

Prints three figures:

1. LIST + sync time for N custom objects: a fresh SharedIndexInformer, start() -> has_synced
   (paged LIST, JSON parse, transform, freeze, store, one handler per object).
2. RSS bytes per cached object: RSS growth of this process across that sync, divided by N.
3. Watch events/s through reflector + store + handler: M updates are written while no informer
   watches; then a reflector lists at the RV from before the writes (an exact read) and watches from
   it, so the API server replays the M events as fast as the client takes them. The clock runs from
   the end of the list to the handler's M-th update; the handler enqueues each key in a workqueue.
   The writers' own rate is printed too (it bounds a live watch, not this replay). The API server keeps
   its watch cache (the production setting), which holds about 75 s of events: if the writers are
   slower than that, the watch gets 410 and the replay is reported INVALID; ``--no-watch-cache``
   sends lists and watches to etcd instead (always replayable, but then etcd bounds the rate).
"""

from __future__ import annotations

import argparse
import cProfile
import faulthandler
import gc
import os
import pstats
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is sys.path[0] and this file would shadow the ``informers`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
for p in (str(ROOT), str(ROOT / "hack")):
    if p not in sys.path:
        sys.path.insert(0, p)

import orjson  # noqa: E402
from kubernetes import client, config  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

from informers import (  # noqa: E402
    ApiListerWatcher,
    EnqueueHandler,
    ListOptions,
    ListPage,
    Queue,
    ReflectorConfig,
    Resource,
    SharedIndexInformer,
    drop_managed_fields,
)
from kubetestenv import ControlPlane  # noqa: E402

GROUP, VERSION, PLURAL, NS = "bench.example.com", "v1", "steps", "bench"
RES = Resource(GROUP, VERSION, PLURAL)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def deep_size(objs: list[Any]) -> int:
    seen: set[int] = set()
    total = 0
    stack: list[Any] = list(objs)
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    return total


def make_api(kubeconfig: Path, pool: int = 16) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = pool
    cfg.retries = False
    return client.ApiClient(cfg)


def install(api: client.ApiClient) -> client.CustomObjectsApi:
    client.ApiextensionsV1Api(api).create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {"group": GROUP, "scope": "Namespaced",
                 "names": {"plural": PLURAL, "singular": "step", "kind": "Step"},
                 "versions": [{"name": VERSION, "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
    })
    client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
    custom = client.CustomObjectsApi(api)
    deadline = time.monotonic() + 30
    while True:
        try:
            custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, limit=1)
            return custom
        except ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def step(i: int) -> dict[str, Any]:
    """A Step-like object of realistic size (~1 KB as JSON once the server adds its metadata)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Step",
        "metadata": {"name": f"wf-{i // 10:05d}-step-{i % 10}",
                     "labels": {"workflow": f"wf-{i // 10:05d}", "step": f"step-{i % 10}"}},
        "spec": {"type": "http", "rollbackPolicy": "PreserveOnFailure",
                 "parameters": {"url": f"http://svc.example/api/items/{i}", "method": "POST",
                                "timeoutSeconds": "30", "payload": "x" * 64},
                 "retryPolicy": {"runRetryLimit": 3, "runRetryPeriodSeconds": 60,
                                 "rollbackRetryLimit": 3, "rollbackRetryPeriodSeconds": 60},
                 "syncPeriodSeconds": 0},
    }


def parallel(fn: Any, items: list[Any], threads: int) -> float:
    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, items))
    return time.perf_counter() - t


class Counter:
    def __init__(self, queue: Queue[str], want_adds: int, want_updates: int) -> None:
        self.enqueue = EnqueueHandler(queue)
        self.adds = 0
        self.updates = 0
        self.want_adds, self.want_updates = want_adds, want_updates
        self.synced_at = 0.0
        self.done_at = 0.0
        self.synced_cpu = 0.0
        self.done_cpu = 0.0
        self.on_done: Any = None

    def on_add(self, obj: Any, is_in_initial_list: bool) -> None:
        self.enqueue.on_add(obj, is_in_initial_list)
        self.adds += 1
        if self.adds == self.want_adds:
            self.synced_at = time.perf_counter()
            self.synced_cpu = time.process_time()

    def on_update(self, old: Any, new: Any) -> None:
        self.enqueue.on_update(old, new)
        self.updates += 1
        if self.updates == self.want_updates:
            self.done_at = time.perf_counter()
            self.done_cpu = time.process_time()
            if self.on_done is not None:
                self.on_done()

    def on_delete(self, obj: Any) -> None:
        self.enqueue.on_delete(obj)


class ExactListAt:
    """Lists at an exact, older RV (so the watch that follows replays everything since)."""

    def __init__(self, inner: ApiListerWatcher, custom: client.CustomObjectsApi, rv: str) -> None:
        self.inner, self.custom, self.rv = inner, custom, rv

    def list(self, options: ListOptions) -> ListPage:
        resp = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, resource_version=self.rv, resource_version_match="Exact",
            _preload_content=False)
        body = orjson.loads(resp.data)
        return ListPage(body["items"], body["metadata"]["resourceVersion"], None)

    def watch(self, options: ListOptions, *, idle_timeout: float) -> Any:
        return self.inner.watch(options, idle_timeout=idle_timeout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=10_000)
    ap.add_argument("--updates", type=int, default=10_000)
    ap.add_argument("--no-watch-cache", action="store_true",
                    help="run the API server with --watch-cache=false: lists and watches go to etcd "
                         "(the replay then works however slowly the updates were written, "
                         "but etcd bounds its rate)")
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--profile", action="store_true", help="cProfile the watch replay (top 25 by tottime)")
    args = ap.parse_args()
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid> prints every thread's stack

    print(f"starting kube-apiserver + etcd ... (pid {os.getpid()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f})", flush=True)
    server_args = ["--etcd-compaction-interval=0"] + (["--watch-cache=false"] if args.no_watch_cache else [])
    print(f"kube-apiserver flags: {' '.join(server_args)}")
    with ControlPlane(apiserver_args=server_args) as plane:
        api = make_api(plane.kubeconfig)
        custom = install(api)
        n = args.objects

        def create(i: int) -> None:
            r = custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, step(i),
                                                       _preload_content=False)
            r.data  # noqa: B018 - read the body so the connection goes back to the pool
            r.release_conn()

        took = parallel(create, list(range(n)), args.writers)
        print(f"created {n} objects in {took:.1f}s ({n / took:.0f}/s with {args.writers} writer threads)")

        # -- 1 + 2: LIST + sync, RSS per cached object ------------------------------------------
        gc.collect()
        rss0 = rss_bytes()
        q: Queue[str] = Queue("bench")
        counter = Counter(q, n, 0)
        informer = SharedIndexInformer(ApiListerWatcher(api, RES, namespace=NS), name="steps",
                                       transform=drop_managed_fields)
        informer.add_event_handler(counter)
        t0, cpu0 = time.perf_counter(), time.process_time()
        informer.start()
        assert informer.wait_for_sync(120), "no sync in 120 s"
        sync_s, sync_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        pages = informer.stats().list_pages
        rv0 = informer.last_sync_resource_version
        del counter
        gc.collect()
        rss1 = rss_bytes()
        assert len(informer.indexer) == n
        print(f"LIST+sync of {n} objects: {sync_s:.2f}s ({n / sync_s:.0f} objects/s; "
              f"page size {ReflectorConfig().page_size}, {pages} page(s)); client CPU {sync_cpu:.2f}s "
              f"(the rest is the API server/etcd and waiting)")
        print(f"RSS per cached object: {(rss1 - rss0) / n:.0f} bytes "
              f"(RSS {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB, includes the workqueue's {len(q)} keys)")
        print(f"  deep size of the cached objects: {deep_size(informer.indexer.list()) / n:.0f} bytes/object "
              "(sys.getsizeof over every dict/list/str, shared ones counted once)")
        sample = informer.indexer.list()[0]
        print(f"  one object as JSON: {len(orjson.dumps(sample))} bytes (managedFields dropped)")
        informer.stop()
        del informer, q
        gc.collect()

        # -- 3: watch events/s --------------------------------------------------------------------
        m = args.updates
        names = [step(i % n)["metadata"]["name"] for i in range(m)]

        def update(j: int) -> None:
            r = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, names[j],
                                                      {"spec": {"syncPeriodSeconds": j + 1}},
                                                      _preload_content=False)
            r.data  # noqa: B018
            r.release_conn()

        took = parallel(update, list(range(m)), args.writers)
        print(f"wrote {m} updates in {took:.1f}s ({m / took:.0f}/s: the writers' rate, "
              "which bounds a live watch on this machine)")

        q2: Queue[str] = Queue("bench2")
        counter2 = Counter(q2, n, m)
        lw = ExactListAt(ApiListerWatcher(api, RES, namespace=NS), custom, rv0)
        errors: list[Exception] = []
        replay = SharedIndexInformer(lw, name="replay", transform=drop_managed_fields,  # type: ignore[arg-type]
                                     watch_error_handler=errors.append)
        replay.add_event_handler(counter2)
        counter2.on_done = lambda: threading.Thread(target=replay.reflector.stop, daemon=True).start()
        prof = cProfile.Profile() if args.profile else None
        if prof:
            prof.enable()
        def progress() -> None:
            while not counter2.done_at:
                time.sleep(5)
                print(f"  ... {counter2.adds} adds, {counter2.updates} updates, {replay.stats()}", flush=True)

        threading.Thread(target=progress, daemon=True).start()
        replay.reflector.run()  # in this thread, so cProfile sees it; stops at the M-th update
        if prof:
            prof.disable()
        stats = replay.stats()
        if counter2.updates < m or stats.lists != 1:
            print(f"watch replay INVALID: saw {counter2.updates}/{m} updates, {stats.lists} lists, "
                  f"errors {errors} (try fewer --updates, or --no-watch-cache)")
        else:
            watch_s = counter2.done_at - counter2.synced_at
            cpu_s = counter2.done_cpu - counter2.synced_cpu
            print(f"watch events/s through reflector+store+handler: {m / watch_s:.0f} "
                  f"({m} events in {watch_s:.2f}s, replayed by the API server from RV {rv0})")
            note = " [under cProfile]" if prof else ""
            print(f"  client CPU for them: {cpu_s:.2f}s = {cpu_s / m * 1e6:.0f} us/event "
                  f"(a client-bound ceiling of {m / cpu_s:.0f} events/s){note}")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        if prof:
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        api.close()


if __name__ == "__main__":
    main()
