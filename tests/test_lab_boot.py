"""The lab boots like Talos for `machine.files` (FACTS.md, "The runbook's no-cgroups patch on real Talos"),
seen as a user sees it: the lab's own `talosctl` and a real `kubectl` against the running lab."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.runtime import LabHandle, start_lab
from lab.scenarios import RUNBOOK_PATCH

NODE = "10.5.0.2"
REFUSED = 'create operation not allowed outside of /var: "/etc/nvidia-container-runtime/config.toml"'
WAIT_S = 4.0
REBOOT_S = 1.0


@pytest.fixture
def lab() -> Iterator[LabHandle]:
    handle = start_lab("healthy", knobs={"reboot_s": REBOOT_S, "boot_fail_wait_s": WAIT_S})
    try:
        yield handle
    finally:
        handle.stop()


def run(lab: LabHandle, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **lab.env}
    return subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def talosctl(lab: LabHandle, *args: str) -> subprocess.CompletedProcess[str]:
    return run(lab, "talosctl", *args)


def wait_until(predicate, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def stage(lab: LabHandle) -> str:
    result = talosctl(lab, "get", "machinestatus", "-o", "json")
    if result.returncode != 0:
        return "down"
    return json.loads(result.stdout)["spec"]["stage"]


def test_the_runbook_patch_wedges_the_node_until_the_entry_is_removed(lab: LabHandle, tmp_path: Path) -> None:
    patch = tmp_path / "nvidia-no-cgroups.yaml"
    patch.write_text(RUNBOOK_PATCH)
    applied = talosctl(lab, "patch", "mc", "--patch", f"@{patch}")
    assert applied.returncode == 0  # Talos accepts it: nothing checks the file rules when a patch is applied
    assert applied.stderr.endswith("Applied configuration with a reboot\n")  # machine.files never applies live
    wait_until(lambda: stage(lab) == "booting")

    status = json.loads(talosctl(lab, "get", "machinestatus", "-o", "json").stdout)["spec"]
    assert status["stage"] == "booting" and status["status"]["ready"] is False
    assert {c["name"] for c in status["status"]["unmetConditions"]} >= {"services", "nodeReady"}
    dmesg = talosctl(lab, "dmesg")
    assert dmesg.returncode == 0  # apid answers throughout
    assert (f"{NODE}: user: warning: " in dmesg.stdout and "[talos] writeUserFiles failed, rebooting in 35 minutes. "
            "You can use talosctl apply-config or talosctl edit mc to fix the issues, error: " + REFUSED
            in dmesg.stdout)
    lines = dmesg.stdout.splitlines()
    failed = [i for i, line in enumerate(lines) if "phase userSetup (14/23): failed" in line]
    sequence = [i for i, line in enumerate(lines) if "boot sequence: failed" in line]
    assert failed and sequence and failed[0] < sequence[0]
    health = talosctl(lab, "health", "--wait-timeout", "1s")
    assert health.returncode == 1 and health.stderr.endswith("context deadline exceeded\n")
    services = talosctl(lab, "services").stdout
    assert "apid" in services and "kubelet" not in services and "ext-nvidia-persistenced" not in services
    # the single node's Kubernetes API is down (the kubelet never started its static pods): nothing answers,
    # every connection is reset at once (a real node refuses it: nothing listens)
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(lab.kubeconfig))
    try:
        with pytest.raises(Exception, match="reset|closed|aborted|EOF|Max retries"):
            client.CoreV1Api(api).list_node(_request_timeout=3)
    finally:
        api.close()
    if shutil.which("kubectl"):
        nodes = run(lab, "kubectl", "get", "nodes", "--request-timeout=1s")
        assert nodes.returncode == 1 and "connection reset by peer" in nodes.stderr, nodes.stderr

    # after the wait the node reboots (the API goes away) and stops at the same place again
    wait_until(lambda: stage(lab) == "down", timeout=WAIT_S + 5)
    wait_until(lambda: stage(lab) == "booting", timeout=REBOOT_S + 5)
    assert REFUSED in talosctl(lab, "dmesg").stdout

    removal = tmp_path / "remove.json"
    removal.write_text('[{"op": "remove", "path": "/machine/files/0"}]')
    fixed = talosctl(lab, "patch", "mc", "--patch", f"@{removal}")
    assert fixed.returncode == 0 and fixed.stderr.endswith("Applied configuration with a reboot\n")
    wait_until(lambda: stage(lab) == "running", timeout=REBOOT_S + 5)
    assert "writeUserFiles failed" not in talosctl(lab, "dmesg").stdout
    assert "ext-nvidia-persistenced   Running" in talosctl(lab, "services").stdout
    if shutil.which("kubectl"):
        ready = wait_until(lambda: (r := run(lab, "kubectl", "get", "nodes", "--request-timeout=5s")).returncode == 0
                           and " Ready " in r.stdout and r)
        assert "gpu-node-1" in ready.stdout
    import yaml

    config = yaml.safe_load(yaml.safe_load(talosctl(lab, "get", "mc", "-o", "yaml").stdout)["spec"])
    assert "files" not in config["machine"]


def test_files_under_var_are_written_and_boot_through(lab: LabHandle, tmp_path: Path) -> None:
    patch = tmp_path / "var.yaml"
    patch.write_text("machine:\n  files:\n    - content: hello\n      permissions: 0o644\n"
                     "      path: /var/etc/hello.conf\n      op: create\n")
    assert talosctl(lab, "patch", "mc", "--patch", f"@{patch}").returncode == 0
    wait_until(lambda: stage(lab) == "running", timeout=REBOOT_S + 5)
    assert talosctl(lab, "read", "/var/etc/hello.conf").stdout == "hello"
    listed = talosctl(lab, "ls", "/var/etc").stdout.splitlines()
    assert listed[0].split() == ["NODE", "NAME"] and listed[-1].split() == [NODE, "hello.conf"]


def test_the_toolkit_extension_as_talosctl_shows_it(lab: LabHandle) -> None:
    short = talosctl(lab, "ls", "/etc/cri/conf.d")
    assert short.returncode == 0
    assert [line.split() for line in short.stdout.splitlines()] == [
        ["NODE", "NAME"], [NODE, "."], [NODE, "10-nvidia-container-runtime.part"], [NODE, "cri.toml"]]
    long = talosctl(lab, "ls", "-l", "/etc/cri/conf.d").stdout.splitlines()
    assert long[0].split() == ["NODE", "MODE", "UID", "GID", "SIZE(B)", "LASTMOD", "NAME"]
    assert long[3].split()[1] == "-rw-------" and long[3].split()[-1] == "cri.toml"  # 0600: os:admin to read
    part = talosctl(lab, "read", "/etc/cri/conf.d/10-nvidia-container-runtime.part").stdout
    assert '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nvidia]' in part
    shipped = talosctl(lab, "read", "/usr/local/etc/nvidia-container-runtime/config.toml").stdout
    assert "#no-cgroups = false" in shipped
    missing = talosctl(lab, "read", "/etc/nvidia-container-runtime/config.toml")
    assert missing.returncode == 1 and "no such file or directory" in missing.stderr
    services = talosctl(lab, "services").stdout.splitlines()
    assert services[0].split() == ["NODE", "SERVICE", "STATE", "HEALTH", "LAST", "CHANGE", "LAST", "EVENT"]
    row = next(line for line in services if "ext-nvidia-persistenced" in line).split()
    assert row[:4] == [NODE, "ext-nvidia-persistenced", "Running", "?"] and row[5] == "ago"
    one = talosctl(lab, "service", "ext-nvidia-persistenced").stdout.splitlines()
    assert [line.split()[0] for line in one[:5]] == ["NODE", "ID", "STATE", "HEALTH", "EVENTS"]
    assert one[2].split() == ["STATE", "Running"]
    logs = talosctl(lab, "logs", "ext-nvidia-persistenced")
    assert logs.returncode == 0 and "NVIDIA Persistence Daemon" in logs.stdout
    unknown = talosctl(lab, "service", "nope")
    assert unknown.returncode == 1 and 'service "nope" is not registered' in unknown.stderr
    nothing = talosctl(lab, "ls", "/nope")
    assert nothing.stdout.split() == ["NODE", "NAME"] and "no such file or directory" in nothing.stderr


def test_a_node_without_the_toolkit_has_none_of_it() -> None:
    handle = start_lab("fresh", knobs={"reboot_s": REBOOT_S})
    try:
        listed = talosctl(handle, "ls", "/etc/cri/conf.d").stdout
        assert "10-nvidia-container-runtime.part" not in listed and "cri.toml" in listed
        assert "ext-nvidia-persistenced" not in talosctl(handle, "services").stdout
        assert talosctl(handle, "read", "/usr/local/etc/nvidia-container-runtime/config.toml").returncode == 1
    finally:
        handle.stop()


def test_the_machine_config_is_served_as_talos_presents_it(lab: LabHandle) -> None:
    """`get mc -o yaml`: the config as a YAML string under spec, secrets included (lab markers)."""
    import yaml

    result = talosctl(lab, "get", "mc", "-o", "yaml")
    assert result.returncode == 0
    document = yaml.safe_load(result.stdout)
    assert document["metadata"]["type"] == "MachineConfigs.config.talos.dev"
    assert isinstance(document["spec"], str) and "SECRET" in document["spec"]
    assert yaml.safe_load(document["spec"])["machine"]["kernel"]["modules"][0] == {"name": "nvidia"}
