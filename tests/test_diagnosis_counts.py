"""Issue #14, counting: what the device plugin on THIS node runs with (time-slicing replicas, the renamed
nvidia.com/gpu.shared, MIG resources), and NVSwitch bridges, which are not GPUs but need Fabric Manager.

Judges run on facts built from fixtures (tests/fixtures/depth/ORIGIN.md) with the real parsers; the lab
scenarios run `talos-gpu check --json` as a subprocess."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from checks import parsers
from checks.judges import JudgeInput, judge_extensions, judge_gpu_resources
from checks.model import ProbeResult, Status
from checks.parsers.talos import Extension, PCIDevice
from checks.probes import DevicePluginFacts
from checks.profile import Profile
from checks.schematic import installer_image, nvidia_schematic
from tests.paths import REPO

FIXTURES = Path(__file__).parent / "fixtures" / "depth"
NODE = "10.5.0.2"
NODE_NAME = "gpu-node-1"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def h100(bus: str) -> PCIDevice:
    return PCIDevice(f"0000:{bus}:00.0", "Display controller", "3D controller", "NVIDIA Corporation",
                     "GH100 [H100 SXM5 80GB]", "0x10de", "0x2330", "nvidia", "0x03", "0x02")


def nvswitch(bus: str) -> PCIDevice:
    return PCIDevice(f"0000:{bus}:00.0", "Bridge", "Bridge", "NVIDIA Corporation", "GH100 [H100 NVSwitch]",
                     "0x10de", "0x22a3", "", "0x06", "0x80")


def fact(name: str, value: Any = None, *, error: str | None = None) -> ProbeResult:
    return ProbeResult(name, name, value=value, error=error)


def node_object(capacity: dict[str, str], allocatable: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}},
            "status": {"capacity": {"cpu": "64", **capacity}, "allocatable": {"cpu": "63950m", **(allocatable or capacity)},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def plugin_facts(log: str, node_name: str = NODE_NAME) -> DevicePluginFacts:
    pod = {"metadata": {"name": "nvidia-device-plugin-x7k2p", "namespace": "kube-system"},
           "spec": {"nodeName": node_name,
                    "containers": [{"name": "nvidia-device-plugin-ctr"}, {"name": "nvidia-device-plugin-sidecar"}]},
           "status": {"phase": "Running", "hostIP": NODE}}
    return DevicePluginFacts({"metadata": {"name": "nvidia-device-plugin", "namespace": "kube-system"}}, [], [pod], [],
                             {}, {pod["metadata"]["name"]: log}, {})


def judge_resources(node: dict[str, Any], pci: list[PCIDevice], log: str | None, *,
                    plugin_node: str = NODE_NAME) -> Any:
    facts = {"kube_node": fact("kube_node", node), "pci_devices": fact("pci_devices", pci),
             "dmesg": fact("dmesg", error="not read"), "gpu_allocations": fact("gpu_allocations", 0)}
    if log is not None:
        facts["device_plugin"] = fact("device_plugin", plugin_facts(log, plugin_node))
    return judge_gpu_resources(JudgeInput(facts, Profile(), NODE))


# ---- parsers ------------------------------------------------------------------------------------


def test_the_running_config_gives_replicas_and_the_renamed_resource() -> None:
    sharing = parsers.plugin_sharing(fixture("plugin-log-time-slicing.txt"))
    assert sharing is not None
    assert sharing.strategy == "time-slicing"
    assert sharing.replicas_of("nvidia.com/gpu") == 4
    assert sharing.advertised_as("nvidia.com/gpu") == "nvidia.com/gpu.shared"
    assert sharing.mig_strategy == "none"


def test_a_config_without_sharing_or_cut_short_is_no_sharing() -> None:
    mig = parsers.plugin_sharing(fixture("plugin-log-mig-mixed.txt"))
    assert mig is not None and mig.strategy is None and mig.replicas_of("nvidia.com/gpu") == 1
    assert mig.mig_strategy == "mixed"
    text = fixture("plugin-log-time-slicing.txt")
    assert parsers.plugin_sharing(text[: text.index('"replicas"')]) is None  # cut mid-JSON: not understood
    assert parsers.plugin_sharing("") is None
    assert parsers.plugin_sharing("Running with config:\n{not json}") is None


def test_an_nvswitch_bridge_is_not_a_gpu() -> None:
    assert nvswitch("c5").is_nvswitch and not nvswitch("c5").is_nvidia_gpu
    assert h100("18").is_nvidia_gpu and not h100("18").is_nvswitch
    intel_bridge = PCIDevice("0000:00:01.3", "Bridge", "Bridge", "Intel Corporation", "82371AB/EB/MB PIIX4 ACPI",
                             "0x8086", "0x7113", "", "0x06", "0x80")
    assert not intel_bridge.is_nvswitch


# ---- gpu-resources --------------------------------------------------------------------------------


def test_time_slicing_replicas_are_expected_and_the_renamed_resource_is_counted() -> None:
    pci = [h100("18"), h100("2a"), nvswitch("c5"), nvswitch("c6")]
    judgement = judge_resources(node_object({"nvidia.com/gpu.shared": "8"}), pci, fixture("plugin-log-time-slicing.txt"))
    assert judgement.status is Status.PASS, judgement
    assert "8 nvidia.com/gpu.shared" in judgement.summary and "2 GPUs × 4 time-slicing replicas" in judgement.summary
    assert any("NVSwitch bridges are not GPUs" in line for line in judgement.evidence)


def test_time_slicing_short_of_its_replicas_fails() -> None:
    judgement = judge_resources(node_object({"nvidia.com/gpu.shared": "4"}), [h100("18"), h100("2a")],
                                fixture("plugin-log-time-slicing.txt"))
    assert judgement.status is Status.FAIL
    assert "4 nvidia.com/gpu.shared but 8 are expected" in judgement.summary


def test_only_the_plugin_pod_on_this_node_says_how_gpus_are_shared() -> None:
    # the time-slicing pod runs on another node: this one is judged without replicas
    judgement = judge_resources(node_object({"nvidia.com/gpu": "2"}), [h100("18"), h100("2a")],
                                fixture("plugin-log-time-slicing.txt"), plugin_node="gpu-node-2")
    assert judgement.status is Status.PASS, judgement
    assert "2 nvidia.com/gpu" in judgement.summary


def test_mig_instances_are_counted_per_profile() -> None:
    node = node_object({"nvidia.com/mig-1g.10gb": "14", "nvidia.com/mig-3g.40gb": "2"})
    judgement = judge_resources(node, [h100("18"), h100("2a")], fixture("plugin-log-mig-mixed.txt"))
    assert judgement.status is Status.PASS, judgement
    assert "16 MIG instances" in judgement.summary
    unhealthy = node_object({"nvidia.com/mig-1g.10gb": "14"}, {"nvidia.com/mig-1g.10gb": "13"})
    judgement = judge_resources(unhealthy, [h100("18"), h100("2a")], fixture("plugin-log-mig-mixed.txt"))
    assert judgement.status is Status.FAIL and "1 unhealthy nvidia.com/mig-1g.10gb" in judgement.summary
    assert shlex.split(judgement.remediation) == ["talosctl", "--nodes", NODE, "dmesg"]


# ---- extensions: Fabric Manager on NVSwitch boards --------------------------------------------------


def _ext(name: str, version: str) -> Extension:
    return Extension(id="0", name=name, version=version)


KMOD = ("nvidia-open-gpu-kernel-modules-production", "570.172.08-v1.11.5")
TOOLKIT = ("nvidia-container-toolkit-production", "570.172.08-v1.17.8")


def judge_exts(exts: list[Any], pci: list[PCIDevice]) -> Any:
    facts = {"extensions": fact("extensions", exts), "pci_devices": fact("pci_devices", pci),
             "talos_version": fact("talos_version", error="not read")}
    return judge_extensions(JudgeInput(facts, Profile(talos_version="v1.11.5"), NODE))


def test_an_nvswitch_board_without_fabric_manager_fails_with_the_schematic_that_adds_it() -> None:
    pci = [h100("18"), nvswitch("c5"), nvswitch("c6")]
    judgement = judge_exts([_ext(*KMOD), _ext(*TOOLKIT)], pci)
    assert judgement.status is Status.FAIL
    assert "2 NVSwitch bridges" in judgement.summary and "nvidia-fabricmanager-production" in judgement.summary
    _yaml, schematic = nvidia_schematic("production", fabricmanager=True)
    assert shlex.split(judgement.remediation) == ["talosctl", "--nodes", NODE, "upgrade", "--image",
                                                  installer_image(schematic, "v1.11.5")]
    assert "nvidia-fabricmanager-production" in _yaml and "reboots" in (judgement.advice or "")


def test_fabric_manager_of_the_same_driver_passes_and_of_another_fails() -> None:
    pci = [h100("18"), nvswitch("c5")]
    good = judge_exts([_ext(*KMOD), _ext(*TOOLKIT), _ext("nvidia-fabricmanager-production", "570.172.08")], pci)
    assert good.status is Status.PASS and "nvidia-fabricmanager-production 570.172.08" in good.summary
    other = judge_exts([_ext(*KMOD), _ext(*TOOLKIT), _ext("nvidia-fabricmanager-lts", "535.247.01")], pci)
    assert other.status is Status.FAIL and "same driver version" in other.summary
    without_switch = judge_exts([_ext(*KMOD), _ext(*TOOLKIT)], [h100("18")])
    assert without_switch.status is Status.PASS


# ---- lab scenarios ----------------------------------------------------------------------------------


def run_check(env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "tui.cli", "check", "--json"], cwd=REPO, env={**os.environ, **env},
                            capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(("scenario", "resource"), [("time-slicing", "nvidia.com/gpu"),
                                                    ("time-slicing-renamed", "nvidia.com/gpu.shared")])
def test_lab_time_slicing_counts_replicas_and_reads_the_two_container_pod(lab: Any, scenario: str,
                                                                          resource: str) -> None:
    report = run_check(lab(scenario).env)
    by_id = {s["id"]: s for s in report["stages"]}
    assert report["overall"] == "pass", report["root_cause"]
    plugin = by_id["device-plugin"]
    assert plugin["status"] == "pass"  # its log was read with the container named (a nameless request is a 400)
    assert f"pod log: Registered device plugin for '{resource}' with Kubelet" in plugin["evidence"]
    resources = by_id["gpu-resources"]
    assert f"advertises 8 {resource}" in resources["summary"] and "2 GPUs × 4 time-slicing replicas" in resources["summary"]


def test_lab_nvswitch_board_without_fabric_manager(lab: Any) -> None:
    report = run_check(lab("nvswitch-no-fabricmanager").env)
    cause = report["root_cause"]
    assert cause["stage"] == "extensions", cause
    assert "4 NVSwitch bridges" in cause["summary"] and "nvidia-fabricmanager-production" in cause["summary"]
    argv = shlex.split(cause["remediation"])
    assert argv[:4] == ["talosctl", "--nodes", report["node"], "upgrade"]
    _yaml, schematic = nvidia_schematic("production", fabricmanager=True)
    assert argv[4:] == ["--image", installer_image(schematic, "v1.11.5")]
    resources = {s["id"]: s for s in report["stages"]}["gpu-resources"]
    assert "talosctl get pcidevices: 2 NVIDIA GPUs" in " ".join(resources["evidence"])  # the bridges are not counted
