"""The lab's talosctl, run as a real subprocess against a state directory built from a scenario."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import faults, node, scenarios, schematics, state
from tests.paths import REPO, sample

NODE = "10.5.0.2"
PRODUCTION_IMAGE = f"factory.talos.dev/installer/{schematics.PRODUCTION_ID}:v1.11.5"
UNKNOWN_ID = "00b870f53438031044e98e88c5e1949e5fc9b1aba457a08573697d027f010350"
TALOSCONFIG = f"""\
context: lab
contexts:
    lab:
        endpoints:
            - {NODE}
        nodes:
            - {NODE}
        ca: dGVzdC1jYQ==
        crt: dGVzdC1jcnQ=
        key: TEFCLVNFQ1JFVC1LRVk=
"""


def make_lab(directory: Path, scenario: str = "healthy", *, reboot_s: float = 1.0, **knobs: Any) -> Path:
    built = scenarios.build(scenario)
    built["knobs"].update(reboot_s=reboot_s, **knobs)
    state.init(directory, built)
    config = directory / "talosconfig"
    config.write_text(TALOSCONFIG)
    return config


def talosctl(config: Path, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lab.talosctl", "--talosconfig", str(config), "-n", NODE, *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def header_cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def sample_header(name: str) -> list[str]:
    for line in sample(f"talos/{name}").splitlines():
        if line.startswith("NODE"):
            return header_cells(line)
    raise AssertionError(f"no header in {name}")


def finish_reboot(state_dir: Path) -> None:
    """Move the reboot's start into the past, as if its time had passed (keeps the suite fast)."""
    with state.mutate(state_dir, settle=False) as current:
        current["talos"]["reboot"]["started"] -= 3600
    assert node.node_view(state.load(state_dir), time.time()).machine_ready


@pytest.fixture
def healthy(tmp_path: Path) -> Path:
    return make_lab(tmp_path)


TABLE_SAMPLES = {
    "extensions": "get-extensions-nvidia-lts-b200.txt",
    "modules": "get-modules-loadedkernelmodule-docs.txt",
    "kernelmodulespecs": "get-kernelmodulespec-b200.txt",
    "pcidevices": "get-pcidevices-kvm.txt",
    "version": "get-version-resource.txt",
    "members": "get-members-header.txt",
    "machinestatus": "machinestatus.RECONSTRUCTED.txt",
}


def test_table_headers_match_the_real_ones(healthy: Path) -> None:
    processes = {
        resource: subprocess.Popen(
            [sys.executable, "-m", "lab.talosctl", "--talosconfig", str(healthy), "-n", NODE, "get", resource],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for resource in TABLE_SAMPLES
    }
    for resource, process in processes.items():
        stdout, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        lines = stdout.splitlines()
        assert header_cells(lines[0]) == sample_header(TABLE_SAMPLES[resource]), resource
        # tabwriter alignment: each column starts at the header's offset after a 3-space gap, no trailing blanks
        starts = [match.start() for match in re.finditer(r"(?:(?<=^)|(?<=   ))\S", lines[0])]
        for line in lines[1:]:
            assert line == line.rstrip()
            for offset in starts[1:]:
                assert line[offset - 3:offset] == "   " and line[offset] != " ", (resource, line)


def test_extensions_table_shows_the_installed_stack(healthy: Path) -> None:
    rows = [header_cells(line) for line in talosctl(healthy, "get", "extensions").stdout.splitlines()[1:]]
    by_name = {row[5]: row for row in rows}
    assert by_name["nvidia-open-gpu-kernel-modules-production"][6] == "570.172.08-v1.11.5"
    assert by_name["nvidia-container-toolkit-production"][6] == "570.172.08-v1.17.8"
    assert by_name["schematic"][6] == schematics.PRODUCTION_ID
    assert all(row[0] == NODE and row[1] == "runtime" and row[2] == "ExtensionStatus" for row in rows)


def test_yaml_output_is_one_talos_document_per_resource(healthy: Path) -> None:
    result = talosctl(healthy, "get", "extensions", "-o", "yaml")
    assert result.returncode == 0
    documents = result.stdout.split("---\n")
    assert len(documents) == 4
    reference = yaml.safe_load(sample("talos/get-extensions.yaml"))
    for text in documents:
        assert text.startswith(f"node: {NODE}\nmetadata:\n    namespace: runtime\n")
        parsed = yaml.safe_load(text)
        assert set(parsed) == set(reference)
        assert set(parsed["metadata"]) == set(reference["metadata"])
        assert isinstance(parsed["metadata"]["id"], str)
    assert '    id: "0"\n' in result.stdout
    assert "        description: |\n            This system extension provides nvidia" in result.stdout
    assert "                version: '>= v1.2.0'\n" in result.stdout


def test_json_output_is_a_stream_of_indented_objects(healthy: Path) -> None:
    result = talosctl(healthy, "get", "pcidevices", "-o", "json")
    text = result.stdout
    assert text.startswith('{\n    "metadata": {\n        "created": ')
    decoder = json.JSONDecoder()
    objects, index = [], 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        obj, index = decoder.raw_decode(text, index)
        objects.append(obj)
    assert len(objects) == 5
    assert all(list(obj) == ["metadata", "node", "spec"] for obj in objects)
    nvidia = [obj for obj in objects if obj["spec"]["vendor_id"] == "0x10de"]
    assert [obj["metadata"]["id"] for obj in nvidia] == ["0000:33:00.0", "0000:8b:00.0"]
    assert all(obj["spec"]["product_id"] == "0x2321" for obj in nvidia)
    extensions = talosctl(healthy, "get", "extensions", "-o", "json").stdout
    assert "\\u003e= v1.2.0" in extensions


def test_read_files_and_missing_file_error(healthy: Path) -> None:
    modules = talosctl(healthy, "read", "/proc/modules").stdout
    assert re.search(r"^nvidia_uvm 1146880 - - Live 0x[0-9a-f]+", modules, re.M)
    assert "\nahci 45056 - - Live" in modules
    version = talosctl(healthy, "read", "/proc/driver/nvidia/version").stdout
    assert version.startswith("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.172.08  Release Build  ")
    assert "\nGCC version:" in version
    assert talosctl(healthy, "read", "/proc/sys/net/core/bpf_jit_harden").stdout == "1\n"
    missing = talosctl(healthy, "read", "/etc/nope")
    assert missing.returncode == 1
    assert missing.stderr == "rpc error: code = Unknown desc = stat /etc/nope: no such file or directory\n"


def test_driver_version_file_absent_without_modules(tmp_path: Path) -> None:
    config = make_lab(tmp_path, "modules-not-loaded")
    result = talosctl(config, "read", "/proc/driver/nvidia/version")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "rpc error: code = Unknown desc = stat /proc/driver/nvidia/version: no such file or directory"
    )
    assert talosctl(config, "read", "/proc/sys/net/core/bpf_jit_harden").stdout == "2\n"


def test_dmesg_lines_have_the_talosctl_prefix_and_show_broken_gpus(tmp_path: Path) -> None:
    config = make_lab(tmp_path, "gpu-not-initialised")
    lines = talosctl(config, "dmesg").stdout.splitlines()
    pattern = re.compile(r"^10\.5\.0\.2: kern: +(info|warning|err|notice): \[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\]: ")
    assert lines and all(pattern.match(line) for line in lines)
    assert any("NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  570.172.08" in line for line in lines)
    assert any(line.endswith("NVRM: GPU 0000:8b:00.0: RmInitAdapter failed! (0x62:0x65:1859)") for line in lines)
    assert not any("0000:33:00.0: RmInitAdapter failed" in line for line in lines)


def test_health_reports_on_stderr(healthy: Path) -> None:
    result = talosctl(healthy, "health", "--wait-timeout", "30s")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith('discovered nodes: ["10.5.0.2"]\nwaiting for etcd to be healthy: ...\n')
    assert "waiting for all k8s nodes to report ready: OK\n" in result.stderr


def test_health_fails_with_the_not_ready_node_until_the_deadline(tmp_path: Path) -> None:
    config = make_lab(tmp_path, "node-notready")
    started = time.monotonic()
    result = talosctl(config, "health", "--wait-timeout", "1s")
    assert time.monotonic() - started < 6
    assert result.returncode == 1
    assert "waiting for all k8s nodes to report ready: some nodes are not ready: [gpu-node-1]\n" in result.stderr
    assert result.stderr.endswith("context deadline exceeded\n")


def test_patch_modules_applies_live_and_dry_run_changes_nothing(tmp_path: Path) -> None:
    config = make_lab(tmp_path, "modules-not-loaded")
    patch = tmp_path / "nvidia-oss-modules.yaml"
    patch.write_text(
        "machine:\n  kernel:\n    modules:\n      - name: nvidia\n      - name: nvidia_uvm\n"
        "      - name: nvidia_drm\n      - name: nvidia_modeset\n  sysctls:\n    net.core.bpf_jit_harden: 1\n"
    )
    before = state.load(tmp_path)
    dry = talosctl(config, "patch", "mc", "--patch", f"@{patch}", "--dry-run")
    assert dry.returncode == 0 and dry.stdout == ""
    assert dry.stderr.startswith(f"patched MachineConfigs.config.talos.dev/v1alpha1 at the node {NODE}\nDry run summary:\n")
    assert "Applied configuration without a reboot (skipped in dry-run).\nConfig diff:\n" in dry.stderr
    assert "+            - name: nvidia_uvm\n" in dry.stderr
    assert state.load(tmp_path)["talos"] == before["talos"]

    applied = talosctl(config, "patch", "machineconfig", "--patch", f"@{patch}")
    assert applied.returncode == 0 and applied.stdout == ""
    assert applied.stderr == (
        f"patched MachineConfigs.config.talos.dev/v1alpha1 at the node {NODE}\nApplied configuration without a reboot\n"
    )
    loaded = talosctl(config, "get", "modules").stdout
    assert re.search(r"nvidia_uvm\s+1\s+Live", loaded)
    assert talosctl(config, "read", "/proc/sys/net/core/bpf_jit_harden").stdout == "1\n"
    assert talosctl(config, "read", "/proc/driver/nvidia/version").returncode == 0

    again = talosctl(config, "patch", "mc", "--patch-file", str(patch))
    assert again.returncode == 0
    assert again.stderr == "Apply was skipped: no changes detected.\n"


def test_a_machine_files_patch_reboots_and_a_var_file_appears_only_after(tmp_path: Path) -> None:
    config = make_lab(tmp_path, "healthy", reboot_s=60.0)
    patch = tmp_path / "var-file.yaml"
    patch.write_text("machine:\n  files:\n    - content: |\n        hello\n      permissions: 0o644\n"
                     "      path: /var/etc/hello.conf\n      op: create\n")
    result = talosctl(config, "patch", "mc", "--patch", f"@{patch}")
    assert result.returncode == 0
    assert result.stderr.endswith("Applied configuration with a reboot\n")
    during = talosctl(config, "read", "/var/etc/hello.conf")
    assert during.returncode == 1
    assert "connection refused" in during.stderr
    finish_reboot(tmp_path)
    after = talosctl(config, "read", "/var/etc/hello.conf")
    assert after.returncode == 0
    assert after.stdout == "hello\n"


def test_patch_rejects_an_unknown_mode(healthy: Path, tmp_path: Path) -> None:
    patch = tmp_path / "p.yaml"
    patch.write_text("machine:\n  sysctls:\n    vm.swappiness: 1\n")
    result = talosctl(healthy, "patch", "mc", "--patch", f"@{patch}", "--mode", "sometimes")
    assert result.returncode == 1
    assert result.stderr.startswith('Error: invalid argument "sometimes" for "-m, --mode" flag')


def test_upgrade_installs_the_extensions_through_a_reboot(tmp_path: Path) -> None:
    config = make_lab(tmp_path, "extensions-missing", reboot_s=0.6)
    started = time.monotonic()
    result = talosctl(config, "upgrade", "--nodes", NODE, "--image", PRODUCTION_IMAGE)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"watching nodes: [{NODE}]"
    assert lines[1] == f"    * {NODE}: waiting for actor ID"
    assert f"    * {NODE}: unavailable, retrying..." in lines
    assert lines[-1] == f"    * {NODE}: post check passed"
    assert 1.5 < elapsed < 12
    extensions = talosctl(config, "get", "extensions").stdout
    assert "nvidia-open-gpu-kernel-modules-production   570.172.08-v1.11.5" in extensions
    assert schematics.PRODUCTION_ID in extensions
    version = talosctl(config, "read", "/proc/driver/nvidia/version")
    assert "570.172.08" in version.stdout


def test_upgrade_to_an_unknown_schematic_fails_with_not_found(healthy: Path) -> None:
    image = f"factory.talos.dev/installer/{UNKNOWN_ID}:v1.11.5"
    before = state.load(healthy.parent)["talos"]
    result = talosctl(healthy, "upgrade", "--image", image)
    assert result.returncode == 1
    assert f'error validating installer image "{image}": 1 error(s) occurred:' in result.stdout
    assert f"{image}: not found" in result.stderr
    reference = sample("talos/upgrade-output-legacy-image-not-found.txt").splitlines()[2]
    assert reference.strip().startswith("failed to pull image")
    assert result.stdout.splitlines()[2].strip().startswith(f'failed to pull image "{image}": failed to resolve reference')
    assert state.load(healthy.parent)["talos"] == before


def test_upgrade_without_image_goes_vanilla_and_drops_extensions(tmp_path: Path) -> None:
    config = make_lab(tmp_path, "healthy")
    result = talosctl(config, "upgrade", "--wait=false")
    assert result.returncode == 0
    assert header_cells(result.stdout.splitlines()[0]) == ["NODE", "ACK", "STARTED"]
    finish_reboot(tmp_path)
    extensions = talosctl(config, "get", "extensions").stdout.splitlines()
    assert len(extensions) == 2 and schematics.VANILLA_ID in extensions[1]
    assert talosctl(config, "read", "/proc/driver/nvidia/version").returncode == 1


def test_sigterm_stops_the_upgrade_but_not_the_reboot(tmp_path: Path) -> None:
    config = make_lab(tmp_path, "extensions-missing", reboot_s=6.0)
    command = [sys.executable, "-m", "lab.talosctl", "--talosconfig", str(config), "-n", NODE,
               "upgrade", "--image", PRODUCTION_IMAGE]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.8)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0
    assert state.load(tmp_path)["talos"]["reboot"]["reason"] == "upgrade"


def test_command_line_errors(healthy: Path) -> None:
    unknown_flag = talosctl(healthy, "get", "extensions", "--bogus")
    assert (unknown_flag.returncode, unknown_flag.stderr) == (1, "Error: unknown flag: --bogus\n")
    unknown_resource = talosctl(healthy, "get", "frobs")
    assert unknown_resource.returncode == 1
    assert unknown_resource.stderr == 'rpc error: code = NotFound desc = resource "frobs" is not registered\n'
    other_node = subprocess.run(
        [sys.executable, "-m", "lab.talosctl", "--talosconfig", str(healthy), "--nodes=10.9.9.9", "get", "extensions"],
        cwd=REPO, capture_output=True, text=True, timeout=20,
    )
    assert other_node.returncode == 1
    assert other_node.stderr.startswith("rpc error: code = Unavailable desc = connection error: ")
    assert "10.9.9.9:50000" in other_node.stderr


def test_version_and_global_flags_anywhere(healthy: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lab.talosctl", "version", "--talosconfig", str(healthy), "-n", NODE, "--short"],
        cwd=REPO, capture_output=True, text=True, timeout=20,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("Client:\n\tTalos v1.11.5\nServer:\n\tNODE:        10.5.0.2\n\tTag:         v1.11.5\n")


def test_faults_target_one_subcommand(healthy: Path) -> None:
    faults.set_fault(healthy.parent, "talosctl_exit", {"code": 7, "stderr": "boom", "only": "get extensions"})
    failed = talosctl(healthy, "get", "extensions", "-o", "yaml")
    assert (failed.returncode, failed.stderr) == (7, "boom\n")
    assert talosctl(healthy, "get", "modules").returncode == 0
    faults.clear_faults(healthy.parent)
    faults.set_fault(healthy.parent, "talosctl_truncate", True)
    cut = talosctl(healthy, "get", "extensions", "-o", "json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.stdout)
    faults.clear_faults(healthy.parent)
    faults.set_fault(healthy.parent, "talosctl_garbage", {"only": "read"})
    junk = subprocess.run(
        [sys.executable, "-m", "lab.talosctl", "--talosconfig", str(healthy), "read", "/proc/modules"],
        cwd=REPO, capture_output=True, timeout=20,
    )
    assert junk.returncode == 0
    with pytest.raises(UnicodeDecodeError):
        junk.stdout.decode("utf-8")


def test_huge_hang_and_slow_faults(healthy: Path) -> None:
    faults.set_fault(healthy.parent, "talosctl_huge_mb", 1)
    huge = talosctl(healthy, "get", "extensions")
    assert huge.returncode == 0 and len(huge.stdout) >= 1024 * 1024
    faults.clear_faults(healthy.parent)
    faults.set_fault(healthy.parent, "talosctl_slow_stream_ms", {"ms": 60})
    started = time.monotonic()
    slow = talosctl(healthy, "get", "extensions")
    assert slow.returncode == 0 and time.monotonic() - started >= 5 * 0.06
    faults.clear_faults(healthy.parent)
    faults.set_fault(healthy.parent, "talosctl_hang", {"only": "health"})
    with pytest.raises(subprocess.TimeoutExpired):
        talosctl(healthy, "health", timeout=1.0)
    assert talosctl(healthy, "get", "version").returncode == 0


def test_latency_knob_delays_each_reply(tmp_path: Path) -> None:
    config = make_lab(tmp_path, "healthy", talosctl_latency_ms=400)
    started = time.monotonic()
    assert talosctl(config, "get", "version").returncode == 0
    assert time.monotonic() - started >= 0.4
