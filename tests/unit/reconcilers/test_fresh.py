"""FreshCache: our writes laid over the informer's cache, newest resourceVersion wins."""

from __future__ import annotations

from typing import Any

import pytest

from informers import DeletedFinalStateUnknown, Indexer
from reconcilers.fresh import FreshCache
from reconcilers.workflow import OWNER_INDEX, owner_index, owner_key


def step(name: str, rv: int, phase: str = "Pending", owner: str = "wf") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv),
                         "ownerReferences": [{"kind": "Workflow", "name": owner, "uid": "u",
                                              "controller": True}]},
            "status": {"phase": phase}}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def indexer() -> Indexer:
    return Indexer(indexers={OWNER_INDEX: owner_index})


def fresh(indexer: Indexer, clock: Clock | None = None) -> FreshCache:
    return FreshCache(indexer, owner=owner_key, owner_index=OWNER_INDEX, ttl=30.0, timer=clock or Clock())


def test_our_newer_write_wins_until_the_informer_catches_up(indexer: Indexer) -> None:
    cache = fresh(indexer)
    indexer.add(step("a", 5))
    written = cache.wrote(step("a", 7, "Running"))
    assert cache.get_by_key("ns/a") is written
    with pytest.raises(TypeError):
        written["status"] = {}  # frozen, like the informer's objects
    indexer.add(step("a", 7, "Running"))
    assert cache.get_by_key("ns/a")["metadata"]["resourceVersion"] == "7"
    assert len(cache) == 0  # dropped once the informer held our version


def test_an_older_write_never_hides_a_newer_cached_version(indexer: Indexer) -> None:
    cache = fresh(indexer)
    indexer.add(step("a", 9, "Success"))
    cache.wrote(step("a", 7, "Running"))
    assert cache.get_by_key("ns/a")["status"]["phase"] == "Success"


def test_owned_merges_created_objects_the_informer_has_not_seen(indexer: Indexer) -> None:
    cache = fresh(indexer)
    indexer.add(step("a", 5))
    cache.wrote(step("a", 8, "Running"))
    cache.wrote(step("b", 6))  # created by us, no watch event yet
    cache.wrote(step("x", 6, owner="other"))
    got = {o["metadata"]["name"]: o["status"]["phase"] for o in cache.owned("ns/wf")}
    assert got == {"a": "Running", "b": "Pending"}


def test_entries_expire_and_deletes_drop_them(indexer: Indexer) -> None:
    clock = Clock()
    cache = fresh(indexer, clock)
    cache.wrote(step("a", 5))
    cache.wrote(step("b", 5))
    cache.on_delete(DeletedFinalStateUnknown("ns/a", step("a", 5)))
    assert cache.get_by_key("ns/a") is None
    clock.t = 31.0
    assert cache.get_by_key("ns/b") is None
    assert cache.owned("ns/wf") == []


def test_an_event_of_our_own_write_is_recognised_once(indexer: Indexer) -> None:
    cache = fresh(indexer)
    cache.wrote(step("a", 7))
    assert not cache.consume_own_event(step("a", 8))  # someone else's version
    assert cache.consume_own_event(step("a", 7))
    assert not cache.consume_own_event(step("a", 7))


def test_informer_events_drop_caught_up_entries(indexer: Indexer) -> None:
    cache = fresh(indexer)
    cache.wrote(step("a", 7))
    cache.on_update(step("a", 5), step("a", 6))
    assert len(cache) == 1
    cache.on_add(step("a", 7), False)
    assert len(cache) == 0
