"""What a step reports back: its ``status.resource`` and its attributes.

A step never writes to the Kubernetes API. ``run`` / ``rollback`` / ``sync`` *return* a ``StepResult``
(or ``None`` for "nothing to report") and the engine writes it into the Step's status in the same
status update that records the outcome.

Merge rules (applied by the engine, implemented here so every caller agrees):

- ``StepResult.attributes`` are merged key by key into the step's ``status.attributes`` and from there
  into the workflow's ``status.attributes`` (a later step in topological order wins a conflict).
- ``StepResult.resource`` updates ``status.resource`` with ``ResourceStatus.updated_with``: fields that
  are set (not ``None``) replace the current value, ``None`` keeps it, attributes are merged key by key.

All values are strings: the CRD declares these maps as ``map[string]string``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["ResourceStatus", "StepResult", "frozen_str_map"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


def frozen_str_map(value: Mapping[str, str] | None, what: str) -> Mapping[str, str]:
    """A read-only copy of ``value`` after checking that keys and values are strings.

    Raises ``TypeError`` naming ``what`` and the offending key: a step that returns ``{"port": 80}``
    has a bug the author should see at once, not a silently stringified value.
    """
    if not value:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping of str to str, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(
                f"{what} must map str to str; {key!r} -> {item!r} ({type(item).__name__}) is not allowed"
            )
    return MappingProxyType(dict(value))


@dataclass(frozen=True, slots=True)
class ResourceStatus:
    """``status.resource`` of a Step: what the step created outside Kubernetes.

    ``status`` is free text owned by the step (dependents can wait on it with ``dependOns[].resourceStatus``),
    ``id`` / ``name`` / ``address`` identify the resource; ``attributes`` is step-defined.
    """

    status: str | None = None
    id: str | None = None
    name: str | None = None
    address: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("status", "id", "name", "address"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"ResourceStatus.{name} must be a str or None, got {type(value).__name__}")
        object.__setattr__(self, "attributes", frozen_str_map(self.attributes, "ResourceStatus.attributes"))

    def updated_with(self, other: ResourceStatus | None) -> ResourceStatus:
        """This status with ``other``'s set fields applied (``None`` keeps ours, attributes merge)."""
        if other is None:
            return self
        return ResourceStatus(
            status=other.status if other.status is not None else self.status,
            id=other.id if other.id is not None else self.id,
            name=other.name if other.name is not None else self.name,
            address=other.address if other.address is not None else self.address,
            attributes={**self.attributes, **other.attributes},
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``status.resource`` JSON object (unset fields omitted)."""
        out: dict[str, Any] = {}
        for name in ("status", "id", "name", "address"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ResourceStatus:
        """Parse ``status.resource``; unknown keys are ignored, non-string scalars are stringified."""
        if not data:
            return cls()

        def text(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        raw_attrs = data.get("attributes") or {}
        attrs = {str(k): str(v) for k, v in raw_attrs.items()} if isinstance(raw_attrs, Mapping) else {}
        return cls(
            status=text("status"), id=text("id"), name=text("name"), address=text("address"), attributes=attrs
        )


@dataclass(frozen=True, slots=True)
class StepResult:
    """The outputs of one ``run`` / ``rollback`` / ``sync`` call (see the module docstring for merging)."""

    attributes: Mapping[str, str] = field(default_factory=dict)
    resource: ResourceStatus | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", frozen_str_map(self.attributes, "StepResult.attributes"))
        resource: object = self.resource  # checked at run time: plugins are not always type-checked
        if resource is not None and not isinstance(resource, ResourceStatus):
            kind = type(resource).__name__
            raise TypeError(f"StepResult.resource must be a ResourceStatus, got {kind}")
