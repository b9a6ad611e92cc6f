"""Small builders for workflow and Step dicts as the API server returns them (CRD defaults applied by
``from_dict``), so a table row reads like the object it stands for."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconcilers.state_machine.config import EngineConfig
from reconcilers.state_machine.decide import decide
from reconcilers.state_machine.decision import Decision
from reconcilers.state_machine.naming import FINALIZER, step_body, step_object_name
from reconcilers.state_machine.types import Workflow, format_time

REPO = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = EngineConfig()
WF, UID, NS = "wf", "wf-uid", "ns"


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def ts(seconds: float) -> str:
    return format_time(at(seconds))


def spec_step(name: str, *depends: str, type_: str = "empty", sync: int = 0, policy: str | None = None,
              resource_status: str | None = None, run_limit: int = 3, rollback_limit: int = 3,
              period: int = 60) -> dict[str, Any]:
    template: dict[str, Any] = {"type": type_, "syncPeriodSeconds": sync, "retryPolicy": {
        "runRetryLimit": run_limit, "runRetryPeriodSeconds": period,
        "rollbackRetryLimit": rollback_limit, "rollbackRetryPeriodSeconds": period}}
    if policy:
        template["rollbackPolicy"] = policy
    step: dict[str, Any] = {"name": name, "stepTemplate": template}
    if depends:
        extra = {"resourceStatus": resource_status} if resource_status else {}
        step["dependOns"] = [{"name": d, "phase": "Success", **extra} for d in depends]
    return step


def workflow(*steps: dict[str, Any], phase: str | None = "Running", deleting: bool = False,
             policy: str | None = None, callback: bool = True, status: dict[str, Any] | None = None,
             finalizers: bool = True, name: str = WF, uid: str = UID,
             created: datetime = NOW) -> dict[str, Any]:
    spec: dict[str, Any] = {"queue": "default", "steps": list(steps)}
    if policy:
        spec["rollbackPolicy"] = policy
    if callback:
        spec["callback"] = {"url": "http://callback.example/hook"}
    meta: dict[str, Any] = {"name": name, "namespace": NS, "uid": uid, "generation": 1,
                            "resourceVersion": "10", "creationTimestamp": format_time(created)}
    if finalizers:
        meta["finalizers"] = [FINALIZER]
    if deleting:
        meta["deletionTimestamp"] = format_time(NOW)
    st = dict(status or {})
    if phase is not None:
        st["phase"] = phase
        if phase != "Pending":
            st.setdefault("startedAt", format_time(NOW))
    return {"apiVersion": "workflow.example.com/v1alpha1", "kind": "Workflow", "metadata": meta,
            "spec": spec, "status": st}


def step_obj(wf: dict[str, Any], step: str, phase: str | None = None, **status: Any) -> dict[str, Any]:
    typed = Workflow.from_dict(wf)
    body = copy.deepcopy(step_body(typed, typed.spec.step(step)))
    body["metadata"].update(uid=f"uid-{step}", resourceVersion="5")
    st = dict(status)
    if phase is not None:
        st["phase"] = phase
    body["status"] = st
    return body


def objects(wf: dict[str, Any], **phases: str | None) -> list[dict[str, Any]]:
    return [step_obj(wf, name, phase) for name, phase in phases.items()]


def run(wf: dict[str, Any], objs: list[dict[str, Any]], now: datetime = NOW,
        config: EngineConfig = CONFIG) -> Decision:
    return decide(wf, objs, now, config)


def moved(decision: Decision) -> dict[str, str]:
    """Step name -> new phase, for every step status the decision writes."""
    return {c.step: str(c.status.phase) for c in decision.steps}


def calls(decision: Decision) -> list[tuple[str, str, int]]:
    return [(str(i.kind), i.step, i.attempt) for i in decision.invocations]


def object_name(step: str) -> str:
    return step_object_name(WF, step)
