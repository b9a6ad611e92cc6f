"""The public surface of stepkit is pinned: third-party plugins import these names."""

from __future__ import annotations

import configparser
from importlib.metadata import distribution
from pathlib import Path

import stepkit
from stepkit.builtin import BUILTIN_STEPS

PINNED_ALL = [
    "ENTRY_POINT_GROUP",
    "BaseStep",
    "Direction",
    "IgnorableError",
    "PermanentError",
    "ResourceStatus",
    "RetryableError",
    "Step",
    "StepContext",
    "StepError",
    "StepFactory",
    "StepLogger",
    "StepNotFoundError",
    "StepRegistry",
    "StepResult",
    "WorkflowInfo",
    "classify",
    "derive_idempotency_key",
]

REPO = Path(__file__).resolve().parents[3]


def test_all_is_pinned() -> None:
    assert stepkit.__all__ == PINNED_ALL


def test_every_exported_name_exists() -> None:
    missing = [name for name in stepkit.__all__ if not hasattr(stepkit, name)]
    assert missing == []


def test_entry_point_group_name() -> None:
    assert stepkit.ENTRY_POINT_GROUP == "stepkit.steps"


def test_setup_cfg_registers_exactly_the_builtin_steps() -> None:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    block = parser["options.entry_points"]["stepkit.steps"]
    declared = dict(line.replace(" ", "").split("=", 1) for line in block.strip().splitlines())
    expected = {name: f"{cls.__module__}:{cls.__qualname__}" for name, cls in BUILTIN_STEPS.items()}
    assert declared == expected


def test_installed_metadata_matches_setup_cfg() -> None:
    """Fails when setup.cfg changed but `pip install -e .` was not re-run (stale entry points)."""
    eps = {
        ep.name: ep.value for ep in distribution("kube-workflow").entry_points if ep.group == "stepkit.steps"
    }
    expected = {name: f"{cls.__module__}:{cls.__qualname__}" for name, cls in BUILTIN_STEPS.items()}
    assert eps == expected
