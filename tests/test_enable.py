"""`talos-gpu enable` as a real subprocess against the real lab."""

from __future__ import annotations

import argparse
import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checks.audit import read_audit
from checks.schematic import nvidia_schematic
from lab.runtime import LabHandle
from tests.paths import REPO
from tests.test_actions_support import (
    lab_env,
    lab_fixture,  # noqa: F401 - the module-scoped `lab` fixture
    make_target,
    state_bytes,
    tool_processes,
    tree_snapshot,
    use_scenario,
)

_, SCHEMATIC_ID = nvidia_schematic("production")


def _setup(lab: LabHandle, tmp_path: Path) -> tuple[list[str], dict[str, str], Path]:
    infra = tmp_path / "infra"
    infra.mkdir()
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"infra_repo: {infra}\n")
    env = {**lab_env(lab), "XDG_STATE_HOME": str(tmp_path / "state"), "COLUMNS": "120"}
    return [sys.executable, "-m", "tui.cli", "enable", "--profile", str(profile)], env, infra


def _audit_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "talos-gpu" / "audit.log"


def _test_pods(lab: LabHandle) -> list[str]:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(lab.kubeconfig))
    try:
        pods = client.CoreV1Api(api).list_pod_for_all_namespaces(_request_timeout=10)
    finally:
        api.close()
    return [p.metadata.name for p in pods.items if p.metadata.name.startswith("talos-gpu-test-")]


def test_enable_yes_walks_fresh_to_every_stage_passing(lab: LabHandle, tmp_path: Path) -> None:
    use_scenario(lab, "fresh")
    argv, env, infra = _setup(lab, tmp_path)
    started = time.monotonic()
    done = subprocess.run([*argv, "--yes"], env=env, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=240)
    wall = time.monotonic() - started
    print(done.stdout)
    print(f"(test wall {wall:.1f}s)")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    out = done.stdout
    for stage in ("extensions", "kernel-modules", "runtimeclass", "device-plugin", "gpu-workload"):
        assert f"✔ {stage} ok in" in out, stage
    # the container runtime comes with the toolkit extension: nothing to run for it, and never the runbook's
    # no-cgroups patch (step 4.1), whose reason is said
    assert "✔ container-runtime ok in" not in out and "nvidia-no-cgroups.yaml" in out
    assert "runbook's step 4.1 (talos/patches/nvidia-no-cgroups.yaml) is not followed" in out
    final = out[out.index("Final state:"):]
    assert final.count("✔ PASS") == 8 and "FAIL" not in final
    assert "nvidia-smi in a pod sees" in final
    assert "enable finished in" in out
    assert f"upgrade --image factory.talos.dev/installer/{SCHEMATIC_ID}:v1.11.5" in out
    assert _test_pods(lab) == []
    assert sorted(str(p.relative_to(infra)) for p in infra.rglob("*.yaml")) == [
        "k8s/manifests/runtimeclass-nvidia.yaml", "k8s/nvidia-device-plugin/values.yaml",
        "talos/patches/nvidia-oss-modules.yaml"]
    records = read_audit(_audit_path(tmp_path))
    results = [(r["stage"], r["text"].split(":")[0]) for r in records if r["kind"] == "result"]
    assert results == [("extensions", "ok"), ("kernel-modules", "ok"), ("runtimeclass", "ok"),
                       ("device-plugin", "ok"), ("gpu-workload", "ok")]
    plans = "\n".join(r["text"] for r in records if r["kind"] == "plan")
    assert "/machine/files" not in plans and "files:" not in plans  # no machine.files entry ever applied
    token = lab.api_token
    assert token not in out and token not in _audit_path(tmp_path).read_text()


def test_enable_yes_repairs_a_node_wedged_by_the_runbook_patch(lab: LabHandle, tmp_path: Path) -> None:
    """The runbook's step 4.1 applied: the node loops in writeUserFiles. enable removes the refused entry
    (a JSON patch, shown first), follows the reboot, and then reaches every stage passing."""
    use_scenario(lab, "runbook-patch-applied", knobs={"boot_fail_wait_s": 300.0})
    argv, env, infra = _setup(lab, tmp_path)
    done = subprocess.run([*argv, "--yes"], env=env, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=240)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr
    assert "Root cause: cluster — the node's boot stops in writeUserFiles: create operation not allowed " \
           'outside of /var: "/etc/nvidia-container-runtime/config.toml"' in " ".join(out.split())
    shown = out.index("━━ cluster — Remove the machine.files entries Talos refuses at boot")
    ran = out.index("▶ talosctl")
    assert shown < ran  # shown first
    assert """patch mc --patch '[{"op": "remove", "path": "/machine/files/0"}]'""" in out[shown:ran]
    assert "◆ node rebooting" in out and "✔ cluster ok in" in out
    final = out[out.index("Final state:"):]
    assert "FAIL" not in final and final.count("✔ PASS") == 8
    records = read_audit(_audit_path(tmp_path))
    results = [(r["stage"], r["text"].split(":")[0]) for r in records if r["kind"] == "result"]
    assert results[0] == ("cluster", "ok") and results[-1] == ("gpu-workload", "ok")
    assert "no-cgroups = true" not in out and "no-cgroups = true" not in _audit_path(tmp_path).read_text()


def test_the_runbook_patch_applied_by_hand_is_diagnosed_and_repaired(lab: LabHandle, tmp_path: Path) -> None:
    """Done when (issue 12): the runbook's patch applied with the lab's own `talosctl patch mc` wedges the
    node; `check --json` names it with `outside of /var` in the evidence; `enable --yes` brings it back."""
    from lab.scenarios import RUNBOOK_PATCH

    use_scenario(lab, "healthy", knobs={"boot_fail_wait_s": 300.0})
    argv, env, infra = _setup(lab, tmp_path)
    patch = tmp_path / "nvidia-no-cgroups.yaml"
    patch.write_text(RUNBOOK_PATCH)
    applied = subprocess.run(["talosctl", "patch", "mc", "--patch", f"@{patch}"], env=env, capture_output=True,
                             text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert applied.returncode == 0 and "with a reboot" in applied.stderr
    check = [*argv[:3], "check", *argv[4:], "--json"]
    deadline = time.monotonic() + 30
    while True:  # the reboot takes a moment before the boot stops in writeUserFiles
        checked = subprocess.run(check, env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
                                 stdin=subprocess.DEVNULL)
        report = json.loads(checked.stdout)
        stuck = [s for s in report["stages"] if s["id"] in ("cluster", "container-runtime")
                 and any("outside of /var" in line for line in s["evidence"])]
        if stuck or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert checked.returncode == 1 and stuck, checked.stdout[-2000:]
    assert report["root_cause"]["stage"] in ("cluster", "container-runtime")
    done = subprocess.run([*argv, "--yes"], env=env, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    final = done.stdout[done.stdout.index("Final state:"):]
    assert "FAIL" not in final and final.count("✔ PASS") == 8


def test_dry_run_changes_nothing_and_prints_every_plan(lab: LabHandle, tmp_path: Path) -> None:
    use_scenario(lab, "fresh")
    argv, env, infra = _setup(lab, tmp_path)
    (infra / "k8s/manifests").mkdir(parents=True)
    (infra / "k8s/manifests/runtimeclass-nvidia.yaml").write_text(
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: nvidia\nhandler: nvidia-legacy\n")
    before_state, before_repo = state_bytes(lab), tree_snapshot(infra)
    done = subprocess.run([*argv, "--dry-run"], env=env, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr  # the stages still fail: nothing was changed
    assert state_bytes(lab) == before_state
    assert tree_snapshot(infra) == before_repo
    assert not _audit_path(tmp_path).exists()
    assert f"schematic id:    {SCHEMATIC_ID}" in out
    assert f"--nodes 10.5.0.2 upgrade --image factory.talos.dev/installer/{SCHEMATIC_ID}:v1.11.5" in out
    assert f"patch mc --patch @{infra}/talos/patches/nvidia-oss-modules.yaml" in out
    assert "Dry run summary:" in out  # the patch mc --dry-run preview
    assert "repo add nvdp https://nvidia.github.io/k8s-device-plugin" in out
    assert f"upgrade --install nvidia-device-plugin nvdp/nvidia-device-plugin -n kube-system -f {infra}" in out
    assert "exists and differs from what the action would write; left as it is" in out and "-handler: nvidia-legacy" in out
    assert "ArgoCD" in out and "runbook's step 4.1" in out
    assert "gpu-workload — Run the GPU test pod" in out
    assert "[y/N]" not in out


def test_without_yes_and_no_terminal_it_refuses_in_one_line(lab: LabHandle, tmp_path: Path) -> None:
    use_scenario(lab, "fresh")
    argv, env, infra = _setup(lab, tmp_path)
    before = state_bytes(lab)
    done = subprocess.run(argv, env=env, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "stdin is not a terminal" in done.stderr and "--yes" in done.stderr
    assert state_bytes(lab) == before and list(infra.iterdir()) == []


def test_sigterm_during_the_upgrade_kills_talosctl_and_keeps_the_audit(lab: LabHandle, tmp_path: Path) -> None:
    use_scenario(lab, "extensions-missing", knobs={"reboot_s": 60.0})
    argv, env, _infra = _setup(lab, tmp_path)
    audit = _audit_path(tmp_path)
    child = subprocess.Popen([*argv, "--yes"], env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        upgrading: list[int] = []
        while time.monotonic() < deadline and not upgrading:
            time.sleep(0.2)
            if any("actor ID" in r["text"] for r in read_audit(audit)):
                upgrading = [pid for pid, cmd in tool_processes(lab).items() if " upgrade " in cmd]
        assert upgrading, "talosctl upgrade never started"
        os.kill(child.pid, signal.SIGTERM)
        out, _ = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 128 + signal.SIGTERM, out
    assert "cancelled by SIGTERM during the extensions action" in out
    assert tool_processes(lab) == {}
    records = read_audit(audit)
    assert [r["kind"] for r in records][:2] == ["plan", "step"]
    assert any(r["kind"] == "line" and "watching nodes" in r["text"] for r in records)
    assert records[-1]["kind"] == "result" and records[-1]["text"].startswith("cancelled during: talosctl")


def test_read_only_allows_only_the_dry_run(lab: LabHandle, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from tui.enable import enable

    use_scenario(lab, "fresh")
    before = state_bytes(lab)
    args = argparse.Namespace(dry_run=False, yes=True, read_only=True, timeout=30.0, factory=None)
    assert enable(args, make_target(lab, tmp_path)) == 2
    assert "--read-only allows only 'enable --dry-run'" in capsys.readouterr().err
    assert state_bytes(lab) == before and list(tmp_path.iterdir()) == []


def test_on_a_terminal_it_asks_and_a_no_stops_what_depends_on_it(lab: LabHandle, tmp_path: Path) -> None:
    use_scenario(lab, "extensions-missing")
    argv, env, infra = _setup(lab, tmp_path)
    before = state_bytes(lab)
    leader, follower = pty.openpty()
    try:
        child = subprocess.Popen(argv, env=env, cwd=REPO, stdin=follower, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        os.close(follower)
        os.write(leader, b"n\n")  # the answer waits in the terminal until enable asks
        out, _ = child.communicate(timeout=60)
    finally:
        os.close(leader)
    assert child.returncode == 1, out
    assert "Run the extensions action (it reboots gpu-node-1)? [y/N]" in out
    assert "skipped extensions: declined" in out
    assert "blocked by extensions, whose action was declined" in out
    assert state_bytes(lab) == before and list(infra.iterdir()) == []
