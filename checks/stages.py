"""What a stage is, and the stage ids INTERFACE.md fixes. The stage tables themselves are data of their
enablement path (checks/paths/): each row names its probes, its judge and its action directly, so that a
missing piece fails at import.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from checks.actions.model import Plan
    from checks.judges import JudgeInput
    from checks.model import Judgement, Report
    from checks.probes import Probe
    from checks.target import Target

    Judge = Callable[[JudgeInput], Judgement]
    Planner = Callable[[Target, Report | None, str | None], Awaitable[Plan]]

# stable, in this order on every path (INTERFACE.md)
STAGE_IDS: tuple[str, ...] = (
    "cluster", "extensions", "kernel-modules", "container-runtime", "runtimeclass", "device-plugin",
    "gpu-resources", "gpu-workload",
)


@dataclass(frozen=True)
class StageSpec:
    id: str
    title: str
    section: str  # the seed document's section
    depends_on: tuple[str, ...]  # stages whose failure makes this one `blocked`
    probes: tuple[Probe, ...]  # the facts it judges
    judge: Judge  # facts → Judgement
    action: Planner | None  # plans the stage's action; None when the evidence says what to fix
    reboots: bool = False  # its action reboots the node


def stage_spec(stage_id: str, stages: tuple[StageSpec, ...]) -> StageSpec:
    for spec in stages:
        if spec.id == stage_id:
            return spec
    raise KeyError(stage_id)
