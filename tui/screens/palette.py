"""Commands for the command palette (ctrl+p): every stage's action, the panes, refresh, screenshot…"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Protocol

from textual.app import SystemCommand
from textual.screen import Screen

from tui.screens.main import PANES, MainScreen


class PaletteApp(Protocol):
    """What the palette needs of the app (`tui.app.TalosGpuApp`, which imports this module)."""

    def action_save_svg(self) -> None: ...

    def action_help(self) -> None: ...


def palette_commands(app: PaletteApp, screen: Screen) -> Iterable[SystemCommand]:
    main = screen if isinstance(screen, MainScreen) else None
    if main is None:
        return
    settings = main.settings
    if not settings.read_only:
        for spec in settings.stages:
            if spec.action is not None:
                reboot = " — reboots the node" if spec.reboots else ""
                yield SystemCommand(f"Action: {spec.id}", f"Plan and confirm: {spec.title}{reboot}",
                                    partial(main.request_action, spec.id))
        yield SystemCommand("Cancel the running action", "Stop it and its processes (x)", main.action_cancel_action)
    for spec in settings.stages:
        yield SystemCommand(f"Stage: {spec.id}", f"Show its details: {spec.title}",
                            partial(main.checklist.select_stage, spec.id))
    for number, pane in enumerate(PANES, 1):
        yield SystemCommand(f"Pane: {pane.title}", f"Switch to the {pane.title} pane ({number})",
                            partial(main.action_show_pane, pane.id))
    yield SystemCommand("Refresh now", "Re-read the cluster (r)", main.action_refresh)
    yield SystemCommand("Pause or resume refresh", "Stop or restart the periodic re-read (p)", main.action_toggle_pause)
    yield SystemCommand("Copy the fix", "Copy the selected stage's remediation command (c)", main.action_copy_fix)
    yield SystemCommand("Save the log", "Write the action log to a file in the state directory (s)",
                        main.action_save_log)
    yield SystemCommand("Screenshot", "Save an SVG screenshot (F8)", app.action_save_svg)
    yield SystemCommand("Help", "Every key (?)", app.action_help)
