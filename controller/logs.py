"""Structured logging: JSON lines in a cluster, readable console lines locally (structlog).

:func:`configure_logging` is called once by the CLI before anything logs. Every package logs with
``structlog.get_logger(...)`` and a constant message plus key/values (STYLE rule 9). Standard-library
``logging`` records (urllib3's "Connection pool is full", the kubernetes client) are rendered by the
same processors, so every line of the process has one format.

**Context on every line.** Values bound with ``structlog.contextvars`` appear on every line logged in
the same thread (or ``contextvars`` context) until unbound. A reconciler binds the reconcile id and
the object once, at the top of a reconcile::

    with structlog.contextvars.bound_contextvars(
        reconcile_id=new_reconcile_id(), controller="workflow", namespace=ns, workflow=name
    ):
        ...                                   # every log line in here carries those keys
        with structlog.contextvars.bound_contextvars(step=step_name):
            ...                               # ... and these lines also the step

``bound_contextvars`` restores the previous values on exit, so nested binds and exceptions are safe,
and a worker thread's next reconcile never inherits the previous one's keys. Threads started inside a
reconcile do not inherit the context (``contextvars`` are per thread); bind again there, or run the
callable with ``contextvars.copy_context().run``.

JSON lines look like ``{"event": "step finished", "level": "info", "timestamp": "2026-11-29T22:13:43.123456Z",
"logger": "reconcilers.step", "reconcile_id": "…", "workflow": "example", "step": "step1", ...}``.
"""

from __future__ import annotations

import logging
import sys
import uuid
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from controller.config import LogFormat

__all__ = ["LEVELS", "configure_logging", "new_reconcile_id"]

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def new_reconcile_id() -> str:
    """A fresh id for one reconcile (controller-runtime's ``reconcileID`` is a UUID too)."""
    return str(uuid.uuid4())


def _orjson_dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


class _NamedWriteLogger(structlog.WriteLogger):
    """A ``WriteLogger`` that remembers the name given to ``structlog.get_logger(name)``."""

    def __init__(self, file: TextIO, name: str | None) -> None:
        super().__init__(file)
        self.name = name


def _add_logger_name(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """``logger``: the name given to ``get_logger`` (ours) or the stdlib record's logger name."""
    if "logger" not in event_dict:
        record = event_dict.get("_record")
        name = record.name if record is not None else getattr(logger, "name", None)
        if name:
            event_dict["logger"] = name
    return event_dict


def configure_logging(
    log_format: LogFormat | str = LogFormat.CONSOLE, level: str = "info", *, stream: TextIO | None = None
) -> None:
    """Configure structlog and the standard ``logging`` root for the whole process.

    ``level``: debug, info, warning or error (lines below it are dropped before any formatting).
    ``stream``: where lines go (default stderr). Safe to call again (tests); the last call wins.
    """
    fmt = LogFormat(log_format)
    numeric = LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r} (expected one of: {', '.join(LEVELS)})")
    out = stream if stream is not None else sys.stderr

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="%Y-%m-%dT%H:%M:%S.%fZ", utc=True),
        _add_logger_name,
    ]
    renderer: Processor
    if fmt is LogFormat.JSON:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        # Tracebacks as structured data, without frame locals (they may hold tokens or payloads).
        exceptions: list[Processor] = [structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty() if hasattr(out, "isatty") else False)
        exceptions = []

    # structlog's own loggers: filter by level first (cheap), then the shared chain, then render.
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            *exceptions,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *args: _NamedWriteLogger(out, str(args[0]) if args else None),
        cache_logger_on_first_use=False,
    )

    # Standard-library records: same chain through a ProcessorFormatter on a root handler.
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *exceptions, renderer],
    ))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_kube_workflow", False):
            root.removeHandler(old)
    handler._kube_workflow = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
