"""Messages that workers post to the screen. Workers never touch widgets; handlers do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from checks.actions.model import ActionStatus, Plan
    from checks.model import Report
    from checks.target import Target


@dataclass
class TargetReady(Message):
    """The target is known (the demo starts its lab while the first frame is drawn)."""

    target: Target


@dataclass
class TargetFailed(Message):
    """The target could not be built: `reason` is the one line to print after "talos-gpu: " (exit 2)."""

    reason: str


@dataclass
class SweepStarted(Message):
    """A sweep has started (`tui.sweeps.SweepController`): the context bar says "checking"."""


@dataclass
class SweepFinished(Message):
    """A sweep ended with a report (stages that could not be checked are `unknown` inside it)."""

    report: Report
    moved: bool = False  # a light sweep saw a stage's status change: a full one should follow at once


@dataclass
class SweepCrashed(Message):
    """A sweep raised (a bug, not a cluster problem): say it, keep the last report, keep running."""

    reason: str


@dataclass
class PlanReady(Message):
    """The plan of a stage's action is ready to be shown for confirmation."""

    plan: Plan


@dataclass
class PlanFailed(Message):
    stage: str
    reason: str


@dataclass
class ActionOutput(Message):
    """One event from a running action: an output line, a phase ("node rebooting"), a step."""

    stage: str
    kind: str  # "line" | "phase" | "step"
    text: str
    stream: str = ""


@dataclass
class ActionOutputReady(Message):
    """Lines are waiting in the screen's output buffer: one message for a whole burst, so that a
    chatty action (10,000 lines) never queues thousands of messages ahead of a key press."""


@dataclass
class ActionFinished(Message):
    stage: str
    status: ActionStatus
    reason: str
    node_state: str = ""
