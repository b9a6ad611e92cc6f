"""Admission: moves Pending workflows to Running under ``maxRunningCount`` (FIFO or FAIR, DESIGN.md §4),
on a thread of its own so it never blocks a reconcile worker.

The pure rule is :func:`reconcilers.state_machine.admission.admit`; this module feeds it the workflow
cache and writes each :func:`~reconcilers.state_machine.admission.start` decision (a status merge patch
with the workflow's resourceVersion). A pass runs when something woke admission (a workflow was added,
changed phase, or was deleted; :meth:`Admission.on_workflow_event` decides) and every ``period`` seconds
as a safety net. Wakes coalesce: one pass serves any number of wakes that arrived before it started.

Admission keeps its own map of :class:`Candidate` s (the few fields it reads), fed by the Workflow
informer's events (it is one of its handlers; added late, it gets the cache as a replay of adds), so a
pass never scans the cache: with the informers' compact storage a scan would decode every cached
workflow, on every pass. Only the workflows it starts are read from the cache. The same map gives
:meth:`Admission.phase_counts`.

The workflows one pass admits are written concurrently by ``writers`` threads (200 workflows submitted
at once would otherwise wait for 200 sequential writes); the pass ends when every write returned, so
the next pass sees their expectations. Each write lands in the :class:`~reconcilers.fresh.FreshCache`
and ``on_admitted`` (the engine: enqueue the workflow) is told at once, so the first reconcile does not
wait for the watch event.

Stale cache: a workflow whose cached copy is older than our own last write (expectations) is counted as
*active* and never admitted in that pass. That errs on the safe side: right after we admit a workflow the
cache may still show it Pending, and counting it as waiting would let a second pass admit one more than
``maxRunningCount`` allows. A 409 leaves the workflow for the next pass (the event that caused the
conflict wakes it).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, NamedTuple

import structlog

from informers import DeletedFinalStateUnknown, SharedIndexInformer, meta_namespace_key
from reconcilers.expectations import Expectations, object_key
from reconcilers.fresh import FreshCache
from reconcilers.kube import WORKFLOWS, Conflict, Kube, KubeError, NotFound, merge_patch
from reconcilers.settings import EventSink
from reconcilers.state_machine.admission import Candidate, admit, start
from reconcilers.state_machine.config import EngineConfig
from reconcilers.state_machine.types import TERMINAL, Phase, WorkflowStatus, parse_time

__all__ = ["Admission"]

log = structlog.get_logger(__name__)

Obj = Mapping[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _candidate(obj: Obj) -> Candidate:
    """The fields admission needs, read without parsing the whole spec."""
    meta = obj["metadata"]
    status = obj.get("status") or {}
    return Candidate(
        namespace=sys.intern(str(meta.get("namespace") or "")),
        name=str(meta["name"]),
        queue=sys.intern(str((obj.get("spec") or {}).get("queue") or "default")),
        phase=Phase(status.get("phase") or Phase.PENDING),
        created_at=parse_time(meta.get("creationTimestamp")) or _EPOCH,
        started_at=parse_time(status.get("startedAt")),
        deleting=bool(meta.get("deletionTimestamp")),
    )


class _Entry(NamedTuple):
    """One cached workflow as admission sees it: ``candidate`` is None when the object does not parse
    (never admitted; still counted by ``phase_counts`` under its raw phase)."""

    candidate: Candidate | None
    resource_version: str
    phase: str


def _entry(obj: Obj) -> _Entry:
    rv = str(obj["metadata"].get("resourceVersion") or "")
    phase = str((obj.get("status") or {}).get("phase") or Phase.PENDING.value)
    try:
        return _Entry(_candidate(obj), rv, sys.intern(phase))
    except (KeyError, ValueError, TypeError):
        return _Entry(None, rv, sys.intern(phase))


class Admission:
    """Contract: ``start``/``stop`` from the owning thread; ``wake`` and the event handler methods
    (``on_add``/``on_update``/``on_delete``) from any thread (the informer calls them inline: they update
    the candidate map and set a flag). One admission thread runs the passes; ``run_once`` may also be
    called directly by a test; ``phase_counts`` from any thread. ``_cond`` guards ``_woken`` and
    ``_stopped``; ``_lock`` guards ``_entries`` (workflow key -> its latest ``_Entry``, exactly the keys
    of the objects in the informer's cache once the informer has synced and this handler was added).
    """

    def __init__(
        self,
        *,
        workflows: SharedIndexInformer,
        kube: Kube,
        expectations: Expectations,
        engine_config: EngineConfig,
        events: EventSink,
        now: Callable[[], datetime],
        period: float = 10.0,
        writers: int = 4,
        fresh: FreshCache | None = None,
        on_admitted: Callable[[str], None] | None = None,
    ) -> None:
        self.workflows = workflows
        self.fresh = fresh if fresh is not None else FreshCache(workflows.indexer)
        self.on_admitted = on_admitted
        self.writers = max(1, writers)
        self.kube = kube
        self.expectations = expectations
        self.engine_config = engine_config
        self.events = events
        self._now = now
        self.period = period
        self._cond = threading.Condition()
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._woken = True
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.passes = 0
        self.admitted = 0

    # -- wakes --------------------------------------------------------------------------------------

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify()

    def _remember(self, obj: Obj) -> None:
        key, entry = meta_namespace_key(obj), _entry(obj)
        with self._lock:
            self._entries[key] = entry

    def on_add(self, obj: Obj, is_in_initial_list: bool) -> None:
        self._remember(obj)
        self.wake()

    def on_update(self, old: Obj, new: Obj) -> None:
        self._remember(new)
        before, after = old.get("status") or {}, new.get("status") or {}
        pending = (after.get("phase") or Phase.PENDING) == Phase.PENDING
        moved = before.get("phase") != after.get("phase")
        deleting = bool(new["metadata"].get("deletionTimestamp")) != bool(
            old["metadata"].get("deletionTimestamp"))
        if pending or moved or deleting:
            self.wake()

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        with self._lock:
            self._entries.pop(meta_namespace_key(obj), None)
        self.wake()

    def phase_counts(self) -> dict[str, int]:
        """Cached workflows per phase (a missing phase counts as ``Pending``); no cache scan."""
        with self._lock:
            entries = list(self._entries.values())
        counts: dict[str, int] = {}
        for e in entries:
            counts[e.phase] = counts.get(e.phase, 0) + 1
        return counts

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="admission", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self.period
                while not self._woken and not self._stopped:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stopped:
                    return
                if not self.workflows.has_synced():
                    # Passes before the first LIST is in would see a partial cluster (and the initial
                    # list wakes us once per workflow); look again shortly, woken or not.
                    self._cond.wait(0.1)
                    continue
                self._woken = False
            try:
                self.run_once()
            except Exception:
                log.exception("admission pass crashed")

    # -- one pass -----------------------------------------------------------------------------------

    def run_once(self) -> int:
        """One admission pass over the candidate map; returns how many workflows it started."""
        self.passes += 1
        with self._lock:
            entries = list(self._entries.values())
        candidates = []
        # A finished workflow neither waits nor holds a slot; all ``admit`` reads of them is when each
        # queue last started one (FAIR's tie-break), so they go in as one stand-in per queue: a pass
        # costs the unfinished workflows, not the thousands of finished ones a cluster keeps.
        finished: dict[str, Candidate] = {}
        for entry in entries:
            c, rv = entry.candidate, entry.resource_version
            if c is None:
                continue
            if c.phase in TERMINAL:
                if c.started_at is not None:
                    last = finished.get(c.queue)
                    if last is None or (last.started_at is not None and c.started_at > last.started_at):
                        finished[c.queue] = c
                continue
            if c.phase is Phase.PENDING and self.expectations.is_stale(
                    object_key("Workflow", c.namespace, c.name), rv):
                # probably admitted by us (the cache lags our write): count it as active
                c = Candidate(c.namespace, c.name, c.queue, Phase.RUNNING, c.created_at,
                              c.started_at or self._now(), c.deleting)
            candidates.append(c)
        candidates.extend(finished.values())
        chosen = admit(candidates, self.engine_config)
        if len(chosen) > 1 and self.writers > 1:
            with ThreadPoolExecutor(min(self.writers, len(chosen)), "admission-write") as pool:
                started = sum(pool.map(self._admit, chosen))
        else:
            started = sum(map(self._admit, chosen))
        self.admitted += started
        return started

    def _admit(self, chosen: Candidate) -> int:
        cached = self.fresh.get_by_key(chosen.key)
        if cached is None:
            return 0
        try:
            return self._start(cached)
        except Conflict:
            log.debug("admission conflict; next pass", workflow=chosen.key)
        except NotFound:
            pass
        except KubeError as exc:
            # no immediate retry (no hot loop against a failing API): the periodic pass retries
            log.warning("admission write failed", workflow=chosen.key, error=str(exc))
        return 0

    def _start(self, obj: Obj) -> int:
        meta = obj["metadata"]
        ns, name, rv = str(meta.get("namespace") or ""), str(meta["name"]), str(meta["resourceVersion"])
        decision = start(obj, self._now())
        if decision.workflow is None:
            return 0
        old = WorkflowStatus.from_dict(obj.get("status")).to_status()
        patch = merge_patch(old, decision.workflow.to_status())
        key = object_key("Workflow", ns, name)
        try:
            written = self.kube.patch_status(WORKFLOWS, ns, name, patch, resource_version=rv)
        except Conflict:
            self.expectations.conflicted(key, rv)
            raise
        self.expectations.wrote(key, str(written["metadata"]["resourceVersion"]))
        self.fresh.wrote(written)
        if self.on_admitted is not None:
            self.on_admitted(f"{ns}/{name}")
        log.info("workflow admitted", workflow=f"{ns}/{name}", queue=(obj.get("spec") or {}).get("queue"))
        for event in decision.events:
            self.events.record(written, event.type, event.reason, event.message)
        return 1
