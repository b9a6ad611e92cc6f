"""The callback outbox sender: POSTs the events in a workflow's ``status.callbacks.pending``.

``decide`` appends each callback event to the workflow's status outbox (in the same status write as
the transition that caused it), then the workflow reconciler calls :meth:`CallbackSender.wake` with
the workflow's key (and, ideally, the resourceVersion of that write: a cache older than it is not
trusted, the workflow is read from the API instead). The sender has its own workqueue (keys
deduplicated) and its own small pool of threads, so a slow or dead receiver never holds a reconcile
worker. For a woken key it reads the workflow (``get_workflow``: the informer cache) and, **in
order**, for each pending event:

==========================================  ==========================================================
receiver's answer                           what the sender does
==========================================  ==========================================================
2xx                                         delivered: removed from ``pending``
404 and ``spec.callback.ignoreNotFound``    delivered (the seed's meaning of the flag; default true)
404 without ignoreNotFound, 408, 425, 429,  retried later: exponential backoff with jitter (tenacity's
5xx, timeout, connection error, DNS error   ``wait_exponential_jitter`` evaluated as a pure function,
                                            1 s doubling to 60 s), honouring ``Retry-After`` seconds;
                                            the events behind it wait (per-workflow order is kept)
other 3xx/4xx (redirects are not followed)  rejected: the receiver will never accept this body, so the
                                            event is dropped from ``pending``, logged, counted and
                                            reported with a Warning Event ``CallbackRejected``
URL refused (see :mod:`.urlsafety`), before  every pending event of the workflow is dropped, with an
the request or once connected               error log and a Warning Event ``CallbackURLRefused``
==========================================  ==========================================================

A workflow whose ``spec.callback`` was removed while events were pending has them dropped (logged,
counted as refused): they have nowhere to go.

With ``max_attempts`` set, an event that failed that many times is rejected too; by default retryable
failures are retried for ever (at-least-once: a receiver that is down for a day gets its events when
it comes back, at one try per workflow per minute).

Then the settled ids (delivered or dropped) are removed from ``status.callbacks.pending`` with ONE
merge-patch of the ``workflows/status`` subresource that carries the resourceVersion the list was
read at; a 409 re-reads the workflow with a direct GET and redoes the removal on the fresh list (the
reconciler may have appended events meanwhile; they are kept).

**Delivery contract.** At least once per event id; exactly once from the sender's side while the
process lives: a settled id is remembered (10 min) so a stale cache or a failed status write never
makes it POST the id again. A crash between the POST and the status write makes the next process POST
it again: receivers deduplicate on ``X-Workflow-Event-Id``.

Each request: ``POST spec.callback.url`` with the pending entry as the JSON body (fields: ``id``,
``type``, ``timestamp``, ``name``, ``namespace``, ``uid``, ``phase``, ``attributes``, ``runError``,
``rollbackError``, ``syncError``, and ``step``/``stepPhase`` for step events - see
``reconcilers.state_machine.decide._payload``), headers ``Content-Type: application/json``,
``X-Workflow-Event-Id``, ``X-Workflow-Event-Type``, ``X-Workflow-Delivery-Attempt`` and, when
``spec.callback.signingSecretRef`` (``{name, key}``, a Secret in the workflow's namespace) is set,
``X-Workflow-Signature: sha256=<hex HMAC-SHA256 of the body bytes>`` (:mod:`.signing`). The key is read
from the API and cached for ``secret_ttl`` seconds; it never appears in a log, status or Event. A
referenced Secret that is missing (or lacks the key) is a retryable failure: nothing is sent unsigned.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Final, Protocol
from urllib.parse import quote

import orjson
import requests
import structlog
from cachetools import TTLCache
from kubernetes import client
from tenacity import wait_exponential_jitter
from tenacity.wait import wait_base

from informers import Clock, DelayingQueue, RealClock, ShutDown
from informers.ratelimit import delay_for_attempt
from reconcilers.events import ApiCallError, EventRecorder, LifeCycle, api_request
from reconcilers.signing import SIGNATURE_HEADER, sign
from reconcilers.urlsafety import (
    IPNetwork,
    Resolver,
    UrlPolicy,
    UrlRefused,
    UrlUnresolvable,
    check_url,
    checked_adapter,
    peer_refusal,
    redact,
)

__all__ = [
    "DEFAULT_BACKOFF",
    "ApiOutboxStore",
    "CallbackSender",
    "CallbackSenderStats",
    "Delivery",
    "MemoryOutboxStore",
    "OutboxStore",
    "Outcome",
    "SigningKeyUnavailable",
    "classify_status",
    "retry_after_seconds",
    "retry_delay",
]

log = structlog.get_logger(__name__)

GROUP, VERSION, PLURAL = "workflow.example.com", "v1alpha1", "workflows"
MERGE_PATCH: Final = "application/merge-patch+json"
#: 1 s, 2 s, 4 s ... 60 s, plus up to 1 s of jitter (attempt n waits multiplier * 2**(n-1) + U(0, 1)).
DEFAULT_BACKOFF: Final[wait_base] = wait_exponential_jitter(multiplier=1.0, max=60.0, jitter=1.0)
#: The longest Retry-After we honour (a receiver cannot park a workflow's callbacks for a day).
MAX_RETRY_AFTER: Final = 300.0
#: How long a settled event id is remembered (longer than any plausible informer lag).
SETTLED_TTL: Final = 600.0
_CONFLICT_RETRIES: Final = 5
_RESPONSE_READ_LIMIT: Final = 64 * 1024


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"
    REFUSED = "refused"  # the connection reached an address the URL policy refuses


@dataclass(frozen=True)
class Delivery:
    """The outcome of one POST: ``detail`` says why (``HTTP 503``, ``timeout``, ...), for logs and Events;
    ``retry_after`` is the receiver's Retry-After in seconds, if it sent one."""

    outcome: Outcome
    detail: str
    retry_after: float | None = None


def classify_status(status: int, ignore_not_found: bool) -> Outcome:
    """What an HTTP status means for a callback (see the module docstring's table)."""
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status == 404:
        # The seed's flag: the receiver does not know the object (any more); that is an answer.
        # Without the flag a 404 is a receiver not deployed yet - worth retrying.
        return Outcome.DELIVERED if ignore_not_found else Outcome.RETRY
    if status in (408, 425, 429) or status >= 500:
        return Outcome.RETRY  # timeouts, throttling and server errors pass
    return Outcome.REJECTED  # 1xx/3xx (redirects are not followed) and other 4xx: this body will never do


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in delta-seconds form, capped at :data:`MAX_RETRY_AFTER`; None otherwise
    (HTTP-dates are ignored: the receiver's clock is not ours)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, MAX_RETRY_AFTER)


def retry_delay(backoff: wait_base, failures: int, retry_after: float | None = None) -> float:
    """Seconds to wait after the ``failures``-th failure (1-based) of an event: the backoff strategy
    evaluated as a pure function, or the receiver's Retry-After if that is longer."""
    delay = delay_for_attempt(backoff, max(1, failures))
    return max(delay, retry_after) if retry_after is not None else delay


class SigningKeyUnavailable(Exception):
    """The Secret named by ``signingSecretRef`` cannot be read now (missing, no such key, forbidden,
    API trouble). The message names the Secret and key, never a value."""


@dataclass(frozen=True)
class CallbackSenderStats:
    delivered: int = 0  # POSTs that counted as delivered (incl. 404 with ignoreNotFound)
    retried: int = 0  # retryable failures (each schedules a later try)
    rejected: int = 0  # events dropped because the receiver refused them (or max_attempts)
    refused: int = 0  # events dropped because the URL was refused (or the callback was removed)
    status_writes: int = 0  # successful removals from status.callbacks.pending
    conflicts: int = 0  # 409s on those writes


@dataclass(frozen=True)
class _SecretRef:
    name: str
    key: str


@dataclass(frozen=True)
class _Target:
    """What one pass over a workflow needs, copied out of the (read-only) cached object."""

    namespace: str
    name: str
    resource_version: str
    url: str | None
    ignore_not_found: bool
    secret: _SecretRef | None
    pending: tuple[Mapping[str, Any], ...]
    obj: Mapping[str, Any] = field(repr=False)

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> _Target:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        cb = spec.get("callback") or None
        ref = (cb or {}).get("signingSecretRef") or None
        secret = _SecretRef(str(ref.get("name", "")), str(ref.get("key", ""))) if ref else None
        callbacks = (obj.get("status") or {}).get("callbacks") or {}
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            resource_version=str(meta.get("resourceVersion", "")),
            url=str(cb["url"]) if cb and cb.get("url") else None,
            ignore_not_found=bool(cb.get("ignoreNotFound", True)) if cb else True,
            secret=secret,
            pending=tuple(callbacks.get("pending") or ()),
            obj=obj,
        )


class _Key:
    """A signing key. Its repr hides the value, so a traceback that renders frame locals or a stray
    log call cannot leak it."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<signing key>"


def _event_id(entry: Mapping[str, Any]) -> str | None:
    value = entry.get("id")
    return value if isinstance(value, str) and value else None


def _plain(value: Any) -> Any:
    """A JSON-ready copy (cached objects hold read-only mappings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _rv(value: str) -> int | None:
    return int(value) if value.isdigit() else None


class OutboxStore(Protocol):
    """What the sender reads and writes in the API. Errors raise :class:`ApiCallError` (409: the
    resourceVersion precondition failed; 404: gone)."""

    def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The workflow, read from the API server (not the cache); None if it does not exist."""
        ...

    def write_pending(self, namespace: str, name: str, resource_version: str,
                      pending: list[dict[str, Any]]) -> str:
        """Set ``status.callbacks.pending`` if the workflow is still at ``resource_version``; returns the
        new resourceVersion."""
        ...

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The Secret object (``data`` base64-encoded); None if it does not exist."""
        ...


class ApiOutboxStore:
    """:class:`OutboxStore` over the API server with raw JSON: a merge-patch of the ``workflows/status``
    subresource that carries ``metadata.resourceVersion`` (the API server answers 409 when it moved)."""

    def __init__(self, api_client: client.ApiClient, timeout: tuple[float, float] = (5.0, 10.0)) -> None:
        self._api = api_client
        self._timeout = timeout

    @staticmethod
    def _path(namespace: str, name: str, sub: str = "") -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}{sub}"

    def _get(self, path: str) -> dict[str, Any] | None:
        try:
            return api_request(self._api, "GET", path, timeout=self._timeout)
        except ApiCallError as exc:
            if exc.status == 404:
                return None
            raise

    def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._get(self._path(namespace, name))

    def write_pending(self, namespace: str, name: str, resource_version: str,
                      pending: list[dict[str, Any]]) -> str:
        body = {"metadata": {"resourceVersion": resource_version},
                "status": {"callbacks": {"pending": pending}}}
        written = api_request(self._api, "PATCH", self._path(namespace, name, "/status"), body,
                              timeout=self._timeout, content_type=MERGE_PATCH)
        return str((written.get("metadata") or {}).get("resourceVersion", ""))

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        # The name comes from a workflow's spec: one path segment, whatever it holds.
        return self._get(f"/api/v1/namespaces/{quote(namespace, safe='')}/secrets/{quote(name, safe='')}")


class MemoryOutboxStore:
    """An in-memory :class:`OutboxStore` with the API server's resourceVersion semantics, for tests.

    ``put(obj)`` stores a workflow (a new resourceVersion each time, like any write) and returns the
    stored copy; ``get_cached(key)`` is a ``get_workflow`` for the sender. ``writes`` counts
    successful ``write_pending`` calls, ``conflicts`` the 409s; ``fail`` (an HTTP status) makes every
    call raise. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}
        self._rv = 100
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes = 0
        self.conflicts = 0
        self.fail: int | None = None

    def put(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            stored = copy.deepcopy(_plain(obj))
            self._rv += 1
            stored.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
            meta = stored["metadata"]
            self._objects[(str(meta.get("namespace", "")), str(meta["name"]))] = stored
            return copy.deepcopy(stored)

    def delete(self, namespace: str, name: str) -> None:
        with self._lock:
            self._objects.pop((namespace, name), None)

    def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        with self._lock:
            if self.fail is not None:
                raise ApiCallError("GET", f"workflows/{namespace}/{name}", self.fail)
            obj = self._objects.get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def get_cached(self, key: str) -> Mapping[str, Any] | None:
        namespace, _, name = key.partition("/")
        with self._lock:
            obj = self._objects.get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def write_pending(self, namespace: str, name: str, resource_version: str,
                      pending: list[dict[str, Any]]) -> str:
        with self._lock:
            if self.fail is not None:
                raise ApiCallError("PATCH", f"workflows/{namespace}/{name}/status", self.fail)
            obj = self._objects.get((namespace, name))
            if obj is None:
                raise ApiCallError("PATCH", f"workflows/{namespace}/{name}/status", 404, "NotFound")
            if obj["metadata"]["resourceVersion"] != resource_version:
                self.conflicts += 1
                raise ApiCallError("PATCH", f"workflows/{namespace}/{name}/status", 409, "Conflict")
            obj.setdefault("status", {}).setdefault("callbacks", {})["pending"] = copy.deepcopy(pending)
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self.writes += 1
            return str(self._rv)

    def secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        with self._lock:
            return self.secrets.get((namespace, name))


class CallbackSender:
    """Delivers workflow callbacks from the status outbox; see the module docstring.

    Contract: :meth:`wake` may be called from any thread at any time (non-blocking: it adds the key to
    the sender's queue). :meth:`start`/:meth:`stop` are called once each by the owner. ``workers``
    threads take keys from the queue; the queue's processing set guarantees that one workflow is
    handled by one thread at a time, so the per-key state (``_failures``, ``_not_before``,
    ``_written_rv``) is only touched by the thread holding that key, under ``_lock`` (shared dicts);
    ``_min_rv`` is also raised by :meth:`wake` (any thread, under ``_lock``).
    ``_settled`` (event id -> why, TTL cache) and ``_secrets`` are shared by every thread, under
    ``_lock``. Each worker owns one ``requests.Session``. Backoff is never slept: a failed key is
    scheduled with ``add_after`` and ``_not_before`` keeps an early :meth:`wake` from cutting it short.

    Not guaranteed: delivery order across workflows; exactly-once across process restarts (see the
    module docstring); that a refused or rejected event reaches anyone but the log and the Event.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        get_workflow: Callable[[str], Mapping[str, Any] | None],
        connect_timeout: float,
        read_timeout: float,
        workers: int = 2,
        allow_private_networks: bool = True,
        clock: Clock | None = None,
        allowed_cidrs: tuple[IPNetwork, ...] = (),
        max_attempts: int | None = None,
        backoff: wait_base = DEFAULT_BACKOFF,
        event_recorder: EventRecorder | None = None,
        secret_ttl: float = 30.0,
        api_timeout: tuple[float, float] = (5.0, 10.0),
        resolver: Resolver | None = None,
        session_factory: Callable[[], requests.Session] = requests.Session,
        store: OutboxStore | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._store: OutboxStore = store or ApiOutboxStore(api_client, api_timeout)
        self._get_workflow = get_workflow
        self._timeouts = (connect_timeout, read_timeout)
        self._policy = UrlPolicy(allow_private_networks, tuple(allowed_cidrs))
        self._clock: Clock = clock or RealClock()
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._events = event_recorder
        self._resolver = resolver
        self._session_factory = session_factory
        self._queue: DelayingQueue[str] = DelayingQueue("callbacks", clock=self._clock)
        self._lock = threading.Lock()
        self._failures: dict[str, dict[str, int]] = {}
        self._not_before: dict[str, float] = {}
        self._written_rv: dict[str, int] = {}
        self._min_rv: dict[str, int] = {}  # from wake(resource_version=...): do not act on older snapshots
        self._settled: TTLCache[str, str] = TTLCache(maxsize=65536, ttl=SETTLED_TTL)
        self._secrets: TTLCache[tuple[str, str, str], _Key] = TTLCache(maxsize=256, ttl=secret_ttl)
        self._stats = CallbackSenderStats()
        self._threads = [threading.Thread(target=self._work, name=f"callback-sender-{i}", daemon=True)
                         for i in range(workers)]
        self._state = LifeCycle.NEW

    # -- any thread ---------------------------------------------------------------------------------

    def wake(self, key: str, *, resource_version: str | None = None) -> None:
        """Look at workflow ``key`` ("namespace/name") soon. Non-blocking; repeated wakes coalesce.

        ``resource_version``: the version the caller just wrote (e.g. the status write that appended
        events). If the cache is older when the key is handled, the sender reads the workflow from the
        API instead, so a wake right after a write never sees a stale, empty outbox."""
        if resource_version is not None and (rv := _rv(resource_version)) is not None:
            with self._lock:
                self._min_rv[key] = max(rv, self._min_rv.get(key, 0))
        self._queue.add(key)

    def stats(self) -> CallbackSenderStats:
        with self._lock:
            return self._stats

    def idle(self) -> bool:
        """No key ready or being handled (keys waiting for a backoff do not count). For tests and
        health checks."""
        # The queue's condition is an RLock: holding it makes the two reads one consistent snapshot
        # (otherwise a key could move from ready to processing between them).
        with self._queue._cond:
            return len(self._queue) == 0 and self._queue.processing() == 0

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._state is not LifeCycle.NEW:
                raise RuntimeError(f"CallbackSender already {self._state}")
            self._state = LifeCycle.RUNNING
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking keys; wait up to ``timeout`` s for requests in flight (each is bounded by the
        connect and read timeouts). Undelivered events stay in the outbox for the next process."""
        with self._lock:
            started = self._state is LifeCycle.RUNNING
            self._state = LifeCycle.STOPPING if started else LifeCycle.STOPPED
        self._queue.shutdown()
        if not started:
            return
        deadline = time.monotonic() + timeout  # real time: joining threads, not scheduling work
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._state = LifeCycle.STOPPED

    # -- worker threads -----------------------------------------------------------------------------

    def _work(self) -> None:
        session = self._session_factory()
        adapter = checked_adapter(self._policy)  # re-check the address each new connection reached
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        try:
            while True:
                try:
                    with self._queue.get() as key:
                        try:
                            self._sync(key, session)
                        except ApiCallError as exc:  # API trouble (status write, GET): look again later
                            log.warning("callback bookkeeping failed; will retry", workflow=key,
                                        error=str(exc))
                            self._queue.add_after(key, self._backoff_for(key, None))
                        except Exception:  # never let a worker die; look again later
                            log.exception("callback sync failed", workflow=key)
                            self._queue.add_after(key, self._backoff_for(key, None))
                except ShutDown:
                    return
        finally:
            session.close()

    def _sync(self, key: str, session: requests.Session) -> None:
        obj = self._current(key)
        if obj is None:
            self._forget(key)
            return
        target = _Target.of(obj)
        if not target.pending:
            self._forget(key)
            return
        wait = self._wait_left(key)
        if wait > 0:
            self._queue.add_after(key, wait)
            return

        settled: dict[str, str] = {}  # ids to remove this pass -> why
        with self._lock:
            for entry in target.pending:
                eid = _event_id(entry)
                if eid is None:
                    log.error("malformed pending callback entry dropped (no id)", workflow=key)
                elif eid in self._settled:
                    settled[eid] = self._settled[eid]  # already sent by us; only the status write is due
        todo = [e for e in target.pending if (eid := _event_id(e)) is not None and eid not in settled]
        retry_in: float | None = None
        if todo:
            retry_in = self._deliver(key, target, todo, session, settled)
        with self._lock:
            for eid, why in settled.items():
                self._settled[eid] = why
        more = False
        if settled or any(_event_id(e) is None for e in target.pending):
            remaining = self._remove(key, target, set(settled))
            more = remaining is not None and any(
                (eid := _event_id(e)) is not None and eid not in settled for e in remaining)
        with self._lock:
            if retry_in is not None:
                self._not_before[key] = self._clock.now() + retry_in
            else:
                self._not_before.pop(key, None)
        if retry_in is not None:
            self._queue.add_after(key, retry_in)
        elif more:
            self._queue.add(key)  # the reconciler appended events meanwhile: one more pass

    def _deliver(self, key: str, target: _Target, todo: list[Mapping[str, Any]], session: requests.Session,
                 settled: dict[str, str]) -> float | None:
        """POST ``todo`` in order until one must be retried; record settled ids in ``settled``. Returns the
        delay before the next pass, or None when nothing needs retrying."""
        if target.url is None:
            for e in todo:
                settled[str(_event_id(e))] = "no-callback"
            self._bump(refused=len(todo))
            log.warning("pending callbacks dropped: the workflow has no callback URL", workflow=key,
                        events=len(todo))
            return None
        shown = redact(target.url)
        try:
            check_url(target.url, self._policy, *((self._resolver,) if self._resolver else ()))
        except UrlRefused as exc:
            self._refuse(key, target, todo, str(exc), shown, settled)
            return None
        except UrlUnresolvable as exc:
            return self._failed(key, target, todo[0], Delivery(Outcome.RETRY, str(exc)), shown)
        signing_key: _Key | None = None
        if target.secret is not None:
            try:
                signing_key = self._signing_key(target.namespace, target.secret)
            except SigningKeyUnavailable as exc:
                return self._failed(key, target, todo[0], Delivery(Outcome.RETRY, str(exc)), shown)
        for i, entry in enumerate(todo):
            eid = str(_event_id(entry))
            attempt = self._failures_of(key, eid) + 1
            result = self._post(session, target, entry, signing_key, attempt)
            if result.outcome is Outcome.DELIVERED:
                settled[eid] = "delivered"
                self._clear_failures(key, eid)
                self._bump(delivered=1)
                log.debug("callback delivered", workflow=key, event_id=eid, detail=result.detail,
                          attempt=attempt)
                continue
            if result.outcome is Outcome.REFUSED:
                self._refuse(key, target, todo[i:], result.detail, shown, settled)
                return None
            if result.outcome is Outcome.REJECTED:
                settled[eid] = "rejected"
                self._reject(key, target, entry, result.detail, shown)
                continue
            if self._max_attempts is not None and attempt >= self._max_attempts:
                settled[eid] = "rejected"
                self._reject(key, target, entry, f"gave up after {attempt} attempts, last: {result.detail}",
                             shown)
                continue
            return self._failed(key, target, entry, result, shown)
        return None

    def _post(self, session: requests.Session, target: _Target, entry: Mapping[str, Any],
              signing_key: _Key | None, attempt: int) -> Delivery:
        assert target.url is not None
        body = orjson.dumps(_plain(entry))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "kube-workflow-callbacks",
            "X-Workflow-Event-Id": str(entry.get("id", "")),
            "X-Workflow-Event-Type": str(entry.get("type", "")),
            "X-Workflow-Delivery-Attempt": str(attempt),
        }
        if signing_key is not None:
            headers[SIGNATURE_HEADER] = sign(signing_key.value, body)
        try:
            resp = session.post(target.url, data=body, headers=headers, timeout=self._timeouts,
                                allow_redirects=False, stream=True)
        except requests.Timeout:
            return Delivery(Outcome.RETRY, "timeout")
        except requests.ConnectionError as exc:
            refused = peer_refusal(exc)
            if refused is not None:
                return Delivery(Outcome.REFUSED, refused)
            return Delivery(Outcome.RETRY, f"connection error ({type(exc).__name__})")
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader) as exc:
            return Delivery(Outcome.REJECTED, f"invalid request ({type(exc).__name__})")
        except requests.RequestException as exc:
            return Delivery(Outcome.RETRY, f"request failed ({type(exc).__name__})")
        try:
            # Drain a little so the connection can be reused; never read an unbounded body. The status
            # line is what counts: a broken body changes nothing.
            with contextlib.suppress(Exception):
                resp.raw.read(_RESPONSE_READ_LIMIT)
            outcome = classify_status(resp.status_code, target.ignore_not_found)
            retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
            return Delivery(outcome, f"HTTP {resp.status_code}", retry_after)
        finally:
            resp.close()

    def _failed(self, key: str, target: _Target, entry: Mapping[str, Any], result: Delivery,
                shown: str) -> float:
        eid = str(_event_id(entry))
        with self._lock:
            per_key = self._failures.setdefault(key, {})
            per_key[eid] = failures = per_key.get(eid, 0) + 1
        delay = retry_delay(self._backoff, failures, result.retry_after)
        self._bump(retried=1)
        log.warning("callback failed; will retry", workflow=key, event_id=eid, url=shown,
                    detail=result.detail, failures=failures, retry_in=round(delay, 3))
        what = f"callback {entry.get('type', '')} ({eid}) to {shown}"
        self._event(target, "CallbackRetrying", f"{what} failed, will retry: {result.detail}")
        return delay

    def _refuse(self, key: str, target: _Target, todo: list[Mapping[str, Any]], why: str, shown: str,
                settled: dict[str, str]) -> None:
        for e in todo:
            settled[str(_event_id(e))] = "refused"
            self._clear_failures(key, str(_event_id(e)))
        self._bump(refused=len(todo))
        log.error("callback URL refused; pending callbacks dropped", workflow=key, url=shown, why=why,
                  events=len(todo))
        self._event(target, "CallbackURLRefused",
                    f"callback URL {shown} refused: {why}; {len(todo)} pending event(s) dropped")

    def _reject(self, key: str, target: _Target, entry: Mapping[str, Any], detail: str, shown: str) -> None:
        eid = str(_event_id(entry))
        self._clear_failures(key, eid)
        self._bump(rejected=1)
        log.error("callback rejected; dropped from the outbox", workflow=key, event_id=eid, url=shown,
                  detail=detail)
        self._event(target, "CallbackRejected",
                    f"callback {entry.get('type', '')} ({eid}) to {shown} rejected: {detail}; dropped")

    # -- API ----------------------------------------------------------------------------------------

    def _current(self, key: str) -> Mapping[str, Any] | None:
        """The workflow from the cache, or from the API when the cache is older than our last write or
        than the version a waker said it wrote."""
        with self._lock:
            needed = max(self._written_rv.get(key, 0), self._min_rv.pop(key, 0))
        obj = self._get_workflow(key)
        rv = None if obj is None else _rv(str((obj.get("metadata") or {}).get("resourceVersion", "")))
        if needed and (obj is None or (rv is not None and rv < needed)):
            namespace, _, name = key.partition("/")
            return self._store.get(namespace, name)
        return obj

    def _remove(self, key: str, target: _Target, ids: set[str]) -> tuple[Mapping[str, Any], ...] | None:
        """Remove ``ids`` (and entries without an id) from ``status.callbacks.pending`` with one merge-patch
        carrying the resourceVersion; on 409 re-read and redo. Returns the pending list written (None:
        the workflow is gone)."""
        current = target
        for _ in range(_CONFLICT_RETRIES):
            remaining = tuple(e for e in current.pending
                              if (eid := _event_id(e)) is not None and eid not in ids)
            if len(remaining) == len(current.pending):
                return remaining  # nothing of ours left to remove (someone else's write already did)
            try:
                written = self._store.write_pending(current.namespace, current.name, current.resource_version,
                                                    [_plain(e) for e in remaining])
            except ApiCallError as exc:
                if exc.status == 404:
                    self._forget(key)
                    return None
                if exc.status != 409:
                    raise
                self._bump(conflicts=1)
                fresh = self._store.get(current.namespace, current.name)
                if fresh is None:
                    self._forget(key)
                    return None
                current = _Target.of(fresh)
                continue
            self._bump(status_writes=1)
            rv = _rv(written)
            if rv is not None:
                with self._lock:
                    self._written_rv[key] = rv
            return remaining
        raise ApiCallError("PATCH", f"workflows/{target.namespace}/{target.name}/status", 409, "Conflict",
                           f"still conflicting after {_CONFLICT_RETRIES} tries")

    def _signing_key(self, namespace: str, ref: _SecretRef) -> _Key:
        if not ref.name or not ref.key:
            raise SigningKeyUnavailable("signingSecretRef needs both name and key")
        cache_key = (namespace, ref.name, ref.key)
        with self._lock:
            cached = self._secrets.get(cache_key)
        if cached is not None:
            return cached
        where = f"secret {namespace}/{ref.name} key {ref.key!r}"
        try:
            secret = self._store.secret(namespace, ref.name)
        except ApiCallError as exc:
            raise SigningKeyUnavailable(f"{where}: cannot read the secret ({exc.status or 'no answer'}"
                                        f"{' ' + exc.reason if exc.reason else ''})") from None
        if secret is None:
            raise SigningKeyUnavailable(f"{where}: no such secret")
        encoded = (secret.get("data") or {}).get(ref.key)
        if not encoded:
            raise SigningKeyUnavailable(f"{where}: the secret has no such key (or it is empty)")
        try:
            value = _Key(base64.b64decode(encoded, validate=True))
        except ValueError:
            raise SigningKeyUnavailable(f"{where}: the value is not base64") from None
        del secret, encoded  # keep no other key of the Secret around
        with self._lock:
            self._secrets[cache_key] = value
        return value

    # -- bookkeeping --------------------------------------------------------------------------------

    def _event(self, target: _Target, reason: str, message: str) -> None:
        if self._events is not None:
            self._events.record(target.obj, "Warning", reason, message)

    def _wait_left(self, key: str) -> float:
        with self._lock:
            not_before = self._not_before.get(key)
        return 0.0 if not_before is None else not_before - self._clock.now()

    def _failures_of(self, key: str, eid: str) -> int:
        with self._lock:
            return self._failures.get(key, {}).get(eid, 0)

    def _clear_failures(self, key: str, eid: str) -> None:
        with self._lock:
            per_key = self._failures.get(key)
            if per_key is not None:
                per_key.pop(eid, None)

    def _backoff_for(self, key: str, retry_after: float | None) -> float:
        with self._lock:
            failures = max(self._failures.get(key, {}).values(), default=0) + 1
        return retry_delay(self._backoff, failures, retry_after)

    def _forget(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
            self._not_before.pop(key, None)
            self._written_rv.pop(key, None)
            self._min_rv.pop(key, None)

    def _bump(self, **delta: int) -> None:
        with self._lock:
            s = self._stats
            self._stats = CallbackSenderStats(**{f.name: getattr(s, f.name) + delta.get(f.name, 0)
                                                 for f in fields(s)})
