"""The step error tree: how a step tells the engine whether to try again.

::

    Exception
     └── StepError(message, *, retryable, ignorable=False, code=None, delay=None, result=None)
          ├── PermanentError   retryable=False  -> no more attempts: a failed run rolls the step back,
          │                                        a failed rollback marks the step Failed
          ├── RetryableError   retryable=True   -> another attempt after the retry period (or ``delay``),
          │                                        while attempts are left
          └── IgnorableError   retryable=True,  -> throttled / not now: retried later WITHOUT consuming
                               ignorable=True      an attempt (e.g. a 429 from a cloud API)

    any other exception  -> ``classify(exc)`` turns it into a RetryableError (code = the exception type)

The two flags are the original's ``StepError`` flags. ``code`` is a short machine-readable reason
(``"HTTP503"``, ``"Timeout"``) that the engine copies next to the message into the step's
``runError`` / ``rollbackError`` / ``syncError``. ``delay`` is a hint in seconds: the engine waits at
least this long before the next attempt (it may wait longer; the retry period still applies as a floor
unless the engine documents otherwise). ``result`` is an optional ``StepResult`` of what the call did
before failing (e.g. the id of a half-created resource): the engine records it like a normal result so
the rollback that follows can find what to undo.

Contract: a step raises these from ``run`` / ``rollback`` / ``sync``; the engine never inspects the
message text. Wrap third-party exceptions with ``raise RetryableError(...) from exc`` so the cause is
kept in logs.
"""

from __future__ import annotations

import math

from stepkit.outputs import StepResult

__all__ = ["IgnorableError", "PermanentError", "RetryableError", "StepError", "classify"]


class StepError(Exception):
    """Base of all step errors. Prefer the three subclasses; this base exists for code that decides
    both flags at run time (``StepError(msg, retryable=resp.retry_ok)``).

    Attributes are read-only by convention: ``message``, ``retryable``, ``ignorable`` (implies
    ``retryable``), ``code`` (``None`` or a short token), ``delay`` (``None`` or seconds >= 0) and
    ``result`` (``None`` or the partial outputs to record despite the failure).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        ignorable: bool = False,
        code: str | None = None,
        delay: float | None = None,
        result: StepResult | None = None,
    ) -> None:
        if ignorable and not retryable:
            raise ValueError("an ignorable StepError must also be retryable")
        if delay is not None and (not math.isfinite(delay) or delay < 0):
            raise ValueError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.ignorable = ignorable
        self.code = code
        self.delay = delay
        self.result = result

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, retryable={self.retryable}, "
            f"ignorable={self.ignorable}, code={self.code!r}, delay={self.delay!r})"
        )


class PermanentError(StepError):
    """Trying again will not help (bad parameters, 4xx, the resource is gone for good)."""

    def __init__(self, message: str, *, code: str | None = None, result: StepResult | None = None) -> None:
        super().__init__(message, retryable=False, code=code, result=result)


class RetryableError(StepError):
    """A transient failure: try again later. ``delay`` is an optional hint in seconds."""

    def __init__(
        self,
        message: str,
        *,
        delay: float | None = None,
        code: str | None = None,
        result: StepResult | None = None,
    ) -> None:
        super().__init__(message, retryable=True, code=code, delay=delay, result=result)


class IgnorableError(StepError):
    """Not now (throttled, quota window): retried later without consuming an attempt.

    The engine still backs off (``delay`` or its own rate limiter), so an ignorable error cannot turn
    into a hot loop, but it never exhausts ``runRetryLimit`` / ``rollbackRetryLimit``.
    """

    def __init__(
        self,
        message: str,
        *,
        delay: float | None = None,
        code: str | None = None,
        result: StepResult | None = None,
    ) -> None:
        super().__init__(message, retryable=True, ignorable=True, code=code, delay=delay, result=result)


def classify(exc: BaseException) -> StepError:
    """Map any exception raised by a step to a ``StepError``.

    A ``StepError`` is returned unchanged. Anything else is a ``RetryableError`` whose code is the
    exception's type name and whose ``__cause__`` is the original (the issue's rule: "any other
    exception counts as retryable" — an unexpected crash may be a transient bug in a dependency, and the
    retry limit bounds the cost). ``KeyboardInterrupt`` / ``SystemExit`` are not step failures: the
    engine must let them propagate and never call this with them.
    """
    if isinstance(exc, StepError):
        return exc
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        raise TypeError(f"{type(exc).__name__} is not a step failure; let it propagate") from exc
    text = str(exc) or type(exc).__name__
    err = RetryableError(text, code=type(exc).__name__)
    err.__cause__ = exc
    return err
