"""CallbackSender against the real kube-apiserver and a local HTTP receiver.

Workflows are created with the CRDs of deploy/crds/ and their ``status.callbacks.pending`` is written by
hand through the status subresource (what ``decide`` writes; no engine needed). The sender reads them
through a real informer (like the engine) and writes its removals to the API.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from tenacity import wait_exponential

from informers import Resource, SharedIndexInformer, SharedInformerFactory
from informers.testing import wait_until
from kubetestenv import REPO_ROOT
from kubetestenv.crds import install_crds
from reconcilers.callbacks import CallbackSender
from reconcilers.events import EventRecorder
from reconcilers.signing import SIGNATURE_HEADER, verify
from tests.unit.reconcilers.test_callbacks import Receiver

GROUP, VERSION, PLURAL = "workflow.example.com", "v1alpha1", "workflows"
CRD_DIR = REPO_ROOT / "deploy" / "crds"
WORKFLOW_CRD = "workflows.workflow.example.com"
SIGNING_SECRET_REF = {
    "description": "A key of a Secret in the workflow's namespace; when set, each callback carries "
                   "X-Workflow-Signature: sha256=<hex HMAC-SHA256 of the body> made with it.",
    "type": "object",
    "required": ["name", "key"],
    "properties": {
        "name": {"description": "A Secret name (a DNS subdomain).", "type": "string", "minLength": 1,
                 "maxLength": 253,
                 "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"},
        "key": {"description": "A key of the Secret's data.", "type": "string", "minLength": 1,
                "maxLength": 253, "pattern": r"^[-._a-zA-Z0-9]+$"}},
}


def _callback_schema(crd: dict[str, Any]) -> dict[str, Any]:
    version = next(v for v in crd["spec"]["versions"] if v["name"] == VERSION)
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    schema: dict[str, Any] = spec["properties"]["callback"]
    return schema


def _shipped_workflow_crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load((CRD_DIR / "workflow.example.com_workflows.yaml").read_text())
    return crd


@pytest.fixture(scope="module")
def crds(api_client: client.ApiClient) -> client.CustomObjectsApi:
    install_crds(api_client)
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def informer(crds: client.CustomObjectsApi, api_client: client.ApiClient,
             namespace: str) -> Iterator[SharedIndexInformer]:
    factory = SharedInformerFactory(api_client, namespace=namespace)
    inf = factory.informer_for(Resource(GROUP, VERSION, PLURAL))
    factory.start()
    assert all(factory.wait_for_cache_sync(30).values())
    yield inf
    factory.shutdown()


@pytest.fixture
def recorder(api_client: client.ApiClient) -> Iterator[EventRecorder]:
    rec = EventRecorder(api_client)
    rec.start()
    yield rec
    rec.stop()


@pytest.fixture
def sender(api_client: client.ApiClient, informer: SharedIndexInformer,
           recorder: EventRecorder) -> Iterator[CallbackSender]:
    s = CallbackSender(api_client, get_workflow=informer.indexer.get_by_key, connect_timeout=2.0,
                       read_timeout=5.0, event_recorder=recorder,
                       backoff=wait_exponential(multiplier=0.1, max=1.0))  # fast retries for the test
    s.start()
    yield s
    s.stop()


def _entry(uid: str, type_: str, step: str | None = None) -> dict[str, Any]:
    event_id = f"{uid}:{type_}" + (f":{step}" if step else "")
    e: dict[str, Any] = {"id": event_id, "type": type_, "timestamp": "2026-01-02T03:04:05Z", "name": "wf",
                         "namespace": "", "uid": uid, "phase": "Running", "attributes": {},
                         "runError": "", "rollbackError": "", "syncError": ""}
    if step:
        e["step"], e["stepPhase"] = step, "Success"
    return e


def _create(api: client.CustomObjectsApi, namespace: str, url: str, *, name: str = "wf",
            ignore_not_found: bool = True, secret: dict[str, str] | None = None) -> dict[str, Any]:
    callback: dict[str, Any] = {"url": url, "ignoreNotFound": ignore_not_found}
    if secret:
        callback["signingSecretRef"] = secret
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workflow", "metadata": {"name": name},
            "spec": {"callback": callback, "steps": [{"name": "a", "stepTemplate": {"type": "empty"}}]}}
    created: dict[str, Any] = api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    return created


def _write_outbox(api: client.CustomObjectsApi, namespace: str, name: str, *types: tuple[str, str | None]
                  ) -> tuple[list[str], str]:
    """Append events to status.callbacks (emitted + pending), as decide's status write does; returns
    the pending ids now in the API and the resourceVersion written (what the reconciler passes to
    ``wake``)."""
    obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    uid = obj["metadata"]["uid"]
    callbacks = (obj.get("status") or {}).get("callbacks") or {}
    new = [_entry(uid, t, s) | {"namespace": namespace, "name": name} for t, s in types]
    patch = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
             "status": {"phase": "Running", "callbacks": {
                 "emitted": [*(callbacks.get("emitted") or []), *(e["id"] for e in new)],
                 "pending": [*(callbacks.get("pending") or []), *new]}}}
    written = api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, patch)
    ids = [e["id"] for e in patch["status"]["callbacks"]["pending"]]  # type: ignore[index]
    return ids, str(written["metadata"]["resourceVersion"])  # type: ignore[index]


def _pending(api: client.CustomObjectsApi, namespace: str, name: str) -> list[str]:
    obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return [e["id"] for e in ((obj.get("status") or {}).get("callbacks") or {}).get("pending") or []]


def _emitted(api: client.CustomObjectsApi, namespace: str, name: str) -> list[str]:
    obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return list(((obj.get("status") or {}).get("callbacks") or {}).get("emitted") or [])


def _wait_drained(api: client.CustomObjectsApi, namespace: str, name: str, sender: CallbackSender) -> None:
    wait_until(lambda: not _pending(api, namespace, name), timeout=30,
               what="status.callbacks.pending to empty")
    wait_until(sender.idle, timeout=30, what="the sender to finish")


def _report(receiver: Receiver, ids: list[str]) -> Counter[str]:
    """Print the receiver's view (attempts, deliveries and duplicates per event id); return deliveries."""
    attempts = receiver.ids()
    delivered = Counter(r.event_id for r in receiver.requests if 200 <= r.status < 300)
    duplicates = {i: n - 1 for i, n in delivered.items() if n > 1}
    print(f"\nreceiver view: {len(receiver.requests)} requests, attempts per id {dict(attempts)}, "
          f"accepted per id {dict(delivered)}, duplicates {duplicates or 'none'}")
    assert set(attempts) == set(ids)
    return delivered


def _warnings(api_client: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    core = client.CoreV1Api(api_client)
    items = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return {e.reason: e for e in items}


def test_each_event_reaches_the_receiver_once_even_after_500s(
        crds: client.CustomObjectsApi, api_client: client.ApiClient, namespace: str, receiver: Receiver,
        sender: CallbackSender, recorder: EventRecorder) -> None:
    wf = _create(crds, namespace, receiver.url)
    ids, rv = _write_outbox(crds, namespace, "wf", ("WorkflowStarted", None), ("StepSucceeded", "a"),
                            ("WorkflowSucceeded", None))
    receiver.script[ids[0]] = [500, 500]  # the first event fails twice; the others wait behind it
    sender.wake(f"{namespace}/wf", resource_version=rv)
    _wait_drained(crds, namespace, "wf", sender)

    delivered = _report(receiver, ids)
    assert delivered == Counter(dict.fromkeys(ids, 1)), "an event id was accepted more than once"
    assert [r.event_id for r in receiver.requests] == [ids[0], ids[0], ids[0], ids[1], ids[2]]  # in order
    assert [r.status for r in receiver.requests] == [500, 500, 200, 200, 200]
    assert _emitted(crds, namespace, "wf") == ids  # the sender only removes from pending
    stats = sender.stats()
    assert (stats.delivered, stats.retried, stats.rejected) == (3, 2, 0)

    body = receiver.requests[-1]
    assert body.headers["X-Workflow-Event-Type"] == "WorkflowSucceeded"
    assert body.headers["Content-Type"] == "application/json"
    assert SIGNATURE_HEADER not in body.headers
    assert recorder.flush(30)
    retrying = _warnings(api_client, namespace, "wf")["CallbackRetrying"]
    assert retrying.type == "Warning"
    assert retrying.count == 2
    assert retrying.involved_object.uid == wf["metadata"]["uid"]


def test_a_restarted_sender_delivers_what_is_left_without_reflooding(
        crds: client.CustomObjectsApi, api_client: client.ApiClient, namespace: str, receiver: Receiver,
        informer: SharedIndexInformer) -> None:
    _create(crds, namespace, receiver.url)
    first, rv = _write_outbox(crds, namespace, "wf", ("WorkflowStarted", None))

    def make() -> CallbackSender:
        s = CallbackSender(api_client, get_workflow=informer.indexer.get_by_key, connect_timeout=2.0,
                           read_timeout=5.0, backoff=wait_exponential(multiplier=0.1, max=1.0))
        s.start()
        return s

    one = make()
    one.wake(f"{namespace}/wf", resource_version=rv)
    _wait_drained(crds, namespace, "wf", one)
    one.stop()
    ids, rv = _write_outbox(crds, namespace, "wf", ("StepSucceeded", "a"))  # appended while "down"
    two = make()
    try:
        two.wake(f"{namespace}/wf", resource_version=rv)
        _wait_drained(crds, namespace, "wf", two)
    finally:
        two.stop()
    delivered = _report(receiver, first + ids)
    assert delivered == Counter(dict.fromkeys(first + ids, 1))


def test_the_signature_verifies_with_the_secret_key(
        crds: client.CustomObjectsApi, api_client: client.ApiClient, namespace: str, receiver: Receiver,
        sender: CallbackSender) -> None:
    key = b"s3cr3t-signing-key\x00\xff"
    client.CoreV1Api(api_client).create_namespaced_secret(namespace, {
        "metadata": {"name": "hook"}, "data": {"hmac-key": base64.b64encode(key).decode()}})
    wf = _create(crds, namespace, receiver.url, secret={"name": "hook", "key": "hmac-key"})
    assert wf["spec"]["callback"]["signingSecretRef"] == {"name": "hook", "key": "hmac-key"}, \
        "the API server pruned signingSecretRef"
    ids, rv = _write_outbox(crds, namespace, "wf", ("WorkflowStarted", None), ("StepFailed", "a"))
    sender.wake(f"{namespace}/wf", resource_version=rv)
    _wait_drained(crds, namespace, "wf", sender)
    _report(receiver, ids)
    for r in receiver.requests:
        assert verify(key, r.body, r.headers[SIGNATURE_HEADER]), r.headers
        assert not verify(b"another key", r.body, r.headers[SIGNATURE_HEADER])
    events = _warnings(api_client, namespace, "wf")
    assert all(key.decode(errors="replace") not in (e.message or "") for e in events.values())


def test_a_404_counts_as_delivered_with_ignore_not_found(
        crds: client.CustomObjectsApi, namespace: str, receiver: Receiver, sender: CallbackSender) -> None:
    receiver.default = 404
    _create(crds, namespace, receiver.url)  # ignoreNotFound true (the CRD's default too)
    ids, rv = _write_outbox(crds, namespace, "wf", ("WorkflowStarted", None), ("WorkflowFailed", None))
    sender.wake(f"{namespace}/wf", resource_version=rv)
    _wait_drained(crds, namespace, "wf", sender)
    _report(receiver, ids)
    assert [r.status for r in receiver.requests] == [404, 404]
    assert sender.stats().delivered == 2


def test_a_link_local_url_is_refused(
        crds: client.CustomObjectsApi, api_client: client.ApiClient, namespace: str, sender: CallbackSender,
        recorder: EventRecorder) -> None:
    _create(crds, namespace, "http://169.254.169.254/latest/meta-data/iam")
    _, rv = _write_outbox(crds, namespace, "wf", ("WorkflowStarted", None), ("StepSucceeded", "a"))
    sender.wake(f"{namespace}/wf", resource_version=rv)
    _wait_drained(crds, namespace, "wf", sender)
    assert sender.stats().refused == 2
    assert sender.stats().delivered == 0
    assert recorder.flush(30)
    refused = _warnings(api_client, namespace, "wf")["CallbackURLRefused"]
    assert refused.type == "Warning"
    assert "169.254.169.254 is a metadata address" in refused.message
    assert "2 pending event(s) dropped" in refused.message


def test_events_appended_during_a_post_survive_the_conflict(
        crds: client.CustomObjectsApi, namespace: str, receiver: Receiver, sender: CallbackSender) -> None:
    _create(crds, namespace, receiver.url)
    ids, rv = _write_outbox(crds, namespace, "wf", ("WorkflowStarted", None))
    appended: list[str] = []

    def reconcile_meanwhile(event_id: str) -> None:
        if not appended:  # the reconciler writes the status while the sender waits for the receiver
            appended.extend(_write_outbox(crds, namespace, "wf", ("StepSucceeded", "a"))[0][1:])

    receiver.on_request = reconcile_meanwhile
    sender.wake(f"{namespace}/wf", resource_version=rv)
    _wait_drained(crds, namespace, "wf", sender)
    delivered = _report(receiver, ids + appended)
    assert delivered == Counter(dict.fromkeys(ids + appended, 1))
    assert sender.stats().conflicts >= 1


def test_the_shipped_crd_has_signing_secret_ref() -> None:
    assert _callback_schema(_shipped_workflow_crd())["properties"]["signingSecretRef"] == SIGNING_SECRET_REF
