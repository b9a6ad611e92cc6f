"""End to end: a successful workflow's callbacks reach a local HTTP receiver once per event, through the
engine's own CallbackSender (delivery details are tested with the sender itself)."""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from tests.integration.engine_fixtures import (
    crds,
    create,
    get,
    running_engine,
    settings,
    step,
    wait_for,
    wait_phase,
    workflow,
)

__all__ = ["crds"]


class _Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    server: _Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        with self.server.lock:
            self.server.received.append(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_successful_workflow_calls_back_once_per_event(
        api_client: client.ApiClient, crds: client.CustomObjectsApi, namespace: str,
        receiver: _Receiver) -> None:
    steps = [step("one", "empty"), step("two", "empty", "one")]
    with running_engine(api_client, settings(namespace)):
        create(crds, namespace, workflow("called", steps, callback={"url": receiver.url}))
        wait_phase(crds, namespace, "called", "Success")

        def delivered() -> bool:
            wf = get(crds, namespace, "called")
            return wf is not None and not ((wf["status"].get("callbacks") or {}).get("pending"))

        wait_for(delivered, message="the outbox emptied")
    with receiver.lock:
        received = list(receiver.received)
    ids = collections.Counter(e["id"] for e in received)
    assert all(n == 1 for n in ids.values()), f"duplicates: {ids}"
    types = collections.Counter((e["type"], e.get("step")) for e in received)
    assert types == {("WorkflowStarted", None): 1, ("StepSucceeded", "one"): 1, ("StepSucceeded", "two"): 1,
                     ("WorkflowSucceeded", None): 1}, types
    assert received[0]["type"] == "WorkflowStarted"
    assert received[-1]["type"] == "WorkflowSucceeded"
