"""The e2e harness: the controller's identity in a test namespace, and controller subprocesses.

Time: nothing here asserts how fast anything is. Waits poll with generous timeouts (the machine has two
cores and other suites run at the same time); the one kind of time bound the tests assert is the leader
election protocol's own (a standby takes over within a bound derived from the lease timings).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from kubetestenv import ControlPlane
from tests.integration.engine_fixtures import install_crds, wait_for
from tests.integration.test_deploy import dump, kubectl, ok, renamed_rbac

SERVICE_ACCOUNT = "workflow-controller"
LEASE_NAME = "kube-workflow-controller"  # the CLI's default --leader-election-id

#: Short lease timings (seconds) so failover tests take seconds, not the 15/10/2 defaults.
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 4.0, 3.0, 0.5
LEASE_FLAGS = (
    "--leader-election-lease-duration", str(LEASE_DURATION),
    "--leader-election-renew-deadline", str(RENEW_DEADLINE),
    "--leader-election-retry-period", str(RETRY_PERIOD),
)


def controller_command() -> list[str]:
    """The installed console script next to this interpreter (the way operators run it)."""
    script = Path(sys.executable).parent / "workflow-controller"
    return [str(script)] if script.exists() else [sys.executable, "-m", "controller"]


# --- the controller's identity ---------------------------------------------------------------------

def write_token_kubeconfig(path: Path, server: str, ca_cert: Path, user: str, token: str) -> Path:
    """A kubeconfig with a bearer token and the control plane's CA (as kubetestenv writes its own)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kube-testenv", "cluster": {
            "server": server,
            "certificate-authority-data": base64.b64encode(ca_cert.read_bytes()).decode(),
        }}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "kube-testenv", "user": user}}],
        "current-context": user,
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def install_controller_identity(control_plane: ControlPlane, api_client: client.ApiClient, namespace: str,
                                workdir: Path, *, without: frozenset[str] = frozenset()) -> Iterator[Path]:
    """CRDs, then the ServiceAccount and exactly the RBAC of deploy/manifests moved into ``namespace``
    (less the kinds in ``without``, for negative controls), then a TokenRequest token for the
    ServiceAccount; yields a kubeconfig that authenticates with it. No kube-controller-manager runs, so
    no token Secret would ever be filled in: TokenRequest it is."""
    install_crds(api_client)
    docs = renamed_rbac(namespace, namespace)
    assert {d["kind"] for d in docs} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                                         "RoleBinding"}, [d["kind"] for d in docs]
    docs = [d for d in docs if d["kind"] not in without]
    admin = control_plane.kubeconfig
    ok(kubectl(admin, "apply", "-f", "-", stdin=dump(docs)))
    try:
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
        minted = client.CoreV1Api(api_client).create_namespaced_service_account_token(
            SERVICE_ACCOUNT, namespace, request)
        assert minted.status is not None
        assert minted.status.token
        workdir.mkdir(parents=True, exist_ok=True)
        user = f"system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}"
        yield write_token_kubeconfig(workdir / "sa-kubeconfig", control_plane.server,
                                     control_plane.credentials.ca_cert, user, str(minted.status.token))
    finally:
        kubectl(admin, "delete", "--ignore-not-found", "-f", "-",
                stdin=dump([d for d in docs if d["kind"].startswith("Cluster")]))


def lease_holder(api_client: client.ApiClient, namespace: str) -> str | None:
    """The Lease's holderIdentity; None if there is no Lease; "" if it is released."""
    try:
        lease = client.CoordinationV1Api(api_client).read_namespaced_lease(LEASE_NAME, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return str((lease.spec and lease.spec.holder_identity) or "")


# --- the process -------------------------------------------------------------------------------------

def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(text: str, metric: str, /, **labels: str) -> float | None:
    """The value of the first sample named ``metric`` whose labels include ``labels``."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def samples(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(s.labels), float(s.value)) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == metric]


_FORBIDDEN = re.compile(r"forbidden|\b403\b", re.IGNORECASE)


def forbidden_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Log records that mention an authorization failure. The timestamp is left out of the search (its
    milliseconds may read 403); a non-JSON line (a traceback) is searched whole."""
    return [r for r in lines
            if _FORBIDDEN.search(json.dumps({k: v for k, v in r.items() if k != "timestamp"}, default=str))]


@dataclass
class ControllerProcess:
    """One ``workflow-controller`` subprocess, its combined stdout/stderr in ``log_path`` (JSON lines).

    It binds /metrics and /healthz,/readyz to free ports on 127.0.0.1 (``:0``) and reads the URLs
    from its own "serving" log lines. :meth:`kill` is idempotent; the ``controllers`` fixture calls it
    for every process at teardown."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    _urls: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, kubeconfig: Path, namespace: str, workdir: Path, *extra: str,
              config: dict[str, Any] | None = None) -> ControllerProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / "config.yaml"
        # Watch only the test's namespace: the session's API server is shared with other tests.
        config_path.write_text(yaml.safe_dump(config or {"namespace": namespace}))
        log_path = workdir / "controller.log"
        argv = [*controller_command(), "--kubeconfig", str(kubeconfig), "--config", str(config_path),
                "--leader-election-namespace", namespace, *LEASE_FLAGS,
                "--metrics-bind-address", "127.0.0.1:0", "--health-probe-bind-address", "127.0.0.1:0",
                "--log-format", "json", "--log-level", "info", *extra]
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
        with log_path.open("wb") as out:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     env=env)
        return cls(popen, log_path)

    # -- output --

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for line in self.text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            records.append(record if isinstance(record, dict) else {"raw": line})
        return records

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.text().splitlines()[-n:])

    def wait_log(self, event: str, *, timeout: float = 60.0, **fields: str) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for r in self.lines():
                if r.get("event") == event and all(r.get(k) == v for k, v in fields.items()):
                    return r
            assert self.popen.poll() is None, f"controller exited ({self.popen.returncode}):\n{self.tail()}"
            return None

        return wait_for(found, timeout=timeout, message=lambda: f"log {event!r} {fields}:\n{self.tail()}")

    @property
    def identity(self) -> str:
        return str(self.wait_log("waiting for leadership", logger="controller.manager")["identity"])

    def url(self, endpoint: str) -> str:
        if endpoint not in self._urls:
            record = self.wait_log("serving", endpoint=endpoint, logger="controller.manager")
            self._urls[endpoint] = str(record["url"])
        return self._urls[endpoint]

    # -- endpoints --

    def get(self, endpoint: str, path: str) -> tuple[int, str]:
        return http_get(self.url(endpoint) + path)

    def metrics(self) -> str:
        status, text = self.get("metrics", "/metrics")
        assert status == 200, (status, text)
        return text

    def is_leader(self) -> bool | None:
        """``leader_election_master_status`` (None before the elector reported anything)."""
        value = sample(self.metrics(), "leader_election_master_status", name=LEASE_NAME)
        return None if value is None else value == 1.0

    # -- life --

    def signal(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(30)


class Launcher(Protocol):
    def __call__(self, kubeconfig: Path, namespace: str, *extra: str, name: str = ...) -> ControllerProcess:
        ...
