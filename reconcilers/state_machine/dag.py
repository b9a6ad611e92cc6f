"""The step graph: validation of what the CRD cannot check, and a deterministic topological order.

The CRD's CEL rules reject duplicate names, unknown dependOns and self-dependencies, but a workflow
can reach the engine without them (an older CRD, a CRD installed without validation), so they are
checked again here, together with what CEL cannot express: cycles and unknown step types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from reconcilers.state_machine.types import WorkflowSpec

_T = TypeVar("_T")


def _memo(spec: WorkflowSpec, key: Any, compute: Callable[[], _T]) -> _T:
    """What this module works out about a spec is kept on the spec: it is immutable (a frozen
    dataclass, whose ``__dict__`` stays writable: ``functools.cached_property`` uses it the same way),
    and the engine keeps one spec object per workflow generation, so a workflow's graph is analysed
    once, not on every reconcile. The memo is not a field: equality, hashing and repr ignore it. What
    it holds is shared by every later caller, so it is immutable (tuples, read-only mappings)."""
    memo: dict[Any, Any] = spec.__dict__.setdefault("_dag_memo", {})
    try:
        value: _T = memo[key]
    except KeyError:
        value = memo[key] = compute()
    return value


@dataclass(frozen=True)
class Problem:
    """Why a workflow cannot run: ``reason`` is a CamelCase token (condition reason), ``message`` names
    the steps or types involved."""

    reason: str
    message: str


def validate(spec: WorkflowSpec, step_types: frozenset[str] | None) -> tuple[Problem, ...]:
    """Every problem of ``spec``, in a stable order. ``step_types`` None skips the step type check."""
    return _memo(spec, ("validate", step_types), lambda: _validate(spec, step_types))


def _validate(spec: WorkflowSpec, step_types: frozenset[str] | None) -> tuple[Problem, ...]:
    names = [s.name for s in spec.steps]
    known = set(names)
    problems: list[Problem] = []
    if not spec.steps:
        problems.append(Problem("NoSteps", "the workflow has no steps"))
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(Problem("DuplicateStepName",
                                f"step names used more than once: {', '.join(duplicates)}"))
    for step in spec.steps:
        for dep in step.depend_ons:
            if dep.name == step.name:
                problems.append(Problem("SelfDependency", f'step "{step.name}" depends on itself'))
            elif dep.name not in known:
                problems.append(Problem(
                    "UnknownDependOn", f'step "{step.name}" depends on "{dep.name}", which is not a step of '
                                       "this workflow"))
    if not problems:
        cycle = find_cycle(spec)
        if cycle:
            problems.append(Problem("Cycle", f"the dependOns form a cycle: {' -> '.join(cycle)}"))
    if step_types is not None:
        unknown = sorted({s.template.type for s in spec.steps} - step_types)
        for type_ in unknown:
            users = ", ".join(s.name for s in spec.steps if s.template.type == type_)
            problems.append(Problem(
                "UnknownStepType", f'step type "{type_}" (used by {users}) is not installed; known types: '
                                   f"{', '.join(sorted(step_types)) or 'none'}"))
    return tuple(problems)


def upstream(spec: WorkflowSpec) -> Mapping[str, tuple[str, ...]]:
    """Step name -> the names it depends on (spec order, no duplicates)."""
    return _memo(spec, "upstream", lambda: MappingProxyType({
        s.name: tuple(dict.fromkeys(d.name for d in s.depend_ons)) for s in spec.steps}))


def downstream(spec: WorkflowSpec) -> Mapping[str, tuple[str, ...]]:
    """Step name -> the names of the steps that depend on it (spec order)."""
    ups = upstream(spec)
    return _memo(spec, "downstream", lambda: MappingProxyType({
        s.name: tuple(t.name for t in spec.steps if s.name in ups[t.name]) for s in spec.steps}))


def find_cycle(spec: WorkflowSpec) -> tuple[str, ...] | None:
    """One cycle as ``(a, b, ..., a)`` (a depends on b ...), or None. Unknown names are ignored."""
    ups = upstream(spec)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(name: str) -> tuple[str, ...] | None:
        state[name] = 1
        path.append(name)
        for dep in ups.get(name, ()):
            if dep not in ups:
                continue
            if state.get(dep) == 1:
                return (*path[path.index(dep):], dep)
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[name] = 2
        return None

    for step in spec.steps:
        if step.name not in state and (found := visit(step.name)):
            return found
    return None


def topological_order(spec: WorkflowSpec) -> tuple[str, ...]:
    """Every step after the steps it depends on; among steps that could go next, the earlier in the
    spec goes first (Kahn's algorithm), so the order is a pure function of the spec. Needs a valid spec."""
    return _memo(spec, "order", lambda: _topological_order(spec))


def _topological_order(spec: WorkflowSpec) -> tuple[str, ...]:
    ups = upstream(spec)
    done: set[str] = set()
    order: list[str] = []
    while len(order) < len(spec.steps):
        ready = next(s.name for s in spec.steps if s.name not in done and all(d in done for d in ups[s.name]))
        done.add(ready)
        order.append(ready)
    return tuple(order)
