"""The pure workflow state machine: ``decide(workflow, steps, now, config) -> Decision``.

No I/O, no clock reads, no threads, no logging (import-linter enforces it): a snapshot and ``now``
in, a :class:`~reconcilers.state_machine.decision.Decision` out, the same Decision for the same
inputs. The reconcilers carry decisions out.

Modules, one concept each:

- :mod:`.types`     frozen values for workflows and steps, with ``from_dict``/``to_status`` codecs;
- :mod:`.dag`       validation of what the CRD cannot check, topological order;
- :mod:`.decide`    the workflow reconciler's logic (start reading here);
- :mod:`.decision`  what ``decide`` returns, and in which order to apply it;
- :mod:`.schedule`  which call (run/rollback/sync, attempt) a step is due for, and when;
- :mod:`.retry`     retry waits from tenacity's wait strategies, used as pure functions;
- :mod:`.outcomes`  the step worker's transitions (what a call's outcome does to a step);
- :mod:`.admission` Pending -> Running under maxRunningCount, FIFO or FAIR;
- :mod:`.naming`    Step object names, labels and bodies;
- :mod:`.config`    the engine's frozen configuration.

Who writes which step transition (DESIGN.md §4c): the workflow reconciler (``decide``) writes
Pending -> Running, Running/Success -> RollingBack during a rollback or deletion, and Pending ->
RollBacked; the step worker (``outcomes``) writes Running -> Success / Running (retry) / RollingBack
(failed for good) and RollingBack -> RollBacked / Failed. A sync that fails for good only marks the
step (``failure: Sync``); ``decide`` then rolls it back in dependency order.
"""

from reconcilers.state_machine.admission import Candidate, admit, start
from reconcilers.state_machine.config import EngineConfig, QueueStrategy
from reconcilers.state_machine.decide import decide
from reconcilers.state_machine.decision import (
    CallbackEvent,
    CallbackType,
    CallKind,
    Decision,
    FinalizerChange,
    Invocation,
    K8sEvent,
    StepCreate,
    StepStatusChange,
)
from reconcilers.state_machine.schedule import Call, is_due, next_call
from reconcilers.state_machine.types import Phase, Step, StepStatus, Workflow, WorkflowStatus

__all__ = [
    "Call",
    "CallKind",
    "CallbackEvent",
    "CallbackType",
    "Candidate",
    "Decision",
    "EngineConfig",
    "FinalizerChange",
    "Invocation",
    "K8sEvent",
    "Phase",
    "QueueStrategy",
    "Step",
    "StepCreate",
    "StepStatus",
    "StepStatusChange",
    "Workflow",
    "WorkflowStatus",
    "admit",
    "decide",
    "is_due",
    "next_call",
    "start",
]
