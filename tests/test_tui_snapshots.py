"""SVG snapshots of the canonical screens (pytest-textual-snapshot).

Each report comes from one real sweep of the lab (session fixture `scenario_report`) handed to the app
as `initial_report` with refresh off, a fixed clock and `stable_output` (no durations or ages, no cursor
blink): the same picture on every run. Update with `pytest --snapshot-update` and look at every SVG.
"""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tests.conftest import SNAPSHOT_SIZE, LabRun, fixed_clock, stable_report
from tests.pilot import wait_for_confirm_modal, wait_until
from tui.app import TalosGpuApp
from tui.screens.main import MainScreen


def snapshot_app(report: Any, target: Any, **options: Any) -> TalosGpuApp:
    options.setdefault("refresh", 0)
    return TalosGpuApp(target, clock=fixed_clock, stable_output=True, initial_report=report, **options)


def scenario_app(scenario_report: Callable[[str], Any], scenario: str, **options: Any) -> TalosGpuApp:
    swept = scenario_report(scenario)
    return snapshot_app(swept.report, swept.target, **options)


async def settle(pilot: Pilot) -> None:
    """Let lazily mounted panes and batched log lines reach the screen."""
    await pilot.pause()
    await pilot.pause(0.1)


def test_fresh_node_lands_on_the_root_cause(snap_compare, scenario_report) -> None:
    assert snap_compare(scenario_app(scenario_report, "fresh"), terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_healthy_node_every_stage_passes(snap_compare, scenario_report) -> None:
    app = scenario_app(scenario_report, "healthy")
    assert snap_compare(app, press=["4"], terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_extensions_missing(snap_compare, scenario_report) -> None:
    app = scenario_app(scenario_report, "extensions-missing")
    assert snap_compare(app, press=["2"], terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_mixed_tracks_highlights_the_mismatch(snap_compare, scenario_report) -> None:
    app = scenario_app(scenario_report, "mixed-tracks")
    assert snap_compare(app, press=["2"], terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_modules_not_loaded(snap_compare, scenario_report) -> None:
    app = scenario_app(scenario_report, "modules-not-loaded")
    assert snap_compare(app, press=["3"], terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_nfd_affinity_leaves_the_device_plugin_unscheduled(snap_compare, scenario_report) -> None:
    app = scenario_app(scenario_report, "nfd-affinity")
    assert snap_compare(app, press=["4"], terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_no_runtimeclassname_crashes_the_device_plugin(snap_compare, scenario_report) -> None:
    app = scenario_app(scenario_report, "no-runtimeclassname")
    assert snap_compare(app, press=["4"], terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_runtimeclass_missing(snap_compare, scenario_report) -> None:
    app = scenario_app(scenario_report, "runtimeclass-missing")
    assert snap_compare(app, terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_gpu_not_initialised(snap_compare, scenario_report) -> None:
    app = scenario_app(scenario_report, "gpu-not-initialised")
    assert snap_compare(app, press=["4"], terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_node_notready(snap_compare, scenario_report) -> None:
    app = scenario_app(scenario_report, "node-notready")
    assert snap_compare(app, terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_operator_healthy_on_talos_1_13(snap_compare, scenario_report) -> None:
    """The gpu-operator path: the context bar names it and Talos v1.13.9, the checklist's titles are its own."""
    app = scenario_app(scenario_report, "operator-healthy")
    assert snap_compare(app, press=["4"], terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_old_path_leftovers_on_talos_1_13(snap_compare, scenario_report) -> None:
    app = scenario_app(scenario_report, "old-path-leftovers")
    assert snap_compare(app, terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_read_only_hides_actions(snap_compare, scenario_report) -> None:
    app = scenario_app(scenario_report, "fresh", read_only=True)
    assert snap_compare(app, terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_small_terminal_80x24(snap_compare, scenario_report) -> None:
    assert snap_compare(scenario_app(scenario_report, "fresh"), terminal_size=(80, 24), run_before=settle)


def test_help_lists_every_key(snap_compare, scenario_report) -> None:
    app = scenario_app(scenario_report, "healthy")
    assert snap_compare(app, press=["question_mark"], terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_filter_narrows_the_evidence_and_the_log(snap_compare, scenario_report) -> None:
    app = scenario_app(scenario_report, "fresh")
    assert snap_compare(app, press=["slash", *"schematic"], terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_node_rebooting(snap_compare, lab_run) -> None:
    run: LabRun = lab_run("healthy", {"reboot_s": 1000.0})
    with run.mutate() as state:  # in the middle of a reboot: the Talos API is back, the node is booting
        state["talos"]["reboot"] = {"reason": "config", "started": time.time() - 600}
    report = stable_report(run.sweep())
    assert snap_compare(snapshot_app(report, run.target), terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_confirm_modal_for_a_reboot(snap_compare, lab_run) -> None:
    run: LabRun = lab_run("fresh", fixed_path=True)
    app = snapshot_app(stable_report(run.sweep()), run.target)

    async def open_modal(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("a")  # the root cause, extensions, is selected
        await wait_for_confirm_modal(pilot)
        await settle(pilot)

    assert snap_compare(app, terminal_size=SNAPSHOT_SIZE, run_before=open_modal)


def test_an_action_running(snap_compare, lab_run) -> None:
    run: LabRun = lab_run("modules-not-loaded", fixed_path=True)
    # the audit log in the lab's fixed directory: its path is on the screen (and a test writes no real one)
    audit = Path(run.target.talos.talosconfig).parent / "audit.log"
    app = snapshot_app(stable_report(run.sweep()), run.target, audit_path=audit)

    async def start_action(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("a")  # the root cause, kernel-modules
        await wait_for_confirm_modal(pilot)
        with run.mutate() as state:  # from now on every talosctl call hangs: the action stays running
            state["knobs"]["talosctl_latency_ms"] = 600_000
        pilot.app.screen.query_one("#confirm").press()
        main = pilot.app.screen_stack[0]
        assert isinstance(main, MainScreen)
        await wait_until(pilot, lambda: main.action_running and any(
            line.plain.startswith("▸ talosctl") and "patch" in line.plain for line in main.action_log.kept))
        await settle(pilot)

    assert snap_compare(app, terminal_size=SNAPSHOT_SIZE, run_before=start_action)


def test_a_node_wedged_by_the_runbook_patch(snap_compare, lab_run) -> None:
    """cluster, the root cause: the kernel-log lines that say why the boot stops, and the removal."""
    run: LabRun = lab_run("runbook-patch-applied", {"boot_fail_wait_s": 3600.0})
    report = stable_report(run.sweep())
    assert snap_compare(snapshot_app(report, run.target), terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_confirm_modal_for_the_repair_of_a_wedged_node(snap_compare, lab_run) -> None:
    run: LabRun = lab_run("runbook-patch-applied", {"boot_fail_wait_s": 3600.0}, fixed_path=True)
    app = snapshot_app(stable_report(run.sweep()), run.target)

    async def open_modal(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("a")  # the root cause, cluster, is selected
        await wait_for_confirm_modal(pilot)
        await settle(pilot)

    assert snap_compare(app, terminal_size=SNAPSHOT_SIZE, run_before=open_modal)
