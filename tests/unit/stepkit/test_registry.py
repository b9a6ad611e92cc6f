"""StepRegistry: explicit registration, entry-point discovery, broken-plugin isolation.

Entry points are simulated with real metadata: a ``<name>.dist-info`` directory holding METADATA and
entry_points.txt on a temporary ``sys.path`` entry, exactly what an installed wheel leaves behind.
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from stepkit import BaseStep, StepContext, StepNotFoundError, StepRegistry, StepResult
from stepkit.builtin import BUILTIN_STEPS


class Good(BaseStep):
    def run(self, ctx: StepContext) -> StepResult | None:
        return None


class NoRollback:
    def run(self, ctx: StepContext) -> None:
        return None


def test_register_class_factory_and_instance() -> None:
    registry = StepRegistry()
    instance = Good()
    registry.register("cls", Good)
    registry.register("factory", lambda: instance)
    registry.register("instance", instance)
    assert registry.names() == ["cls", "factory", "instance"]
    assert isinstance(registry.get("cls"), Good)
    assert registry.get("factory") is instance
    assert registry.get("instance") is instance
    assert registry.loaded["cls"] == f"explicit:{__name__}:Good"
    assert "cls" in registry
    assert registry.broken == {}


def test_get_returns_one_cached_instance() -> None:
    registry = StepRegistry()
    registry.register("good", Good)
    assert registry.get("good") is registry.get("good")


def test_register_refuses_duplicates_unless_replacing() -> None:
    registry = StepRegistry()
    first = registry.register("good", Good)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("good", Good)
    second = registry.register("good", Good, replace=True)
    assert registry.get("good") is second
    assert second is not first


@pytest.mark.parametrize(
    ("target", "match"),
    [
        pytest.param(NoRollback, "lacks rollback, sync", id="class-missing-methods"),
        pytest.param(42, "expected a Step class", id="not-callable"),
        pytest.param(lambda: object(), "produced a object, which lacks run", id="factory-wrong-product"),
    ],
)
def test_register_rejects_non_steps(target: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        StepRegistry().register("bad", target)  # type: ignore[arg-type]


def test_get_unknown_name_lists_what_is_loaded() -> None:
    registry = StepRegistry()
    registry.register("good", Good)
    with pytest.raises(StepNotFoundError, match="no such step type") as info:
        registry.get("nope")
    assert info.value.name == "nope"
    assert "good" in info.value.reason


def test_returned_listings_are_copies() -> None:
    registry = StepRegistry()
    registry.register("good", Good)
    listing = registry.loaded
    listing.clear()  # type: ignore[attr-defined]
    assert registry.names() == ["good"]


# --- entry-point discovery ------------------------------------------------------------------------


class FakeSite:
    """A temporary site directory on sys.path where tests "install" distributions (dist-info only)."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.modules: list[str] = []
        root.mkdir(parents=True, exist_ok=True)
        monkeypatch.syspath_prepend(str(root))

    def module(self, source: str) -> str:
        name = f"stepkit_fake_{uuid.uuid4().hex[:8]}"
        (self.root / f"{name}.py").write_text(textwrap.dedent(source))
        self.modules.append(name)
        return name

    def dist(self, name: str, entry_points: str) -> None:
        # the directory name escapes "-" as "_" like a wheel does: importlib.metadata dedups
        # distributions by the part before the first "-"
        info = self.root / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


GOOD_MODULE = """
    from stepkit import BaseStep

    class Good(BaseStep):
        def run(self, ctx):
            return None

    def make_good():
        return Good()

    def make_junk():
        return object()

    class Exploding(BaseStep):
        def __init__(self):
            raise RuntimeError("no credentials configured")

        def run(self, ctx):
            return None

    NUMBER = 42
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSite]:
    fake = FakeSite(tmp_path / "site", monkeypatch)
    yield fake
    for name in fake.modules:
        sys.modules.pop(name, None)


def test_a_plugin_that_raises_on_import_is_broken_and_the_others_load(site: FakeSite) -> None:
    good = site.module(GOOD_MODULE)
    boom = site.module('raise RuntimeError("boom at import")\n')
    site.dist(
        "fake-plugins",
        f"""
        [stepkit.steps]
        t_good = {good}:Good
        t_factory = {good}:make_good
        t_boom = {boom}:Step
        t_missing_module = stepkit_no_such_module_xyz:Step
        t_missing_attr = {good}:Missing
        t_number = {good}:NUMBER
        t_junk = {good}:make_junk
        t_exploding = {good}:Exploding
        """,
    )
    registry = StepRegistry()
    with capture_logs() as logs:
        registry.discover()

    # the built-in steps and the good plugins load
    assert set(BUILTIN_STEPS) | {"t_good", "t_factory"} == set(registry.names())
    assert registry.loaded["t_good"] == f"fake-plugins:{good}:Good"
    assert registry.loaded["http"] == "kube-workflow:stepkit.builtin.http:HttpStep"
    registry.get("t_good").run  # noqa: B018  # usable

    broken = registry.broken
    assert set(broken) == {
        "t_boom",
        "t_missing_module",
        "t_missing_attr",
        "t_number",
        "t_junk",
        "t_exploding",
    }
    assert broken["t_boom"] == f"fake-plugins:{boom}:Step: RuntimeError: boom at import"
    assert "ModuleNotFoundError" in broken["t_missing_module"]
    assert "AttributeError" in broken["t_missing_attr"]
    assert "TypeError" in broken["t_number"]
    assert "expected a Step class" in broken["t_number"]
    assert "lacks run, rollback, sync" in broken["t_junk"]
    assert "RuntimeError: no credentials configured" in broken["t_exploding"]

    assert registry.report() == {"loaded": registry.loaded, "broken": broken}
    with pytest.raises(StepNotFoundError, match=r"plugin failed to load: .*boom at import"):
        registry.get("t_boom")
    warnings = [e for e in logs if e["event"] == "step plugin broken"]
    assert {e["step_type"] for e in warnings} == set(broken)
    assert all(e["log_level"] == "warning" for e in warnings)


def test_duplicate_names_first_on_sys_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # prepend "second" first so "first" ends up earlier on sys.path
    second = FakeSite(tmp_path / "second", monkeypatch)
    first = FakeSite(tmp_path / "first", monkeypatch)
    try:
        mod_a = first.module(GOOD_MODULE)
        mod_b = second.module(GOOD_MODULE)
        first.dist("plugin-a", f"[stepkit.test_dups]\ndup = {mod_a}:Good\n")
        second.dist("plugin-b", f"[stepkit.test_dups]\ndup = {mod_b}:Good\nonly_b = {mod_b}:Good\n")
        registry = StepRegistry()
        registry.discover("stepkit.test_dups")
        assert registry.loaded == {"dup": f"plugin-a:{mod_a}:Good", "only_b": f"plugin-b:{mod_b}:Good"}
        assert registry.broken == {
            f"dup (plugin-b:{mod_b}:Good)": (
                f"duplicate step name 'dup': plugin-b:{mod_b}:Good ignored, plugin-a:{mod_a}:Good came first"
            )
        }
        # discovering again is a no-op, not a flood of duplicates
        registry.discover("stepkit.test_dups")
        assert len(registry.broken) == 1
    finally:
        for name in first.modules + second.modules:
            sys.modules.pop(name, None)


def test_explicit_registration_after_discovery_can_fix_a_broken_name(site: FakeSite) -> None:
    boom = site.module('raise ImportError("optional dependency missing")\n')
    site.dist("fake-broken", f"[stepkit.test_fix]\nfixme = {boom}:Step\n")
    registry = StepRegistry()
    registry.discover("stepkit.test_fix")
    assert "fixme" in registry.broken
    registry.register("fixme", Good)
    assert registry.broken == {}
    assert isinstance(registry.get("fixme"), Good)


def test_default_registry_discovers_builtins_once() -> None:
    registry = StepRegistry.default()
    assert registry is StepRegistry.default()
    assert set(BUILTIN_STEPS) <= set(registry.names())
