"""/healthz and /readyz: named checks, Kubernetes' probe format.

A check is a function returning ``None`` when fine or a short reason when not; an exception counts as
a failure with its message. The manager registers them, for example::

    health.add_readiness_check("informers-synced", informers_synced(factory.informers))
    health.add_readiness_check("watches-alive", WatchesAlive(factory.informers, failing_after=60))

Liveness (``/healthz``) passes with no checks: a process that answers HTTP is alive. Readiness
(``/readyz``) passes when every readiness check passes. A standby replica (not the leader) is healthy
and may be ready: its informers sync and its watches run; only the reconcilers wait for the lease.

Responses follow the API server's: ``200 ok``; ``500`` with ``[-]name failed: reason`` lines; with
``?verbose`` every check is listed (``[+]name ok``); ``?exclude=name`` skips a check;
``/readyz/<name>`` runs one check.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from controller.http import Request, Response, Route
from informers import Clock, RealClock, ReflectorStats

__all__ = ["Check", "HealthChecks", "InformerLike", "WatchesAlive", "informers_synced", "ping"]

Check = Callable[[], str | None]


def ping() -> str | None:
    """The always-passing check (controller-runtime's ``healthz.Ping``)."""
    return None


class HealthChecks:
    """The registry of liveness and readiness checks, and their HTTP routes.

    Contract: thread-safe. ``add_*`` may be called at any time (the manager adds checks as parts
    start); checks run on the HTTP request threads, concurrently, so they must be thread-safe and
    fast (read a flag or a snapshot; never call the API server). ``_lock`` guards the two dicts;
    checks are called outside it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._liveness: dict[str, Check] = {}
        self._readiness: dict[str, Check] = {}

    def add_liveness_check(self, name: str, check: Check) -> None:
        with self._lock:
            self._liveness[name] = check

    def add_readiness_check(self, name: str, check: Check) -> None:
        with self._lock:
            self._readiness[name] = check

    def remove_readiness_check(self, name: str) -> None:
        with self._lock:
            self._readiness.pop(name, None)

    @staticmethod
    def _run(check: Check) -> str | None:
        try:
            return check()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    def results(self, kind: str = "readyz") -> dict[str, str | None]:
        """Run the checks of ``kind`` ("healthz" or "readyz"): name → None (ok) or the reason."""
        with self._lock:
            checks = dict(self._liveness if kind == "healthz" else self._readiness)
        return {name: self._run(check) for name, check in sorted(checks.items())}

    def ready(self) -> bool:
        return all(r is None for r in self.results("readyz").values())

    def _respond(self, kind: str, request: Request) -> Response:
        with self._lock:
            checks = dict(self._liveness if kind == "healthz" else self._readiness)
        one = request.path[len(f"/{kind}/"):] if request.path.startswith(f"/{kind}/") else ""
        if one:
            if one not in checks:
                return Response(404, f"no such check: {one}\n".encode())
            reason = self._run(checks[one])
            if reason is None:
                return Response(200, b"ok")
            return Response(500, f"[-]{one} failed: {reason}\n".encode())
        excluded = {x for values in request.query.get("exclude", []) for x in values.split(",")}
        verbose = "verbose" in request.query
        lines: list[str] = []
        failed = False
        for name in sorted(checks):
            if name in excluded:
                lines.append(f"[+]{name} excluded: ok")
                continue
            reason = self._run(checks[name])
            if reason is None:
                lines.append(f"[+]{name} ok")
            else:
                failed = True
                lines.append(f"[-]{name} failed: {reason}")
        if failed:
            body = "\n".join(lines) + f"\n{kind} check failed\n"
            if not verbose:
                body = "\n".join(x for x in lines if x.startswith("[-]")) + f"\n{kind} check failed\n"
            return Response(500, body.encode())
        if verbose:
            return Response(200, ("\n".join(lines) + f"\n{kind} check passed\n").encode())
        return Response(200, b"ok")

    def routes(self) -> Mapping[str, Route]:
        """``/healthz``, ``/readyz`` and ``/livez`` (= ``/healthz``) for :func:`controller.http.serve`."""
        return {
            "/healthz": lambda r: self._respond("healthz", r),
            "/livez": lambda r: self._respond("healthz", Request("/healthz" + r.path[6:], r.query)),
            "/readyz": lambda r: self._respond("readyz", r),
        }


# --------------------------------------------------------------------------------------------------
# Checks for the informers


class InformerLike(Protocol):
    """What the informer checks read (``informers.SharedIndexInformer`` satisfies it)."""

    name: str

    def has_synced(self) -> bool: ...
    def stats(self) -> ReflectorStats: ...


def informers_synced(informers: Callable[[], Iterable[InformerLike]]) -> Check:
    """"informers-synced": every informer has its first LIST in the cache (``factory.informers``)."""

    def check() -> str | None:
        waiting = sorted(i.name for i in informers() if not i.has_synced())
        return f"not synced: {', '.join(waiting)}" if waiting else None

    return check


class WatchesAlive:
    """"watches-alive": fails when an informer's list/watch has only failed for ``failing_after`` seconds.

    Progress is any LIST, WATCH opened or event (bookmarks included: the API server sends one about
    every minute on an idle watch) since the previous probe; an error is a growing ``errors`` count
    in the reflector's stats. The reflector retries forever with backoff, so this check is what tells
    Kubernetes that a replica has been cut off from the API server (a 403 after an RBAC change, a
    network partition) instead of silently reconciling nothing.

    Contract: called from probe threads; ``_lock`` guards the per-informer bookkeeping. The judgement
    happens when probed (no thread of its own), so its resolution is the probe period.
    """

    def __init__(
        self,
        informers: Callable[[], Iterable[InformerLike]],
        *,
        failing_after: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        self._informers = informers
        self._failing_after = failing_after
        self._clock: Clock = clock or RealClock()
        self._lock = threading.Lock()
        # name -> (progress counter total, errors total, failing since (None = healthy))
        self._seen: dict[str, tuple[int, int, float | None]] = {}

    def __call__(self) -> str | None:
        now = self._clock.now()
        dead: list[str] = []
        with self._lock:
            for informer in self._informers():
                st = informer.stats()
                progress, errors = st.lists + st.watches + st.events, st.errors
                old = self._seen.get(informer.name)
                if old is None:
                    since = now if errors and not progress else None
                else:
                    since = old[2]
                    if progress > old[0]:
                        since = None
                    elif errors > old[1] and since is None:
                        since = now
                self._seen[informer.name] = (progress, errors, since)
                if since is not None and now - since >= self._failing_after:
                    dead.append(f"{informer.name} ({st.last_error or 'no progress'})")
        return f"failing for {self._failing_after:g}s: {'; '.join(sorted(dead))}" if dead else None
