"""How a plugin author tests a step: StepHarness, no cluster. ``pytest examples/step-plugin/tests``."""

from pathlib import Path

import pytest
from stepkit_example.file_step import FileStep

from stepkit import PermanentError
from stepkit.testing import StepHarness


def test_run_writes_and_rollback_removes(tmp_path: Path) -> None:
    harness = StepHarness(FileStep())
    params = {"path": str(tmp_path / "out.txt"), "content": "hello"}

    result = harness.run(params)
    assert result is not None
    assert result.resource is not None
    assert (tmp_path / "out.txt").read_text() == "hello"
    assert result.resource.status == "Present"

    harness.rollback(params)
    harness.rollback(params)  # at-least-once: a repeated rollback is harmless
    assert not (tmp_path / "out.txt").exists()


def test_missing_path_is_permanent() -> None:
    with pytest.raises(PermanentError):
        StepHarness(FileStep()).run({})
