"""Talos 1.13 end to end: `talos-gpu lab --talos-version v1.13.9` (the lab's side of issue 13), then `check` and
`enable --yes` as subprocesses, with real talosctl/helm wrappers and the lab's Kubernetes API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from checks.stages import STAGE_IDS
from tests.paths import REPO

VERSION = "v1.13.9"
START_TIMEOUT_S = 30.0


class Lab:
    def __init__(self, scenario: str, talos_version: str) -> None:
        env = {**os.environ, "TALOS_GPU_LAB_REBOOT_S": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "tui.cli", "lab", "--scenario", scenario,
                                         "--talos-version", talos_version], cwd=REPO, env=env, text=True,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        start_new_session=True)
        self.env: dict[str, str] = {}
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("export "):
                key, _, value = line[len("export "):].strip().partition("=")
                self.env[key] = value.replace('"$PATH"', os.environ.get("PATH", ""))
            if {"KUBECONFIG", "TALOSCONFIG", "PATH"} <= set(self.env):
                return
        self.process.wait(timeout=10)
        error = self.process.stderr.read() if self.process.stderr is not None else ""
        self.stop()
        raise AssertionError(f"the lab did not start: exit {self.process.returncode}: {error}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), cwd=REPO, env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def talos_gpu(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "tui.cli", *args, timeout=timeout)

    def check(self, infra: Path) -> dict[str, Any]:
        done = self.talos_gpu("check", "--json", "--infra-repo", str(infra))
        assert done.returncode in (0, 1), done.stderr
        return json.loads(done.stdout)

    def kube(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=self.env["KUBECONFIG"])


@pytest.fixture
def lab_on() -> Iterator[Callable[[str], Lab]]:
    started: list[Lab] = []

    def start(scenario: str) -> Lab:
        lab = Lab(scenario, VERSION)
        started.append(lab)
        return lab

    yield start
    for lab in started:
        lab.stop()


def _stages(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert [s["id"] for s in report["stages"]] == list(STAGE_IDS)
    return {s["id"]: s for s in report["stages"]}


def _enable(lab: Lab, tmp_path: Path, infra: Path) -> subprocess.CompletedProcess[str]:
    env_state = {"XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    lab.env.update(env_state)
    done = lab.talos_gpu("enable", "--yes", "--infra-repo", str(infra), timeout=300)
    print(done.stdout[-6000:])
    return done


def _operator_state(lab: Lab) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(ClusterPolicy cluster-policy, RuntimeClass nvidia, helm list -A)"""
    api = lab.kube()
    try:
        policy = api.call_api("/apis/nvidia.com/v1/clusterpolicies/cluster-policy", "GET",
                              auth_settings=["BearerToken"], response_type="object", _return_http_data_only=True)
        runtime_class = api.call_api("/apis/node.k8s.io/v1/runtimeclasses/nvidia", "GET",
                                     auth_settings=["BearerToken"], response_type="object",
                                     _return_http_data_only=True)
    finally:
        api.close()
    listed = lab.run(lab.env.get("HELM", "helm"), "list", "-A", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    return policy, runtime_class, json.loads(listed.stdout or "[]")


def _never_the_sysctl_nor_no_cgroups(lab: Lab, infra: Path) -> None:
    assert not (infra / "talos" / "patches" / "nvidia-no-cgroups.yaml").exists()
    patch = infra / "talos" / "patches" / "nvidia-oss-modules.yaml"
    assert patch.is_file() and "bpf_jit_harden" not in patch.read_text()
    config = lab.run("talosctl", "--nodes", "10.5.0.2", "get", "machineconfig", "-o", "yaml")
    assert config.returncode == 0, config.stderr
    assert "bpf_jit_harden" not in config.stdout
    assert "nvidia-container-runtime/config.toml" not in config.stdout


def test_fresh_1_13_is_checked_and_enabled_on_the_operator_path(lab_on: Callable[[str], Lab], tmp_path: Path) -> None:
    lab = lab_on("fresh")
    infra = tmp_path / "infra"
    infra.mkdir()
    report = lab.check(infra)
    assert (report["path"], report["talos_version"]) == ("gpu-operator", VERSION)
    assert report["root_cause"]["stage"] == "extensions", report["root_cause"]
    done = _enable(lab, tmp_path, infra)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    final = lab.check(infra)
    stages = _stages(final)
    assert final["overall"] == "pass", [(s["id"], s["status"], s["summary"]) for s in final["stages"]]
    assert stages["device-plugin"]["status"] == "pass" and "ClusterPolicy cluster-policy ready" in \
        stages["device-plugin"]["summary"]
    policy, runtime_class, releases = _operator_state(lab)
    assert policy["status"]["state"] == "ready"
    owners = runtime_class["metadata"].get("ownerReferences") or []
    assert [(o["kind"], o["name"]) for o in owners] == [("ClusterPolicy", "cluster-policy")]
    assert ("gpu-operator", "gpu-operator") in {(r["name"], r["namespace"]) for r in releases}
    assert "nvidia-device-plugin" not in {r["name"] for r in releases}
    assert "upgrade --install gpu-operator nvidia/gpu-operator -n gpu-operator --version v26.3.1" in done.stdout
    _never_the_sysctl_nor_no_cgroups(lab, infra)


def test_old_path_leftovers_are_named_and_removed(lab_on: Callable[[str], Lab], tmp_path: Path) -> None:
    lab = lab_on("old-path-leftovers")
    infra = tmp_path / "infra"
    infra.mkdir()
    report = lab.check(infra)
    assert report["path"] == "gpu-operator"
    assert report["root_cause"]["stage"] == "device-plugin", report["root_cause"]
    evidence = "\n".join(_stages(report)["device-plugin"]["evidence"])
    assert "nvidia-device-plugin" in evidence and "leftover of the device-plugin path" in evidence
    assert "no ClusterPolicy owner (made by hand)" in evidence
    assert "uninstall the nvidia-device-plugin helm chart" in report["root_cause"]["summary"]
    done = _enable(lab, tmp_path, infra)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "uninstall nvidia-device-plugin" in done.stdout and "kubectl delete runtimeclass nvidia" in done.stdout
    final = lab.check(infra)
    assert final["overall"] == "pass", [(s["id"], s["status"], s["summary"]) for s in final["stages"]]
    _, runtime_class, releases = _operator_state(lab)
    assert "nvidia-device-plugin" not in {r["name"] for r in releases}
    assert [o["kind"] for o in runtime_class["metadata"].get("ownerReferences") or []] == ["ClusterPolicy"]
