"""The manager: one ``workflow-controller`` process, wired.

::

    settings ─▶ API client (throttleQPS) ─▶ /metrics + /healthz,/readyz servers
             ─▶ leader election on a Lease ─(leading)─▶ Engine (informers, reconcilers, step workers)
    SIGTERM/SIGINT ─▶ stop taking work ─▶ in-flight step calls finish (grace) ─▶ release the Lease ─▶ exit 0
    lease lost      ─▶ stop all work at once (no grace: another replica may lead now) ─▶ exit 1

Only the leader runs the engine (informers included: a standby holds no cache, so it costs the API
server nothing). A standby is healthy, and ready while it can reach its Lease — readiness gates
traffic and rollouts, and a standby that never became ready would block every rolling update of a
2-replica Deployment. The leader is ready once its informers have synced and their watches are alive.

Contract: :func:`run` is called once from the main thread; the elector's callbacks run on its thread
and only start the engine or signal the main thread, which does every stop.
"""

from __future__ import annotations

import threading

import structlog
from kubernetes.client import ApiClient

from controller.cli import EXIT_FAILURE, EXIT_OK, Stopper
from controller.client import build_api_client
from controller.config import ControllerConfig, Settings
from controller.health import Check, HealthChecks, WatchesAlive, informers_synced, ping
from controller.http import EndpointServer, serve
from controller.leader import ApiLeaseStore, LeaderElector, LeadershipEnd
from controller.metrics import Metrics
from reconcilers.engine import Engine
from reconcilers.settings import EngineSettings, StepLimits
from stepkit import StepRegistry

__all__ = ["engine_settings", "run"]

log = structlog.get_logger(__name__)

#: Seconds the leader waits for its first LIST before it reports a sync problem (it keeps going).
_SYNC_TIMEOUT = 120.0


def engine_settings(config: ControllerConfig, registry: StepRegistry) -> EngineSettings:
    """The engine's settings from the configuration file (the one place this mapping lives)."""
    return EngineSettings(
        namespace=config.watch_namespace,
        workflow_workers=config.workflow_workers,
        write_concurrency=config.write_concurrency,
        rpc_timeout=config.rpc_timeout,
        step_limits={s.kind: StepLimits(s.qps, s.concurrency) for s in config.steps},
        step_defaults=StepLimits(config.step_defaults.qps, config.step_defaults.concurrency),
        engine=config.engine_config(frozenset(registry.names())),
        reflector=config.reflector_config(),
        callback_connect_timeout=config.callback.connect_timeout,
        callback_read_timeout=config.callback.read_timeout,
        callback_allow_private_networks=config.callback.allow_private_networks,
        callback_allowed_cidrs=config.callback.allowed_cidrs,
        events_enabled=config.events.enabled,
    )


class _Leading:
    """The engine's life while this replica leads.

    Contract: ``start`` runs on the elector thread (it must return promptly: it only starts threads);
    ``stop`` and ``readiness`` run on the main / probe threads. ``_lock`` guards ``_engine``.
    """

    def __init__(self, api: ApiClient, settings: EngineSettings, registry: StepRegistry,
                 metrics: Metrics, *, standby_is_ready: bool) -> None:
        self._api = api
        self._standby_is_ready = standby_is_ready
        self._settings = settings
        self._registry = registry
        self._metrics = metrics
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._watches: WatchesAlive | None = None

    def start(self) -> None:
        engine = Engine(self._api, self._settings, self._registry, metrics=self._metrics)
        with self._lock:
            self._engine = engine
            self._watches = WatchesAlive(engine.informers)
        self._metrics.register_controller("workflow", self._settings.workflow_workers)
        self._metrics.track_queue(engine.reconciler.queue)
        self._metrics.set_workflow_phase_source(engine.phase_counts)
        self._metrics.set_engine_load(engine)
        engine.start()
        threading.Thread(target=self._report_sync, args=(engine,), name="sync-report", daemon=True).start()

    @staticmethod
    def _report_sync(engine: Engine) -> None:
        if engine.wait_for_sync(_SYNC_TIMEOUT):
            log.info("caches synced")
        else:
            log.warning("caches not synced yet", waited_seconds=_SYNC_TIMEOUT)

    def stop(self, grace: float) -> None:
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.stop(grace=grace)

    def readiness(self) -> str | None:
        with self._lock:
            engine, watches = self._engine, self._watches
        if engine is None or watches is None:
            if not self._standby_is_ready:  # no leader election: there is no standby, only "not yet"
                return "the engine has not started"
            return None  # a standby is ready (see the module docstring) while it can reach the Lease
        return informers_synced(engine.informers)() or watches() or engine.healthy()


def _standby_reachable(elector: LeaderElector, lease_duration: float) -> Check:
    """Readiness of a replica that does not lead: fails while the Lease has not been read or written
    for two lease durations (the API server is unreachable), so a cut-off replica is not reported ready."""

    def check() -> str | None:
        if elector.is_leader():
            return None
        since = elector.seconds_since_contact()
        if since is None:
            return "the Lease has not been reached yet"
        if since > 2 * lease_duration:
            return f"the Lease was last reached {since:.0f}s ago"
        return None

    return check


def run(settings: Settings, stopper: Stopper) -> int:
    """Run until ``stopper`` fires or the lease is lost; the process exit code."""
    config, process = settings.controller, settings.process
    registry = StepRegistry.default()
    report = registry.report()
    log.info("step plugins", loaded=sorted(report["loaded"]), broken=report["broken"])

    metrics = Metrics()
    health = HealthChecks()
    health.add_liveness_check("ping", ping)
    api = build_api_client(
        process.kubeconfig, qps=config.throttle_qps, burst=config.throttle_burst, watches=2,
        workers=config.request_threads(registry.names()) + 2, observer=metrics,
    )
    election = process.leader_election
    leading = _Leading(api, engine_settings(config, registry), registry, metrics,
                       standby_is_ready=election.enabled)
    health.add_readiness_check("engine", leading.readiness)

    servers: list[EndpointServer] = []
    for address, routes, name in ((process.metrics_bind_address, metrics.routes(), "metrics"),
                                  (process.health_probe_bind_address, health.routes(), "health")):
        server = serve(address, routes, name=name)
        if server is not None:
            servers.append(server)
            log.info("serving", endpoint=name, url=server.url)

    lost = threading.Event()

    def stopped_leading(end: LeadershipEnd) -> None:
        if end is LeadershipEnd.LOST:
            lost.set()
            stopper.stop("leadership lost")

    elector: LeaderElector | None = None
    elector_thread: threading.Thread | None = None
    try:
        if election.enabled:
            elector = LeaderElector(
                election, ApiLeaseStore(api, election.namespace, election.name),
                on_started_leading=leading.start, on_stopped_leading=stopped_leading,
                status=metrics, request_timeout=config.rpc_timeout,
            )
            elector_thread = elector.start()
            health.add_readiness_check("lease", _standby_reachable(elector, election.lease_duration))
            log.info("waiting for leadership", lease=f"{election.namespace}/{election.name}",
                     identity=election.identity)
        else:
            leading.start()
        stopper.wait()
        log.info("stopping", reason=stopper.reason)
        # Lost lease: stop at once, another replica may already run these steps. Shutdown: let calls
        # in flight finish and write their outcomes, and only then give the lease away.
        leading.stop(grace=0.0 if lost.is_set() else process.shutdown_grace_period)
    finally:
        if elector is not None and elector_thread is not None:
            elector.stop()  # releases the Lease: after the engine stopped, so no write follows it
            elector_thread.join(timeout=config.rpc_timeout + 1.0)
        for server in servers:
            server.stop()
        api.close()  # type: ignore[no-untyped-call]
    log.info("stopped", lost_leadership=lost.is_set())
    return EXIT_FAILURE if lost.is_set() else EXIT_OK
