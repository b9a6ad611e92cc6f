"""The ``workflow-controller`` command line, and the signal plumbing for a graceful shutdown.

::

    workflow-controller [--kubeconfig PATH] [--config config.yaml] [--[no-]leader-elect]
                        [--leader-election-namespace NS] [--leader-election-id NAME]
                        [--metrics-bind-address :8081] [--health-probe-bind-address :9440]
                        [--log-format json|console] [--log-level info] [--shutdown-grace-period 30]
                        [--print-config]

Exit codes: 0 = stopped cleanly (SIGTERM/SIGINT, work drained, lease released) or ``--print-config``;
1 = a runtime failure (e.g. leadership lost: another process may lead now, so this one must stop);
2 = bad flags or a bad configuration file (the message names the flag or the key path), or API
credentials that do not load (a missing or invalid kubeconfig);
128+N = forced exit by a second signal N while shutting down.

:func:`main` parses, validates, configures logging, installs the :class:`Stopper` and hands
:class:`~controller.config.Settings` to ``controller.manager.run(settings, stopper) -> int``.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
import yaml
from kubernetes.config import ConfigException

from controller.config import (
    ConfigError,
    ControllerConfig,
    LeaderElectionConfig,
    LogFormat,
    ProcessConfig,
    Settings,
)
from controller.config import load_config as _load_config
from controller.http import parse_bind_address
from controller.logs import LEVELS, configure_logging

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliOptions",
    "Stopper",
    "build_settings",
    "load_config",
    "main",
    "parse_args",
    "render_config",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

log = structlog.get_logger("controller.cli")


# --------------------------------------------------------------------------------------------------
# Flags


@dataclass(frozen=True)
class CliOptions:
    """The flags as given; ``None`` = not given (the default is resolved by :func:`build_settings`)."""

    kubeconfig: Path | None = None
    config: Path | None = None
    leader_elect: bool = True
    leader_election_namespace: str | None = None
    leader_election_id: str = "kube-workflow-controller"
    leader_election_lease_duration: float = 15.0
    leader_election_renew_deadline: float = 10.0
    leader_election_retry_period: float = 2.0
    metrics_bind_address: str = ":8081"
    health_probe_bind_address: str = ":9440"
    log_format: LogFormat | None = None
    log_level: str = "info"
    shutdown_grace_period: float = 30.0
    print_config: bool = False


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="workflow-controller",
        description="Run the kube-workflow controller (a rollback-native workflow engine for Kubernetes).",
    )
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: $KUBECONFIG, else in-cluster, "
                   "else ~/.kube/config)")
    p.add_argument("--config", type=Path, help="the controller's config.yaml (the original's ConfigMap "
                   "keys); default: built-in defaults")
    p.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True,
                   help="elect a leader on a Lease so only one replica reconciles (default: on)")
    p.add_argument("--leader-election-namespace", help="the Lease's namespace (default: the config's "
                   "namespace, else the pod's namespace in a cluster, else 'default')")
    p.add_argument("--leader-election-id", default=CliOptions.leader_election_id, help="the Lease's name")
    p.add_argument("--leader-election-lease-duration", type=_seconds, default=15.0, metavar="SECONDS",
                   help="how long a non-leader waits before taking over an unrenewed lease (default 15)")
    p.add_argument("--leader-election-renew-deadline", type=_seconds, default=10.0, metavar="SECONDS",
                   help="how long the leader retries renewing before it stops leading (default 10)")
    p.add_argument("--leader-election-retry-period", type=_seconds, default=2.0, metavar="SECONDS",
                   help="time between acquire/renew attempts (default 2)")
    p.add_argument("--metrics-bind-address", default=":8081", metavar="HOST:PORT",
                   help="address of /metrics; '0' disables it (default :8081)")
    p.add_argument("--health-probe-bind-address", default=":9440", metavar="HOST:PORT",
                   help="address of /healthz and /readyz; '0' disables it (default :9440)")
    p.add_argument("--log-format", choices=[f.value for f in LogFormat],
                   help="json or console (default: json in a cluster, else console)")
    p.add_argument("--log-level", default="info", choices=list(LEVELS), help="default info")
    p.add_argument("--shutdown-grace-period", type=_seconds, default=30.0, metavar="SECONDS",
                   help="how long in-flight step calls may run after SIGTERM (default 30)")
    p.add_argument("--print-config", action="store_true",
                   help="print the effective configuration as YAML and exit")
    return p


def parse_args(argv: Sequence[str] | None = None) -> CliOptions:
    """Parse flags (``None`` = ``sys.argv[1:]``). Bad flags: argparse prints usage and exits 2."""
    ns = _parser().parse_args(argv)
    return CliOptions(
        kubeconfig=ns.kubeconfig,
        config=ns.config,
        leader_elect=ns.leader_elect,
        leader_election_namespace=ns.leader_election_namespace,
        leader_election_id=ns.leader_election_id,
        leader_election_lease_duration=ns.leader_election_lease_duration,
        leader_election_renew_deadline=ns.leader_election_renew_deadline,
        leader_election_retry_period=ns.leader_election_retry_period,
        metrics_bind_address=ns.metrics_bind_address,
        health_probe_bind_address=ns.health_probe_bind_address,
        log_format=LogFormat(ns.log_format) if ns.log_format else None,
        log_level=ns.log_level,
        shutdown_grace_period=ns.shutdown_grace_period,
        print_config=ns.print_config,
    )


def load_config(path: str | os.PathLike[str] | None) -> ControllerConfig:
    """Read and validate the config file (``None`` = defaults); raises :class:`ConfigError`."""
    return _load_config(path)


def _pod_namespace() -> str | None:
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


def build_settings(
    options: CliOptions,
    controller: ControllerConfig,
    *,
    environ: Mapping[str, str] | None = None,
    identity: str | None = None,
) -> Settings:
    """Resolve defaults that depend on the file or the environment; raises :class:`ConfigError`
    naming the flag for invalid values."""
    env = os.environ if environ is None else environ
    in_cluster = bool(env.get("KUBERNETES_SERVICE_HOST"))
    for flag, address in (("--metrics-bind-address", options.metrics_bind_address),
                          ("--health-probe-bind-address", options.health_probe_bind_address)):
        try:
            parse_bind_address(address)
        except ValueError as exc:
            raise ConfigError(flag, str(exc)) from None
    namespace = (options.leader_election_namespace or controller.namespace
                 or (_pod_namespace() if in_cluster else None) or "default")
    try:
        election = LeaderElectionConfig(
            enabled=options.leader_elect,
            namespace=namespace,
            name=options.leader_election_id,
            identity=identity or f"{socket.gethostname()}_{uuid.uuid4()}",
            lease_duration=options.leader_election_lease_duration,
            renew_deadline=options.leader_election_renew_deadline,
            retry_period=options.leader_election_retry_period,
        )
    except ValueError as exc:
        raise ConfigError("--leader-election-*", str(exc)) from None
    process = ProcessConfig(
        kubeconfig=options.kubeconfig,
        leader_election=election,
        metrics_bind_address=options.metrics_bind_address,
        health_probe_bind_address=options.health_probe_bind_address,
        log_format=options.log_format or (LogFormat.JSON if in_cluster else LogFormat.CONSOLE),
        log_level=options.log_level,
        shutdown_grace_period=options.shutdown_grace_period,
    )
    return Settings(controller=controller, process=process)


def render_config(settings: Settings) -> str:
    """The effective configuration as YAML, in the file's own keys (loadable with ``--config``), then
    the effective flags as comments."""
    text = yaml.safe_dump(settings.controller.to_dict(), sort_keys=False, default_flow_style=False)
    p = settings.process
    le = p.leader_election
    flags = {
        "kubeconfig": str(p.kubeconfig) if p.kubeconfig else "($KUBECONFIG, in-cluster, ~/.kube/config)",
        "leader-elect": le.enabled,
        "leader-election-namespace": le.namespace,
        "leader-election-id": le.name,
        "leader-election-lease-duration": le.lease_duration,
        "leader-election-renew-deadline": le.renew_deadline,
        "leader-election-retry-period": le.retry_period,
        "metrics-bind-address": p.metrics_bind_address,
        "health-probe-bind-address": p.health_probe_bind_address,
        "log-format": str(p.log_format),
        "log-level": p.log_level,
        "shutdown-grace-period": p.shutdown_grace_period,
    }
    lines = ["# effective flags:"] + [f"#   --{k}={v}" for k, v in flags.items()]
    return text + "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Signals


class Stopper:
    """Turns SIGTERM/SIGINT into a stop request the manager waits on; a second signal exits at once.

    Contract: :meth:`install` and :meth:`restore` run on the main thread (Python delivers signals
    there). :meth:`stop`, :meth:`wait`, :attr:`stopped` and :attr:`reason` may be used from any
    thread; the first stop wins and fixes :attr:`reason`. After the first stop, a further *signal*
    calls ``exit_now(128 + signum)`` (default ``os._exit``: no cleanup; the operator asked twice).
    """

    def __init__(self, *, exit_now: Callable[[int], Any] = os._exit) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reason = ""
        self._exit_now = exit_now
        self._previous: dict[int, Any] = {}

    def install(self, signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> Stopper:
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self.stop(f"signal {name}"):
            log.warning("second signal: exiting now", signal=name)
            self._exit_now(128 + signum)
            return
        log.info("shutdown requested", signal=name)

    def stop(self, reason: str) -> bool:
        """Request a stop; True if this was the first request."""
        with self._lock:
            if self._event.is_set():
                return False
            self._reason = reason
            self._event.set()
            return True

    @property
    def stopped(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> str:
        with self._lock:
            return self._reason

    @property
    def event(self) -> threading.Event:
        """The underlying event (set once stopping); for code that waits on several things."""
        return self._event

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested (True) or ``timeout`` passes (False)."""
        return self._event.wait(timeout)


# --------------------------------------------------------------------------------------------------
# main


#: The cyclic garbage collector's generation-0 threshold (CPython's default: 700 allocations).
GC_THRESHOLD = (50_000, 10, 10)


def tune_gc() -> None:
    """Collect cycles less often. The controller allocates a dict tree per API answer and watch event,
    freed by reference counting (JSON has no cycles), so at the default threshold the collector ran
    every few hundred objects and traversed the young ones for nothing: 7 % of the controller's CPU
    in the throughput bench, RSS unchanged. The older generations keep CPython's ratios (10, 10), so
    real cycles (an exception, its traceback and frames) still go within minutes. ``gc.freeze``
    first moves everything alive after start-up (modules, settings) out of the collector's view."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, validate, configure logging, install signal handlers, run the manager; the exit code."""
    options = parse_args(argv)
    try:
        settings = build_settings(options, load_config(options.config))
    except ConfigError as exc:
        print(f"workflow-controller: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if options.print_config:
        sys.stdout.write(render_config(settings))
        return EXIT_OK
    configure_logging(settings.process.log_format, settings.process.log_level)
    from controller.manager import run  # here, not at the top: the manager imports this module
    tune_gc()

    stopper = Stopper().install()
    try:
        return run(settings, stopper)
    except ConfigException as exc:  # the API credentials (--kubeconfig, $KUBECONFIG, ...) do not load
        source = f"--kubeconfig {options.kubeconfig}" if options.kubeconfig else (
            "$KUBECONFIG, in-cluster or ~/.kube/config")
        print(f"workflow-controller: cannot load API credentials ({source}): {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        stopper.restore()
