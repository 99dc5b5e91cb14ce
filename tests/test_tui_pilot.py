"""The TUI driven by keys (Textual's Pilot) against the real lab: sweeps, panes, the confirm flow,
read-only, cancelling, refreshing, errors, and the whole walk from a fresh node to a healthy one."""

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, TabbedContent

from checks.model import Status
from tests.conftest import LabRun
from tests.pilot import wait_for_confirm_modal, wait_until
from tests.procs import live_command_lines
from tui.app import TalosGpuApp
from tui.screens.confirm import AskScreen, ConfirmActionScreen
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from widgets.checklist import StageChecklist

pytestmark = pytest.mark.anyio
SIZE = (120, 40)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_app(run: LabRun, tmp_path: Path, **options: Any) -> TalosGpuApp:
    options.setdefault("refresh", 0)
    return TalosGpuApp(run.target, audit_path=tmp_path / "audit.log", state_dir=tmp_path / "state", **options)


def main_of(app: TalosGpuApp) -> MainScreen:
    return app.main_screen


async def wait_for_sweeps(pilot: Pilot, count: int, timeout: float = 60.0) -> None:
    main = main_of(pilot.app)
    await wait_until(pilot, lambda: main.sweeps_done >= count and not main.sweeping, timeout, f"sweep {count}")
    await pilot.pause(0.1)


def status_of(main: MainScreen, stage: str) -> Status:
    assert main.report is not None
    return main.report.stage(stage).status


def log_text(main: MainScreen) -> str:
    main.action_log.flush()
    return main.action_log.plain_text()


async def select(pilot: Pilot, stage: str) -> None:
    """Move the checklist cursor to `stage` with j/k, as a person would."""
    main = main_of(pilot.app)
    order = [spec.id for spec in main.settings.stages]
    main.checklist.focus()
    for _ in range(len(order) * 2):
        current = main.checklist.selected_stage
        if current == stage:
            return
        await pilot.press("j" if order.index(stage) > order.index(current or order[0]) else "k")
    raise AssertionError(f"could not select {stage}")


def lab_processes(state_dir: Path, word: str) -> list[int]:
    """Processes whose command line names the lab's state directory and `word` (e.g. a talosctl patch)."""
    return list(live_command_lines(str(state_dir), word, exclude=("lab.runtime",)))


# ---- first frame and navigation -------------------------------------------------------------------


async def test_the_first_frame_shows_checking_before_the_first_sweep_ends(lab_run, tmp_path) -> None:
    run = lab_run("fresh", {"talosctl_latency_ms": 1500})
    app = make_app(run, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        main = main_of(app)
        assert main.report is None
        assert "checking" in main.checklist.get_cell("extensions", "status").plain
        await wait_for_sweeps(pilot, 1)
        assert main.checklist.get_cell("extensions", "status").plain.startswith("✘ FAIL")


async def test_keys_move_the_selection_and_the_details_follow(lab_run, tmp_path) -> None:
    run = lab_run("fresh")
    app = make_app(run, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        main = main_of(app)
        assert main.checklist.selected_stage == "extensions"  # lands on the root cause
        assert "ROOT CAUSE" in main.details.plain and "extensions" in main.details.plain
        await pilot.press("j")
        assert main.checklist.selected_stage == "kernel-modules"
        assert main.details.plain.splitlines()[0].endswith("kernel-modules")
        assert "blocked by extensions" in main.details.plain.lower()
        await pilot.press("k", "k")
        assert main.checklist.selected_stage == "cluster"
        await pilot.press("down")
        assert main.checklist.selected_stage == "extensions"
        tabs = app.query_one("#panes", TabbedContent)
        for key, pane in (("3", "modules"), ("f4", "gpu"), ("2", "extensions"), ("1", "node")):
            await pilot.press(key)
            assert tabs.active == pane


async def test_help_lists_the_keys_and_esc_closes_it(lab_run, tmp_path) -> None:
    run = lab_run("healthy")
    app = make_app(run, tmp_path, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = [key for _title, rows in app.screen.groups for key, _text in rows]
        assert "r" in keys and "f8" in keys and "1  f1" in keys
        assert "a" not in keys and "x" not in keys  # read-only: the action keys are off, so not listed
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


# ---- actions ---------------------------------------------------------------------------------------


async def open_action(pilot: Pilot, stage: str) -> ConfirmActionScreen:
    await select(pilot, stage)
    await pilot.press("a")
    return await wait_for_confirm_modal(pilot)


async def test_cancel_in_the_confirm_modal_runs_nothing(lab_run, tmp_path) -> None:
    run = lab_run("runtimeclass-missing")
    app = make_app(run, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        modal = await open_action(pilot, "runtimeclass")
        assert modal.focused is modal.query_one("#cancel", Button)  # the safe button has the focus
        await pilot.press("enter")
        await pilot.pause()
        main = main_of(app)
        assert isinstance(app.screen, MainScreen)
        assert not main.action_running
        assert "nothing was run" in log_text(main)
        with run.mutate() as state:
            assert state["kube"]["runtimeclasses"] == []


async def test_confirm_runs_the_action_then_rechecks(lab_run, tmp_path) -> None:
    run = lab_run("runtimeclass-missing")
    app = make_app(run, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        main = main_of(app)
        assert status_of(main, "runtimeclass") is Status.FAIL
        await open_action(pilot, "runtimeclass")
        await pilot.press("tab", "enter")  # from Cancel to Confirm
        await wait_until(pilot, lambda: "■ runtimeclass: ok" in log_text(main), what="the action")
        await wait_for_sweeps(pilot, 2)
        assert status_of(main, "runtimeclass") is Status.PASS
        with run.mutate() as state:
            assert [rc["metadata"]["name"] for rc in state["kube"]["runtimeclasses"]] == ["nvidia"]
        assert (tmp_path / "audit.log").read_text().count("runtimeclass") > 0


async def test_an_action_that_reboots_needs_the_node_name_typed(lab_run, tmp_path) -> None:
    run = lab_run("fresh")
    app = make_app(run, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        modal = await open_action(pilot, "extensions")
        confirm = modal.query_one("#confirm", Button)
        assert modal.plan.reboots and modal.plan.confirm_word == "gpu-node-1"
        assert confirm.disabled
        field = modal.query_one("#confirm-word", Input)
        assert modal.focused is field  # typing the name is what confirms: it goes straight into the box
        assert "gpu-node-1" in field.placeholder
        await pilot.press(*"gpu-node")
        assert confirm.disabled
        await pilot.press("enter")  # a wrong name cannot confirm either
        assert isinstance(app.screen, ConfirmActionScreen) and confirm.disabled
        await pilot.press(*"-1")
        assert not confirm.disabled
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        assert not main_of(app).action_running


async def test_read_only_refuses_actions_everywhere(lab_run, tmp_path) -> None:
    run = lab_run("fresh")
    app = make_app(run, tmp_path, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        main = main_of(app)
        await pilot.press("a")
        await pilot.press("enter")  # on the failing root cause
        main.request_action("extensions")  # the palette's and the buttons' way in
        await pilot.pause(0.5)
        assert isinstance(app.screen, MainScreen)
        assert not main.action_running and main.planning is None
        assert any("Read-only" in n.message for n in app._notifications)
        assert "a" not in main.active_bindings and "x" not in main.active_bindings
        titles = [command.title for command in app.get_system_commands(main)]
        assert not [t for t in titles if t.startswith("Action:")]
        assert "Pane: Modules" in titles
        assert "READ-ONLY" in main.context_bar.line_text().plain


async def start_hanging_action(pilot: Pilot, run: LabRun) -> MainScreen:
    """Confirm the kernel-modules action with every later talosctl call hanging: it stays running."""
    modal = await open_action(pilot, "kernel-modules")
    with run.mutate() as state:
        state["knobs"]["talosctl_latency_ms"] = 600_000
    modal.query_one("#confirm", Button).press()
    main = main_of(pilot.app)
    await wait_until(pilot, lambda: main.action_running and lab_processes(run.state_dir, "patch") != [],
                     what="the patch command to start")
    return main


async def test_x_cancels_the_action_and_leaves_no_process(lab_run, tmp_path) -> None:
    run = lab_run("modules-not-loaded")
    app = make_app(run, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        main = await start_hanging_action(pilot, run)
        await pilot.press("a")  # one action at a time
        assert not isinstance(app.screen, ConfirmActionScreen)
        await pilot.press("x")
        await wait_until(pilot, lambda: not main.action_running, what="the action to stop")
        await wait_until(pilot, lambda: "■ kernel-modules: cancelled" in log_text(main), what="the cancel line")
        await wait_until(pilot, lambda: lab_processes(run.state_dir, "patch") == [], 10, "the process to die")


async def test_quit_asks_while_an_action_runs(lab_run, tmp_path) -> None:
    run = lab_run("modules-not-loaded")
    app = make_app(run, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        main = await start_hanging_action(pilot, run)
        await pilot.press("q")
        assert isinstance(app.screen, AskScreen)
        await pilot.press("enter")  # "Keep running" has the focus
        assert isinstance(app.screen, MainScreen) and main.action_running
        await pilot.press("q")
        await pilot.press("tab", "enter")
        await wait_until(pilot, lambda: not app.is_running, 20, "the app to exit")
    assert lab_processes(run.state_dir, "patch") == []


async def test_the_palette_runs_a_stage_action(lab_run, tmp_path) -> None:
    run = lab_run("runtimeclass-missing")
    app = make_app(run, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        titles = [command.title for command in app.get_system_commands(main_of(app))]
        for stage in ("extensions", "kernel-modules", "container-runtime", "runtimeclass", "device-plugin",
                      "gpu-workload"):
            assert f"Action: {stage}" in titles
        assert {"Pane: Node", "Pane: Extensions", "Pane: Modules", "Pane: GPU resources", "Refresh now",
                "Screenshot"} <= set(titles)
        await pilot.press("ctrl+p")
        await pilot.press(*"Action: runtimeclass")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for_confirm_modal(pilot)
        assert app.screen.plan.stage == "runtimeclass"


# ---- refresh, errors, files ------------------------------------------------------------------------


async def test_refresh_shows_a_change_in_the_lab_by_itself_and_on_r(lab_run, tmp_path) -> None:
    run = lab_run("healthy")
    app = make_app(run, tmp_path, refresh=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        main = main_of(app)
        await pilot.press("3")
        await pilot.pause(0.2)
        table = app.query_one("#modules-table", DataTable)
        assert table.get_cell("mod-nvidia_uvm", "state").plain == "✔ Live"
        with run.mutate() as state:  # someone drops nvidia_uvm from the machine config
            state["talos"]["config"]["kernel_modules"].remove("nvidia_uvm")
        await wait_until(pilot, lambda: table.get_cell("mod-nvidia_uvm", "state").plain == "✘ absent",
                         what="the pane to change")
        assert table.get_cell("mod-nvidia_uvm", "in config").plain == "✘ no"
        assert status_of(main, "kernel-modules") is Status.FAIL
        await pilot.press("p")  # paused: nothing changes by itself any more
        done = main.sweeps_done
        with run.mutate() as state:
            state["talos"]["config"]["kernel_modules"].append("nvidia_uvm")
        await pilot.pause(1.5)
        assert main.sweeps_done <= done + 1  # at most the sweep that was running when paused
        assert main.paused
        await pilot.press("r")
        await wait_until(pilot, lambda: table.get_cell("mod-nvidia_uvm", "state").plain == "✔ Live",
                         what="r to refresh")


async def test_an_adapter_error_shows_as_unknown_with_its_reason(lab_run, tmp_path) -> None:
    from lab.faults import set_fault

    run = lab_run("healthy")
    set_fault(run.state_dir, "talosctl_garbage", {"only": "get extensions"})
    app = make_app(run, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        main = main_of(app)
        assert status_of(main, "extensions") is Status.UNKNOWN
        assert main.checklist.get_cell("extensions", "status").plain.startswith("? UNKNOWN")
        assert any("extensions: could not check" in (n.title or "") for n in app._notifications)
        await select(pilot, "extensions")
        assert "not understood" in main.details.plain
        await pilot.press("r")
        await wait_for_sweeps(pilot, 2)
        assert app.is_running and isinstance(app.screen, MainScreen)


async def test_copy_the_fix_save_the_log_and_a_screenshot(lab_run, tmp_path) -> None:
    run = lab_run("runtimeclass-missing")
    app = make_app(run, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        main = main_of(app)
        await select(pilot, "runtimeclass")
        await pilot.press("c")
        assert app.clipboard == main.report.stage("runtimeclass").remediation
        await pilot.press("s")
        saved = list((tmp_path / "state").glob("talos-gpu-log-*.txt"))
        assert len(saved) == 1 and "root cause: runtimeclass" in saved[0].read_text()
        await pilot.press("f8")
        shots = list((tmp_path / "state").glob("talos-gpu-screenshot-*.svg"))  # with the log: one place
        assert len(shots) == 1 and "Checklist" in shots[0].read_text().replace("&#160;", " ")


# ---- the whole walk ---------------------------------------------------------------------------------


async def run_selected_action(pilot: Pilot) -> None:
    """a, type the node name when asked, confirm; wait for the action and its re-check."""
    main = main_of(pilot.app)
    stage = main.checklist.selected_stage
    before = main.sweeps_done
    await pilot.press("a")
    await wait_for_confirm_modal(pilot, what=f"{stage}'s plan")
    modal = pilot.app.screen
    await pilot.pause()
    if modal.plan.confirm_word:
        assert isinstance(modal.focused, Input)  # the focus starts in the name box
        await pilot.press(*modal.plan.confirm_word, "enter")  # the name, and enter confirms
    else:
        await pilot.press("tab", "enter")
    await wait_until(pilot, lambda: f"■ {stage}: " in log_text(main), 240, f"the {stage} action")
    assert f"■ {stage}: ok" in log_text(main), log_text(main)[-2000:]
    await wait_for_sweeps(pilot, before + 1, 120)
    # the app re-checks the stage until it passes (a plugin needs a moment to register)
    await wait_until(pilot, lambda: main.settling is None and not main.sweeping, 90, f"{stage} to settle")


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_the_walk_from_fresh_to_healthy_by_keys_alone(lab_run, tmp_path) -> None:
    run = lab_run("fresh", {"reboot_s": 1.0})
    app = make_app(run, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        main = main_of(app)
        walked = []
        for _ in range(8):
            assert main.report is not None
            if main.report.root_cause is None:
                break
            stage = main.report.root_cause.stage
            if walked:  # after an action, the selection moved on to the stage to fix next
                assert main.checklist.selected_stage == stage, (walked, main.checklist.selected_stage)
            assert stage not in walked, f"{stage} still fails after its action: {main.report.stage(stage).summary}"
            await select(pilot, stage)
            await run_selected_action(pilot)
            walked.append(stage)
        assert main.report.root_cause is None, main.report.root_cause
        assert walked[0] == "extensions" and "device-plugin" in walked
        await select(pilot, "gpu-workload")
        await run_selected_action(pilot)
        await pilot.press("4")
        await pilot.pause(0.2)
        assert "NVIDIA H100 NVL" in (main.last_test_pod or "")
        # the passing test pod passes gpu-workload, and a re-check that changes nothing keeps it
        assert status_of(main, "gpu-workload") is Status.PASS
        before = main.sweeps_done
        await pilot.press("r")
        await wait_for_sweeps(pilot, before + 1)
        assert all(stage.status is Status.PASS for stage in main.report.stages), main.report.stages
        assert isinstance(main.checklist, StageChecklist)


# ---- reboots and secrets ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_the_panes_say_the_node_reboots_and_recover_by_themselves(lab_run, tmp_path) -> None:
    run = lab_run("fresh", {"reboot_s": 12.0})
    app = make_app(run, tmp_path, refresh=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        main = main_of(app)
        node_pane = app.query_one("#pane-node")
        talos_row = app.query_one("#node-table", DataTable)
        await open_action(pilot, "extensions")
        await pilot.press(*"gpu-node-1", "enter")
        await wait_until(pilot, lambda: "NODE REBOOTING" in node_pane.banner_text, 60, "the reboot banner")
        seen_down = False
        seen_expected = False
        while main.action_running:
            # the header says where the action is; the reboot it caused is progress, not a root cause
            bar = main.context_bar.line_text().plain
            assert "▶ extensions " in bar and "/" in bar.split("▶ extensions ", 1)[1].split(" ")[0], bar
            cluster = main.report.stage("cluster") if main.report else None
            if cluster is not None and not cluster.status.ok:
                seen_expected = True
                assert "cluster" in main.expected
                cell = main.checklist.get_cell("cluster", "stage").plain
                assert "ROOT CAUSE" not in cell and "rebooting" in cell, cell
            version = main.report.facts.get("talos_version") if main.report else None
            if version is not None and not version.ok and "NODE REBOOTING" in node_pane.banner_text:
                seen_down = True  # the API is down: the pane keeps its last answer instead of "unknown"
                assert talos_row.get_cell("talos", "value").plain == "v1.11.5"
            await pilot.pause(0.1)
        assert seen_down and seen_expected
        await wait_until(pilot, lambda: main.report is not None and status_of(main, "extensions") is Status.PASS
                         and "NODE REBOOTING" not in node_pane.banner_text, 60, "the node to be back")
        assert "■ extensions: ok" in log_text(main)


async def test_a_secret_in_a_tool_error_never_reaches_the_screen(lab_run, tmp_path) -> None:
    from lab.faults import set_fault

    run = lab_run("healthy")
    token = run.lab.api_token
    set_fault(run.state_dir, "talosctl_exit",
              {"code": 1, "stderr": f"error: auth failed for token {token}", "only": "get extensions"})
    app = make_app(run, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        main = main_of(app)
        await select(pilot, "extensions")
        await pilot.press("2")
        await pilot.pause(0.2)
        assert "auth failed for token" in main.details.plain
        for text in (main.details.plain, log_text(main), app.export_screenshot(),
                     " ".join(n.message for n in app._notifications)):
            assert token not in text
        assert "‹redacted›" in main.details.plain


async def test_the_periodic_refresh_is_light_but_a_change_brings_a_full_sweep(lab_run, tmp_path) -> None:
    run = lab_run("healthy")
    app = make_app(run, tmp_path, refresh=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        main = main_of(app)
        first, seen = main.report, main.sweeps_done  # at 0.3 s a second sweep may already be in
        assert first is not None
        await wait_for_sweeps(pilot, seen + 1)
        assert main.report is not first
        assert main.report.facts["extensions"] is first.facts["extensions"]  # reused: not re-read
        with run.mutate() as state:  # the RuntimeClass goes: a light probe sees it ...
            state["kube"]["runtimeclasses"] = []
        await wait_until(pilot, lambda: status_of(main, "runtimeclass") is Status.FAIL, what="the light refresh")
        changed = main.report
        # ... and a full sweep follows at once, re-reading the Talos facts too
        await wait_until(pilot, lambda: main.report is not changed and not main.sweeping, what="the full sweep")
        assert main.report.facts["extensions"] is not first.facts["extensions"]


async def test_a_lean_first_frame_shows_the_checklist_then_all_of_the_screen(lab_run: Any, tmp_path: Path) -> None:
    """`talos-gpu` and the demo draw the context bar and the checklist first; the panes, details, log and
    footer follow at once, with what was logged meanwhile, and keys pressed meanwhile still work."""
    run = lab_run("nfd-affinity")
    at_first_frame: set[str] = set()

    def first_frame() -> None:
        at_first_frame.update(w.id for w in lean.main_screen.query("*") if w.id)

    lean = make_app(run, tmp_path, read_only=True, lean_first_frame=True, after_first_frame=first_frame)
    async with lean.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        main = main_of(lean)
        assert "read-only: actions are hidden and refused" in log_text(main)  # logged before the log existed
        assert "root cause: device-plugin" in log_text(main)
        assert main.details.plain.startswith("✘ FAIL  device-plugin")
        lean_ids = {w.id for w in main.query("*") if w.id}
    assert {"context-bar", "checklist"} <= at_first_frame
    assert not at_first_frame & {"panes", "details", "log", "bottom"}

    early = make_app(run, tmp_path / "early", lean_first_frame=True)
    async with early.run_test(size=SIZE) as pilot:
        await pilot.press("2")  # perhaps before the panes are mounted: the key waits for them
        await wait_for_sweeps(pilot, 1)
        assert main_of(early).query_one("#panes", TabbedContent).active == "extensions"

    full = make_app(run, tmp_path / "full", read_only=True)
    async with full.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        full_ids = {w.id for w in main_of(full).query("*") if w.id}
    assert lean_ids == full_ids  # the same screen in the end


# ---- first-time use: key hints, ctrl+c ---------------------------------------------------------------


async def test_key_hints_show_help_and_quit_first_at_80_columns_from_the_first_frame(lab_run, tmp_path) -> None:
    from textual.widgets._footer import FooterKey

    run = lab_run("fresh")
    app = TalosGpuApp(None, target_loader=lambda: run.target, refresh=0, lean_first_frame=True,
                      audit_path=tmp_path / "audit.log", state_dir=tmp_path / "state")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()  # the first frame: no sweep has finished yet
        keys = list(app.screen.query(FooterKey))
        assert [k.key_display for k in keys[:3]] == ["?", "q", "a"], [k.key_display for k in keys]
        assert [k.description for k in keys[:2]] == ["Help", "Quit"]
        for key in keys[:2]:
            assert key.region.width > 0 and key.region.right <= 80, key.region


async def test_ctrl_c_quits_at_once_when_nothing_runs(lab_run, tmp_path) -> None:
    run = lab_run("healthy")
    app = make_app(run, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.return_code == 0 and not app.is_running


@pytest.mark.timeout(180)
async def test_ctrl_c_asks_while_an_action_runs(lab_run, tmp_path) -> None:
    from tui.screens.confirm import AskScreen

    run = lab_run("fresh", {"reboot_s": 30.0})
    app = make_app(run, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        main = main_of(app)
        await open_action(pilot, "extensions")
        await pilot.press(*"gpu-node-1", "enter")
        await wait_until(pilot, lambda: main.action_running, 30, "the action to start")
        await pilot.press("ctrl+c")
        await wait_until(pilot, lambda: isinstance(app.screen, AskScreen), 10, "the quit question")
        await pilot.press("ctrl+c")  # a second ctrl+c leaves the question up: it is not a yes
        assert isinstance(app.screen, AskScreen)
        await pilot.press("escape")  # keep running
        await pilot.pause()
        assert main.action_running and app.is_running
        await pilot.press("x")
        await wait_until(pilot, lambda: not main.action_running, 60, "the cancel")


# ---- a node wedged by the runbook's no-cgroups patch --------------------------------------------------


async def test_a_wedged_node_is_shown_with_its_kernel_log_and_repaired_by_keys(lab_run, tmp_path) -> None:
    """The runbook's step 4.1 applied: cluster is the root cause, its details quote the kernel log and
    give the removal; `a` shows that JSON patch first, asks for the node's name (it reboots), and the
    node comes back with every stage of the node passing."""
    run = lab_run("runbook-patch-applied", {"reboot_s": 1.0, "boot_fail_wait_s": 300.0})
    app = make_app(run, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_sweeps(pilot, 1)
        main = main_of(app)
        assert main.report is not None and main.report.root_cause.stage == "cluster"
        await select(pilot, "cluster")
        details = main.details.plain
        assert "writeUserFiles failed, rebooting in 35 minutes" in details and "outside of /var" in details
        assert '/machine/files/0"}]' in details and "a or enter plans its action (reboots the node)" in details
        await select(pilot, "container-runtime")
        assert "runbook's step 4.1" in main.details.plain and "rootless containers only" in main.details.plain
        await select(pilot, "cluster")
        await pilot.press("a")
        modal = await wait_for_confirm_modal(pilot, what="cluster's plan")
        assert modal.plan.reboots and modal.plan.confirm_word == "10.5.0.2"  # no Node to name: the API is down
        assert modal.plan.steps[0].argv[-1] == '[{"op": "remove", "path": "/machine/files/0"}]'
        assert modal.query_one("#confirm", Button).disabled
        await pilot.press("escape")
        await pilot.pause()
        await run_selected_action(pilot)
        assert "node rebooting" in log_text(main) or "node booting" in log_text(main)
        await wait_until(pilot, lambda: main.report.stage("cluster").status is Status.PASS, 60, "cluster to pass")
        runtime = main.report.stage("container-runtime")  # the node is fine; the repo still holds the patch
        assert runtime.status is Status.WARN and "would stop the next boot" in runtime.summary
        with run.mutate() as state:
            assert state["talos"]["config"]["files"] == []
