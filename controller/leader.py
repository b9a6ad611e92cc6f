"""Leader election on a ``coordination.k8s.io/v1`` Lease (client-go ``tools/leaderelection``).

Only the leader reconciles. Candidates read the Lease every ``retry_period`` (with client-go's jitter,
up to 2.2x); one whose read shows no holder, or a record that has not changed for the record's
``leaseDurationSeconds`` of *locally observed* time, writes itself in with an update carrying the
``resourceVersion`` it read: a 409 means another candidate won the race. The leader renews every
``retry_period``; if no renewal succeeds for ``renew_deadline`` seconds it stops leading **at once**
(``on_stopped_leading(LOST)``) and the process is expected to exit, like client-go.

**No fencing.** Like client-go, this gives no guarantee that two processes never act as leader at the
same moment: a leader paused (GC, CPU starvation, a stalled API call) past ``lease_duration`` can still
be finishing a write while the next leader starts. ``lease_duration > renew_deadline`` makes that
unlikely, not impossible; the engine stays correct through ``resourceVersion`` preconditions on every
write (DESIGN.md §2), not through the lease.

On a clean stop (:meth:`LeaderElector.stop`) a leader releases the Lease (client-go's
``ReleaseOnCancel``): ``holderIdentity`` is cleared and ``leaseDurationSeconds`` set to 1, so the next
candidate acquires on its next try instead of waiting out the lease. Stop the work first, then the
elector: the release must come after the last write of the old leader.

MicroTime fields (``acquireTime``, ``renewTime``) are written as ``2026-11-29T22:13:43.123456Z`` — six
fractional digits always (the client's ``isoformat`` drops them when the microsecond is 0, and the API
server rejects that): raw JSON bodies, never the generated models.

Errors::

    LeaderElectionError
    ├── LeaseConflict      409: the Lease changed since it was read (or was created meanwhile)
    └── LeaseUnavailable   any other failure to read or write the Lease (status, transport, timeout)
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import orjson
import structlog
import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from controller.config import LeaderElectionConfig
from informers import Clock, RealClock

__all__ = [
    "ApiLeaseStore",
    "ElectorState",
    "FakeLeaseStore",
    "LeaderElectionError",
    "LeaderElector",
    "LeaderStatusSink",
    "LeadershipEnd",
    "LeaseConflict",
    "LeaseStore",
    "LeaseUnavailable",
    "format_micro_time",
]

log = structlog.get_logger("controller.leader")

JITTER_FACTOR = 1.2  # client-go's leaderelection.JitterFactor


def format_micro_time(dt: datetime) -> str:
    """A ``metav1.MicroTime``: UTC, exactly six fractional digits, ``Z`` (naive = already UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LeaderElectionError(Exception):
    """Base of this module's errors."""


class LeaseConflict(LeaderElectionError):
    """The Lease was changed (or created) by someone else since we read it."""


class LeaseUnavailable(LeaderElectionError):
    """The Lease could not be read or written."""


class LeaseStore(Protocol):
    """Reads and writes ONE Lease as a plain dict. ``timeout`` bounds each call, in seconds.

    ``get`` returns ``None`` when the Lease does not exist; ``create``/``update`` return the stored
    object; ``update`` must carry ``metadata.resourceVersion`` and raises :class:`LeaseConflict` on 409."""

    def get(self, timeout: float) -> dict[str, Any] | None: ...
    def create(self, lease: dict[str, Any], timeout: float) -> dict[str, Any]: ...
    def update(self, lease: dict[str, Any], timeout: float) -> dict[str, Any]: ...


class ApiLeaseStore:
    """:class:`LeaseStore` over the API server with raw JSON (``param_serialize`` + ``call_api``).

    Contract: used by one elector thread; thread-safe as far as the shared ``ApiClient`` is."""

    def __init__(self, api_client: ApiClient, namespace: str, name: str, *, connect_timeout: float = 5.0):
        self.api_client = api_client
        self.namespace = namespace
        self.name = name
        self.connect_timeout = connect_timeout
        self._collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

    def _call(self, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> tuple[int, bytes]:
        method, url, headers, data, post = self.api_client.param_serialize(
            method, path, header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=body, auth_settings=["BearerToken"],
        )
        try:
            rest = self.api_client.call_api(
                method, url, headers, data, post,
                _request_timeout=(min(self.connect_timeout, timeout), max(timeout, 0.05)),
            )
            resp = rest.response
            try:
                return int(resp.status), bytes(resp.data)
            finally:
                resp.release_conn()
        except ApiException as exc:  # the client maps TLS/connection errors to ApiException(status=0)
            raise LeaseUnavailable(f"{method} lease: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise LeaseUnavailable(f"{method} lease: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _check(method: str, status: int, data: bytes) -> dict[str, Any]:
        if 200 <= status < 300:
            obj: dict[str, Any] = orjson.loads(data)
            return obj
        if status == 409:
            raise LeaseConflict(f"{method} lease: 409 {data[:200].decode(errors='replace')}")
        raise LeaseUnavailable(f"{method} lease: {status} {data[:200].decode(errors='replace')}")

    def get(self, timeout: float) -> dict[str, Any] | None:
        status, data = self._call("GET", f"{self._collection}/{self.name}", None, timeout)
        if status == 404:
            return None
        return self._check("GET", status, data)

    def create(self, lease: dict[str, Any], timeout: float) -> dict[str, Any]:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **lease}
        body["metadata"] = {**lease.get("metadata", {}), "name": self.name, "namespace": self.namespace}
        status, data = self._call("POST", self._collection, body, timeout)
        return self._check("POST", status, data)

    def update(self, lease: dict[str, Any], timeout: float) -> dict[str, Any]:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **lease}
        status, data = self._call("PUT", f"{self._collection}/{self.name}", body, timeout)
        return self._check("PUT", status, data)


class FakeLeaseStore:
    """An in-memory :class:`LeaseStore` with API-server semantics (resourceVersion, 409), for tests.

    Contract: thread-safe. Set ``fail`` to make every call raise :class:`LeaseUnavailable` (a partition);
    ``calls`` counts calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lease: dict[str, Any] | None = None
        self._rv = 0
        self.fail = False
        self.calls = 0

    def _enter(self) -> None:
        self.calls += 1
        if self.fail:
            raise LeaseUnavailable("fake partition")

    @property
    def lease(self) -> dict[str, Any] | None:
        with self._lock:
            return orjson.loads(orjson.dumps(self._lease)) if self._lease is not None else None

    def get(self, timeout: float) -> dict[str, Any] | None:
        with self._lock:
            self._enter()
            return orjson.loads(orjson.dumps(self._lease)) if self._lease is not None else None

    def create(self, lease: dict[str, Any], timeout: float) -> dict[str, Any]:
        with self._lock:
            self._enter()
            if self._lease is not None:
                raise LeaseConflict("already exists")
            return self._store_locked(lease)

    def update(self, lease: dict[str, Any], timeout: float) -> dict[str, Any]:
        with self._lock:
            self._enter()
            if self._lease is None:
                raise LeaseUnavailable("404 not found")
            if lease.get("metadata", {}).get("resourceVersion") != self._lease["metadata"]["resourceVersion"]:
                raise LeaseConflict("the object has been modified")
            return self._store_locked(lease)

    def _store_locked(self, lease: dict[str, Any]) -> dict[str, Any]:
        self._rv += 1
        stored = orjson.loads(orjson.dumps(lease))
        stored.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
        self._lease = stored
        return orjson.loads(orjson.dumps(stored))  # type: ignore[no-any-return]


class LeaderStatusSink(Protocol):
    """Told when this process starts or stops leading (``controller.metrics.Metrics`` implements it as
    the ``leader_election_master_status{name}`` gauge)."""

    def set_leader_status(self, name: str, leading: bool) -> None: ...


class ElectorState(StrEnum):
    NEW = "New"
    CANDIDATE = "Candidate"
    LEADING = "Leading"
    STOPPED = "Stopped"


class LeadershipEnd(StrEnum):
    #: Stopped by :meth:`LeaderElector.stop` (shutdown); the Lease was released if configured.
    STOPPED = "Stopped"
    #: No renewal succeeded for ``renew_deadline``: another process may lead now. Exit.
    LOST = "Lost"


class LeaderElector:
    """Campaigns for one Lease and keeps it.

    Contract: :meth:`run` blocks in ONE thread (the elector thread; :meth:`start` makes one), which also
    calls the callbacks: ``on_started_leading()`` once when the Lease is acquired and
    ``on_stopped_leading(end)`` once when leading ends (never if it never led). Callbacks must return
    promptly (start threads, set events): while they run, nothing renews. If ``on_started_leading``
    raises, the lease is released and leading ends as ``LOST``. :meth:`stop` and the
    read-only properties may be called from any thread. ``_cond`` guards ``_stopping`` and ``_state``.
    ``clock`` (monotonic) drives every wait and the lease-expiry judgement; ``wall`` only produces the
    timestamps written into the Lease.
    """

    def __init__(
        self,
        config: LeaderElectionConfig,
        store: LeaseStore,
        *,
        on_started_leading: Callable[[], None],
        on_stopped_leading: Callable[[LeadershipEnd], None],
        on_new_leader: Callable[[str], None] | None = None,
        status: LeaderStatusSink | None = None,
        request_timeout: float = 5.0,
        clock: Clock | None = None,
        wall: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
    ) -> None:
        if not config.identity:
            raise ValueError("leader election needs a non-empty identity")
        self.config = config
        self._store = store
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._on_new_leader = on_new_leader
        self._status = status
        self._request_timeout = request_timeout
        self._clock: Clock = clock or RealClock()
        self._wall = wall
        self._rng = rng or random.Random()
        self._cond = threading.Condition()
        self._stopping = False
        self._state = ElectorState.NEW
        # Elector-thread-only fields: the last record seen and when (local monotonic time) it changed.
        self._observed_spec: Mapping[str, Any] | None = None
        self._observed_at = 0.0
        self._observed_rv = ""
        self._observed_lease: dict[str, Any] | None = None
        self._last_contact: float | None = None
        self._reported_leader: str | None = None
        self._start_failed = False
        #: Monotonic time at which the last successful acquire or renew *started* (None before the
        #: first). Conservative on purpose: the write reached the server after this moment, so no
        #: other candidate can have observed it earlier, and the renew deadline is counted from here.
        self.last_renew: float | None = None

    # -- read-only views ------------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        return self.config.identity

    @property
    def state(self) -> ElectorState:
        with self._cond:
            return self._state

    def is_leader(self) -> bool:
        return self.state is ElectorState.LEADING

    def seconds_since_contact(self) -> float | None:
        """Seconds since the Lease was last read or written successfully (None: never). A standby
        uses it to tell "waiting for the lease" from "cannot reach the API server"."""
        last = self._last_contact
        return None if last is None else self._clock.now() - last

    @property
    def observed_holder(self) -> str:
        """The holder in the last Lease read ("" = none or not read yet)."""
        spec = self._observed_spec
        return str(spec.get("holderIdentity") or "") if spec is not None else ""

    # -- control --------------------------------------------------------------------------------------

    def start(self) -> threading.Thread:
        """Run :meth:`run` in a daemon thread named after the Lease; returns the thread."""
        t = threading.Thread(target=self.run, name=f"leader-election-{self.config.name}", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        """Stop campaigning; a leader releases the Lease (if configured) and calls on_stopped_leading."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def run(self) -> LeadershipEnd:
        """Campaign, lead, and return how it ended (STOPPED also when stopped before ever leading)."""
        with self._cond:
            if self._state is not ElectorState.NEW:
                raise RuntimeError("a LeaderElector runs once")
            self._state = ElectorState.CANDIDATE
        self._report_status(False)
        log.info("leader election started", lease=self._lease_name, identity=self.identity)
        if not self._acquire():
            self._set_state(ElectorState.STOPPED)
            return LeadershipEnd.STOPPED
        if self._start_failed:
            end = LeadershipEnd.LOST
            release = True
        else:
            end = self._renew_until_lost_or_stopped()
            release = end is LeadershipEnd.STOPPED and self.config.release_on_cancel
        self._set_state(ElectorState.STOPPED)
        self._report_status(False)
        if release:
            self._release()
        if end is LeadershipEnd.LOST:
            log.error("leader election lost", lease=self._lease_name, identity=self.identity)
        else:
            log.info("stopped leading", lease=self._lease_name, identity=self.identity)
        self._on_stopped(end)
        return end

    # -- the loop -------------------------------------------------------------------------------------

    @property
    def _lease_name(self) -> str:
        return f"{self.config.namespace}/{self.config.name}"

    def _set_state(self, state: ElectorState) -> None:
        with self._cond:
            self._state = state

    def _report_status(self, leading: bool) -> None:
        if self._status is not None:
            self._status.set_leader_status(self.config.name, leading)

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` on the clock unless stopped; True = stop was requested."""
        deadline = self._clock.now() + seconds
        with self._cond:
            while not self._stopping and (now := self._clock.now()) < deadline:
                self._clock.wait(self._cond, deadline - now)
            return self._stopping

    def _acquire(self) -> bool:
        """Try every retry period (jittered) until acquired (True) or stopped (False)."""
        while True:
            with self._cond:
                if self._stopping:
                    return False
            if self.try_acquire_or_renew(self._request_timeout):
                self._set_state(ElectorState.LEADING)
                self._report_status(True)
                log.info("became leader", lease=self._lease_name, identity=self.identity)
                try:
                    self._on_started()
                except Exception:
                    # Nothing leads now: give the lease up and end as LOST (the process must exit).
                    log.exception("on_started_leading failed", lease=self._lease_name)
                    self._start_failed = True
                return True
            period = self.config.retry_period
            if self._sleep(period + self._rng.random() * JITTER_FACTOR * period):
                return False

    def _renew_until_lost_or_stopped(self) -> LeadershipEnd:
        while True:
            if self._sleep(self.config.retry_period):
                return LeadershipEnd.STOPPED
            assert self.last_renew is not None
            left = self.last_renew + self.config.renew_deadline - self._clock.now()
            if left > 0 and self.try_acquire_or_renew(min(self._request_timeout, left)):
                continue
            if self._clock.now() - self.last_renew >= self.config.renew_deadline:
                return LeadershipEnd.LOST

    # -- one attempt ----------------------------------------------------------------------------------

    def _observe(self, lease: dict[str, Any]) -> None:
        self._last_contact = self._clock.now()
        spec = lease.get("spec") or {}
        rv = str((lease.get("metadata") or {}).get("resourceVersion") or "")
        # Any write (a new resourceVersion) or a changed record counts as a sign of life.
        if spec != self._observed_spec or rv != self._observed_rv:
            self._observed_spec = spec
            self._observed_rv = rv
            self._observed_at = self._clock.now()
        self._observed_lease = lease
        holder = str(spec.get("holderIdentity") or "")
        if holder and holder != self._reported_leader:
            self._reported_leader = holder
            if holder != self.identity:
                log.info("new leader observed", lease=self._lease_name, leader=holder)
            if self._on_new_leader is not None:
                self._on_new_leader(holder)

    def _new_spec(self, old: Mapping[str, Any] | None) -> dict[str, Any]:
        now = format_micro_time(self._wall())
        spec: dict[str, Any] = dict(old or {})
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = max(1, math.ceil(self.config.lease_duration))
        spec["renewTime"] = now
        if old is not None and old.get("holderIdentity") == self.identity:
            spec.setdefault("acquireTime", now)
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0)
        else:
            spec["acquireTime"] = now
            # A new holder is a transition; the very first holder (no Lease yet) is not.
            transitions = int(old.get("leaseTransitions") or 0) + 1 if old is not None else 0
            spec["leaseTransitions"] = transitions
        return spec

    def try_acquire_or_renew(self, timeout: float) -> bool:
        """One attempt (client-go ``tryAcquireOrRenew``): read, judge, write with the read RV.

        Called by the elector thread (tests may call it directly on an elector that is not running)."""
        started = self._clock.now()
        try:
            lease = self._store.get(timeout)
            if lease is None:
                created = self._store.create({"metadata": {}, "spec": self._new_spec(None)}, timeout)
                self._observe(created)
                self.last_renew = started
                return True
            self._observe(lease)
            spec = lease.get("spec") or {}
            holder = str(spec.get("holderIdentity") or "")
            if holder and holder != self.identity:
                duration = float(spec.get("leaseDurationSeconds") or self.config.lease_duration)
                if self._observed_at + duration > self._clock.now():
                    return False  # held by someone else and not expired by our observation
            body = {"metadata": dict(lease.get("metadata") or {}), "spec": self._new_spec(spec)}
            updated = self._store.update(body, timeout)
        except LeaseConflict as exc:
            log.debug("lease write conflict", lease=self._lease_name, error=str(exc))
            return False
        except LeaderElectionError as exc:
            log.warning("lease unavailable", lease=self._lease_name, error=str(exc))
            return False
        self._observe(updated)
        self.last_renew = started
        return True

    def _release(self) -> None:
        """Clear the holder (client-go ``release``); only if the last record we saw is ours."""
        lease = self._observed_lease
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        now = format_micro_time(self._wall())
        spec = dict(lease.get("spec") or {})
        spec.update(holderIdentity="", leaseDurationSeconds=1, acquireTime=now, renewTime=now)
        try:
            self._store.update({"metadata": dict(lease.get("metadata") or {}), "spec": spec},
                               self._request_timeout)
        except LeaderElectionError as exc:
            log.warning("lease release failed", lease=self._lease_name, error=str(exc))
            return
        log.info("lease released", lease=self._lease_name, identity=self.identity)
