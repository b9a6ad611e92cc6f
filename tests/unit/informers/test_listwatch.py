from __future__ import annotations

from kubernetes import client

from informers.errors import ApiError, TransportError, WatchIdleTimeout, is_expired, is_retriable_watch_error
from informers.errors import is_too_large_resource_version as too_large
from informers.listwatch import ApiListerWatcher, ListOptions, Resource


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
