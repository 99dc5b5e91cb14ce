"""Scenarios, the derived node view, the state file's locking, schematic ids and the factory stand-in."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from lab import chart, node, scenarios, schematics, state, talosctl
from lab.factory import Factory
from tests.paths import REPO, TALOS_SAMPLES

NOW = 1_760_000_000.0


def view_of(name: str) -> node.NodeView:
    return node.node_view(scenarios.build(name, now=NOW), NOW)


def test_every_scenario_builds_a_complete_state() -> None:
    assert list(scenarios.SCENARIOS)[0] == "fresh"
    for name in scenarios.SCENARIOS:
        built = scenarios.build(name, now=NOW)
        assert built["schema"] == 1 and built["scenario"] == name
        assert set(built) >= {"knobs", "faults", "talos", "kube", "helm"}
        operator = name in scenarios.OPERATOR_SCENARIOS  # Talos 1.13 unless told otherwise
        kinds = {"nodes", "namespaces", "runtimeclasses", "daemonsets", "pods", "events"}
        assert set(built["kube"]) == kinds | ({"crds", "clusterpolicies"} if name == "operator-healthy" else set())
        (gpu_node,) = built["kube"]["nodes"]
        assert gpu_node["metadata"]["name"] == "gpu-node-1"
        assert {"type": "InternalIP", "address": "10.5.0.2"} in gpu_node["status"]["addresses"]
        assert "nvidia.com/gpu" not in gpu_node["status"]["capacity"]
        assert gpu_node["status"]["nodeInfo"]["kubeletVersion"] == ("v1.36.1" if operator else "v1.34.1")
        assert gpu_node["status"]["nodeInfo"]["osImage"] == ("Talos (v1.13.9)" if operator else "Talos (v1.11.5)")
        json.dumps(built)  # plain JSON all the way down
    with pytest.raises(ValueError):
        scenarios.build("nope")


def test_healthy_view_is_all_green() -> None:
    view = view_of("healthy")
    assert (view.phase, view.api_up, view.machine_stage, view.machine_ready, view.kube_ready) == (
        "running", True, "running", True, True)
    assert view.kmod_ext_driver == view.toolkit_ext_driver == view.driver_version == "570.172.08"
    assert set(node.NVIDIA_MODULES) <= set(view.modules_loaded)
    assert (view.gpus_total, view.gpus_initialised) == (2, 2)
    # the runtime works without the runbook's no-cgroups file (the extension's own config is used)
    assert view.nvidia_runtime_handler and not view.no_cgroups and view.bpf_jit_harden == "1"
    assert view.container_runtime_ok and view.boot_error is None and not view.boot_stuck
    assert [entry["name"] for entry in view.extensions] == [
        "nvidia-container-toolkit-production", "nvidia-open-gpu-kernel-modules-production", "schematic", "modules.dep"]
    assert any("NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  570.172.08" in line for line in view.dmesg)


@pytest.mark.parametrize(
    ("name", "wrong"),
    [
        ("fresh", lambda v: v.kmod_ext_driver is None and v.driver_version is None and not v.nvidia_runtime_handler),
        ("extensions-missing", lambda v: v.kmod_ext_driver is None and not v.nvidia_runtime_handler),
        ("mixed-tracks", lambda v: (v.kmod_ext_driver, v.toolkit_ext_driver) == ("570.172.08", "535.247.01")),
        ("driver-mismatch", lambda v: (v.kmod_ext_driver, v.toolkit_ext_driver) == ("570.172.08", "570.158.01")
         and any("NVRM: API mismatch" in line for line in v.dmesg)),
        ("modules-not-loaded", lambda v: v.driver_version is None and "nvidia" not in v.modules_loaded
         and v.kmod_ext_driver == "570.172.08"),
        ("bpf-sysctl-missing", lambda v: v.bpf_jit_harden == "2" and v.driver_version and not v.container_runtime_ok),
        ("runbook-patch-applied", lambda v: v.boot_stuck and v.machine_stage == "booting" and v.api_up
         and not v.kube_ready and v.boot_error == 'create operation not allowed outside of /var: '
         '"/etc/nvidia-container-runtime/config.toml"'),
        ("runbook-patch-in-repo", lambda v: v.boot_error is None and v.container_runtime_ok and v.kube_ready),
        ("gpu-not-initialised", lambda v: (v.gpus_total, v.gpus_initialised) == (2, 1)
         and any("NVRM: GPU 0000:8b:00.0: RmInitAdapter failed!" in line for line in v.dmesg)),
        ("node-notready", lambda v: not v.kube_ready and not v.machine_ready and v.phase == "running"),
    ],
)
def test_each_scenario_view_shows_its_one_fault(name: str, wrong) -> None:  # type: ignore[no-untyped-def]
    assert wrong(view_of(name))


@pytest.mark.parametrize("name", ["runtimeclass-missing", "nfd-affinity", "no-runtimeclassname", "plugin-missing"])
def test_kubernetes_side_scenarios_keep_the_node_healthy(name: str) -> None:
    built = scenarios.build(name, now=NOW)
    assert node.node_view(built, NOW).container_runtime_ok
    kube = built["kube"]
    if name == "runtimeclass-missing":
        assert kube["runtimeclasses"] == [] and kube["daemonsets"]
    elif name == "plugin-missing":
        assert kube["daemonsets"] == [] and built["helm"]["releases"] == [] and built["helm"]["repos"]
    else:
        pod = kube["daemonsets"][0]["spec"]["template"]["spec"]
        if name == "nfd-affinity":
            assert pod["affinity"] == chart.DEFAULT_AFFINITY and pod["runtimeClassName"] == "nvidia"
        else:
            assert "runtimeClassName" not in pod and "affinity" not in pod


def test_extra_worker_nodes_carry_gpus() -> None:
    built = scenarios.build("healthy", extra_nodes=3, gpus_per_extra_node=4, now=NOW)
    assert [item["metadata"]["name"] for item in built["kube"]["nodes"]] == ["gpu-node-1"]
    workers = built["static_nodes"]  # kept out of state.json: only the API server reads them
    assert [item["metadata"]["name"] for item in workers] == ["worker-0001", "worker-0002", "worker-0003"]
    assert all(item["status"]["capacity"]["nvidia.com/gpu"] == "4" for item in workers)


def test_upgrade_timeline_and_settle() -> None:
    built = scenarios.build("extensions-missing", now=NOW)
    built["knobs"]["reboot_s"] = 4.0
    built["talos"]["reboot"] = {
        "reason": "upgrade", "started": NOW, "image": "x",
        "pending": {"schematic": schematics.PRODUCTION_ID, "extensions": scenarios._extensions("production", "production"),
                    "version": "v1.11.5"},
    }
    phases = [(node.node_view(built, NOW + offset).phase, node.node_view(built, NOW + offset).api_up)
              for offset in (0.5, 1.5, 3.5, 5.1)]
    assert phases == [("upgrading", True), ("down", False), ("booting", True), ("running", True)]
    assert node.node_view(built, NOW + 0.5).kmod_ext_driver is None
    assert node.node_view(built, NOW + 3.5).kmod_ext_driver == "570.172.08"
    assert not node.node_view(built, NOW + 5.1).kube_ready  # the kubelet takes a moment after boot
    assert node.node_view(built, NOW + 5.9).machine_ready
    assert node.settle(built, NOW + 2.0) and built["talos"]["schematic"] == schematics.PRODUCTION_ID
    assert built["talos"]["reboot"] is not None
    assert node.settle(built, NOW + 10) and built["talos"]["reboot"] is None


def test_schematic_ids_reproduce_the_published_vectors() -> None:
    vectors = [line.split("\t") for line in (TALOS_SAMPLES / "image-factory-schematic-id-vectors.txt").read_text()
               .splitlines() if line and not line.startswith("#")]
    assert len(vectors) == 7
    for expected, escaped in vectors:
        text = escaped.replace("\\n", "\n")
        assert schematics.canonical_yaml(yaml.safe_load(text)) == text
        assert schematics.schematic_id(yaml.safe_load(text)) == expected
    assert schematics.VANILLA_ID == "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
    assert schematics.KNOWN[schematics.PRODUCTION_ID] == [
        "nvidia-container-toolkit-production", "nvidia-open-gpu-kernel-modules-production"]


def test_two_processes_mutating_at_once_lose_no_update(tmp_path: Path) -> None:
    built = scenarios.build("fresh", now=NOW)
    built["counter"] = 0
    state.init(tmp_path, built)
    worker = (
        "import sys\nfrom lab import state\n"
        "for _ in range(100):\n"
        "    with state.mutate(sys.argv[1]) as current:\n"
        "        current['counter'] += 1\n"
    )
    processes = [subprocess.Popen([sys.executable, "-c", worker, str(tmp_path)], cwd=REPO) for _ in range(2)]
    assert [process.wait(timeout=60) for process in processes] == [0, 0]
    assert state.load(tmp_path)["counter"] == 200


def test_mutate_writes_nothing_when_the_body_fails(tmp_path: Path) -> None:
    state.init(tmp_path, scenarios.build("fresh", now=NOW))
    with pytest.raises(RuntimeError), state.mutate(tmp_path) as current:
        current["scenario"] = "changed"
        raise RuntimeError("abort")
    assert state.load(tmp_path)["scenario"] == "fresh"
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".state-")] == []


def test_factory_registers_schematics_the_upgrade_then_accepts(tmp_path: Path) -> None:
    state.init(tmp_path, scenarios.build("fresh", now=time.time()))
    schematic = ("customization:\n    systemExtensions:\n        officialExtensions:\n"
                 "            - siderolabs/nvidia-open-gpu-kernel-modules-lts\n"
                 "            - siderolabs/nvidia-container-toolkit-lts\n            - siderolabs/iscsi-tools\n")
    with Factory(tmp_path) as factory:
        request = urllib.request.Request(f"{factory.url}/schematics", data=schematic.encode(), method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 201
            identifier = json.load(response)["id"]
    assert identifier == schematics.schematic_id(yaml.safe_load(schematic))
    assert state.load(tmp_path)["factory"][identifier] == [
        "nvidia-open-gpu-kernel-modules-lts", "nvidia-container-toolkit-lts", "iscsi-tools"]
    image = f"factory.talos.dev/installer/{identifier}:v1.11.5"
    change = talosctl.resolve_image(state.load(tmp_path), image)
    assert change is not None
    assert [item["version"] for item in change["extensions"][:2]] == ["535.247.01-v1.11.5", "535.247.01-v1.17.8"]


def _wedged(now: float = NOW, wait: float = 10.0, reboot: float = 4.0) -> dict:
    built = scenarios.build("runbook-patch-applied", now=now)
    built["knobs"].update(boot_fail_wait_s=wait, reboot_s=reboot)
    return built


def test_a_boot_refused_by_write_user_files_loops_until_the_entry_is_removed() -> None:
    """Boot, stop in writeUserFiles (apid up, nothing else), wait, reboot (down R/2), the same again."""
    built = _wedged()
    start = built["talos"]["boot_time"]  # NOW - 2
    timeline = [(node.node_view(built, start + offset).phase, node.node_view(built, start + offset).api_up)
                for offset in (1.0, 9.9, 10.5, 11.9, 12.5, 21.0, 22.5)]
    assert timeline == [("booting", True), ("booting", True), ("down", False), ("down", False), ("booting", True),
                        ("booting", True), ("down", False)]
    assert node.kube_api_down(built, start + 1.0) and node.kube_api_down(built, start + 10.5)
    boot, records = node.kernel_records(built, start + 13.0)
    assert boot == start + 12.0  # the log is the current boot's
    messages = [record.message for record in records]
    assert ('[talos] writeUserFiles failed, rebooting in 35 minutes. You can use talosctl apply-config or talosctl '
            'edit mc to fix the issues, error: create operation not allowed outside of /var: '
            '"/etc/nvidia-container-runtime/config.toml"') in messages
    assert messages.index("[talos] phase userSetup (14/23): failed") < messages.index("[talos] boot sequence: failed")
    # removing the entry (what `patch mc` does: a config change with a reboot) lets the next boot finish
    built["talos"]["reboot"] = {"reason": "config", "started": start + 5.0,
                                "pending": {"config": dict(built["talos"]["config"], files=[])}}
    assert node.node_view(built, start + 6.0).phase == "down"
    after = node.node_view(built, start + 5.0 + 4.0 + 1.0)
    assert after.phase == "running" and after.boot_error is None and after.kube_ready
    assert not node.kube_api_down(built, start + 10.0)


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ([{"path": "/var/lib/x.conf", "op": "create"}], None),
        ([{"path": "/etc/kubernetes/manifests/x.yaml", "op": "create"}], None),
        ([{"path": "/etc/cri/conf.d/20-customization.part", "op": "create"}], None),
        ([{"path": "/etc/hosts", "op": "append"}], None),
        ([{"path": "/etc/x.conf", "op": "create"}], 'create operation not allowed outside of /var: "/etc/x.conf"'),
        ([{"path": "/etc/nope", "op": "overwrite"}], '1 error occurred:\n\t* file must exist: "/etc/nope"\n\n'),
        ([{"path": "/var/x", "op": "delete"}], '1 error occurred:\n\t* unknown operation for file "/var/x": '
                                                '"delete"\n\n'),
    ],
)
def test_write_user_files_rules(files: list, error: str | None) -> None:
    talos = {"extensions": [], "config": {"files": files}}
    assert node.write_user_files_error(talos) == error


def test_the_toolkit_extension_installs_its_runtime_files() -> None:
    with_toolkit = node.rootfs_files(scenarios.build("healthy", now=NOW)["talos"])
    assert '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nvidia]' in \
        with_toolkit[node.TOOLKIT_CRI_PART]
    assert 'BinaryName = "/usr/local/bin/nvidia-container-runtime"' in with_toolkit[node.TOOLKIT_CRI_PART]
    assert with_toolkit[node.TOOLKIT_CRI_PART] in with_toolkit[node.CRI_CONFIG]  # merged into cri.toml
    shipped = with_toolkit[node.TOOLKIT_RUNTIME_CONFIG]
    assert "#no-cgroups = false" in shipped and 'ldcache = "/usr/local/glibc/etc/ld.so.cache"' in shipped
    assert "load-kmods = false" in shipped
    without = node.rootfs_files(scenarios.build("fresh", now=NOW)["talos"])
    assert node.TOOLKIT_CRI_PART not in without and node.TOOLKIT_RUNTIME_CONFIG not in without
