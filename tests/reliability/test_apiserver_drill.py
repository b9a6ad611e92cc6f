"""API-server restart and disconnect drill: workflows run while kube-apiserver is stopped and started again
(same port, same etcd), while every connection between the controller and the API server is cut, and
while they are frozen; etcd is compacted behind the API server's back each time, so the controller's
watches come back to a compacted resourceVersion and get 410 Gone (the drills' plane runs with
``--watch-cache=false``, see conftest). Every workflow must still end in the phase its scripts allow,
none stuck, the controller never exits, and the call log keeps the engine invariants.

The controller runs without leader election here: with it, an outage longer than the renew deadline
(10 s by default) ends leadership and the process exits 1 for its Deployment to restart - that is the
leader-election contract, tested by the e2e suite; this drill is about the informers and writers riding
out the outage in-process.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from informers.testing import TcpProxy
from kubetestenv import ControlPlane
from stepkit.builtin.fail import CALL_LOG_ENV, read_call_log
from tests.reliability.drills import (
    ControllerProcess,
    Workflows,
    controller,
    drill_config,
    report,
    seeded,
    workflow_body,
)
from tests.reliability.invariants import (
    StepScript,
    check_call_log,
    expected_phases,
    random_dag,
    step_phases_by_workflow,
)

#: What happens after each batch of workflows. Every disruption first makes writes the controller's
#: workflow watch does not see and compacts etcd, so the watches come back to a compacted
#: resourceVersion: ``restart`` stops kube-apiserver, compacts, starts it again; ``cut`` closes every
#: connection between the controller and the API server (a proxy in between) and refuses new ones for a
#: moment; ``stall`` freezes every open connection (no byte moves; new connections work) until the
#: watches' idle timeout and the request timeouts notice, then cuts them.
DISRUPTIONS = ("restart", "cut", "stall", "restart")
PER_BATCH = 8


@pytest.mark.timeout(900)
def test_workflows_complete_across_apiserver_restarts_disconnects_and_compactions(
        drill_plane: ControlPlane, drill_api: client.ApiClient, drill_namespace: str, tmp_path: Path) -> None:
    rng = seeded("apiserver")
    started = time.monotonic()
    call_log = tmp_path / "calls.jsonl"
    wfs = Workflows(drill_api, drill_namespace)
    core = client.CoreV1Api(drill_api)
    dags: dict[str, list[StepScript]] = {}
    counts: Counter[str] = Counter()
    port = int(drill_plane.server.rsplit(":", 1)[1])
    proxy = TcpProxy("127.0.0.1", port).start()
    kubeconfig = yaml.safe_load(drill_plane.kubeconfig.read_text())
    for cluster in kubeconfig["clusters"]:
        cluster["cluster"]["server"] = proxy.url
    proxied = tmp_path / "kubeconfig-via-proxy"
    proxied.write_text(yaml.safe_dump(kubeconfig))
    # A little sleep in every call, so the disruptions fall in the middle of the work; a short watch idle
    # timeout, so a stalled watch is noticed within the drill.
    slow = {"sleepSeconds": "0.5"}
    try:
        with controller(proxied, drill_namespace, tmp_path / "controller",
                        drill_config(idleTimeoutMillSeconds=4000), env={CALL_LOG_ENV: str(call_log)}) as proc:
            for batch, disruption in enumerate(DISRUPTIONS):
                for i in range(PER_BATCH):
                    name = f"wf-{batch}-{i:02d}"
                    dags[name] = random_dag(rng, allow_permanent_rollback=False)
                    wfs.create_retrying(workflow_body(name, [s.body(slow) for s in dags[name]]))
                time.sleep(rng.uniform(1.0, 4.0))
                for j in range(5):
                    core.create_namespaced_config_map(
                        drill_namespace, {"metadata": {"name": f"bump-{batch}-{j}"}, "data": {"x": "y"}})
                if disruption == "restart":
                    drill_plane.stop_apiserver()
                    time.sleep(rng.uniform(1.0, 3.0))
                    drill_plane.compact_etcd()
                    drill_plane.start_apiserver()
                elif disruption == "cut":
                    drill_plane.compact_etcd()
                    proxy.cut()
                    time.sleep(rng.uniform(0.5, 2.0))
                    proxy.restore()
                else:
                    drill_plane.compact_etcd()
                    proxy.stall()
                    time.sleep(rng.uniform(6.0, 8.0))
                    proxy.cut()
                    proxy.restore()
                counts[disruption] += 1
                counts["compactions"] += 1
                assert proc.alive, f"the controller exited during a disruption:\n{proc.tail()}"
            finals = wfs.wait_terminal(dags, timeout=420, on_poll=lambda: _alive(proc))
            assert proc.alive, proc.tail()
            exit_code = proc.terminate()
    finally:
        proxy.stop()
    records = read_call_log(call_log)
    inv = check_call_log(records, dags, finals, step_phases_by_workflow(wfs.steps()), None,
                         strict_repeats=False)
    wrong_phase = {n: (str(w["status"]["phase"]), sorted(expected_phases(dags[n]))) for n, w in finals.items()
                   if str(w["status"]["phase"]) not in expected_phases(dags[n])}
    crash_lines = proc.crashes()
    expired = proc.count("watch expired; relisting")
    phases = sorted(str(w["status"]["phase"]) for w in finals.values())
    report("apiserver", workflows=len(finals), apiserver_restarts=counts["restart"],
           disconnects=counts["cut"], stalls=counts["stall"], compactions=counts["compactions"],
           watch_410_relists=expired, rewatches=proc.count("watch stream broke; re-watching"),
           idle_rewatches=sum(1 for r in proc.records() if "idle" in str(r.get("error", ""))),
           list_watch_failures=proc.count("list/watch failed"), success=phases.count("Success"),
           rollbacked=phases.count("RollBacked"), failed=phases.count("Failed"), calls=inv.calls,
           repeated_after_failed_write=inv.repeated_in_process,
           lost=len(dags) - len(finals), stuck=0, wrong_phase=len(wrong_phase),
           invariant_violations=len(inv.violations), controller_crashes=len(crash_lines) + (exit_code != 0),
           seconds=round(time.monotonic() - started))
    assert not inv.violations, "\n".join(inv.violations[:50])
    assert not wrong_phase, wrong_phase
    assert not crash_lines, "\n".join(crash_lines[:20])
    assert exit_code == 0, proc.tail()
    assert expired >= 1, "no watch got 410 Gone: the drill did not exercise the relist path"


def _alive(proc: ControllerProcess) -> None:
    assert proc.alive, f"the controller exited by itself:\n{proc.tail()}"
