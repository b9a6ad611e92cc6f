"""Read your own writes: the objects our writes returned, laid over an informer's cache (the idea of
client-go's ``MutationCache``).

Without it, a worker that just wrote a Step's status has to wait for the watch event that brings the
new version into the informer's cache before anyone can act on it (the expectations hold the old copy
back). With it, the response of the write is visible at once to the workflow reconciler and the step
workers, so a hand-off from one step to the next costs the writes it needs and no watch round trip.

Rules:

* :meth:`FreshCache.wrote` keeps the response of a successful create/patch (deep-frozen, like the
  informer's objects);
* a read returns whichever of the informer's copy and ours has the higher resourceVersion (integers;
  etcd revisions). Once the informer holds our version or a later one, our copy is dropped; entries also
  expire after ``ttl`` seconds, so a version we never see again (the object was deleted) is not served
  for long. A delete seen by the informer drops our copy at once (:meth:`on_delete`);
* :meth:`consume_own_event` tells the event handlers that a watch event carries exactly a version we
  wrote ourselves: the writer has already enqueued whatever must follow, so the event need not wake
  anything (it would only repeat a reconcile).

Contract: thread-safe (one lock); any thread may call any method. Objects handed out are read-only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache

from informers import DeletedFinalStateUnknown, Indexer, freeze

__all__ = ["FreshCache"]

Obj = Mapping[str, Any]


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") or ""
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def _rv(obj: Obj | None) -> int:
    """The resourceVersion as an integer; -1 when missing or not an integer (then ours never wins)."""
    if obj is None:
        return -1
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or "")
    except ValueError:
        return -1


@dataclass(frozen=True)
class _Entry:
    obj: Obj
    rv: int
    owner: str | None


class FreshCache:
    """An informer's indexer plus the objects we wrote; ``owner`` maps an object to the key of the
    object that owns it (for :meth:`owned`: the Steps of a workflow, read through ``owner_index``).
    Also an event handler: register it on the same informer so our copies go as soon as the informer
    holds their version."""

    def __init__(
        self,
        indexer: Indexer,
        *,
        owner: Callable[[Obj], str | None] | None = None,
        owner_index: str | None = None,
        ttl: float = 30.0,
        maxsize: int = 100_000,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.indexer = indexer
        self._owner = owner
        self._owner_index = owner_index
        self._lock = threading.Lock()
        self._entries: TTLCache[str, _Entry] = TTLCache(maxsize=maxsize, ttl=ttl, timer=timer)
        self._by_owner: dict[str, set[str]] = {}
        self._own: TTLCache[str, str] = TTLCache(maxsize=maxsize, ttl=ttl, timer=timer)

    # -- writes -------------------------------------------------------------------------------------

    def wrote(self, obj: Obj) -> Obj:
        """Remember the response of our own successful write; returns it frozen."""
        return self._put(obj, own=True)

    def saw(self, obj: Obj) -> Obj:
        """Like :meth:`wrote` for an object we only read (its watch event still wakes its handlers)."""
        return self._put(obj, own=False)

    def _put(self, obj: Obj, *, own: bool) -> Obj:
        meta = obj.get("metadata")
        if isinstance(meta, Mapping) and "managedFields" in meta:  # as the informer's transform does
            obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        frozen: Obj = freeze(obj)
        key, rv = _key(frozen), _rv(frozen)
        owner = self._owner(frozen) if self._owner is not None else None
        version = str((frozen.get("metadata") or {}).get("resourceVersion") or "")
        with self._lock:
            old = self._entries.get(key)
            if old is None or rv > old.rv:
                self._entries[key] = _Entry(frozen, rv, owner)
                if owner is not None:
                    self._by_owner.setdefault(owner, set()).add(key)
            if own and version:
                self._own[key] = version
        return frozen

    def forget(self, key: str) -> None:
        with self._lock:
            self._drop_locked(key)
            self._own.pop(key, None)

    def _drop_locked(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None and entry.owner is not None:
            keys = self._by_owner.get(entry.owner)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_owner[entry.owner]

    def consume_own_event(self, obj: Obj) -> bool:
        """True (once) if ``obj`` is exactly a version this process wrote."""
        key = _key(obj)
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        with self._lock:
            if version and self._own.get(key) == version:
                del self._own[key]
                return True
        return False

    # -- the informer's events ----------------------------------------------------------------------

    def _seen(self, obj: Obj) -> None:
        key = _key(obj)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and _rv(obj) >= entry.rv:
                self._drop_locked(key)

    def on_add(self, obj: Obj, is_in_initial_list: bool) -> None:
        self._seen(obj)

    def on_update(self, old: Obj, new: Obj) -> None:
        self._seen(new)

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        """The informer saw ``obj`` deleted: our copy of it is no longer the truth."""
        key = obj.key if isinstance(obj, DeletedFinalStateUnknown) else _key(obj)
        with self._lock:
            self._drop_locked(key)

    # -- reads --------------------------------------------------------------------------------------

    def get_by_key(self, key: str) -> Obj | None:
        cached = self.indexer.get_by_key(key)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return cached
            if cached is not None and _rv(cached) >= entry.rv:
                self._drop_locked(key)  # the informer caught up
                return cached
            return entry.obj

    def owned(self, owner_key: str) -> list[Obj]:
        """The objects owned by ``owner_key``: the informer's (by the owner index) and ours, the newest
        copy of each."""
        if self._owner_index is None:
            raise TypeError("FreshCache.owned needs owner_index")
        by_key = {_key(o): o for o in self.indexer.by_index(self._owner_index, owner_key)}
        with self._lock:
            for key in list(self._by_owner.get(owner_key, ())):
                entry = self._entries.get(key)
                if entry is None:  # expired
                    self._by_owner[owner_key].discard(key)
                    continue
                cached = by_key.get(key)
                if cached is not None and _rv(cached) >= entry.rv:
                    self._drop_locked(key)
                else:
                    by_key[key] = entry.obj
            if owner_key in self._by_owner and not self._by_owner[owner_key]:
                del self._by_owner[owner_key]
        return list(by_key.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
