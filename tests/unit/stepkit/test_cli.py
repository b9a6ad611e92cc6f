"""``python -m stepkit`` lists step types and broken plugins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stepkit.__main__ import main
from stepkit.builtin import BUILTIN_STEPS


def test_lists_the_builtin_steps(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert f"step types ({len(BUILTIN_STEPS)}):\n" in out
    assert "http             kube-workflow:stepkit.builtin.http:HttpStep" in out


def test_json_report_and_exit_status_with_a_broken_plugin(tmp_path: Path) -> None:
    info = tmp_path / "broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[stepkit.steps]\nt_gone = stepkit_no_such_module_abc:Step\n")
    proc = subprocess.run(
        [sys.executable, "-m", "stepkit", "--json"],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    report = json.loads(proc.stdout)  # logs went to stderr, stdout is pure JSON
    assert set(BUILTIN_STEPS) == set(report["loaded"])
    assert report["broken"] == {
        "t_gone": "broken-plugin:stepkit_no_such_module_abc:Step: ModuleNotFoundError: "
        "No module named 'stepkit_no_such_module_abc'"
    }
    assert "step plugin broken" in proc.stderr
