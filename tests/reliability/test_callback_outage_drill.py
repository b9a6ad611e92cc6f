"""Callback outage drill: workflows call back a local receiver that is first down (connection refused),
then slow (answers after the sender's read timeout), then answers 500 for a while - and the controller is
SIGKILLed and restarted in the middle of that - and finally recovers. Afterwards every event id the
workflows emitted (``status.callbacks.emitted``) has been answered 200 at least once; none is lost;
duplicates (an id answered 200 more than once: a timed-out POST the receiver still processed, or a POST
whose settlement the SIGKILL prevented) are counted and reported.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kubernetes import client

from kubetestenv import ControlPlane
from tests.reliability.drills import (
    Receiver,
    Workflows,
    controller,
    drill_config,
    report,
    seeded,
    wait_for,
    workflow_body,
)
from tests.reliability.invariants import StepScript

WORKFLOWS = 10


@pytest.mark.timeout(900)
def test_every_callback_event_arrives_after_an_outage_with_a_controller_restart(
        drill_plane: ControlPlane, drill_api: client.ApiClient, drill_namespace: str, tmp_path: Path) -> None:
    rng = seeded("callbacks")
    started = time.monotonic()
    wfs = Workflows(drill_api, drill_namespace)
    receiver = Receiver()
    receiver.slow_seconds = 2.5
    config = drill_config(controllerConfig={
        "queue": {"strategy": "FIFO", "maxRunningCount": 200},
        "stepDefaults": {"qps": 100, "concurrency": 8},
        "callback": {"connectTimeoutMillSeconds": 1000, "readTimeoutMillSeconds": 1000},
    })
    names = [f"cb-{i:02d}" for i in range(WORKFLOWS)]
    timeline: list[str] = []
    try:
        with controller(drill_plane.kubeconfig, drill_namespace, tmp_path / "controller", config) as proc:
            receiver.set("down")
            for i, name in enumerate(names):
                # every third workflow fails at its last step, so rollback events are sent too
                fail_last = "permanent" if i % 3 == 0 else "ok"
                steps = [StepScript("a", (), "ok", "ok"), StepScript("b", ("a",), "retry1", "ok"),
                         StepScript("c", ("b",), fail_last, "ok")]
                wfs.create(workflow_body(name, [s.body() for s in steps], callback={"url": receiver.url}))
            for mode, seconds in (("down", 6.0), ("slow", 6.0), ("error", 4.0)):
                receiver.set(mode)
                timeline.append(mode)
                time.sleep(rng.uniform(seconds, seconds + 2.0))
            proc.sigkill()  # in the middle of the 500s
            timeline.append("controller SIGKILL")
            time.sleep(rng.uniform(0.5, 2.0))
            proc.start()
            time.sleep(rng.uniform(3.0, 5.0))
            receiver.set("ok")
            timeline.append("ok")
            finals = wfs.wait_terminal(names, timeout=300)

            def drained() -> dict[str, dict[str, object]] | None:
                latest = wfs.all()
                if any((w.get("status") or {}).get("callbacks", {}).get("pending") for w in latest.values()):
                    return None
                return latest

            def left() -> str:
                return "every outbox drained: " + str(
                    {n: len(w.get("status", {}).get("callbacks", {}).get("pending") or [])
                     for n, w in wfs.all().items()})

            finals = wait_for(drained, timeout=300, interval=1.0, message=left)
            assert proc.alive, proc.tail()
            exit_code = proc.terminate()
    finally:
        receiver.close()
    emitted = {str(i) for w in finals.values()
               for i in (w["status"].get("callbacks") or {}).get("emitted") or []}
    requests = receiver.snapshot()
    delivered = receiver.delivered()
    lost = sorted(emitted - set(delivered))
    unknown = sorted(set(delivered) - emitted)
    duplicated = sum(n - 1 for n in delivered.values() if n > 1)
    crash_lines = proc.crashes()
    report("callbacks", workflows=len(finals), events_emitted=len(emitted), posts=len(requests),
           answered_500=sum(1 for _, code, _, _ in requests if code == 500),
           delivered=len(set(delivered) & emitted), duplicated=duplicated, lost=len(lost),
           unknown_ids=len(unknown), crashes_injected=1, timeline="/".join(timeline).replace(" ", "_"),
           controller_crashes=len(crash_lines) + (exit_code != 0), seconds=round(time.monotonic() - started))
    assert emitted, "no callback events were emitted"
    assert not lost, lost
    assert not unknown, unknown
    assert not crash_lines, "\n".join(crash_lines[:20])
    assert exit_code == 0, proc.tail()
    # at least the workflow events: started, and succeeded or rolled back
    for name, wf in finals.items():
        types = {i.split(":", 1)[1] for i in wf["status"]["callbacks"]["emitted"]}
        assert "WorkflowStarted" in types, (name, types)
