"""Which plan a stage's action follows: the stage's planner on the report's enablement path (else the
profile's, else the node's version's). Apart from checks/actions/plans.py, whose planners the paths' stage
tables name, so that the tables and the planners do not import each other."""

from __future__ import annotations

from typing import Any

from checks import paths
from checks.actions.model import Plan, PlanError
from checks.actions.plans import PLAN_COMMAND_TIMEOUT_S
from checks.context import make_context
from checks.model import Report
from checks.target import Target


async def plan_action(stage: str, target: Target, report: Report | None = None, *,
                      factory: str | None = None) -> Plan:
    """The plan of `stage`'s action on the report's enablement path (else the profile's, else the node's
    version's); raises PlanError (a ValueError) when there is none or it cannot be made."""
    path = await enablement_path(target, report)
    spec = next((s for s in path.stages if s.id == stage), None)
    if spec is None:
        raise PlanError(f"unknown stage {stage!r}")
    if spec.action is None:
        why = {"gpu-resources": "it follows from device-plugin",
               "runtimeclass": "on the gpu-operator path the GPU Operator creates the RuntimeClass (the "
                               "device-plugin stage's action installs it)"}.get(stage, "nothing to run")
        raise PlanError(f"stage {stage} has no action: {why}")
    return await spec.action(target, report, factory)


async def enablement_path(target: Target, report: Report | None) -> Any:
    """The path the plan follows: the report's, else the profile's, else that of the version the node runs."""
    if report is not None:
        return paths.named(report.path)
    choices = paths.candidates(target.profile)
    if len(choices) == 1:
        return choices[0]
    from checks.probes import probe_talos_version

    fact = await make_context(target, timeout=PLAN_COMMAND_TIMEOUT_S).get(probe_talos_version)
    return paths.choose(target.profile, getattr(fact.value, "server_tag", None) if fact.ok else None)
