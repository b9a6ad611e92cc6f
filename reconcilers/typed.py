"""The state machine's typed values of API objects, parsed once per object version.

``decide`` takes :class:`~reconcilers.state_machine.types.Workflow` and
:class:`~reconcilers.state_machine.types.Step` values; parsing them from the cached JSON (timestamps,
conditions, every step's template) was about a tenth of the controller's CPU under load, repeated for
every step of a workflow on every reconcile although most of them had not changed. A value is
immutable and depends only on the object, so one parse per ``(uid, resourceVersion)`` is enough. A
workflow's spec changes only with its generation: a new version of the same generation (a status
write) reuses the parsed spec object, and with it what ``state_machine.dag`` worked out about its
graph (validation, cycle check, order), which it keeps on the spec.

Contract: thread-safe (one lock around the dicts; the reconciler and the step workers share one
cache); at most ``size`` values (default 2048: the objects of a few hundred running workflows; a typed
value costs about as much memory as the decoded object), the oldest inserted dropped first, and apart
from them at most ``size`` parsed specs (one per workflow generation), so the churn of step versions
does not push out the spec of a running workflow. Objects without a uid or resourceVersion (never from
the API server) are parsed every time.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from reconcilers.state_machine import Step, Workflow

__all__ = ["TypedCache"]


class TypedCache:
    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str, str], Any] = {}
        self._specs: dict[tuple[str, str], Any] = {}  # (uid, generation) -> the parsed spec
        self.parsed = 0  # for tests: how many objects were parsed

    def workflow(self, obj: Mapping[str, Any]) -> Workflow:
        meta = obj.get("metadata") or {}
        spec_key = (str(meta.get("uid") or ""), str(meta.get("generation") or ""))
        known = self._specs.get(spec_key) if spec_key[0] and spec_key[1] else None

        def parse(o: Mapping[str, Any]) -> Workflow:
            return Workflow.from_dict(o, spec=known)

        value: Workflow = self._get("Workflow", obj, parse)
        if known is None and spec_key[0] and spec_key[1]:
            with self._lock:
                self._specs[spec_key] = value.spec
                while len(self._specs) > self.size:
                    del self._specs[next(iter(self._specs))]
        return value

    def step(self, obj: Mapping[str, Any]) -> Step:
        value: Step = self._get("Step", obj, Step.from_dict)
        return value

    def _get(self, kind: str, obj: Mapping[str, Any], parse: Any) -> Any:
        meta = obj.get("metadata") or {}
        uid, rv = meta.get("uid"), meta.get("resourceVersion")
        if not uid or not rv:
            self.parsed += 1
            return parse(obj)
        key = (kind, str(uid), str(rv))
        value = self._values.get(key)  # a dict read is atomic under the GIL
        if value is not None:
            return value
        value = parse(obj)
        self.parsed += 1
        self._remember(key, value)
        return value

    def _remember(self, key: tuple[str, str, str], value: Any) -> None:
        with self._lock:
            self._values[key] = value
            while len(self._values) > self.size:
                del self._values[next(iter(self._values))]
