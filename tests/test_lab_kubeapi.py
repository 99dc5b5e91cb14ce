"""The lab's Kubernetes API server is faithful: real kubectl and the official Python client see a
cluster that behaves, prints and fails like a real one, in every device-plugin fate."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from urllib3.exceptions import MaxRetryError, ProtocolError

from lab import scenarios
from lab.kubeapi import controllers, devplugin_logs, tables
from lab.kubeapi.resources import ApiError
from lab.kubeapi.selectors import parse_field_selector, parse_label_selector
from lab.node import node_view
from tests.paths import K8S_SAMPLES

PLUGIN_DS = "nvidia-device-plugin"
CONTROL_PLANE_TOLERATION = {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                            "effect": "NoSchedule"}


# ---- helpers --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kube_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME for kubectl so its discovery cache stays out of the user's ~/.kube."""
    return tmp_path_factory.mktemp("kube-home")


@pytest.fixture
def kubectl(lab_session: Any, kube_home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **lab_session.env, "HOME": str(kube_home)}
        return subprocess.run(["kubectl", *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)

    return run


@pytest.fixture(scope="module")
def api_client(lab_session: Any) -> client.ApiClient:
    return config.new_client_from_config(str(lab_session.kubeconfig))


def raw_request(handle: Any, method: str, path: str, *, token: str | None = "lab", body: Any = None,
                headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    port = int(handle.api_url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(handle.ca_path))
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
    sent = dict(headers or {})
    if token == "lab":
        sent["Authorization"] = f"Bearer {handle.api_token}"
    elif token is not None:
        sent["Authorization"] = f"Bearer {token}"
    payload = json.dumps(body).encode() if body is not None else None
    if payload is not None:
        sent.setdefault("Content-Type", "application/json")
    try:
        connection.request(method, path, body=payload, headers=sent)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def gpu_test_pod(name: str = "nvidia-test", *, runtime_class: str | None = "nvidia", gpus: int = 1,
             tolerate_control_plane: bool = True, command: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "nvidia-test", "image": "nvcr.io/nvidia/cuda:12.5.0-base-ubuntu22.04",
                                 "command": command or ["nvidia-smi"]}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    if tolerate_control_plane:
        spec["tolerations"] = [CONTROL_PLANE_TOLERATION]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": f"{name}-"}, "spec": spec}


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def plugin_pods(v1: client.CoreV1Api) -> list[Any]:
    return v1.list_namespaced_pod("kube-system", label_selector="app.kubernetes.io/name=nvidia-device-plugin").items


# ---- pure pieces ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (59, "59s"), (119, "119s"), (125, "2m5s"), (600, "10m"), (3 * 3600 + 120, "3h2m"),
    (9 * 3600, "9h"), (3 * 86400 + 3600, "3d1h"), (7 * 86400 + 3600, "7d1h"), (20 * 86400, "20d"),
    (3 * 365 * 86400, "3y"), (-5, "<invalid>"),
])
def test_human_duration_matches_kubernetes(seconds: float, text: str) -> None:
    assert tables.human_duration(seconds) == text


def test_label_selectors() -> None:
    labels = {"app.kubernetes.io/name": "nvidia-device-plugin", "tier": "node"}

    def matches(selector: str) -> bool:
        return all(predicate(labels) for predicate in parse_label_selector(selector))

    assert matches("app.kubernetes.io/name=nvidia-device-plugin")
    assert matches("app.kubernetes.io/name==nvidia-device-plugin,tier")
    assert matches("tier in (node, edge),missing notin (x)")
    assert matches("!missing,tier!=web")
    assert not matches("tier in (edge)")
    assert not matches("missing")
    assert not matches("tier=node,!tier")
    with pytest.raises(ApiError):
        parse_label_selector("a b c")


def test_field_selectors_on_nested_paths() -> None:
    event = {"involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Failed",
             "metadata": {"name": "p.1", "namespace": "default"}}
    selector = parse_field_selector("involvedObject.kind=Pod,involvedObject.name==p,reason!=Started")
    assert all(predicate(event) for predicate in selector)
    assert not all(predicate(event) for predicate in parse_field_selector("metadata.namespace=kube-system"))


def test_node_affinity_terms_are_ored_and_expressions_anded() -> None:
    node = {"metadata": {"name": "n", "labels": {"kubernetes.io/os": "linux", "gpu": "yes"}}}
    def spec(*terms: list[dict[str, Any]], selector: dict[str, str] | None = None) -> dict[str, Any]:
        return {"nodeSelector": selector or {}, "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": term} for term in terms]}}}}

    nfd = [{"key": "feature.node.kubernetes.io/pci-10de.present", "operator": "In", "values": ["true"]}]
    assert not controllers.node_affinity_matches(spec(nfd), node)
    assert controllers.node_affinity_matches(spec(nfd, [{"key": "gpu", "operator": "Exists"}]), node)
    assert not controllers.node_affinity_matches(
        spec([{"key": "gpu", "operator": "Exists"}, {"key": "gpu", "operator": "NotIn", "values": ["yes"]}]), node)
    assert controllers.node_affinity_matches(spec([{"key": "x", "operator": "DoesNotExist"}]), node)
    assert not controllers.node_affinity_matches({"nodeSelector": {"kubernetes.io/os": "windows"}}, node)
    assert controllers.node_affinity_matches({"affinity": None, "nodeSelector": {"kubernetes.io/os": "linux"}}, node)


def test_tolerations_against_taints() -> None:
    taint = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    assert controllers.untolerated_taints([], [taint]) == [taint]
    assert controllers.untolerated_taints([CONTROL_PLANE_TOLERATION], [taint]) == []
    assert controllers.untolerated_taints([{"operator": "Exists"}], [taint]) == []
    assert controllers.untolerated_taints([{"key": "CriticalAddonsOnly", "operator": "Exists"}], [taint]) == [taint]
    assert controllers.untolerated_taints([], [{"key": "soft", "effect": "PreferNoSchedule"}]) == []


def test_plugin_fate_follows_the_contract_order() -> None:
    healthy = node_view(scenarios.build("healthy"), time.time())
    runtime_classes = {"nvidia": {"handler": "nvidia"}}
    template = {"runtimeClassName": "nvidia"}

    def fate(view: Any, spec: dict[str, Any] = template, classes: dict[str, Any] = runtime_classes) -> str:
        result = controllers.plugin_fate(spec, classes, view, device_plugin=True)
        return f"{result.kind}/{result.log}{'/' + result.nvml_reason if result.nvml_reason else ''}"

    assert fate(healthy) == "running/healthy"
    assert fate(healthy, classes={}) == "runtimeclass-missing/"
    assert fate(dataclasses.replace(healthy, nvidia_runtime_handler=False)) == "sandbox/"
    assert fate(healthy, spec={}) == "crash/no-nvml"
    assert fate(dataclasses.replace(healthy, driver_version=None, modules_loaded=[])) == \
        "crash/nvml-init/ERROR_DRIVER_NOT_LOADED"
    assert fate(dataclasses.replace(healthy, driver_version=None, modules_loaded=[], kmod_ext_driver=None)) == \
        "crash/nvml-init/ERROR_LIBRARY_NOT_FOUND"
    assert fate(dataclasses.replace(healthy, container_runtime_ok=False)) == "run-error/"
    assert fate(dataclasses.replace(healthy, gpus_initialised=0)) == "running/no-devices"
    # earlier causes win over later ones
    broken = dataclasses.replace(healthy, nvidia_runtime_handler=False, container_runtime_ok=False, driver_version=None)
    assert fate(broken, classes={}) == "runtimeclass-missing/"
    assert fate(broken) == "sandbox/"


def test_backoff_schedule_doubles_then_caps() -> None:
    assert controllers.backoff_schedule(0, 5, 1.0) == (0, 0, 10)
    restarts, start, backoff = controllers.backoff_schedule(0, 12, 1.0)
    assert (restarts, start, backoff) == (1, 11, 20)
    restarts, _, backoff = controllers.backoff_schedule(0, 3 * 86400, 1.0)
    assert backoff == 300 and 850 < restarts < 870


def test_nvidia_smi_table_has_the_real_layout() -> None:
    gpus = [devplugin_logs.SmiGpu(0, "NVIDIA H100 NVL", devplugin_logs.smi_bus_id("0000:33:00.0")),
            devplugin_logs.SmiGpu(1, "NVIDIA H100 NVL", devplugin_logs.smi_bus_id("0000:8b:00.0"),
                                  power_draw_w=60, temperature_c=42)]
    sample = (K8S_SAMPLES / "nvidia-smi-h100nvl-580.95.05-partial.txt").read_text().splitlines()
    table = devplugin_logs.nvidia_smi_table(gpus, "580.95.05", 1766321469)
    assert table[1:len(sample)] == sample[1:]
    assert table[0].startswith("Sun Dec 21 12:51:09 2025")
    assert table[-7:-5] == ["+" + "-" * 89 + "+", "| Processes:" + " " * 78 + "|"]
    assert table[-1] == "+" + "-" * 89 + "+" and all(len(line) == 91 for line in table[1:-9] if line)
    header_570 = (K8S_SAMPLES / "nvidia-smi-570.195.03-rtx5090-header.txt").read_text().splitlines()[1:4]
    assert devplugin_logs.nvidia_smi_table(gpus, "570.195.03", 0)[1:4] == header_570
    lines, code = devplugin_logs.nvidia_smi_output(["--query-gpu=name,pci.device_id", "--format=csv,noheader"],
                                                   gpus, "570.172.08", 0)
    assert code == 0 and lines[0] == (K8S_SAMPLES / "nvidia-smi-query-name-pcidevice-h100nvl.csv").read_text().strip()


def test_device_plugin_logs_carry_the_real_lines() -> None:
    healthy = devplugin_logs.healthy_log(1700000000.0, "0.17.3")
    assert '"Starting NVIDIA Device Plugin" version=<' in healthy[0] and "main.go:235]" in healthy[0]
    assert healthy[-3].endswith("Starting GRPC server for 'nvidia.com/gpu'")
    assert healthy[-1].endswith("Registered device plugin for 'nvidia.com/gpu' with Kubelet")
    assert healthy[-1].startswith("I1114 22:13:20.")
    blind = devplugin_logs.no_nvml_visible_log(0, "0.17.3")
    assert any(line.endswith("Incompatible strategy detected auto") for line in blind)
    assert any(line.endswith("If this is a GPU node, did you configure the NVIDIA Container Toolkit?") for line in blind)
    assert blind[-1].endswith("invalid device discovery strategy")
    no_driver = devplugin_logs.nvml_init_failure_log(0, "0.17.3", "ERROR_LIBRARY_NOT_FOUND")
    assert any(line.endswith("Failed to initialize NVML: ERROR_LIBRARY_NOT_FOUND.") for line in no_driver)


# ---- kubectl against the lab --------------------------------------------------------------------------

def test_kubectl_get_prints_like_a_real_cluster(lab: Callable[..., Any], kubectl: Callable[..., Any]) -> None:
    lab("healthy")
    result = kubectl("get", "nodes,ds,pods", "-A")
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.strip().split("\n\n")
    assert blocks[0].splitlines()[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert blocks[0].splitlines()[1].split()[:3] == ["node/gpu-node-1", "Ready", "control-plane"]
    assert blocks[1].splitlines()[0].split() == ["NAMESPACE", "NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE",
                                                 "AVAILABLE", "NODE", "SELECTOR", "AGE"]
    assert blocks[1].splitlines()[1].split()[:7] == ["kube-system", f"daemonset.apps/{PLUGIN_DS}", "1", "1", "1", "1", "1"]
    pod_row = blocks[2].splitlines()[1].split()
    assert pod_row[1].startswith(f"pod/{PLUGIN_DS}-") and pod_row[2:5] == ["1/1", "Running", "0"]


def test_kubectl_describe_node_shows_gpu_capacity(lab: Callable[..., Any], kubectl: Callable[..., Any]) -> None:
    lab("healthy")
    result = kubectl("describe", "node", "gpu-node-1")
    assert result.returncode == 0, result.stderr
    capacity = result.stdout.split("Capacity:")[1].split("Allocatable:")
    assert "nvidia.com/gpu:     2" in capacity[0]
    assert "nvidia.com/gpu:     2" in capacity[1].split("System Info:")[0]
    assert "Ready            True" in result.stdout and "OS Image:                   Talos (v1.11.5)" in result.stdout


def test_kubectl_get_runtimeclass_matches_the_sample_header(lab: Callable[..., Any],
                                                            kubectl: Callable[..., Any]) -> None:
    lab("healthy")
    result = kubectl("get", "runtimeclass")
    sample = (K8S_SAMPLES / "kubectl-get-runtimeclass-nvidia.txt").read_text().splitlines()
    lines = result.stdout.splitlines()
    assert lines[0].rstrip() == sample[0].rstrip()
    assert lines[1].split()[:2] == ["nvidia", "nvidia"] and lines[1].index("nvidia   nvidia") == 0


def test_kubectl_logs_of_the_plugin_daemonset(lab: Callable[..., Any], kubectl: Callable[..., Any]) -> None:
    lab("healthy")
    result = kubectl("logs", "-n", "kube-system", f"ds/{PLUGIN_DS}", "--tail=3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert lines[-1].endswith("Registered device plugin for 'nvidia.com/gpu' with Kubelet")


def test_kubectl_events_show_the_failed_create(lab: Callable[..., Any], kubectl: Callable[..., Any]) -> None:
    lab("runtimeclass-missing")
    result = kubectl("get", "events", "-A")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAMESPACE", "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    failed = [row for row in rows if "FailedCreate" in row]
    assert failed and f"daemonset/{PLUGIN_DS}" in failed[0]
    assert failed[0].endswith(f'Error creating: pods "{PLUGIN_DS}-" is forbidden: pod rejected: '
                              'RuntimeClass "nvidia" not found')


def test_kubectl_apply_and_create_a_runtimeclass(lab: Callable[..., Any], kubectl: Callable[..., Any],
                                                 tmp_path: Path) -> None:
    lab("runtimeclass-missing")
    manifest = tmp_path / "runtimeclass-nvidia.yaml"
    manifest.write_text("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: nvidia\nhandler: nvidia\n")
    missing = kubectl("get", "runtimeclass", "nvidia")
    assert missing.returncode == 1
    assert 'Error from server (NotFound): runtimeclasses.node.k8s.io "nvidia" not found' in missing.stderr
    applied = kubectl("apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip() == "runtimeclass.node.k8s.io/nvidia created"
    assert kubectl("apply", "-f", str(manifest)).stdout.strip() == "runtimeclass.node.k8s.io/nvidia unchanged"
    again = kubectl("create", "-f", str(manifest))
    assert again.returncode == 1 and "(AlreadyExists)" in again.stderr and "already exists" in again.stderr
    # the DaemonSet controller now creates the pod; it is Ready a moment later
    ready = wait_for(lambda: kubectl("get", "ds", "-n", "kube-system", "--no-headers").stdout.split()[1:6]
                     == ["1", "1", "1", "1", "1"], timeout=10, step=0.3)
    assert ready
    deleted = kubectl("delete", "runtimeclass", "nvidia")
    assert deleted.stdout.strip() == 'runtimeclass.node.k8s.io "nvidia" deleted'


# ---- the official Python client -------------------------------------------------------------------------

def test_python_client_reads(lab: Callable[..., Any], api_client: client.ApiClient) -> None:
    lab("healthy")
    v1, apps, node_api = client.CoreV1Api(api_client), client.AppsV1Api(api_client), client.NodeV1Api(api_client)
    node = v1.read_node("gpu-node-1")
    assert node.status.capacity["nvidia.com/gpu"] == "2" and node.status.allocatable["nvidia.com/gpu"] == "2"
    assert node.status.node_info.kubelet_version == "v1.34.1"
    assert next(c for c in node.status.conditions if c.type == "Ready").status == "True"
    daemonsets = apps.list_daemon_set_for_all_namespaces(
        label_selector="app.kubernetes.io/name=nvidia-device-plugin").items
    assert [ds.metadata.name for ds in daemonsets] == [PLUGIN_DS]
    assert daemonsets[0].status.desired_number_scheduled == 1 and daemonsets[0].status.number_ready == 1
    pods = v1.list_pod_for_all_namespaces(label_selector="app.kubernetes.io/instance in (nvidia-device-plugin)").items
    assert len(pods) == 1
    pod = pods[0]
    assert pod.spec.runtime_class_name == "nvidia" and pod.spec.node_name == "gpu-node-1"
    assert pod.metadata.owner_references[0].kind == "DaemonSet"
    assert pod.metadata.owner_references[0].uid == daemonsets[0].metadata.uid
    assert pod.status.container_statuses[0].ready is True
    log = v1.read_namespaced_pod_log(pod.metadata.name, "kube-system", tail_lines=1,
                                     container="nvidia-device-plugin-ctr")
    assert log.strip().endswith("Registered device plugin for 'nvidia.com/gpu' with Kubelet")
    assert node_api.read_runtime_class("nvidia").handler == "nvidia"
    with pytest.raises(client.ApiException) as raised:
        node_api.read_runtime_class("missing")
    assert raised.value.status == 404
    status = json.loads(raised.value.body)
    assert status["reason"] == "NotFound" and status["message"] == 'runtimeclasses.node.k8s.io "missing" not found'
    assert v1.list_namespace().items and v1.read_namespace("kube-system").status.phase == "Active"


def test_python_client_events_with_field_selectors(lab: Callable[..., Any], api_client: client.ApiClient) -> None:
    lab("no-runtimeclassname")
    v1 = client.CoreV1Api(api_client)
    pod = plugin_pods(v1)[0]
    assert pod.status.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"
    assert pod.status.container_statuses[0].restart_count > 100
    events = v1.list_namespaced_event("kube-system", field_selector=f"involvedObject.name={pod.metadata.name},"
                                                                   "involvedObject.kind=Pod").items
    backoff = [event for event in events if event.reason == "BackOff"]
    assert backoff and backoff[0].type == "Warning" and backoff[0].count > 100
    assert backoff[0].source.component == "kubelet" and backoff[0].reporting_component == "kubelet"
    assert backoff[0].involved_object.uid == pod.metadata.uid
    assert v1.list_namespaced_event("kube-system", field_selector="involvedObject.kind=Node").items == []
    everywhere = v1.list_event_for_all_namespaces(field_selector="involvedObject.namespace=kube-system").items
    assert {event.metadata.name for event in events} <= {event.metadata.name for event in everywhere}
    log = v1.read_namespaced_pod_log(pod.metadata.name, "kube-system")
    assert "Incompatible strategy detected auto" in log
    assert "If this is a GPU node, did you configure the NVIDIA Container Toolkit?" in log


def test_gpu_test_pod_runs_nvidia_smi(lab: Callable[..., Any], api_client: client.ApiClient) -> None:
    lab("healthy")
    v1 = client.CoreV1Api(api_client)
    stream = watch.Watch()
    created = v1.create_namespaced_pod("default", gpu_test_pod())
    name = created.metadata.name
    assert name.startswith("nvidia-test-") and created.status.phase == "Pending"
    phases = []
    for event in stream.stream(v1.list_namespaced_pod, "default", field_selector=f"metadata.name={name}",
                               timeout_seconds=10):
        phases.append((event["type"], event["object"].status.phase))
        if event["object"].status.phase == "Succeeded":
            stream.stop()
    assert phases[0][0] == "ADDED" and phases[-1][1] == "Succeeded"
    log = v1.read_namespaced_pod_log(name, "default").splitlines()
    assert "Driver Version: 570.172.08     CUDA Version: 12.8" in log[2]
    assert sum("NVIDIA H100 NVL" in line for line in log) == 1 and "95830MiB" in log[9] and "400W" in log[9]
    assert "No running processes found" in log[-2] and log[-1] == "+" + "-" * 89 + "+"
    reasons = [e.reason for e in v1.list_namespaced_event("default", field_selector=f"involvedObject.name={name}").items]
    assert {"Scheduled", "Pulled", "Created", "Started"} <= set(reasons)
    deleted = v1.delete_namespaced_pod(name, "default")
    assert deleted.metadata.deletion_timestamp is not None
    with pytest.raises(client.ApiException) as raised:
        v1.read_namespaced_pod(name, "default")
    assert raised.value.status == 404


def test_test_pod_log_follow_streams_until_the_pod_ends(lab: Callable[..., Any],
                                                        api_client: client.ApiClient) -> None:
    lab("healthy")
    v1 = client.CoreV1Api(api_client)
    name = v1.create_namespaced_pod("default", gpu_test_pod(command=["nvidia-smi", "-L"], gpus=2)).metadata.name
    wait_for(lambda: v1.read_namespaced_pod(name, "default").status.phase != "Pending")
    response = v1.read_namespaced_pod_log(name, "default", follow=True, _preload_content=False)
    text = response.data.decode()
    assert text.splitlines()[0].startswith("GPU 0: NVIDIA H100 NVL (UUID: GPU-")
    assert text.splitlines()[1].startswith("GPU 1: NVIDIA H100 NVL (UUID: GPU-")
    assert v1.read_namespaced_pod(name, "default").status.phase == "Succeeded"


@pytest.mark.parametrize(("scenario", "pod_kwargs", "reason", "message"), [
    ("modules-not-loaded", {}, "FailedScheduling",
     "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: "
     "1 No preemption victims found for incoming pod."),
    ("healthy", {"tolerate_control_plane": False}, "FailedScheduling",
     "0/1 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. "
     "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."),
    ("extensions-missing", {"gpus": 0}, "FailedCreatePodSandBox",
     'Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox runtime: '
     'no runtime for "nvidia" is configured'),
])
def test_test_pod_failures_look_real(lab: Callable[..., Any], api_client: client.ApiClient, scenario: str,
                                     pod_kwargs: dict[str, Any], reason: str, message: str) -> None:
    lab(scenario)
    v1 = client.CoreV1Api(api_client)
    name = v1.create_namespaced_pod("default", gpu_test_pod(**pod_kwargs)).metadata.name
    events = wait_for(lambda: [e for e in v1.list_namespaced_event(
        "default", field_selector=f"involvedObject.name={name},reason={reason}").items])
    assert events and events[0].message == message and events[0].type == "Warning"
    time.sleep(1.0)
    assert v1.read_namespaced_pod(name, "default").status.phase == "Pending"
    with pytest.raises(client.ApiException) as raised:
        v1.read_namespaced_pod_log(name, "default")
    assert raised.value.status == 400


def test_test_pod_is_rejected_without_the_runtimeclass(lab: Callable[..., Any], api_client: client.ApiClient) -> None:
    lab("runtimeclass-missing")
    v1 = client.CoreV1Api(api_client)
    with pytest.raises(client.ApiException) as raised:
        v1.create_namespaced_pod("default", {**gpu_test_pod(), "metadata": {"name": "nvidia-test"}})
    assert raised.value.status == 403
    assert json.loads(raised.value.body)["message"] == \
        'pods "nvidia-test" is forbidden: pod rejected: RuntimeClass "nvidia" not found'


def test_test_pod_start_error_when_the_bpf_jit_is_hardened(lab: Callable[..., Any],
                                                           api_client: client.ApiClient) -> None:
    lab("bpf-sysctl-missing")
    v1 = client.CoreV1Api(api_client)
    # no plugin GPUs are advertised in this fate, so ask for none: the runtime hook still fails
    name = v1.create_namespaced_pod("default", gpu_test_pod(gpus=0)).metadata.name
    pod = wait_for(lambda: (p := v1.read_namespaced_pod(name, "default")).status.phase == "Failed" and p)
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.reason == "StartError" and terminated.exit_code == 128
    assert "nvidia-container-cli: mount error: failed to add device rules" in terminated.message


# ---- each device-plugin fate, from its scenario ----------------------------------------------------

def _fate_summary(api_client: client.ApiClient) -> dict[str, Any]:
    v1, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    ds = apps.read_namespaced_daemon_set(PLUGIN_DS, "kube-system")
    node = v1.read_node("gpu-node-1")
    pods = plugin_pods(v1)
    summary: dict[str, Any] = {
        "desired": ds.status.desired_number_scheduled, "ready": ds.status.number_ready,
        "gpus": (node.status.allocatable or {}).get("nvidia.com/gpu"), "pods": len(pods),
        "events": [e.reason for e in v1.list_namespaced_event("kube-system").items],
        "node_ready": next(c.status for c in node.status.conditions if c.type == "Ready"),
    }
    if pods:
        state = pods[0].status.container_statuses[0].state
        summary["waiting"] = state.waiting.reason if state.waiting else None
        summary["waiting_message"] = state.waiting.message if state.waiting else ""
        try:
            summary["log"] = v1.read_namespaced_pod_log(pods[0].metadata.name, "kube-system")
        except client.ApiException as error:
            summary["log"] = json.loads(error.body)["message"]
    return summary


def test_fate_nfd_affinity_schedules_nothing(lab: Callable[..., Any], api_client: client.ApiClient) -> None:
    lab("nfd-affinity")
    summary = _fate_summary(api_client)
    assert (summary["desired"], summary["pods"], summary["gpus"]) == (0, 0, None)


def test_fate_runtimeclass_missing_is_a_failed_create(lab: Callable[..., Any], api_client: client.ApiClient) -> None:
    lab("runtimeclass-missing")
    summary = _fate_summary(api_client)
    assert (summary["desired"], summary["pods"], summary["gpus"]) == (1, 0, None)
    assert "FailedCreate" in summary["events"]


def test_fate_no_runtimeclassname_crash_loops(lab: Callable[..., Any], api_client: client.ApiClient) -> None:
    lab("no-runtimeclassname")
    summary = _fate_summary(api_client)
    assert summary["waiting"] == "CrashLoopBackOff" and summary["gpus"] is None
    assert "Incompatible strategy detected auto" in summary["log"]


def test_fate_healthy_registers_two_gpus(lab: Callable[..., Any], api_client: client.ApiClient) -> None:
    lab("healthy")
    summary = _fate_summary(api_client)
    assert (summary["desired"], summary["ready"], summary["gpus"]) == (1, 1, "2")
    assert "Registered device plugin for 'nvidia.com/gpu' with Kubelet" in summary["log"]


def test_fate_gpu_not_initialised_registers_one(lab: Callable[..., Any], api_client: client.ApiClient) -> None:
    lab("gpu-not-initialised")
    assert _fate_summary(api_client)["gpus"] == "1"


def test_fate_driver_missing_fails_nvml(lab: Callable[..., Any], api_client: client.ApiClient) -> None:
    lab("modules-not-loaded")
    summary = _fate_summary(api_client)
    assert summary["waiting"] == "CrashLoopBackOff" and summary["gpus"] is None
    assert "Failed to initialize NVML: ERROR_DRIVER_NOT_LOADED." in summary["log"]


def test_fate_runtime_not_ok_is_run_container_error(lab: Callable[..., Any], api_client: client.ApiClient) -> None:
    lab("bpf-sysctl-missing")
    summary = _fate_summary(api_client)
    assert summary["waiting"] == "RunContainerError" and "Failed" in summary["events"]
    assert "nvidia-container-cli: mount error" in summary["waiting_message"]
    assert summary["log"].endswith("is waiting to start: RunContainerError")


def test_fate_handler_missing_is_a_sandbox_failure(lab: Callable[..., Any], api_client: client.ApiClient) -> None:
    lab("extensions-missing")
    summary = _fate_summary(api_client)
    assert summary["waiting"] == "ContainerCreating" and "FailedCreatePodSandBox" in summary["events"]


def test_node_not_ready_drops_gpus_and_readiness(lab: Callable[..., Any], api_client: client.ApiClient) -> None:
    lab("node-notready")
    summary = _fate_summary(api_client)
    assert summary["node_ready"] == "False" and summary["gpus"] is None and summary["ready"] == 0
    node = client.CoreV1Api(api_client).read_node("gpu-node-1")
    assert {t.key for t in node.spec.taints} >= {"node.kubernetes.io/not-ready"}


# ---- protocol details: watch, pagination, auth --------------------------------------------------------

def test_watch_replays_from_a_resource_version_and_expires_old_ones(lab: Callable[..., Any],
                                                                    api_client: client.ApiClient) -> None:
    handle = lab("fresh")
    v1 = client.CoreV1Api(api_client)
    listed = v1.list_namespaced_pod("default")
    name = v1.create_namespaced_pod("default", gpu_test_pod(gpus=0, runtime_class=None, command=["true"])).metadata.name
    stream = watch.Watch()
    seen = []
    for event in stream.stream(v1.list_namespaced_pod, "default", resource_version=listed.metadata.resource_version,
                               timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name, event["object"].status.phase))
        if event["object"].status.phase == "Succeeded":
            stream.stop()
    assert seen[0][:2] == ("ADDED", name) and seen[-1][2] == "Succeeded"
    code, _, body = raw_request(handle, "GET", "/api/v1/nodes?watch=true&resourceVersion=1&timeoutSeconds=2")
    event = json.loads(body.splitlines()[0])
    assert code == 200 and event["type"] == "ERROR"
    assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"


def test_list_pagination_with_limit_and_continue(lab: Callable[..., Any], api_client: client.ApiClient) -> None:
    lab("healthy")
    v1 = client.CoreV1Api(api_client)
    first = v1.list_namespace(limit=3)
    assert len(first.items) == 3 and first.metadata._continue and first.metadata.remaining_item_count == 1
    rest = v1.list_namespace(limit=3, _continue=first.metadata._continue)
    names = [ns.metadata.name for ns in first.items + rest.items]
    assert names == ["default", "kube-node-lease", "kube-public", "kube-system"] and not rest.metadata._continue


def test_requests_without_the_token_are_unauthorized(lab: Callable[..., Any]) -> None:
    handle = lab("healthy")
    for token in (None, "wrong"):
        code, headers, body = raw_request(handle, "GET", "/api/v1/nodes", token=token)
        assert code == 401 and headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    assert raw_request(handle, "GET", "/version")[0] == 200


def test_server_side_table_for_kubectl(lab: Callable[..., Any]) -> None:
    handle = lab("no-runtimeclassname")
    code, _, body = raw_request(handle, "GET", "/api/v1/pods", headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    table = json.loads(body)
    assert code == 200 and table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0] == \
        ["Name", "Ready", "Status", "Restarts", "Age"]
    cells = table["rows"][0]["cells"]
    assert cells[1:3] == ["0/1", "CrashLoopBackOff"] and cells[3].endswith(" ago)")
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


# ---- fault knobs ------------------------------------------------------------------------------------

def test_fault_api_status_fails_matching_requests(lab: Callable[..., Any], api_client: client.ApiClient) -> None:
    lab("healthy", faults={"api_status": {"path_regex": "^/api/v1/nodes", "code": 500}})
    v1 = client.CoreV1Api(api_client)
    with pytest.raises(client.ApiException) as raised:
        v1.read_node("gpu-node-1")
    assert raised.value.status == 500 and json.loads(raised.value.body)["reason"] == "InternalError"
    assert v1.list_namespace().items  # other paths still answer


def test_fault_api_down_closes_connections(lab: Callable[..., Any]) -> None:
    handle = lab("healthy", faults={"api_down": True})
    api = config.new_client_from_config(str(handle.kubeconfig))
    api.configuration.retries = 0
    with pytest.raises((MaxRetryError, ProtocolError, OSError)):
        client.CoreV1Api(api).read_node("gpu-node-1", _request_timeout=2)


def test_fault_api_oversize_pads_lists(lab: Callable[..., Any]) -> None:
    handle = lab("healthy")
    normal = len(raw_request(handle, "GET", "/api/v1/nodes")[2])
    lab("healthy", faults={"api_oversize": 50})
    code, _, body = raw_request(handle, "GET", "/api/v1/nodes")
    assert code == 200 and len(body) > 40 * normal
    assert json.loads(body)["items"][0]["metadata"]["name"] == "gpu-node-1"


def test_fault_watch_drop_after_cuts_the_stream(lab: Callable[..., Any]) -> None:
    handle = lab("healthy", faults={"watch_drop_after": 0.3})
    started = time.monotonic()
    with pytest.raises(http.client.IncompleteRead):
        raw_request(handle, "GET", "/api/v1/nodes?watch=true&timeoutSeconds=20")
    assert time.monotonic() - started < 5
    lab("healthy")
    code, _, body = raw_request(handle, "GET", "/api/v1/nodes?watch=true&timeoutSeconds=1")
    assert code == 200 and json.loads(body.splitlines()[0])["type"] == "ADDED"


def test_fault_hang_and_latency_knobs_slow_answers(lab: Callable[..., Any]) -> None:
    handle = lab("healthy", knobs={"api_latency_ms": 200})
    started = time.monotonic()
    assert raw_request(handle, "GET", "/api/v1/nodes")[0] == 200
    assert time.monotonic() - started >= 0.2
    lab("healthy", faults={"api_hang_s": {"seconds": 3, "path_regex": "/nodes"}})
    with pytest.raises(TimeoutError):
        raw_request(handle, "GET", "/api/v1/nodes", timeout=0.5)
    assert raw_request(handle, "GET", "/api/v1/namespaces", timeout=2)[0] == 200


# ---- speed ----------------------------------------------------------------------------------------------

def test_requests_stay_fast_with_a_thousand_nodes(tmp_path: Path) -> None:
    from lab.runtime import start_lab

    with start_lab("healthy", state_dir=tmp_path / "big", extra_nodes=1000) as handle:
        raw_request(handle, "GET", "/api/v1/nodes")
        timings = []
        for path in ("/api/v1/nodes/gpu-node-1", "/api/v1/namespaces/kube-system/pods", "/api/v1/nodes"):
            started = time.perf_counter()
            code, _, body = raw_request(handle, "GET", path)
            timings.append(time.perf_counter() - started)
            assert code == 200
        assert len(json.loads(body)["items"]) == 1001
        # generous bounds: CI machines are shared; locally these are a few ms and ~40 ms
        assert timings[0] < 0.25 and timings[1] < 0.25 and timings[2] < 1.5
