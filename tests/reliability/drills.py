"""Shared drill helpers: the controller subprocess, a callback receiver whose failure mode can be switched,
a watcher that records every phase a Step object passes through, and the summary line each drill prints
(random DAGs and the call-log invariants are in :mod:`tests.reliability.invariants`).

Time: nothing here asserts how fast anything is. Waits poll with generous timeouts (two cores, shared with
other suites); the drills assert outcomes, orderings and counts only.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from kubetestenv import REPO_ROOT
from tests.integration.engine_fixtures import wait_for

GROUP, VERSION = "workflow.example.com", "v1alpha1"
CRD_DIR = REPO_ROOT / "deploy" / "crds"
TERMINAL = frozenset({"Success", "RollBacked", "Failed"})

#: The summaries printed so far in this session; conftest repeats them in the terminal summary.
SUMMARIES: list[str] = []

#: ``spec.callback.signingSecretRef`` as the callbacks sender reads it. deploy/crds lacks it so far
#: (reported by tests/integration/test_callbacks.py, xfail there); the drills' own plane gets the CRD
#: with this one optional field added when it is missing, as that test does.
SIGNING_SECRET_REF = {
    "type": "object",
    "required": ["name", "key"],
    "properties": {"name": {"type": "string", "minLength": 1}, "key": {"type": "string", "minLength": 1}},
}


def report(drill: str, **figures: object) -> str:
    """Print (and remember) one summary line: ``RELIABILITY <drill>: key=value ...``."""
    line = f"RELIABILITY {drill}: " + " ".join(f"{k}={v}" for k, v in figures.items())
    print(line, flush=True)
    SUMMARIES.append(line)
    return line


def seeded(name: str) -> random.Random:
    """A drill's random source: ``RELIABILITY_SEED`` if set, else a fresh seed; printed either way."""
    seed = int(os.environ.get("RELIABILITY_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"RELIABILITY {name}: seed={seed} (rerun with RELIABILITY_SEED={seed})", flush=True)
    return random.Random(seed)


# --------------------------------------------------------------------------------------------------
# CRDs and workflows


def install_drill_crds(api: client.ApiClient) -> None:
    """deploy/crds (plus ``signingSecretRef``, see above), then wait until Established."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        if body["spec"]["names"]["kind"] == "Workflow":
            for version in body["spec"]["versions"]:
                spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
                spec["properties"]["callback"]["properties"].setdefault(
                    "signingSecretRef", copy.deepcopy(SIGNING_SECRET_REF))
        names.append(body["metadata"]["name"])
        try:
            ext.create_custom_resource_definition(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = ext.read_custom_resource_definition(body["metadata"]["name"])
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            ext.replace_custom_resource_definition(body["metadata"]["name"], body)
    for name in names:
        def established(n: str = name) -> bool:
            conditions = ext.read_custom_resource_definition(n).status.conditions or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        wait_for(established, timeout=60, message=f"CRD {name} established")


def workflow_body(name: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workflow", "metadata": {"name": name},
            "spec": {"steps": steps, **spec}}


class Workflows:
    """The drill's view of Workflow objects in one namespace (direct API reads, no cache)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "workflows", body, _request_timeout=30)
        return out

    def create_retrying(self, body: Mapping[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        """Create, retrying while the API server is away (a 409 means an earlier try got through)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.create(body)
            except ApiException as exc:
                if exc.status == 409:
                    return self.get(body["metadata"]["name"]) or {}
                if exc.status and exc.status < 500 and exc.status != 429:
                    raise
                if time.monotonic() > deadline:
                    raise
            except Exception:  # connection refused/reset while the API server restarts
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            out: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "workflows", name, _request_timeout=30)
            return out
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def all(self) -> dict[str, dict[str, Any]]:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "workflows",
                                                           _request_timeout=60)
        return {w["metadata"]["name"]: w for w in listed["items"]}

    def steps(self) -> list[dict[str, Any]]:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "steps",
                                                           _request_timeout=60)
        return list(listed["items"])

    def phases(self) -> dict[str, str]:
        return {n: phase_of(w) for n, w in self.all().items()}

    def wait_terminal(self, names: Iterable[str], *, timeout: float,
                      on_poll: Callable[[], None] | None = None) -> dict[str, dict[str, Any]]:
        """Wait until every named workflow is in a terminal phase; returns them by name."""
        wanted = set(names)
        latest: dict[str, dict[str, Any]] = {}

        def done() -> bool:
            if on_poll is not None:
                on_poll()
            try:
                latest.update(self.all())
            except Exception:  # the API server may be restarting; try again
                return False
            return wanted <= set(latest) and all(phase_of(latest[n]) in TERMINAL for n in wanted)

        def stuck() -> str:
            left = {n: phase_of(latest[n]) if n in latest else "missing" for n in sorted(wanted)
                    if n not in latest or phase_of(latest[n]) not in TERMINAL}
            return f"{len(left)} workflows terminal: not yet {dict(list(left.items())[:20])}"

        wait_for(done, timeout=timeout, interval=1.0, message=stuck)
        return {n: latest[n] for n in wanted}


def phase_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase") or "Pending")


# --------------------------------------------------------------------------------------------------
# The controller process


def controller_command() -> list[str]:
    script = Path(sys.executable).parent / "workflow-controller"
    return [str(script)] if script.exists() else [sys.executable, "-m", "controller"]


#: Log messages of handled-but-unexpected exceptions (``log.exception`` in the engine): a crash of a
#: reconcile, a worker or a handler that the engine survived. Any of them in a drill is a finding.
CRASH_MESSAGES = frozenset({
    "reconcile crashed", "step worker crashed", "admission pass crashed", "callback sync failed",
    "event handler raised", "watch error handler raised", "on_started_leading failed",
    "engine part failed to stop", "endpoint failed",
})


@dataclass
class ControllerProcess:
    """``workflow-controller`` subprocesses, one at a time, all writing to one log (JSON lines).

    ``start`` launches a process (the previous one must be dead), ``sigkill`` kills it without warning
    and reaps it, ``terminate`` asks it to stop (SIGTERM) and reaps it. ``close`` kills whatever runs;
    drills call it in ``finally``. ``exits`` keeps every reaped process's exit code, in order.
    """

    kubeconfig: Path
    namespace: str
    workdir: Path
    config: dict[str, Any]
    extra_args: Sequence[str] = ("--no-leader-elect",)
    env: Mapping[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "controller.log"
        self.config_path = self.workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump({"namespace": self.namespace, **self.config}))

    def argv(self) -> list[str]:
        return [*controller_command(), "--kubeconfig", str(self.kubeconfig),
                "--config", str(self.config_path),
                "--leader-election-namespace", self.namespace,
                "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
                "--log-format", "json", "--log-level", "info", "--shutdown-grace-period", "5",
                *self.extra_args]

    def start(self) -> None:
        assert self.popen is None or self.popen.poll() is not None, "the previous controller still runs"
        # No proxy: callbacks and API calls go straight to their addresses (the URL-safety checks judge
        # the address a connection reaches; through a proxy only the URL check would apply).
        env = {k: v for k, v in os.environ.items()
               if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST") and not k.lower().endswith("_proxy")}
        env.update(self.env)
        with self.log_path.open("ab") as out:
            out.write(f"=== drill: controller start {self.starts + 1}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def _reap(self, timeout: float) -> None:
        assert self.popen is not None
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait(timeout=30)
        self.exits.append(code)

    def sigkill(self) -> None:
        if self.alive:
            assert self.popen is not None
            self.popen.send_signal(signal.SIGKILL)
            self._reap(30)

    def terminate(self, timeout: float = 40.0) -> int:
        """SIGTERM once the current process is up (its caches synced: a SIGTERM that arrives while
        Python is still importing, before the signal handlers exist, kills it with the default action,
        exit -15), then reap it; the exit code."""
        assert self.popen is not None
        if self.alive:
            wait_for(lambda: not self.alive or any(r.get("event") == "caches synced" for r in self.current()),
                     timeout=120, message=lambda: "the controller's caches synced:\n" + self.tail())
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            self._reap(timeout)
        return self.exits[-1] if self.exits else int(self.popen.returncode)

    def close(self) -> None:
        if self.alive:
            assert self.popen is not None
            self.popen.kill()
            self._reap(30)

    # -- the log --

    def text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    out.append(record)
        return out

    def current(self) -> list[dict[str, Any]]:
        """The records of the current (last started) process."""
        text = self.text()
        marker = text.rfind("=== drill: controller start")
        out = []
        for line in text[max(marker, 0):].splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    out.append(record)
        return out

    def count(self, message: str) -> int:
        return sum(1 for r in self.records() if r.get("event") == message)

    def crashes(self) -> list[str]:
        """Evidence of unhandled or unexpected exceptions: raw tracebacks (not JSON: an exception that
        escaped structlog, e.g. a dying thread) and the engine's own ``log.exception`` lines."""
        found = []
        for line in self.text().splitlines():
            if line.startswith("=== drill:"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                if "Traceback" in line or "Error" in line:
                    found.append(line[:500])
                continue
            if not isinstance(record, dict):
                continue
            if record.get("event") in CRASH_MESSAGES or record.get("level") == "critical":
                found.append(json.dumps(record)[:2000])
        return found

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


@contextlib.contextmanager
def controller(kubeconfig: Path, namespace: str, workdir: Path, config: dict[str, Any] | None = None,
               **kwargs: Any) -> Iterator[ControllerProcess]:
    """A started :class:`ControllerProcess` that is killed on the way out, whatever happened."""
    proc = ControllerProcess(kubeconfig, namespace, workdir, config or {}, **kwargs)
    try:
        proc.start()
        yield proc
    finally:
        proc.close()


def drill_config(**changes: Any) -> dict[str, Any]:
    """The controller's config file for drills: quick step limits, no client-side throttling wait."""
    cfg: dict[str, Any] = {
        "throttleQPS": 300,
        "rpcTimeoutMillSeconds": 5000,
        "idleTimeoutMillSeconds": 30000,
        "controllerConfig": {
            "queue": {"strategy": "FIFO", "maxRunningCount": 200},
            "stepDefaults": {"qps": 100, "concurrency": 8},
        },
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


# --------------------------------------------------------------------------------------------------
# A callback receiver whose behaviour the drill switches


class Receiver:
    """A local HTTP receiver on a fixed port. ``mode``: ``ok`` (200), ``error`` (500), ``slow`` (sleeps
    ``slow_seconds`` then 200) or ``down`` (nothing listens: connection refused). Every request that
    reached the handler is recorded with its event id and the answer given."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.mode = "down"
        self.slow_seconds = 3.0
        self._lock = threading.Lock()
        self.requests: list[tuple[str, int, dict[str, Any], dict[str, str]]] = []  # id, answer, body, headers
        self.raw_bodies: list[tuple[bytes, str]] = []  # the exact body bytes, X-Workflow-Signature
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def set(self, mode: str) -> None:
        assert mode in ("ok", "error", "slow", "down"), mode
        if mode == "down":
            self._stop_server()
        elif self._server is None:
            self._start_server()
        self.mode = mode

    def _start_server(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                mode = receiver.mode
                if mode == "slow":
                    time.sleep(receiver.slow_seconds)
                code = 500 if mode == "error" else 200
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"raw": raw.decode(errors="replace")}
                event_id = self.headers.get("X-Workflow-Event-Id") or str(body.get("id"))
                with receiver._lock:
                    receiver.requests.append((event_id, code, body, dict(self.headers.items())))
                    receiver.raw_bodies.append((raw, self.headers.get("X-Workflow-Signature") or ""))
                payload = b"{}"
                with contextlib.suppress(OSError):  # the sender may have given up (read timeout)
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="drill-receiver", daemon=True)
        self._thread.start()

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def close(self) -> None:
        self._stop_server()

    def snapshot(self) -> list[tuple[str, int, dict[str, Any], dict[str, str]]]:
        with self._lock:
            return list(self.requests)

    def delivered(self) -> Counter[str]:
        """Event id -> how many times it was answered 200 (i.e. delivered)."""
        return Counter(i for i, code, _, _ in self.snapshot() if code == 200)


# --------------------------------------------------------------------------------------------------
# Every phase each Step object passed through


class StepPhaseWatcher:
    """Watches the Step objects of one namespace and records, per (workflow, step), every phase seen.

    The watch sees every write (etcd delivers each revision), so a step that was ever Running is seen
    Running even if it moved on quickly - as long as the watch does not lose its place. It re-watches
    from its last resourceVersion when a stream ends; a 410 (never expected in the crash drill, whose
    API server stays up) is recorded in ``gaps`` and forces a relist, which may miss intermediate
    phases: a drill that sees gaps must not trust "never seen Running"."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.seen: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.gaps = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="step-phase-watcher", daemon=True)

    def __enter__(self) -> StepPhaseWatcher:
        self._rv = self._list()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _record(self, obj: Mapping[str, Any]) -> None:
        labels = obj["metadata"].get("labels") or {}
        key = (str(labels.get("workflow")), str(labels.get("step")))
        ph = phase_of(obj)
        with self._lock:
            phases = self.seen[key]
            if not phases or phases[-1] != ph:
                phases.append(ph)

    def _list(self) -> str:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "steps")
        for obj in listed["items"]:
            self._record(obj)
        return str(listed["metadata"]["resourceVersion"])

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                w = watch.Watch()
                for event in w.stream(self.custom.list_namespaced_custom_object, GROUP, VERSION,
                                      self.namespace, "steps", resource_version=self._rv,
                                      timeout_seconds=5, allow_watch_bookmarks=True):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise ApiException(status=int(obj.get("code") or 500), reason=str(obj.get("reason")))
                    self._rv = str(obj["metadata"]["resourceVersion"])
                    if event["type"] != "BOOKMARK":
                        self._record(obj)
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:
                    self.gaps += 1
                    with contextlib.suppress(Exception):
                        self._rv = self._list()
                else:
                    time.sleep(0.5)
            except Exception:
                time.sleep(0.5)

    def phases(self, workflow: str, step: str) -> list[str]:
        with self._lock:
            return list(self.seen.get((workflow, step), []))
