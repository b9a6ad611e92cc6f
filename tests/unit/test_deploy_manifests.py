"""deploy/ without a cluster: every manifest parses; the Deployment is locked down (non-root, read-only
root filesystem, no privilege escalation, capabilities dropped, seccomp, probes, resources); the RBAC is
exactly the least-privilege rule set below, with no wildcard and a reason on every rule; the ConfigMap
carries the original's keys and defaults; the chart's crds/ are copies of deploy/crds/; the Dockerfile
copies only the package sources and runs as the non-root user; the helm wrapper module builds helm v3.

The same checks against the real API server and a real helm are in tests/integration/test_deploy.py."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
MANIFESTS = DEPLOY / "manifests"
CRDS = DEPLOY / "crds"
CHART = DEPLOY / "helm" / "kube-workflow"
NAMESPACE = "workflow-system"
SERVICE_ACCOUNT = "workflow-controller"

Obj = dict[str, Any]
Rule = tuple[str, str, frozenset[str]]

# The controller's permissions, (apiGroup, resource, verbs). Changing one is a security decision:
# update deploy/README.md, both copies of the rules (manifests and chart) and this table together.
CONTROLLER_RULES: set[Rule] = {
    ("workflow.example.com", "workflows", frozenset({"get", "list", "watch", "update", "patch"})),
    ("workflow.example.com", "workflows/status", frozenset({"get", "update", "patch"})),
    ("workflow.example.com", "workflows/finalizers", frozenset({"update"})),
    ("workflow.example.com", "steps",
     frozenset({"get", "list", "watch", "create", "update", "patch", "delete"})),
    ("workflow.example.com", "steps/status", frozenset({"get", "update", "patch"})),
    ("workflow.example.com", "steps/finalizers", frozenset({"update"})),
    ("", "events", frozenset({"create", "patch"})),
    ("events.k8s.io", "events", frozenset({"create", "patch"})),
    ("", "secrets", frozenset({"get"})),
}
LEADER_ELECTION_RULES: set[Rule] = {
    ("coordination.k8s.io", "leases", frozenset({"get", "create", "update"})),
}

# The original chart's config.yaml (seed README), with `namespace: ""` = all namespaces.
ORIGINAL_CONFIG: Obj = {
    "namespace": "",
    "throttleQPS": 100,
    "idleTimeoutMillSeconds": 200000,
    "rpcTimeoutMillSeconds": 5000,
    "controllerConfig": {
        "queue": {"strategy": "FIFO", "maxRunningCount": 100},
        "steps": [{"kind": "random", "qps": 1, "concurrency": 4}],
    },
}


def load_docs(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def manifest_objects() -> list[Obj]:
    return [d for path in sorted(MANIFESTS.glob("*.yaml")) for d in load_docs(path)]


def one(kind: str, name: str | None = None) -> Obj:
    found = [o for o in manifest_objects() if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/manifests, found {len(found)}"
    return found[0]


def rule_set(rules: list[Obj]) -> set[Rule]:
    """Flatten RBAC rules to (group, resource, verbs) so that equal permissions compare equal however
    they are grouped."""
    out: set[Rule] = set()
    for rule in rules:
        assert "resourceNames" not in rule, rule
        assert "nonResourceURLs" not in rule, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.add((group, resource, frozenset(rule["verbs"])))
    return out


def controller_container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["controller"]
    container: Obj = containers[0]
    return container


# --- every file parses ----------------------------------------------------------------------------

ALL_YAML = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
PLAIN_YAML = [p for p in ALL_YAML if "templates" not in p.parts]


@pytest.mark.parametrize("path", PLAIN_YAML, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_plain_yaml_file_parses_into_kubernetes_objects(path: Path) -> None:
    if path.parent == CHART:  # Chart.yaml, values.yaml: not Kubernetes objects
        assert isinstance(yaml.safe_load(path.read_text()), dict)
        return
    docs = load_docs(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
        assert doc["metadata"]["name"]


def test_manifests_are_ordered_so_a_directory_apply_works() -> None:
    # `kubectl apply -f deploy/manifests` applies files in name order and does not sort by kind: the
    # Namespace must come first, and the directory must hold only Kubernetes objects.
    files = sorted(p.name for p in MANIFESTS.iterdir())
    assert all(re.fullmatch(r"\d\d-[a-z-]+\.yaml", f) for f in files), files
    assert load_docs(MANIFESTS / files[0]) == [one("Namespace")]
    kinds = {o["kind"] for o in manifest_objects()}
    assert kinds == {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                     "RoleBinding", "ConfigMap", "Deployment", "Service"}


def test_namespaced_manifests_live_in_the_controller_namespace() -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for obj in manifest_objects():
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"], obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]
    assert one("Namespace")["metadata"]["name"] == NAMESPACE
    # The pod passes the "restricted" Pod Security Standard; the namespace enforces it.
    assert one("Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- Deployment -----------------------------------------------------------------------------------

def test_deployment_runs_non_root_with_a_read_only_root_filesystem_and_no_privileges() -> None:
    deployment = one("Deployment", "workflow-controller")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert controller_container(deployment)["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(host_namespace), host_namespace


def test_deployment_command_probes_ports_resources_and_volumes() -> None:
    deployment = one("Deployment", "workflow-controller")
    pod = deployment["spec"]["template"]["spec"]
    c = controller_container(deployment)
    assert c["image"] == "kube-workflow:0.1.0"
    assert c["command"] == ["workflow-controller"]
    assert c["args"][:3] == ["--config", "/etc/workflow/config.yaml", "--leader-elect"]
    # The Lease must go where the leader-election Role is: the pod's own namespace.
    assert "--leader-election-namespace=$(POD_NAMESPACE)" in c["args"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
    assert env == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": 8081, "health": 9440}
    assert "--metrics-bind-address=:8081" in c["args"]
    assert "--health-probe-bind-address=:9440" in c["args"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "1", "memory": "512Mi"}}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["/etc/workflow"]["readOnly"] is True
    assert volumes[mounts["/etc/workflow"]["name"]]["configMap"]["name"] == "workflow-config"
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert pod["serviceAccountName"] == SERVICE_ACCOUNT
    assert pod["terminationGracePeriodSeconds"] == 40
    assert deployment["spec"]["replicas"] == 2  # safe: --leader-elect
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_deployment_args_are_accepted_by_the_controller_cli() -> None:
    cli = pytest.importorskip("controller.cli")
    c = controller_container(one("Deployment"))
    assert c["command"] == ["workflow-controller"]
    options = cli.parse_args(c["args"])
    assert options.config == Path("/etc/workflow/config.yaml")
    assert options.leader_elect is True
    # The kubelet expands $(POD_NAMESPACE) from the container's env before the process starts.
    assert options.leader_election_namespace == "$(POD_NAMESPACE)"
    assert options.metrics_bind_address == ":8081"
    assert options.health_probe_bind_address == ":9440"
    assert str(options.log_format) == "json"


def test_metrics_service_selects_the_controller_pods() -> None:
    service = one("Service")
    pod_labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics",
                                         "protocol": "TCP"}]


# --- RBAC -----------------------------------------------------------------------------------------

def test_rbac_has_no_wildcards() -> None:
    for obj in manifest_objects():
        for rule in obj.get("rules", []):
            for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert "*" not in rule.get(key, []), (obj["metadata"]["name"], rule)
    assert "*" not in (MANIFESTS / "02-rbac.yaml").read_text().replace("# ", "")


def test_controller_cluster_role_is_exactly_the_least_privilege_rule_set() -> None:
    role = one("ClusterRole", "workflow-controller")
    assert rule_set(role["rules"]) == CONTROLLER_RULES
    binding = one("ClusterRoleBinding", "workflow-controller")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "workflow-controller"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT,
                                    "namespace": NAMESPACE}]
    assert one("ServiceAccount")["metadata"]["name"] == SERVICE_ACCOUNT


def test_leases_only_in_the_controller_namespace() -> None:
    role = one("Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert rule_set(role["rules"]) == LEADER_ELECTION_RULES
    binding = one("RoleBinding")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT,
                                    "namespace": NAMESPACE}]
    # No other object grants anything.
    granting = [o["kind"] for o in manifest_objects() if "rules" in o]
    assert sorted(granting) == ["ClusterRole", "Role"]


@pytest.mark.parametrize("path", [MANIFESTS / "02-rbac.yaml", CHART / "templates" / "_helpers.tpl",
                                  CHART / "templates" / "rbac.yaml"], ids=lambda p: p.name)
def test_every_rbac_rule_says_why(path: Path) -> None:
    lines = path.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("- apiGroups:")]
    assert starts
    for i in starts:
        above = next(line for line in reversed(lines[:i]) if line.strip())
        assert above.startswith("#"), f"{path.name}:{i + 1}: rule without a comment saying why"


def test_chart_rules_are_the_manifest_rules() -> None:
    # The chart's ClusterRole/Role rules live in one named template; parse its body as YAML.
    text = (CHART / "templates" / "_helpers.tpl").read_text()
    match = re.search(r'define "kube-workflow\.controllerRules" -}}\n(.*?)\n{{- end -}}', text, re.S)
    assert match, "kube-workflow.controllerRules not found"
    assert rule_set(yaml.safe_load(match.group(1))) == CONTROLLER_RULES
    lease_rules = yaml.safe_load_all((CHART / "templates" / "rbac.yaml").read_text().split("rules:\n")[-1]
                                     .split("---")[0])
    assert rule_set(next(iter(lease_rules))) == LEADER_ELECTION_RULES


# --- ConfigMap and values -------------------------------------------------------------------------

def manifest_config() -> Obj:
    configmap = one("ConfigMap", "workflow-config")
    assert set(configmap["data"]) == {"config.yaml"}
    config: Obj = yaml.safe_load(configmap["data"]["config.yaml"])
    return config


def test_configmap_has_the_original_keys_and_defaults() -> None:
    assert manifest_config() == ORIGINAL_CONFIG


def test_chart_values_default_to_the_same_config() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["config"] == ORIGINAL_CONFIG
    for key in ("image", "replicaCount", "resources", "leaderElection", "serviceAccount", "rbac", "metrics"):
        assert key in values, key
    assert values["image"] == {"repository": "kube-workflow", "tag": "", "pullPolicy": "IfNotPresent"}
    assert values["serviceAccount"]["name"] == SERVICE_ACCOUNT
    deployment = one("Deployment")
    assert values["resources"] == controller_container(deployment)["resources"]
    assert values["replicaCount"] == deployment["spec"]["replicas"]
    assert values["leaderElection"] == {"enabled": True}
    assert values["rbac"] == {"create": True}
    assert values["metrics"]["service"]["enabled"] is True
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "kube-workflow"
    assert chart["appVersion"] == "0.1.0"  # image tag "" = appVersion = kube-workflow:0.1.0


def test_values_schema_describes_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: object, node: Obj, path: str) -> None:
        if isinstance(value, dict) and node.get("additionalProperties") is False:
            for key, sub in value.items():
                assert key in node["properties"], f"{path}{key} is not in values.schema.json"
                walk(sub, node["properties"][key], f"{path}{key}.")

    walk(values, schema, "")


def test_shipped_config_is_accepted_by_the_controller() -> None:
    config = pytest.importorskip("controller.config")
    parsed = config.parse_config(manifest_config())
    assert parsed.namespace == ""
    assert [s.kind for s in parsed.steps] == ["random"]


# --- chart CRDs -----------------------------------------------------------------------------------

def test_chart_crds_are_copies_of_deploy_crds() -> None:
    ours = {p.name: p.read_bytes() for p in CRDS.glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").iterdir()}
    assert ours
    assert chart == ours, "copy deploy/crds/*.yaml to deploy/helm/kube-workflow/crds/"


# --- Dockerfile -----------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            op, _, rest = line.strip().partition(" ")
            out.append((op.upper(), " ".join(rest.split())))
    return out


def test_dockerfile_is_multi_stage_slim_python_and_non_root() -> None:
    steps = dockerfile_instructions()
    args = dict(rest.split("=", 1) for op, rest in steps if op == "ARG")
    froms = [rest for op, rest in steps if op == "FROM"]
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM"):]
    assert ("USER", "65532:65532") in final
    assert ("ENTRYPOINT", '["workflow-controller"]') in final
    assert not [rest for op, rest in final if op in ("COPY", "ADD")], "the runtime stage copies no sources"
    runs = " ".join(rest for op, rest in final if op == "RUN")
    assert "--no-index" in runs
    assert "useradd --system --uid 65532" in runs
    builder_runs = " ".join(rest for op, rest in steps[: len(steps) - len(final)] if op == "RUN")
    assert "pip wheel --no-deps -w /wheels ." in builder_runs


def test_dockerfile_copies_only_package_sources_that_the_context_allows() -> None:
    copies = [rest.split()[:-1] for op, rest in dockerfile_instructions() if op == "COPY"]
    sources = [s.rstrip("/") for srcs in copies for s in srcs if not s.startswith("--")]
    assert set(sources) == {"pyproject.toml", "setup.cfg", "README.md",
                            "controller", "informers", "reconcilers", "stepkit"}
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
    ignore = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", ".dockerignore is an allow-list"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == set(sources)
    # The packages the wheel contains are exactly the copied package directories.
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    packages = {p.strip().removesuffix(".*") for p in cfg["options.packages.find"]["include"].split()}
    assert packages == {s for s in sources if (REPO_ROOT / s).is_dir()}
    scripts = cfg["options.entry_points"]["console_scripts"]
    assert re.search(r"^workflow-controller\s*=", scripts, re.M), "the image's ENTRYPOINT"


# --- helm from Go modules -------------------------------------------------------------------------

def test_helm_wrapper_module_builds_helm_v3_as_a_tool() -> None:
    gomod = (REPO_ROOT / "hack" / "helm" / "go.mod").read_text()
    assert re.search(r"^tool helm\.sh/helm/v3/cmd/helm$", gomod, re.M)
    assert re.search(r"^\s*helm\.sh/helm/v3 v3\.\d+\.\d+\b", gomod, re.M)
    assert (REPO_ROOT / "hack" / "helm" / "go.sum").stat().st_size > 0
    build = (REPO_ROOT / "hack" / "helm" / "build.sh").read_text()
    for needle in ("CGO_ENABLED=0", "-trimpath", "flock"):
        assert needle in build, needle
