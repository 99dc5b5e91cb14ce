"""What follows an action, the same in both front ends: the TUI's main screen and `talos-gpu enable`.

After an action its stage is re-checked until it passes or the settle time runs out; the node counts as
rebooting while its machine status says so; `enable` walks the failing stages in order, each once. These
rules lived in the screen and in `enable` with different numbers (a 45 s settle in one, 120 s in the other);
one copy here keeps the two from drifting again. Nothing here draws anything or imports a UI; the module is
cheap to import (the TUI's first frame waits for it): `checks.model` is for type hints only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from checks.actions.model import ActionResult
    from checks.model import Report, Status

# After an action, how long its stage may take to pass (a plugin registering, a node back from a reboot:
# an upgrade or a machine.files patch reboots a real node in a minute or two), and how often it is re-checked.
SETTLE_FOR_S = 120.0
SETTLE_RECHECK_S = 1.5
# `enable`, once no action is left: how long every stage may take to pass before it gives up.
SETTLE_ALL_FOR_S = 60.0

# `machinestatus` stages in which the node is on its way down or up (FACTS.md: booting, installing,
# maintenance, running, rebooting, shutting down, resetting, upgrading).
REBOOTING_STAGES = ("rebooting", "upgrading", "booting", "shutting down", "installing", "resetting")

WORKLOAD = "gpu-workload"  # the test pod: run last, only once every other stage passes
ACTING_ON = ("fail", "blocked", "unknown")  # the statuses an action is offered for (Status values)


def acts_on(status: Status) -> bool:
    """Whether a stage with this status is one an action should be run for."""
    return status.value in ACTING_ON


def stage_passes(report: Report, stage_id: str) -> bool:
    """The stage passes (a stage the report does not have counts as passing: nothing to wait for)."""
    try:
        return report.stage(stage_id).status.ok
    except KeyError:
        return True


def action_settled(report: Report, stage_id: str) -> bool:
    """The action's stage passes and so does the cluster (the node is back, if the action rebooted it)."""
    return stage_passes(report, stage_id) and stage_passes(report, "cluster")


def all_but_workload_pass(report: Report) -> bool:
    return all(s.status.ok for s in report.stages if s.id != WORKLOAD)


@dataclass
class Settling:
    """The re-checks after an action: until `action_settled` or `deadline` (time.monotonic())."""

    stage: str
    deadline: float

    @classmethod
    def after(cls, stage: str, *, limit: float = SETTLE_FOR_S, clock: Callable[[], float] = time.monotonic) -> Settling:
        return cls(stage, clock() + limit)

    def over(self, report: Report, *, clock: Callable[[], float] = time.monotonic) -> bool:
        """The stage settled, or the time ran out: stop re-checking."""
        return action_settled(report, self.stage) or clock() >= self.deadline


def rebooting_reason(report: Report | None, *, action_stage: str | None = None,
                     action_reboots: bool = False) -> str | None:
    """Why the node is taken to be rebooting, from the last report and the running action (if any); else None."""
    if report is None:
        return None
    machine = report.facts.get("machine_status")
    stuck = report.facts.get("boot_failure")
    if stuck is not None and stuck.ok and stuck.value is not None and not action_reboots:
        return None  # not rebooting: its boot stops in a phase (cluster says why); it will not recover by itself
    if machine is not None and machine.ok and machine.value.stage in REBOOTING_STAGES:
        return f"machinestatus stage {machine.value.stage}"
    version = report.facts.get("talos_version")
    if action_reboots and version is not None and not version.ok:
        return f"the Talos API does not answer while the {action_stage} action runs"
    return None


@dataclass
class EnableState:
    """Where a walk over the failing stages stands (`talos-gpu enable`): each stage's action is tried once."""

    report: Report
    attempted: set[str] = field(default_factory=set)
    declined: set[str] = field(default_factory=set)
    no_action: set[str] = field(default_factory=set)  # failing stages whose plan says there is nothing to run
    workload: ActionResult | None = None
    current: str = ""
    cancelled_by: str = ""

    def next_stage(self, action_stages: tuple[str, ...] | list[str]) -> str | None:
        """The first stage, in stage order, that has an action, does not pass and was not tried yet."""
        for stage_id in action_stages:
            if stage_id == WORKLOAD or stage_id in self.attempted or stage_id in self.declined or \
                    stage_id in self.no_action:
                continue
            if acts_on(self.report.stage(stage_id).status):
                return stage_id
        return None

    def hopeless_block(self, stage_id: str, action_stages: tuple[str, ...] | list[str]) -> str | None:
        """Why the stage's action cannot help now (blocked by a stage with no action or one not fixed), else None."""
        stage = self.report.stage(stage_id)
        blocker = stage.blocked_by
        if stage.status.value != "blocked" or blocker is None:
            return None
        if blocker not in action_stages or blocker in self.no_action:
            return f"stage {stage_id} is blocked by {blocker}, which has no action"
        if blocker in self.declined:
            return f"stage {stage_id} is blocked by {blocker}, whose action was declined"
        return None
