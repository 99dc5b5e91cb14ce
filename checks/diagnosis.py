"""From per-stage judgements to the report: blocked propagation and the one root cause."""

from __future__ import annotations

from checks.model import Judgement, RootCause, StageResult, Status
from checks.stages import StageSpec

NOT_PASSING = (Status.FAIL, Status.BLOCKED, Status.UNKNOWN)


def propagate(stages: tuple[StageSpec, ...], judgements: dict[str, Judgement],
              durations: dict[str, int]) -> list[StageResult]:
    """A stage whose own check does not pass and that depends on a stage that does not pass is
    `blocked`, naming the stage at the root of the chain; its own evidence is kept."""
    results: dict[str, StageResult] = {}
    for spec in dependency_order(stages):
        own = judgements[spec.id]
        result = StageResult(spec.id, spec.title, own.status, own.summary, list(own.evidence), own.remediation,
                             None, durations.get(spec.id, 0), own.advice, tuple(own.findings))
        if own.status in (Status.FAIL, Status.UNKNOWN):
            failing_deps = [results[d] for d in spec.depends_on if d in results and results[d].status in NOT_PASSING]
            if failing_deps:
                dep = min(failing_deps, key=lambda r: [s.id for s in stages].index(r.id))
                root = dep.blocked_by or dep.id
                result.status = Status.BLOCKED
                result.blocked_by = root
                result.summary = f"blocked by {root}: {own.summary}"
        results[spec.id] = result
    return [results[spec.id] for spec in stages]


def dependency_order(stages: tuple[StageSpec, ...]) -> list[StageSpec]:
    """The stages with each one after those it depends on (table order where that is free): on the
    gpu-operator path `runtimeclass` depends on `device-plugin`, which comes later in the table."""
    by_id = {spec.id: spec for spec in stages}
    ordered: list[StageSpec] = []
    seen: set[str] = set()

    def visit(spec: StageSpec) -> None:
        if spec.id in seen:
            return
        seen.add(spec.id)
        for dep in spec.depends_on:
            if dep in by_id:
                visit(by_id[dep])
        ordered.append(spec)

    for spec in stages:
        visit(spec)
    return ordered


def root_cause(results: list[StageResult]) -> RootCause | None:
    """The earliest stage (in dependency order) whose own facts fail; else the earliest unknown one."""
    for wanted in (Status.FAIL, Status.UNKNOWN, Status.BLOCKED):
        for result in results:
            if result.status is wanted:
                return RootCause(result.id, result.summary, result.remediation, result.advice)
    return None
