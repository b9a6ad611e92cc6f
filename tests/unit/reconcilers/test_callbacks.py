"""CallbackSender without an API server: the pure parts (status classification, Retry-After, the backoff
schedule, signatures, URL safety) and the sender itself over :class:`MemoryOutboxStore`, a fake clock
and a real HTTP receiver on 127.0.0.1 (:class:`Receiver`, also used by the integration tests)."""

from __future__ import annotations

import base64
import ipaddress
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
import requests
from kubernetes import client
from tenacity import wait_exponential

from informers import FakeClock
from informers.testing import wait_until
from reconcilers.callbacks import (
    DEFAULT_BACKOFF,
    MAX_RETRY_AFTER,
    CallbackSender,
    MemoryOutboxStore,
    Outcome,
    classify_status,
    retry_after_seconds,
    retry_delay,
)
from reconcilers.events import EventRecorder, MemoryEventSink
from reconcilers.signing import SIGNATURE_HEADER, sign, verify
from reconcilers.urlsafety import (
    UrlPolicy,
    UrlRefused,
    UrlUnresolvable,
    check_url,
    checked_adapter,
    classify,
    peer_refusal,
    redact,
    refusal,
)

# --------------------------------------------------------------------------------------- receiver


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def event_id(self) -> str:
        return self.headers.get("X-Workflow-Event-Id", "")


class Receiver:
    """A real HTTP server on 127.0.0.1 (its own threads) that records every POST.

    ``script[event_id]`` lists the statuses to answer to that id's first attempts (then ``default``);
    ``extra_headers`` are added to every answer. Thread-safe; :meth:`wait_for` blocks (real time, bounded)
    until ``n`` requests arrived."""

    def __init__(self, default: int = 200) -> None:
        self.default = default
        self.script: dict[str, list[int]] = {}
        self.extra_headers: dict[str, str] = {}
        #: called with the event id before answering (on the server's thread), e.g. to change the
        #: workflow while the sender waits for the answer
        self.on_request: Callable[[str], None] | None = None
        self.requests: list[Received] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver._handle(self, body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k: v for k, v in handler.headers.items()}
        event_id = headers.get("X-Workflow-Event-Id", "")
        with self._cond:
            queued = self.script.get(event_id)
            status = queued.pop(0) if queued else self.default
            extra = dict(self.extra_headers)
            hook = self.on_request
        if hook is not None:
            hook(event_id)
        handler.send_response(status)
        for k, v in extra.items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")
        with self._cond:
            self.requests.append(Received(handler.path, headers, body, status))
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.requests) >= n, timeout), (
                f"{len(self.requests)} requests received, expected {n}")
            return list(self.requests)

    def ids(self) -> Counter[str]:
        with self._cond:
            return Counter(r.event_id for r in self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


# --------------------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(("status", "ignore_not_found", "outcome"), [
    (200, True, Outcome.DELIVERED),
    (204, False, Outcome.DELIVERED),
    (404, True, Outcome.DELIVERED),
    (404, False, Outcome.RETRY),
    (408, True, Outcome.RETRY),
    (429, True, Outcome.RETRY),
    (500, True, Outcome.RETRY),
    (503, False, Outcome.RETRY),
    (301, True, Outcome.REJECTED),
    (400, True, Outcome.REJECTED),
    (401, True, Outcome.REJECTED),
    (410, True, Outcome.REJECTED),
    (422, True, Outcome.REJECTED),
])
def test_classify_status(status: int, ignore_not_found: bool, outcome: Outcome) -> None:
    assert classify_status(status, ignore_not_found) is outcome


@pytest.mark.parametrize(("header", "seconds"), [
    (None, None), ("", None), ("7", 7.0), (" 2.5 ", 2.5), ("-1", None), ("nan", None),
    ("Wed, 21 Oct 2026 07:28:00 GMT", None), ("86400", MAX_RETRY_AFTER),
])
def test_retry_after(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


def test_default_backoff_doubles_from_one_second_to_a_minute_with_up_to_a_second_of_jitter() -> None:
    for failures in range(1, 12):
        base = min(2.0 ** (failures - 1), 60.0)
        for _ in range(20):
            d = retry_delay(DEFAULT_BACKOFF, failures)
            assert base <= d <= min(base + 1.0, 60.0)


def test_retry_after_wins_when_longer() -> None:
    exact = wait_exponential(multiplier=1, max=60)
    assert retry_delay(exact, 1) == 1.0
    assert retry_delay(exact, 3) == 4.0
    assert retry_delay(exact, 3, retry_after=10.0) == 10.0
    assert retry_delay(exact, 3, retry_after=1.0) == 4.0


def test_signature_is_hex_hmac_sha256_of_the_body() -> None:
    # RFC 4231 test case 1
    key, body = b"\x0b" * 20, b"Hi There"
    expected = "sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    assert sign(key, body) == expected
    assert verify(key, body, expected)
    assert not verify(key, body + b" ", expected)
    assert not verify(b"other", body, expected)
    assert not verify(key, body, None)


@pytest.mark.parametrize(("address", "kind"), [
    ("169.254.169.254", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("::ffff:169.254.169.254", "metadata"),
    ("100.100.100.200", "metadata"),
    ("169.254.10.1", "link-local"),
    ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("127.0.0.1", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("192.168.0.1", "private"),
    ("fd12::1", "private"),
    ("8.8.8.8", "public"),
    ("2001:4860:4860::8888", "public"),
])
def test_classify_address(address: str, kind: str) -> None:
    assert classify(ipaddress.ip_address(address)) == kind


def _ip(a: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(a)


def test_refusal_policy() -> None:
    default, strict = UrlPolicy(), UrlPolicy(allow_private_networks=False)
    assert refusal(_ip("169.254.169.254"), default) is not None  # always, even with private networks
    assert refusal(_ip("fe80::1"), default) is not None
    assert refusal(_ip("127.0.0.1"), default) is None
    assert refusal(_ip("10.0.0.1"), default) is None
    assert refusal(_ip("127.0.0.1"), strict) is not None
    assert refusal(_ip("10.0.0.1"), strict) is not None
    assert refusal(_ip("8.8.8.8"), strict) is None
    listed = UrlPolicy(allowed_cidrs=(ipaddress.ip_network("169.254.169.0/24"),))
    assert refusal(_ip("169.254.169.254"), listed) is None  # explicitly allowed by the operator
    assert refusal(_ip("8.8.8.8"), listed) == "8.8.8.8 is outside allowedCIDRs"


def _resolver(*addresses: str) -> Any:
    def resolve(host: str, port: int, **kw: Any) -> list[tuple[Any, ...]]:
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addresses]
    return resolve


def test_check_url() -> None:
    policy = UrlPolicy()
    assert check_url("http://127.0.0.1:8080/x", policy) == (_ip("127.0.0.1"),)
    assert check_url("https://hooks.example/x", policy, _resolver("93.184.216.34")) == (_ip("93.184.216.34"),)
    with pytest.raises(UrlRefused, match="metadata"):
        check_url("http://169.254.169.254/latest/meta-data", policy)
    with pytest.raises(UrlRefused, match="link-local"):
        check_url("http://[fe80::1]/", policy)
    with pytest.raises(UrlRefused, match="metadata"):  # one bad address among good ones is enough
        check_url("http://mixed.example/", policy, _resolver("93.184.216.34", "169.254.169.254"))
    with pytest.raises(UrlRefused, match="scheme"):
        check_url("file:///etc/passwd", policy)
    with pytest.raises(UrlRefused, match="no host"):
        check_url("http:///x", policy)
    with pytest.raises(UrlUnresolvable):
        check_url("http://nowhere.invalid/", policy, _resolver())


@pytest.mark.parametrize("url", [
    "http://2852039166/",  # 169.254.169.254 as one decimal number (the system resolver accepts it)
    "http://0xa9.0xfe.0xa9.0xfe/",  # ... in hex
    "http://[::ffff:a9fe:a9fe]/",  # ... IPv4-mapped
    "http://[fe80::1%25eth0]/",  # a link-local address with a zone
])
def test_disguised_metadata_and_link_local_addresses_are_refused(url: str) -> None:
    with pytest.raises(UrlRefused, match=r"metadata|link-local"):
        check_url(url, UrlPolicy())


def test_the_checked_adapter_refuses_a_connection_to_a_refused_address(receiver: Receiver) -> None:
    session = requests.Session()
    adapter = checked_adapter(UrlPolicy(allow_private_networks=False))
    session.mount("http://", adapter)
    with pytest.raises(requests.ConnectionError) as info:
        session.post(receiver.url, data=b"{}", timeout=(2, 5))
    assert peer_refusal(info.value) == "127.0.0.1: connected to 127.0.0.1 is a loopback address and " \
        "private networks are not allowed"
    assert receiver.requests == []  # refused before anything was sent
    session.mount("http://", checked_adapter(UrlPolicy()))
    assert session.post(receiver.url, data=b"{}", timeout=(2, 5)).status_code == 200
    session.close()


def test_redact_drops_credentials_query_and_fragment() -> None:
    assert redact("https://user:pw@hooks.example:8443/a/b?token=s3cret#f") == "https://hooks.example:8443/a/b"
    assert redact("http://[::1]:80/x") == "http://[::1]:80/x"


# --------------------------------------------------------------------------------------- the sender

NS, NAME = "ns", "wf"
KEY = f"{NS}/{NAME}"


def _entry(event_id: str, type_: str = "WorkflowStarted", **extra: Any) -> dict[str, Any]:
    return {"id": event_id, "type": type_, "timestamp": "2026-01-02T03:04:05Z", "name": NAME, "namespace": NS,
            "uid": "u-1", "phase": "Running", "attributes": {"a": "1"}, "runError": "", "rollbackError": "",
            "syncError": "", **extra}


def _workflow(url: str, *pending: dict[str, Any], ignore_not_found: bool = True,
              secret: dict[str, str] | None = None) -> dict[str, Any]:
    callback: dict[str, Any] = {"url": url, "ignoreNotFound": ignore_not_found}
    if secret:
        callback["signingSecretRef"] = secret
    return {"apiVersion": "workflow.example.com/v1alpha1", "kind": "Workflow",
            "metadata": {"name": NAME, "namespace": NS, "uid": "u-1"},
            "spec": {"callback": callback, "steps": [{"name": "a", "stepTemplate": {"type": "empty"}}]},
            "status": {"phase": "Running", "callbacks": {"emitted": [e["id"] for e in pending],
                                                          "pending": list(pending)}}}


def _pending(store: MemoryOutboxStore) -> list[str]:
    obj = store.get(NS, NAME)
    assert obj is not None
    return [e["id"] for e in ((obj.get("status") or {}).get("callbacks") or {}).get("pending") or []]


class Harness:
    """A started sender over a memory store, a fake clock and (optionally) a memory Event sink."""

    def __init__(self, **kwargs: Any) -> None:
        self.clock = FakeClock()
        self.store = MemoryOutboxStore()
        self.events = MemoryEventSink()
        self.recorder = EventRecorder(client.ApiClient(), sink=self.events)
        get = kwargs.pop("get_workflow", self.store.get_cached)
        kwargs.setdefault("backoff", wait_exponential(multiplier=1, max=60))  # exact, no jitter
        kwargs.setdefault("connect_timeout", 2.0)
        kwargs.setdefault("read_timeout", 5.0)
        self.sender = CallbackSender(client.ApiClient(), get_workflow=get, clock=self.clock, store=self.store,
                                     event_recorder=self.recorder, **kwargs)
        self.recorder.start()
        self.sender.start()

    def settle(self) -> None:
        wait_until(self.sender.idle, what="the sender to finish its keys")

    def next_retry_in(self) -> float | None:
        deadline = self.clock.next_deadline()
        return None if deadline is None else deadline - self.clock.now()

    def warnings(self) -> list[tuple[str, str]]:
        assert self.recorder.flush()
        return sorted((e["reason"], e["message"]) for e in self.events.events.values())

    def close(self) -> None:
        self.sender.stop()
        self.recorder.stop()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


def test_delivers_pending_events_in_order_and_removes_them(harness: Harness, receiver: Receiver) -> None:
    entries = [_entry("u-1:WorkflowStarted"), _entry("u-1:StepSucceeded:a", "StepSucceeded", step="a",
                                                      stepPhase="Success")]
    harness.store.put(_workflow(receiver.url, *entries))
    harness.sender.wake(KEY)
    got = receiver.wait_for(2)
    harness.settle()
    assert [r.event_id for r in got] == ["u-1:WorkflowStarted", "u-1:StepSucceeded:a"]
    for r, e in zip(got, entries, strict=True):
        assert r.path == "/hook"
        assert orjson.loads(r.body) == e
        assert r.headers["Content-Type"] == "application/json"
        assert r.headers["X-Workflow-Event-Type"] == e["type"]
        assert r.headers["X-Workflow-Delivery-Attempt"] == "1"
        assert SIGNATURE_HEADER not in r.headers
    assert _pending(harness.store) == []
    assert harness.store.writes == 1  # one status write for both
    assert harness.sender.stats().delivered == 2


def test_backoff_schedule_on_the_fake_clock(harness: Harness, receiver: Receiver) -> None:
    receiver.script["e1"] = [500, 503, 500]
    harness.store.put(_workflow(receiver.url, _entry("e1"), _entry("e2")))
    harness.sender.wake(KEY)
    schedule = []
    for n in range(1, 4):
        receiver.wait_for(n)
        wait_until(lambda: harness.next_retry_in() is not None, what="a retry to be scheduled")
        harness.settle()
        delay = harness.next_retry_in()
        assert delay is not None
        schedule.append(delay)
        assert receiver.ids() == Counter({"e1": n})  # e2 waits behind e1: order is kept
        harness.clock.advance(delay)
    got = receiver.wait_for(5)
    harness.settle()
    assert schedule == [1.0, 2.0, 4.0]
    assert [r.status for r in got] == [500, 503, 500, 200, 200]
    assert [r.headers["X-Workflow-Delivery-Attempt"] for r in got] == ["1", "2", "3", "4", "1"]
    assert _pending(harness.store) == []
    assert harness.sender.stats().retried == 3
    message = f"callback WorkflowStarted (e1) to {receiver.url} failed, will retry: HTTP 500"
    assert ("CallbackRetrying", message) in harness.warnings()


def test_an_early_wake_does_not_cut_a_backoff_short(harness: Harness, receiver: Receiver) -> None:
    receiver.script["e1"] = [500]
    harness.store.put(_workflow(receiver.url, _entry("e1")))
    harness.sender.wake(KEY)
    receiver.wait_for(1)
    wait_until(lambda: harness.next_retry_in() is not None, what="a retry to be scheduled")
    harness.settle()
    harness.sender.wake(KEY)  # e.g. the reconciler appended another event
    harness.settle()
    assert len(receiver.requests) == 1
    assert harness.next_retry_in() == 1.0
    harness.clock.advance(1.0)
    receiver.wait_for(2)
    harness.settle()
    assert _pending(harness.store) == []


def test_retry_after_is_honoured(harness: Harness, receiver: Receiver) -> None:
    receiver.script["e1"] = [429]
    receiver.extra_headers["Retry-After"] = "30"
    harness.store.put(_workflow(receiver.url, _entry("e1")))
    harness.sender.wake(KEY)
    receiver.wait_for(1)
    wait_until(lambda: harness.next_retry_in() is not None, what="a retry to be scheduled")
    assert harness.next_retry_in() == 30.0


def test_a_read_timeout_is_retried(receiver: Receiver) -> None:
    release = threading.Event()
    calls: list[str] = []

    def hang_first(event_id: str) -> None:
        calls.append(event_id)
        if len(calls) == 1:
            release.wait(20)  # answer only after the sender gave up on this request

    receiver.on_request = hang_first
    h = Harness(read_timeout=0.2)
    try:
        h.store.put(_workflow(receiver.url, _entry("e1")))
        h.sender.wake(KEY)
        wait_until(lambda: h.next_retry_in() is not None, what="a retry to be scheduled")
        release.set()
        assert h.sender.stats().retried == 1
        assert _pending(h.store) == ["e1"]
        h.clock.advance(h.next_retry_in() or 0)
        wait_until(lambda: not _pending(h.store), what="the retry to deliver")
        assert calls == ["e1", "e1"]
        assert "failed, will retry: timeout" in h.warnings()[0][1]
    finally:
        h.close()


def test_a_4xx_drops_the_event_with_a_warning_and_the_rest_go_on(harness: Harness,
                                                                 receiver: Receiver) -> None:
    receiver.script["bad"] = [400]
    harness.store.put(_workflow(receiver.url, _entry("bad"), _entry("good")))
    harness.sender.wake(KEY)
    got = receiver.wait_for(2)
    harness.settle()
    assert [(r.event_id, r.status) for r in got] == [("bad", 400), ("good", 200)]
    assert _pending(harness.store) == []
    stats = harness.sender.stats()
    assert (stats.delivered, stats.rejected, stats.retried) == (1, 1, 0)
    assert harness.warnings() == [
        ("CallbackRejected", f"callback WorkflowStarted (bad) to {receiver.url} rejected: HTTP 400; dropped")]


@pytest.mark.parametrize("ignore_not_found", [True, False])
def test_404_counts_as_delivered_only_with_ignore_not_found(harness: Harness, receiver: Receiver,
                                                             ignore_not_found: bool) -> None:
    receiver.default = 404
    harness.store.put(_workflow(receiver.url, _entry("e1"), ignore_not_found=ignore_not_found))
    harness.sender.wake(KEY)
    receiver.wait_for(1)
    if ignore_not_found:
        harness.settle()
        assert _pending(harness.store) == []
    else:
        wait_until(lambda: harness.next_retry_in() is not None, what="a retry to be scheduled")
        assert _pending(harness.store) == ["e1"]


def test_max_attempts_gives_up(receiver: Receiver) -> None:
    h = Harness(max_attempts=2)
    try:
        receiver.default = 500
        h.store.put(_workflow(receiver.url, _entry("e1")))
        h.sender.wake(KEY)
        receiver.wait_for(1)
        wait_until(lambda: h.next_retry_in() is not None, what="a retry to be scheduled")
        h.clock.advance(1.0)
        receiver.wait_for(2)
        h.settle()
        assert _pending(h.store) == []
        assert h.sender.stats().rejected == 1
        warnings = dict(h.warnings())
        assert warnings["CallbackRejected"] == (f"callback WorkflowStarted (e1) to {receiver.url} rejected: "
                                                "gave up after 2 attempts, last: HTTP 500; dropped")
    finally:
        h.close()


def test_a_metadata_url_is_refused_without_a_request(harness: Harness) -> None:
    harness.store.put(_workflow("http://169.254.169.254/latest/meta-data/", _entry("e1"), _entry("e2")))
    harness.sender.wake(KEY)
    wait_until(lambda: harness.store.writes == 1, what="the refused events to be dropped")
    assert _pending(harness.store) == []
    assert harness.sender.stats().refused == 2
    (warning,) = harness.warnings()
    assert warning[0] == "CallbackURLRefused"
    assert "169.254.169.254 is a metadata address" in warning[1]


def test_dns_rebinding_is_caught_when_connecting(receiver: Receiver) -> None:
    """The name passes the check (the resolver says it is public), then resolves to loopback when
    requests connects: the connection is refused before the request is sent."""
    h = Harness(allow_private_networks=False, resolver=_resolver("93.184.216.34"))
    try:
        url = receiver.url.replace("127.0.0.1", "localhost")
        h.store.put(_workflow(url, _entry("e1"), _entry("e2")))
        h.sender.wake(KEY)
        wait_until(lambda: h.store.writes == 1, what="the refused events to be dropped")
        assert receiver.requests == []
        assert h.sender.stats().refused == 2
        (warning,) = h.warnings()
        assert warning[0] == "CallbackURLRefused"
        assert "localhost: connected to" in warning[1]
        assert "2 pending event(s) dropped" in warning[1]
    finally:
        h.close()


def test_private_networks_can_be_refused(receiver: Receiver) -> None:
    h = Harness(allow_private_networks=False)
    try:
        h.store.put(_workflow(receiver.url, _entry("e1")))
        h.sender.wake(KEY)
        wait_until(lambda: h.store.writes == 1, what="the refused event to be dropped")
        assert receiver.requests == []
        assert "private networks are not allowed" in h.warnings()[0][1]
    finally:
        h.close()


def test_signed_bodies_verify_with_the_secret_key(harness: Harness, receiver: Receiver) -> None:
    key = b"correct horse battery staple"
    harness.store.secrets[(NS, "hook-key")] = {"data": {"hmac": base64.b64encode(key).decode()}}
    harness.store.put(_workflow(receiver.url, _entry("e1"), secret={"name": "hook-key", "key": "hmac"}))
    harness.sender.wake(KEY)
    (r,) = receiver.wait_for(1)
    assert r.headers[SIGNATURE_HEADER] == sign(key, r.body)
    assert verify(key, r.body, r.headers[SIGNATURE_HEADER])


def test_a_missing_secret_is_retried_and_nothing_is_sent_unsigned(harness: Harness,
                                                                  receiver: Receiver) -> None:
    harness.store.put(_workflow(receiver.url, _entry("e1"), secret={"name": "later", "key": "k"}))
    harness.sender.wake(KEY)
    wait_until(lambda: harness.next_retry_in() is not None, what="a retry to be scheduled")
    harness.settle()
    assert receiver.requests == []
    (warning,) = harness.warnings()
    assert warning[0] == "CallbackRetrying"
    assert "secret ns/later key 'k': no such secret" in warning[1]
    harness.store.secrets[(NS, "later")] = {"data": {"k": base64.b64encode(b"v").decode()}}
    harness.clock.advance(1.0)
    (r,) = receiver.wait_for(1)
    assert verify(b"v", r.body, r.headers[SIGNATURE_HEADER])


def test_a_conflict_rereads_and_keeps_events_appended_meanwhile(receiver: Receiver) -> None:
    store_holder: list[MemoryOutboxStore] = []
    stale: list[dict[str, Any]] = []

    def get_workflow(key: str) -> Any:
        return stale.pop() if stale else store_holder[0].get_cached(key)

    h = Harness(get_workflow=get_workflow)
    store_holder.append(h.store)
    try:
        stale.append(h.store.put(_workflow(receiver.url, _entry("e1"))))
        h.store.put(_workflow(receiver.url, _entry("e1"), _entry("e2")))  # the reconciler appended e2
        h.sender.wake(KEY)
        got = receiver.wait_for(2)
        h.settle()
        assert [r.event_id for r in got] == ["e1", "e2"]
        assert h.store.conflicts == 1
        assert _pending(h.store) == []
    finally:
        h.close()


def test_a_stale_cache_after_our_write_does_not_post_again(receiver: Receiver) -> None:
    snapshot: list[dict[str, Any]] = []
    h = Harness(get_workflow=lambda key: snapshot[0])
    try:
        snapshot.append(h.store.put(_workflow(receiver.url, _entry("e1"))))
        h.sender.wake(KEY)
        receiver.wait_for(1)
        h.settle()
        assert _pending(h.store) == []
        for _ in range(3):  # the cache still shows e1 pending
            h.sender.wake(KEY)
            h.settle()
        assert receiver.ids() == Counter({"e1": 1})
    finally:
        h.close()


def test_a_wake_with_the_written_version_does_not_trust_an_older_cache(receiver: Receiver) -> None:
    snapshot: list[dict[str, Any]] = []
    h = Harness(get_workflow=lambda key: snapshot[0])
    try:
        snapshot.append(h.store.put(_workflow(receiver.url)))  # the cache: nothing pending yet
        written = h.store.put(_workflow(receiver.url, _entry("e1")))  # the reconciler's status write
        h.sender.wake(KEY)
        h.settle()
        assert receiver.requests == []  # a plain wake trusts the (stale) cache
        h.sender.wake(KEY, resource_version=written["metadata"]["resourceVersion"])
        receiver.wait_for(1)
        h.settle()
        assert _pending(h.store) == []
    finally:
        h.close()


def test_a_failed_status_write_does_not_post_again(harness: Harness, receiver: Receiver) -> None:
    harness.store.put(_workflow(receiver.url, _entry("e1")))
    harness.store.fail = 500
    harness.sender.wake(KEY)
    receiver.wait_for(1)
    wait_until(lambda: harness.next_retry_in() is not None, what="a retry to be scheduled")
    harness.settle()
    harness.store.fail = None
    assert _pending(harness.store) == ["e1"]
    harness.clock.advance(harness.next_retry_in() or 0)
    wait_until(lambda: harness.store.writes == 1, what="the status write")
    assert receiver.ids() == Counter({"e1": 1})
    assert _pending(harness.store) == []


def test_a_deleted_workflow_is_forgotten(harness: Harness) -> None:
    harness.sender.wake("ns/gone")
    harness.settle()
    assert harness.sender.stats() == type(harness.sender.stats())()


def test_wake_never_blocks() -> None:
    """wake() only adds a key to the sender's own queue: even with no worker running it returns at once."""
    clock = FakeClock()
    sender = CallbackSender(client.ApiClient(), get_workflow=lambda key: None, connect_timeout=1.0,
                            read_timeout=1.0, clock=clock, store=MemoryOutboxStore())  # never started
    for i in range(10_000):
        sender.wake(f"ns/wf-{i}")
    sender.stop()
