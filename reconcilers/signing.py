"""Callback body signatures: ``X-Workflow-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>``.

The key is the raw bytes of a Secret's data entry (what ``spec.callback.signingSecretRef`` names). A
receiver verifies with :func:`verify` (constant-time comparison) over the bytes it received, before
parsing them. Pure functions: no I/O, no logging (a key must never reach a log line).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

__all__ = ["SIGNATURE_HEADER", "SIGNATURE_PREFIX", "sign", "verify"]

SIGNATURE_HEADER: Final = "X-Workflow-Signature"
SIGNATURE_PREFIX: Final = "sha256="


def sign(key: bytes, body: bytes) -> str:
    """The header value for ``body`` signed with ``key``: ``sha256=`` + lowercase hex digest."""
    return SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(key: bytes, body: bytes, header: str | None) -> bool:
    """True if ``header`` is the signature of ``body`` with ``key`` (constant-time)."""
    if not header:
        return False
    return hmac.compare_digest(sign(key, body).encode(), header.strip().encode())
