"""The main screen: checklist, live panes, details, action log — their layout and the handlers that show things.

When to sweep is `tui.sweeps.SweepController`'s business and running an action `tui.actions.ActionController`'s;
their workers only post messages (`tui.messages`), and the handlers here are the only code that touches
widgets. The rules of what follows an action (settle time, rebooting) are `checks.session`'s, shared with
`talos-gpu enable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widget import MountError
from textual.widgets import Input, Label

from checks.errors import UsageError, one_line
from checks.paths import DEVICE_PLUGIN
from checks.sanitize import safe
from checks.stages import StageSpec, stage_spec
from tui.actions import ActionController
from tui.messages import (
    ActionFinished,
    ActionOutput,
    ActionOutputReady,
    PlanFailed,
    PlanReady,
    SweepCrashed,
    SweepFinished,
    SweepStarted,
    TargetFailed,
    TargetReady,
)
from tui.sweeps import SweepController
from widgets.checklist import StageChecklist
from widgets.context_bar import ContextBar, ContextInfo
from widgets.key_hints import KeyHints

if TYPE_CHECKING:  # the panes, details, log, tabs and footer are imported when mounted (after the first frame)
    from textual.widgets import TabbedContent

    from checks.actions.model import Plan
    from checks.model import ProbeResult, Report, StageResult
    from checks.profile import Profile
    from checks.session import Settling
    from checks.target import Target
    from widgets.action_log import ActionLog
    from widgets.details import StageDetails
    from widgets.panes import FactsPane, PaneContext

@dataclass(frozen=True)
class PaneRow:
    """One tab of the panes: its key is its place (1, f1 for the first), its widget a class of widgets.panes
    (imported after the first frame). A new pane is one row here and its class there."""

    id: str
    title: str
    shows: str  # what the pane shows: the key's tooltip
    widget: str  # the FactsPane subclass in widgets.panes


PANES: tuple[PaneRow, ...] = (
    PaneRow("node", "Node", "versions, readiness, conditions", "NodePane"),
    PaneRow("extensions", "Extensions", "tracks, driver versions, schematic", "ExtensionsPane"),
    PaneRow("modules", "Modules", "loaded vs requested, driver, sysctl", "ModulesPane"),
    PaneRow("gpu", "GPU resources", "PCI → driver → kubelet → pods", "GpuPane"),
)
COMPACT_BELOW_ROWS = 32
COMPACT_BELOW_COLUMNS = 110
KEY_HINTS_ROOMY_FROM = 120  # columns: below, the footer's hints lose their padding so that more of them fit
OUTPUT_EVENTS_PER_TURN = 200  # a running action's output events handled per turn of the event loop


REPAIR_ONLY_ACTIONS = ("cluster", "container-runtime")


class ExitLineApp(Protocol):
    """The app as this screen sees it (`tui.app.TalosGpuApp`, which imports this module): the line it
    prints after it exits."""

    exit_line: str | None


@dataclass
class Settings:
    """How the app was started. `clock` returns epoch seconds; tests inject a fixed one."""

    target: Target | None
    refresh: float = 5.0
    target_loader: Callable[[], Target] | None = None  # run in a thread when `target` is None (the demo's lab)
    read_only: bool = False
    factory: str | None = None
    clock: Callable[[], float] = time.time
    stable_output: bool = False  # hide durations and ages, no cursor blink: for snapshots
    initial_report: Report | None = None  # render this report first (a saved or pre-computed one)
    sweep_timeout: float = 30.0
    state_dir: Path | None = None  # where `s` saves the log; None: next to the audit log
    audit_path: Path | None = None  # None: checks.audit's default
    stages: tuple[StageSpec, ...] = field(default=DEVICE_PLUGIN.stages)
    after_first_frame: Callable[[], None] | None = None  # called once the first frame is on the screen
    # the first frame shows the context bar and the checklist only; the panes, the details, the log and
    # the footer are mounted right after it (a terminal shows something useful sooner; issue 7)
    lean_first_frame: bool = False
    after_first_sweep: Callable[[], None] | None = None  # called once the first sweep is on the screen

    @property
    def profile(self) -> Profile:
        if self.target is not None:
            return self.target.profile
        from checks.profile import Profile

        return Profile()


def same_content(old: Report, new: Report) -> bool:
    """Whether two reports say the same thing (durations aside): same stages, same facts."""
    def stages(report: Report) -> list[tuple[Any, ...]]:
        return [(s.id, s.status, s.summary, s.evidence, s.remediation, s.blocked_by) for s in report.stages]

    def facts(report: Report) -> dict[str, tuple[Any, ...]]:
        return {name: (f.value, f.error, f.missing) for name, f in report.facts.items()}

    try:
        return stages(old) == stages(new) and facts(old) == facts(new)
    except Exception:  # noqa: BLE001 - a value that cannot be compared is simply "changed"
        return False


def kube_context_name(target: Target | None) -> str:
    if target is None:
        return "—"
    return target.kube.context or target.kube.server or str(target.kube.kubeconfig)


class MainScreen(Screen):
    BINDINGS = [
        Binding("a", "run_action", "Run action", id="action.run",
                tooltip="plan the selected stage's action, show it, and run it once confirmed"),
        Binding("x", "cancel_action", "Cancel", id="action.cancel",
                tooltip="cancel the running action: its processes are stopped"),
        Binding("r", "refresh", "Refresh", id="refresh", tooltip="re-read the cluster now"),
        Binding("p", "toggle_pause", "Pause", id="pause", tooltip="pause or resume the periodic re-read"),
        Binding("slash", "filter", "Filter", id="filter", tooltip="filter the evidence and the action log"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="filter.clear",
                tooltip="clear the filter"),
        Binding("c", "copy_fix", "Copy fix", id="copy", tooltip="copy the selected stage's fix command"),
        Binding("s", "save_log", "Save log", show=False, id="log.save",
                tooltip="save the action log to a file in the state directory"),
        Binding("j", "cursor_down", "Down", show=False, id="cursor.down", tooltip="move down (like ↓)"),
        Binding("k", "cursor_up", "Up", show=False, id="cursor.up", tooltip="move up (like ↑)"),
        *(Binding(f"{number},f{number}", f"show_pane('{pane.id}')", f"{pane.title} pane", show=False,
                  id=f"pane.{pane.id}", tooltip=f"pane: {pane.title} ({pane.shows})")
          for number, pane in enumerate(PANES, 1)),
    ]

    def __init__(self, settings: Settings) -> None:
        super().__init__(id="main")
        self.settings = settings
        self.report: Report | None = None
        self.sweeps = SweepController(self, self, target=lambda: self.settings.target, refresh=settings.refresh,
                                      timeout=settings.sweep_timeout)
        self.actions = ActionController(self)
        self.unknown_stages: set[str] = set()
        self.last_good_facts: dict[str, ProbeResult] | None = None  # from the last report taken before a reboot
        self.root_cause: str | None = "not checked yet"  # the last root cause written to the log
        self.audit_announced = False
        self.move_on_from: str | None = None  # after an action: select the next stage once this one passes
        self.expected: dict[str, str] = {}  # stage id -> why its failure is expected progress (ActionController.expected)
        self._rest_mounted = not settings.lean_first_frame  # the panes, details, log and footer (see compose)
        self._rest_mounting: asyncio.Event | None = None
        self._pending_log: list[tuple[str, str]] = []  # lines logged before the log was mounted
        self._log_widget: ActionLog | None = None

    # ---- layout -----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        lean = self.settings.lean_first_frame
        yield ContextBar(self._context_info(), self.settings.clock, id="context-bar")
        with Horizontal(id="top"):
            with Vertical(id="checklist-box"):
                yield Label("Checklist", classes="box-title")
                yield StageChecklist(self.settings.stages, stable=self.settings.stable_output,
                                     id="checklist")
            if not lean:
                yield self._panes()
        if not lean:
            yield self._below()
        yield KeyHints()  # from the first frame: what to press is the first thing a new user needs

    def _panes(self) -> TabbedContent:
        from textual.widgets import TabbedContent, TabPane

        panes = TabbedContent(id="panes", initial="node")
        for number, pane in enumerate(PANES, 1):
            # the hidden panes mount after the first frame: it appears sooner
            content = (self._pane(pane),) if number == 1 else ()
            panes.compose_add_child(TabPane(f"{number} {pane.title}", *content, id=pane.id))
        return panes

    def _below(self) -> Horizontal:
        from widgets.action_log import ActionLog
        from widgets.details import StageDetails

        # the filter field (hidden until /) is mounted after the first frame, before the footer
        return Horizontal(StageDetails(id="details"),
                          Vertical(Label("Action log", classes="box-title"), ActionLog(id="log"), id="log-box"),
                          id="bottom")

    async def _mount_rest(self) -> None:
        """(lean first frame) Mount the panes, the details, the log and the footer; idempotent. What was
        logged meanwhile is written to the log, and the current stage and report are shown."""
        if self._rest_mounted:
            return
        if self._rest_mounting is not None:
            await self._rest_mounting.wait()
            return
        self._rest_mounting = asyncio.Event()
        try:
            with contextlib.suppress(MountError):  # the app is already leaving
                await self.query_one("#top", Horizontal).mount(self._panes())
                await self.mount(self._below(), before=self.query_one(KeyHints))
                self._rest_mounted = True
        finally:
            self._rest_mounting.set()
        if self._rest_mounted:
            for text, kind in self._pending_log:
                self.action_log.add(text, kind)
            self._pending_log.clear()
            self._show_details()
            self._show_panes()

    def log_line(self, text: str, kind: str) -> None:
        """A line for the action log (kept until the log is mounted, with a lean first frame)."""
        if self._rest_mounted:
            self.action_log.add(text, kind)
        else:
            self._pending_log.append((text, kind))

    def _context_info(self) -> ContextInfo:
        target = self.settings.target
        if target is None and self.settings.target_loader is not None:
            return ContextInfo("starting…", "starting…", self.settings.read_only, self.settings.refresh)
        return ContextInfo(kube_context_name(target), target.talos.node if target else "—",
                           self.settings.read_only, self.settings.refresh)

    @staticmethod
    def _pane(pane: PaneRow) -> FactsPane:
        import widgets.panes

        kind: type[FactsPane] = getattr(widgets.panes, pane.widget)
        return kind(id=f"pane-{pane.id}")

    @property
    def checklist(self) -> StageChecklist:
        return self.query_one("#checklist", StageChecklist)

    @property
    def details(self) -> StageDetails:
        from widgets.details import StageDetails

        return self.query_one("#details", StageDetails)

    @property
    def action_log(self) -> ActionLog:
        if self._log_widget is None:  # looked up once: a chatty action writes thousands of lines
            from widgets.action_log import ActionLog

            self._log_widget = self.query_one("#log", ActionLog)
        return self._log_widget

    @property
    def context_bar(self) -> ContextBar:
        return self.query_one("#context-bar", ContextBar)

    async def _mount_hidden_panes(self) -> None:
        await self._mount_rest()
        from textual.widgets import TabPane

        from widgets.panes import FactsPane

        for pane in PANES[1:]:
            tab = self.query_one(f"#{pane.id}", TabPane)
            if not tab.is_mounted or tab.query(FactsPane):
                continue
            with contextlib.suppress(MountError):  # the app is already leaving
                await tab.mount(self._pane(pane))

    def _filter_field(self) -> Input:
        field = Input(placeholder="filter the evidence and the log (enter keeps it, esc clears it)", id="filter")
        field.display = False
        field.border_title = "filter: enter keeps it, esc clears it"
        if self.settings.stable_output:
            field.cursor_blink = False
        return field

    async def _mount_filter_field(self) -> Input:
        """The filter field: hidden until `/`, so it is mounted after the first frame (or by `/`, if sooner)."""
        await self._mount_rest()
        found = self.query("#filter").results(Input)
        field = next(found, None)
        if field is None:
            field = self._filter_field()
            with contextlib.suppress(MountError):  # the app is already leaving
                await self.mount(field, before=self.query_one(KeyHints))
        return field

    def on_mount(self) -> None:
        self.call_after_refresh(self._after_first_frame)
        self.checklist.focus()
        self._show_details()
        if self.settings.read_only:
            self.log_line("read-only: actions are hidden and refused", "note")
        if self.settings.initial_report is not None:
            self.apply_report(self.settings.initial_report)
            self.sweeps.schedule_next()

    async def _after_first_frame(self) -> None:
        """The screen shows "checking…" at once; the target, the first sweep and the hidden panes follow."""
        if self.settings.after_first_frame is not None:
            self.settings.after_first_frame()
        if self.settings.initial_report is None:
            if self.settings.target is not None:
                self.start_sweep()
            elif self.settings.target_loader is not None:
                self.run_worker(self._load_target, name="load target", thread=True, exit_on_error=False)
        await self._mount_rest()
        await self._mount_hidden_panes()
        await self._mount_filter_field()

    def _load_target(self) -> None:
        assert self.settings.target_loader is not None
        try:
            target = self.settings.target_loader()
        except UsageError as exc:  # a config the cheap checks before the first frame let through: its one line
            self.post_message(TargetFailed(str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - shown, never a traceback
            self.post_message(TargetFailed(f"cannot start: {one_line(exc)}"))
            return
        self.post_message(TargetReady(target))

    @on(TargetReady)
    def _target_ready(self, message: TargetReady) -> None:
        self.settings.target = message.target
        self.context_bar.info = self._context_info()
        self.context_bar.redraw()
        self.start_sweep()

    @on(TargetFailed)
    def _target_failed(self, message: TargetFailed) -> None:
        # The runner prints the line once the terminal is restored (`TalosGpuApp.exit_line`): Textual's exit
        # message goes through Rich, which wraps it at the terminal's width.
        cast("ExitLineApp", self.app).exit_line = f"talos-gpu: {safe(message.reason, one_line=True)}"
        self.app.exit(2, return_code=2)

    def on_resize(self) -> None:
        compact = self.size.height < COMPACT_BELOW_ROWS or self.size.width < COMPACT_BELOW_COLUMNS
        self.query_one("#checklist-box").set_class(compact, "-compact")
        self.checklist.set_compact(compact)
        self.query_one(KeyHints).compact = self.size.width < KEY_HINTS_ROOMY_FROM

    # ---- sweeps (tui.sweeps schedules them) -------------------------------------------------------

    @property
    def sweeping(self) -> bool:
        return self.sweeps.running

    @property
    def sweeps_done(self) -> int:
        return self.sweeps.done

    @property
    def paused(self) -> bool:
        return self.sweeps.paused

    @property
    def settling(self) -> Settling | None:
        return self.sweeps.settling

    def start_sweep(self, *, full: bool = True) -> None:
        """Start a sweep now, or right after the running one ends (`SweepController.start`)."""
        self.sweeps.start(full=full)

    @on(SweepStarted)
    def _sweep_started(self) -> None:
        self.context_bar.sweeping = True
        self.context_bar.redraw()

    @on(SweepFinished)
    def _sweep_finished(self, message: SweepFinished) -> None:
        self.sweeps.finished(moved=message.moved)
        self.context_bar.sweeping = False
        self.apply_report(message.report)
        if self.sweeps.done == 1 and self.settings.after_first_sweep is not None:
            self.settings.after_first_sweep()
        self.sweeps.after_report(message.report)

    @on(SweepCrashed)
    def _sweep_crashed(self, message: SweepCrashed) -> None:
        self.context_bar.sweeping = False
        self.context_bar.redraw()
        self.notify(safe(f"The check itself failed: {message.reason}"), title="check failed", severity="error", markup=False)
        self.log_line(f"check failed: {message.reason}", "error")
        self.sweeps.crashed()

    def apply_report(self, report: Report) -> None:
        """Show a report everywhere: checklist, details, panes, context bar.

        A refresh that found everything as it was only moves "updated Ns ago": re-rendering the same
        tables every few seconds is most of what an idle app would cost.
        """
        first = self.report is None
        report = self.actions.with_test_pod_result(report)
        expected = self.actions.expected(report, self.settling, self.rebooting_reason())
        if not first and self.report is not None and same_content(self.report, report) and expected == self.expected:
            self.report = report
            self.context_bar.updated_at = self.settings.clock()
            self.context_bar.redraw()
            return
        self.report = report
        self._follow_path(report)
        if self.rebooting_reason() is None:
            self.last_good_facts = {name: fact for name, fact in report.facts.items() if fact.ok}
        if first and report.root_cause is not None:
            self.checklist.select_stage(report.root_cause.stage)  # the on-call engineer lands on the cause
        self.context_bar.updated_at = self.settings.clock()
        self.context_bar.redraw()
        self.expected = expected
        self.checklist.show_report(report, self.expected)
        self._move_on_after_action(report)
        self._show_details()
        self._show_panes()
        self._notice_changes(report)

    def _move_on_after_action(self, report: Report) -> None:
        """Once the stage of the action just run passes, the selection moves to the stage to work on next
        (the root cause, else the first that does not pass), unless the user moved it meanwhile."""
        stage = self.move_on_from
        if stage is None:
            return
        try:
            passing = report.stage(stage).status.ok
        except KeyError:
            passing = True
        if not passing:
            if self.settling is None:  # its re-checks gave up: it stays where the user can see it
                self.move_on_from = None
            return
        self.move_on_from = None
        if self.checklist.selected_stage != stage:
            return
        failing = [s.id for s in report.stages if not s.status.ok]
        target = report.root_cause.stage if report.root_cause is not None else (failing[0] if failing else None)
        if target is not None:
            self.checklist.select_stage(target)

    def _notice_changes(self, report: Report) -> None:
        from checks.model import Status

        unknown = {s.id: s.summary for s in report.stages if s.status is Status.UNKNOWN and s.id not in self.expected}
        for stage_id in sorted(set(unknown) - self.unknown_stages):
            self.notify(safe(unknown[stage_id]), title=f"{stage_id}: could not check", severity="warning", timeout=8,
                        markup=False)
            self.log_line(f"{stage_id}: could not check: {unknown[stage_id]}", "stderr")
        self.unknown_stages = set(unknown)
        root = report.root_cause.stage if report.root_cause else None
        if root is not None and root in self.expected:
            if self.root_cause != f"expected {root}":
                self.log_line(f"{root}: {self.expected[root]} (expected; it is followed until the node is back)",
                              "phase")
            self.root_cause = f"expected {root}"
            return
        if root != self.root_cause:
            if root is None:
                self.log_line("every stage passes", "ok")
            else:
                self.log_line(f"root cause: {root}: {report.root_cause.summary}", "phase")
            self.root_cause = root

    def rebooting_reason(self) -> str | None:
        """Why the node is taken to be rebooting, from the last report and the running action."""
        return self.actions.rebooting_reason(self.report)

    def _show_panes(self) -> None:
        if self.report is None:
            return
        ctx = self._pane_context()
        report = self._report_for_panes(self.report, ctx)
        from widgets.panes import FactsPane

        for pane in self.query(FactsPane):
            pane.show(report, ctx)

    def _report_for_panes(self, report: Report, ctx: PaneContext) -> Report:
        """While the node reboots, a fact it cannot answer keeps its last known value in the panes."""
        if ctx.rebooting is None or self.last_good_facts is None:
            return report
        facts = dict(report.facts)
        for name, fact in report.facts.items():
            previous = self.last_good_facts.get(name)
            if not fact.ok and previous is not None:
                facts[name] = previous
        return dataclasses.replace(report, facts=facts)

    def _pane_context(self) -> PaneContext:
        from widgets.panes import PaneContext

        return PaneContext(self.settings.profile, self.settings.clock(), self.settings.stable_output,
                           self.rebooting_reason(), self.actions.last_test_pod)

    def _follow_path(self, report: Report) -> None:
        """The context bar names the node's Talos version and the path; the checklist's titles follow it."""
        from checks.paths import PATHS, named

        self.context_bar.show_report(report.talos_version, report.path)
        stages = named(report.path).stages
        if stages is not self.settings.stages and any(self.settings.stages is p.stages for p in PATHS):
            self.settings.stages = stages
            self.checklist.stages = stages

    def _show_details(self) -> None:
        if not self._rest_mounted:
            return  # shown once the details are mounted
        stage_id = self.checklist.selected_stage or self.settings.stages[0].id
        spec = stage_spec(stage_id, self.settings.stages)
        result = None
        if self.report is not None:
            try:
                result = self.report.stage(stage_id)
            except KeyError:
                result = None
        is_root = self.report is not None and self.report.root_cause is not None \
            and self.report.root_cause.stage == stage_id and stage_id not in self.expected
        self.details.show(spec, result, is_root=is_root, action_hint=self._action_hint(spec))

    def _action_hint(self, spec: StageSpec) -> str | None:
        if spec.action is None:
            return None
        if spec.id in REPAIR_ONLY_ACTIONS:  # they act only on machine.files entries Talos refuses at boot
            result = self._result(spec.id)
            if result is None or "/machine/files/" not in (result.remediation or ""):
                return None
        if self.settings.read_only:
            return "read-only: its action is disabled"
        reboot = " (reboots the node)" if spec.reboots else ""
        return f"a or enter plans its action{reboot}"

    def on_facts_pane_mounted(self, message: FactsPane.Mounted) -> None:  # widgets.panes is imported later
        if self.report is not None:
            ctx = self._pane_context()
            message.pane.show(self._report_for_panes(self.report, ctx), ctx)

    @on(StageChecklist.StageHighlighted)
    def _stage_highlighted(self) -> None:
        self._show_details()

    # ---- actions (tui.actions runs them) ----------------------------------------------------------

    @property
    def action_running(self) -> bool:
        return self.actions.running

    @property
    def action_stage(self) -> str | None:
        return self.actions.stage

    @property
    def planning(self) -> str | None:
        return self.actions.planning

    @property
    def last_test_pod(self) -> str | None:
        return self.actions.last_test_pod

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("run_action", "cancel_action") and self.settings.read_only:
            return False  # hidden from the footer and refused
        if action == "cancel_action" and not self.action_running:
            return None  # shown, but disabled
        return True

    def action_run_action(self) -> None:
        stage = self.checklist.selected_stage
        if stage is not None:
            self.request_action(stage)

    @on(StageChecklist.ActionRequested)
    def _enter_on_stage(self, message: StageChecklist.ActionRequested) -> None:
        result = self._result(message.stage_id)
        if result is not None and result.status.ok:
            self.notify(f"{message.stage_id} passes; press a to run its action anyway", timeout=4)
            return
        self.request_action(message.stage_id)

    def _result(self, stage_id: str) -> StageResult | None:
        if self.report is None:
            return None
        try:
            return self.report.stage(stage_id)
        except KeyError:
            return None

    def request_action(self, stage_id: str) -> None:
        """Plan the stage's action and ask for confirmation; refused in read-only mode."""
        if self.settings.read_only:
            self.notify("Read-only: actions are disabled (started with --read-only)", severity="warning")
            return
        spec = stage_spec(stage_id, self.settings.stages)
        if spec.action is None:
            self.notify(f"{stage_id} has no action: its evidence says what to fix", severity="warning")
            return
        if self.action_running:
            self.notify(f"Wait: the {self.action_stage} action is running (x cancels it); one action at a time",
                        severity="warning")
            return
        if self.planning is not None or self.settings.target is None:
            return
        self.log_line(f"planning the {stage_id} action…", "note")
        self.actions.plan(stage_id, self.settings.target, self.report, factory=self.settings.factory)

    @on(PlanFailed)
    def _plan_failed(self, message: PlanFailed) -> None:
        self.actions.planning = None
        self.notify(safe(message.reason), title=f"cannot plan {message.stage}", severity="error", markup=False)
        self.log_line(f"cannot plan the {message.stage} action: {message.reason}", "error")

    @on(PlanReady)
    def _plan_ready(self, message: PlanReady) -> None:
        self.actions.planning = None
        plan = message.plan
        if self.settings.read_only:  # never reached through the keys; a last guard
            return

        from tui.screens.confirm import ConfirmActionScreen  # its first use: not before the first frame

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.start_action(plan)
            else:
                self.log_line(f"{plan.stage}: cancelled at the confirmation; nothing was run", "note")

        self.app.push_screen(ConfirmActionScreen(plan, blink=not self.settings.stable_output), answered)

    def start_action(self, plan: Plan) -> None:
        if self.settings.read_only or self.action_running:
            return
        from widgets.context_bar import ActionProgress

        assert self.settings.target is not None
        self.context_bar.action = ActionProgress(plan.stage, len(plan.steps), self.settings.clock())
        self.context_bar.redraw()
        self.log_line(f"▶ {plan.stage}: {plan.title}", "step")
        if not self.audit_announced:  # said once: every action is recorded there
            self.audit_announced = True
            self.log_line(f"recorded in the audit log {self.audit_path}", "note")
        self.actions.start(plan, self.settings.target, audit_path=self.settings.audit_path,
                           read_only=self.settings.read_only)
        self.refresh_bindings()

    @property
    def audit_path(self) -> Path:
        from checks.audit import default_audit_path

        return self.settings.audit_path or default_audit_path()

    @on(ActionOutputReady)
    def _action_output_ready(self) -> None:
        """Up to OUTPUT_EVENTS_PER_TURN buffered events; the rest on the next turn, so that keys are
        answered in between even while a command floods its output."""
        self._drain_output(OUTPUT_EVENTS_PER_TURN)
        self.actions.after_turn()

    def _drain_output(self, most: int | None = None) -> None:
        for event in self.actions.take(most):
            self._action_output(event)

    @on(ActionOutput)
    def _action_output(self, message: ActionOutput) -> None:
        kind = (message.stream or "stdout") if message.kind == "line" else message.kind
        self.log_line(f"▸ {message.text}" if message.kind == "step" else message.text, kind)
        progress = self.context_bar.action
        if progress is not None and message.kind in ("step", "phase"):
            if message.kind == "step":
                progress.step, progress.phase = min(progress.step + 1, progress.steps or progress.step + 1), ""
            else:
                progress.phase = message.text if len(message.text) <= 32 else message.text[:31] + "…"
            self.context_bar.redraw()
        if message.kind == "phase" and self.report is not None:
            self._show_panes()  # "node rebooting" / "node back" reach the panes' banners at once

    @on(ActionFinished)
    def _action_finished(self, message: ActionFinished) -> None:
        self._drain_output()  # what the action printed comes before its end
        ok = message.status == "ok"
        text = f"■ {message.stage}: {message.status}: {message.reason}"
        if message.node_state:
            text += f" ({message.node_state})"
        self.log_line(text, "ok" if ok else "error")
        self.notify(safe(message.reason), title=f"{message.stage} action {message.status}", markup=False,
                    severity="information" if ok else "error")
        self.actions.finished(message.stage, ok, message.reason, self.settings.stages)
        self.context_bar.action = None
        self.context_bar.redraw()
        self.refresh_bindings()
        if message.status == "cancelled" and not self.actions.cancelled_by_user:
            return  # cancelled because the app is closing (q, SIGTERM): start nothing new
        self.log_line("re-checking…", "note")
        if ok:
            self.sweeps.settle_after(message.stage)
            self.move_on_from = message.stage
        self.start_sweep()

    def action_cancel_action(self) -> None:
        stage = self.action_stage
        if self.actions.cancel():
            self.log_line(f"cancelling the {stage} action…", "stderr")
        else:
            self.notify("No action is running")

    async def cancel_running_action(self) -> None:
        """Cancel the running action and wait until its processes are gone (used when quitting)."""
        await self.actions.cancel_and_wait()

    # ---- keys ---------------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        if self.settings.target is None:
            self.notify("Nothing to refresh: this is a saved report")
            return
        self.start_sweep()

    def action_toggle_pause(self) -> None:
        paused = self.sweeps.toggle_pause()
        self.context_bar.paused = paused
        self.context_bar.redraw()
        self.notify("Refresh paused (p resumes)" if paused else "Refresh resumed")

    async def action_show_pane(self, pane_id: str) -> None:
        await self._mount_rest()
        from textual.widgets import TabbedContent

        self.query_one("#panes", TabbedContent).active = pane_id

    def action_cursor_down(self) -> None:
        self._move(+1)

    def action_cursor_up(self) -> None:
        self._move(-1)

    def _move(self, step: int) -> None:
        focused = self.focused
        if focused is not None and hasattr(focused, "action_cursor_down"):
            getattr(focused, "action_cursor_down" if step > 0 else "action_cursor_up")()
        elif focused is not None and hasattr(focused, "scroll_relative"):
            focused.scroll_relative(y=step, animate=False)

    async def action_copy_fix(self) -> None:
        await self._mount_rest()
        fix = self.details.remediation
        if not fix:
            self.notify("This stage has no command to copy")
            return
        self.app.copy_to_clipboard(safe(fix, one_line=True))
        self.notify(safe(fix), title="Copied to the clipboard", markup=False)

    async def action_save_log(self) -> None:
        await self._mount_rest()
        directory = self.settings.state_dir or default_state_dir()
        stamp = datetime.fromtimestamp(self.settings.clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
        path = directory / f"talos-gpu-log-{stamp}.txt"
        try:
            from checks.audit import write_private

            write_private(path, self.action_log.plain_text())
        except OSError as exc:
            self.notify(safe(one_line(exc)), title="could not save the log", severity="error", markup=False)
            return
        self.notify(safe(path), title="Log saved", markup=False)

    # ---- filter -------------------------------------------------------------------------------------

    async def action_filter(self) -> None:
        field = await self._mount_filter_field()
        field.display = True
        field.focus()

    def action_clear_filter(self) -> None:
        field = next(self.query("#filter").results(Input), None)
        if field is None or (not field.display and not field.value):
            return
        field.value = ""
        field.display = False
        self._apply_filter("")
        self.checklist.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._apply_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.display = False
        self.checklist.focus()

    def _apply_filter(self, text: str) -> None:
        if not self._rest_mounted:
            return
        self.details.set_filter(text)
        self.action_log.set_filter(text)


def default_state_dir() -> Path:
    from checks.audit import default_audit_path

    return default_audit_path().parent
