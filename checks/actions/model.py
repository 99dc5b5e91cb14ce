"""The values an action is made of: its plan (steps, files, preview) and what running it reports.

See checks/actions/CONTRACT.md: the TUI and `talos-gpu enable` are written against these names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class ActionStatus(StrEnum):
    """How an action ended (the audit log's `result` records and `enable`'s lines carry the value)."""

    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed-out"


class PlanError(ValueError):
    """An action cannot be planned (no action for the stage, helm missing, Talos version unknown, ...)."""


@dataclass(frozen=True)
class FileChange:
    path: Path  # absolute path inside the profile's infra_repo
    relative: str  # e.g. "talos/patches/nvidia-oss-modules.yaml"
    content: str  # the seed's content
    state: str  # "create" (missing, will be written) | "same" (exists, identical) | "differs" (exists, left alone)
    diff: str  # unified diff existing→seed when state == "differs", else ""

    @property
    def summary(self) -> str:
        return {
            "create": f"{self.relative}: missing, will be written",
            "same": f"{self.relative}: exists, identical to what the action writes",
            "differs": f"{self.relative}: exists and differs from what the action would write; left as it is and used as it is",
        }.get(self.state, f"{self.relative}: {self.state}")


@dataclass(frozen=True)
class Step:
    kind: str  # "write" | "command" | "api" | "kube" | "register-schematic" | "follow-reboot" | "test-pod"
    description: str  # one line a person reads in the confirm modal
    argv: tuple[str, ...] = ()  # for "command": the exact argv (talosctl/helm), shown verbatim
    display: str = ""  # the command as shown (argv joined, global flags kept)
    # Extra inputs the step needs at run time (file path, schematic, factory URL, ...): name → value.
    params: tuple[tuple[str, str], ...] = ()
    # for "kube": the API call itself, given the KubeReader; it returns the line to show ("namespace/x created")
    call: Callable[[Any], str] | None = field(default=None, compare=False)

    def param(self, name: str, default: str = "") -> str:
        for key, value in self.params:
            if key == name:
                return value
        return default

    @property
    def shown(self) -> str:
        """What a person reads for this step: the command line, else the description."""
        return self.display or self.description


@dataclass(frozen=True)
class Plan:
    stage: str
    title: str
    steps: tuple[Step, ...]
    files: tuple[FileChange, ...]
    reboots: bool  # needs the node name typed to confirm in the TUI
    confirm_word: str | None  # the node name to type when reboots, else None
    warnings: tuple[str, ...]
    preview: str  # schematic YAML + id + installer image / `patch mc --dry-run` output / manifest or values
    mutating: bool = True  # every action mutates; read-only mode refuses every Plan
    schematic_id: str | None = None  # extensions: the offline schematic id
    installer_image: str | None = None  # extensions: the image `talosctl upgrade --image` gets

    def commands(self) -> list[str]:
        """The exact commands (and the non-command steps, described), in order."""
        return [step.shown for step in self.steps]

    def outline(self) -> list[PlanLine]:
        """What every text rendering of the plan shows, in order: `describe` (the audit log, plain) and
        `enable`'s console (styled) both render this list, so that neither can leave a part out."""
        lines = [PlanLine("header", self.title)]
        if self.schematic_id:
            lines.append(PlanLine("schematic", self.schematic_id))
        if self.installer_image:
            lines.append(PlanLine("installer", self.installer_image))
        for change in self.files:
            lines.append(PlanLine("file", change.summary, change.state))
            if change.state == "differs":
                lines.append(PlanLine("diff", change.diff))  # whole: a secret over several lines is redacted whole
        lines += [PlanLine("warning", warning) for warning in self.warnings]
        lines += [PlanLine("step", step.shown, str(index)) for index, step in enumerate(self.steps, 1)]
        return lines

    def describe(self) -> str:
        """The whole plan as plain text (the audit log's `plan` record, `enable --dry-run`)."""
        shown = {"header": lambda line: [f"{self.stage}: {line.text}"],
                 "schematic": lambda line: [f"schematic id: {line.text}"],
                 "installer": lambda line: [f"installer image: {line.text}"],
                 "file": lambda line: [f"file {line.text}"],
                 "diff": lambda line: ["  " + diff for diff in line.text.rstrip("\n").splitlines()],
                 "warning": lambda line: [f"warning: {line.text}"],
                 "step": lambda line: [f"{line.detail}. {line.text}"]}
        return "\n".join(text for line in self.outline() for text in shown[line.kind](line))


@dataclass(frozen=True)
class PlanLine:
    """One line of a plan's outline (`Plan.outline`)."""

    kind: str  # "header" | "schematic" | "installer" | "file" | "diff" | "warning" | "step"
    text: str  # as the plan has it, not yet sanitised for a terminal ("diff": the whole diff, many lines)
    detail: str = ""  # "file": the file's state (create, same, differs); "step": its number


@dataclass(frozen=True)
class ActionEvent:
    kind: str  # "line" | "phase" | "step"
    text: str
    stream: str = ""  # "stdout" | "stderr" for lines


@dataclass(frozen=True)
class ActionResult:
    status: ActionStatus
    reason: str  # one line
    node_state: str = ""  # after cancel/failure: what state the node may be left in

    @property
    def ok(self) -> bool:
        return self.status is ActionStatus.OK


@dataclass
class RunState:
    """What earlier steps of a running action tell later ones."""

    upgrade_timed_out: bool = False
    upgrade_last_line: str = ""
    patch_reboots: bool | None = None  # None: the patch output did not say
    current_step: Step | None = None
    notes: list[str] = field(default_factory=list)
