"""The engine's frozen configuration, built once by ``controller.config`` and passed to ``decide``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class QueueStrategy(StrEnum):
    #: Oldest creationTimestamp first, across all queues.
    FIFO = "FIFO"
    #: The queue with the fewest active workflows first (ties: least recently admitted), oldest within it.
    FAIR = "FAIR"


@dataclass(frozen=True)
class EngineConfig:
    #: Step types a plugin is installed for; a workflow using another type fails with UnknownStepType.
    #: None (the default) skips the check (unit tests, tools that do not know the plugins).
    step_types: frozenset[str] | None = None
    #: Admission order (``controllerConfig.queue.strategy``); default FIFO as in the original.
    queue_strategy: QueueStrategy = QueueStrategy.FIFO
    #: At most this many workflows Running or RollingBack at once (finished ones never count); >= 1.
    max_running_count: int = 100
    #: Aggregated workflow errors (runError, rollbackError, syncError) are cut to this many characters.
    max_error_length: int = 4096
    #: Post a Normal Event per step start and success (``controllerConfig.events.steps``); off by default:
    #: two Event writes per step would be a third of the engine's API writes.
    step_events: bool = False
