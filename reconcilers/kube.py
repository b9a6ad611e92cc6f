"""Thin raw-JSON helpers over the official client: get, create, merge-patch (spec/metadata or status)
with a resourceVersion precondition, delete. Requests go through :func:`informers.rawhttp.request`
(orjson bytes on the client's own urllib3 pool; a throttling or gating ``ApiClient`` sees every call
through its ``call_raw``); bodies are parsed with orjson into plain dicts; never the generated models.

Optimistic concurrency: :meth:`Kube.patch` and :meth:`Kube.patch_status` put ``metadata.resourceVersion``
into the merge patch when one is given; the API server answers 409 Conflict when the object changed
since that version. :func:`merge_patch` computes the RFC 7386 patch turning one JSON value into
another (``null`` removes a key), so a status write sends only what changed and still clears fields the
new status drops.

Exception tree::

    KubeError
     ├── ApiError(status, reason, message)    the API server answered with a failure status
     │    ├── Conflict                        409, the resourceVersion precondition failed
     │    ├── AlreadyExists                   409 on create: the name is taken
     │    └── NotFound                        404
     └── TransportError                       no answer: connection refused/reset, read timeout

Every call carries a ``(connect, rpc_timeout)`` timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import urllib3
from kubernetes.client import ApiClient

from informers import Resource, rawhttp

__all__ = [
    "STEPS",
    "WORKFLOWS",
    "AlreadyExists",
    "ApiError",
    "Conflict",
    "Kube",
    "KubeError",
    "NotFound",
    "TransportError",
    "is_conflict",
    "is_gone",
    "merge_patch",
]

GROUP = "workflow.example.com"
VERSION = "v1alpha1"
WORKFLOWS = Resource(GROUP, VERSION, "workflows")
STEPS = Resource(GROUP, VERSION, "steps")

Obj = dict[str, Any]


class KubeError(Exception):
    """Base of the errors raised by :class:`Kube`."""


class ApiError(KubeError):
    def __init__(self, status: int, reason: str = "", message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class Conflict(ApiError):
    """409 with reason Conflict: the object changed since the resourceVersion we wrote against."""


class AlreadyExists(ApiError):
    """409 with reason AlreadyExists: a create found the name taken."""


class NotFound(ApiError):
    """404: the object (or its namespace) does not exist."""


class TransportError(KubeError):
    """No usable answer from the API server."""


def is_conflict(exc: BaseException) -> bool:
    """A lost optimistic-concurrency race: requeue at once (it is not a failure to back off from)."""
    return isinstance(exc, Conflict)


def is_gone(exc: BaseException) -> bool:
    """The object is gone: nothing left to write (a deletion won the race)."""
    return isinstance(exc, NotFound)


def _error(status: int, reason: str, data: bytes) -> ApiError:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        reason = str(body.get("reason") or reason)
        message = str(body.get("message") or "")
    else:
        message = data[:200].decode(errors="replace")
    if status == 404:
        return NotFound(status, reason, message)
    if status == 409:
        return AlreadyExists(status, reason, message) if reason == "AlreadyExists" else Conflict(
            status, reason, message)
    return ApiError(status, reason, message)


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: maps are diffed key by key
    (a key missing from ``new`` becomes ``None``), anything else is replaced whole. Returns ``{}`` for
    two equal maps."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return new
    patch: dict[str, Any] = {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            if isinstance(value, Mapping) and isinstance(old[key], Mapping):
                patch[key] = merge_patch(old[key], value)
            else:
                patch[key] = value
    return patch


class Kube:
    """Raw-JSON access to namespaced resources.

    Contract: stateless apart from its settings; thread-safe as far as the shared ``ApiClient`` is
    (its urllib3 pool is). Methods return the object the API server answered with, as a plain dict.
    """

    def __init__(self, api_client: ApiClient, *, timeout: float = 5.0, connect_timeout: float = 5.0) -> None:
        self.api_client = api_client
        self.timeout = timeout
        self.connect_timeout = connect_timeout

    # -- verbs ---------------------------------------------------------------------------------------

    def get(self, resource: Resource, namespace: str, name: str) -> Obj:
        return self._call("GET", f"{resource.path(namespace)}/{name}")

    def create(self, resource: Resource, namespace: str, body: Mapping[str, Any]) -> Obj:
        return self._call("POST", resource.path(namespace), body=body)

    def patch(self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any], *,
              resource_version: str | None = None) -> Obj:
        """Merge-patch the object (spec/metadata); with ``resource_version`` it is a precondition."""
        return self._patch(f"{resource.path(namespace)}/{name}", patch, resource_version)

    def patch_status(self, resource: Resource, namespace: str, name: str, status_patch: Mapping[str, Any],
                     *, resource_version: str | None = None) -> Obj:
        """Merge-patch ``status`` through the status subresource: ``{"status": status_patch}``."""
        return self._patch(f"{resource.path(namespace)}/{name}/status", {"status": status_patch},
                           resource_version)

    def delete(self, resource: Resource, namespace: str, name: str, *, uid: str | None = None) -> None:
        """Delete (background propagation); with ``uid`` only that incarnation of the name."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        self._call("DELETE", f"{resource.path(namespace)}/{name}", body=body)

    # -- plumbing ------------------------------------------------------------------------------------

    def _patch(self, path: str, patch: Mapping[str, Any], resource_version: str | None) -> Obj:
        body = dict(patch)
        if resource_version:
            meta = dict(body.get("metadata") or {})
            meta["resourceVersion"] = resource_version
            body["metadata"] = meta
        return self._call("PATCH", path, body=body, content_type="application/merge-patch+json")

    def _call(self, method: str, path: str, *, body: Mapping[str, Any] | None = None,
              content_type: str = "application/json") -> Obj:
        data = rawhttp.dumps(body) if body is not None else None
        try:
            resp = rawhttp.request(self.api_client, method, path, data, content_type=content_type,
                                   timeout=(self.connect_timeout, self.timeout))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if resp.status >= 300:
            raise _error(resp.status, resp.reason, resp.data)
        if not resp.data:
            return {}
        out: Obj = orjson.loads(resp.data)
        return out


def resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
