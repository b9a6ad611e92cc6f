"""``StepRegistry``: step types by name, discovered from entry points or registered explicitly.

A plugin package declares its steps in its ``pyproject.toml``::

    [project.entry-points."stepkit.steps"]
    my_step = "my_package.steps:MyStep"

The value is a ``Step`` class (instantiated with no arguments), a zero-argument factory returning a
step, or a ready step instance. Discovery loads and instantiates every entry point once, at start-up,
so a broken plugin shows up immediately in ``broken`` (and in logs, the CLI listing and the health
endpoint) instead of at the first workflow that uses it.

Failure isolation: an entry point that fails to import, resolves to something that is not a step, or
whose constructor raises is recorded in ``broken`` with a one-line reason and skipped; the others load.
Duplicate names: the first entry point seen wins (``importlib.metadata`` lists ``sys.path`` in order,
so the environment's first distribution wins); later ones are recorded in ``broken`` under the key
``"<name> (<source>)"`` so the winner's name stays usable.

Threading contract: ``discover`` and ``register`` are meant for start-up, ``get`` / ``names`` /
``loaded`` / ``broken`` are called from any worker thread. All take one internal lock for a few
dictionary operations; step instances are created at registration, never under ``get``. The returned
mappings are copies: callers cannot mutate the registry through them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar

import structlog

from stepkit.protocol import Step

__all__ = ["ENTRY_POINT_GROUP", "StepFactory", "StepNotFoundError", "StepRegistry"]

ENTRY_POINT_GROUP = "stepkit.steps"

StepFactory = Callable[[], Step] | type
"""A ``Step`` class or a zero-argument callable returning a step."""

_log = structlog.get_logger("stepkit.registry")

_STEP_METHODS = ("run", "rollback", "sync")


class StepNotFoundError(LookupError):
    """``get(name)`` for a name that is not loaded; ``reason`` says why (unknown or broken plugin)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"step type {name!r}: {reason}")
        self.name = name
        self.reason = reason


def _is_step(obj: object) -> bool:
    return all(callable(getattr(obj, method, None)) for method in _STEP_METHODS)


def _missing_methods(obj: object) -> list[str]:
    return [method for method in _STEP_METHODS if not callable(getattr(obj, method, None))]


def _instantiate(obj: object, what: str) -> Step:
    """Turn an entry point's target into a step instance, or raise ``TypeError`` with a clear reason."""
    if isinstance(obj, type):
        missing = _missing_methods(obj)
        if missing:
            raise TypeError(f"{what} is class {obj.__qualname__}, which lacks {', '.join(missing)}")
        instance: object = obj()
    elif _is_step(obj):
        instance = obj
    elif callable(obj):
        instance = obj()
    else:
        raise TypeError(
            f"{what} is a {type(obj).__name__}, expected a Step class, a zero-argument factory or a step"
        )
    missing = _missing_methods(instance)
    if missing:
        raise TypeError(f"{what} produced a {type(instance).__name__}, which lacks {', '.join(missing)}")
    return instance  # type: ignore[return-value]  # checked structurally above


def _describe(ep: EntryPoint) -> str:
    dist = ep.dist.name if ep.dist is not None else "?"
    return f"{dist}:{ep.value}"


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class StepRegistry:
    """Step types by name. See the module docstring for discovery, failure isolation and threading."""

    _default: ClassVar[StepRegistry | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Invariant: a name is in _steps iff it is in _sources. _broken never shadows a loaded name:
        # a duplicate of a loaded name is keyed "<name> (<source>)".
        self._steps: dict[str, Step] = {}
        self._sources: dict[str, str] = {}
        self._broken: dict[str, str] = {}
        self._seen: set[tuple[str, str]] = set()  # (name, source) of every entry point processed

    @classmethod
    def default(cls) -> StepRegistry:
        """The process-wide registry, discovered from ``stepkit.steps`` on first use."""
        with cls._default_lock:
            if cls._default is None:
                registry = cls()
                registry.discover()
                cls._default = registry
            return cls._default

    def discover(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Load every entry point of ``group``; failures go to ``broken``, never raise.

        Scans ``sys.path`` (5-35 ms): call once at start-up. Calling again adds entry points that
        appeared since; entry points already processed (same name and source) are skipped.
        """
        for ep in entry_points(group=group):
            self._load_entry_point(ep)

    def _load_entry_point(self, ep: EntryPoint) -> None:
        name, source = ep.name, _describe(ep)
        with self._lock:
            if (name, source) in self._seen:
                return  # handled by an earlier discover()
            self._seen.add((name, source))
            if name in self._sources or name in self._broken:
                winner = self._sources.get(name) or f"a broken plugin ({self._broken[name]})"
                self._record_broken_locked(
                    name, source, f"duplicate step name {name!r}: {source} ignored, {winner} came first"
                )
                return
        try:
            step = _instantiate(ep.load(), f"entry point {name} = {ep.value}")
        except Exception as exc:  # a plugin may raise anything while importing; isolate it
            with self._lock:
                self._record_broken_locked(name, source, f"{source}: {_error_text(exc)}")
            return
        with self._lock:
            if name in self._sources:  # a concurrent discover() or register() won the race
                winner = self._sources[name]
                message = f"duplicate step name {name!r}: {source} ignored, {winner} came first"
                self._record_broken_locked(name, source, message)
                return
            self._steps[name] = step
            self._sources[name] = source
        _log.info("step plugin loaded", step_type=name, source=source)

    def _record_broken_locked(self, name: str, source: str, message: str) -> None:
        key = name if name not in self._sources and name not in self._broken else f"{name} ({source})"
        self._broken[key] = message
        _log.warning("step plugin broken", step_type=name, source=source, error=message)

    def register(self, name: str, factory: StepFactory | Step, *, replace: bool = False) -> Step:
        """Register a step explicitly (tests, embedding). Fails loudly, unlike discovery.

        Raises ``ValueError`` if ``name`` is taken (unless ``replace``) and ``TypeError`` if ``factory``
        does not produce a step. Returns the instance.
        """
        if not name:
            raise ValueError("step name must not be empty")
        target: Any = factory
        step = _instantiate(target, f"register({name!r})")
        module = getattr(target, "__module__", None) or type(target).__module__
        qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
        source = f"explicit:{module}:{qualname}"
        with self._lock:
            if name in self._sources and not replace:
                raise ValueError(f"step type {name!r} is already registered from {self._sources[name]}")
            self._steps[name] = step
            self._sources[name] = source
            self._broken.pop(name, None)
        _log.info("step plugin loaded", step_type=name, source=source)
        return step

    def get(self, name: str) -> Step:
        """The step instance for ``name``; ``StepNotFoundError`` says whether it is unknown or broken."""
        with self._lock:
            step = self._steps.get(name)
            if step is not None:
                return step
            reason = self._broken.get(name)
            known = sorted(self._steps)
        if reason is not None:
            raise StepNotFoundError(name, f"plugin failed to load: {reason}")
        raise StepNotFoundError(name, f"no such step type (loaded: {', '.join(known) or 'none'})")

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._steps

    def names(self) -> list[str]:
        """Loaded step type names, sorted."""
        with self._lock:
            return sorted(self._steps)

    @property
    def loaded(self) -> Mapping[str, str]:
        """Step type name -> source (``"dist:module:attr"`` or ``"explicit:module:qualname"``)."""
        with self._lock:
            return dict(sorted(self._sources.items()))

    def report(self) -> dict[str, dict[str, str]]:
        """``{"loaded": {name: source}, "broken": {key: reason}}`` — JSON-ready, for the health
        endpoint and ``python -m stepkit``; one consistent snapshot."""
        with self._lock:
            return {
                "loaded": dict(sorted(self._sources.items())),
                "broken": dict(sorted(self._broken.items())),
            }

    @property
    def broken(self) -> Mapping[str, str]:
        """Entry-point name (or ``"<name> (<source>)"`` for an ignored duplicate) -> one-line reason."""
        with self._lock:
            return dict(sorted(self._broken.items()))
