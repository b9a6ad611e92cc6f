"""Event handlers that only enqueue keys (the only kind a shared informer should call inline)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, Protocol

from informers.store import DeletedFinalStateUnknown, meta_namespace_key

__all__ = ["EnqueueHandler", "PriorityAdder"]

Obj = Mapping[str, Any]


class PriorityAdder(Protocol):
    def add(self, item: Any, *, low_priority: bool = False) -> None: ...


class EnqueueHandler:
    """Adds ``key_func(obj)`` to ``queue`` on every event.

    With ``low_priority_when_unchanged`` (controller-runtime's ``WithLowPriorityWhenUnchanged``), adds
    from the initial list and updates that do not change the resourceVersion (resyncs, relists) are
    low priority, so a start-up or resync flood never delays real changes. Stateless; thread-safe as
    far as the queue is.
    """

    def __init__(
        self,
        queue: PriorityAdder,
        key_func: Callable[[Obj | DeletedFinalStateUnknown], Hashable] = meta_namespace_key,
        *,
        low_priority_when_unchanged: bool = True,
    ) -> None:
        self._queue = queue
        self._key = key_func
        self._low = low_priority_when_unchanged

    def on_add(self, obj: Obj, is_in_initial_list: bool) -> None:
        self._queue.add(self._key(obj), low_priority=self._low and is_in_initial_list)

    def on_update(self, old: Obj, new: Obj) -> None:
        unchanged = old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion")
        self._queue.add(self._key(new), low_priority=self._low and unchanged)

    def on_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        self._queue.add(self._key(obj))
