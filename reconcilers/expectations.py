"""Expectations: do not act on a cached object older than what we know exists (DESIGN.md §4c).

Right after a write the informer cache may still hold the previous version of the object; acting on it
would, for example, run a step whose success was just written. Every writer records here what it
knows:

* :meth:`Expectations.wrote` — the resourceVersion our own write returned: the cache is stale until it
  holds that version or a later one;
* :meth:`Expectations.conflicted` — a write against the cached version got 409: the cache is stale until
  it holds a version later than that one.

:meth:`Expectations.is_stale` compares resourceVersions as integers (etcd revisions; comparable on
current API servers). If either is not an integer it falls back to equality: a ``wrote`` expectation is
met only by that exact version, a ``conflicted`` one by any other version. Entries expire after ``ttl``
seconds, so a lost watch event (or a version overwritten before we saw it) delays an object by at most
that long, never forever.

Keys are free-form strings; the reconcilers use ``"<Kind>/<namespace>/<name>"``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache

__all__ = ["Expectations", "object_key"]


def object_key(kind: str, namespace: str, name: str) -> str:
    return f"{kind}/{namespace}/{name}"


@dataclass(frozen=True)
class _Expect:
    resource_version: str
    newer_than: bool  # True: a version > resource_version is needed; False: >= resource_version


def _int(rv: str) -> int | None:
    try:
        return int(rv)
    except ValueError:
        return None


class Expectations:
    """Contract: thread-safe (one lock around the TTL cache); any thread may call any method.

    Not guaranteed: that an entry survives ``ttl`` seconds or ``maxsize`` entries (then the object is
    simply no longer held back).
    """

    def __init__(self, *, ttl: float = 30.0, maxsize: int = 100_000,
                 timer: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._cache: TTLCache[str, _Expect] = TTLCache(maxsize=maxsize, ttl=ttl, timer=timer)

    def wrote(self, key: str, resource_version: str) -> None:
        """Our write of ``key`` returned ``resource_version``."""
        if resource_version:
            self._set(key, _Expect(resource_version, newer_than=False))

    def conflicted(self, key: str, cached_version: str) -> None:
        """A write of ``key`` against ``cached_version`` got 409: a newer version exists."""
        if cached_version:
            self._set(key, _Expect(cached_version, newer_than=True))

    def _set(self, key: str, new: _Expect) -> None:
        with self._lock:
            old = self._cache.get(key)
            if old is not None and _later_or_equal(old, new):
                return  # keep the stronger expectation
            self._cache[key] = new

    def is_stale(self, key: str, cached_version: str) -> bool:
        """True while the cached version is older than what we expect; a met expectation is dropped."""
        with self._lock:
            expect = self._cache.get(key)
            if expect is None:
                return False
            if _met(expect, cached_version):
                self._cache.pop(key, None)
                return False
            return True

    def expects(self, key: str) -> bool:
        """An expectation is held for ``key`` (e.g. we created it and the cache does not show it yet)."""
        with self._lock:
            return self._cache.get(key) is not None

    def forget(self, key: str) -> None:
        with self._lock:
            self._cache.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)


def _met(expect: _Expect, cached: str) -> bool:
    want, have = _int(expect.resource_version), _int(cached)
    if want is None or have is None:
        same = cached == expect.resource_version
        return not same if expect.newer_than else same
    return have > want if expect.newer_than else have >= want


def _later_or_equal(old: _Expect, new: _Expect) -> bool:
    """``old`` already demands at least what ``new`` does (integers only; otherwise the newer wins)."""
    a, b = _int(old.resource_version), _int(new.resource_version)
    if a is None or b is None:
        return False
    return (a, old.newer_than) >= (b, new.newer_than)
