"""`talos-gpu check` as a subprocess against the lab: every scenario names its root cause."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.stages import STAGE_IDS
from lab.scenarios import OPERATOR_SCENARIOS
from lab.scenarios import SCENARIOS as LAB_SCENARIOS
from tests.paths import REPO

# scenario -> (root-cause stage or None, words the root cause's summary must quote, statuses to expect)
SCENARIOS: dict[str, tuple[str | None, tuple[str, ...], dict[str, str]]] = {
    "healthy": (None, (), {s: "pass" for s in STAGE_IDS if s != "gpu-workload"} | {"gpu-workload": "skipped"}),
    "fresh": ("extensions", ("nvidia-open-gpu-kernel-modules-production", "not installed"),
              {"cluster": "pass", "extensions": "fail", "kernel-modules": "blocked", "device-plugin": "blocked"}),
    "extensions-missing": ("extensions", ("not installed",), {"kernel-modules": "blocked", "runtimeclass": "pass"}),
    "mixed-tracks": ("extensions", ("mixed tracks", "lts"), {"extensions": "fail"}),
    "driver-mismatch": ("extensions", ("driver versions differ", "570.158.01"), {"extensions": "fail"}),
    "modules-not-loaded": ("kernel-modules", ("not loaded",), {"extensions": "pass", "device-plugin": "blocked"}),
    "bpf-sysctl-missing": ("kernel-modules", ("bpf_jit_harden",), {"kernel-modules": "fail"}),
    # the profile's infra repo (the current directory) holds no patch: the node itself is healthy
    "runbook-patch-in-repo": (None, (), {"container-runtime": "pass"}),
    "runtimeclass-missing": ("runtimeclass", ('RuntimeClass "nvidia" not found',),
                             {"runtimeclass": "fail", "device-plugin": "blocked"}),
    "nfd-affinity": ("device-plugin", ("DESIRED 0", "feature.node.kubernetes.io/pci-10de.present"),
                     {"device-plugin": "fail", "gpu-resources": "blocked"}),
    "no-runtimeclassname": ("device-plugin", ("runtimeClassName",), {"device-plugin": "fail"}),
    "plugin-missing": ("device-plugin", ("not installed",), {"device-plugin": "fail"}),
    "gpu-not-initialised": ("kernel-modules", ("RmInitAdapter", "0000:8b:00.0"),
                            {"device-plugin": "pass", "gpu-resources": "blocked"}),
    "node-notready": ("cluster", ("NotReady",), {"cluster": "fail"}),
    # issue #14's classes (tests/test_diagnosis_scenarios.py looks closer)
    "taint-not-tolerated": ("device-plugin", ("DESIRED 0", "nvidia.com/gpu=present:NoSchedule"),
                            {"device-plugin": "fail", "gpu-resources": "blocked"}),
    "open-module-unsupported-gpu": ("kernel-modules", ("not supported by open", "0000:8b:00.0"),
                                    {"device-plugin": "pass", "gpu-resources": "blocked"}),
    "ebpf-hook-rejected": ("kernel-modules", ("bpf_jit_harden",), {"device-plugin": "blocked"}),
    "cni-not-initialised": ("cluster", ("cni plugin not initialized",), {"cluster": "fail"}),
    "xid-unhealthy": ("gpu-resources", ("unhealthy", "Xid 48"), {"device-plugin": "pass", "kernel-modules": "pass"}),
    "multi-gpu-nodes-one-failing": (None, (), {"device-plugin": "pass"}),
    "multi-gpu-nodes-this-failing": ("kernel-modules", ("not loaded",), {"device-plugin": "blocked"}),
    "static-manifest": ("device-plugin", ("nvidia-device-plugin-daemonset", "DESIRED 0"), {"device-plugin": "fail"}),
    "static-manifest-adapted": (None, (), {"device-plugin": "pass"}),
}


def run_check(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "tui.cli", "check", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_check_json_names_the_root_cause(lab: Any, scenario: str) -> None:
    handle = lab(scenario)
    result = run_check(handle.env, "--json")
    expected_cause, quoted, statuses = SCENARIOS[scenario]
    assert result.returncode == (0 if expected_cause is None else 1), result.stderr
    report = json.loads(result.stdout)
    assert report["schema"] == 1
    assert report["node"] == "10.5.0.2"
    assert report["kube_node"] == "gpu-node-1"
    assert [s["id"] for s in report["stages"]] == list(STAGE_IDS)
    for stage in report["stages"]:
        assert set(stage) == {"id", "title", "status", "summary", "evidence", "remediation", "advice", "blocked_by",
                              "duration_ms"}
        assert stage["status"] in ("pass", "warn", "fail", "blocked", "unknown", "skipped")
        if stage["status"] == "blocked":
            assert stage["blocked_by"] in STAGE_IDS
        if stage["status"] == "fail":
            assert stage["remediation"], f"{stage['id']} fails without a remediation"
        for line in stage["evidence"]:
            assert ":" in line, f"evidence without a source: {line!r}"
    by_id = {s["id"]: s for s in report["stages"]}
    for stage_id, status in statuses.items():
        assert by_id[stage_id]["status"] == status, (stage_id, by_id[stage_id])
    if expected_cause is None:
        assert report["overall"] == "pass" and report["root_cause"] is None
        return
    assert report["overall"] == "fail"
    cause = report["root_cause"]
    assert cause["stage"] == expected_cause, cause
    for words in quoted:
        assert words in cause["summary"], (words, cause["summary"])
    assert cause["remediation"]


def test_a_node_wedged_by_the_runbook_patch_is_named_with_the_kernel_log(lab: Any) -> None:
    """The runbook's step 4.1 applied: every boot stops in writeUserFiles. `check --json` names cluster,
    quotes `outside of /var` and gives the removal as the next command; container-runtime fails on the
    machine.files entry itself."""
    handle = lab("runbook-patch-applied", knobs={"reboot_s": 1.0, "boot_fail_wait_s": 120.0})
    result = run_check(handle.env, "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    by_id = {s["id"]: s for s in report["stages"]}
    cause = report["root_cause"]
    assert cause["stage"] == "cluster" and "outside of /var" in cause["summary"], cause
    assert cause["remediation"].startswith(
        "talosctl --nodes 10.5.0.2 patch mc --patch '[{\"op\": \"remove\", \"path\": \"/machine/files/0\"}]'")
    evidence = "\n".join(by_id["cluster"]["evidence"])
    assert "talosctl dmesg: [talos] writeUserFiles failed, rebooting in 35 minutes" in evidence
    assert "talosctl dmesg: [talos] boot sequence: failed" in evidence
    assert "talosctl get machinestatus: stage booting" in evidence
    runtime = by_id["container-runtime"]
    assert runtime["status"] == "fail" and "outside of /var" in runtime["summary"]
    assert "no-cgroups = true" not in result.stdout  # the entry's content is never read out
    from lab.talos_resources import MACHINE_SECRETS  # the machine config's keys and tokens (lab markers)

    for secret in MACHINE_SECRETS.values():
        assert secret not in result.stdout + result.stderr
    assert report["kube_node"] is None  # the Kubernetes API of the single node is down


def test_the_runbook_patch_in_the_infra_repo_is_warn_evidence(lab: Any, tmp_path: Path) -> None:
    handle = lab("runbook-patch-in-repo")
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"infra_repo: {Path(handle.state_dir) / 'infra'}\n")
    result = run_check(handle.env, "--json", "--profile", str(profile))
    assert result.returncode == 0, result.stdout + result.stderr
    runtime = {s["id"]: s for s in json.loads(result.stdout)["stages"]}["container-runtime"]
    assert runtime["status"] == "warn"
    assert any(line.startswith("infra repo: talos/patches/nvidia-no-cgroups.yaml line 8 would stop the next boot")
               and "create operation not allowed outside of /var" in line for line in runtime["evidence"])


def test_check_table_shows_root_cause_and_next_command(lab: Any) -> None:
    result = run_check({**lab("runtimeclass-missing").env, "COLUMNS": "300"})
    assert result.returncode == 1
    assert "Root cause: runtimeclass" in result.stdout
    # no profile file: the infra repo is the directory it ran in, named in full so that the command pastes anywhere
    assert f"kubectl apply -f {REPO / 'k8s/manifests/runtimeclass-nvidia.yaml'}" in result.stdout
    for word in ("✔ PASS", "✘ FAIL", "⊘ BLOCKED"):
        assert word in result.stdout


def _secrets_of(handle: Any) -> list[str]:
    talos = yaml.safe_load(Path(handle.env["TALOSCONFIG"]).read_text())
    secrets = []
    for context in talos["contexts"].values():
        secrets += [context[k] for k in ("key", "crt") if context.get(k)]
    kube = yaml.safe_load(Path(handle.env["KUBECONFIG"]).read_text())
    for user in kube["users"]:
        secrets += [v for k, v in user["user"].items() if k in ("token", "client-key-data")]
    assert secrets, "the lab's configs carry no secret to look for"
    return secrets


def test_no_output_contains_a_config_secret(lab: Any, tmp_path: Path) -> None:
    handle = lab("no-runtimeclassname")
    outputs = [run_check(handle.env), run_check(handle.env, "--json")]
    bad_context = run_check(handle.env, "--context", "nope")
    assert bad_context.returncode == 2 and len(bad_context.stderr.strip().splitlines()) == 1
    outputs.append(bad_context)
    for result in outputs:
        text = result.stdout + result.stderr
        for secret in _secrets_of(handle):
            assert secret not in text
            assert secret[:24] not in text


def test_bad_options_are_one_line_exit_2(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy")
    cases = [
        ("--bogus",),
        ("--node", "--help"),
        ("--node", "a;b"),
        ("--node", ""),
        ("--kubeconfig", str(tmp_path / "missing kube config")),
        ("--talosconfig", str(tmp_path / "missing")),
        ("--timeout", "soon"),
    ]
    bad_profile = tmp_path / "profile with spaces.yaml"
    bad_profile.write_text("trak: production\n")
    cases.append(("--profile", str(bad_profile)))
    for args in cases:
        result = run_check(handle.env, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("talos-gpu: "), (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_talosctl_not_found_is_exit_2(lab: Any) -> None:
    handle = lab("healthy")
    env = dict(handle.env)
    env["TALOSCTL"] = "/nonexistent/talosctl"
    result = run_check(env)
    assert result.returncode == 2
    assert "talosctl" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_infra_repo_drift_is_a_warning_on_its_stage(lab: Any, tmp_path: Path) -> None:
    values = tmp_path / "k8s" / "nvidia-device-plugin" / "values.yaml"
    values.parent.mkdir(parents=True)
    values.write_text("runtimeClassName: nvidia\n")  # no `affinity: null`: the chart's NFD affinity stays
    profile = tmp_path / "profile.yaml"
    profile.write_text("infra_repo: .\n")
    result = run_check(lab("healthy").env, "--json", "--profile", str(profile))
    assert result.returncode == 0, result.stderr  # warn still counts as success
    stage = {s["id"]: s for s in json.loads(result.stdout)["stages"]}["device-plugin"]
    assert stage["status"] == "warn"
    assert any(line.startswith("infra repo: ") and "affinity" in line for line in stage["evidence"])


def test_check_leaves_no_temporary_file_behind(lab: Any, tmp_path: Path) -> None:
    """`check` skips the interpreter's teardown (tui.cli.run) but still runs the exit handlers: the
    kubernetes loader's temporary copy of the kubeconfig's certificate data is removed."""
    handle = lab("healthy")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = run_check({**handle.env, "TMPDIR": str(scratch)}, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["overall"] == "pass"  # the whole report was flushed
    assert list(scratch.iterdir()) == []
    piped = subprocess.run(f"{sys.executable} -m tui.cli check | head -c 10", shell=True, cwd=REPO,  # noqa: S602
                           env={**os.environ, **handle.env, "TMPDIR": str(scratch)}, capture_output=True,
                           text=True, timeout=60)
    assert len(piped.stdout) <= 10 and "Traceback" not in piped.stderr
    assert list(scratch.iterdir()) == []


KNOWN_PROGRAMS = ("talosctl", "kubectl", "helm")


# every scenario of the lab on the device-plugin path (the GPU Operator ones: tests/test_lab_operator.py)
@pytest.mark.parametrize("scenario", sorted(set(LAB_SCENARIOS) - set(OPERATOR_SCENARIOS)))
def test_every_remediation_runs_as_pasted(lab: Any, scenario: str) -> None:
    """Each stage's remediation is one command: it splits as a shell would, names a known program, the
    target's node (never a placeholder), the profile's namespace and release, and files that are paths."""
    import shlex

    handle = lab(scenario)
    report = json.loads(run_check(handle.env, "--json").stdout)
    for stage in report["stages"]:
        command = stage["remediation"]
        if command is None:
            continue
        assert "<" not in command and ">" not in command, (stage["id"], command)
        assert "(" not in command, (stage["id"], command)  # no prose suffix such as "(reboots the node)"
        argv = shlex.split(command)
        assert argv[0] in KNOWN_PROGRAMS, (stage["id"], command)
        if argv[0] == "talosctl":
            assert argv[1:3] == ["--nodes", report["node"]], (stage["id"], command)
        if argv[0] == "helm":
            assert argv[1:4] == ["upgrade", "--install", "nvidia-device-plugin"], command
            assert argv[argv.index("-n") + 1] == "kube-system", command
            assert Path(argv[argv.index("-f") + 1]).name == "values.yaml", command
        if argv[0] == "kubectl" and "-n" in argv:
            assert argv[argv.index("-n") + 1] == "kube-system", command
        if "describe" in argv and "node" in argv:
            assert argv[-1] == report["kube_node"], command
        for arg in argv:
            if arg.startswith("@"):
                assert Path(arg[1:]).name.endswith(".yaml"), command
    if report["root_cause"] is not None:
        assert set(report["root_cause"]) == {"stage", "summary", "remediation", "advice"}
