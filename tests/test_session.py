"""checks.session: the rules that follow an action, shared by the TUI and `talos-gpu enable`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from checks.engine import run_sweep
from checks.model import ProbeResult, Report, StageResult, Status
from checks.parsers.talos import MachineStatus
from checks.session import (
    REBOOTING_STAGES,
    EnableState,
    Settling,
    action_settled,
    acts_on,
    rebooting_reason,
)
from tui.demo import demo_target


def _report(statuses: dict[str, Status], facts: dict[str, ProbeResult] | None = None,
            blocked_by: dict[str, str] | None = None) -> Report:
    stages = [StageResult(sid, sid, status, f"{sid} {status.value}", blocked_by=(blocked_by or {}).get(sid))
              for sid, status in statuses.items()]
    return Report("10.5.0.2", None, stages, None, facts or {})


def _machine(stage: str) -> dict[str, ProbeResult]:
    return {"machine_status": ProbeResult("machine_status", "talosctl get machinestatus",
                                          value=MachineStatus(stage, stage == "running", ()))}


def test_a_healthy_lab_node_is_settled_and_not_rebooting(lab: Any) -> None:
    handle = lab("healthy")
    target = demo_target(dict(handle.env), Path(handle.state_dir))
    report = anyio.run(lambda: run_sweep(target, timeout=30))
    assert action_settled(report, "extensions")
    assert rebooting_reason(report) is None
    assert report.facts["machine_status"].value.stage == "running"


def test_settled_needs_the_stage_and_the_cluster() -> None:
    assert action_settled(_report({"cluster": Status.PASS, "extensions": Status.PASS}), "extensions")
    assert not action_settled(_report({"cluster": Status.PASS, "extensions": Status.FAIL}), "extensions")
    assert not action_settled(_report({"cluster": Status.UNKNOWN, "extensions": Status.PASS}), "extensions")
    assert action_settled(_report({"cluster": Status.PASS}), "no-such-stage")  # nothing to wait for


def test_settling_is_over_when_settled_or_when_time_is_up() -> None:
    now = [100.0]
    settling = Settling.after("modules", limit=10.0, clock=lambda: now[0])
    failing = _report({"cluster": Status.PASS, "modules": Status.FAIL})
    assert not settling.over(failing, clock=lambda: now[0])
    assert settling.over(_report({"cluster": Status.PASS, "modules": Status.PASS}), clock=lambda: now[0])
    now[0] = 110.0
    assert settling.over(failing, clock=lambda: now[0])


def test_rebooting_from_the_machine_status_or_a_silent_api_during_a_rebooting_action() -> None:
    for stage in REBOOTING_STAGES:
        assert rebooting_reason(_report({}, _machine(stage))) == f"machinestatus stage {stage}"
    assert rebooting_reason(_report({}, _machine("running"))) is None
    silent = {**_machine("running"), "talos_version": ProbeResult("talos_version", "talosctl version", error="EOF")}
    assert rebooting_reason(_report({}, silent)) is None
    assert rebooting_reason(_report({}, silent), action_stage="extensions", action_reboots=True) == \
        "the Talos API does not answer while the extensions action runs"
    stuck = {**_machine("booting"), "boot_failure": ProbeResult("boot_failure", "talosctl dmesg", value="userSetup")}
    assert rebooting_reason(_report({}, stuck)) is None  # a boot that fails the same way each time
    assert rebooting_reason(None) is None


def test_the_enable_walk_takes_each_failing_stage_once_in_order() -> None:
    order = ("extensions", "modules", "runtime-class", "gpu-workload")
    report = _report({"extensions": Status.PASS, "modules": Status.FAIL, "runtime-class": Status.BLOCKED,
                      "gpu-workload": Status.FAIL}, blocked_by={"runtime-class": "modules"})
    state = EnableState(report)
    assert state.next_stage(order) == "modules"
    assert state.hopeless_block("runtime-class", order) is None
    state.attempted.add("modules")
    assert state.next_stage(order) == "runtime-class"
    state.declined.add("modules")
    assert state.hopeless_block("runtime-class", order) == \
        "stage runtime-class is blocked by modules, whose action was declined"
    assert state.hopeless_block("runtime-class", ("runtime-class",)) == \
        "stage runtime-class is blocked by modules, which has no action"
    state.attempted.add("runtime-class")
    assert state.next_stage(order) is None  # the test pod is never picked by the walk
    assert [s for s in Status if acts_on(s)] == [Status.FAIL, Status.BLOCKED, Status.UNKNOWN]
