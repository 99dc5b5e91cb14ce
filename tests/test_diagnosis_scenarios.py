"""Issue #14, the classes of "Why": each lab scenario built from real text (tests/fixtures/diagnosis/ORIGIN.md)
gives the right stage, quotes the line that names the cause, and a remediation that is null or runs as pasted.

The first part runs the real parsers and `shorten` on the real text of the fixtures; the second runs
`talos-gpu check --json` as a subprocess against the lab scenario."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from checks import parsers
from checks.judges import decisive_nvrm, quote, shorten
from checks.schematic import canonical_schematic_yaml, installer_image, nvidia_schematic, schematic_id
from checks.signatures import match_signatures
from tests.paths import REPO

FIXTURES = Path(__file__).parent / "fixtures" / "diagnosis"
NODE = "10.5.0.2"
NODE_NAME = "gpu-node-1"
EBPF_CAUSE = "last insn is not an exit or jmp"
OPEN_REFUSAL = "installed in this system is not supported by open"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# ---- the real text ------------------------------------------------------------------------------------


def test_a_long_hook_error_keeps_its_cause_when_shortened() -> None:
    text = fixture("ebpf-hook-event-toolkit-1193.txt")
    assert EBPF_CAUSE in text and len(text) > 400
    for limit in (120, 160, 200):
        short = shorten(text, limit)
        assert EBPF_CAUSE in short and len(short) <= limit, short
        assert not short.rstrip("…").endswith("unknown.")  # containerd's last ": unknown" names nothing
    (match,) = [m for m in match_signatures(text, sources="event") if m.signature.id == "nvidia-container-cli-bpf-filter"]
    assert EBPF_CAUSE in match.line and len(match.line) <= 200  # the line is cut around the match's end
    assert EBPF_CAUSE in quote(match.line, 160, match.quote)
    # a decisive part too long to fit keeps its own tail
    assert EBPF_CAUSE in shorten(text, 140, match.quote)


def test_the_open_module_refusal_is_the_decisive_nvrm_line() -> None:
    dmesg = parsers.parse_dmesg_nvrm(fixture("dmesg-open-module-refuses-gpu-696.txt"))
    assert not isinstance(dmesg, parsers.ParseError)
    assert dmesg.failed_pci_ids == ("0000:02:00.0",)
    decisive = decisive_nvrm(list(dmesg.failures))
    assert decisive is not None and decisive.signature.id == "nvrm-gpu-not-supported"
    assert OPEN_REFUSAL in decisive.line and decisive.signature.remedy == "upgrade-nonfree"


def test_a_message_the_driver_wraps_over_nvrm_lines_is_read_whole() -> None:
    """The refusal takes four NVRM lines (issue 696's log); its sentence is read whole, up to its full stop,
    and the README pointer after it is not part of it."""
    dmesg = parsers.parse_dmesg_nvrm(fixture("dmesg-open-module-refuses-gpu-696.txt"))
    assert not isinstance(dmesg, parsers.ParseError)
    (failure,) = dmesg.failures
    assert failure.message == ("The NVIDIA GPU 0000:02:00.0 (PCI ID: 10de:1b82) installed in this system is not "
                               "supported by open nvidia.ko because it does not include the required GPU System "
                               "Processor (GSP).")


def test_lines_that_each_start_a_message_are_not_joined() -> None:
    """A driver function's name and a colon starts a message of its own, lower case or not."""
    text = fixture("dmesg-gsp-init-failed-extensions-909.txt")
    text = text.replace("NVRM: GPU 0000:01:00.0: RmInitAdapter failed!",
                        "NVRM: iovaspaceDestruct_IMPL: 1 left-over mappings in IOVAS 0x100\n"
                        "[   18.337652] NVRM: GPU 0000:01:00.0: RmInitAdapter failed!")
    dmesg = parsers.parse_dmesg_nvrm(text)
    assert not isinstance(dmesg, parsers.ParseError)
    (failure,) = dmesg.failures
    assert "iovaspace" not in failure.message and "nvAssert" not in failure.message
    assert failure.message.startswith("RmInitAdapter: Cannot initialize GSP firmware RM; RmInitAdapter failed!")


def test_a_gsp_failure_is_not_sent_to_the_kernel_modules_patch() -> None:
    dmesg = parsers.parse_dmesg_nvrm(fixture("dmesg-gsp-init-failed-extensions-909.txt"))
    assert not isinstance(dmesg, parsers.ParseError)
    decisive = decisive_nvrm(list(dmesg.failures))
    assert decisive is not None and decisive.signature.id == "nvrm-gsp-init-failed"
    assert decisive.signature.remedy == "reboot"  # not "modules-patch": the patch cannot help


def test_the_plugin_log_names_the_xid() -> None:
    from checks.findings import logged_xids

    ((what, line),) = logged_xids(fixture("plugin-log-xid-unhealthy.txt"))
    assert what == "Xid 48 on GPU-455e672a-..."
    assert line.endswith("marking device as unhealthy.")


# ---- the lab scenarios --------------------------------------------------------------------------------


def run_check(env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "tui.cli", "check", "--json"], cwd=REPO, env={**os.environ, **env},
                            capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert report["node"] == NODE and report["kube_node"] == NODE_NAME
    return report


def stages(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {stage["id"]: stage for stage in report["stages"]}


def pasted(command: str | None) -> list[str]:
    """The remediation as a shell splits it (null is allowed: then there is nothing to paste)."""
    if command is None:
        return []
    argv = shlex.split(command)
    assert "<" not in command and ">" not in command and "(" not in command, command
    if argv[0] == "talosctl":
        assert argv[1:3] == ["--nodes", NODE], command
    return argv


def test_lab_taint_not_tolerated_is_fixed_by_a_toleration(lab: Any) -> None:
    report = run_check(lab("taint-not-tolerated").env)
    cause = report["root_cause"]
    assert cause["stage"] == "device-plugin", cause
    assert "DESIRED 0" in cause["summary"] and "nvidia.com/gpu=present:NoSchedule" in cause["summary"]
    assert "affinity" not in cause["summary"] and "affinity" not in (cause["advice"] or "")
    assert "toleration" in cause["advice"]
    evidence = stages(report)["device-plugin"]["evidence"]
    assert f"kubectl get node {NODE_NAME}: taints nvidia.com/gpu=present:NoSchedule; DaemonSet tolerations 2, none " \
           "covers them" in evidence
    argv = pasted(cause["remediation"])
    assert argv[:3] == ["helm", "upgrade", "--install"] and argv[argv.index("-n") + 1] == "kube-system"


def test_lab_open_module_refusing_a_gpu_is_sent_to_the_proprietary_modules(lab: Any) -> None:
    report = run_check(lab("open-module-unsupported-gpu").env)
    cause = report["root_cause"]
    assert cause["stage"] == "kernel-modules", cause
    assert OPEN_REFUSAL in cause["summary"] and "0000:8b:00.0" in cause["summary"]
    assert "RmInitAdapter" not in cause["summary"]
    # the driver's message whole, its four wrapped NVRM lines joined, once
    evidence = stages(report)["kernel-modules"]["evidence"]
    whole = ("talosctl dmesg: The NVIDIA GPU 0000:8b:00.0 (PCI ID: 10de:1db5) installed in this system is not "
             "supported by open nvidia.ko because it does not include the required GPU System Processor (GSP).")
    assert evidence.count(whole) == 1, evidence
    assert sum(OPEN_REFUSAL in line for line in evidence) == 1, evidence
    assert "nonfree-kmod-nvidia" in cause["advice"] and "power" not in cause["advice"]
    nonfree = schematic_id(canonical_schematic_yaml(["siderolabs/nvidia-container-toolkit-production",
                                                     "siderolabs/nonfree-kmod-nvidia-production"]))
    assert pasted(cause["remediation"]) == ["talosctl", "--nodes", NODE, "upgrade", "--image",
                                            installer_image(nonfree, "v1.11.5")]
    _yaml, open_schematic = nvidia_schematic("production")
    assert open_schematic not in cause["remediation"]


def test_lab_gsp_failure_is_offered_a_reboot_not_the_modules_patch(lab: Any) -> None:
    report = run_check(lab("gpu-not-initialised").env)
    cause = report["root_cause"]
    assert cause["stage"] == "kernel-modules", cause
    assert "Cannot initialize GSP firmware RM" in cause["summary"]
    assert any(line.startswith("talosctl dmesg: ") and "Cannot initialize GSP firmware RM" in line
               for line in stages(report)["kernel-modules"]["evidence"])
    assert pasted(cause["remediation"]) == ["talosctl", "--nodes", NODE, "reboot"]
    assert "patch" not in cause["remediation"]


def test_lab_ebpf_hook_rejected_keeps_the_decisive_tail(lab: Any) -> None:
    report = run_check(lab("ebpf-hook-rejected").env)
    cause = report["root_cause"]
    assert cause["stage"] == "kernel-modules" and "bpf_jit_harden is 2" in cause["summary"], cause
    assert pasted(cause["remediation"])[3:5] == ["patch", "mc"]
    plugin = stages(report)["device-plugin"]
    assert plugin["status"] == "blocked" and plugin["blocked_by"] == "kernel-modules"
    assert EBPF_CAUSE in plugin["summary"]
    pod_lines = [line for line in plugin["evidence"] if line.startswith(("pod nvidia-device-plugin", "pod event Failed"))]
    assert len(pod_lines) == 2 and all(EBPF_CAUSE in line for line in pod_lines), plugin["evidence"]
    assert all(f"(node {NODE_NAME})" in line for line in pod_lines if line.startswith("pod nvidia"))


def test_lab_cni_not_initialised_is_not_sent_to_the_kubelet(lab: Any) -> None:
    report = run_check(lab("cni-not-initialised").env)
    cause = report["root_cause"]
    assert cause["stage"] == "cluster", cause
    assert "cni plugin not initialized" in cause["summary"] and "pod network (CNI)" in cause["summary"]
    message = fixture("node-notready-cni.txt").strip()
    assert f"kubectl get node {NODE_NAME}: Ready=False ({message})" in stages(report)["cluster"]["evidence"]
    argv = pasted(cause["remediation"])
    assert "kubelet" not in argv and "service" not in argv
    assert argv == ["kubectl", "-n", "kube-system", "get", "pods", "-o", "wide", "--field-selector",
                    f"spec.nodeName={NODE_NAME}"]


def test_lab_xid_unhealthy_counts_capacity_above_allocatable(lab: Any) -> None:
    report = run_check(lab("xid-unhealthy").env)
    cause = report["root_cause"]
    assert cause["stage"] == "gpu-resources", cause
    assert "1 unhealthy nvidia.com/gpu (capacity 2, allocatable 1)" in cause["summary"]
    assert "Xid 48 on GPU-" in cause["summary"]
    evidence = stages(report)["gpu-resources"]["evidence"]
    assert f"kubectl get node {NODE_NAME}: capacity nvidia.com/gpu 2, allocatable 1" in evidence
    assert any(line.startswith("pod log: XidCriticalError: Xid=48 on Device=GPU-")
               and line.endswith("; marking device as unhealthy.") for line in evidence), evidence
    assert stages(report)["device-plugin"]["status"] == "pass" and stages(report)["kernel-modules"]["status"] == "pass"
    assert pasted(cause["remediation"]) == ["talosctl", "--nodes", NODE, "reboot"]


def test_lab_several_gpu_nodes_the_failing_one_elsewhere_does_not_fail_this_node(lab: Any) -> None:
    report = run_check(lab("multi-gpu-nodes-one-failing").env)
    assert report["overall"] == "pass", report["root_cause"]
    plugin = stages(report)["device-plugin"]
    assert "kubectl get ds kube-system/nvidia-device-plugin: desired 3, ready 2" in plugin["evidence"]
    assert f"pods of kube-system/nvidia-device-plugin on node {NODE_NAME}: 1 (of 3 on all nodes)" in plugin["evidence"]
    assert f"the plugin on {NODE_NAME} registered" in plugin["summary"]
    assert not any("gpu-node-3" in line or "ERROR_DRIVER_NOT_LOADED" in line for line in plugin["evidence"])


def test_lab_several_gpu_nodes_this_one_failing_is_judged_by_its_own_pod(lab: Any) -> None:
    report = run_check(lab("multi-gpu-nodes-this-failing").env)
    cause = report["root_cause"]
    assert cause["stage"] == "kernel-modules" and "not loaded" in cause["summary"], cause
    plugin = stages(report)["device-plugin"]
    assert plugin["status"] == "blocked"
    assert "kubectl get ds kube-system/nvidia-device-plugin: desired 3, ready 2" in plugin["evidence"]
    assert f"pods of kube-system/nvidia-device-plugin on node {NODE_NAME}: 1 (of 3 on all nodes)" in plugin["evidence"]
    assert "Failed to initialize NVML: ERROR_DRIVER_NOT_LOADED." in plugin["summary"]
    mine = [line for line in plugin["evidence"] if line.startswith("pod nvidia-device-plugin")]
    assert len(mine) == 1 and f"(node {NODE_NAME}): CrashLoopBackOff" in mine[0], plugin["evidence"]


def test_lab_static_manifest_is_found_by_its_template_label_and_judged(lab: Any) -> None:
    report = run_check(lab("static-manifest").env)
    cause = report["root_cause"]
    assert cause["stage"] == "device-plugin", cause
    # found (not "not installed"): its label is on the selector and pod template only
    assert cause["summary"].startswith("DaemonSet kube-system/nvidia-device-plugin-daemonset has DESIRED 0")
    assert "node-role.kubernetes.io/control-plane:NoSchedule" in cause["summary"]
    plugin = stages(report)["device-plugin"]
    assert "helm list -n kube-system: no release nvidia-device-plugin" in plugin["evidence"]
    assert "DaemonSet pod template: runtimeClassName not set" in plugin["evidence"]
    argv = pasted(cause["remediation"])
    assert argv[:4] == ["helm", "upgrade", "--install", "nvidia-device-plugin"]
    # the chart's plugin replaces the manifest's: the advice says to remove it, with the command
    assert "kubectl -n kube-system delete ds nvidia-device-plugin-daemonset" in cause["advice"]


def test_lab_static_manifest_adapted_to_talos_passes(lab: Any) -> None:
    report = run_check(lab("static-manifest-adapted").env)
    assert report["overall"] == "pass", report["root_cause"]
    plugin = stages(report)["device-plugin"]
    assert "kubectl get ds kube-system/nvidia-device-plugin-daemonset: desired 1, ready 1" in plugin["evidence"]
    assert f"pods of kube-system/nvidia-device-plugin-daemonset on node {NODE_NAME}: 1 (of 1 on all nodes)" in \
        plugin["evidence"]
    assert "pod log: Registered device plugin for 'nvidia.com/gpu' with Kubelet" in plugin["evidence"]
    assert plugin["remediation"] is None


def test_a_helm_release_s_daemonset_is_not_told_to_delete_itself(lab: Any) -> None:
    cause = run_check(lab("taint-not-tolerated").env)["root_cause"]
    assert "delete ds" not in cause["advice"]
