"""controller.config: the seed's config.yaml keys, defaults, strict validation naming the key path."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.config import (
    CallbackConfig,
    ConfigError,
    ControllerConfig,
    LeaderElectionConfig,
    QueueConfig,
    StepKindConfig,
    load_config,
    parse_config,
)
from informers import ReflectorConfig
from reconcilers.state_machine.config import EngineConfig, QueueStrategy

# The README's ConfigMap config.yaml (seed/README.en.md), Helm-rendered for namespace "workflows".
README_VERBATIM = """\
namespace: workflows
throttleQPS: 100
idleTimeoutMillSeconds: 200000
rpcTimeoutMillSeconds: 5000
controllerConfig:
  queue:
    strategy: "FIFO"
    maxRunningCount: 100
  steps:
  - kind: "random"
    qps: 1                 // Limit the consumption rate of a certain type of step.

"""
# The same without the "// comment", which YAML reads as part of the value (not a comment).
README_VALID = README_VERBATIM.replace(
    "                 // Limit the consumption rate of a certain type of step.", ""
)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_readme_config_parses_with_the_seed_values(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, README_VALID))
    assert cfg.namespace == "workflows"
    assert cfg.watch_namespace == "workflows"
    assert cfg.throttle_qps == 100.0
    assert cfg.throttle_burst == 200
    assert cfg.idle_timeout == 200.0
    assert cfg.rpc_timeout == 5.0
    assert cfg.queue == QueueConfig(QueueStrategy.FIFO, 100)
    assert cfg.steps == (StepKindConfig("random", qps=1.0, concurrency=4),)
    assert cfg.step_config("random").burst == 1


def test_readme_verbatim_names_the_key_holding_the_slash_comment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, README_VERBATIM))
    assert err.value.path == "controllerConfig.steps[0].qps"
    assert str(err.value).startswith("controllerConfig.steps[0].qps: expected a number, got '1 ")
    assert str(err.value).endswith("(YAML comments start with '#', not '//')")


@pytest.mark.parametrize("data", [None, {}, {"controllerConfig": None}, {"namespace": None}], ids=repr)
def test_empty_or_null_means_defaults(data: Any) -> None:
    assert parse_config(data) == ControllerConfig()


def test_no_file_means_defaults() -> None:
    cfg = load_config(None)
    assert cfg == ControllerConfig()
    assert cfg.watch_namespace is None
    assert cfg.queue.strategy is QueueStrategy.FIFO
    assert cfg.queue.max_running_count == 100


BAD: list[tuple[str, Any, str]] = [
    ("max-running-count-word", {"controllerConfig": {"queue": {"maxRunningCount": "ten"}}},
     "controllerConfig.queue.maxRunningCount: expected an integer, got 'ten'"),
    ("max-running-count-zero", {"controllerConfig": {"queue": {"maxRunningCount": 0}}},
     "controllerConfig.queue.maxRunningCount: must be >= 1, got 0"),
    ("max-running-count-bool", {"controllerConfig": {"queue": {"maxRunningCount": True}}},
     "controllerConfig.queue.maxRunningCount: expected an integer, got True"),
    ("typo-with-suggestion", {"controllerConfig": {"quue": {}}},
     "controllerConfig.quue: unknown key (did you mean 'queue'?)"),
    ("unknown-root-key", {"throttleQps": 5},
     "throttleQps: unknown key (did you mean 'throttleQPS'?)"),
    ("unknown-key-no-suggestion", {"zzz": 1},
     "zzz: unknown key (known keys: namespace, throttleQPS, idleTimeoutMillSeconds, rpcTimeoutMillSeconds, "
     "controllerConfig)"),
    ("strategy", {"controllerConfig": {"queue": {"strategy": "LIFO"}}},
     "controllerConfig.queue.strategy: expected 'FIFO' or 'FAIR', got 'LIFO'"),
    ("throttle-negative", {"throttleQPS": -1}, "throttleQPS: must be >= 0, got -1"),
    ("throttle-string", {"throttleQPS": "fast"}, "throttleQPS: expected a number, got 'fast'"),
    ("idle-zero", {"idleTimeoutMillSeconds": 0}, "idleTimeoutMillSeconds: must be > 0, got 0"),
    ("namespace-number", {"namespace": 7}, "namespace: expected a string, got 7"),
    ("steps-mapping", {"controllerConfig": {"steps": {"kind": "x"}}},
     "controllerConfig.steps: expected a list, got a mapping"),
    ("step-not-mapping", {"controllerConfig": {"steps": ["random"]}},
     "controllerConfig.steps[0]: expected a mapping, got 'random'"),
    ("step-kind-missing", {"controllerConfig": {"steps": [{"qps": 1}]}},
     "controllerConfig.steps[0].kind: required (the step type)"),
    ("step-duplicate", {"controllerConfig": {"steps": [{"kind": "a"}, {"kind": "b"}, {"kind": "a"}]}},
     "controllerConfig.steps[2].kind: duplicate kind 'a' (also steps[0])"),
    ("step-qps-zero", {"controllerConfig": {"steps": [{"kind": "a", "qps": 0}]}},
     "controllerConfig.steps[0].qps: must be > 0, got 0"),
    ("step-unknown-key", {"controllerConfig": {"steps": [{"kind": "a", "concurrent": 2}]}},
     "controllerConfig.steps[0].concurrent: unknown key (did you mean 'concurrency'?)"),
    ("step-concurrency-float", {"controllerConfig": {"steps": [{"kind": "a", "concurrency": 1.5}]}},
     "controllerConfig.steps[0].concurrency: expected an integer, got 1.5"),
    ("cidr", {"controllerConfig": {"callback": {"allowedCIDRs": ["10.0.0.0/8", "nope"]}}},
     "controllerConfig.callback.allowedCIDRs[1]: not a CIDR network: 'nope'"),
    ("private-networks-string", {"controllerConfig": {"callback": {"allowPrivateNetworks": "yes"}}},
     "controllerConfig.callback.allowPrivateNetworks: expected true or false, got 'yes'"),
    ("root-list", ["namespace"], "<root>: expected a mapping, got a list"),
    ("controller-config-scalar", {"controllerConfig": 3}, "controllerConfig: expected a mapping, got 3"),
]


@pytest.mark.parametrize(("data", "message"), [(d, m) for _, d, m in BAD], ids=[i for i, _, _ in BAD])
def test_bad_config_names_the_key(data: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert str(err.value) == message


def test_invalid_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "namespace: a\ncontrollerConfig:\n  queue: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.path == str(path)
    assert "invalid YAML at line" in err.value.problem


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "missing.yaml")
    assert err.value.path.endswith("missing.yaml")
    assert "cannot read" in err.value.problem


def test_strategy_is_case_insensitive() -> None:
    cfg = parse_config({"controllerConfig": {"queue": {"strategy": "fair"}}})
    assert cfg.queue.strategy is QueueStrategy.FAIR


def test_unlisted_kinds_get_the_defaults_and_listed_kinds_inherit_missing_fields() -> None:
    cfg = parse_config({"controllerConfig": {
        "stepDefaults": {"qps": 3, "concurrency": 7},
        "steps": [{"kind": "random", "qps": 1}, {"kind": "http", "concurrency": 2}],
    }})
    assert cfg.step_config("random") == StepKindConfig("random", 1.0, 7)
    assert cfg.step_config("http") == StepKindConfig("http", 3.0, 2)
    assert cfg.step_config("sleep") == StepKindConfig("sleep", 3.0, 7)


def test_callback_timeouts_default_to_the_rpc_timeout() -> None:
    cfg = parse_config({"rpcTimeoutMillSeconds": 1500, "controllerConfig": {
        "callback": {"readTimeoutMillSeconds": 9000, "allowedCIDRs": ["10.1.2.3/8"]},
    }})
    assert cfg.callback == CallbackConfig(
        connect_timeout=1.5, read_timeout=9.0, allowed_cidrs=(ipaddress.ip_network("10.0.0.0/8"),)
    )


def test_to_dict_round_trips_through_yaml() -> None:
    cfg = parse_config({
        "namespace": "ns", "throttleQPS": 2.5, "idleTimeoutMillSeconds": 1234,
        "controllerConfig": {
            "queue": {"strategy": "FAIR", "maxRunningCount": 3},
            "steps": [{"kind": "random", "qps": 0.5, "concurrency": 1}],
            "workflowWorkers": 3,
            "writeConcurrency": 0,
            "callback": {"allowPrivateNetworks": False, "allowedCIDRs": ["192.168.0.0/16"]},
            "events": {"enabled": False, "steps": True},
        },
    })
    assert parse_config(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg
    assert parse_config(ControllerConfig().to_dict()) == ControllerConfig()


def test_engine_and_reflector_configs_come_from_the_file() -> None:
    cfg = parse_config({"idleTimeoutMillSeconds": 30000,
                        "controllerConfig": {"queue": {"strategy": "FAIR", "maxRunningCount": 5}}})
    assert cfg.engine_config(frozenset({"random"})) == EngineConfig(
        step_types=frozenset({"random"}), queue_strategy=QueueStrategy.FAIR, max_running_count=5
    )
    base = ReflectorConfig(page_size=7)
    assert cfg.reflector_config(base) == ReflectorConfig(page_size=7, watch_idle_timeout=30.0)


def test_per_step_events_are_opt_in() -> None:
    assert parse_config({}).engine_config().step_events is False
    on = parse_config({"controllerConfig": {"events": {"steps": True}}})
    assert on.engine_config().step_events is True
    # events.enabled false wins: no Events at all
    off = parse_config({"controllerConfig": {"events": {"enabled": False, "steps": True}}})
    assert off.engine_config().step_events is False


def test_zero_throttle_qps_is_allowed_and_means_unlimited() -> None:
    assert parse_config({"throttleQPS": 0}).throttle_qps == 0.0


@pytest.mark.parametrize(("lease", "renew", "retry"), [(10, 10, 2), (15, 2, 2), (15, 10, 0)])
def test_leader_election_timings_are_checked_like_client_go(lease: float, renew: float, retry: float) -> None:
    with pytest.raises(ValueError, match="leader election"):
        LeaderElectionConfig(lease_duration=lease, renew_deadline=renew, retry_period=retry)


def test_leader_election_defaults_are_client_go_s() -> None:
    c = LeaderElectionConfig()
    assert (c.lease_duration, c.renew_deadline, c.retry_period) == (15.0, 10.0, 2.0)
    assert c.release_on_cancel


def test_request_threads_adds_workflow_workers_and_each_kind_s_concurrency() -> None:
    cfg = parse_config({"controllerConfig": {
        "workflowWorkers": 3, "steps": [{"kind": "random", "concurrency": 2}],
    }})
    assert cfg.request_threads(["random", "http", "http"]) == 3 + 2 + 4


def test_write_concurrency_defaults_to_6_and_0_turns_the_gate_off() -> None:
    assert parse_config({}).write_concurrency == 6
    assert parse_config({"controllerConfig": {"writeConcurrency": 0}}).write_concurrency == 0
    with pytest.raises(ConfigError, match="writeConcurrency"):
        parse_config({"controllerConfig": {"writeConcurrency": -1}})
