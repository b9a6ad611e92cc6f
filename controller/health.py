"""/healthz and /readyz: named checks, Kubernetes' probe format.

A check is a function returning ``None`` when fine or a short reason when not; an exception counts as
a failure with its message. The manager registers them, for example::

    health.add_readiness_check("informers-synced",
                               lambda: None if factory_synced() else "caches not synced")
    health.add_readiness_check("watches-alive", watches_alive)

Liveness (``/healthz``) passes with no checks: a process that answers HTTP is alive. Readiness
(``/readyz``) passes when every readiness check passes. A standby replica (not the leader) is healthy
and may be ready: its informers sync and its watches run; only the reconcilers wait for the lease.

Responses follow the API server's: ``200 ok``; ``500`` with ``[-]name failed: reason`` lines; with
``?verbose`` every check is listed (``[+]name ok``); ``?exclude=name`` skips a check;
``/readyz/<name>`` runs one check.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from controller.http import Request, Response, Route

__all__ = ["Check", "HealthChecks", "ping"]

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
