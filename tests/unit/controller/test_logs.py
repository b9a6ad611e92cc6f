"""controller.logs: JSON lines carry the contextvars bound for a reconcile; stdlib logging joins in."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator

import orjson
import pytest
import structlog

from controller.logs import configure_logging, new_reconcile_id


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_kube_workflow", False):
            root.removeHandler(h)
    root.setLevel(logging.WARNING)


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in buf.getvalue().splitlines()]


def test_json_lines_carry_the_reconcile_context() -> None:
    buf = io.StringIO()
    configure_logging("json", "info", stream=buf)
    log = structlog.get_logger("reconcilers.workflow")
    rid = new_reconcile_id()
    with structlog.contextvars.bound_contextvars(reconcile_id=rid, namespace="ns", workflow="example"):
        log.info("reconcile started")
        with structlog.contextvars.bound_contextvars(step="step1"):
            log.info("step finished", attempt=2)
    log.info("idle")
    first, second, third = lines(buf)
    assert first["event"] == "reconcile started"
    assert first["reconcile_id"] == rid
    assert first["workflow"] == "example"
    assert first["logger"] == "reconcilers.workflow"
    assert first["level"] == "info"
    assert str(first["timestamp"]).endswith("Z")
    assert second["step"] == "step1"
    assert second["attempt"] == 2
    assert second["reconcile_id"] == rid
    assert "reconcile_id" not in third                 # unbound on leaving the block
    assert "step" not in third


def test_context_does_not_leak_between_threads() -> None:
    buf = io.StringIO()
    configure_logging("json", "info", stream=buf)
    log = structlog.get_logger("w")

    def other() -> None:
        log.info("from another thread")

    with structlog.contextvars.bound_contextvars(workflow="mine"):
        t = threading.Thread(target=other)
        t.start()
        t.join()
    (line,) = lines(buf)
    assert "workflow" not in line


def test_level_filters_and_stdlib_records_use_the_same_format() -> None:
    buf = io.StringIO()
    configure_logging("json", "warning", stream=buf)
    structlog.get_logger("x").info("dropped")
    with structlog.contextvars.bound_contextvars(reconcile_id="r-1"):
        logging.getLogger("urllib3.connectionpool").warning("Connection pool is full, discarding: %s", "h")
    (line,) = lines(buf)
    assert line["event"] == "Connection pool is full, discarding: h"
    assert line["logger"] == "urllib3.connectionpool"
    assert line["level"] == "warning"
    assert line["reconcile_id"] == "r-1"


def test_exceptions_are_structured_without_locals() -> None:
    buf = io.StringIO()
    configure_logging("json", "info", stream=buf)
    secret = "token-123"  # noqa: F841  (a local that must not be logged)
    try:
        raise ValueError("bad")
    except ValueError:
        structlog.get_logger("x").exception("failed")
    (line,) = lines(buf)
    assert "token-123" not in buf.getvalue()
    exc = line["exception"]
    assert isinstance(exc, list)
    assert exc[0]["exc_type"] == "ValueError"


def test_console_format_is_one_readable_line() -> None:
    buf = io.StringIO()
    configure_logging("console", "debug", stream=buf)
    with structlog.contextvars.bound_contextvars(workflow="example"):
        structlog.get_logger("x").debug("hello", step="s1")
    text = buf.getvalue()
    assert text.count("\n") == 1
    assert "hello" in text
    assert "workflow=example" in text
    assert "step=s1" in text


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("json", "loud")
