"""controller.client against the real API server: the throttleQPS bucket holds back real requests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client

from controller.client import build_api_client
from informers import FakeClock, Resource
from reconcilers.kube import Kube, NotFound


class Counting:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: list[str] = []
        self.waits: list[float] = []

    def observe_request(self, method: str, code: str) -> None:
        with self.lock:
            self.codes.append(f"{method} {code}")

    def observe_rate_limiter_wait(self, seconds: float) -> None:
        with self.lock:
            self.waits.append(seconds)

    def count(self) -> int:
        with self.lock:
            return len(self.codes)


@contextmanager
def in_background(requests: Callable[[], None], clock: FakeClock, api: Any) -> Iterator[threading.Event]:
    """Run ``requests`` in a thread; yields the event set when they are done. Afterwards the clock
    jumps far ahead (no one stays parked on a token), the thread is joined and the client closed."""
    done = threading.Event()

    def run() -> None:
        requests()
        done.set()

    t = threading.Thread(target=run, daemon=True)
    try:
        t.start()
        yield done
    finally:
        clock.advance(100.0)
        t.join(30)
        api.close()


def test_every_request_waits_for_a_token(kubeconfig: Path, namespace: str) -> None:
    clock, seen = FakeClock(), Counting()
    api = build_api_client(kubeconfig, qps=1.0, burst=2, observer=seen, clock=clock)
    core = client.CoreV1Api(api)

    def four_requests() -> None:
        for _ in range(4):
            core.list_namespaced_config_map(namespace, _preload_content=False).release_conn()

    with in_background(four_requests, clock, api) as done:
        clock.block_until_waiters(1)         # the burst of 2 went through; the 3rd waits for a token
        assert seen.count() == 2
        clock.advance(1.0)
        clock.block_until_waiters(1)         # the 3rd went through; the 4th waits
        assert seen.count() == 3
        clock.advance(1.0)
        assert done.wait(30)
        assert seen.codes == ["GET 200"] * 4
        assert seen.waits == [0.0, 0.0, 1.0, 1.0]


def test_short_requests_without_the_model_layer_are_throttled_and_observed(kubeconfig: Path,
                                                                           namespace: str) -> None:
    """Kube's requests go through ``call_raw`` (informers.rawhttp): same bucket, same observer, real
    answers from the server (create 201, get 200, a missing name 404)."""
    clock, seen = FakeClock(), Counting()
    api = build_api_client(kubeconfig, qps=1.0, burst=2, observer=seen, clock=clock)
    kube = Kube(api)
    cm = Resource("", "v1", "configmaps")
    results: list[object] = []

    def three_requests() -> None:
        created = kube.create(cm, namespace, {"metadata": {"name": "raw"}, "data": {"k": "v"}})
        results.append(created["data"])
        results.append(kube.get(cm, namespace, "raw")["metadata"]["name"])
        try:
            kube.get(cm, namespace, "missing")
        except NotFound as exc:
            results.append(exc.status)

    with in_background(three_requests, clock, api) as done:
        clock.block_until_waiters(1)         # the burst of 2 went through; the 3rd waits for a token
        assert seen.count() == 2
        clock.advance(1.0)
        assert done.wait(30)
        assert results == [{"k": "v"}, "raw", 404]
        assert seen.codes == ["POST 201", "GET 200", "GET 404"]
        assert seen.waits == [0.0, 0.0, 1.0]


def test_the_flag_kubeconfig_reaches_the_server(kubeconfig: Path) -> None:
    api = build_api_client(kubeconfig, qps=0)      # 0 = unlimited
    try:
        assert client.VersionApi(api).get_code().major == "1"
        assert api.configuration.retries is False
    finally:
        api.close()
