"""The thread-safe store and its indexers (client-go ``thread_safe_store.go``, ``index.go``).

Objects are JSON dicts keyed ``namespace/name`` (or ``name`` for cluster-scoped objects). Indexers are
named functions ``obj -> list[str]`` (e.g. the namespace index, or "steps by owning workflow"); the
store keeps, per indexer, ``value -> set of keys``, updated on every write.

Two storage modes:

* **plain** (``compact=False``): the store keeps the objects it is given and hands them out as is
  (zero-copy reads, ~4x the JSON size in Python objects).
* **compact** (``compact=True``, what :class:`~informers.factory.SharedInformerFactory` builds): the
  store keeps each object as its JSON bytes (``orjson.dumps``) and decodes it, deep-frozen, on a read
  (:func:`~informers.frozen.loads_frozen`: ~18 µs for a 1 KB object, ~45 µs for 2.6 KB on the bench
  machine). Memory is about the JSON size. A small LRU (``decoded_cache_size`` objects, default 1024)
  keeps the objects decoded or written (frozen) last, so the reconciles that follow a watch event read
  without decoding; a read may thus return the same object as an earlier one, or an equal new one.
  ``list()`` and ``iter_objects()`` decode everything (bypassing the LRU), so for frequent whole-cache
  scans keep a map of your own fed by event handlers. Stored objects must be JSON values (what the API
  server sends and the transforms leave).

TL;DR caveats (as client-go's):

* plain mode does not copy: whatever is stored is handed out as is. The informer stores **frozen**
  objects (:mod:`informers.frozen`), so a handler that tries to change one gets a ``TypeError``
  instead of silently corrupting the cache. If you store plain dicts yourself, do not mutate them.
  Compact mode hands out frozen objects whatever it was given.
* index functions must be pure and fast; they run under the store's lock, on the object as written
  (compact mode: as decoded, not frozen, when (re)indexing stored objects).
"""

from __future__ import annotations

import builtins
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from informers.frozen import FrozenDict, loads_frozen

__all__ = [
    "NAMESPACE_INDEX",
    "DeletedFinalStateUnknown",
    "IndexFunc",
    "Indexer",
    "KeyFunc",
    "drop_managed_fields",
    "label_index_func",
    "meta_namespace_index_func",
    "meta_namespace_key",
    "owner_index_func",
    "split_key",
]

Obj = Mapping[str, Any]
KeyFunc = Callable[[Obj], str]
IndexFunc = Callable[[Obj], list[str]]
#: What the store keeps per key: the object itself (plain mode) or its JSON bytes (compact mode).
Stored = Any

NAMESPACE_INDEX = "namespace"


@dataclass(frozen=True, slots=True)
class DeletedFinalStateUnknown:
    """A tombstone: ``obj`` was deleted while the watch was down; ``obj`` is its last known state.

    ``on_delete`` handlers receive either an object or one of these; unwrap with ``.obj``.
    """

    key: str
    obj: Obj


def meta_namespace_key(obj: Obj | DeletedFinalStateUnknown) -> str:
    """``namespace/name``, or ``name`` when the object has no namespace; tombstones give their key."""
    if isinstance(obj, DeletedFinalStateUnknown):
        return obj.key
    meta = obj["metadata"]
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else str(meta["name"])


def split_key(key: str) -> tuple[str, str]:
    """``(namespace, name)``; namespace is ``""`` for cluster-scoped keys."""
    ns, sep, name = key.partition("/")
    return (ns, name) if sep else ("", ns)


def meta_namespace_index_func(obj: Obj) -> list[str]:
    return [obj["metadata"].get("namespace") or ""]


def label_index_func(label: str) -> IndexFunc:
    """Index by the value of one label, e.g. ``label_index_func("workflow")``."""

    def index(obj: Obj) -> list[str]:
        value = (obj["metadata"].get("labels") or {}).get(label)
        return [value] if value is not None else []

    return index


def owner_index_func(kind: str, *, controller_only: bool = True) -> IndexFunc:
    """Index by owner ``namespace/name`` for owners of ``kind`` (e.g. steps by owning Workflow)."""

    def index(obj: Obj) -> list[str]:
        meta = obj["metadata"]
        ns = meta.get("namespace") or ""
        out = []
        for ref in meta.get("ownerReferences") or ():
            if ref.get("kind") == kind and (ref.get("controller") or not controller_only):
                out.append(f"{ns}/{ref['name']}" if ns else str(ref["name"]))
        return out

    return index


def drop_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """A transform: remove ``metadata.managedFields`` (often half of an object's size)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


class Indexer:
    """A thread-safe key → object map with secondary indices.

    Contract: any thread may call any method; one lock ``_lock`` guards ``_items``, ``_indices`` and
    ``_decoded``. Invariants: for every indexer ``n``, ``_indices[n][v]`` is exactly the set of keys
    whose object's index function returns ``v`` (empty sets are removed). ``_items`` holds stored forms
    (see ``encode``); compact mode decodes them outside the lock (bytes are immutable). ``_decoded``
    (compact mode) maps a key to ``(stored, frozen object)``: an entry is valid only while ``stored is
    _items[key]`` (the entry holds ``stored``, so its identity cannot be reused); invalid ones are
    ignored and replaced. A ``FrozenDict`` given to ``put`` is assumed deep-frozen (``freeze`` made it)
    and enters the LRU as is. Returned lists are
    fresh lists of the stored objects (plain mode: shared, not copied; compact: newly decoded). Readers
    never block each other for long: every operation is O(1) or O(result), except
    ``list``/``replace``/``add_indexers``; writers in compact mode also decode the previous object.
    """

    def __init__(
        self,
        key_func: KeyFunc = meta_namespace_key,
        indexers: Mapping[str, IndexFunc] | None = None,
        *,
        compact: bool = False,
        decoded_cache_size: int = 1024,
    ) -> None:
        self._key_func = key_func
        self.compact = compact
        self._decoded: OrderedDict[str, tuple[Stored, Obj]] = OrderedDict()
        self._decoded_max = decoded_cache_size if compact else 0
        self._lock = threading.RLock()
        self._items: dict[str, Stored] = {}
        self._indexers: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        if indexers:
            self.add_indexers(indexers)

    def key_of(self, obj: Obj | DeletedFinalStateUnknown) -> str:
        if isinstance(obj, DeletedFinalStateUnknown):
            return obj.key
        return self._key_func(obj)

    # -- stored forms -------------------------------------------------------------------------------

    def encode(self, obj: Obj) -> Stored:
        """What the store keeps for ``obj``: its JSON bytes (compact) or ``obj`` itself (plain)."""
        if not self.compact:
            return obj
        # orjson.dumps returns bytes inside its (at least 4 KiB) write buffer, never shrunk: a 1 KB Step
        # would hold 4 KiB. Copy into an object of the exact size (~0.3 µs).
        return bytes(memoryview(orjson.dumps(obj)))

    def decode(self, stored: Stored) -> Obj:
        """The object a stored form stands for: a new deep-frozen object (compact), or ``stored``."""
        if self.compact:
            obj: Obj = loads_frozen(stored)
            return obj
        return stored  # type: ignore[no-any-return]

    def _peek(self, stored: Stored) -> Obj:
        """For keys and index functions only: parsed, not frozen (compact), or ``stored``."""
        if self.compact:
            obj: Obj = orjson.loads(stored)
            return obj
        return stored  # type: ignore[no-any-return]

    # -- writes -------------------------------------------------------------------------------------

    def add(self, obj: Obj) -> None:
        self.put(self._key_func(obj), obj)

    update = add

    def put(self, key: str, obj: Obj) -> Obj | None:
        """Store ``obj`` under ``key``; return the previous object."""
        stored = self.encode(obj)
        with self._lock:
            old_stored = self._items.get(key)
            self._items[key] = stored
            old = None if old_stored is None else self._decode_locked(key, old_stored)
            self._update_indices_locked(key, old, obj)
            if self._decoded_max:
                if type(obj) is FrozenDict:
                    self._remember_locked(key, stored, obj)
                else:
                    self._decoded.pop(key, None)
            return old

    def delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        self.delete_key(self.key_of(obj))

    def delete_key(self, key: str) -> Obj | None:
        with self._lock:
            old_stored = self._items.pop(key, None)
            if old_stored is None:
                return None
            old = self._decode_locked(key, old_stored)
            self._decoded.pop(key, None)
            self._update_indices_locked(key, old, None)
            return old

    def replace(self, objs: Iterable[Obj]) -> None:
        """Swap the whole content atomically."""
        self.replace_stored([self.encode(o) for o in objs])

    def replace_stored(self, stored: Iterable[Stored]) -> tuple[dict[str, Stored], dict[str, Stored]]:
        """Swap the whole content atomically for these stored forms (from ``encode``; for the same key
        twice, the last wins); returns the previous and the new content (stored forms by key, copies).
        Compact mode parses each object once, one at a time (key and indices), outside the lock."""
        with self._lock:
            indexers = dict(self._indexers)
        items: dict[str, Stored] = {}
        indices: dict[str, dict[str, set[str]]] = {n: {} for n in indexers}
        duplicates = False
        for s in stored:
            obj = self._peek(s)
            key = self._key_func(obj)
            duplicates = duplicates or key in items
            items[key] = s
            for name, fn in indexers.items():
                index = indices[name]
                for value in fn(obj):
                    index.setdefault(value, set()).add(key)
        with self._lock:
            if duplicates or self._indexers.keys() != indexers.keys():  # rare: index again, from items
                indices = self._index_all(items, self._indexers)
            old, self._items, self._indices = self._items, items, indices
            self._decoded.clear()
            return old, dict(items)

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        """Add index functions (allowed at any time; existing objects are indexed now)."""
        with self._lock:
            clash = set(indexers) & set(self._indexers)
            if clash:
                raise ValueError(f"indexer(s) already exist: {sorted(clash)}")
            self._indexers.update(indexers)
            self._indices.update(self._index_all(self._items, indexers))

    def _index_all(self, items: Mapping[str, Stored],
                   indexers: Mapping[str, IndexFunc]) -> dict[str, dict[str, set[str]]]:
        indices: dict[str, dict[str, set[str]]] = {n: {} for n in indexers}
        if indices:
            for key, stored in items.items():
                obj = self._peek(stored)
                for name, fn in indexers.items():
                    index = indices[name]
                    for value in fn(obj):
                        index.setdefault(value, set()).add(key)
        return indices

    def indexer_names(self) -> builtins.list[str]:
        with self._lock:
            return list(self._indexers)

    def _update_indices_locked(self, key: str, old: Obj | None, new: Obj | None) -> None:
        for name, fn in self._indexers.items():
            index = self._indices[name]
            old_values = fn(old) if old is not None else []
            new_values = fn(new) if new is not None else []
            if old_values == new_values:
                continue
            for value in old_values:
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
            for value in new_values:
                index.setdefault(value, set()).add(key)

    # -- reads --------------------------------------------------------------------------------------

    def get(self, obj: Obj | DeletedFinalStateUnknown) -> Obj | None:
        return self.get_by_key(self.key_of(obj))

    def get_by_key(self, key: str) -> Obj | None:
        with self._lock:
            stored = self._items.get(key)
            if stored is None:
                return None
            if not self._decoded_max:
                return self.decode(stored)
        return self._objects([(key, stored)])[0]

    def list(self) -> builtins.list[Obj]:
        """Every object. Compact mode decodes them all at once: see ``iter_objects``."""
        with self._lock:
            stored = list(self._items.values())
        return [self.decode(s) for s in stored] if self.compact else stored

    def iter_objects(self) -> Iterator[Obj]:
        """Every object of a snapshot taken now, decoded one at a time as the caller iterates."""
        with self._lock:
            stored = list(self._items.values())
        return map(self.decode, stored)

    def list_keys(self) -> builtins.list[str]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def index_keys(self, index_name: str, value: str) -> builtins.list[str]:
        with self._lock:
            return sorted(self._index_locked(index_name).get(value, ()))

    def by_index(self, index_name: str, value: str) -> builtins.list[Obj]:
        with self._lock:
            keys = self._index_locked(index_name).get(value, ())
            pairs = [(k, self._items[k]) for k in sorted(keys)]
        return self._objects(pairs)

    def index(self, index_name: str, obj: Obj) -> builtins.list[Obj]:
        """Objects sharing any index value with ``obj``."""
        with self._lock:
            index = self._index_locked(index_name)
            keys: set[str] = set()
            for value in self._indexers[index_name](obj):
                keys |= index.get(value, set())
            pairs = [(k, self._items[k]) for k in sorted(keys)]
        return self._objects(pairs)

    # -- the decoded-object LRU (compact mode) ------------------------------------------------------

    def _objects(self, pairs: builtins.list[tuple[str, Stored]]) -> builtins.list[Obj]:
        """The objects for ``(key, stored)`` pairs read under the lock: from the LRU, or decoded outside
        the lock and then remembered (if the key still holds that stored form)."""
        if not self._decoded_max:
            return [self.decode(s) for _, s in pairs] if self.compact else [s for _, s in pairs]
        out: builtins.list[Obj | None] = []
        with self._lock:
            for key, stored in pairs:
                out.append(self._cached_locked(key, stored))
        missing = [i for i, o in enumerate(out) if o is None]
        for i in missing:
            out[i] = self.decode(pairs[i][1])
        if missing:
            with self._lock:
                for i in missing:
                    key, stored = pairs[i]
                    if self._items.get(key) is stored:
                        self._remember_locked(key, stored, out[i])  # type: ignore[arg-type]
        return out  # type: ignore[return-value]

    def _cached_locked(self, key: str, stored: Stored) -> Obj | None:
        entry = self._decoded.get(key)
        if entry is None or entry[0] is not stored:
            return None
        self._decoded.move_to_end(key)
        return entry[1]

    def _remember_locked(self, key: str, stored: Stored, obj: Obj) -> None:
        self._decoded[key] = (stored, obj)
        self._decoded.move_to_end(key)
        while len(self._decoded) > self._decoded_max:
            self._decoded.popitem(last=False)

    def _decode_locked(self, key: str, stored: Stored) -> Obj:
        cached = self._cached_locked(key, stored) if self._decoded_max else None
        return cached if cached is not None else self.decode(stored)

    def list_index_func_values(self, index_name: str) -> builtins.list[str]:
        with self._lock:
            return sorted(self._index_locked(index_name))

    def _index_locked(self, index_name: str) -> dict[str, set[str]]:
        try:
            return self._indices[index_name]
        except KeyError:
            raise KeyError(f"no indexer named {index_name!r}") from None
