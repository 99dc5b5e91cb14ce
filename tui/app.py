"""The Textual app: wiring only. Layout, sweeps and actions live in `tui.screens.main`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from tui.screens.main import MainScreen, Settings

if TYPE_CHECKING:
    from checks.model import Report
    from checks.target import Target
    from tui.head_start import HeadStart

THEME = "textual-dark"


class TalosGpuApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "talos-gpu"
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="help", tooltip="this help: every key"),
        Binding("q", "quit_safely", "Quit", id="quit", tooltip="quit (asks first while an action runs)"),
        # ctrl+c quits as in k9s and `talosctl dashboard` (Textual's own binding only says "press ctrl+q")
        Binding("ctrl+c", "interrupt", "Quit", show=False, priority=True, id="quit.interrupt",
                tooltip="quit (asks first while an action runs), from anywhere"),
        Binding("f8", "save_svg", "Screenshot", show=False, id="screenshot",
                tooltip="save an SVG screenshot of the screen"),
    ]

    def __init__(self, target: Target | None, *, refresh: float = 5.0, read_only: bool = False,
                 factory: str | None = None, clock: Callable[[], float] = time.time, stable_output: bool = False,
                 initial_report: Report | None = None, screenshot_dir: Path | None = None,
                 state_dir: Path | None = None, audit_path: Path | None = None, sweep_timeout: float = 30.0,
                 target_loader: Callable[[], Target] | None = None,
                 after_first_frame: Callable[[], None] | None = None, lean_first_frame: bool = False,
                 after_first_sweep: Callable[[], None] | None = None, head_start: HeadStart | None = None) -> None:
        """`target` None with a `target_loader`: the loader runs in a thread after the first frame.
        `after_first_frame` is called once the first frame is on the screen. `lean_first_frame`: that frame
        shows the context bar and the checklist; the rest is mounted right after it. `after_first_sweep` is
        called once the first sweep's report is on the screen. `head_start` (tui/head_start.py): the first
        sweep, started before the app; its report is the first full sweep's."""
        super().__init__()
        self.settings = Settings(target=target, target_loader=target_loader, refresh=refresh, read_only=read_only,
                                 factory=factory, clock=clock, stable_output=stable_output,
                                 initial_report=initial_report, sweep_timeout=sweep_timeout, state_dir=state_dir,
                                 audit_path=audit_path, after_first_frame=after_first_frame,
                                 lean_first_frame=lean_first_frame, after_first_sweep=after_first_sweep,
                                 head_start=head_start)
        self.screenshot_dir = screenshot_dir
        self.exit_line: str | None = None  # why the app could not start: printed (one line) after it exits
        self.theme = THEME

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "quit_safely" and _is_dialog(self.screen):
            return False  # in a dialog, q is not a way out: esc is
        return True

    def get_default_screen(self) -> Screen:
        return MainScreen(self.settings)

    @property
    def main_screen(self) -> MainScreen:
        return next(s for s in self.screen_stack if isinstance(s, MainScreen))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        from tui.screens.palette import palette_commands

        yield from palette_commands(self, screen)
        yield from super().get_system_commands(screen)

    def action_help(self) -> None:
        """Every key that works here, from the live bindings: remapped keys show as remapped, and keys that
        are off (read-only) do not show at all."""
        from tui.screens.help import HelpScreen, binding_rows

        if isinstance(self.screen, HelpScreen):
            return
        active = self.screen.active_bindings
        screen_keys = [b for b in MainScreen.BINDINGS if isinstance(b, Binding)]
        app_keys = [b for b in self.BINDINGS if isinstance(b, Binding)]
        groups = [
            ("Checklist and panes", [("↑ ↓", "move in the checklist or the focused pane"),
                                     ("enter", "plan the action of a failing stage" if not self.settings.read_only
                                      else "(read-only: no actions)"),
                                     ("tab  shift+tab", "move the focus between checklist, panes, details, log")]
             + binding_rows(screen_keys, active, self.get_key_display)),
            ("App", binding_rows(app_keys, active, self.get_key_display)
             + [("ctrl+p", "command palette: every action, stage, pane, refresh, screenshot"),
                ("esc", "back: close a dialog")]),
        ]
        self.push_screen(HelpScreen(groups, read_only=self.settings.read_only))

    def action_save_svg(self) -> None:
        """F8: an SVG of the screen, in the state directory with the saved logs and the audit log (0600)."""
        from checks.audit import write_private
        from checks.sanitize import safe
        from tui.screens.main import default_state_dir

        stamp = datetime.fromtimestamp(self.settings.clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
        directory = self.screenshot_dir or self.settings.state_dir or default_state_dir()
        try:
            # the screen shows the cluster's details: the file is the owner's only (0600), like the saved log
            path = write_private(directory / f"talos-gpu-screenshot-{stamp}.svg", self.export_screenshot())
        except OSError as exc:
            self.notify(safe(exc), title="could not save the screenshot", severity="error", markup=False)
            return
        self.notify(safe(path), title="Screenshot saved", markup=False)

    def action_interrupt(self) -> None:
        """ctrl+c: as q, from anywhere (a dialog too); while the quit question is up, it stays up."""
        confirm = sys.modules.get("tui.screens.confirm")
        if confirm is not None and isinstance(self.screen, confirm.AskScreen):
            return
        self.action_quit_safely()

    def action_quit_safely(self) -> None:
        main = self.main_screen
        if not main.action_running:
            self.exit(0)
            return
        from tui.screens.confirm import AskScreen

        def answered(quit_now: bool | None) -> None:
            if quit_now:
                self.run_worker(self._cancel_then_exit(), group="quit")

        self.push_screen(AskScreen(f"The {main.action_stage} action is still running. Cancel it and quit?\n"
                                   "Cancelling stops its processes; the node may be left half-way.",
                                   yes="Cancel it and quit", no="Keep running"), answered)

    async def _cancel_then_exit(self) -> None:
        await self.main_screen.cancel_running_action()
        self.exit(0)


def _is_dialog(screen: Screen) -> bool:
    """Whether `screen` is a confirmation dialog. The dialogs' module loads when the first one opens (not
    before the first frame), so while it is not loaded no dialog can be showing."""
    confirm = sys.modules.get("tui.screens.confirm")
    return confirm is not None and isinstance(screen, (confirm.ConfirmActionScreen, confirm.AskScreen))
