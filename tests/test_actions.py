"""checks.actions against the real lab: plans, runs, re-checks, cancellation, files, audit."""

from __future__ import annotations

import dataclasses
import json
import stat
import time
from pathlib import Path

import anyio
import pytest
import yaml

from checks.actions import (
    ActionEvent,
    ActionResult,
    AuditLog,
    Plan,
    PlanError,
    plan_action,
    run_action,
)
from checks.audit import read_audit
from checks.engine import Target
from checks.infra import seed_files
from checks.paths import DEVICE_PLUGIN
from checks.redact import REDACTOR
from checks.schematic import nvidia_schematic
from lab.factory import Factory
from lab.faults import set_fault
from lab.runtime import LabHandle
from lab.talosctl import image_not_found
from tests.test_actions_support import (
    group_gone,
    lab_fixture,  # noqa: F401 - the module-scoped `lab` fixture
    make_target,
    recheck_until,
    state_bytes,
    sweep,
    tool_processes,
    use_scenario,
)

SEED_STAGES = DEVICE_PLUGIN.stages
ACTION_STAGES = DEVICE_PLUGIN.action_stages

SCHEMATIC_YAML, SCHEMATIC_ID = nvidia_schematic("production")
IMAGE = f"factory.talos.dev/installer/{SCHEMATIC_ID}:v1.11.5"
PLANTED = "actions-SECRET-MARKER-7c6b5a4d3e"


def _run(plan: Plan, target: Target, events: list[ActionEvent], audit: AuditLog | None = None,
         **kwargs: object) -> ActionResult:
    return anyio.run(lambda: run_action(plan, target, events.append, audit=audit, **kwargs))  # type: ignore[arg-type]


def _plan(stage: str, target: Target, report: object = None, **kwargs: object) -> Plan:
    return anyio.run(lambda: plan_action(stage, target, report, **kwargs))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- each action fixes its stage


@pytest.mark.parametrize(("scenario", "stage"), [
    ("extensions-missing", "extensions"),
    ("modules-not-loaded", "kernel-modules"),
    ("runbook-patch-applied", "cluster"),
    ("runtimeclass-missing", "runtimeclass"),
    ("plugin-missing", "device-plugin"),
    ("nfd-affinity", "device-plugin"),
])
def test_each_action_makes_its_stage_pass(lab: LabHandle, tmp_path: Path, scenario: str, stage: str) -> None:
    use_scenario(lab, scenario)
    target = make_target(lab, tmp_path)
    before = sweep(target, stage)
    assert not before.stage(stage).status.ok, before.stage(stage)
    plan = _plan(stage, target, before)
    events: list[ActionEvent] = []
    audit = AuditLog(tmp_path / "audit.log")
    result = _run(plan, target, events, audit)
    assert result.status == "ok", (result, [e.text for e in events][-8:])
    after = anyio.run(lambda: recheck_until(target, stage))
    assert after.stage(stage).status.ok, after.stage(stage)
    for change in plan.files:  # missing files were written with the seed's content, mode 0644
        assert change.state == "create"
        assert change.path.read_text() == seed_files(target.profile)[change.relative]
        assert stat.S_IMODE(change.path.stat().st_mode) == 0o644
    kinds = {r["kind"] for r in read_audit(audit.path)}
    assert {"plan", "step", "result"} <= kinds


# --------------------------------------------------------------------------- plans


def test_every_plan_on_every_scenario_passes_the_boot_guard(lab: LabHandle, tmp_path: Path) -> None:
    """No code path writes or applies a machine.files entry Talos refuses at boot: every action's plan on
    every scenario, its files and its patch commands, goes through the guard."""
    from checks.actions.execute import guard_patch_argv
    from checks.patch_guard import check_patch
    from lab.scenarios import SCENARIOS

    planned = 0
    for scenario in SCENARIOS:
        use_scenario(lab, scenario, knobs={"boot_fail_wait_s": 300.0})
        target = make_target(lab, tmp_path / scenario)
        report = sweep(target)
        for stage in ACTION_STAGES:
            try:
                plan = _plan(stage, target, report)
            except PlanError as exc:
                assert "outside of /var" not in str(exc) or "refused" in str(exc), exc
                continue
            planned += 1
            for change in plan.files:
                assert check_patch(change.content) == [] or not change.relative.startswith("talos/"), change
            written: dict[str, str] = {}
            for step in plan.steps:
                if step.kind == "write":
                    written["@" + step.param("path")] = step.param("content")
                if step.kind == "write" and step.param("relative").startswith("talos/patches/"):
                    assert check_patch(step.param("content")) == [], (scenario, stage, step)
                if step.kind == "command" and "patch" in step.argv and "--dry-run" not in step.argv:
                    value = step.argv[step.argv.index("--patch") + 1]
                    if value in written:  # the plan writes it first: the content it writes is what is applied
                        assert check_patch(written[value]) == [], (scenario, stage, step.argv)
                    else:
                        assert guard_patch_argv(step.argv) == "", (scenario, stage, step.argv)
                assert "nvidia-no-cgroups.yaml" not in " ".join(step.argv), (scenario, stage, step)
    assert planned >= len(SCENARIOS)
    use_scenario(lab, "runbook-patch-applied", knobs={"boot_fail_wait_s": 300.0})
    wedged = _plan("cluster", make_target(lab, tmp_path / "wedged"))
    assert wedged.steps[0].argv[-2:] == ("--patch", '[{"op": "remove", "path": "/machine/files/0"}]')
    assert wedged.reboots and wedged.confirm_word == "10.5.0.2"  # no Kubernetes Node to name: the API is down
    assert "runbook's step 4.1" in wedged.preview and "outside of /var" in wedged.preview
    assert "no-cgroups = true" not in wedged.preview  # only op and path are read from the machine config


def test_a_refused_patch_is_never_shown_written_or_applied(lab: LabHandle, tmp_path: Path) -> None:
    """The kernel-modules action uses the infra repo's file as it is: one that holds a create outside /var
    is refused at planning, and again at run time if it changed after the plan."""
    use_scenario(lab, "modules-not-loaded")
    target = make_target(lab, tmp_path)
    patch = tmp_path / "talos/patches/nvidia-oss-modules.yaml"
    patch.parent.mkdir(parents=True)
    patch.write_text(seed_files(target.profile)["talos/patches/nvidia-oss-modules.yaml"]
                     + "  files:\n    - path: /etc/x.conf\n      op: create\n      content: x\n")
    before = state_bytes(lab)
    with pytest.raises(PlanError, match=r"refused: talos/patches/nvidia-oss-modules.yaml line \d+: machine.files: "
                                        r"op create is allowed only under /var"):
        _plan("kernel-modules", target)
    patch.write_text(seed_files(target.profile)["talos/patches/nvidia-oss-modules.yaml"])
    plan = _plan("kernel-modules", target)
    patch.write_text(patch.read_text() + "  files:\n    - path: /etc/x.conf\n      op: create\n")
    events: list[ActionEvent] = []
    result = _run(plan, target, events)
    assert result.status == "failed" and "op create is allowed only under /var" in result.reason
    assert result.node_state.startswith("the node is unchanged")
    assert state_bytes(lab) == before


def test_extensions_plan_is_the_exact_upgrade(lab: LabHandle, tmp_path: Path) -> None:
    use_scenario(lab, "extensions-missing")
    target = make_target(lab, tmp_path)
    report = sweep(target, "cluster")
    plan = _plan("extensions", target, report)
    assert plan.reboots and plan.confirm_word == "gpu-node-1"
    assert plan.schematic_id == SCHEMATIC_ID and plan.installer_image == IMAGE
    assert [s.kind for s in plan.steps] == ["command", "follow-reboot"]
    upgrade = plan.steps[0]
    assert list(upgrade.argv) == [target.talosctl_bin, "--talosconfig", str(lab.talosconfig), "--context", "lab",
                                  "--nodes", "10.5.0.2", "upgrade", "--image", IMAGE]
    assert plan.commands()[0] == (f"talosctl --talosconfig {lab.talosconfig} --context lab --nodes 10.5.0.2 "
                                  f"upgrade --image {IMAGE}")
    assert SCHEMATIC_YAML in plan.preview and SCHEMATIC_ID in plan.preview and IMAGE in plan.preview
    # the profile's talos_version wins over the node's
    pinned = _plan("extensions", make_target(lab, tmp_path, talos_version="v1.11.4"), report)
    assert pinned.installer_image == f"factory.talos.dev/installer/{SCHEMATIC_ID}:v1.11.4"


def test_extensions_with_factory_registers_then_upgrades(lab: LabHandle, tmp_path: Path) -> None:
    use_scenario(lab, "extensions-missing")
    target = make_target(lab, tmp_path, track="lts")
    _lts_yaml, lts_id = nvidia_schematic("lts")
    with Factory(lab.state_dir) as factory:
        plan = _plan("extensions", target, None, factory=factory.url)
        assert [s.kind for s in plan.steps] == ["register-schematic", "command", "follow-reboot"]
        assert f"POST {factory.url}/schematics (expect id {lts_id})" in plan.commands()[0]
        assert plan.confirm_word == "10.5.0.2"  # no report: the node address
        events: list[ActionEvent] = []
        result = _run(dataclasses.replace(plan, steps=plan.steps[:1]), target, events)  # only the registration
        assert result.ok, result
        assert any(f"schematic {lts_id} registered (HTTP 201)" in e.text for e in events)
        assert json.loads(state_bytes(lab))["factory"][lts_id] == [
            "nvidia-container-toolkit-lts", "nvidia-open-gpu-kernel-modules-lts"]
    # a factory that cannot be reached stops the action before the upgrade
    down = _plan("extensions", target, None, factory="http://127.0.0.1:9")
    before = state_bytes(lab)
    events = []
    result = _run(down, target, events)
    assert result.status == "failed" and "cannot reach the Image Factory" in result.reason
    assert [e.text for e in events if e.kind == "step"] == [down.steps[0].shown]
    assert state_bytes(lab) == before


def test_stages_without_action_raise(lab: LabHandle, tmp_path: Path) -> None:
    target = make_target(lab, tmp_path)
    for stage in ("cluster", "gpu-resources"):
        with pytest.raises(ValueError, match=f"stage {stage} has no action"):
            _plan(stage, target)
    with pytest.raises(PlanError, match="unknown stage"):
        _plan("nonsense", target)
    assert ACTION_STAGES == tuple(s.id for s in SEED_STAGES if s.action)


def test_planning_changes_nothing_and_previews_the_dry_run(lab: LabHandle, tmp_path: Path) -> None:
    use_scenario(lab, "fresh")
    target = make_target(lab, tmp_path)
    before = state_bytes(lab)
    # cluster and container-runtime act only on machine.files entries Talos refuses at boot: none here
    for stage in ("cluster", "container-runtime"):
        with pytest.raises(PlanError, match=f"stage {stage} has no action"):
            _plan(stage, target)
    plans = {stage: _plan(stage, target) for stage in ACTION_STAGES if stage not in ("cluster", "container-runtime")}
    assert state_bytes(lab) == before
    assert list(tmp_path.iterdir()) == []  # the infra repo is untouched
    modules = plans["kernel-modules"]
    assert "Dry run summary:" in modules.preview and "+            - name: nvidia_uvm" in modules.preview
    assert modules.steps[-1].argv[-2:] == ("--patch", f"@{tmp_path / 'talos/patches/nvidia-oss-modules.yaml'}")
    assert [s.kind for s in modules.steps] == ["write", "command"] and not modules.reboots
    assert any("ArgoCD" in w for w in plans["runtimeclass"].warnings)
    plugin = plans["device-plugin"]
    assert [s.argv[-6:] for s in plugin.steps if s.kind == "command"][-1] == (
        "nvidia-device-plugin", "nvdp/nvidia-device-plugin", "-n", "kube-system", "-f",
        str(tmp_path / "k8s/nvidia-device-plugin/values.yaml"))
    # `fresh` has no nvdp repo: it is added; with the repo configured, it is not
    assert any("repo add nvdp https://nvidia.github.io/k8s-device-plugin" in c for c in plugin.commands())
    use_scenario(lab, "plugin-missing")
    assert not any("repo add" in c for c in _plan("device-plugin", target).commands())
    assert [s.kind for s in plans["gpu-workload"].steps] == ["test-pod"]


def test_a_differing_file_is_never_overwritten_and_its_diff_is_shown(lab: LabHandle, tmp_path: Path) -> None:
    REDACTOR.add([PLANTED])
    use_scenario(lab, "runtimeclass-missing")
    target = make_target(lab, tmp_path)
    manifest = tmp_path / "k8s/manifests/runtimeclass-nvidia.yaml"
    manifest.parent.mkdir(parents=True)
    mine = (f"# ours, owned by ArgoCD (ticket {PLANTED})\napiVersion: node.k8s.io/v1\nkind: RuntimeClass\n"
            "metadata:\n  name: nvidia\n  labels: {team: gpu}\nhandler: nvidia\n")
    manifest.write_text(mine)
    before = manifest.read_bytes()
    plan = _plan("runtimeclass", target)
    (change,) = plan.files
    assert change.state == "differs"
    assert "-  labels: {team: gpu}" in change.diff and "+# The RuntimeClass GPU pods ask for" in change.diff
    assert "write" not in [s.kind for s in plan.steps]
    audit = AuditLog(tmp_path / "audit.log")
    events: list[ActionEvent] = []
    result = _run(plan, target, events, audit)
    assert result.ok, result
    assert manifest.read_bytes() == before  # used as it is
    rc = anyio.run(lambda: recheck_until(target, "runtimeclass")).stage("runtimeclass")
    assert rc.status.ok
    # the audit log has the plan (with the diff), the steps, the output lines and the result, redacted
    records = read_audit(audit.path)
    assert [r["kind"] for r in records][0] == "plan" and records[-1]["kind"] == "result"
    assert {"plan", "step", "line", "result"} <= {r["kind"] for r in records}
    assert "labels: {team: gpu}" in records[0]["text"]
    raw = audit.path.read_text()
    assert PLANTED not in raw and "‹redacted›" in raw


def test_a_failing_helm_is_quoted_and_the_secret_stays_out(lab: LabHandle, tmp_path: Path) -> None:
    REDACTOR.add([PLANTED])
    error = f"Error: INSTALLATION FAILED: cannot re-use a name that is still in use (token {PLANTED})"
    use_scenario(lab, "plugin-missing", faults={"helm_exit": {"only": "upgrade", "code": 1, "stderr": error}})
    target = make_target(lab, tmp_path)
    plan = _plan("device-plugin", target)
    audit = AuditLog(tmp_path / "audit.log")
    events: list[ActionEvent] = []
    result = _run(plan, target, events, audit)
    assert result.status == "failed"
    assert "INSTALLATION FAILED: cannot re-use a name" in result.reason
    assert "helm" in result.node_state.lower()
    assert PLANTED not in result.reason
    assert all(PLANTED not in e.text for e in events)
    assert PLANTED not in audit.path.read_text()


def test_upgrade_to_a_missing_image_quotes_the_not_found_line(lab: LabHandle, tmp_path: Path) -> None:
    missing = f"factory.talos.dev/installer/{SCHEMATIC_ID}:v9.9.9"
    error = f"1 error occurred:\n\t* 10.5.0.2: {image_not_found('10.5.0.2', missing)}\n"
    use_scenario(lab, "extensions-missing", faults={"talosctl_exit": {"only": "upgrade", "code": 1, "stderr": error}})
    target = make_target(lab, tmp_path, talos_version="v9.9.9")
    plan = _plan("extensions", target)
    events: list[ActionEvent] = []
    started = time.monotonic()
    result = _run(plan, target, events)
    assert result.status == "failed", result
    assert result.reason.startswith("talosctl upgrade --image failed: exit 1: failed to pull image")
    assert result.reason.endswith(f"{missing}: not found")
    assert result.node_state == "the node did not start the upgrade: it still runs its current image"
    assert time.monotonic() - started < 10
    assert "follow" not in [e.text for e in events if e.kind == "step"][-1]  # stopped at the upgrade


def test_read_only_refuses_without_doing_anything(lab: LabHandle, tmp_path: Path) -> None:
    use_scenario(lab, "runtimeclass-missing")
    target = make_target(lab, tmp_path)
    plan = _plan("runtimeclass", target)
    before = state_bytes(lab)
    events: list[ActionEvent] = []
    result = _run(plan, target, events, read_only=True)
    assert result.status == "failed" and result.reason.startswith("read-only mode")
    assert events == [] and state_bytes(lab) == before and list(tmp_path.iterdir()) == []


def test_test_pod_action_runs_and_leaves_no_pod(lab: LabHandle, tmp_path: Path) -> None:
    use_scenario(lab, "healthy")
    target = make_target(lab, tmp_path)
    plan = _plan("gpu-workload", target)
    events: list[ActionEvent] = []
    result = _run(plan, target, events)
    assert result.ok, result
    assert "NVIDIA H100 NVL" in result.reason
    assert any("NVIDIA-SMI" in e.text for e in events if e.kind == "line")
    pods = json.loads((lab.state_dir / "state.json").read_text())["kube"]["pods"]
    assert not [p for p in pods if p["metadata"]["name"].startswith("talos-gpu-test-")]


# --------------------------------------------------------------------------- hangs, timeouts, cancellation


def _cancel_when(plan: Plan, target: Target, lab: LabHandle, events: list[ActionEvent], audit: AuditLog,
                 predicate: object) -> dict[int, str]:
    """Run the plan, cancel it once `predicate(events)` holds; returns the tool processes seen running."""
    seen: dict[int, str] = {}

    async def main() -> None:
        with anyio.fail_after(30), anyio.CancelScope() as scope:
            async def watch() -> None:
                while not predicate(events):  # type: ignore[operator]
                    await anyio.sleep(0.05)
                await anyio.sleep(0.3)
                seen.update(tool_processes(lab))
                scope.cancel()

            async with anyio.create_task_group() as group:
                group.start_soon(watch)
                await run_action(plan, target, events.append, audit=audit)
                pytest.fail("the action finished before it was cancelled")
        assert scope.cancelled_caught

    anyio.run(main)
    return seen


def test_cancelling_an_upgrade_kills_talosctl_and_records_it(lab: LabHandle, tmp_path: Path) -> None:
    use_scenario(lab, "extensions-missing", knobs={"reboot_s": 60.0})  # talosctl upgrade waits for the reboot
    target = make_target(lab, tmp_path)
    plan = _plan("extensions", target)
    events: list[ActionEvent] = []
    audit = AuditLog(tmp_path / "audit.log")
    seen = _cancel_when(plan, target, lab, events, audit,
                        lambda evs: any("waiting for actor ID" in e.text for e in evs))
    upgrades = [pid for pid, cmd in seen.items() if " upgrade " in f"{cmd} "]
    assert upgrades, seen
    for pid in upgrades:
        assert group_gone(pid)  # the child led its own process group; all of it is gone
    assert tool_processes(lab) == {}
    last = read_audit(audit.path)[-1]
    assert last["kind"] == "result" and last["text"].startswith("cancelled during: talosctl")
    assert "the upgrade may still be running on the node; it reboots by itself" in last["text"]
    assert events[-1].kind == "phase" and events[-1].text.startswith("cancelled — the upgrade may still be running")


def test_cancelling_a_helm_install_kills_helm(lab: LabHandle, tmp_path: Path) -> None:
    use_scenario(lab, "plugin-missing", faults={"helm_hang": {"only": "upgrade"}})
    target = make_target(lab, tmp_path)
    plan = _plan("device-plugin", target)
    events: list[ActionEvent] = []
    audit = AuditLog(tmp_path / "audit.log")
    seen = _cancel_when(plan, target, lab, events, audit,
                        lambda evs: any(e.kind == "step" and "upgrade --install" in e.text for e in evs))
    helms = [pid for pid, cmd in seen.items() if "/bin/helm" in cmd]
    assert helms, seen
    assert all(group_gone(pid) for pid in helms)
    assert tool_processes(lab) == {}
    assert read_audit(audit.path)[-1]["text"].startswith("cancelled during: helm")


def test_a_hung_upgrade_on_a_node_that_did_not_upgrade_fails_with_the_hint(lab: LabHandle, tmp_path: Path) -> None:
    use_scenario(lab, "extensions-missing", faults={"talosctl_hang": {"only": "upgrade"}})
    target = make_target(lab, tmp_path)
    plan = _plan("extensions", target)
    events: list[ActionEvent] = []
    result = _run(plan, target, events, upgrade_timeout=1.0, timeout=30.0)
    assert result.status == "failed", result
    assert "talosctl upgrade did not finish" in result.reason and SCHEMATIC_ID in result.reason
    assert any("did not return within" in e.text for e in events if e.kind == "phase")
    assert tool_processes(lab) == {}


def test_a_hung_upgrade_carries_on_when_the_node_comes_back_upgraded(lab: LabHandle, tmp_path: Path) -> None:
    use_scenario(lab, "extensions-missing")
    target = make_target(lab, tmp_path)
    plan = _plan("extensions", target)
    # the upgrade request reaches the node, but our talosctl then hangs (as at "waiting for actor ID")
    from checks.runner import run_command

    sent = anyio.run(lambda: run_command(target.talosctl().argv("upgrade", "--image", IMAGE, "--wait=false"),
                                         timeout=30, env=target.env))
    assert sent.ok, sent.failure_reason()
    set_fault(lab.state_dir, "talosctl_hang", {"only": "upgrade"})
    events: list[ActionEvent] = []
    result = _run(plan, target, events, upgrade_timeout=0.5, timeout=30.0)
    assert result.ok, result
    assert "did not return, but the node is back with schematic" in result.reason
    phases = [e.text for e in events if e.kind == "phase"]
    back = phases.index("node back, Talos v1.11.5")
    assert {"node upgrading", "node rebooting", "node booting"} & set(phases[:back]), phases


def test_the_overall_timeout_ends_the_action(lab: LabHandle, tmp_path: Path) -> None:
    use_scenario(lab, "plugin-missing", faults={"helm_hang": {"only": "upgrade"}})
    target = make_target(lab, tmp_path)
    plan = _plan("device-plugin", target)
    events: list[ActionEvent] = []
    started = time.monotonic()
    result = _run(plan, target, events, timeout=2.0)
    assert result.status == "timed-out" and "within 2s" in result.reason
    assert time.monotonic() - started < 6
    assert tool_processes(lab) == {}


def test_plan_files_in_a_yaml_profile_relative_repo(lab: LabHandle, tmp_path: Path) -> None:
    """The preview of a missing patch is rendered from a temporary copy that is removed again."""
    use_scenario(lab, "modules-not-loaded")
    target = make_target(lab, tmp_path / "repo")
    plan = _plan("kernel-modules", target)
    assert not (tmp_path / "repo").exists()
    assert yaml.safe_load(plan.files[0].content)["machine"]["sysctls"] == {"net.core.bpf_jit_harden": 1}
