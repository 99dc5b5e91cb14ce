"""Fault matrix, Kubernetes API and node side: an API that is down, refuses, errs, hangs, floods or
flaps, and a node that reboots in the middle of a sweep or of an action (issue 6).

The API faults are the lab server's knobs (`api_status`, `api_hang_s`, `api_down`, `api_oversize`,
`watch_drop_after`); unreachable, TLS and 401 use a copy of the lab's kubeconfig with a closed port,
a foreign CA or a wrong token. The observed behaviour is in tests/fault_matrix.md.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import anyio

from checks.actions import ActionEvent, AuditLog, plan_action, run_action
from checks.audit import read_audit
from checks.model import Status
from lab import state as lab_state
from tests.test_faults_talosctl import (
    KUBE_STAGES,
    SWEEP_SLACK_S,
    TALOS_STAGES,
    assert_judged,
    assert_no_processes_left,
    assert_stage,
    lab_target,
    run_cli,
    sweep,
)

GENERAL = ("cluster", "extensions", "kernel-modules", "container-runtime")


def kubeconfig_variant(handle: Any, name: str, change: Any) -> dict[str, str]:
    """Env pointing KUBECONFIG at a changed copy of the lab's kubeconfig (kept in the state dir)."""
    path = Path(handle.state_dir) / name
    path.write_text(change(Path(handle.kubeconfig).read_text()))
    path.chmod(0o600)
    return {"KUBECONFIG": str(path)}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- the API cannot be reached or refuses us ------------------------------------------------------


def test_api_unreachable_fails_cluster_and_talos_stages_are_still_judged(lab: Any) -> None:
    """`check --json` as a subprocess: exit 1, the reason on cluster, every Talos stage judged anyway."""
    handle = lab("healthy")
    port = closed_port()
    env = kubeconfig_variant(handle, "kubeconfig-closed-port",
                             lambda text: re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", text))
    result = run_cli({**handle.env, **env}, "check", "--json", "--timeout", "8", timeout=30)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    stages = {s["id"]: s for s in report["stages"]}
    assert stages["cluster"]["status"] == "fail"
    assert "Kubernetes API unreachable (Connection refused)" in stages["cluster"]["summary"]
    for stage_id in TALOS_STAGES:
        assert stages[stage_id]["status"] == "pass", stages[stage_id]
    for stage_id in KUBE_STAGES:
        assert stages[stage_id]["status"] == "blocked" and stages[stage_id]["blocked_by"] == "cluster"
    assert report["root_cause"]["stage"] == "cluster" and report["kube_node"] is None


def test_api_closing_every_connection_is_unreachable(lab: Any) -> None:
    handle = lab("healthy", faults={"api_down": True})
    report, elapsed = sweep(lab_target(handle), timeout=6)
    assert_stage(report, "cluster", (Status.FAIL,), "Kubernetes API unreachable", "closed the connection")
    assert "MaxRetryError" not in report.stage("cluster").summary
    assert_judged(report, TALOS_STAGES)
    assert elapsed < 6


def test_api_tls_error_names_the_certificate_failure(lab: Any, tmp_path: Path) -> None:
    handle = lab("healthy")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "ca.pem"), "-days", "1",
                    "-subj", "/CN=some other cluster"], check=True, capture_output=True, timeout=30)
    other_ca = base64.b64encode((tmp_path / "ca.pem").read_bytes()).decode()
    env = kubeconfig_variant(handle, "kubeconfig-foreign-ca", lambda text: re.sub(
        r"certificate-authority-data: \S+", f"certificate-authority-data: {other_ca}", text))
    report, _ = sweep(lab_target(handle, env))
    assert_stage(report, "cluster", (Status.FAIL,), "TLS error", "CERTIFICATE_VERIFY_FAILED")
    for stage_id in KUBE_STAGES:
        assert_stage(report, stage_id, (Status.BLOCKED,), "TLS error")
    assert_judged(report, TALOS_STAGES)


def test_api_401_names_unauthorized(lab: Any) -> None:
    handle = lab("healthy")
    env = kubeconfig_variant(handle, "kubeconfig-wrong-token",
                             lambda text: re.sub(r"token: \S+", "token: not-the-token-0000", text))
    report, _ = sweep(lab_target(handle, env))
    assert_stage(report, "cluster", (Status.FAIL,), "HTTP 401 Unauthorized")
    assert_judged(report, TALOS_STAGES)


def test_api_403_on_one_resource_is_unknown_for_that_stage_only(lab: Any) -> None:
    handle = lab("healthy", faults={"api_status": {"path_regex": "runtimeclasses", "code": 403}})
    report, _ = sweep(lab_target(handle))
    assert_stage(report, "runtimeclass", (Status.UNKNOWN,), "HTTP 403", "cannot get path")
    assert_judged(report, (*GENERAL, "device-plugin", "gpu-resources"))


def test_api_404_for_a_kind_not_served_is_unknown_not_missing(lab: Any) -> None:
    """A server without node.k8s.io/v1 answers 404 for the kind: that is not `RuntimeClass not found`."""
    handle = lab("healthy", faults={"api_status": {"path_regex": "^/apis/node\\.k8s\\.io/", "code": 404}})
    report, _ = sweep(lab_target(handle))
    stage = assert_stage(report, "runtimeclass", (Status.UNKNOWN,), "HTTP 404", "does not serve")
    assert "not found" not in stage.summary.replace("could not find", "")
    assert_judged(report, (*GENERAL, "device-plugin", "gpu-resources"))


def test_api_500_is_a_reason_not_a_crash(lab: Any) -> None:
    handle = lab("healthy", faults={"api_status": {"path_regex": "daemonsets", "code": 500,
                                                   "message": "Internal error occurred: the server is overloaded"}})
    report, _ = sweep(lab_target(handle))
    assert_stage(report, "device-plugin", (Status.UNKNOWN, Status.FAIL), "HTTP 500", "the server is overloaded")
    assert_judged(report, (*GENERAL, "runtimeclass", "gpu-resources"))


def test_api_that_never_answers_ends_within_the_timeout(lab: Any) -> None:
    handle = lab("healthy", faults={"api_hang_s": 60})
    report, elapsed = sweep(lab_target(handle), timeout=4)
    assert_stage(report, "cluster", (Status.UNKNOWN,), "time limit", "Kubernetes Node")
    for stage_id in KUBE_STAGES:
        assert_stage(report, stage_id, (Status.BLOCKED,), "time limit")
    assert_judged(report, TALOS_STAGES)
    assert elapsed < 4 + SWEEP_SLACK_S, elapsed


# ---- large answers and streams --------------------------------------------------------------------


def test_api_answers_100_times_larger_still_pass_in_time(lab: Any) -> None:
    handle = lab("healthy", faults={"api_oversize": 100})
    report, elapsed = sweep(lab_target(handle), timeout=10)
    assert_judged(report, (*GENERAL, *KUBE_STAGES, "gpu-resources"))
    assert elapsed < 10


def test_a_watch_that_drops_mid_stream_does_not_affect_the_pod_test(lab: Any) -> None:
    """The checks never watch: the test pod is polled, its log read once, so a cut stream cannot hang it."""
    handle = lab("healthy", faults={"watch_drop_after": 0.2})
    report, elapsed = sweep(lab_target(handle), timeout=40, pod_test=True)
    assert_stage(report, "gpu-workload", (Status.PASS,), "NVIDIA H100 NVL")
    assert elapsed < 40


# ---- the API flaps, the node reboots ----------------------------------------------------------------


def test_a_flapping_api_gives_reasons_then_recovers(lab: Any) -> None:
    handle = lab("healthy", knobs={"api_latency_ms": 30})
    target = lab_target(handle)
    stop = threading.Event()

    def flap() -> None:
        faults = [{"api_down": True}, {"api_status": {"path_regex": ".", "code": 503}}, {}]
        turn = 0
        while not stop.is_set():
            with lab_state.mutate(handle.state_dir) as state:
                state["faults"] = faults[turn % len(faults)]
            turn += 1
            stop.wait(0.07)

    flapper = threading.Thread(target=flap, daemon=True)
    flapper.start()
    try:
        report, elapsed = sweep(target, timeout=6)
    finally:
        stop.set()
        flapper.join()
    assert elapsed < 6 + SWEEP_SLACK_S
    for stage in report.stages:
        assert stage.status in set(Status), stage
        if not stage.status.ok:
            assert stage.summary and "\n" not in stage.summary and "Traceback" not in stage.summary, stage
    with lab_state.mutate(handle.state_dir) as state:
        state["faults"] = {}
        state["knobs"]["api_latency_ms"] = 0
    report, _ = sweep(target)
    assert_judged(report, (*GENERAL, *KUBE_STAGES, "gpu-resources"))


def _start_reboot(handle: Any) -> None:
    with lab_state.mutate(handle.state_dir) as state:
        state["talos"]["reboot"] = {"reason": "config", "started": time.time(), "pending": {}}


def test_a_node_rebooting_mid_sweep_is_a_reason_and_the_next_sweep_passes(lab: Any) -> None:
    handle = lab("healthy", knobs={"reboot_s": 1.5, "talosctl_latency_ms": 300})
    target = lab_target(handle)
    timer = threading.Timer(0.15, _start_reboot, args=(handle,))  # while the first talosctl calls wait
    timer.start()
    report, elapsed = sweep(target, timeout=6)
    timer.join()
    cluster = assert_stage(report, "cluster", (Status.FAIL, Status.UNKNOWN))
    # down: talosctl cannot connect; a loaded machine may reach it already booting again
    assert "connection refused" in cluster.summary or "not running (machinestatus stage" in cluster.summary, cluster
    assert report.root_cause is not None and report.root_cause.stage == "cluster"
    assert_judged(report, ("runtimeclass",))
    assert elapsed < 6
    time.sleep(1.6)  # the lab's reboot is over
    with lab_state.mutate(handle.state_dir) as state:
        state["knobs"]["talosctl_latency_ms"] = 0
    deadline = time.monotonic() + 10
    while (report := sweep(target)[0]).root_cause is not None and time.monotonic() < deadline:
        time.sleep(0.5)  # the kubelet turns Ready a moment after the node is back
    assert report.root_cause is None, report.root_cause


def test_a_node_rebooting_mid_action_fails_it_with_the_reason_and_the_audit_says_so(lab: Any,
                                                                                     tmp_path: Path) -> None:
    handle = lab("modules-not-loaded", knobs={"reboot_s": 5.0})  # down long enough on a loaded machine
    target = lab_target(handle)
    report, _ = sweep(target)
    plan = anyio.run(lambda: plan_action("kernel-modules", target, report))
    with lab_state.mutate(handle.state_dir) as state:
        state["knobs"]["talosctl_latency_ms"] = 700  # `talosctl patch` waits, the node goes down meanwhile
    audit = AuditLog(tmp_path / "audit.log")
    events: list[ActionEvent] = []

    async def act() -> Any:
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, lambda: (time.sleep(0.3), _start_reboot(handle)))
            return await run_action(plan, target, events.append, audit=audit, timeout=30)

    result = anyio.run(act)
    audit.close()
    assert result.status == "failed", result
    assert "talosctl patch" in result.reason and "connection refused" in result.reason, result.reason
    assert "may or may not have been applied" in result.node_state
    records = read_audit(audit.path)
    assert records[0]["kind"] == "plan" and records[-1]["kind"] == "result"
    assert records[-1]["text"].startswith("failed: ") and "connection refused" in records[-1]["text"]
    assert_no_processes_left(handle.state_dir)
