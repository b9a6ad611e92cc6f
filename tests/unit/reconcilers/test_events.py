"""EventRecorder without an API server: aggregation keys, truncation, names, the spam filter (fake
clock), the bounded queue, and aggregation through the in-memory sink."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from informers import FakeClock
from informers.testing import wait_until
from reconcilers.events import (
    MAX_MESSAGE_BYTES,
    EventRecorder,
    Involved,
    MemoryEventSink,
    SpamFilter,
    event_key,
    event_name,
    truncate_message,
)


def _wf(name: str = "wf", rv: str = "7", uid: str = "u-1") -> dict[str, Any]:
    return {"apiVersion": "workflow.example.com/v1alpha1", "kind": "Workflow",
            "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": rv},
            "spec": {"steps": []}}


class _Wall:
    """A wall clock for timestamps that tests move by hand."""

    def __init__(self) -> None:
        self.t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
def sink() -> MemoryEventSink:
    return MemoryEventSink()


@pytest.fixture
def wall() -> _Wall:
    return _Wall()


@pytest.fixture
def recorder(sink: MemoryEventSink, wall: _Wall) -> Iterator[EventRecorder]:
    rec = EventRecorder(client.ApiClient(), sink=sink, now=wall, instance="host-1", clock=FakeClock())
    yield rec
    rec.stop()


def test_truncate_message_counts_utf8_bytes_and_never_splits_a_character() -> None:
    assert truncate_message("short") == "short"
    long = "é" * 1000  # 2000 bytes
    cut = truncate_message(long)
    assert len(cut.encode()) <= MAX_MESSAGE_BYTES
    assert cut.endswith("...")
    assert set(cut[:-3]) == {"é"}
    exact = "x" * MAX_MESSAGE_BYTES
    assert truncate_message(exact) == exact


def test_event_names_are_the_object_name_plus_16_hex_and_unique() -> None:
    names = {event_name("my-wf") for _ in range(100)}
    assert len(names) == 100
    assert all(re.fullmatch(r"my-wf\.[0-9a-f]{16}", n) for n in names)
    assert len(event_name("a" * 300)) <= 253


def test_aggregation_key_ignores_the_resource_version_but_not_the_message() -> None:
    a, b = Involved.of(_wf(rv="1")), Involved.of(_wf(rv="2"))
    assert event_key(a, "Normal", "Started", "m") == event_key(b, "Normal", "Started", "m")
    assert event_key(a, "Normal", "Started", "m") != event_key(a, "Normal", "Started", "other")
    assert event_key(a, "Normal", "Started", "m") != event_key(a, "Warning", "Started", "m")
    other = Involved.of(_wf(uid="u-2"))
    assert event_key(a, "Normal", "Started", "m") != event_key(other, "Normal", "Started", "m")


def test_involved_object_is_copied_out_of_the_object() -> None:
    inv = Involved.of(_wf())
    assert inv.to_dict() == {"apiVersion": "workflow.example.com/v1alpha1", "kind": "Workflow", "name": "wf",
                             "namespace": "ns", "uid": "u-1", "resourceVersion": "7"}


def test_spam_filter_is_a_token_bucket_per_object() -> None:
    clock = FakeClock()
    f = SpamFilter(clock, burst=2, qps=0.5)
    k1, k2 = ("u1", "Workflow", "ns", "a"), ("u2", "Workflow", "ns", "b")
    assert f.reserve(k1) == 0.0
    assert f.reserve(k1) == 0.0
    assert f.reserve(k1) == pytest.approx(2.0)  # one token per 2 s
    assert f.reserve(k2) == 0.0  # another object has its own bucket
    clock.advance(1.0)
    assert f.reserve(k1) == pytest.approx(1.0)
    clock.advance(1.0)
    assert f.reserve(k1) == 0.0


def test_record_rejects_unknown_types(recorder: EventRecorder) -> None:
    with pytest.raises(ValueError, match="Normal or Warning"):
        recorder.record(_wf(), "Error", "Boom", "no")


def test_a_full_queue_drops_without_blocking(sink: MemoryEventSink) -> None:
    rec = EventRecorder(client.ApiClient(), sink=sink, max_queue=3)  # never started: nothing drains
    done = threading.Event()

    def flood() -> None:
        for i in range(10):
            rec.record(_wf(), "Normal", "Tick", f"m{i}")
        done.set()

    t = threading.Thread(target=flood)
    t.start()
    assert done.wait(10), "record() blocked on a full queue"
    t.join()
    stats = rec.stats()
    assert (stats.recorded, stats.dropped) == (3, 7)
    assert sink.writes == []


def test_repeats_queued_together_make_one_event_with_their_count(recorder: EventRecorder,
                                                                 sink: MemoryEventSink, wall: _Wall) -> None:
    first = wall.t
    for i in range(50):
        recorder.record(_wf(rv=str(i)), "Warning", "Retrying", "step a failed: HTTP 500")
        wall.t += timedelta(seconds=1)
    recorder.start()
    assert recorder.flush()
    assert sink.writes == [("create", "ns", sink.writes[0][2])]
    (event,) = sink.events.values()
    assert event["count"] == 50
    assert event["firstTimestamp"] == first.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert event["lastTimestamp"] == (first + timedelta(seconds=49)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert event["involvedObject"]["resourceVersion"] == "49"  # the latest occurrence's object
    assert event["type"] == "Warning"
    assert event["reason"] == "Retrying"
    assert event["source"] == {"component": "workflow-controller", "host": "host-1"}
    assert (event["reportingComponent"], event["reportingInstance"]) == ("workflow-controller", "host-1")


def test_later_repeats_patch_count_and_last_timestamp(recorder: EventRecorder, sink: MemoryEventSink,
                                                       wall: _Wall) -> None:
    recorder.start()
    recorder.record(_wf(), "Normal", "Started", "running")
    assert recorder.flush()
    for _ in range(3):
        wall.t += timedelta(minutes=1)
        recorder.record(_wf(), "Normal", "Started", "running")
        assert recorder.flush()
    assert [w[0] for w in sink.writes] == ["create", "patch", "patch", "patch"]
    (event,) = sink.events.values()
    assert event["count"] == 4
    assert event["lastTimestamp"] == wall.t.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert recorder.stats().created == 1
    assert recorder.stats().patched == 3


def test_different_messages_make_different_events(recorder: EventRecorder, sink: MemoryEventSink) -> None:
    recorder.record(_wf(), "Warning", "Failed", "one")
    recorder.record(_wf(), "Warning", "Failed", "two")
    recorder.record(_wf(), "Warning", "Failed", "one")
    recorder.start()
    assert recorder.flush()
    counts = sorted((e["message"], e["count"]) for e in sink.events.values())
    assert counts == [("one", 2), ("two", 1)]


def test_an_expired_event_is_created_again_with_the_whole_count(recorder: EventRecorder,
                                                                 sink: MemoryEventSink) -> None:
    recorder.start()
    recorder.record(_wf(), "Normal", "Started", "running")
    assert recorder.flush()
    (key,) = sink.events
    sink.delete(*key)
    recorder.record(_wf(), "Normal", "Started", "running")
    assert recorder.flush()
    (event,) = sink.events.values()
    assert event["count"] == 2
    assert [w[0] for w in sink.writes] == ["create", "create"]


def test_failed_writes_keep_their_occurrences_for_the_next_write(recorder: EventRecorder,
                                                                  sink: MemoryEventSink) -> None:
    recorder.start()
    sink.fail = 500
    recorder.record(_wf(), "Normal", "Started", "running")
    assert recorder.flush()
    assert recorder.stats().failed == 1
    assert not sink.events
    sink.fail = None
    recorder.record(_wf(), "Normal", "Started", "running")
    assert recorder.flush()
    (event,) = sink.events.values()
    assert event["count"] == 2


def test_the_spam_filter_defers_writes_and_keeps_the_count(sink: MemoryEventSink, wall: _Wall) -> None:
    clock = FakeClock()
    rec = EventRecorder(client.ApiClient(), sink=sink, now=wall, clock=clock, spam_burst=1, spam_qps=0.1)
    rec.start()
    try:
        rec.record(_wf(), "Warning", "Retrying", "boom")
        assert rec.flush()
        for _ in range(3):
            rec.record(_wf(), "Warning", "Retrying", "boom")
            assert rec.flush()
        (event,) = sink.events.values()
        assert event["count"] == 1  # the bucket is empty: the repeats wait
        assert rec.stats().deferred == 1  # one deferred write carries all three
        clock.block_until_waiters(1)  # the recorder's thread is parked until the bucket refills
        clock.advance(9.9)
        assert event["count"] == 1
        clock.advance(0.1)
        wait_until(lambda: rec.stats().patched == 1, what="the deferred write")
        (event,) = sink.events.values()
        assert event["count"] == 4
    finally:
        rec.stop()


def test_stop_writes_what_is_queued_then_drops_later_records(sink: MemoryEventSink) -> None:
    rec = EventRecorder(client.ApiClient(), sink=sink, clock=FakeClock())
    rec.record(_wf(), "Normal", "Started", "running")
    rec.start()
    rec.stop()
    assert len(sink.events) == 1
    rec.record(_wf(), "Normal", "Started", "running")
    assert rec.stats().dropped == 1
