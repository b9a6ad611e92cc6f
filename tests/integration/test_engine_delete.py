"""Delete = undo, and rollbacks that fail for good, with the engine in-process on the real API server."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from tests.integration.engine_fixtures import (
    GROUP,
    VERSION,
    calls,
    crds,
    create,
    get,
    running_engine,
    settings,
    step,
    step_phases,
    steps_of,
    wait_for,
    wait_phase,
    workflow,
)

__all__ = ["crds"]

FINALIZER = "workflow.example.com/rollback"


def _delete(api: client.CustomObjectsApi, namespace: str, name: str) -> None:
    api.delete_namespaced_custom_object(GROUP, VERSION, namespace, "workflows", name)


def test_deleting_a_successful_workflow_rolls_every_step_back_then_it_is_gone(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    p = {"callLog": str(log)}
    steps = [step("a", "fail", parameters=p), step("b", "fail", "a", parameters=p),
             step("c", "fail", "a", parameters=p), step("d", "fail", "b", "c", parameters=p)]
    with running_engine(api_client, settings(namespace)):
        create(crds, namespace, workflow("undo", steps))
        wait_phase(crds, namespace, "undo", "Success")
        _delete(crds, namespace, "undo")
        wait_for(lambda: get(crds, namespace, "undo") is None, timeout=90,
                 message=lambda: f"undo gone: {get(crds, namespace, 'undo')!r:.1500}")
        wait_for(lambda: not steps_of(crds, namespace, "undo"), message="the Step objects deleted")
    rollbacks = [r.step for r in calls(log, workflow_name="undo") if r.direction == "rollback"]
    assert sorted(rollbacks) == ["a", "b", "c", "d"]
    assert rollbacks[0] == "d"
    assert rollbacks[-1] == "a"


def _failing_rollback(log: Path) -> list[dict[str, object]]:
    """a -> b; b's run fails for good, and so does its rollback (2 attempts, 1 s apart)."""
    retry = {"rollbackRetryLimit": 2, "rollbackRetryPeriodSeconds": 1}
    return [
        step("a", "fail", parameters={"callLog": str(log)}),
        step("b", "fail", "a", parameters={"callLog": str(log), "runError": "permanent",
                                           "failRollbacks": "always"}, retry=retry),
    ]


def test_a_rollback_failing_for_good_keeps_the_workflow_with_preserve_on_failure(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    with running_engine(api_client, settings(namespace)):
        create(crds, namespace, workflow("kept", _failing_rollback(log), rollbackPolicy="PreserveOnFailure"))
        wf = wait_phase(crds, namespace, "kept", "Failed", "RollBacked", "Success")
        assert wf["status"]["phase"] == "Failed"
        assert step_phases(crds, namespace, "kept") == {"a": "Success", "b": "Failed"}
        _delete(crds, namespace, "kept")

        def blocked() -> dict[str, object] | None:
            current = get(crds, namespace, "kept")
            assert current is not None, "the workflow was deleted despite PreserveOnFailure"
            conditions = {c["type"]: c for c in current["status"].get("conditions", [])}
            deleting = conditions.get("Deleting")
            return current if deleting and deleting.get("reason") == "RollbackFailed" else None

        wf = wait_for(blocked, message="the Deleting=RollbackFailed condition")
        assert FINALIZER in wf["metadata"]["finalizers"]
        assert wf["status"]["phase"] == "Failed"
        assert step_phases(crds, namespace, "kept") == {"a": "Success", "b": "Failed"}
    records = calls(log, workflow_name="kept")
    assert [(r.step, r.direction, r.attempt) for r in records] == [
        ("a", "run", 1), ("b", "run", 1), ("b", "rollback", 1), ("b", "rollback", 2)]


def test_a_rollback_failing_for_good_is_passed_over_and_deleted_with_always(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    with running_engine(api_client, settings(namespace)):
        create(crds, namespace, workflow("gone", _failing_rollback(log), rollbackPolicy="Always"))
        wf = wait_phase(crds, namespace, "gone", "Failed", "RollBacked", "Success")
        assert wf["status"]["phase"] == "Failed"
        assert step_phases(crds, namespace, "gone") == {"a": "RollBacked", "b": "Failed"}
        _delete(crds, namespace, "gone")
        wait_for(lambda: get(crds, namespace, "gone") is None, timeout=90,
                 message=lambda: f"gone deleted: {get(crds, namespace, 'gone')!r:.1500}")
    records = calls(log, workflow_name="gone")
    assert [(r.step, r.direction) for r in records] == [
        ("a", "run"), ("b", "run"), ("b", "rollback"), ("b", "rollback"), ("a", "rollback")]


def test_a_run_finishing_after_the_deletion_never_moves_the_step_back(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    p = {"callLog": str(log), "sleepSeconds": "2"}
    with running_engine(api_client, settings(namespace)):
        create(crds, namespace, workflow("late", [step("slow", "fail", parameters=p)]))
        wait_for(lambda: step_phases(crds, namespace, "late").get("slow") == "Running",
                 message="the slow step running")
        _delete(crds, namespace, "late")  # the reconciler moves the step to RollingBack mid-run
        wait_for(lambda: get(crds, namespace, "late") is None, timeout=90,
                 message=lambda: f"late gone: {get(crds, namespace, 'late')!r:.1500}")
    records = calls(log, workflow_name="late")
    assert [(r.direction, r.outcome) for r in records] == [("run", "ok"), ("rollback", "ok")]
    # one call per step at a time: the rollback (2 s) started after the run ended
    assert records[1].ts - records[0].ts >= 2.0 - 0.05
