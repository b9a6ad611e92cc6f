"""Crash drill: 100 random workflows of ``fail`` steps with scripted failures while the controller is
SIGKILLed and restarted at random moments (at least 10 times). Afterwards every workflow is terminal, in a
phase its scripts allow, and the call log satisfies the engine invariants
(:func:`tests.reliability.drills.check_call_log`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kubernetes import client

from kubetestenv import ControlPlane
from stepkit.builtin.fail import CALL_LOG_ENV, CallRecord, read_call_log
from tests.reliability.drills import (
    ControllerProcess,
    StepPhaseWatcher,
    Workflows,
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

WORKFLOWS = 100
MIN_KILLS = 12
BATCH = 10


@pytest.mark.timeout(900)
def test_sigkills_at_random_moments_lose_nothing_and_break_no_invariant(
        drill_plane: ControlPlane, drill_api: client.ApiClient, drill_namespace: str, tmp_path: Path) -> None:
    rng = seeded("crash")
    started = time.monotonic()
    call_log = tmp_path / "calls.jsonl"
    wfs = Workflows(drill_api, drill_namespace)
    dags: dict[str, list[StepScript]] = {f"wf-{i:03d}": random_dag(rng) for i in range(WORKFLOWS)}
    names = list(dags)
    proc = ControllerProcess(drill_plane.kubeconfig, drill_namespace, tmp_path / "controller", drill_config(),
                             env={CALL_LOG_ENV: str(call_log)})
    kills = 0
    try:
        with StepPhaseWatcher(drill_api, drill_namespace) as watcher:
            proc.start()
            submitted = 0
            while kills < MIN_KILLS or submitted < WORKFLOWS:
                for name in names[submitted:submitted + BATCH]:
                    wfs.create(workflow_body(name, [s.body() for s in dags[name]]))
                submitted = min(WORKFLOWS, submitted + BATCH)
                time.sleep(rng.uniform(0.5, 5.0))  # a random moment: starting, listing, mid-calls, idle
                assert proc.alive, f"the controller exited by itself:\n{proc.tail()}"
                proc.sigkill()
                kills += 1
                time.sleep(rng.uniform(0.0, 1.0))
                proc.start()
            finals = wfs.wait_terminal(names, timeout=420, on_poll=lambda: _alive(proc))
            # a last look at the calls a finished workflow could still be owed: none are (terminal)
            assert proc.alive, proc.tail()
            exit_code = proc.terminate()
        records = read_call_log(call_log)
        steps = step_phases_by_workflow(wfs.steps())
        inv = check_call_log(records, dags, finals, steps, watcher.phases if watcher.gaps == 0 else None)
        wrong_phase = {n: (ph, sorted(expected_phases(dags[n]))) for n, w in finals.items()
                       if (ph := str(w["status"]["phase"])) not in expected_phases(dags[n])}
        for n, w in finals.items():
            if w["status"]["phase"] == "Failed" and not any(
                    steps[n].get(s.name) == "Failed" and s.rollback == "permanent" for s in dags[n]):
                inv.add(f"{n}: Failed without a step whose rollback fails for good: {steps[n]}")
        crash_lines = proc.crashes()
        unexpected_exits = [c for c in proc.exits[:-1] if c != -9] + ([exit_code] if exit_code != 0 else [])
        phases = sorted(str(w["status"]["phase"]) for w in finals.values())
        report("crash", workflows=len(finals), crashes_injected=kills, controller_starts=proc.starts,
               success=phases.count("Success"), rollbacked=phases.count("RollBacked"),
               failed=phases.count("Failed"), calls=inv.calls, repeated_after_crash=inv.repeated_after_crash,
               lost=WORKFLOWS - len(finals), wrong_phase=len(wrong_phase),
               repeated_in_process=inv.repeated_in_process, invariant_violations=len(inv.violations),
               controller_crashes=len(crash_lines) + len(unexpected_exits),
               watch_gaps=watcher.gaps, seconds=round(time.monotonic() - started))
        assert not inv.violations, "\n".join(inv.violations[:50]) + "\n" + explain(
            inv.violations, records, wfs, dags)
        assert not wrong_phase, wrong_phase
        assert not crash_lines, "\n".join(crash_lines[:20])
        assert not unexpected_exits, (proc.exits, proc.tail())
        assert kills >= 10
    finally:
        proc.close()


def explain(violations: list[str], records: list[CallRecord], wfs: Workflows,
            dags: dict[str, list[StepScript]]) -> str:
    """The evidence for the first violating workflows: scripts, call records, Step statuses."""
    out = []
    for name in sorted({v.split("/")[0].split(":")[0] for v in violations})[:3]:
        out.append(f"--- {name}: {dags.get(name)}")
        out += [json.dumps(r.to_json()) for r in records if r.workflow == name]
        for obj in wfs.steps():
            if obj["metadata"]["labels"].get("workflow") == name:
                out.append(json.dumps({"step": obj["metadata"]["labels"]["step"],
                                       "status": obj.get("status")}))
    return "\n".join(out)


def _alive(proc: ControllerProcess) -> None:
    assert proc.alive, f"the controller exited by itself:\n{proc.tail()}"
