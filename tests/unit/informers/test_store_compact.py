"""The compact storage mode (JSON bytes, decoded and deep-frozen per read) against the plain mode."""

from __future__ import annotations

import copy
import random
from typing import Any

import orjson
import pytest
from kubernetes.client import ApiClient

from informers.factory import SharedInformerFactory
from informers.frozen import FrozenDict, FrozenList, freeze, loads_frozen
from informers.listwatch import ListOptions, ListPage, Resource
from informers.reflector import Reflector, ReflectorConfig
from informers.shared_informer import SharedIndexInformer
from informers.store import (
    NAMESPACE_INDEX,
    DeletedFinalStateUnknown,
    Indexer,
    label_index_func,
    meta_namespace_index_func,
    meta_namespace_key,
    owner_index_func,
)
from informers.testing import FakeListerWatcher, RecordingHandler

INDEXERS = {NAMESPACE_INDEX: meta_namespace_index_func, "by-workflow": owner_index_func("Workflow"),
            "label": label_index_func("workflow")}


def obj(ns: str, name: str, owner: str | None = None, rv: int = 1, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": ns, "name": name, "resourceVersion": str(rv), "labels": labels}
    if owner:
        meta["ownerReferences"] = [{"kind": "Workflow", "name": owner, "controller": True, "uid": "u"}]
    return {"metadata": meta, "spec": {"steps": [{"name": "s1", "deps": [["a", "b"]]}], "n": rv},
            "status": {"phase": "Running", "ratio": 0.5, "ok": True, "none": None}}


def assert_deeply_frozen(value: Any) -> None:
    if isinstance(value, dict):
        assert type(value) is FrozenDict
        for v in value.values():
            assert_deeply_frozen(v)
    elif isinstance(value, list):
        assert type(value) is FrozenList
        for v in value:
            assert_deeply_frozen(v)


def snapshot(idx: Indexer) -> dict[str, Any]:
    """Everything a reader can see, for comparing the two modes."""
    names = idx.indexer_names()
    return {
        "keys": sorted(idx.list_keys()),
        "objects": {k: idx.get_by_key(k) for k in idx.list_keys()},
        "list": sorted(idx.list(), key=meta_namespace_key),
        "iter": sorted(idx.iter_objects(), key=meta_namespace_key),
        "indices": {n: {v: (idx.index_keys(n, v), idx.by_index(n, v)) for v in idx.list_index_func_values(n)}
                    for n in names},
        "len": len(idx),
    }


def test_loads_frozen_equals_freeze_of_loads_and_freezes_every_level() -> None:
    values = (obj("a", "b", owner="w"), [[1, {"x": [[]]}], {}], {"a": [{"b": [[{"c": 1}]]}]}, 3, "s", None)
    for value in values:
        data = orjson.dumps(value)
        got = loads_frozen(data)
        assert got == freeze(orjson.loads(data)) == value
        assert_deeply_frozen(got)
    with pytest.raises(TypeError, match="read-only"):
        loads_frozen(b'{"a": [[1]]}')["a"][0].append(2)


@pytest.mark.parametrize("lru", [0, 3, 1024], ids=["no-lru", "tiny-lru", "default-lru"])
def test_compact_and_plain_modes_agree_through_adds_updates_deletes_and_replaces(lru: int) -> None:
    rng = random.Random(7)
    plain = Indexer(indexers=INDEXERS)
    compact = Indexer(indexers=INDEXERS, compact=True, decoded_cache_size=lru)
    for step in range(400):
        op = rng.random()
        ns, name, owner = rng.choice("ab"), f"s{rng.randrange(20)}", f"w{rng.randrange(4)}"
        if op < 0.6:
            o = obj(ns, name, owner if rng.random() < 0.8 else None, rv=step, workflow=owner)
            given = freeze(o) if rng.random() < 0.5 else o  # frozen objects enter the LRU as they are
            assert plain.put(meta_namespace_key(o), freeze(o)) == compact.put(meta_namespace_key(o), given)
        elif op < 0.9:
            assert plain.delete_key(f"{ns}/{name}") == compact.delete_key(f"{ns}/{name}")
        elif op < 0.95:
            objs = [obj(rng.choice("ab"), f"s{i}", f"w{rng.randrange(4)}", rv=step) for i in range(10)]
            plain.replace([freeze(o) for o in objs])
            compact.replace(objs)
        else:
            stored = [compact.encode(obj("c", f"r{i % 3}", "w1", rv=i)) for i in range(5)]  # duplicate keys
            old_p, new_p = plain.replace_stored([freeze(compact.decode(s)) for s in stored])
            old_c, new_c = compact.replace_stored(stored)
            assert list(new_p) == list(new_c) == ["c/r0", "c/r1", "c/r2"]
            assert {k: compact.decode(v) for k, v in old_c.items()} == old_p
        assert snapshot(plain) == snapshot(compact), f"after step {step}"
    late = {"by-name": lambda o: [o["metadata"]["name"]]}
    plain.add_indexers(late)
    compact.add_indexers(late)
    assert snapshot(plain) == snapshot(compact)


def test_compact_reads_are_fresh_frozen_objects_and_mutations_never_reach_the_cache() -> None:
    idx = Indexer(indexers=INDEXERS, compact=True, decoded_cache_size=0)
    original = obj("ns", "s1", owner="w1", workflow="w1")
    idx.add(original)
    original["spec"]["n"] = 99  # the store keeps its own bytes: later changes to the input do not leak in
    first, second = idx.get_by_key("ns/s1"), idx.get_by_key("ns/s1")
    assert first is not None
    assert second is not None
    assert first == second
    assert first is not second
    assert first["spec"]["n"] == 1
    reads = [first, idx.by_index("by-workflow", "ns/w1")[0], idx.index("label", first)[0], idx.list()[0],
             next(idx.iter_objects())]
    for got in reads:
        assert_deeply_frozen(got)
        with pytest.raises(TypeError, match="read-only"):
            got["spec"]["steps"][0]["deps"][0].append("c")
        with pytest.raises(TypeError, match="read-only"):
            got["metadata"]["labels"]["workflow"] = "evil"
        thawed = copy.deepcopy(got)
        thawed["spec"]["n"] = 2  # a copy is mutable and independent
    old = idx.put("ns/s1", obj("ns", "s1", owner="w2", rv=2))
    assert old is not None
    assert old["spec"]["n"] == 1
    assert_deeply_frozen(old)
    gone = idx.delete_key("ns/s1")
    assert gone is not None
    assert gone["metadata"]["resourceVersion"] == "2"
    assert_deeply_frozen(gone)
    assert idx.delete_key("ns/s1") is None
    assert idx.list_index_func_values("by-workflow") == []


def test_the_lru_serves_the_objects_read_or_written_last_and_never_a_replaced_one() -> None:
    idx = Indexer(indexers=INDEXERS, compact=True, decoded_cache_size=2)
    written = freeze(obj("ns", "a", owner="w"))
    idx.put("ns/a", written)
    assert idx.get_by_key("ns/a") is written  # the informer's frozen object, no decode
    plain_input = obj("ns", "b", owner="w")
    idx.put("ns/b", plain_input)
    b1 = idx.get_by_key("ns/b")
    assert b1 is not plain_input  # a mutable input never enters the LRU
    assert b1 == plain_input
    assert idx.get_by_key("ns/b") is b1
    owned = idx.by_index("by-workflow", "ns/w")
    assert owned[0] is written
    assert owned[1] is b1
    idx.put("ns/c", freeze(obj("ns", "c")))  # evicts the least recently used: a
    a2 = idx.get_by_key("ns/a")
    assert a2 == written
    assert a2 is not written
    assert idx.put("ns/a", freeze(obj("ns", "a", owner="w", rv=2))) is a2  # the old one from the LRU too
    assert idx.put("ns/b", obj("ns", "b", owner="w", rv=2)) == b1  # reading a evicted b: decoded
    assert idx.get_by_key("ns/b") == freeze(obj("ns", "b", owner="w", rv=2))
    idx.replace([obj("ns", "b", rv=3)])
    b3 = idx.get_by_key("ns/b")
    assert b3 is not None
    assert b3["metadata"]["resourceVersion"] == "3"
    assert idx.delete_key("ns/b") is b3
    assert idx.get_by_key("ns/b") is None


def test_compact_indices_follow_updates_deletes_and_replace() -> None:
    idx = Indexer(indexers=INDEXERS, compact=True)
    idx.add(obj("n1", "s1", "w1"))
    idx.add(obj("n1", "s2", "w1"))
    idx.add(obj("n2", "s3", "w2"))
    assert idx.index_keys("by-workflow", "n1/w1") == ["n1/s1", "n1/s2"]
    idx.update(obj("n1", "s2", "w9"))
    assert idx.index_keys("by-workflow", "n1/w1") == ["n1/s1"]
    assert idx.index_keys("by-workflow", "n1/w9") == ["n1/s2"]
    idx.delete(DeletedFinalStateUnknown("n1/s1", {}))
    assert idx.list_index_func_values("by-workflow") == ["n1/w9", "n2/w2"]
    old, new = idx.replace_stored([idx.encode(obj("n3", "s4", "w3"))])
    assert sorted(old) == ["n1/s2", "n2/s3"]
    assert list(new) == ["n3/s4"]
    assert idx.list_index_func_values("by-workflow") == ["n3/w3"]
    assert idx.list_index_func_values(NAMESPACE_INDEX) == ["n3"]
    assert idx.by_index(NAMESPACE_INDEX, "n1") == []


class _Pages:
    """A lister-watcher that records LIST calls next to the store's ``prepare`` calls."""

    def __init__(self, lw: FakeListerWatcher, log: list[str]) -> None:
        self.lw, self.log = lw, log

    def list(self, options: ListOptions) -> ListPage:
        self.log.append("list")
        return self.lw.list(options)

    def watch(self, options: ListOptions, *, idle_timeout: float) -> Any:
        return self.lw.watch(options, idle_timeout=idle_timeout)


def test_the_reflector_prepares_each_page_before_fetching_the_next() -> None:
    log: list[str] = []
    lw = FakeListerWatcher([obj("ns", f"w{i}") for i in range(5)])
    informer = SharedIndexInformer(lw, name="w", compact=True)
    handler = RecordingHandler()
    informer.add_event_handler(handler)

    class Recording:
        def prepare(self, o: dict[str, Any]) -> Any:
            log.append("prepare")
            return informer.prepare(o)

        def replace(self, items: list[Any], resource_version: str) -> None:
            log.append("replace")
            assert all(type(i) is bytes for i in items)  # the store's form, not parsed dicts
            informer.replace(items, resource_version)

        def add(self, o: dict[str, Any]) -> None:
            raise AssertionError("no watch in this test")

        update = delete = add

    reflector = Reflector(_Pages(lw, log), Recording(), config=ReflectorConfig(page_size=2))
    reflector._list()  # one paged LIST, no watch
    assert log == ["list", "prepare", "prepare", "list", "prepare", "prepare", "list", "prepare", "replace"]
    assert sorted(informer.indexer.list_keys()) == [f"ns/w{i}" for i in range(5)]
    assert [c[0] for c in handler.calls] == ["add"] * 5


def test_a_compact_relist_sends_updates_and_tombstones_with_frozen_objects() -> None:
    informer = SharedIndexInformer(FakeListerWatcher([]), name="w", compact=True)
    seen: list[tuple[str, Any, Any]] = []

    class Handler:
        def on_add(self, o: Any, initial: bool) -> None:
            seen.append(("add", o, initial))

        def on_update(self, old: Any, new: Any) -> None:
            seen.append(("update", old, new))

        def on_delete(self, o: Any) -> None:
            seen.append(("delete", o, None))

    informer.add_event_handler(Handler())
    informer.replace([informer.prepare(obj("ns", "a")), informer.prepare(obj("ns", "b"))], "1")
    informer.replace([informer.prepare(obj("ns", "b", rv=2))], "2")
    kinds = [(k, meta_namespace_key(a)) for k, a, _ in seen]
    assert kinds == [("add", "ns/a"), ("add", "ns/b"), ("delete", "ns/a"), ("update", "ns/b")]
    tombstone = seen[2][1]
    assert isinstance(tombstone, DeletedFinalStateUnknown)
    assert_deeply_frozen(tombstone.obj)
    old, new = seen[3][1], seen[3][2]
    assert (old["spec"]["n"], new["spec"]["n"]) == (1, 2)
    for o in (seen[0][1], old, new):
        assert_deeply_frozen(o)
    assert seen[0][2] is True


def test_the_factory_builds_compact_informers_unless_told_otherwise() -> None:
    res, other = Resource("g", "v1", "things"), Resource("g", "v1", "others")
    factory = SharedInformerFactory(ApiClient())
    assert factory.informer_for(res).indexer.compact
    assert not factory.informer_for(other, compact=False).indexer.compact
    assert not SharedInformerFactory(ApiClient(), compact=False).informer_for(res).indexer.compact
