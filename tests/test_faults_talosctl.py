"""Fault matrix, external programs: a missing, hanging, failing, lying or flooding talosctl, and a missing,
failing or hanging helm (issue 6).

Every case drives the lab's own talosctl through its fault knobs (lab/faults.py) and asserts what a
person on call sees: the affected stage is `unknown` or `fail` with a one-line reason naming the
cause, the stages that do not need the broken call are still judged, the sweep ends within its
time limit and no talosctl process is left behind. The observed behaviour is in tests/fault_matrix.md.

The helpers at the top are shared by the other fault and security test modules.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import pytest

from checks.engine import Target, run_sweep
from checks.model import Report, StageResult, Status
from tests.paths import REPO
from tests.procs import live_command_lines

NODE = "10.5.0.2"
SWEEP_SLACK_S = 2.5  # beyond the time limit: SIGTERM + 0.5 s grace + SIGKILL of the last group, then judging
KUBE_STAGES = ("runtimeclass", "device-plugin")  # judged from the Kubernetes API alone
TALOS_STAGES = ("extensions", "kernel-modules", "container-runtime")

REFUSED = (f'error getting version: rpc error: code = Unavailable desc = connection error: desc = "transport: '
           f'Error while dialing: dial tcp {NODE}:50000: connect: connection refused"')
X509 = ('rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake '
        'failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"')
DEADLINE = f"1 error occurred:\n\t* {NODE}: rpc error: code = DeadlineExceeded desc = context deadline exceeded\n"
RESOURCE_NOT_FOUND = 'rpc error: code = NotFound desc = resource "extensions" is not registered'
FILE_NOT_FOUND = "rpc error: code = Unknown desc = stat /proc/modules: no such file or directory"


# ---- shared helpers ---------------------------------------------------------------------------------


def lab_target(handle: Any, env: dict[str, str] | None = None) -> Target:
    """A Target for the shared lab as `talos-gpu` would build it (its own infra repo in the state dir)."""
    from tui.demo import demo_target

    return demo_target({**handle.env, **(env or {})}, Path(handle.state_dir))


def sweep(target: Target, timeout: float = 8.0, **options: Any) -> tuple[Report, float]:
    started = time.monotonic()
    report = anyio.run(lambda: run_sweep(target, timeout=timeout, **options))
    return report, time.monotonic() - started


def stages_of(report: Report) -> dict[str, StageResult]:
    return {stage.id: stage for stage in report.stages}


def assert_stage(report: Report, stage_id: str, statuses: Iterable[Status], *words: str) -> StageResult:
    """The stage has one of `statuses` and a one-line summary quoting every one of `words`."""
    stage = report.stage(stage_id)
    wanted = tuple(statuses)
    assert stage.status in wanted, (stage_id, stage.status, stage.summary)
    assert "\n" not in stage.summary and "Traceback" not in stage.summary, stage.summary
    for word in words:
        assert word in stage.summary, (stage_id, word, stage.summary)
    if stage.status is Status.BLOCKED:
        assert stage.blocked_by, stage
    return stage


def assert_judged(report: Report, stage_ids: Iterable[str], status: Status = Status.PASS) -> None:
    """Stages the fault does not touch are still judged on their own facts."""
    for stage_id in stage_ids:
        stage = report.stage(stage_id)
        assert stage.status is status, (stage_id, stage.status, stage.summary)


def lab_processes(state_dir: Path) -> list[str]:
    """Command lines of live processes started from the lab's state dir (talosctl, helm; not its server)."""
    return list(live_command_lines(str(state_dir), exclude=("lab.runtime",)).values())


def assert_no_processes_left(state_dir: Path, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while (left := lab_processes(state_dir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == [], left


def run_cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`talos-gpu ARGS` as a subprocess, stdin not a terminal."""
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 2 and exactly one `talos-gpu: …` line on stderr naming the cause; nothing on stdout."""
    assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("talos-gpu: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def recording_shims(handle: Any, directory: Path) -> tuple[dict[str, str], Path]:
    """$TALOSCTL and $HELM pointing at tiny executables that append their argv as one JSON line to
    the returned log file, then exec the lab's real tool: a record at the process boundary."""
    log = directory / "argv.jsonl"
    log.touch()
    env: dict[str, str] = {}
    for tool in ("talosctl", "helm"):
        shim = directory / f"record-{tool}"
        real = Path(handle.bin_dir) / tool
        shim.write_text(
            f"#!{sys.executable} -S\n"
            "import json, os, sys\n"
            f"with open({str(log)!r}, 'a') as log:\n"
            f"    log.write(json.dumps([{tool!r}, *sys.argv[1:]]) + '\\n')\n"
            f"os.execv({str(real)!r}, [{str(real)!r}, *sys.argv[1:]])\n")
        shim.chmod(0o755)
        env[tool.upper()] = str(shim)
    return env, log


def recorded_argvs(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


# ---- talosctl is missing or cannot run -----------------------------------------------------------


def test_talosctl_not_installed_is_exit_2_naming_it(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy")
    env = {**handle.env, "PATH": str(tmp_path)}  # nothing on PATH, no $TALOSCTL
    result = run_cli({k: v for k, v in env.items()}, "check")
    line = assert_one_line_error(result, "talosctl not found")
    assert "$TALOSCTL" in line


def test_talosctl_not_executable_is_exit_2_naming_the_file(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy")
    plain = tmp_path / "talosctl"
    plain.write_text("#!/bin/sh\n")  # mode 0644
    result = run_cli({**handle.env, "TALOSCTL": str(plain)}, "check", "--json")
    assert_one_line_error(result, str(plain), "not an executable file")


def test_talosctl_that_stops_being_executable_mid_session_is_a_reason_per_stage(lab: Any, tmp_path: Path) -> None:
    """The TUI resolves talosctl once; if it is replaced by a non-executable file later, each sweep says so."""
    handle = lab("healthy")
    plain = tmp_path / "talosctl"
    plain.write_text("#!/bin/sh\n")
    target = dataclasses.replace(lab_target(handle), talosctl_bin=str(plain))
    report, elapsed = sweep(target, timeout=5)
    assert_stage(report, "cluster", (Status.FAIL,), "is not executable", str(plain))
    for stage_id in TALOS_STAGES:
        assert_stage(report, stage_id, (Status.BLOCKED,), "is not executable")
    assert_judged(report, KUBE_STAGES)  # the Kubernetes API is still read (the node found by address)
    assert elapsed < 5


# ---- talosctl hangs ---------------------------------------------------------------------------------


def test_a_hanging_talosctl_ends_within_the_timeout_and_leaves_no_process(lab: Any) -> None:
    """`check --timeout 4` with every talosctl call hanging: exit 1 in time, reasons, nothing left running."""
    handle = lab("healthy", faults={"talosctl_hang": True})
    started = time.monotonic()
    result = run_cli(handle.env, "check", "--json", "--timeout", "4", timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    stages = {s["id"]: s for s in report["stages"]}
    assert stages["cluster"]["status"] == "unknown"
    assert "time limit" in stages["cluster"]["summary"] and "talosctl version" in stages["cluster"]["summary"]
    for stage_id in TALOS_STAGES:
        assert stages[stage_id]["status"] == "blocked" and stages[stage_id]["blocked_by"] == "cluster"
    for stage_id in KUBE_STAGES:
        assert stages[stage_id]["status"] == "pass", stages[stage_id]
    assert report["root_cause"]["stage"] == "cluster"
    assert elapsed < 4 + SWEEP_SLACK_S + 3.0, elapsed  # + interpreter start and imports (~1.5 s on 2 cores)
    assert_no_processes_left(handle.state_dir)


def test_one_hanging_call_makes_only_its_stage_unknown(lab: Any) -> None:
    handle = lab("healthy", faults={"talosctl_hang": {"only": "get extensions"}})
    report, elapsed = sweep(lab_target(handle), timeout=3)
    assert_stage(report, "extensions", (Status.UNKNOWN,), "time limit", "talosctl get extensions")
    assert_judged(report, ("cluster", "kernel-modules", "container-runtime", *KUBE_STAGES, "gpu-resources"))
    assert elapsed < 3 + SWEEP_SLACK_S, elapsed
    assert_no_processes_left(handle.state_dir)


# ---- talosctl fails with its real error texts -----------------------------------------------------


@pytest.mark.parametrize(("stderr", "status", "quoted"), [
    (REFUSED, Status.FAIL, "connect: connection refused"),
    (X509, Status.FAIL, "x509: certificate signed by unknown authority"),
    (DEADLINE, Status.UNKNOWN, "context deadline exceeded"),
], ids=["connection-refused", "x509-unknown-authority", "context-deadline-exceeded"])
def test_talos_api_errors_fail_the_cluster_stage_quoting_the_error(lab: Any, stderr: str, status: Status,
                                                                  quoted: str) -> None:
    handle = lab("healthy", faults={"talosctl_exit": {"code": 1, "stderr": stderr}})
    report, elapsed = sweep(lab_target(handle), timeout=6)
    cluster = assert_stage(report, "cluster", (status,), quoted, f"node {NODE}")
    assert cluster.remediation and f"talosctl --nodes {NODE} version" in cluster.remediation
    for stage_id in TALOS_STAGES:
        stage = assert_stage(report, stage_id, (Status.BLOCKED,), quoted)
        assert stage.blocked_by == "cluster"
    assert_judged(report, KUBE_STAGES)
    assert report.root_cause is not None and report.root_cause.stage == "cluster"
    assert elapsed < 6


def test_a_resource_the_node_does_not_serve_is_unknown_for_its_stage_only(lab: Any) -> None:
    handle = lab("healthy", faults={"talosctl_exit": {"only": "get extensions", "code": 1,
                                                      "stderr": RESOURCE_NOT_FOUND}})
    report, _ = sweep(lab_target(handle))
    assert_stage(report, "extensions", (Status.UNKNOWN,), 'resource "extensions" is not registered')
    assert_judged(report, ("cluster", "kernel-modules", "container-runtime", *KUBE_STAGES, "gpu-resources"))


def test_a_file_that_cannot_be_read_is_unknown_not_a_wrong_verdict(lab: Any) -> None:
    """`read /proc/modules` NotFound: the modules cannot be judged; it must not claim they are not loaded."""
    handle = lab("healthy", faults={"talosctl_exit": {"only": "read /proc/modules", "code": 1,
                                                      "stderr": FILE_NOT_FOUND}})
    report, _ = sweep(lab_target(handle))
    assert_stage(report, "kernel-modules", (Status.UNKNOWN,), "/proc/modules: no such file or directory")
    assert_judged(report, ("cluster", "extensions", "container-runtime", *KUBE_STAGES))


def test_a_kernel_log_that_cannot_be_read_is_unknown_not_a_pass(lab: Any) -> None:
    """kernel-modules owns "no NVRM failure in the kernel log": unread, the stage cannot pass (it did)."""
    handle = lab("healthy", faults={"talosctl_exit": {"only": "dmesg", "code": 1, "stderr": (
        "rpc error: code = PermissionDenied desc = not authorized")}})
    report, _ = sweep(lab_target(handle))
    stage = assert_stage(report, "kernel-modules", (Status.UNKNOWN,), "talosctl dmesg", "PermissionDenied")
    assert any(line.startswith("talosctl read /proc/modules: nvidia Live") for line in stage.evidence)
    assert_judged(report, ("cluster", "extensions", "container-runtime", *KUBE_STAGES, "gpu-resources"))


# ---- talosctl prints garbage, truncated or huge output, or streams slowly ---------------------------


def test_garbage_from_one_call_is_output_not_understood(lab: Any) -> None:
    handle = lab("healthy", faults={"talosctl_garbage": {"only": "get extensions"}})
    report, _ = sweep(lab_target(handle))
    assert_stage(report, "extensions", (Status.UNKNOWN,), "talosctl get extensions", "output not understood")
    assert_judged(report, ("cluster", "kernel-modules", *KUBE_STAGES))


def test_garbage_from_every_call_fails_the_cluster_stage(lab: Any) -> None:
    handle = lab("healthy", faults={"talosctl_garbage": True})
    report, _ = sweep(lab_target(handle))
    assert_stage(report, "cluster", (Status.FAIL, Status.UNKNOWN), "talosctl version: output not understood")
    for stage_id in TALOS_STAGES:
        assert_stage(report, stage_id, (Status.BLOCKED,), "output not understood")
    assert_judged(report, KUBE_STAGES)


def test_truncated_output_is_never_read_as_a_pass(lab: Any) -> None:
    """Every talosctl stdout cut in half (mid-YAML): `talosctl version` without its server part is
    `unknown` (it said `Talos None answers` and passed before), as are the cut files."""
    handle = lab("healthy", faults={"talosctl_truncate": True})
    report, _ = sweep(lab_target(handle))
    assert_stage(report, "cluster", (Status.UNKNOWN,), "no server Tag")
    assert "None" not in report.stage("cluster").summary
    # kernel-modules depends on extensions (whose cut YAML still names both extensions), not on cluster
    assert_stage(report, "kernel-modules", (Status.UNKNOWN, Status.BLOCKED), "/proc/modules: output not understood")
    # a cut `ls` listing or services table is refused, never read as "no nvidia runtime"
    assert_stage(report, "container-runtime", (Status.UNKNOWN, Status.BLOCKED), "output not understood",
                 "cut short")
    assert_judged(report, KUBE_STAGES)


def test_truncated_yaml_of_one_resource_is_unknown_for_its_stage(lab: Any) -> None:
    handle = lab("healthy", faults={"talosctl_truncate": {"only": "get pcidevices"}})
    report, _ = sweep(lab_target(handle))
    assert_stage(report, "gpu-resources", (Status.UNKNOWN,), "talosctl get pcidevices", "output not understood")
    assert_judged(report, ("cluster", "extensions", "kernel-modules", *KUBE_STAGES))


def test_a_100_mb_output_is_bounded_in_memory_and_time(lab: Any) -> None:
    handle = lab("healthy", faults={"talosctl_huge_mb": {"only": "get extensions", "mb": 100}})
    peak_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report, elapsed = sweep(lab_target(handle), timeout=8)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before_kib) / 1024
    assert_stage(report, "extensions", (Status.UNKNOWN,), "output not understood")
    assert len(report.stage("extensions").summary) < 500
    assert_judged(report, ("cluster", "kernel-modules", *KUBE_STAGES))
    assert elapsed < 8
    assert grown_mib < 80, f"the sweep grew the process by {grown_mib:.0f} MiB"  # 8 MiB kept per stream
    assert_no_processes_left(handle.state_dir)


def test_a_slow_stream_is_cut_at_the_time_limit(lab: Any) -> None:
    handle = lab("healthy", faults={"talosctl_slow_stream_ms": {"only": "get extensions", "ms": 300}})
    report, elapsed = sweep(lab_target(handle), timeout=3)
    assert_stage(report, "extensions", (Status.UNKNOWN,), "time limit")
    assert_judged(report, ("cluster", "kernel-modules", *KUBE_STAGES))
    assert elapsed < 3 + SWEEP_SLACK_S
    assert_no_processes_left(handle.state_dir)


def test_a_slow_stream_that_finishes_in_time_is_read_whole(lab: Any) -> None:
    handle = lab("healthy", faults={"talosctl_slow_stream_ms": {"only": "get extensions", "ms": 5}})
    report, _ = sweep(lab_target(handle), timeout=15)
    assert_judged(report, ("cluster", "extensions", "kernel-modules", *KUBE_STAGES))


# ---- helm (the other external program): missing, failing, hanging -------------------------------

HELM_UNREACHABLE = ('Error: Kubernetes cluster unreachable: Get "https://127.0.0.1:6443/version": dial tcp '
                    "127.0.0.1:6443: connect: connection refused")
HELM_REPO_UNREACHABLE = ('Error: looks like "https://nvidia.github.io/k8s-device-plugin" is not a valid chart '
                         'repository or cannot be reached: Get "https://nvidia.github.io/k8s-device-plugin/index.yaml"'
                         ": dial tcp: lookup nvidia.github.io on 127.0.0.53:53: server misbehaving")


def test_helm_not_installed_the_check_still_judges_the_device_plugin_from_the_api(lab: Any) -> None:
    from checks.actions import PlanError, plan_action

    handle = lab("healthy")
    target = dataclasses.replace(lab_target(handle), helm_bin=None)  # find_helm found none
    report, _ = sweep(target)
    plugin = assert_stage(report, "device-plugin", (Status.PASS,))
    assert "helm: helm not found (set $HELM or install helm)" in plugin.evidence
    with pytest.raises(PlanError, match="helm not found"):
        anyio.run(lambda: plan_action("device-plugin", target, report))


def test_helm_failing_in_the_check_is_evidence_the_daemonset_still_decides(lab: Any) -> None:
    handle = lab("healthy", faults={"helm_exit": {"only": "list", "code": 1, "stderr": HELM_UNREACHABLE}})
    report, _ = sweep(lab_target(handle))
    plugin = assert_stage(report, "device-plugin", (Status.PASS,))
    assert any(line.startswith("helm: helm list -n kube-system: exit 1: Error: Kubernetes cluster unreachable")
               for line in plugin.evidence), plugin.evidence


def test_helm_hanging_in_the_check_ends_in_time(lab: Any) -> None:
    handle = lab("healthy", faults={"helm_hang": True})
    report, elapsed = sweep(lab_target(handle), timeout=3)
    plugin = assert_stage(report, "device-plugin", (Status.PASS,))
    assert "helm: no answer within the sweep's time limit (helm list)" in plugin.evidence
    assert elapsed < 3 + SWEEP_SLACK_S
    assert_no_processes_left(handle.state_dir)


def test_helm_repo_add_failing_in_the_action_quotes_helm_and_stops(lab: Any, tmp_path: Path) -> None:
    """An air-gapped cluster: the chart repository cannot be reached. The action stops at that step with
    helm's own line, and says what may have changed."""
    from checks.actions import ActionEvent, plan_action, run_action
    from lab import state as lab_state

    handle = lab("plugin-missing", faults={"helm_exit": {"only": "repo add", "code": 1,
                                                         "stderr": HELM_REPO_UNREACHABLE}})
    with lab_state.mutate(handle.state_dir) as state:
        state["helm"]["repos"] = []  # nvdp is not configured: the plan adds it
    target = lab_target(handle)
    report, _ = sweep(target)
    plan = anyio.run(lambda: plan_action("device-plugin", target, report))
    assert any("repo add nvdp" in command for command in plan.commands())
    events: list[ActionEvent] = []
    result = anyio.run(lambda: run_action(plan, target, events.append, timeout=60))
    assert result.status == "failed", result
    assert result.reason.startswith("helm repo add failed: exit 1: Error: looks like"), result.reason
    assert "cannot be reached" in result.reason and "\n" not in result.reason
    assert "Helm repository list" in result.node_state
    assert not any("upgrade --install" in e.text for e in events if e.kind == "step")  # stopped there
