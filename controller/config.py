"""Configuration: the original's ConfigMap ``config.yaml`` (same keys) and the process flags.

One frozen object per component (STYLE rule 14), built once at start-up and passed down:

* :class:`ControllerConfig` — the file (``--config``), parsed by :func:`parse_config` / :func:`load_config`;
  it holds :class:`QueueConfig`, :class:`StepKindConfig` per listed kind, :class:`StepDefaults`,
  :class:`CallbackConfig` and :class:`EventsConfig`;
* :class:`LeaderElectionConfig` and :class:`ProcessConfig` — the command-line flags (built by
  :mod:`controller.cli`);
* :class:`Settings` — both, what the manager receives.

The file's keys are the seed's::

    namespace: ""                  # watch scope; empty = all namespaces
    throttleQPS: 100               # client-side API request rate (requests/s); 0 = unlimited
    idleTimeoutMillSeconds: 200000 # a watch silent this long is restarted
    rpcTimeoutMillSeconds: 5000    # deadline for API calls and callback requests
    controllerConfig:
      queue: {strategy: FIFO, maxRunningCount: 100}
      steps:
      - {kind: random, qps: 1, concurrency: 2}

plus these extensions (all optional) under ``controllerConfig``: ``stepDefaults`` {``qps``,
``concurrency``} for kinds not listed in ``steps`` (the seed never reconciled those at all),
``workflowWorkers``, ``writeConcurrency``, ``callback`` {``connectTimeoutMillSeconds``,
``readTimeoutMillSeconds``, ``allowPrivateNetworks``, ``allowedCIDRs``} and ``events`` {``enabled``,
``steps``}.

Validation is strict: an unknown key or a value of the wrong type raises :class:`ConfigError` whose
message starts with the key's path, e.g. ``controllerConfig.queue.maxRunningCount: expected an integer,
got 'ten'`` or ``controllerConfig.quue: unknown key (did you mean 'queue'?)``. A key present with an
empty value (``namespace:``) means "unset": the default applies.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import yaml

from informers import ReflectorConfig
from reconcilers.state_machine.config import EngineConfig, QueueStrategy

__all__ = [
    "CallbackConfig",
    "ConfigError",
    "ControllerConfig",
    "EventsConfig",
    "LeaderElectionConfig",
    "LogFormat",
    "ProcessConfig",
    "QueueConfig",
    "Settings",
    "StepDefaults",
    "StepKindConfig",
    "load_config",
    "parse_config",
]


class ConfigError(ValueError):
    """A configuration problem. ``path`` is the key path (``controllerConfig.queue.strategy``), or the
    file name for problems of the file as a whole; ``str(err)`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


# --------------------------------------------------------------------------------------------------
# The file


@dataclass(frozen=True)
class QueueConfig:
    """Admission (``controllerConfig.queue``)."""

    #: ``strategy``: FIFO (oldest first across queues) or FAIR (least active queue first). Default FIFO.
    strategy: QueueStrategy = QueueStrategy.FIFO
    #: ``maxRunningCount``: at most this many workflows Running or RollingBack at once (finished ones
    #: never count). Default 100; must be >= 1.
    max_running_count: int = 100


@dataclass(frozen=True)
class StepDefaults:
    """Limits for step kinds not listed in ``controllerConfig.steps`` (``controllerConfig.stepDefaults``)."""

    #: ``qps``: plugin calls per second started for one kind (a token bucket, burst = max(1, qps)).
    #: Default 10; must be > 0.
    qps: float = 10.0
    #: ``concurrency``: worker threads (calls in flight) for one kind. Default 4; must be >= 1.
    concurrency: int = 4


@dataclass(frozen=True)
class StepKindConfig:
    """One entry of ``controllerConfig.steps``: the limits of one step type (``kind``).

    ``qps`` or ``concurrency`` left out of an entry take the :class:`StepDefaults` values."""

    #: ``kind``: the step type (``stepTemplate.type``). Required.
    kind: str
    #: ``qps``: plugin calls per second started for this kind; > 0.
    qps: float = StepDefaults.qps
    #: ``concurrency``: worker threads (calls in flight) for this kind; >= 1.
    concurrency: int = StepDefaults.concurrency

    @property
    def burst(self) -> int:
        """Token bucket size: a kind limited to ``qps`` may start ``max(1, ceil(qps))`` calls at once."""
        return max(1, math.ceil(self.qps))


@dataclass(frozen=True)
class CallbackConfig:
    """Callback delivery (``controllerConfig.callback``)."""

    #: ``connectTimeoutMillSeconds``: TCP/TLS connect timeout, in seconds here.
    #: Unset = ``rpcTimeoutMillSeconds``.
    connect_timeout: float = 5.0
    #: ``readTimeoutMillSeconds``: read timeout per receive, in seconds here.
    #: Unset = ``rpcTimeoutMillSeconds``.
    read_timeout: float = 5.0
    #: ``allowPrivateNetworks``: may callback URLs resolve to loopback, private, link-local addresses?
    #: Default true (the business side usually runs in the same cluster); set false against SSRF.
    allow_private_networks: bool = True
    #: ``allowedCIDRs``: if non-empty, callback URLs must resolve into one of these networks (checked in
    #: addition to ``allowPrivateNetworks``). Default empty = no restriction.
    allowed_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


@dataclass(frozen=True)
class EventsConfig:
    """Kubernetes Events (``controllerConfig.events``)."""

    #: ``enabled``: emit Events on phase changes. Default true.
    enabled: bool = True
    #: ``steps``: also a Normal Event per step start and success (two Event writes per step; off by
    #: default, Warning Events for failing steps are always posted).
    steps: bool = False


@dataclass(frozen=True)
class ControllerConfig:
    """The controller's configuration file, with every default filled in."""

    #: ``namespace``: the one namespace to watch; "" (the default, or unset) = all namespaces.
    namespace: str = ""
    #: ``throttleQPS``: client-side API request rate, requests per second, shared by every thread
    #: (burst = :attr:`throttle_burst`). Default 100; 0 = no client-side limit.
    throttle_qps: float = 100.0
    #: ``idleTimeoutMillSeconds`` in seconds: a watch with no event or bookmark for this long is
    #: restarted. Default 200 s (200000 ms).
    idle_timeout: float = 200.0
    #: ``rpcTimeoutMillSeconds`` in seconds: deadline of one API call (and the default callback
    #: timeouts). Default 5 s (5000 ms).
    rpc_timeout: float = 5.0
    #: ``controllerConfig.queue``.
    queue: QueueConfig = field(default_factory=QueueConfig)
    #: ``controllerConfig.steps``: per-kind limits, in file order; kinds are unique.
    steps: tuple[StepKindConfig, ...] = ()
    #: ``controllerConfig.stepDefaults``: limits of kinds not listed in ``steps``.
    step_defaults: StepDefaults = field(default_factory=StepDefaults)
    #: ``controllerConfig.workflowWorkers``: workflow reconcile threads. Default 16; >= 1. A reconcile
    #: spends most of its time waiting for its API writes (bench: ~80% of a worker's samples), so the
    #: count is sized for the API server's latency, not the cores (2 workers were busy 98% of the time
    #: with 200 workflows in flight and the queue wait was seconds; 8 were still saturated).
    workflow_workers: int = 16
    #: ``controllerConfig.writeConcurrency``: the engine's mutating API requests in flight at once,
    #: handed out by priority (running workflows' progress, then new workflows, then Events). Default 6;
    #: 0 = no limit (and no priorities). Past a few concurrent writes one API server only queues them.
    write_concurrency: int = 6
    #: ``controllerConfig.callback``.
    callback: CallbackConfig = field(default_factory=CallbackConfig)
    #: ``controllerConfig.events``.
    events: EventsConfig = field(default_factory=EventsConfig)

    @property
    def watch_namespace(self) -> str | None:
        """The namespace argument for list/watch: ``None`` = all namespaces."""
        return self.namespace or None

    @property
    def throttle_burst(self) -> int:
        """Client-side request burst: twice the QPS (at least 1), like the usual client-go settings."""
        return max(1, math.ceil(2 * self.throttle_qps))

    def step_config(self, kind: str) -> StepKindConfig:
        """The limits of ``kind``: its ``steps`` entry, else :attr:`step_defaults`."""
        for s in self.steps:
            if s.kind == kind:
                return s
        return StepKindConfig(kind, self.step_defaults.qps, self.step_defaults.concurrency)

    def request_threads(self, step_types: Iterable[str]) -> int:
        """Threads that call the API at once: workflow workers plus every step kind's concurrency (size
        the client's connection pool with this plus one per watch)."""
        return self.workflow_workers + sum(self.step_config(k).concurrency for k in set(step_types))

    def engine_config(self, step_types: frozenset[str] | None = None) -> EngineConfig:
        """The state machine's config; ``step_types`` = the installed plugins (``StepRegistry.names()``)."""
        return EngineConfig(
            step_types=step_types,
            queue_strategy=self.queue.strategy,
            max_running_count=self.queue.max_running_count,
            step_events=self.events.enabled and self.events.steps,
        )

    def reflector_config(self, base: ReflectorConfig | None = None) -> ReflectorConfig:
        """``base`` (default: client-go's settings) with the watch idle timeout from the file."""
        return replace(base or ReflectorConfig(), watch_idle_timeout=self.idle_timeout)

    def to_dict(self) -> dict[str, Any]:
        """The effective configuration in the file's own keys (``load_config`` reads it back unchanged)."""
        return {
            "namespace": self.namespace,
            "throttleQPS": _num(self.throttle_qps),
            "idleTimeoutMillSeconds": _ms(self.idle_timeout),
            "rpcTimeoutMillSeconds": _ms(self.rpc_timeout),
            "controllerConfig": {
                "queue": {
                    "strategy": str(self.queue.strategy),
                    "maxRunningCount": self.queue.max_running_count,
                },
                "steps": [
                    {"kind": s.kind, "qps": _num(s.qps), "concurrency": s.concurrency} for s in self.steps
                ],
                "stepDefaults": {
                    "qps": _num(self.step_defaults.qps),
                    "concurrency": self.step_defaults.concurrency,
                },
                "workflowWorkers": self.workflow_workers,
                "writeConcurrency": self.write_concurrency,
                "callback": {
                    "connectTimeoutMillSeconds": _ms(self.callback.connect_timeout),
                    "readTimeoutMillSeconds": _ms(self.callback.read_timeout),
                    "allowPrivateNetworks": self.callback.allow_private_networks,
                    "allowedCIDRs": [str(n) for n in self.callback.allowed_cidrs],
                },
                "events": {"enabled": self.events.enabled, "steps": self.events.steps},
            },
        }


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


# --------------------------------------------------------------------------------------------------
# Parsing

_T = TypeVar("_T")


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str | int | float | bool):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "...'"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


class _Reader:
    """Typed access to one mapping of the file, reporting problems with the key path."""

    def __init__(self, data: object, path: str, allowed: tuple[str, ...]) -> None:
        self.path = path
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(path or "<root>", f"expected a mapping, got {_describe(data)}")
        for key in data:
            if not isinstance(key, str):
                raise ConfigError(self._sub(str(key)), "keys must be strings")
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(allowed)})"
                raise ConfigError(self._sub(key), "unknown key" + hint)
        self.data: Mapping[str, object] = data

    def _sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, convert: Callable[[object, str], _T], default: _T) -> _T:
        value = self.data.get(key)
        if value is None:
            return default
        return convert(value, self._sub(key))


def _comment_hint(value: object) -> str:
    if isinstance(value, str) and "//" in value:
        return " (YAML comments start with '#', not '//')"
    return ""


def _int(minimum: int) -> Callable[[object, str], int]:
    def convert(value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {_describe(value)}{_comment_hint(value)}")
        if value < minimum:
            raise ConfigError(path, f"must be >= {minimum}, got {value}")
        return value

    return convert


def _number(*, minimum: float, exclusive: bool) -> Callable[[object, str], float]:
    def convert(value: object, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, f"expected a number, got {_describe(value)}{_comment_hint(value)}")
        x = float(value)
        if not math.isfinite(x) or x < minimum or (exclusive and x == minimum):
            raise ConfigError(path, f"must be {'>' if exclusive else '>='} {_num(minimum)}, got {value}")
        return x

    return convert


def _millis(value: object, path: str) -> float:
    """A positive duration in milliseconds, returned in seconds."""
    return _number(minimum=0, exclusive=True)(value, path) / 1000.0


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"expected a string, got {_describe(value)}")
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {_describe(value)}")
    return value


def _strategy(value: object, path: str) -> QueueStrategy:
    text = _str(value, path)
    try:
        return QueueStrategy(text.upper())
    except ValueError:
        choices = " or ".join(repr(str(s)) for s in QueueStrategy)
        raise ConfigError(path, f"expected {choices}, got {_describe(value)}") from None


def _list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise ConfigError(path, f"expected a list, got {_describe(value)}")
    return value


def _cidrs(value: object, path: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for i, item in enumerate(_list(value, path)):
        text = _str(item, f"{path}[{i}]")
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(f"{path}[{i}]", f"not a CIDR network: {text!r}") from None
    return tuple(out)


_ROOT_KEYS = (
    "namespace", "throttleQPS", "idleTimeoutMillSeconds", "rpcTimeoutMillSeconds", "controllerConfig",
)
_CC_KEYS = ("queue", "steps", "stepDefaults", "workflowWorkers", "writeConcurrency", "callback", "events")


def parse_config(data: object) -> ControllerConfig:
    """Validate a parsed ``config.yaml`` (``None`` = empty file = all defaults)."""
    root = _Reader(data, "", _ROOT_KEYS)
    rpc_timeout = root.get("rpcTimeoutMillSeconds", _millis, ControllerConfig.rpc_timeout)

    cc = _Reader(root.data.get("controllerConfig"), "controllerConfig", _CC_KEYS)
    q = _Reader(cc.data.get("queue"), "controllerConfig.queue", ("strategy", "maxRunningCount"))
    queue = QueueConfig(
        strategy=q.get("strategy", _strategy, QueueConfig.strategy),
        max_running_count=q.get("maxRunningCount", _int(1), QueueConfig.max_running_count),
    )

    d = _Reader(cc.data.get("stepDefaults"), "controllerConfig.stepDefaults", ("qps", "concurrency"))
    defaults = StepDefaults(
        qps=d.get("qps", _number(minimum=0, exclusive=True), StepDefaults.qps),
        concurrency=d.get("concurrency", _int(1), StepDefaults.concurrency),
    )

    steps: list[StepKindConfig] = []
    seen: dict[str, int] = {}
    no_steps: list[object] = []
    for i, item in enumerate(cc.get("steps", _list, no_steps)):
        s = _Reader(item, f"controllerConfig.steps[{i}]", ("kind", "qps", "concurrency"))
        kind = s.get("kind", _str, "")
        if not kind:
            raise ConfigError(f"controllerConfig.steps[{i}].kind", "required (the step type)")
        if kind in seen:
            raise ConfigError(
                f"controllerConfig.steps[{i}].kind", f"duplicate kind {kind!r} (also steps[{seen[kind]}])"
            )
        seen[kind] = i
        steps.append(StepKindConfig(
            kind=kind,
            qps=s.get("qps", _number(minimum=0, exclusive=True), defaults.qps),
            concurrency=s.get("concurrency", _int(1), defaults.concurrency),
        ))

    cb = _Reader(
        cc.data.get("callback"), "controllerConfig.callback",
        ("connectTimeoutMillSeconds", "readTimeoutMillSeconds", "allowPrivateNetworks", "allowedCIDRs"),
    )
    callback = CallbackConfig(
        connect_timeout=cb.get("connectTimeoutMillSeconds", _millis, rpc_timeout),
        read_timeout=cb.get("readTimeoutMillSeconds", _millis, rpc_timeout),
        allow_private_networks=cb.get("allowPrivateNetworks", _bool, CallbackConfig.allow_private_networks),
        allowed_cidrs=cb.get("allowedCIDRs", _cidrs, ()),
    )
    ev = _Reader(cc.data.get("events"), "controllerConfig.events", ("enabled", "steps"))

    return ControllerConfig(
        namespace=root.get("namespace", _str, ""),
        throttle_qps=root.get(
            "throttleQPS", _number(minimum=0, exclusive=False), ControllerConfig.throttle_qps
        ),
        idle_timeout=root.get("idleTimeoutMillSeconds", _millis, ControllerConfig.idle_timeout),
        rpc_timeout=rpc_timeout,
        queue=queue,
        steps=tuple(steps),
        step_defaults=defaults,
        workflow_workers=cc.get("workflowWorkers", _int(1), ControllerConfig.workflow_workers),
        write_concurrency=cc.get("writeConcurrency", _int(0), ControllerConfig.write_concurrency),
        callback=callback,
        events=EventsConfig(enabled=ev.get("enabled", _bool, EventsConfig.enabled),
                            steps=ev.get("steps", _bool, EventsConfig.steps)),
    )


def load_config(path: str | os.PathLike[str] | None) -> ControllerConfig:
    """Read and validate a ``config.yaml``; ``None`` = no file = all defaults.

    Raises :class:`ConfigError` for an unreadable file, invalid YAML, unknown keys and wrong types."""
    if path is None:
        return ControllerConfig()
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(name, f"cannot read: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(name, f"invalid YAML{where}: {problem}") from exc
    return parse_config(data)


# --------------------------------------------------------------------------------------------------
# The process (command-line flags)


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


@dataclass(frozen=True)
class LeaderElectionConfig:
    """Leader election on a ``coordination.k8s.io/v1`` Lease (client-go's defaults)."""

    #: ``--leader-elect``: elect a leader (default on). Off = this process reconciles at once, alone.
    enabled: bool = True
    #: ``--leader-election-namespace``: the Lease's namespace. The CLI defaults it to the config's
    #: ``namespace``, else ``default``.
    namespace: str = "default"
    #: ``--leader-election-id``: the Lease's name.
    name: str = "kube-workflow-controller"
    #: This candidate's ``holderIdentity``; unique per process (the CLI uses ``<hostname>_<uuid>``).
    identity: str = ""
    #: Seconds a non-leader waits after last observing a renewal before taking over. Default 15 s.
    lease_duration: float = 15.0
    #: Seconds the leader keeps retrying a failing renewal before it gives up leading. Default 10 s.
    renew_deadline: float = 10.0
    #: Seconds between attempts to acquire or renew. Default 2 s.
    retry_period: float = 2.0
    #: Clear ``holderIdentity`` when stopping, so the next candidate acquires at once. Default true.
    release_on_cancel: bool = True

    def __post_init__(self) -> None:
        # client-go's NewLeaderElector checks: LeaseDuration > RenewDeadline > JitterFactor*RetryPeriod.
        if not self.retry_period > 0:
            raise ValueError("leader election: retry period must be > 0")
        if not self.renew_deadline > 1.2 * self.retry_period:
            raise ValueError("leader election: renew deadline must be greater than 1.2 x retry period")
        if not self.lease_duration > self.renew_deadline:
            raise ValueError("leader election: lease duration must be greater than the renew deadline")


@dataclass(frozen=True)
class ProcessConfig:
    """The process: where to connect, what to serve, how to log, how long to drain."""

    #: ``--kubeconfig``: a kubeconfig file. None = ``$KUBECONFIG``, else in-cluster, else ~/.kube/config.
    kubeconfig: Path | None = None
    leader_election: LeaderElectionConfig = field(default_factory=LeaderElectionConfig)
    #: ``--metrics-bind-address``: ``host:port`` for /metrics; ``:8081`` = all interfaces; "0" = off.
    metrics_bind_address: str = ":8081"
    #: ``--health-probe-bind-address``: ``host:port`` for /healthz and /readyz; "0" = off.
    health_probe_bind_address: str = ":9440"
    #: ``--log-format``: json in a cluster (``KUBERNETES_SERVICE_HOST`` set), else console.
    log_format: LogFormat = LogFormat.CONSOLE
    #: ``--log-level``: debug, info, warning or error.
    log_level: str = "info"
    #: ``--shutdown-grace-period``: seconds in-flight step calls may take to finish after SIGTERM.
    shutdown_grace_period: float = 30.0


@dataclass(frozen=True)
class Settings:
    """Everything the manager needs, built once by :func:`controller.cli.build_settings`."""

    controller: ControllerConfig
    process: ProcessConfig
