"""Shared pieces of the engine benchmarks (``bench.throughput``, ``bench.rollback``, ``bench.scale``,
``bench.floor``): the control plane, the CRDs, the controller as a subprocess, a raw watch that
timestamps what it sees, the API server's request counters, and the figures' arithmetic.

Pure helpers (no I/O; unit-tested in ``tests/unit/test_bench_common.py``): :func:`percentile`,
:func:`parse_request_totals`, :func:`diff_totals`, :func:`mutating_by_resource`, :func:`chain_spec`,
:func:`fanout_spec`, :func:`handoffs`.

Every figure is printed next to the load average (``os.getloadavg()``): the machine is shared, so a
figure taken under load says so.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "hack")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import orjson  # noqa: E402
import yaml  # noqa: E402
from kubernetes import client, config  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

from controller.config import ControllerConfig  # noqa: E402
from kubetestenv.crds import install_crds as kubetestenv_install_crds  # noqa: E402

GROUP, VERSION = "workflow.example.com", "v1alpha1"
RESULTS = ROOT / "bench" / "results"
TERMINAL = frozenset({"Success", "RollBacked", "Failed"})
#: HTTP verbs the API server counts as mutating, and the Kubernetes verb each one is.
MUTATING = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete",
            "APPLY": "apply", "DELETECOLLECTION": "deletecollection"}


# --------------------------------------------------------------------------------------------------
# Pure helpers


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) by linear interpolation between closest ranks; NaN if empty."""
    if not values:
        return math.nan
    s = sorted(values)
    if len(s) == 1:
        return float(s[0])
    k = (len(s) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (k - lo))


Totals = dict[tuple[str, str, str, str], float]


def parse_request_totals(text: str) -> Totals:
    """``apiserver_request_total`` from a Prometheus text page, summed to (verb, resource, subresource,
    code) (other labels — component, scope, group, version, dry_run — are folded)."""
    out: Totals = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line[len("apiserver_request_total{"):].rpartition("} ")
        labels = _labels(labels_text)
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""),
               labels.get("code", ""))
        out[key] = out.get(key, 0.0) + float(value)
    return out


def _labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    i = 0
    while i < len(text):
        eq = text.index("=", i)
        name = text[i:eq].strip().lstrip(",").strip()
        j = eq + 2  # skip ="
        value = []
        while text[j] != '"':
            if text[j] == "\\":
                j += 1
            value.append(text[j])
            j += 1
        labels[name] = "".join(value)
        i = j + 1
    return labels


def diff_totals(before: Mapping[tuple[str, str, str, str], float],
                after: Mapping[tuple[str, str, str, str], float]) -> Totals:
    """after - before, keeping only the counters that moved."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def mutating_by_resource(delta: Mapping[tuple[str, str, str, str], float],
                         codes: frozenset[str] | None = None) -> dict[str, int]:
    """Mutating requests by ``verb resource[/subresource]``, e.g. ``{"patch steps/status": 2000}``; every
    answer counts (a 409 costs the API server too) unless ``codes`` picks some (``{"409"}``)."""
    out: Counter[str] = Counter()
    for (verb, resource, sub, code), n in delta.items():
        if verb in MUTATING and (codes is None or code in codes):
            out[f"{MUTATING[verb]} {resource}{'/' + sub if sub else ''}"] += round(n)
    return dict(sorted(out.items()))


def engine_writes(by_resource: Mapping[str, int]) -> dict[str, int]:
    """The writes a controller makes (workflows, steps, events): leases are the API server's own (the
    bench runs the controller without leader election)."""
    return {k: v for k, v in by_resource.items()
            if v and k.split()[1].split("/")[0] in ("workflows", "steps", "events")}


def step_template(step_type: str = "fail", parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"type": step_type, "parameters": dict(parameters or {}),
            "retryPolicy": {"runRetryLimit": 1, "runRetryPeriodSeconds": 1,
                            "rollbackRetryLimit": 1, "rollbackRetryPeriodSeconds": 1}}


def chain_spec(k: int, *, fail_last: bool = False) -> list[dict[str, Any]]:
    """``s0 <- s1 <- ... <- s{k-1}``; with ``fail_last`` the last run fails permanently."""
    steps = []
    for i in range(k):
        params = {"runError": "permanent"} if fail_last and i == k - 1 else {}
        step: dict[str, Any] = {"name": f"s{i}", "stepTemplate": step_template(parameters=params)}
        if i:
            step["dependOns"] = [{"name": f"s{i - 1}"}]
        steps.append(step)
    return steps


def fanout_spec(k: int, *, fail_last: bool = False) -> list[dict[str, Any]]:
    """A root ``s0`` and ``k - 1`` leaves that depend on it (``k`` steps in all); with ``fail_last``
    the last leaf's run fails permanently."""
    steps: list[dict[str, Any]] = [{"name": "s0", "stepTemplate": step_template()}]
    for i in range(1, k):
        params = {"runError": "permanent"} if fail_last and i == k - 1 else {}
        steps.append({"name": f"s{i}", "stepTemplate": step_template(parameters=params),
                      "dependOns": [{"name": "s0"}]})
    return steps


def workflow_body(name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workflow", "metadata": {"name": name},
            "spec": {"queue": "default", "steps": steps}}


def handoffs(specs: Mapping[str, Sequence[Mapping[str, Any]]],
             success_at: Mapping[tuple[str, str], float],
             run_at: Mapping[tuple[str, str], float]) -> list[float]:
    """Seconds from the moment the last upstream of a step was seen Success to its first run call,
    for every step with upstreams (``specs``: workflow name -> its spec steps; the maps are keyed by
    (workflow, step))."""
    out = []
    for wf, steps in specs.items():
        for step in steps:
            ups = [d["name"] for d in step.get("dependOns") or ()]
            if not ups or (wf, step["name"]) not in run_at:
                continue
            seen = [success_at.get((wf, u)) for u in ups]
            if any(t is None for t in seen):
                continue
            out.append(run_at[(wf, step["name"])] - max(t for t in seen if t is not None))
    return out


def metric_sum(text: str, metric: str, **labels: str) -> float:
    """Sum of the samples of ``metric`` whose labels include ``labels`` (a Prometheus text page)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(metric + "{") and not line.startswith(metric + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def mean_of(text: str, histogram: str, **labels: str) -> float:
    """``_sum / _count`` of a histogram (NaN without samples)."""
    n = metric_sum(text, histogram + "_count", **labels)
    return metric_sum(text, histogram + "_sum", **labels) / n if n else math.nan


def load() -> float:
    return os.getloadavg()[0]


def fmt_ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


# --------------------------------------------------------------------------------------------------
# The control plane, the CRDs, namespaces


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_api(kubeconfig: Path, pool: int = 32) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = pool
    cfg.retries = False
    return client.ApiClient(cfg)


def install_crds(api: client.ApiClient) -> None:
    kubetestenv_install_crds(api)
    custom = client.CustomObjectsApi(api)
    deadline = time.monotonic() + 30
    while True:  # the new resources take a moment to be served
        try:
            custom.list_namespaced_custom_object(GROUP, VERSION, "default", "steps", limit=1)
            return
        except ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def create_namespace(api: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    except ApiException as exc:
        if exc.status != 409:
            raise


class Plane:
    """A started :class:`kubetestenv.ControlPlane` with the CRDs installed, an admin API client and the
    API server's ``/metrics``."""

    def __init__(self, apiserver_args: Sequence[str] = ()) -> None:
        from kubetestenv import ControlPlane

        self.plane = ControlPlane(apiserver_args=list(apiserver_args)).start()
        self.kubeconfig = self.plane.kubeconfig
        self.api = make_api(self.kubeconfig)
        self._ssl = self.plane.ssl_context()
        install_crds(self.api)
        self._namespaces = 0

    def namespace(self, prefix: str) -> str:
        self._namespaces += 1
        name = f"{prefix}-{self._namespaces}"
        create_namespace(self.api, name)
        return name

    def request_totals(self) -> Totals:
        with urllib.request.urlopen(f"{self.plane.server}/metrics", timeout=30, context=self._ssl) as r:
            return parse_request_totals(r.read().decode())

    def settled_totals(self, quiet: float = 2.0, timeout: float = 20.0) -> Totals:
        """The counters once no mutating request was counted for ``quiet`` seconds (the Event recorder
        writes in the background), or after ``timeout``."""
        def mutating(t: Mapping[tuple[str, str, str, str], float]) -> float:
            return sum(v for k, v in t.items() if k[0] in MUTATING)

        end = time.monotonic() + timeout
        last = self.request_totals()
        while time.monotonic() < end:
            time.sleep(quiet)
            now = self.request_totals()
            if mutating(now) == mutating(last):
                return now
            last = now
        return last

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far by each process of the plane, by name
        (``kube-apiserver``, ``etcd``)."""
        out: dict[str, float] = {}
        for pid in self.plane.processes():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    name = f.read().strip()
                out[name] = out.get(name, 0.0) + proc_stats(pid).cpu_seconds
            except OSError:
                continue
        return out

    def cpu_used(self, before: Mapping[str, float]) -> dict[str, float]:
        """CPU seconds per plane process since ``before`` (a :meth:`cpu_seconds`)."""
        return {k: v - before.get(k, 0.0) for k, v in self.cpu_seconds().items()}

    def profile_apiserver(self, seconds: float, out: Path, delay: float = 0.0) -> threading.Thread:
        """Take a CPU profile of kube-apiserver (Go pprof, ``/debug/pprof/profile``) for ``seconds``
        after ``delay``, in a thread; read it with ``go tool pprof -top <out>``."""
        def take() -> None:
            time.sleep(delay)
            url = f"{self.plane.server}/debug/pprof/profile?seconds={max(1, int(seconds))}"
            with urllib.request.urlopen(url, timeout=seconds + 60, context=self._ssl) as r:
                out.write_bytes(r.read())
            print(f"  API server CPU profile ({seconds:.0f}s): {out}", flush=True)

        thread = threading.Thread(target=take, name="apiserver-pprof", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]
        self.plane.stop()


# --------------------------------------------------------------------------------------------------
# The controller subprocess


@dataclass
class ControllerOptions:
    step_qps: float = 10_000.0
    step_concurrency: int = 8
    workflow_workers: int = ControllerConfig.workflow_workers  # the controller's default
    write_concurrency: int = ControllerConfig.write_concurrency  # the controller's default
    max_running: int = 10_000
    throttle_qps: float = 0.0
    log_level: str = "info"
    events: bool = True
    profile: Path | None = None  # cProfile output (``python -m cProfile -o``; the main thread only)
    py_spy: Path | None = None  # py-spy collapsed stacks of every thread (``pip install py-spy``)
    py_spy_gil: bool = False  # only samples holding the GIL (where the CPU goes, not where threads wait)

    def config_yaml(self, namespace: str) -> str:
        return yaml.safe_dump({
            "namespace": namespace,
            "throttleQPS": self.throttle_qps,
            "controllerConfig": {
                "queue": {"strategy": "FIFO", "maxRunningCount": self.max_running},
                "steps": [{"kind": k, "qps": self.step_qps, "concurrency": self.step_concurrency}
                          for k in ("fail", "empty")],
                "workflowWorkers": self.workflow_workers,
                "writeConcurrency": self.write_concurrency,
                "events": {"enabled": self.events},
            },
        })


@dataclass
class ProcStats:
    cpu_seconds: float
    rss_bytes: int
    hwm_bytes: int


def proc_stats(pid: int) -> ProcStats:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15 of stat(5))
    kb = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":")
                kb[name] = int(value.split()[0]) * 1024
    return ProcStats(cpu, kb.get("VmRSS", 0), kb.get("VmHWM", 0))


@dataclass
class Controller:
    """``python -m controller`` (optionally under cProfile) watching one namespace."""

    kubeconfig: Path
    namespace: str
    options: ControllerOptions = field(default_factory=ControllerOptions)
    call_log: Path | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-controller-")))
    proc: subprocess.Popen[bytes] | None = None
    health_port: int = 0
    metrics_port: int = 0
    started_at: float = 0.0
    spy: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "controller.log"

    def start(self) -> Controller:
        cfg = self.workdir / "config.yaml"
        cfg.write_text(self.options.config_yaml(self.namespace))
        self.health_port, self.metrics_port = free_port(), free_port()
        prefix = [sys.executable]
        if self.options.profile is not None:
            prefix += ["-m", "cProfile", "-o", str(self.options.profile)]
        argv = [*prefix, "-m", "controller", "--kubeconfig", str(self.kubeconfig), "--config", str(cfg),
                "--no-leader-elect", "--log-format", "json", "--log-level", self.options.log_level,
                "--metrics-bind-address", f"127.0.0.1:{self.metrics_port}",
                "--health-probe-bind-address", f"127.0.0.1:{self.health_port}"]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        if self.call_log is not None:
            env["STEPKIT_CALL_LOG"] = str(self.call_log)
        self.started_at = time.time()
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         cwd=ROOT, env=env)
        return self

    def start_py_spy(self) -> None:
        """Sample every thread of the controller with py-spy until :meth:`stop` (on-CPU samples)."""
        if self.options.py_spy is None:
            return
        exe = Path(sys.executable).parent / "py-spy"
        gil = ["--gil"] if self.options.py_spy_gil else []
        self.spy = subprocess.Popen([str(exe), "record", "-p", str(self.pid), "-r", "200", "-f", "raw", *gil,
                                     "-o", str(self.options.py_spy)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.HTTPError):
            return False

    def wait_ready(self, timeout: float = 300.0) -> float:
        """Seconds from start to a passing /readyz (the caches synced and the watches alive)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"controller exited with {self.proc.returncode}: {self.tail()}")
            if self.ready():
                return time.time() - self.started_at
            time.sleep(0.05)
        raise RuntimeError(f"controller not ready after {timeout}s: {self.tail()}")

    def log_time(self, event: str) -> float | None:
        """Wall-clock time of the first JSON log line whose ``event`` is ``event``."""
        for line in self.log_path.read_bytes().splitlines():
            if event.encode() not in line:
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if rec.get("event") == event and "timestamp" in rec:
                from datetime import datetime
                return datetime.fromisoformat(str(rec["timestamp"]).replace("Z", "+00:00")).timestamp()
        return None

    def events_dropped(self) -> int:
        """Kubernetes Events the recorder dropped (its queue was full): the largest ``dropped`` count of
        its "event dropped" log lines."""
        most = 0
        for line in self.log_path.read_bytes().splitlines():
            if b'"event dropped"' in line:
                try:
                    most = max(most, int(orjson.loads(line).get("dropped") or 0))
                except (orjson.JSONDecodeError, ValueError):
                    continue
        return most

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def stats(self) -> ProcStats:
        return proc_stats(self.pid)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait (the profile is written on a clean exit); the exit code."""
        if self.proc is None:
            return None
        if self.spy is not None and self.spy.poll() is None:
            self.spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.spy.wait(30)
            except subprocess.TimeoutExpired:
                self.spy.kill()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# --------------------------------------------------------------------------------------------------
# A raw watch that timestamps what it sees


def _lines(resp: Any) -> Iterator[bytes]:
    buf = b""
    for chunk in resp.stream(65536, decode_content=False):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line:
                yield line


class Watcher:
    """Watches Workflows and Steps of one namespace from a daemon thread each; records the wall-clock
    time each object was first seen in each phase. The watch adds some load of its own (two streams,
    parsed with orjson)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.lock = threading.Lock()
        self.step_phase_at: dict[tuple[str, str, str], float] = {}  # (wf, step, phase) -> time
        self.wf_phase_at: dict[tuple[str, str], float] = {}  # (wf, phase) -> time
        self.wf_phase: dict[str, str] = {}
        self.changed = threading.Condition(self.lock)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Watcher:
        for plural in ("workflows", "steps"):
            rv = self._list_rv(plural)
            t = threading.Thread(target=self._run, args=(plural, rv), daemon=True, name=f"watch-{plural}")
            t.start()
            self._threads.append(t)
        return self

    def _list_rv(self, plural: str) -> str:
        resp: Any = client.CustomObjectsApi(self.api).list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, limit=1, _preload_content=False)
        return str(orjson.loads(resp.data)["metadata"]["resourceVersion"])

    def _run(self, plural: str, rv: str) -> None:
        while not self._stop.is_set():
            try:
                resp = client.CustomObjectsApi(self.api).list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, plural, watch=True, resource_version=rv,
                    allow_watch_bookmarks=True, timeout_seconds=3600, _preload_content=False,
                    _request_timeout=(5, 3600))
                for line in _lines(resp):
                    now = time.time()
                    ev = orjson.loads(line)
                    obj = ev.get("object") or {}
                    rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                    if ev.get("type") in ("ADDED", "MODIFIED"):
                        self._seen(plural, obj, now)
                    if self._stop.is_set():
                        break
            except Exception as exc:  # a dropped watch resumes from the last RV
                if not self._stop.is_set():
                    print(f"  (watch {plural} restarted: {type(exc).__name__}: {exc})", flush=True)
                    time.sleep(0.2)

    def _seen(self, plural: str, obj: Mapping[str, Any], now: float) -> None:
        phase = str((obj.get("status") or {}).get("phase") or "Pending")
        meta = obj["metadata"]
        with self.lock:
            if plural == "workflows":
                name = meta["name"]
                self.wf_phase_at.setdefault((name, phase), now)
                self.wf_phase[name] = phase
                self.changed.notify_all()
            else:
                labels = meta.get("labels") or {}
                key = (labels.get("workflow", ""), labels.get("step", ""), phase)
                self.step_phase_at.setdefault(key, now)

    def wait_terminal(self, names: Iterable[str], timeout: float,
                      progress_every: float = 10.0) -> tuple[float, dict[str, str]]:
        """Wait until every workflow in ``names`` is in a terminal phase; (time of the last one, phases).
        Raises TimeoutError with the phase counts."""
        wanted = set(names)
        end = time.monotonic() + timeout
        next_progress = time.monotonic() + progress_every
        with self.lock:
            while True:
                phases = {n: self.wf_phase.get(n, "Pending") for n in wanted}
                if all(p in TERMINAL for p in phases.values()):
                    last = max(t for (n, ph), t in self.wf_phase_at.items() if n in wanted and ph in TERMINAL)
                    return last, phases
                now = time.monotonic()
                if now > end:
                    raise TimeoutError(f"workflows not finished: {dict(Counter(phases.values()))}")
                if now > next_progress:
                    print(f"  ... {dict(Counter(phases.values()))} (load {load():.1f})", flush=True)
                    next_progress = now + progress_every
                self.changed.wait(min(1.0, end - now))

    def stop(self) -> None:
        self._stop.set()


# --------------------------------------------------------------------------------------------------
# Submitting and results


def submit(api: client.ApiClient, namespace: str, bodies: Sequence[Mapping[str, Any]],
           threads: int = 16) -> float:
    """Create every workflow (``threads`` at a time); the wall-clock time the first create was sent."""
    from concurrent.futures import ThreadPoolExecutor

    custom = client.CustomObjectsApi(api)

    def create(body: Mapping[str, Any]) -> None:
        r: Any = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "workflows", dict(body),
                                                   _preload_content=False)
        r.data  # noqa: B018 - read the body so the connection returns to the pool
        r.release_conn()

    t0 = time.time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, bodies))
    return t0


@dataclass
class Run:
    """What :func:`run_workflows` saw: the controller's stats before (``s0``), when every workflow was
    terminal (``s1``) and after the API totals settled (``s2``, the Event flush included)."""

    ns: str
    names: list[str]
    call_log: Path
    watcher: Watcher
    ready_s: float
    t0: float
    t_end: float
    phases: dict[str, str]
    s0: ProcStats
    s1: ProcStats
    s2: ProcStats
    totals0: Totals
    totals1: Totals
    load0: float
    load1: float
    controller_metrics: str
    events_dropped: int
    exit_code: int | None
    plane_cpu: dict[str, float] = field(default_factory=dict)  # CPU s per plane process, submit -> terminal
    harness_cpu_s: float = 0.0  # CPU s of this bench process (its submit and Watcher), submit -> terminal


def run_workflows(plane: Plane, ns_prefix: str, names: list[str], spec: list[dict[str, Any]],
                  options: ControllerOptions, timeout: float, *, profile: bool = True,
                  apiserver_profile: Path | None = None, apiserver_profile_s: float = 10.0) -> Run:
    """A fresh namespace and controller (its call log in a temporary file), a Watcher, the workflows
    submitted at once and waited for until terminal; the controller is stopped before returning.
    ``profile``: start py-spy if the options ask for it. ``apiserver_profile``: a Go CPU profile of
    kube-apiserver over the first ``apiserver_profile_s`` seconds after the submit, written there."""
    ns = plane.namespace(ns_prefix)
    call_log = Path(tempfile.mkdtemp(prefix="bench-calls-")) / "calls.jsonl"
    ctrl = Controller(plane.kubeconfig, ns, options, call_log=call_log).start()
    try:
        ready_s = ctrl.wait_ready()
        if profile:
            ctrl.start_py_spy()
        watcher = Watcher(plane.api, ns).start()
        bodies = [workflow_body(nm, spec) for nm in names]
        totals0 = plane.request_totals()
        s0 = ctrl.stats()
        load0 = load()
        cpu0 = plane.cpu_seconds()
        pprof = plane.profile_apiserver(apiserver_profile_s, apiserver_profile) if apiserver_profile else None
        harness0 = time.process_time()
        t0 = submit(plane.api, ns, bodies)
        t_end, phases = watcher.wait_terminal(names, timeout)
        harness_cpu = time.process_time() - harness0
        s1 = ctrl.stats()
        plane_cpu = plane.cpu_used(cpu0)
        if pprof is not None:
            pprof.join()
        load1 = load()
        totals1 = plane.settled_totals()
        s2 = ctrl.stats()
        controller_metrics = ctrl.metrics()
        watcher.stop()
    finally:
        code = ctrl.stop()
    return Run(ns, names, call_log, watcher, ready_s, t0, t_end, phases, s0, s1, s2, totals0, totals1,
               load0, load1, controller_metrics, ctrl.events_dropped(), code, plane_cpu, harness_cpu)


def write_json(name: str, data: Mapping[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    return path
