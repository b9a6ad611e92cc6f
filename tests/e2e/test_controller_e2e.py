"""Issue 7's acceptance, end to end: ``workflow-controller`` (the console script) as a subprocess against
the real kube-apiserver, authenticated as the ServiceAccount of deploy/ (a TokenRequest token) with
exactly the RBAC of deploy/manifests/02-rbac.yaml.

* the README example completes, and the log has no authorization failure: the RBAC is sufficient
  (the negative control, without the ClusterRoleBinding, shows the check is not vacuous);
* /metrics has the workqueue and reconcile series with totals > 0, /healthz and /readyz answer 200;
* a second instance stays standby; SIGKILL of the leader → the standby takes over within the lease
  protocol's bound and finishes the in-flight workflows;
* SIGTERM → exit 0, in-flight calls finish and are recorded, the Lease is released;
* a config file with an unknown key → exit 2, and stderr names the key.

Each controller watches only its test's namespace (config ``namespace``) and elects on a Lease there.
Run with ``-s`` to see the measured takeover and shutdown times.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubetestenv import ControlPlane
from tests.e2e.harness import (
    LEASE_DURATION,
    RENEW_DEADLINE,
    RETRY_PERIOD,
    ControllerProcess,
    Launcher,
    controller_command,
    forbidden_lines,
    install_controller_identity,
    lease_holder,
    sample,
    samples,
    wait_for,
)
from tests.integration.engine_fixtures import (
    SEED_EXAMPLE,
    create,
    phase,
    step,
    step_phases,
    steps_of,
    wait_phase,
    workflow,
)

pytestmark = pytest.mark.timeout(600)

#: Generous: two cores, and other suites run at the same time.
STARTUP = 90.0
FINISH = 240.0


def crds_api(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def wait_leading(api_client: client.ApiClient, namespace: str,
                 *candidates: ControllerProcess) -> ControllerProcess:
    """Wait until one of ``candidates`` holds the Lease and its engine is ready; return it."""
    by_identity = {c.identity: c for c in candidates}

    def holder_among() -> str | None:
        h = lease_holder(api_client, namespace)
        return h if h in by_identity else None

    holder = wait_for(holder_among,
                      timeout=STARTUP, message=lambda: f"a leader among {list(by_identity)}: "
                      f"lease holder {lease_holder(api_client, namespace)!r}")
    leader = by_identity[holder]
    wait_for(leader.is_leader, timeout=STARTUP, message=lambda: f"leader metric:\n{leader.tail()}")
    # Ready = the leader's informers synced and their watches alive.
    wait_for(lambda: leader.get("health", "/readyz")[0] == 200, timeout=STARTUP,
             message=lambda: f"/readyz 200: {leader.get('health', '/readyz')}\n{leader.tail()}")
    return leader


def assert_authorized(ctl: ControllerProcess) -> None:
    """No request of the controller was refused: no 401/403 in its request metrics, nothing in its log."""
    requests = samples(ctl.metrics(), "rest_client_requests_total")
    codes = {labels["code"] for labels, value in requests if value}
    assert not codes & {"401", "403"}, codes
    assert forbidden_lines(ctl.lines()) == []


def test_readme_example_runs_as_the_service_account_with_the_deploy_rbac(
    api_client: client.ApiClient, namespace: str, controller_kubeconfig: Path, controllers: Launcher
) -> None:
    ctl = controllers(controller_kubeconfig, namespace)
    wait_for(lambda: ctl.get("health", "/healthz") == (200, "ok"), timeout=STARTUP,
             message=lambda: f"/healthz: {ctl.get('health', '/healthz')}\n{ctl.tail()}")
    assert wait_leading(api_client, namespace, ctl) is ctl
    ctl.wait_log("caches synced", timeout=STARTUP)

    body: dict[str, Any] = yaml.safe_load(SEED_EXAMPLE.read_text())
    assert [s["stepTemplate"]["parameters"]["sleepSeconds"] for s in body["spec"]["steps"]] == ["20"] * 3
    for s in body["spec"]["steps"]:
        s["stepTemplate"]["parameters"]["sleepSeconds"] = "1"  # 20 s per step in the README
    # Its callback URL (http://locahost:8080/abc) does not resolve: deliveries retry in the background
    # and do not hold the workflow up.
    api = crds_api(api_client)
    create(api, namespace, body)
    wf = wait_phase(api, namespace, "example", "Success", "Failed", "RollBacked", timeout=FINISH)
    assert wf["status"]["phase"] == "Success", wf["status"]
    assert step_phases(api, namespace, "example") == dict.fromkeys(("step1", "step2", "step3"), "Success")

    # /metrics, scraped after the workflow finished.
    text = ctl.metrics()
    assert samples(text, "workqueue_depth"), "no workqueue_depth series"
    reconciles = samples(text, "controller_runtime_reconcile_total")
    assert sum(v for labels, v in reconciles if labels.get("controller") == "workflow") > 0, reconciles
    assert (sample(text, "controller_runtime_reconcile_total", controller="workflow", result="success")
            or 0) > 0, reconciles
    assert (sample(text, "workqueue_adds_total") or 0) > 0
    assert (sample(text, "kube_workflow_step_call_duration_seconds_count", type="random", direction="run")
            or 0) >= 3
    wait_for(lambda: sample(ctl.metrics(), "kube_workflow_workflows", phase="Success") == 1.0, timeout=60,
             message="kube_workflow_workflows{phase=Success} == 1")
    assert ctl.is_leader() is True
    assert ctl.get("health", "/readyz")[0] == 200
    assert ctl.get("health", "/healthz") == (200, "ok")

    assert_authorized(ctl)
    assert ctl.popen.poll() is None, ctl.tail()


def chain(name: str, seconds: str) -> dict[str, Any]:
    names = ["a", "b", "c"]
    return workflow(name, [step(n, "sleep", *names[i - 1:i], parameters={"seconds": seconds})
                           for i, n in enumerate(names)])


def test_standby_takes_over_after_the_leader_is_killed_and_finishes_the_workflows(
    api_client: client.ApiClient, namespace: str, controller_kubeconfig: Path, controllers: Launcher
) -> None:
    first = controllers(controller_kubeconfig, namespace, name="first")
    second = controllers(controller_kubeconfig, namespace, name="second")
    leader = wait_leading(api_client, namespace, first, second)
    standby = second if leader is first else first
    # Exactly one leads: the standby campaigns but reports 0, and is healthy and ready all the same.
    wait_for(lambda: standby.is_leader() is False, timeout=STARTUP, message=lambda: standby.tail())
    assert leader.is_leader() is True
    assert standby.get("health", "/healthz") == (200, "ok")
    assert standby.get("health", "/readyz")[0] == 200
    assert lease_holder(api_client, namespace) == leader.identity

    api = crds_api(api_client)
    names = [f"wf{i}" for i in range(5)]
    for name in names:
        create(api, namespace, chain(name, "2"))

    def in_flight() -> dict[str, dict[str, str]] | None:
        # Kill mid-chain: some step finished, some step is running, no workflow is done yet.
        phases = {n: step_phases(api, namespace, n) for n in names}
        flat = [p for steps in phases.values() for p in steps.values()]
        return phases if "Success" in flat and "Running" in flat else None

    at_kill = wait_for(in_flight, timeout=FINISH, interval=0.1,
                       message=lambda: f"steps in flight: {[step_phases(api, namespace, n) for n in names]}")
    # The standby did no work: its engine never started (no reconcile series, no "engine started").
    assert sample(standby.metrics(), "controller_runtime_reconcile_total", controller="workflow") is None
    assert "engine started" not in [r.get("event") for r in standby.lines()]
    assert leader.is_leader() is True
    killed_at = time.monotonic()
    leader.signal(signal.SIGKILL)
    assert leader.wait(30) == -signal.SIGKILL
    unfinished = [n for n in names if phase(api, namespace, n) != "Success"]
    print(f"\nSIGKILL of the leader with steps in flight: {at_kill}; unfinished workflows: {unfinished}")
    assert unfinished, "every workflow finished before the kill: nothing was in flight"

    # Bound (client-go semantics): the standby treats the lease as expired LEASE_DURATION after it last
    # saw the record change, which is no later than the kill (the dead leader changes nothing after it);
    # it then notices on its next attempt, which comes within a jittered retry period (at most 2.2 x
    # RETRY_PERIOD, wait.JitterUntil with factor 1.2). SLACK covers API latency and a loaded machine.
    slack = 5.0
    bound = LEASE_DURATION + 2.2 * RETRY_PERIOD + slack
    wait_for(lambda: lease_holder(api_client, namespace) == standby.identity, timeout=bound + 60,
             interval=0.05, message=lambda: f"takeover by {standby.identity}:\n{standby.tail()}")
    took = time.monotonic() - killed_at
    print(f"takeover after SIGKILL: {took:.2f}s (lease {LEASE_DURATION:g}s, retry {RETRY_PERIOD:g}s, "
          f"bound {bound:.1f}s)")
    assert took <= bound
    # And not before the lease could have expired: the takeover waited for the lease, it was not given.
    # The leader still led just before the kill, so it had renewed within RENEW_DEADLINE of it (a leader
    # that cannot renew for that long stops leading), and nobody may take over before renewal + lease.
    assert took >= LEASE_DURATION - RENEW_DEADLINE
    wait_for(standby.is_leader, timeout=STARTUP, message=lambda: standby.tail())

    for name in names:
        wf = wait_phase(api, namespace, name, "Success", "Failed", "RollBacked", timeout=FINISH)
        assert wf["status"]["phase"] == "Success", (name, wf["status"])
        assert step_phases(api, namespace, name) == dict.fromkeys("abc", "Success"), name
    print(f"all {len(names)} workflows Success after the failover")
    assert (sample(standby.metrics(), "controller_runtime_reconcile_total", controller="workflow",
                   result="success") or 0) > 0
    assert_authorized(standby)


def test_sigterm_drains_in_flight_calls_releases_the_lease_and_exits_0(
    api_client: client.ApiClient, namespace: str, controller_kubeconfig: Path, controllers: Launcher
) -> None:
    ctl = controllers(controller_kubeconfig, namespace, "--shutdown-grace-period", "60")
    wait_leading(api_client, namespace, ctl)
    api = crds_api(api_client)
    create(api, namespace, workflow("slow", [step("only", "sleep", parameters={"seconds": "3"})]))
    wait_for(lambda: step_phases(api, namespace, "slow").get("only") == "Running", timeout=FINISH,
             interval=0.1, message=lambda: f"step running: {step_phases(api, namespace, 'slow')}")

    sent_at = time.monotonic()
    ctl.signal(signal.SIGTERM)
    code = ctl.wait(120)
    took = time.monotonic() - sent_at
    holder = lease_holder(api_client, namespace)
    print(f"\nSIGTERM with a 3 s call in flight: exit {code} after {took:.2f}s; lease holder {holder!r}")
    assert code == 0, ctl.tail()
    # Released before exit (client-go's ReleaseOnCancel: holderIdentity emptied), so a successor need
    # not wait for the lease to expire.
    assert holder == "", holder
    events = [r.get("event") for r in ctl.lines()]
    assert "shutdown requested" in events
    assert "stopped" in events
    # The call in flight was let finish and its outcome written before the lease was given away.
    only = steps_of(api, namespace, "slow")["only"]
    assert (only.get("status") or {}).get("phase") == "Success", only.get("status")
    assert forbidden_lines(ctl.lines()) == []


def test_without_the_cluster_role_binding_the_log_shows_403_and_it_never_turns_ready(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str, tmp_path: Path,
    controllers: Launcher,
) -> None:
    """The negative control of the RBAC test above (its "no 403" check is not vacuous): the same
    ServiceAccount with the leader-election Role but not the ClusterRoleBinding leads, but cannot list
    Workflows; its log and metrics show the refusals and /readyz stays unready (informers not synced)."""
    with install_controller_identity(control_plane, api_client, namespace, tmp_path,
                                     without=frozenset({"ClusterRoleBinding"})) as kubeconfig:
        ctl = controllers(kubeconfig, namespace)
        wait_for(lambda: lease_holder(api_client, namespace) == ctl.identity, timeout=STARTUP,
                 message=lambda: ctl.tail())
        wait_for(lambda: forbidden_lines(ctl.lines()), timeout=STARTUP, message=lambda: ctl.tail())
        wait_for(lambda: (sample(ctl.metrics(), "rest_client_requests_total", code="403") or 0) > 0,
                 timeout=STARTUP, message=lambda: ctl.metrics())
        status, body = ctl.get("health", "/readyz")
        assert status != 200, body
        assert ctl.get("health", "/healthz") == (200, "ok")  # alive: a restart would not help
        print(f"\nwithout the ClusterRoleBinding: /readyz {status} {body.strip()!r}")
        ctl.kill()


@pytest.mark.parametrize(("config", "key"), [
    ({"namespace": "x", "throttleQPs": 5}, "throttleQPs"),
    ({"controllerConfig": {"queue": {"stratgy": "FIFO"}}}, "controllerConfig.queue.stratgy"),
], ids=["top-level-typo", "nested-typo"])
def test_a_config_file_with_an_unknown_key_exits_2_naming_it(
    tmp_path: Path, config: dict[str, Any], key: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([*controller_command(), "--config", str(path), "--no-leader-elect",
                           "--metrics-bind-address", "0", "--health-probe-bind-address", "0"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert key in proc.stderr, proc.stderr
    assert proc.stdout == ""
