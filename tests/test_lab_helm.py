"""The lab's helm, run as a real subprocess against a state directory built from a scenario."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from lab import chart, faults, scenarios, state
from tests.paths import REPO, sample

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: dGVzdA==
users:
- name: admin
  user:
    token: LAB-SECRET-TOKEN
contexts:
- name: lab
  context:
    cluster: lab
    user: admin
current-context: lab
"""
SEED_VALUES = """\
runtimeClassName: nvidia
affinity: null
nodeSelector:
  kubernetes.io/os: linux
tolerations:
  - key: node-role.kubernetes.io/control-plane
    operator: Exists
    effect: NoSchedule
  - key: CriticalAddonsOnly
    operator: Exists
"""
INSTALL = ["upgrade", "--install", "nvidia-device-plugin", "nvdp/nvidia-device-plugin", "-n", "kube-system"]


def make_lab(directory: Path, scenario: str, **knobs: Any) -> Path:
    built = scenarios.build(scenario)
    built["knobs"].update(knobs)
    state.init(directory, built)
    (directory / "kubeconfig").write_text(KUBECONFIG)
    return directory


def helm(lab: Path, *args: str, use_env: bool = False) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    if use_env:
        environment["KUBECONFIG"] = str(lab / "kubeconfig")
        command = [sys.executable, "-m", "lab.helm", *args]
    else:
        environment.pop("KUBECONFIG", None)
        command = [sys.executable, "-m", "lab.helm", "--kubeconfig", str(lab / "kubeconfig"), *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=20, env=environment)


def daemonsets(lab: Path) -> list[dict[str, Any]]:
    return state.load(lab)["kube"]["daemonsets"]


def test_install_needs_the_repo_then_renders_the_seed_daemonset(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, "fresh")
    values = tmp_path / "values.yaml"
    values.write_text(SEED_VALUES)
    missing = helm(lab, *INSTALL, "-f", str(values))
    assert (missing.returncode, missing.stderr) == (1, "Error: repo nvdp not found\n")

    added = helm(lab, "repo", "add", "nvdp", "https://nvidia.github.io/k8s-device-plugin", use_env=True)
    assert added.stdout == '"nvdp" has been added to your repositories\n'
    assert helm(lab, "repo", "update").stdout.endswith("Update Complete. ⎈Happy Helming!⎈\n")

    installed = helm(lab, *INSTALL, "-f", str(values))
    assert installed.returncode == 0, installed.stderr
    lines = installed.stdout.splitlines()
    assert lines[0] == 'Release "nvidia-device-plugin" does not exist. Installing it now.'
    assert lines[1:] and [line.split(":")[0] for line in lines[1:]] == [
        line.split(":")[0] for line in sample("k8s/helm-upgrade-install-output-nvdp-0.14.3.txt").splitlines()[6:]
    ]
    (daemonset,) = daemonsets(lab)
    assert daemonset["metadata"]["name"] == "nvidia-device-plugin"
    assert daemonset["metadata"]["namespace"] == "kube-system"
    assert daemonset["metadata"]["labels"]["app.kubernetes.io/name"] == "nvidia-device-plugin"
    assert daemonset["metadata"]["labels"]["app.kubernetes.io/instance"] == "nvidia-device-plugin"
    pod = daemonset["spec"]["template"]["spec"]
    assert "affinity" not in pod
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["containers"][0]["name"] == "nvidia-device-plugin-ctr"
    assert pod["containers"][0]["image"] == "nvcr.io/nvidia/k8s-device-plugin:v0.17.3"
    assert [toleration["key"] for toleration in pod["tolerations"]] == [
        "node-role.kubernetes.io/control-plane", "CriticalAddonsOnly"]
    (release,) = state.load(lab)["helm"]["releases"]
    assert release["values"] == yaml.safe_load(SEED_VALUES)

    upgraded = helm(lab, *INSTALL, "-f", str(values))
    assert upgraded.stdout.startswith('Release "nvidia-device-plugin" has been upgraded. Happy Helming!\nNAME:')
    assert "REVISION: 2\n" in upgraded.stdout


def test_dry_run_renders_and_stores_nothing(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, "fresh")
    assert helm(lab, "repo", "add", "nvdp", "https://nvidia.github.io/k8s-device-plugin", use_env=True).returncode == 0
    values = tmp_path / "values.yaml"
    values.write_text(SEED_VALUES)
    before = state.load(lab)
    dry = helm(lab, *INSTALL, "-f", str(values), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith('Release "nvidia-device-plugin" does not exist. Installing it now.\nNAME:')
    assert "STATUS: pending-install\n" in dry.stdout and "REVISION: 1\n" in dry.stdout
    manifest = yaml.safe_load(dry.stdout.split("MANIFEST:\n", 1)[1])
    assert manifest["kind"] == "DaemonSet" and "status" not in manifest
    assert manifest["spec"]["template"]["spec"]["runtimeClassName"] == "nvidia"
    after = state.load(lab)
    assert after["helm"]["releases"] == before["helm"]["releases"] == []
    assert after["kube"]["daemonsets"] == before["kube"]["daemonsets"]


def test_chart_defaults_carry_the_nfd_affinity(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, "plugin-missing")
    result = helm(lab, "upgrade", "-i", "nvdp", "nvdp/nvidia-device-plugin", "--namespace", "nvidia",
                  "--create-namespace", "--version", "0.17.3")
    assert result.returncode == 0, result.stderr
    (daemonset,) = daemonsets(lab)
    assert daemonset["metadata"]["name"] == "nvdp-nvidia-device-plugin"
    pod = daemonset["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    keys = [term["matchExpressions"][0]["key"] for term in terms]
    assert keys == ["feature.node.kubernetes.io/pci-10de.present", "feature.node.kubernetes.io/cpu-model.vendor_id",
                    "nvidia.com/gpu.present"]
    assert "runtimeClassName" not in pod
    assert "nvidia" in [item["metadata"]["name"] for item in state.load(lab)["kube"]["namespaces"]]


def test_list_status_and_values_formats(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, "healthy")
    table = helm(lab, "list", "-A").stdout.splitlines()
    reference = sample("k8s/helm-ls-table-nvdp-0.17.3.txt").splitlines()[0]
    assert re.split(r"\s{2,}|\t", table[0].strip()) == re.split(r"\s{2,}", reference.strip())
    assert "\tkube-system\t" in table[1] and "nvidia-device-plugin-0.17.3" in table[1]
    assert helm(lab, "list").stdout.count("\n") == 1  # the default namespace has no release

    (entry,) = json.loads(helm(lab, "ls", "-A", "-o", "json").stdout)
    assert set(entry) == set(yaml.safe_load(sample("k8s/helm-list-oyaml-shape.yaml"))[0])
    assert entry["revision"] == "1" and entry["chart"] == "nvidia-device-plugin-0.17.3"
    listed = helm(lab, "list", "-n", "kube-system", "-o", "yaml").stdout
    assert listed.startswith("- app_version: 0.17.3\n  chart: nvidia-device-plugin-0.17.3\n")
    assert '  revision: "1"\n' in listed

    status = json.loads(helm(lab, "status", "nvidia-device-plugin", "-n", "kube-system", "-o", "json").stdout)
    assert status["info"]["status"] == "deployed" and status["version"] == 1
    assert "# Source: nvidia-device-plugin/templates/daemonset-device-plugin.yml" in status["manifest"]
    plain = helm(lab, "status", "nvidia-device-plugin", "-n", "kube-system").stdout
    assert plain.startswith("NAME: nvidia-device-plugin\nLAST DEPLOYED: ")
    values = helm(lab, "get", "values", "nvidia-device-plugin", "-n", "kube-system").stdout
    assert values.startswith("USER-SUPPLIED VALUES:\naffinity: null\n")
    missing = helm(lab, "status", "nope", "-n", "kube-system")
    assert (missing.returncode, missing.stderr) == (1, "Error: release: not found\n")


def test_uninstall_removes_release_and_daemonset(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, "healthy")
    result = helm(lab, "uninstall", "nvidia-device-plugin", "-n", "kube-system")
    assert result.stdout == 'release "nvidia-device-plugin" uninstalled\n'
    assert daemonsets(lab) == [] and state.load(lab)["helm"]["releases"] == []
    again = helm(lab, "uninstall", "nvidia-device-plugin", "-n", "kube-system")
    assert again.returncode == 1 and "release: not found" in again.stderr


def test_errors_faults_and_latency(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, "healthy", talosctl_latency_ms=300)
    assert helm(lab, "list", "--bogus").stderr == "Error: unknown flag: --bogus\n"
    refused = helm(lab, "install", "x", "nvdp/nvidia-device-plugin", "-n", "default")
    assert refused.returncode == 1 and "Running in the 'default' namespace is not recommended" in refused.stderr
    faults.set_fault(lab, "helm_exit", {"code": 3, "stderr": "Error: Kubernetes cluster unreachable", "only": "list"})
    started = time.monotonic()
    failed = helm(lab, "list", "-A")
    assert time.monotonic() - started >= 0.3
    assert (failed.returncode, failed.stderr) == (3, "Error: Kubernetes cluster unreachable\n")
    assert helm(lab, "repo", "list").returncode == 0


def test_chart_naming_rule() -> None:
    assert chart.fullname("nvidia-device-plugin", chart.merged_values({})) == "nvidia-device-plugin"
    assert chart.fullname("nvdp", chart.merged_values({})) == "nvdp-nvidia-device-plugin"
    assert chart.fullname("my-nvidia-device-plugin-x", chart.merged_values({})) == "my-nvidia-device-plugin-x"
    assert "affinity" not in chart.merged_values({"affinity": None})
