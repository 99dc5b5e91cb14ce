"""The lab on Talos 1.12 and 1.13: the release knob, the GPU Operator's chart and what its controller does,
seen through the real interfaces (kubectl, the lab's helm and talosctl, `talos-gpu check --json`)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import state as lab_state
from lab.runtime import LabHandle, start_lab
from lab.scenarios import OPERATOR_SCENARIOS, SCENARIOS
from tests.paths import REPO

OPERATOR_VALUES = """\
driver:
  enabled: false
toolkit:
  enabled: false
hostPaths:
  driverInstallDir: /usr/local
daemonsets:
  tolerations:
    - key: nvidia.com/gpu
      operator: Exists
      effect: NoSchedule
    - key: node-role.kubernetes.io/control-plane
      operator: Exists
      effect: NoSchedule
"""


@pytest.fixture(scope="module")
def lab_1_13(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    handle = start_lab("operator-healthy", talos_version="v1.13.9",
                       state_dir=tmp_path_factory.mktemp("lab-1.13"), knobs={"reboot_s": 1.0})
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def lab_1_12(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    handle = start_lab("healthy", talos_version="v1.12.11", state_dir=tmp_path_factory.mktemp("lab-1.12"))
    try:
        yield handle
    finally:
        handle.stop()


def run(handle: LabHandle, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=REPO, env={**os.environ, **handle.env}, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def kubectl_json(handle: LabHandle, *argv: str) -> Any:
    done = run(handle, "kubectl", *argv, "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def check(handle: LabHandle, infra: Path | None = None) -> dict[str, Any]:
    extra = ["--infra-repo", str(infra)] if infra is not None else []
    done = run(handle, sys.executable, "-m", "tui.cli", "check", "--json", *extra)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def stages(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {stage["id"]: stage for stage in report["stages"]}


def wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def policy_state(handle: LabHandle) -> str:
    return str((kubectl_json(handle, "get", "clusterpolicy", "cluster-policy").get("status") or {}).get("state"))


# ---- the release knob -------------------------------------------------------------------------------------


def test_1_12_runs_its_own_kernel_containerd_and_extension_versions(lab_1_12: LabHandle) -> None:
    node = kubectl_json(lab_1_12, "get", "node", "gpu-node-1")["status"]["nodeInfo"]
    assert (node["osImage"], node["kernelVersion"], node["containerRuntimeVersion"]) == \
        ("Talos (v1.12.11)", "6.18.22-talos", "containerd://2.1.6")
    version = run(lab_1_12, "talosctl", "--nodes", "10.5.0.2", "version")
    assert version.returncode == 0 and "Tag:         v1.12.11" in version.stdout, version.stdout
    extensions = run(lab_1_12, "talosctl", "--nodes", "10.5.0.2", "get", "extensions")
    assert "570.211.01-v1.12.11" in extensions.stdout, extensions.stdout


@pytest.mark.parametrize("scenario", sorted(set(SCENARIOS) - set(OPERATOR_SCENARIOS)))
def test_every_lab_scenario_judges_on_1_12_as_on_1_11(lab: Any, lab_1_12: LabHandle, scenario: str) -> None:
    """Every scenario of the device-plugin path, the #14 ones included: each stage's status and the root
    cause on v1.12.11 are those on v1.11.5 (only the versions in the words differ)."""
    old = check(lab(scenario))
    lab_1_12.reset(scenario)
    new = check(lab_1_12)
    assert (old["talos_version"], new["talos_version"]) == ("v1.11.5", "v1.12.11")
    assert (new["root_cause"] or {}).get("stage") == (old["root_cause"] or {}).get("stage"), new["root_cause"]
    assert {s["id"]: s["status"] for s in new["stages"]} == {s["id"]: s["status"] for s in old["stages"]}


@pytest.mark.parametrize("argv, words", [
    (["--talos-version", "v1.10.4"], "unknown Talos version 'v1.10.4'"),
    (["--scenario", "operator-healthy", "--talos-version", "v1.12.11"], "Talos 1.13+ node"),
])
def test_a_release_the_lab_cannot_run_is_one_line_and_exit_2(argv: list[str], words: str) -> None:
    done = subprocess.run([sys.executable, "-m", "tui.cli", "lab", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and words in done.stderr, done.stderr


# ---- the GPU Operator -------------------------------------------------------------------------------------


def test_the_operator_healthy_node_passes_and_serves_what_the_operator_makes(lab_1_13: LabHandle) -> None:
    lab_1_13.reset("operator-healthy")
    report = check(lab_1_13)
    assert (report["path"], report["overall"]) == ("gpu-operator", "pass"), report["root_cause"]
    assert policy_state(lab_1_13) == "ready"
    daemonsets = {ds["metadata"]["name"]: ds for ds in kubectl_json(lab_1_13, "get", "ds", "-n", "gpu-operator")["items"]}
    assert set(daemonsets) == {"gpu-feature-discovery", "nvidia-device-plugin-daemonset", "nvidia-operator-validator",
                               "nvidia-dcgm-exporter"}  # driver and toolkit disabled: the extensions bring them
    assert all(ds["metadata"]["ownerReferences"][0]["kind"] == "ClusterPolicy" for ds in daemonsets.values())
    validator = kubectl_json(lab_1_13, "get", "pods", "-n", "gpu-operator", "-l", "app=nvidia-operator-validator")
    inits = [status["name"] for status in validator["items"][0]["status"]["initContainerStatuses"]]
    assert inits == ["driver-validation", "toolkit-validation", "cuda-validation", "plugin-validation"]
    node = kubectl_json(lab_1_13, "get", "node", "gpu-node-1")
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "2"
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-NVL"
    classes = {rc["metadata"]["name"]: rc for rc in kubectl_json(lab_1_13, "get", "runtimeclass")["items"]}
    assert {name: rc["handler"] for name, rc in classes.items()} == \
        {"nvidia": "nvidia", "nvidia-cdi": "nvidia-cdi", "nvidia-legacy": "nvidia-legacy"}


def test_the_chart_brings_the_clusterpolicy_kind_and_the_operator_adopts_a_hand_made_runtimeclass(
        lab_1_13: LabHandle, tmp_path: Path) -> None:
    lab_1_13.reset("old-path-leftovers")
    # a discovery cache of its own: kubectl's shared one remembers the kind from the test before
    missing = run(lab_1_13, "kubectl", "--cache-dir", str(tmp_path / "kube-cache"), "get", "clusterpolicy")
    assert missing.returncode != 0 and 'the server doesn\'t have a resource type "clusterpolicy"' in missing.stderr
    before = kubectl_json(lab_1_13, "get", "runtimeclass", "nvidia")
    assert not before["metadata"].get("ownerReferences")
    values = tmp_path / "values.yaml"
    values.write_text(OPERATOR_VALUES)
    namespace = tmp_path / "namespace.json"  # `kubectl create ns` sends protobuf, which the lab does not read
    namespace.write_text(json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gpu-operator"}}))
    for argv in (["kubectl", "create", "-f", str(namespace)],
                 ["kubectl", "label", "--overwrite", "ns", "gpu-operator", "pod-security.kubernetes.io/enforce=privileged"],
                 ["helm", "repo", "add", "nvidia", "https://helm.ngc.nvidia.com/nvidia"],
                 ["helm", "upgrade", "--install", "gpu-operator", "nvidia/gpu-operator", "-n", "gpu-operator",
                  "--version", "v26.3.1", "-f", str(values)]):
        done = run(lab_1_13, *argv)
        assert done.returncode == 0, (argv, done.stderr)
    listed = json.loads(run(lab_1_13, "helm", "list", "-A", "-o", "json").stdout)
    assert {(r["name"], r["chart"], r["app_version"]) for r in listed} >= {
        ("gpu-operator", "gpu-operator-v26.3.1", "v26.3.1")}
    assert wait_for(lambda: policy_state(lab_1_13) == "ready"), policy_state(lab_1_13)
    after = kubectl_json(lab_1_13, "get", "runtimeclass", "nvidia")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # updated in place, not made anew
    assert [(o["kind"], o["name"]) for o in after["metadata"]["ownerReferences"]] == [("ClusterPolicy", "cluster-policy")]
    # the old chart is still there: the check names it as a leftover of the device-plugin path
    report = check(lab_1_13)
    assert report["root_cause"]["stage"] == "device-plugin", report["root_cause"]
    assert "Helm release nvidia-device-plugin in kube-system" in report["root_cause"]["summary"]
    # helm uninstall takes the ClusterPolicy; the CRD stays (Helm never deletes a chart's crds/)
    assert run(lab_1_13, "helm", "uninstall", "gpu-operator", "-n", "gpu-operator").returncode == 0
    gone = run(lab_1_13, "kubectl", "get", "clusterpolicy")
    assert gone.returncode == 0 and "No resources found" in gone.stderr, (gone.stdout, gone.stderr)


def test_pod_security_refuses_the_operands_until_the_namespace_is_labelled(lab_1_13: LabHandle) -> None:
    lab_1_13.reset("operator-healthy")
    unlabel = run(lab_1_13, "kubectl", "label", "ns", "gpu-operator", "pod-security.kubernetes.io/enforce-")
    assert unlabel.returncode == 0, unlabel.stderr
    assert wait_for(lambda: policy_state(lab_1_13) == "notReady")
    events = kubectl_json(lab_1_13, "get", "events", "-n", "gpu-operator")["items"]
    refused = [e["message"] for e in events if e["reason"] == "FailedCreate"]
    assert any('violates PodSecurity "baseline:latest": privileged' in m for m in refused), refused
    report = check(lab_1_13)
    cause = report["root_cause"]
    assert cause["stage"] == "device-plugin" and "pod-security.kubernetes.io/enforce=privileged" in cause["summary"]
    argv = shlex.split(cause["remediation"])
    assert argv[:2] == ["kubectl", "label"] and "gpu-operator" in argv
    assert run(lab_1_13, *argv).returncode == 0
    assert wait_for(lambda: check(lab_1_13)["overall"] == "pass")


def test_without_the_driver_the_validator_waits_in_its_first_init_container(lab_1_13: LabHandle) -> None:
    lab_1_13.reset("operator-healthy")
    with lab_state.mutate(lab_1_13.state_dir) as state:
        state["talos"]["config"]["kernel_modules"] = []
    assert wait_for(lambda: policy_state(lab_1_13) == "notReady")
    pods = {p["metadata"]["labels"]["app"]: p
            for p in kubectl_json(lab_1_13, "get", "pods", "-n", "gpu-operator")["items"]}
    validator = pods["nvidia-operator-validator"]["status"]
    assert validator["phase"] == "Pending"
    running = [s["name"] for s in validator["initContainerStatuses"] if "running" in s["state"]]
    assert running == ["driver-validation"]
    plugin = pods["nvidia-device-plugin-daemonset"]["status"]
    assert [s["name"] for s in plugin["initContainerStatuses"] if "running" in s["state"]] == ["toolkit-validation"]
    table = run(lab_1_13, "kubectl", "get", "pods", "-n", "gpu-operator")
    assert "Init:0/4" in table.stdout and "Init:0/2" in table.stdout, table.stdout
    node = kubectl_json(lab_1_13, "get", "node", "gpu-node-1")
    assert "nvidia.com/gpu" not in node["status"]["allocatable"]
    report = check(lab_1_13)
    assert report["root_cause"]["stage"] == "kernel-modules", report["root_cause"]
    device_plugin = stages(report)["device-plugin"]
    assert device_plugin["status"] == "blocked"


ON_1_13 = {  # scenario on Talos 1.13 -> the root cause's stage
    "fresh": "extensions", "extensions-missing": "extensions", "modules-not-loaded": "kernel-modules",
    "old-path-leftovers": "device-plugin", "operator-healthy": None, "plugin-missing": "device-plugin",
    "gpu-not-initialised": "kernel-modules", "node-notready": "cluster",
}


@pytest.mark.parametrize("scenario", sorted(ON_1_13))
def test_on_the_operator_path_every_remediation_runs_as_pasted(lab_1_13: LabHandle, scenario: str) -> None:
    """As tests/test_check_e2e.py's test of the same name, for the gpu-operator path: one command that names a
    known program, the node, and the profile's operator release, chart, version and namespace."""
    lab_1_13.reset(scenario)
    report = check(lab_1_13)
    assert report["path"] == "gpu-operator"
    assert (report["root_cause"] or {}).get("stage") == ON_1_13[scenario], report["root_cause"]
    for stage in report["stages"]:
        command = stage["remediation"]
        if command is None:
            continue
        for part in command.split(" && "):
            argv = shlex.split(part)
            assert "<" not in part and "(" not in part, (stage["id"], command)
            assert argv[0] in ("talosctl", "kubectl", "helm"), (stage["id"], command)
            if argv[0] == "talosctl":
                assert argv[1:3] == ["--nodes", "10.5.0.2"], command
            if argv[:3] == ["helm", "upgrade", "--install"]:
                assert argv[3:5] == ["gpu-operator", "nvidia/gpu-operator"], command
                assert argv[argv.index("-n") + 1] == "gpu-operator" and argv[argv.index("--version") + 1] == "v26.3.1"
            if argv[0] == "helm" and argv[1] == "uninstall":
                assert argv[2:] == ["nvidia-device-plugin", "-n", "kube-system"], command
            if argv[0] == "kubectl" and "-n" in argv:  # the operator's namespace; the CNI's for the cluster
                wanted = "kube-system" if stage["id"] == "cluster" else "gpu-operator"
                assert argv[argv.index("-n") + 1] == wanted, command
