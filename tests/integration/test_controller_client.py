"""controller.client against the real API server: the throttleQPS bucket holds back real requests."""

from __future__ import annotations

import threading
from pathlib import Path

from kubernetes import client

from controller.client import build_api_client
from informers import FakeClock


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


def test_every_request_waits_for_a_token(kubeconfig: Path, namespace: str) -> None:
    clock, seen = FakeClock(), Counting()
    api = build_api_client(kubeconfig, qps=1.0, burst=2, observer=seen, clock=clock)
    core = client.CoreV1Api(api)
    done = threading.Event()

    def four_requests() -> None:
        for _ in range(4):
            core.list_namespaced_config_map(namespace, _preload_content=False).release_conn()
        done.set()

    t = threading.Thread(target=four_requests, daemon=True)
    try:
        t.start()
        clock.block_until_waiters(1)         # the burst of 2 went through; the 3rd waits for a token
        assert seen.count() == 2
        clock.advance(1.0)
        clock.block_until_waiters(1)         # the 3rd went through; the 4th waits
        assert seen.count() == 3
        clock.advance(1.0)
        assert done.wait(30)
        assert seen.codes == ["GET 200"] * 4
        assert seen.waits == [0.0, 0.0, 1.0, 1.0]
    finally:
        clock.advance(100.0)
        t.join(30)
        api.close()


def test_the_flag_kubeconfig_reaches_the_server(kubeconfig: Path) -> None:
    api = build_api_client(kubeconfig, qps=0)      # 0 = unlimited
    try:
        assert client.VersionApi(api).get_code().major == "1"
        assert api.configuration.retries is False
    finally:
        api.close()
