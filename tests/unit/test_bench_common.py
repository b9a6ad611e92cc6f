"""The benchmarks' pure helpers: percentiles, the API server's request counters, hand-off pairing."""

from __future__ import annotations

import math

import pytest

from bench.common import (
    chain_spec,
    diff_totals,
    fanout_spec,
    handoffs,
    mutating_by_resource,
    parse_request_totals,
    percentile,
)


def _sample(value: int, *, verb: str, resource: str, subresource: str = "", code: str = "200") -> str:
    group = "" if resource in ("events", "pods") else "workflow.example.com"
    return (f'apiserver_request_total{{code="{code}",component="apiserver",dry_run="",group="{group}",'
            f'resource="{resource}",scope="resource",subresource="{subresource}",verb="{verb}",'
            f'version="v1"}} {value}')


METRICS = "\n".join([
    "# HELP apiserver_request_total [STABLE] Counter of apiserver requests",
    "# TYPE apiserver_request_total counter",
    _sample(10, verb="POST", resource="steps", code="201"),
    _sample(2, verb="POST", resource="steps", code="409"),
    _sample(20, verb="PATCH", resource="steps", subresource="status"),
    _sample(7, verb="POST", resource="events"),
    _sample(3, verb="LIST", resource="pods"),
    _sample(1, verb="WATCH", resource='a \\"quoted\\" one'),
    'apiserver_request_duration_seconds_count{verb="POST"} 99',
]) + "\n"


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([1.0, 2.0, 3.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0], 100) == 3.0
    assert percentile(list(range(101)), 99) == pytest.approx(99.0)
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))


def test_request_totals_fold_codes_and_skip_other_metrics() -> None:
    totals = parse_request_totals(METRICS)
    assert totals[("POST", "steps", "", "201")] == 10
    assert totals[("POST", "steps", "", "409")] == 2
    assert totals[("PATCH", "steps", "status", "200")] == 20
    assert totals[("LIST", "pods", "", "200")] == 3
    assert totals[("WATCH", 'a "quoted" one', "", "200")] == 1
    assert all(k[0] != "" for k in totals)


def test_mutating_requests_by_resource_from_a_diff() -> None:
    before = parse_request_totals(METRICS)
    after = dict(before)
    after[("POST", "steps", "", "201")] += 5
    after[("POST", "steps", "", "409")] += 1
    after[("PATCH", "steps", "status", "200")] += 10
    after[("LIST", "pods", "", "200")] += 100
    after[("DELETE", "steps", "", "200")] = 1
    delta = diff_totals(before, after)
    assert mutating_by_resource(delta) == {"create steps": 6, "delete steps": 1, "patch steps/status": 10}
    assert mutating_by_resource(delta, frozenset({"409"})) == {"create steps": 1}


def test_handoffs_wait_for_the_last_upstream() -> None:
    specs = {"wf": [{"name": "a"}, {"name": "b"}, {"name": "c", "dependOns": [{"name": "a"}, {"name": "b"}]}]}
    success = {("wf", "a"): 10.0, ("wf", "b"): 12.0}
    run = {("wf", "a"): 9.0, ("wf", "b"): 11.0, ("wf", "c"): 12.5}
    assert handoffs(specs, success, run) == [pytest.approx(0.5)]
    assert handoffs(specs, {("wf", "a"): 10.0}, run) == []  # an upstream never seen Success


def test_shapes() -> None:
    chain = chain_spec(3, fail_last=True)
    assert [s.get("dependOns") for s in chain] == [None, [{"name": "s0"}], [{"name": "s1"}]]
    assert chain[-1]["stepTemplate"]["parameters"] == {"runError": "permanent"}
    fan = fanout_spec(4)
    assert len(fan) == 4
    assert all(s["dependOns"] == [{"name": "s0"}] for s in fan[1:])
    assert all(s["stepTemplate"]["parameters"] == {} for s in fan)
