"""Callback URL safety and secret hygiene drill.

1. With the default configuration, callback URLs that point at cloud-metadata or link-local addresses
   (169.254.169.254 in several spellings, 169.254.0.0/16, fe80::/10, Alibaba's 100.100.100.200) are
   refused: a Warning Event ``CallbackURLRefused``, the outbox dropped, nothing retried - while a loopback
   receiver (private networks are allowed by default) gets its events.
2. With ``controllerConfig.callback.allowedCIDRs`` listing 169.254.0.0/16, the same link-local URL is
   *not* refused: the sender tries it (and keeps retrying: nothing listens there).
3. A signing key from a Secret signs every POST (verified here) and its value never appears in the
   controller's log (run at debug level), in any Event, or in any Workflow or Step object.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubetestenv import ControlPlane
from tests.reliability.drills import (
    Receiver,
    Workflows,
    controller,
    drill_config,
    report,
    wait_for,
    workflow_body,
)
from tests.reliability.invariants import StepScript

FORBIDDEN_URLS = {
    "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "metadata-decimal": "http://2852039166/latest/meta-data/",
    "metadata-hex": "http://0xa9fea9fe/latest/meta-data/",
    "metadata-mapped": "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "link-local": "http://169.254.10.20:8080/hook",
    "link-local-v6": "http://[fe80::1]:8080/hook",
    "alibaba-metadata": "http://100.100.100.200/latest/meta-data/",
}


def _steps() -> list[dict[str, Any]]:
    return [StepScript("a", (), "ok", "ok").body(), StepScript("b", ("a",), "ok", "ok").body()]


def _events(api: client.ApiClient, namespace: str) -> list[Any]:
    return list(client.CoreV1Api(api).list_namespaced_event(namespace).items)


def _refused(api: client.ApiClient, namespace: str) -> set[str]:
    return {e.involved_object.name for e in _events(api, namespace) if e.reason == "CallbackURLRefused"}


@pytest.mark.timeout(600)
def test_metadata_and_link_local_callbacks_are_refused_unless_allowed_and_secrets_never_leak(
        drill_plane: ControlPlane, drill_api: client.ApiClient, drill_namespace: str, tmp_path: Path) -> None:
    started = time.monotonic()
    wfs = Workflows(drill_api, drill_namespace)
    core = client.CoreV1Api(drill_api)
    secret_value = f"drill-signing-key-{uuid.uuid4().hex}"
    core.create_namespaced_secret(drill_namespace, {
        "metadata": {"name": "hook"}, "type": "Opaque",
        "data": {"hmac-key": base64.b64encode(secret_value.encode()).decode()}})
    receiver = Receiver()
    receiver.set("error")  # first 500s: the failure paths log too
    config = drill_config(controllerConfig={
        "queue": {"strategy": "FIFO", "maxRunningCount": 200},
        "stepDefaults": {"qps": 100, "concurrency": 8},
        "callback": {"connectTimeoutMillSeconds": 1000, "readTimeoutMillSeconds": 1000},
    })
    try:
        with controller(drill_plane.kubeconfig, drill_namespace, tmp_path / "default-config", config,
                        extra_args=("--no-leader-elect", "--log-level", "debug")) as proc:
            # (--log-level debug comes after the helper's own --log-level info: argparse keeps the last)
            for name, url in FORBIDDEN_URLS.items():
                wfs.create(workflow_body(name, _steps(), callback={"url": url}))
            wfs.create(workflow_body("signed", _steps(), callback={
                "url": receiver.url, "signingSecretRef": {"name": "hook", "key": "hmac-key"}}))
            time.sleep(3)
            receiver.set("ok")
            finals = wfs.wait_terminal([*FORBIDDEN_URLS, "signed"], timeout=180)
            refused = wait_for(lambda: (r := _refused(drill_api, drill_namespace)) >= set(FORBIDDEN_URLS)
                               and r, timeout=120, message=lambda: f"CallbackURLRefused for all: "
                               f"{sorted(_refused(drill_api, drill_namespace))}")

            def drained() -> dict[str, dict[str, Any]] | None:
                latest = wfs.all()
                return None if any((w["status"].get("callbacks") or {}).get("pending")
                                   for w in latest.values()) else latest

            finals = wait_for(drained, timeout=180, message="every outbox settled")
            assert proc.alive, proc.tail()
            exit_code = proc.terminate()
        signed_ok = bad_signatures = 0
        for raw, sig in list(receiver.raw_bodies):
            want = "sha256=" + hmac.new(secret_value.encode(), raw, hashlib.sha256).hexdigest()
            if hmac.compare_digest(want, sig):
                signed_ok += 1
            else:
                bad_signatures += 1
        emitted = {i for i in finals["signed"]["status"]["callbacks"]["emitted"]}
        delivered = set(receiver.delivered())

        # 2. allowed by config: a link-local URL is tried, not refused
        ns2 = f"{drill_namespace}-allow"
        core.create_namespace({"metadata": {"name": ns2}})
        wfs2 = Workflows(drill_api, ns2)
        allow_config = drill_config(controllerConfig={
            "queue": {"strategy": "FIFO", "maxRunningCount": 200},
            "stepDefaults": {"qps": 100, "concurrency": 8},
            "callback": {"connectTimeoutMillSeconds": 1000, "readTimeoutMillSeconds": 1000,
                         "allowedCIDRs": ["169.254.0.0/16", "127.0.0.0/8"]},
        })
        with controller(drill_plane.kubeconfig, ns2, tmp_path / "allow-config", allow_config) as proc2:
            wfs2.create(workflow_body("link-local-allowed", _steps(),
                                      callback={"url": FORBIDDEN_URLS["link-local"]}))
            wfs2.wait_terminal(["link-local-allowed"], timeout=180)
            attempts = wait_for(lambda: proc2.count("callback failed; will retry")
                                + proc2.count("callback rejected; dropped from the outbox"),
                                timeout=60, message=lambda: "a delivery attempt to the allowed link-local "
                                "URL:\n" + proc2.tail())
            time.sleep(2)
            refused_allowed = "link-local-allowed" in _refused(drill_api, ns2)
            pending_allowed = len((wfs2.get("link-local-allowed") or {}).get("status", {}).get(
                "callbacks", {}).get("pending") or [])
            crash_lines2 = proc2.crashes()
            exit_code2 = proc2.terminate()

        # 3. the secret's value, raw or base64, anywhere?
        needles = (secret_value, base64.b64encode(secret_value.encode()).decode())
        haystacks = {
            "controller log": proc.text() + proc2.text(),
            "events": json.dumps([client.ApiClient().sanitize_for_serialization(e)
                                  for e in _events(drill_api, drill_namespace) + _events(drill_api, ns2)]),
            "workflows": json.dumps([*wfs.all().values(), *wfs2.all().values()]),
            "steps": json.dumps([*wfs.steps(), *wfs2.steps()]),
        }
        leaks = [where for where, text in haystacks.items() if any(n in text for n in needles)]
        crash_lines = proc.crashes() + crash_lines2
    finally:
        receiver.close()
    report("callback-safety", forbidden_urls=len(FORBIDDEN_URLS), refused=len(refused & set(FORBIDDEN_URLS)),
           allowed_by_config_tried=int(bool(attempts) and not refused_allowed),
           allowed_pending=pending_allowed, signed_events=len(emitted), delivered=len(emitted & delivered),
           lost=len(emitted - delivered), signatures_ok=signed_ok, bad_signatures=bad_signatures,
           secret_leaks=len(leaks),
           controller_crashes=len(crash_lines) + (exit_code != 0) + (exit_code2 != 0),
           seconds=round(time.monotonic() - started))
    assert set(FORBIDDEN_URLS) <= refused
    for name in FORBIDDEN_URLS:  # dropped, not retried for ever; the workflow itself is unaffected
        assert not finals[name]["status"]["callbacks"].get("pending"), finals[name]["status"]["callbacks"]
        assert finals[name]["status"]["phase"] == "Success"
    assert attempts, "allowedCIDRs did not allow the link-local URL"
    assert not refused_allowed, "allowedCIDRs did not allow the link-local URL"
    assert emitted
    assert emitted <= delivered, sorted(emitted - delivered)
    assert signed_ok > 0
    assert bad_signatures == 0
    assert not leaks, f"the signing key's value appears in: {leaks}"
    assert not crash_lines, "\n".join(crash_lines[:20])
    assert exit_code == 0
    assert exit_code2 == 0
