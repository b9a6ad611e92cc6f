"""Which plugin call a step is due for, and when: shared by ``decide`` and by the step worker, which
checks before calling that the call it dequeued is still the one due (the step may have moved on).

A Running step is due for ``run`` (attempt = failed attempts + 1); a RollingBack step for ``rollback``;
a Success step with ``syncPeriodSeconds > 0`` (and no sync failure) for ``sync`` (attempt always 1:
sync failures are not counted). The first attempt is
due at once; after a failed attempt the next is due ``retry_wait`` after ``latest*RetryAt``; a sync is
due a period after ``latestSyncAt``. Never before ``retryNotBefore`` (a step error's delay hint).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from reconcilers.state_machine.decision import CallKind
from reconcilers.state_machine.retry import retry_wait
from reconcilers.state_machine.types import Phase, StepStatus, StepTemplate


@dataclass(frozen=True)
class Call:
    kind: CallKind
    attempt: int
    due_at: datetime | None  # None: due now


def next_call(template: StepTemplate, status: StepStatus, *, seed: str = "") -> Call | None:
    policy = template.retry_policy
    if status.phase is Phase.RUNNING:
        return _retry(CallKind.RUN, status.run_retry_count, status.latest_run_retry_at,
                      policy.run_retry_period_seconds, template, status, seed)
    if status.phase is Phase.ROLLING_BACK:
        return _retry(CallKind.ROLLBACK, status.rollback_retry_count, status.latest_rollback_retry_at,
                      policy.rollback_retry_period_seconds, template, status, seed)
    if status.phase is Phase.SUCCESS and template.sync_period_seconds > 0 and status.failure is None:
        last = status.latest_sync_at
        period = timedelta(seconds=template.sync_period_seconds)
        return Call(CallKind.SYNC, 1, _later(last + period if last else None, status.retry_not_before))
    return None


def is_due(call: Call, now: datetime) -> bool:
    return call.due_at is None or call.due_at <= now


def _retry(kind: CallKind, failed: int, latest: datetime | None, period: int, template: StepTemplate,
           status: StepStatus, seed: str) -> Call:
    if latest is None:
        return Call(kind, failed + 1, _later(None, status.retry_not_before))
    policy = template.retry_policy
    wait = retry_wait(period, failed, backoff=policy.backoff, jitter=policy.jitter, seed=f"{seed}/{kind}",
                      max_period_seconds=policy.max_retry_period_seconds)
    return Call(kind, failed + 1, _later(latest + wait, status.retry_not_before))


def _later(due: datetime | None, not_before: datetime | None) -> datetime | None:
    if due is None or not_before is None:
        return due or not_before
    return max(due, not_before)
