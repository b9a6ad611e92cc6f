"""``http`` against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket

import pytest

from stepkit import IgnorableError, PermanentError, ResourceStatus, RetryableError, StepResult, WorkflowInfo
from stepkit.builtin import HttpStep
from stepkit.testing import StepHarness
from tests.unit.stepkit.conftest import LocalServer, Reply, Seen


@pytest.fixture
def harness() -> StepHarness:
    workflow = WorkflowInfo(
        "orders", "shop", "uid-1", parameters={"tier": "gold"}, attributes={"region": "eu"}
    )
    return StepHarness(HttpStep(), step_type="http", step_name="db", workflow=workflow)


def test_run_posts_json_and_reads_outputs(http_server: LocalServer, harness: StepHarness) -> None:
    http_server.routes[("POST", "/dbs")] = Reply(
        201,
        {
            "resource": {"id": "db-42", "status": "Creating", "attributes": {"size": 10}},
            "attributes": {"dsn": "x"},
        },
        headers={"Content-Type": "application/json"},
    )
    result = harness.run(
        {
            "url": http_server.url("/dbs"),
            "body": '{"name": "${workflow.name}", "tier": "${workflow.parameters.tier}", "n": 1}',
            "headers": '{"Authorization": "Bearer t0k"}',
            "header.X-Team": "payments",
        }
    )
    assert result == StepResult(
        attributes={"dsn": "x"},
        resource=ResourceStatus(id="db-42", status="Creating", attributes={"size": "10"}),
    )
    (seen,) = http_server.requests_to("POST", "/dbs")
    assert seen.json() == {"name": "orders", "tier": "gold", "n": 1}
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Authorization"] == "Bearer t0k"
    assert seen.headers["X-Team"] == "payments"


def test_idempotency_key_header_is_stable_across_attempts(
    http_server: LocalServer, harness: StepHarness
) -> None:
    http_server.routes[("POST", "/dbs")] = Reply(200)
    http_server.routes[("DELETE", "/dbs/db-42")] = Reply(204)
    params = {"url": http_server.url("/dbs"), "rollbackUrl": http_server.url("/dbs/${resource.id}")}
    assert harness.run(params, attempt=1) is None  # empty body: no outputs
    assert harness.run(params, attempt=2) is None
    harness.rollback(params, resource=ResourceStatus(id="db-42"))
    run_keys = {s.headers["Idempotency-Key"] for s in http_server.requests_to("POST", "/dbs")}
    (rollback,) = http_server.requests_to("DELETE", "/dbs/db-42")
    assert run_keys == {harness.idempotency_key("run")}
    assert rollback.headers["Idempotency-Key"] == harness.idempotency_key("rollback")
    assert rollback.headers["Idempotency-Key"] not in run_keys


def test_rollback_calls_its_url_and_treats_404_as_undone(
    http_server: LocalServer, harness: StepHarness
) -> None:
    params = {
        "url": http_server.url("/dbs"),
        "rollbackUrl": http_server.url("/dbs/${resource.id}"),
        "rollbackBody": '{"reason": "rollback of ${step.name}", "key": "${idempotencyKey}"}',
    }
    http_server.routes[("DELETE", "/dbs/a%2Fb")] = Reply(404, b"gone")
    assert harness.rollback(params, resource=ResourceStatus(id="a/b")) is None
    (seen,) = http_server.requests_to("DELETE", "/dbs/a%2Fb")  # the id is percent-encoded in the URL
    assert seen.json() == {"reason": "rollback of db", "key": harness.idempotency_key("rollback")}


def test_rollback_without_url_does_nothing(http_server: LocalServer, harness: StepHarness) -> None:
    assert harness.rollback({"url": http_server.url("/dbs")}) is None
    assert harness.sync({"url": http_server.url("/dbs")}) is None
    assert http_server.seen == []


def test_sync_gets_status(http_server: LocalServer, harness: StepHarness) -> None:
    http_server.routes[("GET", "/dbs/db-1")] = Reply(200, {"resource": {"status": "Ready"}})
    result = harness.sync(
        {"syncUrl": http_server.url("/dbs/${resource.id}")}, resource=ResourceStatus(id="db-1")
    )
    assert result == StepResult(resource=ResourceStatus(status="Ready"))


def test_expected_status_list(http_server: LocalServer, harness: StepHarness) -> None:
    http_server.routes[("PUT", "/x")] = Reply(202, b"not json")
    params = {"url": http_server.url("/x"), "method": "put", "expectedStatus": "200"}
    with pytest.raises(PermanentError, match="returned 202: not json") as info:
        harness.run(params)
    assert info.value.code == "HTTP202"
    assert harness.run({**params, "expectedStatus": "200, 202"}) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_4xx_is_permanent(http_server: LocalServer, harness: StepHarness, status: int) -> None:
    http_server.routes[("POST", "/dbs")] = Reply(status, {"error": "nope"})
    with pytest.raises(PermanentError, match=f"returned {status}") as info:
        harness.run({"url": http_server.url("/dbs")})
    assert info.value.code == f"HTTP{status}"


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_5xx_is_retryable_with_retry_after(
    http_server: LocalServer, harness: StepHarness, status: int
) -> None:
    http_server.routes[("POST", "/dbs")] = Reply(status, b"busy", headers={"Retry-After": "7"})
    with pytest.raises(RetryableError) as info:
        harness.run({"url": http_server.url("/dbs")})
    assert (info.value.code, info.value.delay, info.value.ignorable) == (f"HTTP{status}", 7.0, False)


def test_429_is_ignorable(http_server: LocalServer, harness: StepHarness) -> None:
    http_server.routes[("POST", "/dbs")] = Reply(
        429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    with pytest.raises(IgnorableError) as info:
        harness.run({"url": http_server.url("/dbs")})
    assert info.value.delay == 0.0  # a date in the past means "now"


def test_timeout_is_retryable(http_server: LocalServer, harness: StepHarness) -> None:
    http_server.routes[("POST", "/slow")] = Reply(200, hold=True)
    with pytest.raises(RetryableError) as info:
        harness.run({"url": http_server.url("/slow"), "timeoutSeconds": "0.2"})
    assert info.value.code == "Timeout"


def test_a_body_that_stalls_is_a_retryable_timeout(http_server: LocalServer, harness: StepHarness) -> None:
    http_server.routes[("POST", "/drip")] = Reply(200, b'{"attributes": ', stall_body=True)
    with pytest.raises(RetryableError, match="reading the response failed") as info:
        harness.run({"url": http_server.url("/drip"), "timeoutSeconds": "0.2"})
    assert info.value.code == "Timeout"


def test_connection_refused_is_retryable(harness: StepHarness) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RetryableError) as info:
        harness.run({"url": f"http://127.0.0.1:{port}/x"})
    assert info.value.code == "ConnectionError"
    assert "refused" in info.value.message


def test_query_strings_stay_out_of_errors_and_logs(http_server: LocalServer, harness: StepHarness) -> None:
    http_server.routes[("POST", "/dbs?token=s3cret")] = Reply(500, b"down")
    with pytest.raises(RetryableError) as info:
        harness.run({"url": http_server.url("/dbs?token=s3cret")})
    assert info.value.message == f"POST http://127.0.0.1:{http_server.port}/dbs returned 500: down"
    assert "s3cret" not in repr(harness.events)


def test_same_origin_redirect_is_followed(http_server: LocalServer, harness: StepHarness) -> None:
    http_server.routes[("POST", "/old")] = Reply(307, headers={"Location": "/new"})
    http_server.routes[("POST", "/new")] = Reply(200, {"attributes": {"moved": "yes"}})
    result = harness.run({"url": http_server.url("/old"), "body": '{"a": "1"}'})
    assert result == StepResult(attributes={"moved": "yes"})
    (seen,) = http_server.requests_to("POST", "/new")
    assert seen.json() == {"a": "1"}
    assert seen.headers["Idempotency-Key"] == harness.idempotency_key("run")


def test_redirect_to_another_host_is_not_followed(http_server: LocalServer, harness: StepHarness) -> None:
    # "localhost" is another host name for the same server: if the redirect were followed it would show up
    evil = f"http://localhost:{http_server.port}/steal"
    http_server.routes[("POST", "/old")] = Reply(302, headers={"Location": evil})
    with pytest.raises(PermanentError, match="another origin") as info:
        harness.run({"url": http_server.url("/old")})
    assert info.value.code == "RedirectRefused"
    assert [s.path for s in http_server.seen] == ["/old"]


def test_redirect_loop_is_bounded(http_server: LocalServer, harness: StepHarness) -> None:
    http_server.routes[("GET", "/loop")] = Reply(302, headers={"Location": "/loop"})
    with pytest.raises(PermanentError, match="redirects"):
        harness.sync({"syncUrl": http_server.url("/loop")})
    assert len(http_server.seen) == 6


def test_a_response_handler_sees_the_request(http_server: LocalServer, harness: StepHarness) -> None:
    def echo(seen: Seen) -> Reply:
        return Reply(200, {"attributes": {"echo": json.loads(seen.body)["msg"]}})

    http_server.routes[("POST", "/echo")] = echo
    result = harness.run(
        {"url": http_server.url("/echo"), "body": '{"msg": "${workflow.attributes.region}"}'}
    )
    assert result == StepResult(attributes={"echo": "eu"})


@pytest.mark.parametrize(
    ("params", "match"),
    [
        pytest.param({}, "'url' is required", id="missing-url"),
        pytest.param({"url": "ftp://x/y"}, "http", id="bad-scheme"),
        pytest.param({"url": "http://127.0.0.1:1/${resource.id}"}, "resource.id", id="unset-placeholder"),
        pytest.param({"url": "http://127.0.0.1:1/", "body": "{"}, "JSON", id="bad-body"),
        pytest.param({"url": "http://127.0.0.1:1/", "headers": "[]"}, "headers", id="bad-headers"),
        pytest.param(
            {"url": "http://127.0.0.1:1/", "expectedStatus": "ok"}, "expectedStatus", id="bad-expected"
        ),
        pytest.param(
            {"url": "http://127.0.0.1:1/", "timeoutSeconds": "0"}, "timeoutSeconds", id="zero-timeout"
        ),
        pytest.param({"url": "http://127.0.0.1:1/", "method": "GE T"}, "method", id="bad-method"),
    ],
)
def test_bad_parameters_are_permanent_and_send_nothing(
    harness: StepHarness, params: dict[str, str], match: str
) -> None:
    with pytest.raises(PermanentError, match=match) as info:
        harness.run(params)
    assert info.value.code == "BadParameter"
