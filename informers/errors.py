"""Errors of the informers package, and the predicates that classify them.

::

    InformerError
    ├── ApiError              the API server answered with a failure status (HTTP status, or an
    │                         ERROR event inside a watch stream carrying a metav1.Status)
    ├── TransportError        no usable answer: connection refused/reset, TLS failure, read timeout
    │   └── WatchIdleTimeout  an open watch delivered no byte within the idle timeout (a stalled stream)
    └── VeryShortWatchError   a watch closed in under a second without a single event

Third-party errors (``kubernetes.client.ApiException``, ``urllib3`` errors, ``OSError``) are wrapped
with ``raise ... from`` where they are caught, in :mod:`informers.listwatch`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ApiError",
    "InformerError",
    "TransportError",
    "VeryShortWatchError",
    "WatchIdleTimeout",
    "is_expired",
    "is_retriable_watch_error",
    "is_too_large_resource_version",
]


class InformerError(Exception):
    """Base of every error raised by this package."""


class ApiError(InformerError):
    """A failure status from the API server."""

    def __init__(
        self, status: int, reason: str = "", message: str = "", details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.details: Mapping[str, Any] = details or {}

    @classmethod
    def from_status(cls, status: Mapping[str, Any], default_code: int = 500) -> ApiError:
        """Build from a ``metav1.Status`` dict (the body of an error response or an ERROR event)."""
        return cls(
            int(status.get("code") or default_code),
            str(status.get("reason") or ""),
            str(status.get("message") or ""),
            status.get("details") or {},
        )


class TransportError(InformerError):
    """The request got no usable answer (network, TLS, timeouts)."""


class WatchIdleTimeout(TransportError):
    """The watch stream was silent (no event, no bookmark, no byte) for longer than the idle timeout."""


class VeryShortWatchError(InformerError):
    """client-go's ``VeryShortWatchError``: usually a broken server or proxy; answered by a relist."""


def is_expired(exc: BaseException) -> bool:
    """410 Gone / reason Expired: the resourceVersion or continue token was compacted away; the only
    way forward is a new LIST (client-go ``isExpiredError``)."""
    return isinstance(exc, ApiError) and (exc.status == 410 or exc.reason in ("Expired", "Gone"))


def is_too_large_resource_version(exc: BaseException) -> bool:
    """The server has not caught up to the requested resourceVersion yet (an etcd restored from an
    older backup, or a lagging watch cache): client-go then relists with RV="" (a quorum read)."""
    if not isinstance(exc, ApiError) or exc.status != 504:
        return False
    causes = exc.details.get("causes") or ()
    return any(c.get("reason") == "ResourceVersionTooLarge" for c in causes) or (
        "too large resource version" in exc.message.lower()
    )


def is_retriable_watch_error(exc: BaseException) -> bool:
    """Starting a watch failed in a way that a later retry of the same watch may fix, without a relist:
    the server is not reachable (restarting) or throttles us (429). client-go
    ``isWatchErrorRetriable``."""
    if isinstance(exc, ApiError):
        return exc.status == 429
    return isinstance(exc, TransportError)
