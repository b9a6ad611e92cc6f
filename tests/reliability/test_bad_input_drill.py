"""Bad input drill.

1. Hypothesis-generated Workflow specs - wrong types, missing fields, huge parameter maps, cycles, up to
   thousands of steps, unicode and overlong names, unknown step types - are sent to the real API server
   while valid workflows are submitted at the same time. Each bad spec is either rejected by the API
   server with a clear message (a 4xx Status naming the field) or ends in a terminal phase; a spec the
   CRD cannot judge (a cycle, an unknown step type) ends Failed with a ``SpecValid=False`` condition
   naming the problem. The controller never crashes (alive throughout, no traceback or
   ``log.exception`` line in its log) and every valid workflow succeeds.
2. Start-up: a malformed config file exits 2 naming the problem; a kubeconfig that does not load exits
   2 naming it; an unreachable API server is not fatal - the controller keeps retrying, says why in
   its log, is not ready (without leader election), and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetestenv import ControlPlane
from tests.reliability.drills import (
    TERMINAL,
    Workflows,
    controller,
    controller_command,
    drill_config,
    phase_of,
    report,
    wait_for,
    workflow_body,
)

KNOWN_TYPES = ("empty", "fail", "sleep")
EXAMPLES = int(os.environ.get("RELIABILITY_BAD_SPECS", "60"))

# -- strategies ---------------------------------------------------------------------------------------

valid_step_name = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
odd_text = st.one_of(
    st.text(min_size=0, max_size=20),  # unicode, empty, control characters
    st.text(alphabet="äöü漢字🙂", min_size=1, max_size=10),
    st.just("x" * 300),
    st.just("UPPER_and.dots"),
)
wrong_type = st.one_of(st.integers(), st.booleans(), st.none(), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
                       st.floats(allow_nan=False))
huge_map = st.integers(min_value=60, max_value=120).map(
    lambda n: {f"k{i}": "v" * (i * 97 % 9000) for i in range(n)})


@st.composite
def step_lists(draw: st.DrawFn) -> list[Any]:
    """Mostly well-formed step lists with defects mixed in: cycles, unknown names, duplicates, bad types."""
    many = draw(st.sampled_from([0, 0, 0, 0, 70, 2000]))  # sometimes more steps than the CRD allows
    n = many or draw(st.integers(min_value=0, max_value=8))
    names = [f"s{i}" for i in range(n)] if many else draw(
        st.lists(valid_step_name, min_size=n, max_size=n))
    steps: list[Any] = []
    for i, name in enumerate(names):
        step: dict[str, Any] = {"name": draw(st.one_of(st.just(name), st.just(name), odd_text, wrong_type))
                                if not many else name}
        kind = draw(st.sampled_from(["fine", "fine", "fine", "unknown-type", "wrong-type", "no-template",
                                     "huge-params", "bad-params", "bad-retry"])) if not many else "fine"
        template: dict[str, Any] = {"type": draw(st.sampled_from(KNOWN_TYPES))}
        if kind == "unknown-type":
            template["type"] = draw(st.sampled_from(["no-such-type", "Fail", "http2", "x"]))
        elif kind == "wrong-type":
            template["type"] = draw(wrong_type)
        elif kind == "huge-params":
            template["parameters"] = draw(huge_map)
        elif kind == "bad-params":
            template["parameters"] = draw(st.one_of(wrong_type, st.dictionaries(st.text(max_size=5),
                                                                               wrong_type, min_size=1,
                                                                               max_size=3)))
        elif kind == "bad-retry":
            template["retryPolicy"] = {"runRetryLimit": draw(st.one_of(st.just("three"), st.integers()))}
        if kind != "no-template":
            step["stepTemplate"] = template
        if names and not many:
            deps = draw(st.lists(st.one_of(st.sampled_from(names), st.just("nope"), odd_text),
                                 max_size=3, unique_by=str))
            if deps:
                step["dependOns"] = draw(st.one_of(st.just([{"name": d} for d in deps]), wrong_type))
        elif many and i:
            step["dependOns"] = [{"name": names[i - 1]}]
        steps.append(step)
    if draw(st.booleans()) and len(steps) >= 2 and not many:  # a cycle through valid names
        cycle = [s for s in steps if isinstance(s, dict) and isinstance(s.get("name"), str)
                 and re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", s["name"])]
        if len(cycle) >= 2:
            for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True):
                a["dependOns"] = [{"name": b["name"]}]
    return steps


@st.composite
def plausible_workflows(draw: st.DrawFn) -> dict[str, Any]:
    """Specs the CRD accepts, with the defects only the controller can see (a cycle, an unknown step
    type) mixed in, and big-but-allowed parameter maps, unicode values and unknown fields (pruned)."""
    names = draw(st.lists(valid_step_name, min_size=1, max_size=8, unique=True))
    steps: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        kind = draw(st.sampled_from([*KNOWN_TYPES, "empty", "no-such-type"]))
        template: dict[str, Any] = {"type": kind}
        if draw(st.integers(min_value=0, max_value=3)) == 0:
            template["parameters"] = draw(st.one_of(
                st.integers(min_value=1, max_value=64).map(lambda n: {f"p{j}": "ü" * 2000 for j in range(n)}),
                # "x...": never one of the fail step's own parameters (ignorable=always would never end)
                st.dictionaries(st.from_regex(r"x[a-zA-Z0-9]{0,20}", fullmatch=True),
                                st.text(max_size=50), max_size=10)))
        if kind == "sleep":
            template.setdefault("parameters", {})["seconds"] = "0"
        step: dict[str, Any] = {"name": name, "stepTemplate": template}
        earlier = names[:i]
        if earlier:
            deps = draw(st.lists(st.sampled_from(earlier), max_size=2, unique=True))
            if deps:
                step["dependOns"] = [{"name": d} for d in deps]
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            step["unknownField"] = draw(st.text(max_size=10))
        steps.append(step)
    if len(steps) >= 2 and draw(st.integers(min_value=0, max_value=3)) == 0:
        a, b = draw(st.lists(st.sampled_from(range(len(steps))), min_size=2, max_size=2, unique=True))
        steps[min(a, b)]["dependOns"] = [{"name": steps[max(a, b)]["name"]}]  # closes a cycle if b -> a
        steps[max(a, b)]["dependOns"] = [{"name": steps[min(a, b)]["name"]}]
    spec: dict[str, Any] = {"steps": steps,
                            "queue": draw(st.one_of(st.just("default"), st.text(min_size=1, max_size=63)))}
    if draw(st.booleans()):
        spec["parameters"] = {f"w{j}": "x" * 8000 for j in range(draw(st.integers(0, 64)))}
    return {"apiVersion": "workflow.example.com/v1alpha1", "kind": "Workflow", "metadata": {"name": "ok"},
            "spec": spec}


@st.composite
def bad_workflows(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(min_value=0, max_value=4)) < 3:
        body: dict[str, Any] = draw(plausible_workflows())
        return body
    spec: dict[str, Any] = {}
    if draw(st.integers(min_value=0, max_value=9)):
        spec["steps"] = draw(st.one_of(step_lists(), step_lists(), step_lists(), wrong_type))
    for key, strategy in (("queue", st.one_of(odd_text, wrong_type)),
                          ("rollbackPolicy",
                           st.one_of(st.sampled_from(["Always", "Sometimes", ""]), wrong_type)),
                          ("parameters", st.one_of(huge_map, wrong_type)),
                          ("callback", st.one_of(st.just({}), st.fixed_dictionaries({"url": wrong_type}))),
                          ("surprise", st.text(max_size=5))):
        if draw(st.integers(min_value=0, max_value=5)) == 0:
            spec[key] = draw(strategy)
    name = draw(st.one_of(st.just("ok"), st.just("ok"), st.just("ok"), odd_text))
    body = {"apiVersion": "workflow.example.com/v1alpha1", "kind": "Workflow", "metadata": {"name": name}}
    if draw(st.integers(min_value=0, max_value=9)):
        body["spec"] = spec if draw(st.integers(min_value=0, max_value=9)) else draw(wrong_type)
    return body


# -- what the drill expects of an accepted spec ---------------------------------------------------------


def problem_the_crd_cannot_see(spec: dict[str, Any]) -> frozenset[str] | None:
    """The condition reasons that would name the defects of an accepted spec (``Cycle``,
    ``UnknownStepType``; either one when it has both), else None."""
    steps = spec.get("steps") or []
    installed = {*KNOWN_TYPES, "empty", "error", "http", "random", "retryable_error"}
    found = set()
    if any(s["stepTemplate"]["type"] not in installed for s in steps):
        found.add("UnknownStepType")
    deps = {s["name"]: [d["name"] for d in s.get("dependOns") or []] for s in steps}
    state: dict[str, int] = {}

    def cyclic(n: str) -> bool:
        state[n] = 1
        for d in deps.get(n, []):
            if state.get(d) == 1 or (state.get(d) is None and cyclic(d)):
                return True
        state[n] = 2
        return False

    if any(state.get(n) is None and cyclic(n) for n in deps):
        found.add("Cycle")
    return frozenset(found) or None


def clear_rejection(exc: ApiException) -> str | None:
    """The API server's message if the rejection is a clear 4xx Status, else None."""
    if not exc.status or not 400 <= exc.status < 500:
        return None
    try:
        status = json.loads(exc.body)
    except (TypeError, ValueError):
        return None
    message = str(status.get("message") or "")
    return message if message.strip() else None


@pytest.mark.timeout(900)
def test_bad_specs_are_rejected_or_fail_clearly_and_never_crash_the_controller(
        drill_plane: ControlPlane, drill_api: client.ApiClient, drill_namespace: str, tmp_path: Path) -> None:
    seed_value = int(os.environ.get("RELIABILITY_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"RELIABILITY bad-input: seed={seed_value} (rerun with RELIABILITY_SEED={seed_value})", flush=True)
    started = time.monotonic()
    wfs = Workflows(drill_api, drill_namespace)
    counts = {"tried": 0, "rejected": 0, "accepted": 0}
    accepted: dict[str, frozenset[str] | None] = {}  # name -> reasons that would name its problem
    unclear: list[str] = []
    server_errors: list[str] = []
    valid: list[str] = []
    stop = threading.Event()
    with controller(drill_plane.kubeconfig, drill_namespace, tmp_path / "controller", drill_config()) as proc:

        def submit_valid() -> None:  # valid workflows submitted while the bad ones arrive
            i = 0
            while not stop.wait(1.5):
                name = f"valid-{i:03d}"
                wfs.create(workflow_body(name, [{"name": "a", "stepTemplate": {"type": "empty"}},
                                                {"name": "b", "dependOns": [{"name": "a"}],
                                                 "stepTemplate": {"type": "fail"}}]))
                valid.append(name)
                i += 1

        feeder = threading.Thread(target=submit_valid, name="valid-feeder", daemon=True)
        feeder.start()

        @seed(seed_value)
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))
        @given(bad_workflows())
        def send(body: dict[str, Any]) -> None:
            counts["tried"] += 1
            if body["metadata"]["name"] == "ok":
                body["metadata"]["name"] = f"bad-{counts['tried']:04d}"
            try:
                created = wfs.create(body)
            except ApiException as exc:
                counts["rejected"] += 1
                if exc.status and exc.status >= 500:
                    server_errors.append(f"{exc.status}: {str(exc.body)[:300]}")
                elif clear_rejection(exc) is None:
                    unclear.append(f"{exc.status}: {str(exc.body)[:300]}")
                return
            counts["accepted"] += 1
            accepted[created["metadata"]["name"]] = problem_the_crd_cannot_see(created["spec"])
            assert proc.alive, proc.tail()

        try:
            send()
        finally:
            stop.set()
            feeder.join(30)
        finals = wfs.wait_terminal([*accepted, *valid], timeout=420, on_poll=lambda: _alive(proc))
        assert proc.alive, proc.tail()
        exit_code = proc.terminate()
    unnamed = []
    for name, problem in accepted.items():
        wf = finals[name]
        conditions = {c["type"]: c for c in wf["status"].get("conditions") or []}
        if problem is not None:
            cond = conditions.get("SpecValid") or {}
            if (phase_of(wf) != "Failed" or cond.get("status") != "False" or cond.get("reason") not in problem
                    or not cond.get("message")):
                unnamed.append(f"{name}: expected Failed with SpecValid=False/{sorted(problem)}, "
                               f"got {phase_of(wf)} {conditions}")
        elif phase_of(wf) == "Failed" and not any(c.get("status") == "False" and c.get("message")
                                                  for c in conditions.values()):
            unnamed.append(f"{name}: Failed without a condition naming the problem: {wf['status']}")
    valid_ok = sum(1 for n in valid if phase_of(finals[n]) == "Success")
    crash_lines = proc.crashes()
    terminal = sum(1 for n in accepted if phase_of(finals[n]) in TERMINAL)
    report("bad-input", bad_specs_tried=counts["tried"], rejected=counts["rejected"], terminal=terminal,
           failed_with_condition=sum(1 for n, p in accepted.items() if p is not None),
           unclear_rejections=len(unclear), server_errors=len(server_errors), unnamed_problems=len(unnamed),
           valid_submitted=len(valid), valid_succeeded=valid_ok,
           crashes=len(crash_lines) + (exit_code != 0), seconds=round(time.monotonic() - started))
    assert not unclear, unclear[:10]
    assert not server_errors, server_errors[:10]
    assert not unnamed, unnamed[:10]
    assert terminal == counts["accepted"]
    assert valid
    assert valid_ok == len(valid), {n: phase_of(finals[n]) for n in valid}
    assert not crash_lines, "\n".join(crash_lines[:20])
    assert exit_code == 0, proc.tail()


def _alive(proc: Any) -> None:
    assert proc.alive, f"the controller exited by itself:\n{proc.tail()}"


# -- start-up -----------------------------------------------------------------------------------------

MALFORMED_CONFIGS = {
    "invalid YAML": ("namespace: [unclosed\n", r"invalid YAML at line"),
    "unknown key": ("controllerConfig:\n  quue: {strategy: FIFO}\n", r"controllerConfig\.quue: unknown key"),
    "wrong type": ("controllerConfig:\n  queue: {maxRunningCount: ten}\n",
                   r"controllerConfig\.queue\.maxRunningCount: expected an integer"),
    "bad strategy": ("controllerConfig:\n  queue: {strategy: RANDOM}\n",
                     r"controllerConfig\.queue\.strategy"),
    "not a mapping": ("- a\n- b\n", r"expected a mapping"),
}


def _run(argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL, check=False)


def test_malformed_config_files_and_kubeconfigs_exit_2_naming_the_problem(
        drill_plane: ControlPlane, tmp_path: Path) -> None:
    results = {}
    for label, (text, expected) in MALFORMED_CONFIGS.items():
        path = tmp_path / f"{label.replace(' ', '-')}.yaml"
        path.write_text(text)
        done = _run([*controller_command(), "--kubeconfig", str(drill_plane.kubeconfig),
                     "--config", str(path),
                     "--metrics-bind-address", "0", "--health-probe-bind-address", "0"])
        results[label] = done.returncode
        assert done.returncode == 2, (label, done.returncode, done.stderr[-2000:])
        assert re.search(expected, done.stderr), (label, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
    missing = _run([*controller_command(), "--kubeconfig", str(tmp_path / "no-such-kubeconfig"),
                    "--metrics-bind-address", "0", "--health-probe-bind-address", "0"])
    results["missing kubeconfig"] = missing.returncode
    report("startup-config", malformed_configs=len(MALFORMED_CONFIGS),
           exit_codes="/".join(f"{k.replace(' ', '_')}={v}" for k, v in results.items()))
    assert missing.returncode == 2, (missing.returncode, missing.stderr[-2000:])
    assert "no-such-kubeconfig" in missing.stderr, missing.stderr[-2000:]
    assert "Traceback" not in missing.stderr, missing.stderr[-2000:]


def test_an_unreachable_api_server_is_retried_not_ready_and_stops_cleanly(tmp_path: Path) -> None:
    """What is right: at start-up an API server that does not answer is a transient condition (a
    control-plane upgrade, a network blip as the pod starts); crashing would only add CrashLoopBackOff
    delays. So the controller keeps retrying with backoff, says why on every retry (the address and the
    error), reports not-ready on /readyz (a standby is ready only while it reaches its Lease, see
    controller.manager), and exits 0 on SIGTERM."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}",
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    figures: dict[str, object] = {}
    for mode, extra, message in (("no-leader-elect", ["--no-leader-elect"], "list/watch failed"),
                                 ("leader-elect", [], "lease unavailable")):
        log_path = tmp_path / f"{mode}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
        with log_path.open("wb") as out:
            popen = subprocess.Popen(
                [*controller_command(), "--kubeconfig", str(kubeconfig), "--log-format", "json",
                 "--metrics-bind-address", "0", "--health-probe-bind-address", "127.0.0.1:0", *extra],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            def lines(log_path: Path = log_path) -> list[dict[str, Any]]:
                out = []
                for line in log_path.read_text(errors="replace").splitlines():
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        out.append({"raw": line})
                return out

            def retried(message: str = message) -> list[dict[str, Any]]:
                return [r for r in lines() if r.get("event") == message
                        and f"port={port}" in str(r.get("error"))
                        and "Connection refused" in str(r.get("error"))][1:]

            retries = wait_for(retried, timeout=60, message=f"two '{message}' lines naming the address")
            url = next(r["url"] for r in lines()
                       if r.get("event") == "serving" and r.get("endpoint") == "health" and r.get("url"))
            ready = _status(url + "/readyz")
            alive = popen.poll() is None
            popen.send_signal(signal.SIGTERM)
            code = popen.wait(timeout=60)
        finally:
            if popen.poll() is None:
                popen.kill()
                popen.wait(30)
        figures[f"{mode}_retries_logged"] = len(retries) + 1
        figures[f"{mode}_readyz"] = ready
        figures[f"{mode}_exit_on_sigterm"] = code
        assert alive, log_path.read_text()[-3000:]
        assert code == 0, log_path.read_text()[-3000:]
        tracebacks = [r for r in lines() if "raw" in r and "Traceback" in r["raw"]]
        assert not tracebacks, log_path.read_text()[-3000:]
        assert ready != 200, f"{mode}: ready although the API server was never reached"
    report("startup-unreachable", **figures)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
