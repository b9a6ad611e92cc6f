"""``fail``: a step whose failures are scripted by its parameters, and which logs every call.

Used by the engine's tests and the demos: the call log shows exactly which calls happened, with which
attempt number and idempotency key, so a test can assert "rollback ran once, after run" or "a crash
repeated the run with the same key".

Parameters (strings; counts are integers >= 0 or ``"always"``):

- ``failRuns`` — run attempts ``1..N`` fail (``ctx.attempt <= N``). Default ``"0"``, or ``"always"``
  when ``runError`` is given without ``failRuns``.
- ``runError`` — how those runs fail: ``"retryable"`` (default) or ``"permanent"``.
- ``failRollbacks`` / ``rollbackError`` — the same for rollback attempts.
- ``failSyncs`` / ``syncError`` — the same for sync calls.
- ``ignorable`` (alias ``ignorableRuns``), ``ignorableRollbacks``, ``ignorableSyncs`` — the first N
  calls in that direction raise ``IgnorableError`` before anything else. Ignorable errors do not advance
  ``ctx.attempt``, so these are counted from the call log (entries with the same idempotency key), or
  in process memory when there is no call log.
- ``delaySeconds`` — the delay hint on retryable and ignorable errors (default: none).
- ``sleepSeconds`` — every call sleeps this long first (default ``"0"``; must fit the deadline).
- ``attributes`` — JSON object of strings returned as step attributes by a successful run.
- ``resourceStatus`` — ``resource.status`` set by a successful run (default unset);
  ``syncResourceStatus`` — ``resource.status`` set by a successful sync.
- ``callLog`` — path of the call log; default: the ``STEPKIT_CALL_LOG`` environment variable; neither
  set = no log.

A successful run sets ``resource.id`` to ``fail-<first 12 characters of the run idempotency key>``
(deterministic, so a repeated run reports the same id).

Call log format: one JSON object per line (``CallRecord`` fields, camelCase), appended with
``O_APPEND`` under an exclusive ``flock`` so several processes can share one file. ``read_call_log``
reads it back.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepkit.builtin import _params
from stepkit.builtin._sleep import Sleeper, sleep_within_deadline
from stepkit.context import Direction, StepContext
from stepkit.errors import IgnorableError, PermanentError, RetryableError, StepError
from stepkit.outputs import ResourceStatus, StepResult

__all__ = ["CALL_LOG_ENV", "CallRecord", "FailStep", "append_call_log", "read_call_log"]

CALL_LOG_ENV = "STEPKIT_CALL_LOG"

_ERROR_KINDS = ("retryable", "permanent")
_PREFIX: Mapping[Direction, str] = {"run": "Runs", "rollback": "Rollbacks", "sync": "Syncs"}


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call of a ``fail`` step. ``outcome`` is ``ok``, ``retryable``, ``permanent`` or
    ``ignorable``; ``ts`` is wall-clock seconds (``time.time()``), for humans only."""

    ts: float
    pid: int
    workflow: str
    namespace: str
    workflow_uid: str
    step: str
    step_type: str
    direction: str
    attempt: int
    idempotency_key: str
    outcome: str

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "pid": self.pid,
            "workflow": self.workflow,
            "namespace": self.namespace,
            "workflowUid": self.workflow_uid,
            "step": self.step,
            "stepType": self.step_type,
            "direction": self.direction,
            "attempt": self.attempt,
            "idempotencyKey": self.idempotency_key,
            "outcome": self.outcome,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallRecord:
        return cls(
            ts=float(data["ts"]),
            pid=int(data["pid"]),
            workflow=str(data["workflow"]),
            namespace=str(data["namespace"]),
            workflow_uid=str(data["workflowUid"]),
            step=str(data["step"]),
            step_type=str(data["stepType"]),
            direction=str(data["direction"]),
            attempt=int(data["attempt"]),
            idempotency_key=str(data["idempotencyKey"]),
            outcome=str(data["outcome"]),
        )


def append_call_log(path: str | os.PathLike[str], record: CallRecord) -> None:
    """Append one line atomically with respect to other writers using this function."""
    line = (json.dumps(record.to_json(), separators=(",", ":"), sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)  # also releases the lock


def read_call_log(path: str | os.PathLike[str]) -> list[CallRecord]:
    """Every record in ``path``, oldest first; ``[]`` if the file does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return []
    with os.fdopen(fd, "rb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        data = handle.read()
    return [CallRecord.from_json(json.loads(line)) for line in data.splitlines() if line.strip()]


class FailStep:
    """``fail``; see the module docstring. ``sleep`` is injectable for tests."""

    def __init__(self, sleep: Sleeper = time.sleep) -> None:
        self._sleep = sleep
        self._lock = threading.Lock()
        self._ignorable_seen: dict[str, int] = {}  # idempotency key -> ignorable errors raised (no log)

    def run(self, ctx: StepContext) -> StepResult | None:
        def success() -> StepResult:
            status = _params.text(ctx.parameters, "resourceStatus")
            resource = ResourceStatus(id=f"fail-{ctx.idempotency_key[:12]}", status=status)
            return StepResult(attributes=_params.str_map(ctx.parameters, "attributes"), resource=resource)

        return self._call(ctx, success)

    def rollback(self, ctx: StepContext) -> StepResult | None:
        return self._call(ctx, lambda: None)

    def sync(self, ctx: StepContext) -> StepResult | None:
        def success() -> StepResult | None:
            status = _params.text(ctx.parameters, "syncResourceStatus")
            return None if status is None else StepResult(resource=ResourceStatus(status=status))

        return self._call(ctx, success)

    def _call(self, ctx: StepContext, success: Callable[[], StepResult | None]) -> StepResult | None:
        log_path = _params.text(ctx.parameters, "callLog") or os.environ.get(CALL_LOG_ENV) or None
        result: StepResult | None = None
        error: StepError | None
        try:
            error = self._scripted_error(ctx, log_path)
            if error is None:
                sleep_within_deadline(ctx, _params.seconds(ctx.parameters, "sleepSeconds"), self._sleep)
                result = success()
        except StepError as exc:  # a bad parameter or the deadline: logged like a scripted error
            error = exc
        outcome = "ok" if error is None else _outcome(error)
        if log_path is not None:
            append_call_log(log_path, _record(ctx, outcome))
        ctx.log.debug("fail step called", outcome=outcome, idempotency_key=ctx.idempotency_key)
        if error is not None:
            raise error
        return result

    def _scripted_error(self, ctx: StepContext, log_path: str | None) -> StepError | None:
        params, direction = ctx.parameters, ctx.direction
        suffix = _PREFIX[direction]
        delay = _params.seconds(params, "delaySeconds") if _params.text(params, "delaySeconds") else None

        ignorable = _params.count(params, f"ignorable{suffix}")
        if direction == "run" and _params.text(params, "ignorableRuns") is None:
            ignorable = _params.count(params, "ignorable")
        if ignorable and (ignorable == _params.ALWAYS or self._ignorable_count(ctx, log_path) < ignorable):
            if log_path is None:
                with self._lock:
                    key = ctx.idempotency_key
                    self._ignorable_seen[key] = self._ignorable_seen.get(key, 0) + 1
            return IgnorableError(
                f"fail step: scripted ignorable {direction} error", delay=delay, code="Scripted"
            )

        kind_key, count_key = f"{direction}Error", f"fail{suffix}"
        kind = _params.choice(params, kind_key, _ERROR_KINDS, "retryable")
        default_count = _params.ALWAYS if _params.text(params, kind_key) is not None else 0
        fail_count = _params.count(params, count_key, default_count)
        if fail_count == _params.ALWAYS or ctx.attempt <= fail_count:
            message = f"fail step: scripted {kind} {direction} error (attempt {ctx.attempt})"
            if kind == "permanent":
                return PermanentError(message, code="Scripted")
            return RetryableError(message, delay=delay, code="Scripted")
        return None

    def _ignorable_count(self, ctx: StepContext, log_path: str | None) -> int:
        if log_path is None:
            with self._lock:
                return self._ignorable_seen.get(ctx.idempotency_key, 0)
        return sum(
            1
            for rec in read_call_log(Path(log_path))
            if rec.idempotency_key == ctx.idempotency_key and rec.outcome == "ignorable"
        )


def _outcome(error: StepError) -> str:
    if error.ignorable:
        return "ignorable"
    return "retryable" if error.retryable else "permanent"


def _record(ctx: StepContext, outcome: str) -> CallRecord:
    return CallRecord(
        ts=time.time(),
        pid=os.getpid(),
        workflow=ctx.workflow.name,
        namespace=ctx.workflow.namespace,
        workflow_uid=ctx.workflow.uid,
        step=ctx.step_name,
        step_type=ctx.step_type,
        direction=ctx.direction,
        attempt=ctx.attempt,
        idempotency_key=ctx.idempotency_key,
        outcome=outcome,
    )
