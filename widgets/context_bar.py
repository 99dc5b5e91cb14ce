"""One line at the top: where the app points, whether it may change things, and how fresh the data is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from checks.sanitize import safe


@dataclass
class ContextInfo:
    kube_context: str
    talos_node: str
    read_only: bool
    refresh_s: float


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class ActionProgress:
    """The running action, for the bar: its stage, the step it is at (n of m), since when, and the phase the
    node is in when the action follows a reboot."""

    stage: str
    steps: int
    started_at: float
    step: int = 0
    phase: str = ""


def refresh_label(refresh_s: float) -> str:
    if refresh_s <= 0:
        return "refresh: on r"
    return f"refresh {refresh_s:g}s"


class ContextBar(Static):
    """`talos-gpu │ ▶ extensions 2/3 · node rebooting · 1m05s (x cancels) │ kube ctx │ talos node v1.13.9 │
    path gpu-operator │ READ-ONLY │ refresh 5s │ updated 3s ago │ checking…` — the running action first, so that a narrow terminal shows it."""

    def __init__(self, info: ContextInfo, clock: Callable[[], float], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.info = info
        self.clock = clock
        self.updated_at: float | None = None
        self.sweeping = False
        self.paused = False
        self.action: ActionProgress | None = None  # the running action, if any
        self.talos_version: str | None = None  # what the node runs, once a sweep has read it
        self.path: str | None = None  # the enablement path the checks follow (device-plugin | gpu-operator)

        self._shown: str | None = None

    def on_mount(self) -> None:
        self.set_interval(1.0, self.redraw)
        self.redraw()

    def render(self) -> Text:
        return self.line_text()

    def redraw(self) -> None:
        """Repaint when the line's text changed: a repaint, not a layout pass (the bar is one line)."""
        text = self.line_text().plain
        if text != self._shown:
            self._shown = text
            self.refresh()

    def show_report(self, talos_version: str | None, path: str | None) -> None:
        """What the last sweep found: the node's Talos version and the path its stages follow."""
        self.talos_version = talos_version or self.talos_version
        self.path = path
        self.redraw()

    def line_text(self) -> Text:
        sep = (" │ ", "dim")
        parts: list[tuple[str, str] | str | Text] = [("talos-gpu", "bold"), sep]
        action = self.action
        if action is not None:
            step = f" {action.step}/{action.steps}" if action.steps else ""
            phase = f" · {safe(action.phase, one_line=True)}" if action.phase else ""
            parts += [(f"▶ {action.stage}{step}{phase} · {elapsed(self.clock() - action.started_at)}", "bold yellow"),
                      (" (x cancels)", "yellow"), sep]
        parts += [
            ("kube ", "dim"), safe(self.info.kube_context), sep,
            ("talos ", "dim"), safe(self.info.talos_node),
        ]
        if self.talos_version:
            parts += [" ", safe(self.talos_version, one_line=True)]
        parts.append(sep)
        if self.path:
            parts += [("path ", "dim"), safe(self.path, one_line=True), sep]
        if self.info.read_only:
            parts += [(" READ-ONLY ", "bold reverse yellow"), sep]
        parts.append(refresh_label(self.info.refresh_s))
        if self.paused:
            parts += [" ", (" PAUSED ", "bold reverse")]
        parts.append(sep)
        if self.updated_at is None:
            parts.append(("not checked yet", "dim"))
        else:
            parts.append(f"updated {ago(self.clock() - self.updated_at)}")
        if self.sweeping:
            parts += [sep, ("⟳ checking…", "cyan")]
        return Text.assemble(*parts)
