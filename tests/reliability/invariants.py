"""Random DAGs of ``fail`` steps with scripted failures, the phases their scripts allow, and the engine
invariants checked on the ``fail`` step's call log (:func:`check_call_log`)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconcilers.state_machine.naming import idempotency_key
from stepkit.builtin.fail import CallRecord
from tests.reliability.drills import phase_of

# --------------------------------------------------------------------------------------------------
# Random DAGs with scripted failures


@dataclass(frozen=True)
class StepScript:
    """What the ``fail`` step is told to do for one step."""

    name: str
    depends: tuple[str, ...]
    run: str  # ok | retry<N> (fails N times retryably, then succeeds) | permanent | exhaust
    rollback: str  # ok | retry<N> | permanent

    @property
    def run_fails_for_good(self) -> bool:
        return self.run in ("permanent", "exhaust")

    def parameters(self) -> dict[str, str]:
        p: dict[str, str] = {}
        if self.run.startswith("retry"):
            p.update(failRuns=self.run[5:], runError="retryable")
        elif self.run == "permanent":
            p.update(failRuns="always", runError="permanent")
        elif self.run == "exhaust":
            p.update(failRuns="always", runError="retryable")
        if self.rollback.startswith("retry"):
            p.update(failRollbacks=self.rollback[5:], rollbackError="retryable")
        elif self.rollback == "permanent":
            p.update(failRollbacks="always", rollbackError="permanent")
        return p

    def body(self, extra: Mapping[str, str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "stepTemplate": {
                "type": "fail",
                "parameters": {**self.parameters(), **(extra or {})},
                "retryPolicy": {"runRetryLimit": 3, "runRetryPeriodSeconds": 1,
                                "rollbackRetryLimit": 3, "rollbackRetryPeriodSeconds": 1},
            },
        }
        if self.depends:
            out["dependOns"] = [{"name": d} for d in self.depends]
        return out


def random_dag(rng: random.Random, *, allow_permanent_rollback: bool = True) -> list[StepScript]:
    """2-5 steps; each depends on up to two earlier ones. Runs: mostly fine, some retried 1-2 times
    (then fine), some failing for good; rollbacks: mostly fine, some retried 1-2 times, a few failing
    for good (the workflow then ends Failed, PreserveOnFailure)."""
    n = rng.randint(2, 5)
    steps = []
    for i in range(n):
        earlier = [f"s{j}" for j in range(i)]
        depends = tuple(sorted(rng.sample(earlier, k=min(len(earlier), rng.choice((0, 1, 1, 2))))))
        run = rng.choices(["ok", "retry1", "retry2", "permanent", "exhaust"], weights=[60, 12, 8, 12, 4])[0]
        rb_choices, rb_weights = ["ok", "retry1", "retry2", "permanent"], [68, 14, 14, 4]
        if not allow_permanent_rollback:
            rb_weights[-1] = 0
        rollback = rng.choices(rb_choices, weights=rb_weights)[0]
        steps.append(StepScript(f"s{i}", depends, run, rollback))
    return steps


def expected_phases(steps: Sequence[StepScript]) -> frozenset[str]:
    """The terminal phases the scripts allow: no run failing for good = Success; otherwise RollBacked,
    or Failed if some step's rollback fails for good (whether it is reached depends on timing)."""
    if not any(s.run_fails_for_good for s in steps):
        return frozenset({"Success"})
    if any(s.rollback == "permanent" for s in steps):
        return frozenset({"RollBacked", "Failed"})
    return frozenset({"RollBacked"})


# --------------------------------------------------------------------------------------------------
# The call-log invariants


@dataclass
class InvariantReport:
    violations: list[str] = field(default_factory=list)
    calls: int = 0
    repeated_after_crash: int = 0  # calls repeated (same step, direction, attempt) by a later process
    repeated_in_process: int = 0  # ... by the same process (its status write had failed)

    def add(self, text: str) -> None:
        self.violations.append(text)


def check_call_log(
    records: Sequence[CallRecord],
    dags: Mapping[str, Sequence[StepScript]],
    finals: Mapping[str, Mapping[str, Any]],
    step_phases: Mapping[str, Mapping[str, str]],
    seen: Callable[[str, str], list[str]] | None,
    *,
    strict_repeats: bool = True,
) -> InvariantReport:
    """Check the engine invariants on the ``fail`` step's call log (file order = call order: a record is
    appended when the call returns, before the controller can write the outcome).

    ``dags``: workflow -> its steps; ``finals``: workflow -> its final object; ``step_phases``: workflow ->
    step -> final phase; ``seen(workflow, step)``: every phase the step was seen in (a
    :class:`StepPhaseWatcher`), or None when the watch may have gaps.

    1. no run before every dependency's run succeeded;
    2. rollback in reverse dependency order: no rollback of a step before the rollback of each
       dependent that got one succeeded; a dependent whose rollback failed for good blocks it
       (PreserveOnFailure);
    3. every step that started running in a workflow that ended RollBacked got a successful rollback,
       and every step of such a workflow is RollBacked;
    4. no step that never left Pending got a rollback call; no run after a step's first rollback call;
    5. one idempotency key per (workflow, step, direction), the one the engine derives from the uid;
       with ``strict_repeats`` (the API server stays up), a (step, direction, attempt) repeated by the
       same process is a repeat without a crash; without it (a drill where status writes fail, which
       leaves the outcome unrecorded just like a crash) such repeats are only counted;
    6. retry counts: no run/rollback attempt beyond the limit (3).
    """
    rep = InvariantReport(calls=len(records))
    by_wf: dict[str, list[tuple[int, CallRecord]]] = defaultdict(list)
    for index, rec in enumerate(records):
        by_wf[rec.workflow].append((index, rec))
    for name in by_wf:
        if name not in dags:
            rep.add(f"{name}: calls for a workflow the drill did not create")
    for name, steps in dags.items():
        recs = by_wf.get(name, [])
        final = finals[name]
        uid = final["metadata"]["uid"]
        wf_phase = phase_of(final)
        dependents: dict[str, list[str]] = defaultdict(list)
        for s in steps:
            for d in s.depends:
                dependents[d].append(s.name)
        calls: dict[tuple[str, str], list[tuple[int, CallRecord]]] = defaultdict(list)
        for index, rec in recs:
            if rec.workflow_uid != uid:
                rep.add(f"{name}/{rec.step}: call with uid {rec.workflow_uid}, the workflow's is {uid}")
            calls[(rec.step, rec.direction)].append((index, rec))

        def first_ok(step: str, direction: str,
                     calls: Mapping[tuple[str, str], list[tuple[int, CallRecord]]] = calls) -> int | None:
            return next((i for i, r in calls.get((step, direction), []) if r.outcome == "ok"), None)

        for (step, direction), cs in calls.items():
            # 5. keys
            keys = {r.idempotency_key for _, r in cs}
            want = idempotency_key(uid, step, direction)
            if keys != {want}:
                rep.add(f"{name}/{step} {direction}: idempotency keys {sorted(keys)}, expected {want}")
            attempts: dict[int, list[int]] = defaultdict(list)
            for _, r in cs:
                attempts[r.attempt].append(r.pid)
            for attempt, pids in attempts.items():
                if len(pids) > 1:
                    rep.repeated_after_crash += len(set(pids)) - 1
                    rep.repeated_in_process += len(pids) - len(set(pids))
                    if strict_repeats and len(set(pids)) < len(pids):
                        rep.add(f"{name}/{step} {direction} attempt {attempt}: called {len(pids)} times, "
                                f"by pids {pids} (a repeat within one process, not after a crash)")
            # 6. attempts within the limit
            if direction in ("run", "rollback") and max(attempts) > 3:
                rep.add(f"{name}/{step} {direction}: attempt {max(attempts)} > limit 3")
        for s in steps:
            runs, rollbacks = calls[(s.name, "run")], calls[(s.name, "rollback")]
            # 1. runs after the dependencies succeeded
            for index, _ in runs:
                for d in s.depends:
                    ok = first_ok(d, "run")
                    if ok is None or ok > index:
                        rep.add(f"{name}/{s.name}: run (log line {index}) before dependency {d} succeeded "
                                f"(its first ok run: {ok})")
                        break
            # 4. no run after the first rollback call
            if rollbacks and runs and runs[-1][0] > rollbacks[0][0]:
                rep.add(f"{name}/{s.name}: run at log line {runs[-1][0]} after its rollback began "
                        f"at {rollbacks[0][0]}")
            # 2. rollback order: every dependent's rollback (if it got one) succeeded before ours began
            if rollbacks:
                for dep in dependents[s.name]:
                    theirs = calls[(dep, "rollback")]
                    if not theirs:
                        continue
                    ok = first_ok(dep, "rollback")
                    if ok is None:
                        rep.add(f"{name}/{s.name}: rolled back although dependent {dep}'s rollback never "
                                "succeeded (PreserveOnFailure must keep it)")
                    elif ok > rollbacks[0][0]:
                        rep.add(f"{name}/{s.name}: rollback (log line {rollbacks[0][0]}) before dependent "
                                f"{dep}'s rollback succeeded (line {ok})")
            # 3 and 4, with the phases the watch saw
            phases = seen(name, s.name) if seen is not None else None
            ran = bool(runs) or (phases is not None and "Running" in phases)
            if phases is not None and runs and "Running" not in phases:
                rep.add(f"{name}/{s.name}: run calls but never seen Running (seen {phases})")
            if wf_phase == "RollBacked" and ran and first_ok(s.name, "rollback") is None:
                rep.add(f"{name}/{s.name}: started running, the workflow ended RollBacked, but no successful "
                        f"rollback call (seen {phases}, runs {len(runs)}, rollbacks {len(rollbacks)})")
            if rollbacks and phases is not None and "Running" not in phases:
                rep.add(f"{name}/{s.name}: never left Pending (seen {phases}) but got a rollback call")
            final_step = step_phases.get(name, {}).get(s.name)
            if wf_phase == "RollBacked" and final_step != "RollBacked":
                rep.add(f"{name}/{s.name}: the workflow ended RollBacked but this step is {final_step}")
            if wf_phase == "Success" and (final_step != "Success" or rollbacks):
                rep.add(f"{name}/{s.name}: workflow Success but step {final_step}, "
                        f"rollbacks {len(rollbacks)}")
    return rep


def step_phases_by_workflow(steps: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for obj in steps:
        labels = obj["metadata"].get("labels") or {}
        out[str(labels.get("workflow"))][str(labels.get("step"))] = phase_of(obj)
    return out
