"""The step worker's transitions, as pure functions: what a run/rollback/sync outcome does to a step.

Each takes the status the worker read before the call and returns the status to write. An outcome
that arrives after the phase moved on (e.g. the workflow started rolling back while ``run`` was in
flight) is recorded (error, resource, attributes) but never moves the phase back; the rollback that
follows undoes whatever the call did.

Error kinds (``stepkit.errors``): ``RETRYABLE`` uses an attempt and retries after the retry period
while attempts are left; ``PERMANENT`` ends the attempts; ``IGNORABLE`` (throttled, not now) retries
after the period without using an attempt.

A sync that fails for good does NOT move the step to RollingBack (DESIGN.md §4c lets the worker do
that): it sets ``failure = Sync`` and the workflow reconciler starts the rollback, so the step is still
rolled back only after the steps that depend on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum

from reconcilers.state_machine.types import Failure, Phase, Resource, StepStatus, StepTemplate, frozen


class ErrorKind(StrEnum):
    RETRYABLE = "Retryable"
    PERMANENT = "Permanent"
    IGNORABLE = "Ignorable"


def _record(
    status: StepStatus, resource: Resource | None, attributes: Mapping[str, str] | None
) -> StepStatus:
    if resource is not None:
        status = status.with_(resource=resource)
    if attributes is not None:
        status = status.with_(attributes=frozen({**status.attributes, **attributes}))
    return status


def run_succeeded(status: StepStatus, now: datetime, *, resource: Resource | None = None,
                  attributes: Mapping[str, str] | None = None) -> StepStatus:
    status = _record(status, resource, attributes)
    if status.phase is not Phase.RUNNING:
        return status
    # The run is the latest look at the resource: the first sync is due a period after it.
    return status.with_(phase=Phase.SUCCESS, run_error="", latest_sync_at=now, retry_not_before=None)


def _not_before(now: datetime, delay: timedelta | None) -> datetime | None:
    return now + delay if delay else None


def run_failed(status: StepStatus, template: StepTemplate, kind: ErrorKind, error: str, now: datetime, *,
               delay: timedelta | None = None, resource: Resource | None = None,
               attributes: Mapping[str, str] | None = None) -> StepStatus:
    """``delay`` is the error's hint (``StepError.delay``): the next attempt waits at least that long,
    and at least the retry period."""
    status = _record(status, resource, attributes)
    status = status.with_(run_error=error, retry_not_before=_not_before(now, delay))
    if status.phase is not Phase.RUNNING:
        return status
    if kind is ErrorKind.IGNORABLE:
        return status.with_(latest_run_retry_at=now)
    count = status.run_retry_count + 1
    status = status.with_(run_retry_count=count, latest_run_retry_at=now)
    if kind is ErrorKind.PERMANENT or count >= template.retry_policy.run_retry_limit:
        return status.with_(phase=Phase.ROLLING_BACK, failure=Failure.RUN)
    return status


def rollback_succeeded(status: StepStatus, now: datetime) -> StepStatus:
    if status.phase is not Phase.ROLLING_BACK:
        return status
    return status.with_(phase=Phase.ROLLED_BACK, rollback_error="", retry_not_before=None)


def rollback_failed(status: StepStatus, template: StepTemplate, kind: ErrorKind, error: str,
                    now: datetime, *, delay: timedelta | None = None) -> StepStatus:
    status = status.with_(rollback_error=error, retry_not_before=_not_before(now, delay))
    if status.phase is not Phase.ROLLING_BACK:
        return status
    if kind is ErrorKind.IGNORABLE:
        return status.with_(latest_rollback_retry_at=now)
    count = status.rollback_retry_count + 1
    status = status.with_(rollback_retry_count=count, latest_rollback_retry_at=now)
    limit = template.retry_policy.rollback_retry_limit
    if kind is ErrorKind.PERMANENT or 0 < limit <= count:
        return status.with_(phase=Phase.FAILED)
    return status


def sync_succeeded(status: StepStatus, now: datetime, *, resource: Resource | None = None,
                   attributes: Mapping[str, str] | None = None) -> StepStatus:
    status = _record(status, resource, attributes)
    if status.phase is not Phase.SUCCESS:
        return status
    return status.with_(latest_sync_at=now, sync_error="", retry_not_before=None)


def sync_failed(status: StepStatus, kind: ErrorKind, error: str, now: datetime, *,
                delay: timedelta | None = None) -> StepStatus:
    status = status.with_(sync_error=error, retry_not_before=_not_before(now, delay))
    if status.phase is not Phase.SUCCESS:
        return status
    if kind is ErrorKind.PERMANENT:
        return status.with_(failure=Failure.SYNC, latest_sync_at=now)
    return status.with_(latest_sync_at=now)
