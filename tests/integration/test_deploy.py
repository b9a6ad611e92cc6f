"""deploy/ against the real kube-apiserver and a real helm (built from Go modules by hack/helm/build.sh).

* ``kubectl apply --dry-run=server -f deploy/crds -f deploy/manifests`` passes (the README's install
  command), with no Pod Security warning under the namespace's ``restricted`` level;
* the RBAC, applied for real, lets the controller's ServiceAccount do exactly what it needs and nothing
  else (SubjectAccessReview, answered by the API server's RBAC authorizer);
* ``helm lint --strict`` passes and ``helm template`` output passes the server-side dry run for the
  default values and the switches (namespace scope, no leader election, external ServiceAccount);
* ``helm install`` for real (cluster-wide and one-namespace scope): the ServiceAccount it creates gets
  the controller's rules where it needs them, and ``helm uninstall`` removes them;
* the chart renders what the plain manifests say; values.schema.json rejects typos and wrong types;
* the Dockerfile's build steps (wheel of only the package; pip-less runtime venv) work, without an engine.

No kube-controller-manager runs here: nothing rolls the Deployment out, so server-side validation is the
check. The e2e tests run the controller itself as the ServiceAccount.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kubetestenv import REPO_ROOT
from tests.unit.test_deploy_manifests import (
    CONTROLLER_RULES,
    LEADER_ELECTION_RULES,
    ORIGINAL_CONFIG,
    Obj,
    controller_container,
    load_docs,
    manifest_objects,
    rule_set,
)

# The first use builds helm from Go modules when it is not cached (a few minutes on 2 cores; `make test`
# builds it beforehand). Everything else here takes seconds.
pytestmark = pytest.mark.timeout(1200)

DEPLOY = REPO_ROOT / "deploy"
MANIFESTS = DEPLOY / "manifests"
CRDS = DEPLOY / "crds"
CHART = DEPLOY / "helm" / "kube-workflow"
HELM_BUILD = REPO_ROOT / "hack" / "helm" / "build.sh"
CONTROLLER_NAMESPACE = "workflow-system"
RELEASE = "kube-workflow"


# --- tools ----------------------------------------------------------------------------------------

def run(argv: Sequence[str | Path], stdin: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], input=stdin, capture_output=True, text=True,
                          timeout=120, check=False, env=env)


@dataclass(frozen=True)
class Helm:
    """The helm binary, with its config/cache/data directories in a temporary home (no ~/.config/helm)."""

    path: Path
    home: Path

    def __call__(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        homes = {f"HELM_{d}_HOME": str(self.home / d.lower()) for d in ("CONFIG", "CACHE", "DATA")}
        env = {**os.environ, **homes}
        return run([self.path, *args], env=env)


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    if not HELM_BUILD.exists():
        pytest.skip("hack/helm/build.sh is missing: no way to build helm")
    proc = subprocess.run(["bash", str(HELM_BUILD)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"hack/helm/build.sh failed:\n{proc.stderr[-4000:]}"
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert os.access(path, os.X_OK), path
    return Helm(path, tmp_path_factory.mktemp("helm-home"))


def kubectl(
    kubeconfig: Path, *args: str | Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run(["kubectl", "--kubeconfig", kubeconfig, *args], stdin=stdin)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{' '.join(proc.args)}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def server_dry_run(kubeconfig: Path, *files: Path, stdin: str | None = None) -> str:
    """`kubectl apply --dry-run=server`; fails on any warning (Pod Security, deprecated API...)."""
    args: list[str | Path] = ["apply", "--dry-run=server"]
    for f in files:
        args += ["-f", f]
    if stdin is not None:
        args += ["-f", "-"]
    proc = kubectl(kubeconfig, *args, stdin=stdin)
    out = ok(proc)
    # The CRDs exist already, created by other means than client-side apply (harmless notice).
    warnings = [line for line in proc.stderr.splitlines()
                if line.startswith("Warning") and "last-applied-configuration" not in line]
    assert warnings == []
    return out


def dump(docs: Sequence[Obj]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


@pytest.fixture(scope="module")
def crds_installed(kubeconfig: Path) -> None:
    """The CRDs for real (the dry run of the rest may reference them). Server-side apply with
    --force-conflicts: other tests create the same CRDs with their own field manager."""
    ok(kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "--field-manager=test-deploy",
               "-f", CRDS))
    names = [load_docs(p)[0]["metadata"]["name"] for p in sorted(CRDS.glob("*.yaml"))]
    ok(kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
               *[f"crd/{n}" for n in names]))


# --- plain manifests ------------------------------------------------------------------------------

def test_kubectl_install_command_passes_server_side_dry_run(kubeconfig: Path, crds_installed: None) -> None:
    # A dry run does not persist the Namespace, so create it for real first (idempotent: the session's
    # API server is shared by all tests).
    ok(kubectl(kubeconfig, "apply", "-f", MANIFESTS / "00-namespace.yaml"))
    out = server_dry_run(kubeconfig, CRDS, MANIFESTS)
    for obj in manifest_objects():
        kind = obj["kind"].lower()
        assert re.search(rf"^{kind}[./].*\b{obj['metadata']['name']}\b.*\(server dry run\)$", out, re.M), (
            kind, obj["metadata"]["name"], out)


def test_restricted_pod_security_warning_would_show(kubeconfig: Path, crds_installed: None) -> None:
    """Proves the 'no warning' check above is not vacuous: the same Deployment without
    allowPrivilegeEscalation: false draws the API server's Pod Security warning."""
    ok(kubectl(kubeconfig, "apply", "-f", MANIFESTS / "00-namespace.yaml"))
    deployment = next(o for o in manifest_objects() if o["kind"] == "Deployment")
    del controller_container(deployment)["securityContext"]["allowPrivilegeEscalation"]
    proc = kubectl(kubeconfig, "apply", "--dry-run=server", "-f", "-", stdin=dump([deployment]))
    ok(proc)
    assert "would violate PodSecurity" in proc.stderr
    assert "allowPrivilegeEscalation" in proc.stderr


def renamed_rbac(namespace: str, suffix: str) -> list[Obj]:
    """ServiceAccount + RBAC of deploy/manifests moved into a test namespace, cluster-scoped names
    suffixed: the session's API server is shared, and other tests may apply the original names."""
    docs = [o for o in manifest_objects()
            if o["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")]
    for obj in docs:
        meta = obj["metadata"]
        if obj["kind"].startswith("Cluster"):
            meta["name"] = f"{meta['name']}-{suffix}"
        else:
            meta["namespace"] = namespace
        if obj["kind"] == "ClusterRoleBinding":
            obj["roleRef"]["name"] = f"{obj['roleRef']['name']}-{suffix}"
        for subject in obj.get("subjects", []):
            subject["namespace"] = namespace
    return docs


def can(kubeconfig: Path, namespace: str, user: str,
        checks: Sequence[tuple[str, str, str, str]]) -> list[bool]:
    """Ask the API server's authorizer, in one kubectl call, whether `user` may do each of
    (namespace, group, resource[/subresource], verb); namespace "" = cluster scope."""
    items = []
    for ns, group, resource, verb in checks:
        res, _, sub = resource.partition("/")
        attrs: Obj = {"group": group, "resource": res, "verb": verb}
        if sub:
            attrs["subresource"] = sub
        if ns:
            attrs["namespace"] = ns
        items.append({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                                              "system:authenticated"],
                     "resourceAttributes": attrs},
        })
    out = ok(kubectl(kubeconfig, "create", "-o", "json", "-f", "-",
                     stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})))
    # kubectl prints one JSON document per created object, back to back.
    decoder, reviews, pos = json.JSONDecoder(), [], 0
    while out[pos:].strip():
        review, end = decoder.raw_decode(out, pos + len(out[pos:]) - len(out[pos:].lstrip()))
        reviews.append(review)
        pos = end
    def attrs_of(review: Obj) -> Obj:  # the server drops empty strings (group "")
        return {k: v for k, v in review["spec"]["resourceAttributes"].items() if v}

    assert [attrs_of(r) for r in reviews] == [attrs_of(i) for i in items]
    return [bool(r["status"].get("allowed")) for r in reviews]


@pytest.fixture
def controller_rbac(kubeconfig: Path, namespace: str) -> Iterator[str]:
    """The manifests' ServiceAccount and RBAC applied for real in the test namespace; yields the
    ServiceAccount's user name."""
    docs = renamed_rbac(namespace, namespace)
    ok(kubectl(kubeconfig, "apply", "-f", "-", stdin=dump(docs)))
    yield f"system:serviceaccount:{namespace}:workflow-controller"
    kubectl(kubeconfig, "delete", "--ignore-not-found", "-f", "-",
            stdin=dump([d for d in docs if d["kind"].startswith("Cluster")]))


def test_rbac_grants_what_the_controller_needs(
    kubeconfig: Path, namespace: str, controller_rbac: str
) -> None:
    elsewhere = f"team-{uuid.uuid4().hex[:6]}"  # a namespace the controller watches (all of them)
    checks = [(elsewhere, group, resource, verb)
              for group, resource, verbs in sorted(CONTROLLER_RULES, key=str) for verb in sorted(verbs)]
    checks += [(namespace, group, resource, verb)
               for group, resource, verbs in LEADER_ELECTION_RULES for verb in sorted(verbs)]
    answers = can(kubeconfig, namespace, controller_rbac, checks)
    assert [c for c, allowed in zip(checks, answers, strict=True) if not allowed] == []


DENIED = [
    # Users create and delete Workflows, never the controller.
    ("", "workflow.example.com", "workflows", "create"),
    ("", "workflow.example.com", "workflows", "delete"),
    ("", "workflow.example.com", "workflows", "deletecollection"),
    ("", "workflow.example.com", "steps", "deletecollection"),
    ("", "workflow.example.com", "workflows/status", "delete"),
    # Secrets: one named get only, never list/watch (that would read every Secret in the cluster).
    ("", "", "secrets", "list"),
    ("", "", "secrets", "watch"),
    ("", "", "secrets", "create"),
    ("", "", "secrets", "update"),
    ("", "", "events", "get"),
    ("", "", "events", "delete"),
    ("", "", "configmaps", "get"),
    ("", "", "pods", "list"),
    ("", "", "pods", "create"),
    ("", "", "namespaces", "list"),
    ("", "", "serviceaccounts/token", "create"),
    ("", "apps", "deployments", "get"),
    ("", "apiextensions.k8s.io", "customresourcedefinitions", "get"),
    ("", "rbac.authorization.k8s.io", "clusterroles", "create"),
    ("", "rbac.authorization.k8s.io", "rolebindings", "create"),
    ("", "coordination.k8s.io", "leases", "list"),
    ("", "coordination.k8s.io", "leases", "watch"),
    ("", "coordination.k8s.io", "leases", "delete"),
]


def test_rbac_grants_nothing_else(kubeconfig: Path, namespace: str, controller_rbac: str) -> None:
    elsewhere = f"team-{uuid.uuid4().hex[:6]}"
    checks = [(ns or elsewhere, g, r, v) for ns, g, r, v in DENIED]
    checks += [(namespace, g, r, v) for _, g, r, v in DENIED]
    checks += [("", g, r, v) for _, g, r, v in DENIED]  # cluster scope
    # Leases only in the controller's own namespace.
    checks += [(elsewhere, "coordination.k8s.io", "leases", v) for v in ("get", "create", "update")]
    answers = can(kubeconfig, namespace, controller_rbac, checks)
    assert [c for c, allowed in zip(checks, answers, strict=True) if allowed] == []


# --- Helm chart -----------------------------------------------------------------------------------

def helm_template(
    helm: Helm, namespace: str, *sets: str, crds: bool = False
) -> subprocess.CompletedProcess[str]:
    args: list[str | Path] = ["template", RELEASE, CHART, "--namespace", namespace]
    if crds:
        args.append("--include-crds")
    for s in sets:
        args += ["--set", s]
    return helm(*args)


def rendered(helm: Helm, namespace: str, *sets: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all(ok(helm_template(helm, namespace, *sets))) if d]


def by_kind(docs: Sequence[Obj], kind: str) -> list[Obj]:
    return [d for d in docs if d["kind"] == kind]


def test_helm_is_v3_built_from_go_modules(helm: Helm) -> None:
    out = ok(helm("version", "--template", "{{.Version}} {{.GoVersion}}"))
    assert re.fullmatch(r"v3\.\d+\.\d+ go1\.\d+(\.\d+)?", out.strip()), out


@pytest.mark.parametrize("sets", [(), ("config.namespace=team-a",), ("leaderElection.enabled=false",
                                                                        "replicaCount=1")],
                         ids=["defaults", "one-namespace", "no-leader-election"])
def test_helm_lint_passes(helm: Helm, sets: tuple[str, ...]) -> None:
    args: list[str | Path] = ["lint", "--strict", CHART]
    for s in sets:
        args += ["--set", s]
    out = ok(helm(*args))
    assert "1 chart(s) linted, 0 chart(s) failed" in out


VARIANTS = {
    "defaults": [],
    "one-namespace": ["config.namespace={ns}"],
    "no-leader-election": ["leaderElection.enabled=false", "replicaCount=1", "metrics.service.enabled=false"],
    "external-service-account": ["serviceAccount.create=false", "serviceAccount.name=platform-sa",
                                 "rbac.create=false", "image.repository=registry.example.com/platform/kw",
                                 "image.tag=0.1.1", "image.pullPolicy=Always"],
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_helm_template_passes_server_side_dry_run(helm: Helm, kubeconfig: Path, namespace: str,
                                                  crds_installed: None, variant: str) -> None:
    # Warn about anything the "restricted" Pod Security Standard forbids (the chart's pods comply).
    ok(kubectl(kubeconfig, "label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted"))
    sets = [s.format(ns=namespace) for s in VARIANTS[variant]]
    manifest = ok(helm_template(helm, namespace, *sets, crds=True))
    out = server_dry_run(kubeconfig, stdin=manifest)
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    assert len(out.strip().splitlines()) == len(docs), out
    kinds = sorted(d["kind"] for d in docs)
    expected = {
        "defaults": ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "CustomResourceDefinition",
                     "CustomResourceDefinition", "Deployment", "Role", "RoleBinding", "Service",
                     "ServiceAccount"],
        "one-namespace": ["ConfigMap", "CustomResourceDefinition", "CustomResourceDefinition",
                          "Deployment", "Role", "Role", "RoleBinding", "RoleBinding", "Service",
                          "ServiceAccount"],
        "no-leader-election": ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "CustomResourceDefinition",
                               "CustomResourceDefinition", "Deployment", "ServiceAccount"],
        "external-service-account": ["ConfigMap", "CustomResourceDefinition", "CustomResourceDefinition",
                                     "Deployment", "Service"],
    }[variant]
    assert kinds == expected
    for doc in docs:
        if doc["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]


@pytest.mark.parametrize("scope", ["all-namespaces", "one-namespace"])
def test_helm_install_for_real_binds_the_rules_to_the_service_account(
    helm: Helm, kubeconfig: Path, namespace: str, crds_installed: None, scope: str
) -> None:
    """`helm install` against the API server (objects stored for real; no pods, no controller-manager),
    then the ServiceAccount it created may do what the controller needs, where it needs it."""
    release = f"kw-{namespace}"  # cluster-scoped names include the release: unique per test
    sets = ["--set", f"config.namespace={namespace}"] if scope == "one-namespace" else []
    ok(helm("install", release, CHART, "--namespace", namespace, "--kubeconfig", kubeconfig, *sets))
    try:
        status = json.loads(ok(helm("status", release, "-n", namespace, "--kubeconfig", kubeconfig,
                                    "-o", "json")))
        assert status["info"]["status"] == "deployed"
        elsewhere = f"team-{uuid.uuid4().hex[:6]}"
        watched = namespace if scope == "one-namespace" else elsewhere
        user = f"system:serviceaccount:{namespace}:workflow-controller"
        checks = [(watched, g, r, v)
                  for g, r, verbs in sorted(CONTROLLER_RULES, key=str) for v in sorted(verbs)]
        checks += [(namespace, g, r, v) for g, r, verbs in LEADER_ELECTION_RULES for v in sorted(verbs)]
        assert all(can(kubeconfig, namespace, user, checks))
        outside = can(kubeconfig, namespace, user, [
            (elsewhere, "workflow.example.com", "workflows", "list"), (elsewhere, "", "secrets", "get")])
        assert outside == ([True, True] if scope == "all-namespaces" else [False, False])
        configmap = json.loads(ok(kubectl(kubeconfig, "-n", namespace, "get", "configmap", "workflow-config",
                                          "-o", "json")))
        config = yaml.safe_load(configmap["data"]["config.yaml"])
        assert config["namespace"] == (namespace if scope == "one-namespace" else "")
    finally:
        ok(helm("uninstall", release, "--namespace", namespace, "--kubeconfig", kubeconfig))
    assert kubectl(kubeconfig, "get", "clusterrole", f"{release}-kube-workflow").returncode != 0


def test_chart_renders_what_the_plain_manifests_say(helm: Helm) -> None:
    chart = rendered(helm, CONTROLLER_NAMESPACE)
    plain = manifest_objects()

    def only(docs: Sequence[Obj], kind: str) -> Obj:
        found = by_kind(docs, kind)
        assert len(found) == 1, (kind, found)
        return found[0]

    assert rule_set(only(chart, "ClusterRole")["rules"]) == CONTROLLER_RULES
    assert rule_set(only(chart, "Role")["rules"]) == LEADER_ELECTION_RULES
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        assert only(chart, kind)["subjects"] == only(plain, kind)["subjects"]
    assert only(chart, "ServiceAccount")["metadata"]["name"] == "workflow-controller"
    configmap = only(chart, "ConfigMap")
    assert configmap["metadata"]["name"] == "workflow-config"
    assert yaml.safe_load(configmap["data"]["config.yaml"]) == ORIGINAL_CONFIG

    ours, theirs = only(chart, "Deployment"), only(plain, "Deployment")
    assert ours["spec"]["replicas"] == theirs["spec"]["replicas"]
    pod, plain_pod = ours["spec"]["template"]["spec"], theirs["spec"]["template"]["spec"]
    for key in ("serviceAccountName", "terminationGracePeriodSeconds", "securityContext", "volumes"):
        assert pod[key] == plain_pod[key], key
    c, plain_c = controller_container(ours), controller_container(theirs)
    assert c == plain_c
    assert "checksum/config" in ours["spec"]["template"]["metadata"]["annotations"]
    service = only(chart, "Service")
    assert service["spec"]["ports"] == only(plain, "Service")["spec"]["ports"]
    assert service["spec"]["selector"].items() <= ours["spec"]["template"]["metadata"]["labels"].items()


def test_chart_namespace_scope_switches_to_a_role(helm: Helm) -> None:
    docs = rendered(helm, "platform", "config.namespace=team-a")
    assert not by_kind(docs, "ClusterRole")
    assert not by_kind(docs, "ClusterRoleBinding")
    roles = {r["metadata"]["namespace"]: r for r in by_kind(docs, "Role")}
    assert rule_set(roles["team-a"]["rules"]) == CONTROLLER_RULES
    assert rule_set(roles["platform"]["rules"]) == LEADER_ELECTION_RULES  # the Lease stays at home
    bindings = {b["metadata"]["namespace"]: b for b in by_kind(docs, "RoleBinding")}
    assert bindings["team-a"]["subjects"] == [{"kind": "ServiceAccount", "name": "workflow-controller",
                                               "namespace": "platform"}]
    config = yaml.safe_load(by_kind(docs, "ConfigMap")[0]["data"]["config.yaml"])
    assert config["namespace"] == "team-a"


def test_chart_switches_leader_election_and_image(helm: Helm) -> None:
    docs = rendered(helm, "platform", "leaderElection.enabled=false", "replicaCount=1",
                    "image.repository=registry.example.com/kw", "image.tag=1.2.3")
    c = controller_container(by_kind(docs, "Deployment")[0])
    assert "--no-leader-elect" in c["args"]
    assert "--leader-elect" not in c["args"]
    cli = pytest.importorskip("controller.cli")
    assert cli.parse_args(c["args"]).leader_elect is False
    assert c["image"] == "registry.example.com/kw:1.2.3"
    assert not by_kind(docs, "Role")


def test_chart_renders_large_numbers_as_integers(helm: Helm, tmp_path: Path) -> None:
    # Helm reads values files as JSON numbers (float64); toYaml must not turn 3600000 into 3.6e+06,
    # which YAML 1.1 (PyYAML, the controller) reads as a string.
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"config": {
        "idleTimeoutMillSeconds": 3600000, "rpcTimeoutMillSeconds": 10000000,
        "controllerConfig": {"queue": {"maxRunningCount": 1000000},
                             "steps": [{"kind": "http", "qps": 0.5, "concurrency": 16}]}}}))
    out = ok(helm("template", RELEASE, CHART, "-f", values, "--show-only", "templates/configmap.yaml"))
    config = yaml.safe_load(yaml.safe_load(out)["data"]["config.yaml"])
    assert config["idleTimeoutMillSeconds"] == 3600000
    assert config["rpcTimeoutMillSeconds"] == 10000000
    assert config["controllerConfig"]["queue"]["maxRunningCount"] == 1000000
    assert config["controllerConfig"]["steps"] == [{"kind": "http", "qps": 0.5, "concurrency": 16}]
    controller_config = pytest.importorskip("controller.config")
    controller_config.parse_config(config)


@pytest.mark.parametrize(("sets", "message"), [
    (["config.controllerConfig.queue.stratgy=FIFO"], "stratgy"),
    (["config.controllerConfig.queue.strategy=LIFO"], "strategy"),
    (["config.throttleQPS=fast"], "throttleQPS"),
    (["config.controllerConfig.steps[0].kind=random", "config.controllerConfig.steps[0].qbs=2"], "qbs"),
    (["replicaCount=2", "leaderElection.enabled=false"], "replicaCount > 1 needs leaderElection.enabled"),
    (["image.repository="], "repository"),
    (["logLevel=verbose"], "logLevel"),
], ids=["typo", "bad-strategy", "not-a-number", "step-typo", "two-leaders", "no-image", "log-level"])
def test_chart_rejects_bad_values(helm: Helm, sets: list[str], message: str) -> None:
    proc = helm_template(helm, "platform", *sets)
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr, proc.stderr


# --- the image's package (what deploy/Dockerfile's builder and runtime stages do, without an engine) --

def test_image_build_steps_make_a_wheel_of_only_the_package(tmp_path: Path) -> None:
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "setup.cfg", "README.md"):  # the Dockerfile's COPY lines
        shutil.copy(REPO_ROOT / name, context / name)
    for package in ("controller", "informers", "reconcilers", "stepkit"):
        shutil.copytree(REPO_ROOT / package, context / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = tmp_path / "wheels"
    # Build isolation fetches setuptools from the package index, as the builder stage does.
    ok(run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
            "-w", wheels, context]))
    [wheel] = wheels.glob("kube_workflow-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        top = {n.split("/")[0] for n in zf.namelist()}
        entry_points = zf.read(next(n for n in zf.namelist() if n.endswith("entry_points.txt"))).decode()
    assert top == {"controller", "informers", "reconcilers", "stepkit", wheel.name.split("-")[0] + "-"
                   + wheel.name.split("-")[1] + ".dist-info"}
    assert re.search(r"^workflow-controller = ", entry_points, re.M)
    # The runtime stage: a venv without pip, installed into by another pip from local wheels only.
    venv = tmp_path / "venv"
    ok(run([sys.executable, "-m", "venv", "--without-pip", venv]))
    ok(run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-index",
            "--no-deps", "--disable-pip-version-check", wheel]))
    assert (venv / "bin" / "workflow-controller").exists()
    assert not (venv / "bin" / "pip").exists()

