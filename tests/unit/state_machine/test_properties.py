"""Property tests: random DAGs (up to 30 steps) and random outcome scripts, driven to a fixed point by
the simulator in :mod:`.sim`; the invariants of DESIGN.md §4 hold at every step of the way.

Checked while running (assertions inside the simulator): a run starts only once its dependOns are
satisfied; a rollback starts only once every step depending on it is rolled back (or Failed under
rollbackPolicy Always); workflow and step phases only move forward and terminal workflow phases never
change; the worker is only ever asked for the call that is due; ``decide`` gives the same Decision
for the same inputs (listed in another order, deep-copied). Checked at the end: below."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reconcilers.state_machine.types import TERMINAL, Phase
from tests.unit.state_machine.builders import spec_step, workflow
from tests.unit.state_machine.sim import FATAL, IGNORE, OK, RETRY, Script, World

OUTCOMES = st.lists(st.sampled_from([OK, RETRY, FATAL, IGNORE]), max_size=4)
RARE_FAILURES = st.lists(st.sampled_from([OK, OK, OK, RETRY, FATAL, IGNORE]), max_size=3)


@st.composite
def scenarios(draw: st.DrawFn, max_steps: int = 30) -> tuple[dict[str, Any], Script]:
    n = draw(st.integers(1, max_steps))
    names = [f"s{i}" for i in range(n)]
    steps = []
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), max_size=3, unique=True)) if i else []
        steps.append(spec_step(
            name, *deps,
            sync=draw(st.sampled_from([0, 0, 10, 25])),
            resource_status=draw(st.sampled_from([None, None, "Ready"])),
            policy=draw(st.sampled_from([None, None, "Always", "PreserveOnFailure"])),
            run_limit=draw(st.integers(1, 3)),
            rollback_limit=draw(st.integers(-1, 3)),
            period=draw(st.sampled_from([0, 5, 30])),
        ))
    order = draw(st.permutations(range(n)))  # the spec order need not be a topological order
    wf = workflow(*(steps[i] for i in order), phase=None,
                  policy=draw(st.sampled_from(["Always", "PreserveOnFailure"])))
    failing = draw(st.booleans())
    # Rollbacks are retried (retryable, ignorable) freely; a few fail for good, in some scenarios only.
    fatal = set(draw(st.lists(st.sampled_from(names), max_size=2, unique=True)))
    fatal = fatal if draw(st.booleans()) else set()
    retried = st.lists(st.sampled_from([OK, RETRY, IGNORE]), max_size=3)
    script = Script(
        run={s: draw(OUTCOMES if failing else RARE_FAILURES) for s in names},
        rollback={s: draw(retried) + ([FATAL] if s in fatal else []) for s in names},
        sync={s: draw(RARE_FAILURES) for s in names},
        delete_at=draw(st.one_of(st.none(), st.integers(1, 60))),
        seed=draw(st.integers(0, 2**16)),
    )
    return wf, script


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_workflows_reach_a_fixed_point_and_keep_the_invariants(
    scenario: tuple[dict[str, Any], Script],
) -> None:
    wf, script = scenario
    world = World(wf, script)
    world.run_to_fixed_point()

    final = world.workflow_phases[-1]
    event(f"final phase {final}" + (", deleted" if world.gone else ""))
    # Nothing hangs: the workflow is gone (deleted and undone) or finished.
    assert world.gone or final in TERMINAL, world.wf["status"]
    # Terminal phases are terminal: the first terminal phase is the last phase.
    terminal_at = next((i for i, p in enumerate(world.workflow_phases) if p in TERMINAL), None)
    assert terminal_at is None or terminal_at == len(world.workflow_phases) - 1
    # Only steps that were made Running ever got a run call.
    assert world.run_called <= world.ever_running
    if final is Phase.ROLLED_BACK:
        # Every step that ever started running got a rollback call, and no Pending step did.
        assert world.rollback_called == world.ever_running
        statuses = [world.step_status(s.name) for s in world.spec.steps]
        assert all(st is None or st.phase is Phase.ROLLED_BACK for st in statuses)
    if final is Phase.SUCCESS and not world.wf["metadata"].get("deletionTimestamp"):
        assert not world.rollback_called
    if world.gone:
        # A deletion completes only when every step that ran was undone (or counts as undone).
        assert world.rollback_called == world.ever_running


@settings(max_examples=60, deadline=None)
@given(scenarios(max_steps=8))
def test_small_workflows_without_deletion_end_in_the_phase_their_steps_explain(
    scenario: tuple[dict[str, Any], Script],
) -> None:
    wf, script = scenario
    script.delete_at = None
    world = World(wf, script)
    world.run_to_fixed_point()
    phases = {s.name: world.step_status(s.name).phase for s in world.spec.steps}  # type: ignore[union-attr]
    final = world.workflow_phases[-1]
    if final is Phase.SUCCESS:
        assert set(phases.values()) == {Phase.SUCCESS}
    elif final is Phase.ROLLED_BACK:
        assert set(phases.values()) == {Phase.ROLLED_BACK}
    else:
        assert final is Phase.FAILED
        assert Phase.FAILED in phases.values()
        assert Phase.RUNNING not in phases.values()
        assert Phase.ROLLING_BACK not in phases.values()
    counts = world.wf["status"]["stepPhases"]
    assert sum(counts.values()) == len(phases)
    assert all(counts[str(p)] == list(phases.values()).count(p) for p in Phase)
