"""The process-level parts wired together against the real API server, the way the manager wires them:
one throttled client reporting to Metrics, leader election through it, /metrics and /readyz served."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from controller.client import build_api_client
from controller.config import LeaderElectionConfig
from controller.health import HealthChecks, ping
from controller.http import serve
from controller.leader import ApiLeaseStore, LeaderElector, LeadershipEnd
from controller.metrics import Metrics
from informers.testing import wait_until


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def value(text: str, metric: str, /, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def test_leader_status_and_api_requests_show_in_metrics_and_readiness(
    kubeconfig: Path, namespace: str
) -> None:
    metrics, health = Metrics(), HealthChecks()
    api = build_api_client(kubeconfig, qps=50, observer=metrics)
    leading = threading.Event()
    health.add_liveness_check("ping", ping)
    health.add_readiness_check("leader-or-standby", lambda: None)   # a standby is ready too
    health.add_readiness_check("reconcilers", lambda: None if leading.is_set() else "not leading yet")
    metrics_server = serve("127.0.0.1:0", metrics.routes(), name="metrics")
    health_server = serve("127.0.0.1:0", health.routes(), name="health")
    assert metrics_server is not None
    assert health_server is not None
    cfg = LeaderElectionConfig(namespace=namespace, identity="me", lease_duration=2, renew_deadline=1.5,
                               retry_period=0.2)
    ends: list[LeadershipEnd] = []
    elector = LeaderElector(cfg, ApiLeaseStore(api, namespace, cfg.name), on_started_leading=leading.set,
                            on_stopped_leading=ends.append, status=metrics, request_timeout=2.0)
    try:
        assert get(health_server.url + "/healthz") == (200, "ok")
        thread = elector.start()
        assert leading.wait(15)
        wait_until(lambda: get(health_server.url + "/readyz")[0] == 200, timeout=10, what="ready")
        _, text = get(metrics_server.url + "/metrics")
        assert value(text, "leader_election_master_status", name="kube-workflow-controller") == 1.0
        assert (value(text, "rest_client_requests_total", method="POST", code="201") or 0) >= 1  # created
        assert value(text, "rest_client_rate_limiter_duration_seconds_count") is not None
        elector.stop()
        thread.join(15)
        assert ends == [LeadershipEnd.STOPPED]
        _, text = get(metrics_server.url + "/metrics")
        assert value(text, "leader_election_master_status", name="kube-workflow-controller") == 0.0
        assert (value(text, "rest_client_requests_total", method="PUT", code="200") or 0) >= 1   # released
    finally:
        elector.stop()
        metrics_server.stop()
        health_server.stop()
        api.close()
