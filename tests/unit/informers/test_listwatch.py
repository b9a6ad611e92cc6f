from __future__ import annotations

from collections.abc import Iterator

import pytest
import urllib3
from kubernetes import client

from informers.errors import ApiError, TransportError, WatchIdleTimeout, is_expired, is_retriable_watch_error
from informers.errors import is_too_large_resource_version as too_large
from informers.listwatch import ApiListerWatcher, ListOptions, Resource, _HttpWatchStream


def test_resource_paths_for_custom_and_core_groups() -> None:
    steps = Resource("workflow.example.com", "v1alpha1", "steps")
    assert steps.path("team-a") == "/apis/workflow.example.com/v1alpha1/namespaces/team-a/steps"
    assert steps.path(None) == "/apis/workflow.example.com/v1alpha1/steps"
    assert Resource("", "v1", "configmaps").path("x") == "/api/v1/namespaces/x/configmaps"
    assert str(steps) == "steps.v1alpha1.workflow.example.com"


def test_query_carries_selectors_and_watch_options() -> None:
    lw = ApiListerWatcher(client.ApiClient(), Resource("g", "v1", "things"), namespace="ns",
                          label_selector="workflow=wf-1", field_selector="metadata.name!=x")
    opts = ListOptions(resource_version="42", timeout_seconds=377, allow_watch_bookmarks=True)
    watch = lw._query(opts, True)
    assert watch == [("watch", "true"), ("resourceVersion", "42"), ("timeoutSeconds", 377),
                     ("allowWatchBookmarks", "true"), ("labelSelector", "workflow=wf-1"),
                     ("fieldSelector", "metadata.name!=x")]
    page = lw._query(ListOptions(limit=500, continue_token="tok"), False)
    assert page[:2] == [("limit", 500), ("continue", "tok")]


def test_error_predicates() -> None:
    gone = ApiError.from_status({"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"})
    assert is_expired(gone)
    assert not is_retriable_watch_error(gone)
    assert is_retriable_watch_error(ApiError(429, "TooManyRequests"))
    assert is_retriable_watch_error(TransportError("refused"))
    assert is_retriable_watch_error(WatchIdleTimeout("silent"))
    assert too_large(ApiError(504, "Timeout", "Too large resource version",
                              {"causes": [{"reason": "ResourceVersionTooLarge"}]}))
    assert not too_large(ApiError(504, "Timeout", "etcd slow"))
    assert not is_expired(ApiError(500, "InternalError"))


class _Resp:
    """Just enough of urllib3.HTTPResponse for the watch stream parser."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None) -> None:
        self.chunks, self.error = chunks, error
        self.closed = False

    def stream(self, amt: int | None = None, decode_content: bool = True) -> Iterator[bytes]:
        yield from self.chunks
        if self.error is not None:
            raise self.error

    def shutdown(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass


def test_watch_stream_splits_events_across_and_within_chunks() -> None:
    e1 = b'{"type":"ADDED","object":{"metadata":{"resourceVersion":"1"}}}'
    e2 = b'{"type":"MODIFIED","object":{"metadata":{"resourceVersion":"2"}}}'
    e3 = b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"3"}}}'
    chunks = [e1 + b"\n" + e2[:10], e2[10:] + b"\n", b"", e3]  # the last one lacks its newline
    stream = _HttpWatchStream(_Resp(chunks))  # type: ignore[arg-type]
    got = [(t, o["metadata"]["resourceVersion"]) for t, o in stream]
    assert got == [("ADDED", "1"), ("MODIFIED", "2"), ("BOOKMARK", "3")]


def test_watch_stream_maps_read_timeout_to_idle_timeout_and_other_errors_to_transport() -> None:
    timeout = urllib3.exceptions.ReadTimeoutError(None, "/x", "Read timed out.")  # type: ignore[arg-type]
    with pytest.raises(WatchIdleTimeout):
        list(_HttpWatchStream(_Resp([], timeout)))  # type: ignore[arg-type]
    broken = urllib3.exceptions.ProtocolError("Response ended prematurely")
    with pytest.raises(TransportError) as err:
        list(_HttpWatchStream(_Resp([], broken)))  # type: ignore[arg-type]
    assert not isinstance(err.value, WatchIdleTimeout)
    # Closed from another thread: whatever the reader sees next ends the stream quietly.
    closed = _HttpWatchStream(_Resp([], broken))  # type: ignore[arg-type]
    closed.close()
    assert list(closed) == []
