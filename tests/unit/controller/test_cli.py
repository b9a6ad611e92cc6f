"""controller.cli: flags, settings resolution, --print-config, exit codes (as a subprocess), Stopper."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller.cli import Stopper, build_settings, main, parse_args
from controller.config import ControllerConfig, LogFormat, load_config, parse_config
from informers.testing import wait_until

REPO = Path(__file__).resolve().parents[3]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", *args], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_defaults() -> None:
    o = parse_args([])
    assert o.leader_elect is True
    assert o.leader_election_id == "kube-workflow-controller"
    assert o.metrics_bind_address == ":8081"
    assert o.health_probe_bind_address == ":9440"
    assert o.shutdown_grace_period == 30.0
    assert o.log_format is None
    assert not o.print_config


def test_flags() -> None:
    o = parse_args(["--no-leader-elect", "--kubeconfig", "/k", "--log-format", "json", "--log-level", "debug",
                    "--metrics-bind-address", "127.0.0.1:0", "--shutdown-grace-period", "5"])
    assert o.leader_elect is False
    assert o.kubeconfig == Path("/k")
    assert o.log_format is LogFormat.JSON
    assert o.log_level == "debug"
    assert o.shutdown_grace_period == 5.0


def test_lease_namespace_defaults_to_the_config_namespace_then_default() -> None:
    s = build_settings(parse_args([]), parse_config({"namespace": "team-a"}), environ={}, identity="me")
    assert s.process.leader_election.namespace == "team-a"
    assert s.process.leader_election.identity == "me"
    s = build_settings(parse_args([]), ControllerConfig(), environ={})
    assert s.process.leader_election.namespace == "default"
    assert s.process.leader_election.identity                     # hostname_uuid
    s = build_settings(parse_args(["--leader-election-namespace", "ops"]), parse_config({"namespace": "a"}),
                       environ={})
    assert s.process.leader_election.namespace == "ops"


def test_log_format_is_json_in_a_cluster_and_console_outside() -> None:
    def log_format(argv: list[str], environ: dict[str, str]) -> LogFormat:
        return build_settings(parse_args(argv), ControllerConfig(), environ=environ).process.log_format

    in_cluster = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    assert log_format([], {}) is LogFormat.CONSOLE
    assert log_format([], in_cluster) is LogFormat.JSON
    assert log_format(["--log-format", "console"], in_cluster) is LogFormat.CONSOLE


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("controllerConfig:\n  queue:\n    maxRunningCount: ten\n")
    r = run_cli("--config", str(bad), "--print-config")
    assert r.returncode == 2
    assert "controllerConfig.queue.maxRunningCount: expected an integer, got 'ten'" in r.stderr
    assert r.stdout == ""


def test_unknown_key_exits_2_with_a_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("controllerConfig:\n  quue: {}\n")
    assert main(["--config", str(bad)]) == 2
    assert "controllerConfig.quue: unknown key (did you mean 'queue'?)" in capsys.readouterr().err


def test_bad_flag_value_exits_2_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--metrics-bind-address", "nonsense", "--print-config"]) == 2
    assert "--metrics-bind-address" in capsys.readouterr().err
    assert main(["--leader-election-renew-deadline", "20", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "--leader-election-*" in err
    assert "lease duration must be greater than the renew deadline" in err
    with pytest.raises(SystemExit) as exit_:
        main(["--log-format", "xml"])                             # argparse's own usage error
    assert exit_.value.code == 2


def test_print_config_shows_the_defaults_and_loads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["--print-config"]) == 0
    out = capsys.readouterr().out
    printed = yaml.safe_load(out)
    assert printed["throttleQPS"] == 100
    assert printed["idleTimeoutMillSeconds"] == 200000
    assert printed["rpcTimeoutMillSeconds"] == 5000
    assert printed["controllerConfig"]["queue"] == {"strategy": "FIFO", "maxRunningCount": 100}
    assert "#   --leader-elect=True" in out
    assert "#   --health-probe-bind-address=:9440" in out
    assert "#   --log-format=console" in out
    again = tmp_path / "printed.yaml"
    again.write_text(out)
    assert load_config(again) == ControllerConfig()


def test_print_config_shows_the_file_s_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "namespace: wf\ncontrollerConfig:\n  queue: {strategy: FAIR}\n  steps: [{kind: random, qps: 1}]\n"
    )
    assert main(["--config", str(cfg), "--print-config"]) == 0
    out = capsys.readouterr().out
    printed = yaml.safe_load(out)
    assert printed["namespace"] == "wf"
    assert printed["controllerConfig"]["queue"]["strategy"] == "FAIR"
    assert printed["controllerConfig"]["steps"] == [{"kind": "random", "qps": 1, "concurrency": 4}]
    assert "#   --leader-election-namespace=wf" in out


def test_stopper_first_stop_wins() -> None:
    s = Stopper()
    assert not s.stopped
    assert not s.wait(0)
    assert s.stop("leadership lost")
    assert not s.stop("signal SIGTERM")
    assert s.stopped
    assert s.wait(0)
    assert s.reason == "leadership lost"


def test_stopper_turns_a_signal_into_a_stop_and_a_second_signal_into_exit_now() -> None:
    exits: list[int] = []
    s = Stopper(exit_now=exits.append).install((signal.SIGUSR1,))
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert s.wait(10)
        assert s.reason == "signal SIGUSR1"
        assert exits == []
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_until(lambda: bool(exits), timeout=10, what="the second signal's handler ran")
        assert exits == [128 + signal.SIGUSR1]
    finally:
        s.restore()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_tune_gc_collects_cycles_less_often_and_freezes_what_start_up_left() -> None:
    import gc

    from controller.cli import GC_THRESHOLD, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLD
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
