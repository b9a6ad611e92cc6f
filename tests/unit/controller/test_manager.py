"""The manager's pure pieces: standby readiness and the config → engine settings mapping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from kubernetes.client import ApiClient

from controller.config import parse_config
from controller.leader import LeaderElector
from controller.manager import _Leading, _standby_reachable, engine_settings
from controller.metrics import Metrics
from reconcilers.settings import EngineSettings
from stepkit import StepRegistry
from stepkit.builtin.demo import EmptyStep


@dataclass
class _Elector:
    leader: bool
    since: float | None

    def is_leader(self) -> bool:
        return self.leader

    def seconds_since_contact(self) -> float | None:
        return self.since


def _check(leader: bool, since: float | None) -> str | None:
    return _standby_reachable(cast(LeaderElector, _Elector(leader, since)), lease_duration=15.0)()


def test_a_standby_that_reaches_its_lease_is_ready() -> None:
    assert _check(False, 3.0) is None


def test_a_standby_that_never_reached_its_lease_is_not_ready() -> None:
    assert _check(False, None) == "the Lease has not been reached yet"


def test_a_standby_cut_off_for_two_lease_durations_is_not_ready() -> None:
    assert _check(False, 31.0) == "the Lease was last reached 31s ago"


def test_the_leader_is_judged_by_the_engine_checks_not_by_this_one() -> None:
    assert _check(True, None) is None


def test_engine_settings_carry_the_config_file_values() -> None:
    raw: dict[str, Any] = {
        "namespace": "team-a", "rpcTimeoutMillSeconds": 2500,
        "controllerConfig": {"queue": {"strategy": "FAIR", "maxRunningCount": 7},
                             "steps": [{"kind": "random", "qps": 1, "concurrency": 3}]},
    }
    registry = StepRegistry()
    registry.register("random", EmptyStep)
    settings = engine_settings(parse_config(raw), registry)
    assert settings.namespace == "team-a"
    assert settings.rpc_timeout == 2.5
    assert settings.limits("random").qps == 1
    assert settings.limits("random").concurrency == 3
    assert settings.engine.max_running_count == 7
    assert settings.engine.queue_strategy == "FAIR"
    assert settings.engine.step_types == frozenset({"random"})


def _leading(standby_is_ready: bool) -> _Leading:
    return _Leading(cast(ApiClient, None), EngineSettings(), StepRegistry(), Metrics(),
                    standby_is_ready=standby_is_ready)


def test_without_leader_election_not_ready_until_the_engine_starts() -> None:
    assert _leading(standby_is_ready=False).readiness() == "the engine has not started"


def test_with_leader_election_a_waiting_replica_is_a_ready_standby() -> None:
    assert _leading(standby_is_ready=True).readiness() is None
