"""kube-testenv: a real kube-apiserver + etcd on loopback, for tests and local runs.

The binaries are built from Go modules by ``hack/kube-testenv/build.sh`` (cached outside the repo,
keyed by the wrapper module's go.sum). This package starts them the way envtest does:

- free 127.0.0.1 ports; a private temp directory holding every file;
- a CA, a serving certificate, an admin client certificate (group ``system:masters``), the
  service-account key pair and a static token file with one unprivileged user (``alice``);
- etcd with ``--unsafe-no-fsync``; kube-apiserver with RBAC authorization, bound to 127.0.0.1,
  ``--endpoint-reconciler-type=none``;
- waits for ``/readyz`` and the ``default`` namespace, then writes an admin kubeconfig.

Use it three ways: as a library (:class:`ControlPlane`, a context manager; the pytest fixtures in
``tests/conftest.py``), as a command (``python -m kubetestenv up``), and from ``make run``.

Contract (:class:`ControlPlane`): start/stop/restart from one thread. Child processes get
``PR_SET_PDEATHSIG=SIGKILL``, so they die with the *thread* that started them even when the parent
is SIGKILLed: start the control plane from the main thread or from a thread that outlives it.
``stop`` is idempotent and also runs at interpreter exit. Not provided: namespace deletion,
garbage collection, service-account tokens controllers (there is no kube-controller-manager).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetestenv.certs import UNPRIVILEGED_USER, Credentials, generate

__all__ = ["UNPRIVILEGED_USER", "ControlPlane", "StartError", "build_binaries"]

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "kube-testenv" / "build.sh"


class StartError(RuntimeError):
    """The control plane did not come up; the message holds the command line and the log tail."""


def build_binaries() -> Path:
    """Build (or find cached) kube-apiserver and etcd; return the directory holding them.

    ``KUBE_TESTENV_BIN_DIR`` points at prebuilt binaries and skips the build.
    """
    preset = os.environ.get("KUBE_TESTENV_BIN_DIR")
    if preset:
        return Path(preset)
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=None, text=True, check=False
    )
    if proc.returncode != 0:
        raise StartError(f"building the control plane failed (exit {proc.returncode}): {BUILD_SCRIPT}")
    return Path(proc.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class _Process:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        p, self.popen = self.popen, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def failure(self, what: str) -> StartError:
        return StartError(
            f"{self.name}: {what}\ncommand: {shlex.join(self.argv)}\n"
            f"last lines of {self.log}:\n{_tail(self.log)}"
        )


@dataclass
class ControlPlane:
    """One etcd + one kube-apiserver on loopback. See the module docstring for the contract."""

    bin_dir: Path | None = None
    #: Extra kube-apiserver flags, e.g. ``["--etcd-compaction-interval=0"]``.
    apiserver_args: Sequence[str] = ()
    start_timeout: float = 60.0

    workdir: Path = field(init=False)
    kubeconfig: Path = field(init=False)
    server: str = field(init=False)
    etcd_url: str = field(init=False)
    credentials: Credentials = field(init=False)
    _etcd: _Process | None = field(init=False, default=None)
    _apiserver: _Process | None = field(init=False, default=None)

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        bin_dir = self.bin_dir or build_binaries()
        self.workdir = Path(tempfile.mkdtemp(prefix="kube-testenv-"))
        atexit.register(self.stop)
        try:
            self.credentials = generate(self.workdir)
            for attempt in range(3):  # a free port can be taken between probing and binding
                try:
                    self._start_etcd(bin_dir)
                    self._start_apiserver(bin_dir)
                    break
                except StartError:
                    self._stop_processes()
                    if attempt == 2:
                        raise
            self.kubeconfig = self._write_kubeconfig(self.workdir / "kubeconfig")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both processes and remove the temp directory. Idempotent."""
        self._stop_processes()
        if getattr(self, "workdir", None) is not None and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _stop_processes(self) -> None:
        if self._apiserver is not None:
            self._apiserver.stop()
        if self._etcd is not None:
            self._etcd.stop()

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver only (etcd keeps the data); for restart drills."""
        if self._apiserver is not None:
            self._apiserver.stop()

    def start_apiserver(self) -> None:
        """Start kube-apiserver again on the same port, with the same data and credentials."""
        assert self._apiserver is not None, "start() first"
        self._apiserver.start()
        self._wait_ready(self._apiserver)

    # -- processes --------------------------------------------------------------------------------

    def _start_etcd(self, bin_dir: Path) -> None:
        client, peer = _free_port(), _free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        data = self.workdir / "etcd-data"
        shutil.rmtree(data, ignore_errors=True)
        self._etcd = _Process(
            "etcd",
            [
                str(bin_dir / "etcd"),
                f"--data-dir={data}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync=true",
                "--log-level=error",
            ],
            self.workdir / "etcd.log",
        )
        self._etcd.start()
        deadline = time.monotonic() + self.start_timeout
        while True:
            if not self._etcd.alive():
                raise self._etcd.failure("exited during start")
            with contextlib.suppress(OSError), urllib.request.urlopen(
                f"{self.etcd_url}/health", timeout=2
            ) as r:
                if json.load(r).get("health") == "true":
                    return
            if time.monotonic() > deadline:
                raise self._etcd.failure(f"not healthy after {self.start_timeout:.0f}s")
            time.sleep(0.1)

    def _start_apiserver(self, bin_dir: Path) -> None:
        port = _free_port()
        self.server = f"https://127.0.0.1:{port}"
        c = self.credentials
        self._apiserver = _Process(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'cert-dir'}",
                f"--tls-cert-file={c.serving_cert}",
                f"--tls-private-key-file={c.serving_key}",
                f"--client-ca-file={c.ca_cert}",
                f"--token-auth-file={c.token_file}",
                f"--service-account-issuer={self.server}/",
                f"--service-account-signing-key-file={c.sa_key}",
                f"--service-account-key-file={c.sa_pub}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--disable-admission-plugins=ServiceAccount",
                "--endpoint-reconciler-type=none",
                *self.apiserver_args,
            ],
            self.workdir / "kube-apiserver.log",
        )
        self._apiserver.start()
        self._wait_ready(self._apiserver)

    def _wait_ready(self, proc: _Process) -> None:
        deadline = time.monotonic() + self.start_timeout
        ctx = self.ssl_context()
        last = "no answer yet"
        while True:
            if not proc.alive():
                raise proc.failure("exited during start")
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", timeout=2, context=ctx) as r:
                    r.read()
                with urllib.request.urlopen(
                    f"{self.server}/api/v1/namespaces/default", timeout=2, context=ctx
                ) as r:
                    r.read()
                return
            except (OSError, urllib.error.HTTPError) as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise proc.failure(f"not ready after {self.start_timeout:.0f}s ({last})")
            time.sleep(0.2)

    # -- clients ----------------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the server and presents the admin client certificate."""
        ctx = ssl.create_default_context(cafile=str(self.credentials.ca_cert))
        ctx.load_cert_chain(str(self.credentials.admin_cert), str(self.credentials.admin_key))
        return ctx

    def token(self, user: str = UNPRIVILEGED_USER) -> str:
        return self.credentials.tokens[user]

    def _write_kubeconfig(self, path: Path, user: str | None = None) -> Path:
        def b64(p: Path) -> str:
            return base64.b64encode(p.read_bytes()).decode()

        c = self.credentials
        if user is None:
            name, auth = "admin", {
                "client-certificate-data": b64(c.admin_cert),
                "client-key-data": b64(c.admin_key),
            }
        else:
            name, auth = user, {"token": self.token(user)}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kube-testenv", "cluster": {
                "server": self.server, "certificate-authority-data": b64(c.ca_cert)}}],
            "users": [{"name": name, "user": auth}],
            "contexts": [{"name": name, "context": {"cluster": "kube-testenv", "user": name}}],
            "current-context": name,
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path

    def kubeconfig_for(self, user: str = UNPRIVILEGED_USER) -> Path:
        """A kubeconfig that authenticates as a static-token user (no client certificate)."""
        return self._write_kubeconfig(self.workdir / f"kubeconfig-{user}", user)

    # -- etcd -------------------------------------------------------------------------------------

    def _etcd_call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.etcd_url}/v3/{method}", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            result: dict[str, Any] = json.load(r)
        return result

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision (physically); return that revision.

        After this, a watch or an exact read at an older resourceVersion that has to go to etcd
        gets 410 Gone.
        """
        rev = int(self._etcd_call("kv/range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"])
        self._etcd_call("kv/compaction", {"revision": str(rev), "physical": True})
        return rev

    def processes(self) -> Iterator[int]:
        """PIDs of the running child processes."""
        for proc in (self._etcd, self._apiserver):
            if proc is not None and proc.popen is not None and proc.alive():
                yield proc.popen.pid
