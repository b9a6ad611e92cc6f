"""The built-in step types, registered through the ``stepkit.steps`` entry points of kube-workflow.

========================  =========================================================================
``empty``                 ``demo.EmptyStep`` — does nothing (the original's demo type)
``random``                ``demo.RandomStep`` — sleeps ``sleepSeconds``, sets a random resource id
``error``                 ``demo.ErrorStep`` — first run fails permanently, rollback always fails
``retryable_error``       ``demo.RetryableErrorStep`` — first run fails retryably, then succeeds
``sleep``                 ``sleep.SleepStep`` — sleeps ``seconds``
``fail``                  ``fail.FailStep`` — scriptable failures, every call written to a call log
``http``                  ``http.HttpStep`` — calls a URL for run, rollback and sync
========================  =========================================================================

Each module's docstring lists its parameters (all strings, as in the CRD's ``map[string]string``).
"""

from __future__ import annotations

from collections.abc import Mapping

from stepkit.builtin.demo import EmptyStep, ErrorStep, RandomStep, RetryableErrorStep
from stepkit.builtin.fail import FailStep
from stepkit.builtin.http import HttpStep
from stepkit.builtin.sleep import SleepStep

__all__ = [
    "BUILTIN_STEPS",
    "EmptyStep",
    "ErrorStep",
    "FailStep",
    "HttpStep",
    "RandomStep",
    "RetryableErrorStep",
    "SleepStep",
]

BUILTIN_STEPS: Mapping[str, type] = {
    "empty": EmptyStep,
    "random": RandomStep,
    "error": ErrorStep,
    "retryable_error": RetryableErrorStep,
    "sleep": SleepStep,
    "fail": FailStep,
    "http": HttpStep,
}
"""Name -> class, exactly as registered in setup.cfg (a test keeps the two in step)."""
