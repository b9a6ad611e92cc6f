"""Names, labels and the body of the Step objects a workflow creates.

The original named a step ``<workflow>-<step>``, so workflow ``a-b`` step ``c`` and workflow ``a`` step
``b-c`` were the same object. Here the name ends with a hash of the (workflow, step) pair, so two pairs
never share a name (short of a 40-bit hash collision), and it is cut to fit the 253-character DNS
subdomain rule. Label values longer than 63 characters (the label limit) are cut and hashed the same way.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any

from reconcilers.state_machine.types import StepSpec, Workflow

API_VERSION = "workflow.example.com/v1alpha1"
FINALIZER = "workflow.example.com/rollback"
LABEL_WORKFLOW = "workflow"
LABEL_STEP = "step"
#: The step's name in its workflow, unabridged (labels may be hashed).
ANNOTATION_STEP = "workflow.example.com/step"

_MAX_NAME = 253
_MAX_LABEL = 63
_HASH_LEN = 10
_NOT_DNS = re.compile(r"[^a-z0-9.-]+")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:_HASH_LEN]


@functools.lru_cache(maxsize=16384)  # pure, and asked for every step on every reconcile
def step_object_name(workflow: str, step: str) -> str:
    """``<workflow>-<step, made DNS-safe>-<hash of both>``, at most 253 characters."""
    readable = _NOT_DNS.sub("-", f"{workflow}-{step}".lower())
    readable = readable[: _MAX_NAME - _HASH_LEN - 1].strip("-.")
    return f"{readable}-{_digest(workflow, step)}"


def label_value(value: str) -> str:
    """``value`` if it is a valid label value, else a cut of it followed by its hash."""
    if len(value) <= _MAX_LABEL and re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", value):
        return value
    head = re.sub(r"[^-A-Za-z0-9_.]+", "-", value)[: _MAX_LABEL - _HASH_LEN - 1].strip("-_.")
    return f"{head}-{_digest(value)}" if head else _digest(value)


def idempotency_key(workflow_uid: str, step: str, direction: str) -> str:
    """The key every call of one step in one direction carries (the same across attempts, different
    across workflows): 32 hex characters, the derivation of ``stepkit.context.derive_idempotency_key``
    (repeated here so the pure state machine does not import the SDK; a test keeps the two equal)."""
    return hashlib.sha256("\x00".join((workflow_uid, step, direction)).encode()).hexdigest()[:32]


def step_labels(workflow: str, step: str) -> dict[str, str]:
    return {LABEL_WORKFLOW: label_value(workflow), LABEL_STEP: label_value(step)}


def step_body(workflow: Workflow, step: StepSpec) -> dict[str, Any]:
    """The Step object to create: the step template with the effective rollbackPolicy, owned by the
    workflow (``controller: true``) and holding the rollback finalizer."""
    spec = step.template.to_dict()
    spec["rollbackPolicy"] = str(workflow.spec.policy_of(step))
    return {
        "apiVersion": API_VERSION,
        "kind": "Step",
        "metadata": {
            "name": step_object_name(workflow.name, step.name),
            "namespace": workflow.namespace,
            "labels": step_labels(workflow.name, step.name),
            "annotations": {ANNOTATION_STEP: step.name},
            "finalizers": [FINALIZER],
            "ownerReferences": [{
                "apiVersion": API_VERSION, "kind": "Workflow", "name": workflow.name, "uid": workflow.uid,
                "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": spec,
    }
