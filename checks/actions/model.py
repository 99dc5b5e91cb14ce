"""The values an action is made of: its plan (steps, files, preview) and what running it reports.

See checks/actions/CONTRACT.md: the TUI and `talos-gpu enable` are written against these names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def __getattr__(name: str) -> Any:
    """`ACTION_STAGES`: the stages of the runbook's (device-plugin) path that have an action, in stage order,
    read from its stage table (another path's: `checks.paths.named(...).action_stages`)."""
    if name == "ACTION_STAGES":
        from checks.paths import DEVICE_PLUGIN

        return DEVICE_PLUGIN.action_stages
    raise AttributeError(name)

STEP_KINDS = ("write", "command", "api", "kube", "register-schematic", "follow-reboot", "test-pod")
RESULT_STATUSES = ("ok", "failed", "cancelled", "timed-out")
FILE_STATES = ("create", "same", "differs")


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

    def describe(self) -> str:
        """The whole plan as plain text (the audit log's `plan` record, `enable --dry-run`)."""
        lines = [f"{self.stage}: {self.title}"]
        if self.schematic_id:
            lines.append(f"schematic id: {self.schematic_id}")
        if self.installer_image:
            lines.append(f"installer image: {self.installer_image}")
        for change in self.files:
            lines.append(f"file {change.summary}")
            if change.state == "differs":
                lines += ["  " + line for line in change.diff.rstrip("\n").splitlines()]
        lines += [f"warning: {warning}" for warning in self.warnings]
        lines += [f"{index}. {step.shown}" for index, step in enumerate(self.steps, 1)]
        return "\n".join(lines)


@dataclass(frozen=True)
class ActionEvent:
    kind: str  # "line" | "phase" | "step"
    text: str
    stream: str = ""  # "stdout" | "stderr" for lines


@dataclass(frozen=True)
class ActionResult:
    status: str  # "ok" | "failed" | "cancelled" | "timed-out"
    reason: str  # one line
    node_state: str = ""  # after cancel/failure: what state the node may be left in

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class RunState:
    """What earlier steps of a running action tell later ones."""

    upgrade_timed_out: bool = False
    upgrade_last_line: str = ""
    patch_reboots: bool | None = None  # None: the patch output did not say
    current_step: Step | None = None
    notes: list[str] = field(default_factory=list)
