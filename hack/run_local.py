"""``make run``: the controller with the original README's example, locally.

1. With ``KUBECONFIG`` set (a real cluster), use it; otherwise start the local control plane
   (hack/kube-testenv) and use its admin kubeconfig.
2. Install (or update) the CRDs from deploy/crds/.
3. Start ``workflow-controller`` with the built-in steps as a subprocess (logs on stderr).
4. Apply examples/seed-example.yaml — the original README's example, unchanged — and print its
   progress until it succeeds (or ends otherwise).
5. Keep running until Ctrl-C / SIGTERM, then stop the controller and the control plane.

Exit codes: 0 after a clean stop, 1 when something failed to start or the example did not succeed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubetestenv import REPO_ROOT, ControlPlane, StartError
from kubetestenv.crds import install_crds

GROUP, VERSION = "workflow.example.com", "v1alpha1"
EXAMPLE = REPO_ROOT / "examples" / "seed-example.yaml"
DONE = {"Success", "RollBacked", "Failed"}


def say(message: str) -> None:
    print(f"make run: {message}", flush=True)


def apply_example(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    body = yaml.safe_load(EXAMPLE.read_text())
    name = body["metadata"]["name"]
    try:
        created: dict[str, Any] = custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "workflows", body)
        say(f"applied {EXAMPLE.relative_to(REPO_ROOT)} as workflow {namespace}/{name}")
        return created
    except ApiException as exc:
        if exc.status != 409:
            raise
        say(f"workflow {namespace}/{name} already exists: following it")
        existing: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "workflows", name)
        return existing


def progress(custom: client.CustomObjectsApi, namespace: str, name: str, stop: threading.Event,
             timeout: float = 600.0) -> str:
    """Print a line whenever the workflow's or a step's phase changes; the final phase."""
    last = ""
    started = time.monotonic()
    while not stop.is_set() and time.monotonic() - started < timeout:
        wf = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "workflows", name)
        steps = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "steps",
                                                     label_selector=f"workflow={name}")["items"]
        phase = (wf.get("status") or {}).get("phase") or "Pending"
        step_phases = ", ".join(sorted(
            f"{s['metadata']['labels'].get('step', s['metadata']['name'])}="
            f"{(s.get('status') or {}).get('phase') or 'Pending'}"
            for s in steps))
        line = f"workflow {name}: {phase}" + (f"  [{step_phases}]" if step_phases else "")
        if line != last:
            say(f"{time.monotonic() - started:5.1f}s  {line}")
            last = line
        if phase in DONE:
            return str(phase)
        stop.wait(1.0)
    return "Interrupted" if stop.is_set() else "TimedOut"


def main() -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    plane: ControlPlane | None = None
    controller: subprocess.Popen[bytes] | None = None
    kubeconfig = os.environ.get("KUBECONFIG", "")
    try:
        if kubeconfig:
            say(f"KUBECONFIG is set: running against that cluster ({kubeconfig})")
        else:
            say("no KUBECONFIG: starting the local control plane (hack/kube-testenv)")
            plane = ControlPlane().start()
            out = REPO_ROOT / ".kube-testenv" / "kubeconfig"
            out.parent.mkdir(exist_ok=True)
            out.write_bytes(plane.kubeconfig.read_bytes())
            out.chmod(0o600)
            kubeconfig = str(out)
            say(f"control plane at {plane.server}; "
                f"in another terminal: kubectl --kubeconfig {out} get wf,steps")
        api = config.new_client_from_config(config_file=kubeconfig)
        for name in install_crds(api):
            say(f"CRD {name} installed")
        namespace = config.list_kube_config_contexts(config_file=kubeconfig)[1]["context"].get(
            "namespace", "default")

        controller = subprocess.Popen(
            [sys.executable, "-m", "controller", "--kubeconfig", kubeconfig,
             "--leader-election-namespace", namespace,
             "--metrics-bind-address", "127.0.0.1:0", "--health-probe-bind-address", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
        )
        say(f"workflow-controller started (pid {controller.pid}); its logs follow on stderr")
        wf = apply_example(client.CustomObjectsApi(api), namespace)
        started = time.monotonic()
        final = progress(client.CustomObjectsApi(api), namespace, wf["metadata"]["name"], stop)
        if final != "Success":
            say(f"the example ended {final}")
            return 1
        say(f"the example succeeded ({time.monotonic() - started:.1f}s after it was applied); "
            "the controller keeps running — Ctrl-C stops everything")
        while not stop.is_set():
            if controller.poll() is not None:
                say(f"workflow-controller exited with {controller.returncode}")
                return 1
            stop.wait(1.0)
        return 0
    except StartError as exc:
        say(str(exc))
        return 1
    finally:
        if controller is not None and controller.poll() is None:
            controller.send_signal(signal.SIGTERM)
            try:
                controller.wait(timeout=40)
            except subprocess.TimeoutExpired:
                controller.kill()
        if plane is not None:
            plane.stop()
            (REPO_ROOT / ".kube-testenv" / "kubeconfig").unlink(missing_ok=True)
        say("stopped")


if __name__ == "__main__":
    sys.exit(main())
