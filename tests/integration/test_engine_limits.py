"""Per step type limits: the QPS token bucket, and a plugin that hangs past its deadline."""

from __future__ import annotations

import threading
from pathlib import Path

from kubernetes import client

from reconcilers.settings import StepLimits
from stepkit import BaseStep, StepContext, StepRegistry, StepResult
from tests.integration.engine_fixtures import (
    calls,
    crds,
    create,
    running_engine,
    settings,
    step,
    steps_of,
    wait_phase,
    workflow,
)

__all__ = ["crds"]

QPS = 2.0
BURST = 2  # StepLimits.burst for qps 2


def test_a_step_type_limited_to_2_qps_is_called_at_most_2_per_second(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    engine_settings = settings(namespace, step_limits={"fail": StepLimits(qps=QPS, concurrency=4)})
    names = [f"wf-{i:02d}" for i in range(20)]
    with running_engine(api_client, engine_settings):
        for name in names:
            create(crds, namespace, workflow(name, [step("only", "fail", parameters={"callLog": str(log)})]))
        for name in names:
            wait_phase(crds, namespace, name, "Success", timeout=120)
    stamps = sorted(r.ts for r in calls(log))
    assert len(stamps) == 20
    # A token bucket of rate r and burst b lets at most b + r*t calls start in any window of length t.
    # The log stamps a call when it ends (a few ms after it starts): allow 0.1 s of slack.
    for i in range(len(stamps)):
        for j in range(i + 1, len(stamps)):
            span = stamps[j] - stamps[i]
            assert j - i + 1 <= BURST + QPS * (span + 0.1), (i, j, span)
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    print(f"measured fail call rate: {rate:.2f}/s over {len(stamps)} calls")
    assert rate <= QPS * 1.1 + BURST / (stamps[-1] - stamps[0])


class _Hang(BaseStep):
    """The first run never returns (until released); later runs succeed."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def run(self, ctx: StepContext) -> StepResult | None:
        with self._lock:
            self.calls += 1
        if ctx.attempt == 1:
            self.release.wait(60)
        return None


def test_a_plugin_hanging_past_its_deadline_does_not_hold_the_worker(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str) -> None:
    registry = StepRegistry()
    hang = _Hang()
    registry.register("hang", hang)
    engine_settings = settings(namespace, call_grace=0.5, step_limits={
        "hang": StepLimits(qps=10.0, concurrency=1, call_timeout=1.0)})
    try:
        with running_engine(api_client, engine_settings, registry) as engine:
            retry = {"runRetryPeriodSeconds": 1}
            create(crds, namespace, workflow("stuck", [step("h", "hang", retry=retry)]))
            wf = wait_phase(crds, namespace, "stuck", "Success", "RollBacked", "Failed")
            assert wf["status"]["phase"] == "Success"
            assert engine.executor.abandoned_calls == 1
            status = steps_of(crds, namespace, "stuck")["h"]["status"]
            assert status["runRetryCount"] == 1  # the abandoned call counted as one failed attempt
            assert hang.calls == 2
    finally:
        hang.release.set()
