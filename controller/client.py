"""The one API client of the process: one ``Configuration``, one ``ApiClient``, shared by every thread.

:func:`build_api_client` loads credentials into a *private* ``Configuration`` (never the library's
process-global default: concurrent ``load_*_config`` calls on it race, python-client notes §2.7), in
client-go's order: ``--kubeconfig``, else ``$KUBECONFIG``, else in-cluster (``KUBERNETES_SERVICE_HOST``
and the service account files), else ``~/.kube/config``. It then sets:

* ``connection_pool_maxsize`` = watches + workers + spare: every open watch pins one pooled connection
  for minutes, and urllib3 silently opens-and-discards connections beyond the pool size;
* ``keep_alive = True``: TCP keepalive like client-go, so a dead peer behind a load balancer is noticed;
* ``retries = False``: no hidden urllib3 retries. The workqueue and the reflector retry with backoff;
  a failure should surface at once, not after three silent reconnects.

Every request goes through :class:`ThrottledApiClient.call_api`, which first takes a token from a
:class:`TokenBucket` (``throttleQPS``, burst 2 x QPS): client-go's ``flowcontrol`` client-side rate limit.
That covers the generated API methods and raw ``param_serialize`` + ``call_api`` calls alike, watches
included (as in client-go, opening a watch costs one token; its events cost nothing), and
:meth:`ThrottledApiClient.call_raw`, the short requests without the model layer (``informers.rawhttp``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from informers import BucketRateLimiter, Clock, RealClock, rawhttp

__all__ = [
    "ClientSource",
    "LoadedConfiguration",
    "RequestObserver",
    "ThrottledApiClient",
    "TokenBucket",
    "build_api_client",
    "in_cluster",
    "load_configuration",
]


class TokenBucket:
    """A blocking token bucket: ``qps`` tokens a second, at most ``burst`` saved up (client-go's
    ``flowcontrol.NewTokenBucketRateLimiter``).

    Contract: thread-safe; any thread calls :meth:`wait`. Each call reserves one token (possibly
    borrowed from the future, so concurrent callers queue up in arrival order with growing delays)
    and then blocks, on the injected clock, until that token exists. ``qps <= 0`` means unlimited:
    :meth:`wait` returns at once. Not guaranteed: fairness beyond reservation order, or that a waiter
    wakes exactly on time (it wakes no earlier).
    """

    def __init__(self, qps: float, burst: int, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or RealClock()
        self._bucket = BucketRateLimiter(qps, max(1, burst), clock=self._clock) if qps > 0 else None
        self._cond = threading.Condition()  # only to park on (Clock.wait needs a held condition)
        self.qps = qps
        self.burst = burst

    def reserve(self) -> float:
        """Take one token now; return how many seconds until it may be used (0 = at once)."""
        return 0.0 if self._bucket is None else self._bucket.when(None)

    def wait(self) -> float:
        """Take one token, block until it may be used, and return the seconds waited."""
        delay = self.reserve()
        if delay <= 0:
            return 0.0
        start = self._clock.now()
        deadline = start + delay
        with self._cond:
            while (now := self._clock.now()) < deadline:
                self._clock.wait(self._cond, deadline - now)
        return self._clock.now() - start


class RequestObserver(Protocol):
    """Told about every request (implemented by :class:`controller.metrics.Metrics`)."""

    def observe_rate_limiter_wait(self, seconds: float) -> None: ...
    def observe_request(self, method: str, code: str) -> None: ...


class ThrottledApiClient(k8s.ApiClient):
    """``ApiClient`` whose every request first waits for a token of ``limiter``.

    Contract: shared by all threads, like the base class (whose urllib3 ``PoolManager`` is
    thread-safe). ``limiter`` and ``observer`` are set once, before the client is shared.
    """

    def __init__(
        self,
        configuration: Any = None,
        *,
        limiter: TokenBucket | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        super().__init__(configuration)
        self.limiter = limiter or TokenBucket(0, 1)
        self.observer = observer

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        base = super().call_api
        return self._throttled(method, lambda: base(method, url, *args, **kwargs))

    def call_raw(self, method: str, path: str, body: bytes | None = None, *,
                 content_type: str | None = "application/json",
                 timeout: tuple[float, float] = (5.0, 5.0)) -> rawhttp.RawResponse:
        """A short request without the model layer (:func:`informers.rawhttp.send`), throttled and
        observed like :meth:`call_api`."""
        out: rawhttp.RawResponse = self._throttled(method, lambda: rawhttp.send(
            self, method, path, body, content_type=content_type, timeout=timeout))
        return out

    def _throttled(self, method: str, call: Callable[[], Any]) -> Any:
        """Wait for a token, make the request, tell the observer (status, or ``<error>`` when no HTTP
        answer came: client-go counts those too)."""
        waited = self.limiter.wait()
        observer = self.observer
        if observer is None:
            return call()
        observer.observe_rate_limiter_wait(waited)
        try:
            response = call()
        except k8s.ApiException as exc:
            observer.observe_request(method, str(exc.status or "<error>"))
            raise
        except Exception:
            observer.observe_request(method, "<error>")
            raise
        observer.observe_request(method, str(response.status))
        return response


class ClientSource(StrEnum):
    FLAG = "--kubeconfig"
    ENV = "$KUBECONFIG"
    IN_CLUSTER = "in-cluster"
    HOME = "~/.kube/config"


@dataclass(frozen=True)
class LoadedConfiguration:
    configuration: Any  # kubernetes.client.Configuration
    source: ClientSource
    path: str | None


def in_cluster(environ: Mapping[str, str] | None = None) -> bool:
    """Running in a pod? (the service environment variable every pod gets)."""
    env = os.environ if environ is None else environ
    return bool(env.get("KUBERNETES_SERVICE_HOST"))


def _load_file(path: str, cfg: Any) -> None:
    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=path, client_configuration=cfg, persist_config=False
    )


def load_configuration(
    kubeconfig: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> LoadedConfiguration:
    """Credentials in client-go's order (see the module docstring), into a fresh ``Configuration``.

    Raises ``kubernetes.config.ConfigException`` when no source works."""
    env = os.environ if environ is None else environ
    cfg = k8s.Configuration()
    if kubeconfig is not None:
        path = os.fspath(kubeconfig)
        _load_file(path, cfg)
        return LoadedConfiguration(cfg, ClientSource.FLAG, path)
    if env.get("KUBECONFIG"):
        path = env["KUBECONFIG"]
        _load_file(path, cfg)
        return LoadedConfiguration(cfg, ClientSource.ENV, path)
    if in_cluster(env):
        k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        return LoadedConfiguration(cfg, ClientSource.IN_CLUSTER, None)
    path = str((home or Path.home()) / ".kube" / "config")
    _load_file(path, cfg)
    return LoadedConfiguration(cfg, ClientSource.HOME, path)


def build_api_client(
    kubeconfig: str | os.PathLike[str] | None = None,
    *,
    qps: float = 100.0,
    burst: int | None = None,
    watches: int = 2,
    workers: int = 8,
    observer: RequestObserver | None = None,
    clock: Clock | None = None,
    user_agent: str = "workflow-controller/0.1.0",
    configure: Callable[[Any], None] | None = None,
) -> ThrottledApiClient:
    """The process's API client.

    ``qps``/``burst``: the client-side rate limit (``ControllerConfig.throttle_qps`` /
    ``throttle_burst``; ``qps <= 0`` = unlimited; burst defaults to 2 x qps). ``watches``: watches open at
    once (one per informer); ``workers``: threads making requests at once (all worker pools plus leader
    election, events, callbacks' API writes). ``configure`` may adjust the ``Configuration`` last (tests).
    """
    loaded = load_configuration(kubeconfig)
    cfg = loaded.configuration
    cfg.connection_pool_maxsize = watches + workers + 2
    cfg.keep_alive = True
    cfg.retries = False
    if configure is not None:
        configure(cfg)
    limiter = TokenBucket(qps, burst if burst is not None else max(1, int(2 * qps)), clock=clock)
    api = ThrottledApiClient(cfg, limiter=limiter, observer=observer)
    api.user_agent = user_agent
    return api

