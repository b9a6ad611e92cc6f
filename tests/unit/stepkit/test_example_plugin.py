"""Acceptance: the out-of-tree package ``examples/step-plugin`` installs and the registry finds its step;
the README's "Writing a step" section is that same package, so a plugin written from it works.

Installing is done offline into a temporary site directory put on ``sys.path`` (the venv itself is
never changed): with pip (``--no-build-isolation --no-index --target``) when the venv's setuptools can
build wheels, and always with setuptools' own ``egg_info`` (the metadata an editable install writes)
plus a copy of the package.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepkit import StepRegistry
from stepkit.builtin import BUILTIN_STEPS
from stepkit.testing import StepHarness

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "step-plugin"
PACKAGE = "stepkit_example"
DIST = "kube-workflow-step-example"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A clean copy of the example (builds write build/ and *.egg-info next to the sources)."""
    copy = tmp_path / "src"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    return copy


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty site directory on sys.path; the example's modules are forgotten afterwards."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def egg_info_install(source: Path, site: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import setuptools; setuptools.setup()",
            "-q",
            "egg_info",
            "--egg-base",
            str(site),
        ],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=60,
    )
    shutil.copytree(source / PACKAGE, site / PACKAGE)


def assert_registry_finds_the_example(tmp_path: Path) -> None:
    registry = StepRegistry()
    registry.discover()
    assert registry.broken == {}
    assert registry.loaded["example_file"] == f"{DIST}:{PACKAGE}.file_step:FileStep"
    assert set(BUILTIN_STEPS) <= set(registry.names())  # the built-ins are still there

    step = registry.get("example_file")
    assert type(step).__module__ == f"{PACKAGE}.file_step"
    harness = StepHarness(step, step_type="example_file")
    params = {"path": str(tmp_path / "hello.txt"), "content": "hi"}
    result = harness.run(params)
    assert result is not None
    assert result.attributes == {"file": params["path"]}
    assert (tmp_path / "hello.txt").read_text() == "hi"
    harness.rollback(params)
    assert not (tmp_path / "hello.txt").exists()


def test_example_plugin_installed_with_setuptools_metadata_is_discovered(
    source: Path, site: Path, tmp_path: Path
) -> None:
    egg_info_install(source, site)
    assert_registry_finds_the_example(tmp_path)


def test_example_plugin_installed_with_pip_is_discovered(source: Path, site: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    if proc.returncode != 0 and "invalid command 'bdist_wheel'" in proc.stdout + proc.stderr:
        found = importlib.metadata.version("setuptools")
        pytest.skip(f"setuptools {found} in this venv cannot build wheels offline (needs >= 70.1)")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(site.glob("kube_workflow_step_example-*.dist-info"))
    assert_registry_finds_the_example(tmp_path)


def test_the_example_ships_tests_that_pass(source: Path, site: Path, tmp_path: Path) -> None:
    egg_info_install(source, site)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(source), "tests"],
        cwd=source,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


# --- the README section ---------------------------------------------------------------------------

FENCE = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def readme_section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("\n## Writing a step\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def readme_files() -> dict[str, str]:
    """Code blocks whose first line is a comment naming a file: ``# examples/step-plugin/<path>``."""
    files = {}
    for _lang, body in FENCE.findall(readme_section()):
        first, _, rest = body.partition("\n")
        match = re.fullmatch(r"# (examples/step-plugin/\S+)", first.strip())
        if match:
            files[match.group(1)] = rest
    return files


def test_readme_section_is_the_example_package() -> None:
    files = readme_files()
    assert set(files) == {
        "examples/step-plugin/pyproject.toml",
        f"examples/step-plugin/{PACKAGE}/file_step.py",
        "examples/step-plugin/tests/test_file_step.py",
    }
    for path, body in files.items():
        assert body == (REPO / path).read_text(), f"README block for {path} differs from the file"
    plugin = files[f"examples/step-plugin/{PACKAGE}/file_step.py"]
    assert len(plugin.splitlines()) <= 30


def test_readme_states_the_contract() -> None:
    section = readme_section()
    for phrase in ("at-least-once", "idempotency_key", "pip install", "StepHarness", "stepkit.steps"):
        assert phrase in section
