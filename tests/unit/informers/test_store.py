from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from informers.frozen import FrozenDict, freeze, thaw
from informers.store import (
    NAMESPACE_INDEX,
    DeletedFinalStateUnknown,
    Indexer,
    drop_managed_fields,
    label_index_func,
    meta_namespace_index_func,
    meta_namespace_key,
    owner_index_func,
    split_key,
)


def obj(ns: str, name: str, labels: dict[str, str] | None = None, owner: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": ns, "name": name, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": "Workflow", "name": owner, "controller": True, "uid": "u"}]
    return {"metadata": meta, "spec": {"steps": [{"name": "s1"}]}}


def test_keys() -> None:
    assert meta_namespace_key(obj("ns", "a")) == "ns/a"
    assert meta_namespace_key({"metadata": {"name": "cluster-wide"}}) == "cluster-wide"
    assert meta_namespace_key(DeletedFinalStateUnknown("x/y", {})) == "x/y"
    assert split_key("ns/a") == ("ns", "a")
    assert split_key("a") == ("", "a")


def test_indices_follow_updates_and_deletes() -> None:
    idx = Indexer(indexers={NAMESPACE_INDEX: meta_namespace_index_func,
                            "by-workflow": owner_index_func("Workflow"),
                            "label": label_index_func("workflow")})
    idx.add(obj("n1", "s1", {"workflow": "w1"}, owner="w1"))
    idx.add(obj("n1", "s2", {"workflow": "w1"}, owner="w1"))
    idx.add(obj("n2", "s3", {"workflow": "w2"}, owner="w2"))
    assert [meta_namespace_key(o) for o in idx.by_index(NAMESPACE_INDEX, "n1")] == ["n1/s1", "n1/s2"]
    assert idx.index_keys("by-workflow", "n1/w1") == ["n1/s1", "n1/s2"]
    assert idx.index_keys("label", "w2") == ["n2/s3"]
    idx.update(obj("n1", "s2", {"workflow": "w9"}, owner="w9"))
    assert idx.index_keys("by-workflow", "n1/w1") == ["n1/s1"]
    assert idx.index_keys("label", "w9") == ["n1/s2"]
    idx.delete(obj("n1", "s1"))
    assert idx.index_keys("by-workflow", "n1/w1") == []
    assert "n1/w1" not in idx.list_index_func_values("by-workflow")
    assert [meta_namespace_key(o) for o in idx.index(NAMESPACE_INDEX, obj("n1", "zz"))] == ["n1/s2"]
    with pytest.raises(KeyError):
        idx.by_index("nope", "x")


def test_replace_and_late_indexers() -> None:
    idx = Indexer()
    idx.add(obj("a", "x"))
    idx.replace([obj("b", "y"), obj("b", "z")])
    assert sorted(idx.list_keys()) == ["b/y", "b/z"]
    idx.add_indexers({NAMESPACE_INDEX: meta_namespace_index_func})
    assert idx.index_keys(NAMESPACE_INDEX, "b") == ["b/y", "b/z"]
    with pytest.raises(ValueError, match="already exist"):
        idx.add_indexers({NAMESPACE_INDEX: meta_namespace_index_func})
    assert len(idx) == 2
    assert "b/y" in idx


def test_drop_managed_fields() -> None:
    o = obj("a", "b")
    o["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    assert "managedFields" not in drop_managed_fields(o)["metadata"]


def test_frozen_objects_refuse_every_mutation() -> None:
    f = freeze(obj("a", "b", {"k": "v"}))
    attempts = [
        lambda: f.__setitem__("x", 1),
        lambda: f["metadata"].update({"name": "c"}),
        lambda: f["metadata"]["labels"].pop("k"),
        lambda: f["metadata"].setdefault("annotations", {}),
        lambda: f["spec"]["steps"].append({}),
        lambda: f["spec"]["steps"][0].__setitem__("name", "evil"),
        lambda: f["spec"]["steps"].sort(),
        lambda: f.__delitem__("spec"),
        lambda: f.clear(),
    ]
    for attempt in attempts:
        with pytest.raises(TypeError, match="read-only"):
            attempt()
    assert f == obj("a", "b", {"k": "v"})
    assert isinstance(f, dict)
    assert isinstance(f["spec"]["steps"], list)
    assert orjson.loads(orjson.dumps(f)) == f


def test_deepcopy_and_thaw_give_mutable_plain_copies() -> None:
    f = freeze(obj("a", "b"))
    for c in (copy.deepcopy(f), thaw(f)):
        assert type(c) is dict
        assert type(c["spec"]["steps"]) is list
        c["spec"]["steps"].append({"name": "s2"})
        c["metadata"]["name"] = "changed"
    assert f["metadata"]["name"] == "b"
    assert len(f["spec"]["steps"]) == 1
    assert isinstance(freeze(f), FrozenDict)
