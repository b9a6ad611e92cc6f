"""controller.http + controller.health + controller.metrics, over real HTTP on loopback."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.health import HealthChecks, WatchesAlive, informers_synced, ping
from controller.http import EndpointServer, Route, parse_bind_address, serve
from controller.metrics import Metrics, ReconcileResult
from informers import FakeClock, Queue, ReflectorStats
from informers.ratelimiting_queue import RateLimitingQueue


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def server() -> Iterator[object]:
    started: list[EndpointServer] = []

    def start(routes: Mapping[str, Route]) -> str:
        s = serve("127.0.0.1:0", routes, name="test")
        assert s is not None
        started.append(s)
        return s.url

    yield start
    for s in started:
        s.stop()


@pytest.mark.parametrize(("address", "parsed"), [
    (":8081", ("", 8081)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9440", ("::1", 9440)),
    ("0", None), ("", None),
])
def test_bind_addresses(address: str, parsed: tuple[str, int] | None) -> None:
    assert parse_bind_address(address) == parsed


@pytest.mark.parametrize("address", ["8081", "host:port", ":70000"])
def test_bad_bind_addresses(address: str) -> None:
    with pytest.raises(ValueError, match="bind address"):
        parse_bind_address(address)


def test_zero_disables_the_server() -> None:
    assert serve("0", {}) is None


def test_readiness_follows_the_named_checks(server: object) -> None:
    health = HealthChecks()
    synced = {"informers": False}
    health.add_liveness_check("ping", ping)
    health.add_readiness_check(
        "informers-synced", lambda: None if synced["informers"] else "caches not synced"
    )
    health.add_readiness_check("watches-alive", lambda: None)
    url = server(health.routes())  # type: ignore[operator]

    assert get(url + "/healthz") == (200, "ok")        # a standby or a syncing replica is alive
    assert get(url + "/livez") == (200, "ok")
    status, body = get(url + "/readyz")
    assert status == 500
    assert "[-]informers-synced failed: caches not synced" in body
    assert "watches-alive" not in body                 # only failures without ?verbose
    status, body = get(url + "/readyz?verbose")
    assert status == 500
    assert "[+]watches-alive ok" in body
    assert get(url + "/readyz?exclude=informers-synced") == (200, "ok")
    assert get(url + "/readyz/watches-alive") == (200, "ok")
    assert get(url + "/readyz/informers-synced")[0] == 500
    assert get(url + "/readyz/nope")[0] == 404

    synced["informers"] = True
    assert get(url + "/readyz") == (200, "ok")
    status, body = get(url + "/readyz?verbose")
    assert status == 200
    assert body == "[+]informers-synced ok\n[+]watches-alive ok\nreadyz check passed\n"
    assert health.ready()


def test_a_raising_check_fails_with_its_message(server: object) -> None:
    health = HealthChecks()

    def broken() -> str | None:
        raise RuntimeError("reflector thread died")

    health.add_readiness_check("watches-alive", broken)
    url = server(health.routes())  # type: ignore[operator]
    status, body = get(url + "/readyz")
    assert status == 500
    assert "[-]watches-alive failed: RuntimeError: reflector thread died" in body
    assert get(url + "/nothing-here")[0] == 404


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_scrape_has_controller_runtime_names(server: object) -> None:
    metrics = Metrics()
    clock = FakeClock()
    q: RateLimitingQueue[str] = RateLimitingQueue("workflow", clock=clock, metrics_provider=metrics)
    metrics.track_queue(q)
    plain: Queue[str] = Queue("step-http", clock=clock, metrics_provider=metrics)
    q.add("ns/a")
    q.add("ns/b")
    q.add("ns/a")                                      # coalesced: not an add (client-go neither)
    key = q.get().key
    assert key == "ns/a"
    clock.advance(3.0)                                 # "ns/a" has been processing for 3 s
    q.add_rate_limited("ns/c")                         # one retry, due 5 ms later (the clock stays put)
    plain.add("x")
    metrics.register_controller("workflow", 2)
    metrics.observe_reconcile("workflow", ReconcileResult.SUCCESS, 0.02)
    metrics.observe_reconcile("workflow", "error", 0.5, terminal=True)
    metrics.observe_reconcile("workflow", ReconcileResult.REQUEUE_AFTER, 0.01)
    metrics.observe_step_call("http", "run", "success", 0.3)
    metrics.set_workflow_phase_counts({"Running": 2, "Success": 5})
    metrics.set_leader_status("kube-workflow-controller", True)
    metrics.observe_request("GET", "200")
    metrics.observe_rate_limiter_wait(0.0)
    with metrics.active_worker("workflow"):
        url = server(metrics.routes())  # type: ignore[operator]
        status, text = get(url + "/metrics")
    assert status == 200
    s = samples(text)

    def v(metric: str, /, **labels: str) -> float:
        return s[(metric, tuple(sorted(labels.items())))]

    assert v("workqueue_depth", name="workflow") == 1.0
    assert v("workqueue_depth", name="step-http") == 1.0
    assert v("workqueue_adds_total", name="workflow") == 2.0
    assert v("workqueue_retries_total", name="workflow") == 1.0
    assert v("workqueue_queue_duration_seconds_count", name="workflow") == 1.0
    assert v("workqueue_unfinished_work_seconds", name="workflow") == 3.0
    assert v("workqueue_longest_running_processor_seconds", name="workflow") == 3.0
    q.done(key)
    assert v("workqueue_work_duration_seconds_count", name="workflow") == 0.0
    assert v("controller_runtime_reconcile_total", controller="workflow", result="success") == 1.0
    assert v("controller_runtime_reconcile_total", controller="workflow", result="error") == 1.0
    assert v("controller_runtime_reconcile_total", controller="workflow", result="requeue") == 0.0
    assert v("controller_runtime_reconcile_total", controller="workflow", result="requeue_after") == 1.0
    assert v("controller_runtime_reconcile_errors_total", controller="workflow") == 1.0
    assert v("controller_runtime_terminal_reconcile_errors_total", controller="workflow") == 1.0
    assert v("controller_runtime_reconcile_time_seconds_count", controller="workflow") == 3.0
    assert v("controller_runtime_max_concurrent_reconciles", controller="workflow") == 2.0
    assert v("controller_runtime_active_workers", controller="workflow") == 1.0
    assert v("kube_workflow_step_call_duration_seconds_count", type="http", direction="run",
             outcome="success") == 1.0
    assert v("kube_workflow_workflows", phase="Running") == 2.0
    assert v("kube_workflow_workflows", phase="Success") == 5.0
    assert v("kube_workflow_workflows", phase="Pending") == 0.0
    assert v("kube_workflow_workflows", phase="RollBacked") == 0.0
    assert v("leader_election_master_status", name="kube-workflow-controller") == 1.0
    assert v("rest_client_requests_total", code="200", method="GET") == 1.0

    # After done(), a fresh scrape shows the work duration and no unfinished work.
    s = samples(metrics.exposition().decode())
    assert v("workqueue_work_duration_seconds_count", name="workflow") == 1.0
    assert v("workqueue_unfinished_work_seconds", name="workflow") == 0.0
    q.shutdown()
    plain.shutdown()


def test_workflow_phase_counts_can_be_pulled_at_scrape_time() -> None:
    metrics = Metrics()
    counts = {"Pending": 1}
    metrics.set_workflow_phase_source(lambda: counts)
    assert metrics.workflow_phase_counts()["Pending"] == 1
    counts["Pending"] = 4
    s = samples(metrics.exposition().decode())
    assert s[("kube_workflow_workflows", (("phase", "Pending"),))] == 4.0
    assert s[("kube_workflow_workflows", (("phase", "Failed"),))] == 0.0


def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()                        # no "Duplicated timeseries" from a global registry
    a.set_leader_status("x", True)
    assert 'leader_election_master_status{name="x"} 1.0' in a.exposition().decode()
    assert 'name="x"' not in b.exposition().decode()


class FakeInformer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.synced = False
        self.st = ReflectorStats()

    def has_synced(self) -> bool:
        return self.synced

    def stats(self) -> ReflectorStats:
        return self.st


def test_informers_synced_names_the_waiting_ones() -> None:
    a, b = FakeInformer("workflows"), FakeInformer("steps")
    check = informers_synced(lambda: [a, b])
    assert check() == "not synced: steps, workflows"
    a.synced = True
    assert check() == "not synced: steps"
    b.synced = True
    assert check() is None


def test_watches_alive_fails_only_after_errors_without_progress_for_the_period() -> None:
    clock = FakeClock()
    wf = FakeInformer("workflows")
    check = WatchesAlive(lambda: [wf], failing_after=30, clock=clock)
    wf.st.lists, wf.st.watches = 1, 1
    assert check() is None
    clock.advance(100)
    assert check() is None                              # quiet is fine: no errors
    wf.st.errors, wf.st.last_error = 1, "ApiError: 403 Forbidden"
    assert check() is None                              # failing since now
    clock.advance(20)
    wf.st.errors = 3
    assert check() is None                              # 20 s < 30 s
    clock.advance(10)
    assert check() == "failing for 30s: workflows (ApiError: 403 Forbidden)"
    wf.st.lists += 1                                    # a LIST succeeded again
    assert check() is None
    clock.advance(60)
    assert check() is None


class _Load:
    def write_gate_state(self) -> tuple[int, dict[str, int], int]:
        return 6, {"HANDOFF": 2, "NORMAL": 7}, 40

    def postponed_status_writes(self) -> int:
        return 3


def test_the_engine_write_gate_and_postponed_status_writes_are_exported() -> None:
    metrics = Metrics()
    s = samples(metrics.exposition().decode())
    assert s[("kube_workflow_api_writes_in_flight", ())] == 0.0  # no engine yet: zeros
    metrics.set_engine_load(_Load())
    s = samples(metrics.exposition().decode())
    assert s[("kube_workflow_api_writes_in_flight", ())] == 6.0
    assert s[("kube_workflow_api_writes_waiting", (("priority", "Handoff"),))] == 2.0
    assert s[("kube_workflow_api_writes_waiting", (("priority", "Normal"),))] == 7.0
    assert s[("kube_workflow_api_writes_waiting", (("priority", "Background"),))] == 0.0
    assert s[("kube_workflow_api_writes_waited_total", ())] == 40.0
    assert s[("kube_workflow_status_writes_postponed", ())] == 3.0
