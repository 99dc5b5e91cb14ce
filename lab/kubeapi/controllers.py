"""The lab cluster's controllers: what the Kubernetes objects look like NOW, given the node.

Pure functions of (state, NodeView, now). `normalize` fills in what a real API server always sets
(uids, creation timestamps, default namespaces) once per loaded state; `reconcile` then derives,
without touching the state:

* the Talos node's Node status (Ready condition, `nvidia.com/gpu` capacity/allocatable, nodeInfo,
  not-ready taints),
* each DaemonSet's status, its pod on the Talos node and the events around it, following the
  "Device plugin fate" of lab/CONTRACT.md in order (scheduling, RuntimeClass, runtime handler,
  runtimeClassName, driver, container runtime, healthy),
* the status, events and log of every pod created through the API (the GPU test pod: scheduling
  against free `nvidia.com/gpu`, sandbox, container start, nvidia-smi output),
* a node Lease for `kubectl describe node`,
* on a cluster with the GPU Operator (lab/operator.py): its ClusterPolicy's status, the DaemonSets it
  creates and their pods (the validator's init containers gate on the driver, the CDI spec, the GPUs and
  the device plugin), its RuntimeClasses, its node labels.

Times in the objects are derived from stored timestamps and quantised steps (crash-loop back-off,
event counts), so an object only changes when something really happened: the API server numbers
those changes as resourceVersions and streams them to watches.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
import shlex
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab import operator as gpu_operator
from lab.kubeapi import devplugin_logs as logs
from lab.node import reboot_seconds, timeline

if TYPE_CHECKING:
    from lab.node import NodeView

GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
POD_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
UID_NAMESPACE = uuid.UUID("6c1b3c1e-8a7e-4d5f-9b0a-7a1f00d5e9c1")
DAEMONSET_DEFAULT_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
# Test pod timeline after creation (seconds): sandbox + image, then the container runs.
TEST_POD_START_S = 0.3
TEST_POD_RUN_S = 0.5
CRASH_RUN_S = 1.0
KUBELET_START_S = 3.0
EVENT_TTL_S = 3600.0  # kube-apiserver's default --event-ttl: older events are gone


# --- small helpers --------------------------------------------------------------------------------

def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))


def parse_time(value: Any, default: float = 0.0) -> float:
    """RFC 3339 (`2025-01-02T03:04:05Z`, fractions and offsets allowed), Helm's `updated`, or epoch."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value:
        return default
    match = re.match(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?", value)
    if not match:
        return default
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    epoch = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    epoch += float(match.group(7) or 0)
    offset = match.group(8)
    if offset and offset != "Z":
        sign = -1 if offset[0] == "+" else 1
        digits = offset[1:].replace(":", "")
        epoch += sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return epoch


def stable_uid(*parts: str) -> str:
    return str(uuid.uuid5(UID_NAMESPACE, "/".join(parts)))


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x00".join(parts).encode()).digest()


def pod_suffix(*parts: str) -> str:
    return "".join(POD_NAME_ALPHABET[byte % len(POD_NAME_ALPHABET)] for byte in _digest(*parts)[:5])


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = _meta(obj)
    return (meta.get("namespace") or "", meta.get("name") or "")


def backoff_schedule(first: float, now: float, run_s: float, *, base: float = 10.0, cap: float = 300.0
                     ) -> tuple[int, float, float]:
    """Kubelet-style restarts since `first`: (restarts so far, start of the current attempt, its back-off)."""
    restarts, start, backoff = 0, first, base
    while True:
        backoff = min(base * (2 ** restarts), cap)
        following = start + run_s + backoff
        if following > now:
            return restarts, start, backoff
        start, restarts = following, restarts + 1
        if backoff >= cap:
            extra = int((now - start) // (run_s + cap))
            return restarts + extra, start + extra * (run_s + cap), cap


# --- normalisation (once per loaded state) ----------------------------------------------------------

def normalize(state: dict[str, Any]) -> dict[str, Any]:
    """Fill in server-set fields (uid, creationTimestamp, apiVersion/kind, namespaces) IN PLACE."""
    kube = state.setdefault("kube", {})
    talos = state.get("talos") or {}
    cluster_birth = float(talos.get("boot_time") or time.time()) - 86400
    kinds = {
        "nodes": ("v1", "Node"), "namespaces": ("v1", "Namespace"), "pods": ("v1", "Pod"),
        "events": ("v1", "Event"), "daemonsets": ("apps/v1", "DaemonSet"),
        "runtimeclasses": ("node.k8s.io/v1", "RuntimeClass"),
        "clusterpolicies": (gpu_operator.API_VERSION, "ClusterPolicy"),
    }
    for collection in kinds:
        kube.setdefault(collection, [])
    present = {_meta(ns).get("name") for ns in kube["namespaces"]}
    for name in DEFAULT_NAMESPACES:
        if name not in present:
            kube["namespaces"].append({"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
                                       "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
    for collection, (api_version, kind) in kinds.items():
        for obj in kube[collection]:
            obj.setdefault("apiVersion", api_version)
            obj.setdefault("kind", kind)
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", stable_uid(collection, meta.get("namespace") or "", meta.get("name") or ""))
            meta.setdefault("creationTimestamp", iso(cluster_birth))
            if collection == "namespaces":
                obj.setdefault("status", {"phase": "Active"})
    return state


# --- scheduling --------------------------------------------------------------------------------------

def _toleration_matches(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    operator = toleration.get("operator") or "Equal"
    key = toleration.get("key") or ""
    if not key:
        return operator == "Exists"
    if key != taint.get("key"):
        return False
    return operator == "Exists" or (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taints(tolerations: Iterable[Mapping[str, Any]], taints: Iterable[Mapping[str, Any]]
                       ) -> list[Mapping[str, Any]]:
    tolerations = list(tolerations)
    return [
        taint for taint in taints
        if taint.get("effect") in ("NoSchedule", "NoExecute")
        and not any(_toleration_matches(toleration, taint) for toleration in tolerations)
    ]


def _expression_matches(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = expression.get("key", ""), expression.get("operator", "")
    values = [str(value) for value in expression.get("values") or []]
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    if operator in ("Gt", "Lt") and key in labels and values:
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if operator == "Gt" else have < want
    return False


def _term_matches(term: Mapping[str, Any], labels: Mapping[str, str], node_name: str) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    if not all(_expression_matches(expression, labels) for expression in expressions):
        return False
    return all(_expression_matches(expression, {"metadata.name": node_name}) for expression in fields)


def node_affinity_matches(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """nodeSelector AND required node affinity (its terms ORed, expressions ANDed)."""
    labels = _meta(node).get("labels") or {}
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != str(value):
            return False
    affinity = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return True
    terms = required.get("nodeSelectorTerms") or []
    return any(_term_matches(term, labels, _meta(node).get("name", "")) for term in terms)


def daemonset_schedulable(ds: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """Whether the DaemonSet's pod template fits the node (selector, affinity, taints; not the
    node-lifecycle taints, which DaemonSet pods tolerate or outlive)."""
    template_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    taints = [t for t in (node.get("spec") or {}).get("taints") or []
              if not str(t.get("key", "")).startswith(("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"))]
    return node_affinity_matches(template_spec, node) and not untolerated_taints(
        [*(template_spec.get("tolerations") or []), *DAEMONSET_DEFAULT_TOLERATIONS], taints)


def taint_text(taint: Mapping[str, Any]) -> str:
    return f"{{{taint.get('key')}: {taint.get('value') or ''}}}"


# --- the model ---------------------------------------------------------------------------------------

@dataclass
class ContainerLog:
    """What `GET .../pods/NAME/log` returns for one container, or why it cannot."""

    lines: list[str] = field(default_factory=list)
    waiting_reason: str | None = None    # the container has not started: 400 "is waiting to start"
    running: bool = False                # still producing output (follow keeps the stream open)


@dataclass
class Cluster:
    """Every object the API serves, as of `now`."""

    nodes: list[dict[str, Any]]
    namespaces: list[dict[str, Any]]
    runtimeclasses: list[dict[str, Any]]
    daemonsets: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    events: list[dict[str, Any]]
    leases: list[dict[str, Any]]
    logs: dict[tuple[str, str, str], ContainerLog]
    kubelet_reachable: bool = True
    node_address: str = ""
    clusterpolicies: list[dict[str, Any]] = field(default_factory=list)

    def collection(self, name: str) -> list[dict[str, Any]]:
        return getattr(self, name)


@dataclass
class _Ctx:
    state: Mapping[str, Any]
    view: NodeView
    now: float
    node: dict[str, Any]
    node_name: str
    boot_time: float
    events: list[dict[str, Any]]
    logs: dict[tuple[str, str, str], ContainerLog]


def _event(ctx: _Ctx, *, involved: Mapping[str, Any], reason: str, message: str, component: str,
           first: float, last: float | None = None, count: int = 1, warning: bool = False,
           field_path: str | None = None) -> None:
    last = min(last if last is not None else first, ctx.now)
    if first > ctx.now or last < ctx.now - EVENT_TTL_S:
        return
    meta = _meta(involved)
    namespace = meta.get("namespace") or "default"
    reference = {
        "kind": involved.get("kind"), "namespace": meta.get("namespace") or None, "name": meta.get("name"),
        "uid": meta.get("uid"), "apiVersion": involved.get("apiVersion"),
    }
    if involved.get("kind") == "Node":
        reference["uid"] = meta.get("name")
        reference.pop("namespace")
    if field_path:
        reference["fieldPath"] = field_path
    reference = {key: value for key, value in reference.items() if value is not None}
    # kubelet/controllers name events "<object>.<hex of UnixNano of the first occurrence>"
    nanos = int(first * 1e9) + int(hashlib.sha1(f"{reason}|{field_path}".encode()).hexdigest()[:3], 16)
    identity = f"{nanos:x}"
    host = ctx.node_name if component == "kubelet" else None
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta.get('name')}.{identity}", "namespace": namespace,
                     "uid": stable_uid("event", namespace, identity), "creationTimestamp": iso(first)},
        "involvedObject": reference,
        "reason": reason, "message": message,
        "source": {"component": component, **({"host": host} if host else {})},
        "firstTimestamp": iso(first), "lastTimestamp": iso(last), "count": max(count, 1),
        "type": "Warning" if warning else "Normal",
        "eventTime": None,
        "reportingComponent": component, "reportingInstance": host or "",
    }
    ctx.events.append(event)


def _find_talos_node(nodes: list[dict[str, Any]], talos: Mapping[str, Any]) -> int | None:
    hostname, address = talos.get("hostname"), talos.get("node")
    for index, node in enumerate(nodes):
        if _meta(node).get("name") == hostname:
            return index
    for index, node in enumerate(nodes):
        for entry in (node.get("status") or {}).get("addresses") or []:
            if entry.get("type") == "InternalIP" and entry.get("address") == address:
                return index
    return None


def _is_device_plugin(ds: Mapping[str, Any]) -> bool:
    labels = _meta(ds).get("labels") or {}
    if labels.get("app") == gpu_operator.GFD:  # GPU Feature Discovery ships in the device plugin's image
        return False
    if labels.get("app.kubernetes.io/name") == "nvidia-device-plugin" or "nvidia-device-plugin" in _meta(ds).get("name", ""):
        return True
    containers = (((ds.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return any("k8s-device-plugin" in (container.get("image") or "") for container in containers)


def _container_requests(pod_spec: Mapping[str, Any], resource: str) -> int:
    total = 0
    for container in pod_spec.get("containers") or []:
        resources = container.get("resources") or {}
        amount = (resources.get("limits") or {}).get(resource) or (resources.get("requests") or {}).get(resource)
        if amount is not None:
            try:
                total += int(str(amount))
            except ValueError:
                continue
    return total


def _smi_gpus(state: Mapping[str, Any], view: NodeView, count: int | None) -> list[logs.SmiGpu]:
    talos = state.get("talos") or {}
    broken = set(talos.get("broken_gpus") or [])
    devices = [
        device for device in talos.get("pci_devices") or []
        if str(device.get("vendor_id", "")).lower() == "0x10de" or "NVIDIA" in str(device.get("vendor", ""))
    ]
    healthy = [device for device in devices if device.get("id") not in broken]
    healthy = healthy[: view.gpus_initialised]
    if count is not None:
        healthy = healthy[:count]
    gpus = []
    for index, device in enumerate(healthy):
        product = str(device.get("product", ""))
        bracket = re.search(r"\[(.+)\]", product)
        name = "NVIDIA " + (bracket.group(1) if bracket else product or "GPU")
        product_id = str(device.get("product_id", "0x2321")).lower().removeprefix("0x")
        gpus.append(logs.SmiGpu(
            index=index, name=name, bus_id=logs.smi_bus_id(str(device.get("id", f"0000:{index:02x}:00.0"))),
            power_draw_w=59 + index % 3, temperature_c=43 - index % 2,
            pci_device_id=f"0x{product_id.upper()}10DE",
        ))
    return gpus


# --- Node ---------------------------------------------------------------------------------------------

def _node_status(ctx: _Ctx, plugin_registered: bool) -> None:
    node, view, now = ctx.node, ctx.view, ctx.now
    status = node.setdefault("status", {})
    talos = ctx.state.get("talos") or {}
    reboot = talos.get("reboot") or {}
    went_down = parse_time(reboot.get("started"), ctx.boot_time) if reboot else ctx.boot_time
    ready_since = ctx.boot_time + KUBELET_START_S
    if view.kube_ready:
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "kubelet is posting ready status",
                 "lastHeartbeatTime": iso(max(ready_since, now - (now - ready_since) % 60)),
                 "lastTransitionTime": iso(ready_since)}
    elif view.phase == "down":
        ready = {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                 "message": "Kubelet stopped posting node status.",
                 "lastHeartbeatTime": iso(went_down), "lastTransitionTime": iso(went_down + 40)}
    else:
        ready = {"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                 "message": "container runtime network not ready: NetworkReady=false "
                            "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
                 "lastHeartbeatTime": iso(went_down), "lastTransitionTime": iso(went_down)}
    conditions = [dict(condition) for condition in status.get("conditions") or [] if condition.get("type") != "Ready"]
    present = {condition.get("type") for condition in conditions}
    for kind, reason, message in (
        ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ):
        if kind not in present:
            conditions.append({"type": kind, "status": "False", "reason": reason, "message": message,
                               "lastHeartbeatTime": ready["lastHeartbeatTime"],
                               "lastTransitionTime": iso(ready_since)})
    status["conditions"] = [*conditions, ready]

    advertised, replicas = GPU_RESOURCE, 1
    for ds in (ctx.state.get("kube") or {}).get("daemonsets") or []:
        if _is_device_plugin(ds):
            _sharing, advertised, replicas = release_sharing(ctx.state, ds)
            break
    for key in ("capacity", "allocatable"):
        resources = dict(status.get(key) or {})
        resources.pop(GPU_RESOURCE, None)
        resources.pop(GPU_RESOURCE + ".shared", None)
        if plugin_registered and view.kube_ready:
            # the kubelet counts unhealthy devices in capacity, not in allocatable (devicemanager)
            unhealthy = len(xid_faults(ctx.state, view)) if key == "allocatable" else 0
            resources[advertised] = str((view.gpus_initialised - unhealthy) * replicas)
        status[key] = resources

    info = dict(status.get("nodeInfo") or {})
    defaults = {
        "architecture": "amd64", "bootID": stable_uid("boot", str(ctx.boot_time)),
        "containerRuntimeVersion": "containerd://2.1.5", "kernelVersion": "6.12.57-talos",
        "kubeProxyVersion": "", "kubeletVersion": "v1.34.1",
        "machineID": hashlib.md5(ctx.node_name.encode()).hexdigest(), "operatingSystem": "linux",
        "osImage": f"Talos ({view.talos_version})", "systemUUID": stable_uid("system", ctx.node_name),
    }
    for key, value in defaults.items():
        info.setdefault(key, value)
    info["osImage"] = f"Talos ({view.talos_version})"
    info["bootID"] = defaults["bootID"]
    status["nodeInfo"] = info

    spec = node.setdefault("spec", {})
    taints = [taint for taint in spec.get("taints") or []
              if not str(taint.get("key", "")).startswith(("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"))]
    if not view.kube_ready:
        key = "node.kubernetes.io/unreachable" if view.phase == "down" else "node.kubernetes.io/not-ready"
        taints.append({"key": key, "effect": "NoSchedule", "timeAdded": iso(went_down)})
        if view.phase == "down":
            taints.append({"key": key, "effect": "NoExecute", "timeAdded": iso(went_down + 40)})
    if taints:
        spec["taints"] = taints
    else:
        spec.pop("taints", None)

    if view.kube_ready:
        _event(ctx, involved=node, reason="Starting", message="Starting kubelet.", component="kubelet",
               first=ctx.boot_time + 1)
        _event(ctx, involved=node, reason="NodeReady", message=f"Node {ctx.node_name} status is now: NodeReady",
               component="kubelet", first=ready_since)
    else:
        _event(ctx, involved=node, reason="NodeNotReady", message=f"Node {ctx.node_name} status is now: NodeNotReady",
               component="node-controller", first=went_down + 40)


def _lease(ctx: _Ctx) -> dict[str, Any]:
    renew = ctx.now - (ctx.now - ctx.boot_time) % 10 if ctx.view.kube_ready else ctx.boot_time
    node_meta = _meta(ctx.node)
    return {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": ctx.node_name, "namespace": "kube-node-lease",
                     "uid": stable_uid("lease", ctx.node_name),
                     "creationTimestamp": node_meta.get("creationTimestamp"),
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": ctx.node_name,
                                          "uid": node_meta.get("uid")}]},
        "spec": {"holderIdentity": ctx.node_name, "leaseDurationSeconds": 40,
                 "renewTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(int(renew)))},
    }


# --- DaemonSets -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fate:
    """What happens to a DaemonSet's pod on the Talos node."""

    kind: str                     # unschedulable | runtimeclass-missing | sandbox | crash | run-error | running
    log: str = ""                 # healthy | no-devices | no-nvml | nvml-init
    nvml_reason: str = ""
    handler: str = ""
    init_blocked: str = ""        # the init container the pod waits in (Init:n/m); "" once all have completed


def plugin_fate(template_spec: Mapping[str, Any], runtimeclasses: Mapping[str, Mapping[str, Any]],
                view: NodeView, *, device_plugin: bool) -> Fate:
    """The CONTRACT's device plugin fate, after scheduling (checked by the caller), in its order."""
    class_name = template_spec.get("runtimeClassName")
    if class_name and class_name not in runtimeclasses:
        return Fate("runtimeclass-missing")
    handler = str(runtimeclasses[class_name].get("handler") or "") if class_name else "runc"
    if handler != "runc" and not (handler == "nvidia" and view.nvidia_runtime_handler):
        return Fate("sandbox", handler=handler)
    if not device_plugin:
        return Fate("running")
    if handler != "nvidia":
        return Fate("crash", log="no-nvml")
    if view.driver_version is None or "nvidia" not in view.modules_loaded:
        reason = "ERROR_LIBRARY_NOT_FOUND" if view.kmod_ext_driver is None else "ERROR_DRIVER_NOT_LOADED"
        return Fate("crash", log="nvml-init", nvml_reason=reason)
    if view.kmod_ext_driver and view.toolkit_ext_driver and view.kmod_ext_driver != view.toolkit_ext_driver:
        return Fate("crash", log="nvml-init", nvml_reason="ERROR_LIB_RM_VERSION_MISMATCH")
    if not view.container_runtime_ok:
        return Fate("run-error")
    if view.gpus_initialised <= 0:
        return Fate("running", log="no-devices")
    return Fate("running", log="healthy")


def _template_time(ctx: _Ctx, ds: Mapping[str, Any]) -> float:
    """When the DaemonSet's current pod was created: DS creation, a later Helm upgrade, or a pod delete."""
    meta = _meta(ds)
    when = parse_time(meta.get("creationTimestamp"), ctx.boot_time)
    release = (meta.get("annotations") or {}).get("meta.helm.sh/release-name") or (meta.get("labels") or {}).get(
        "app.kubernetes.io/instance")
    for entry in ((ctx.state.get("helm") or {}).get("releases") or []):
        if entry.get("name") == release and entry.get("namespace") == meta.get("namespace"):
            when = max(when, parse_time(entry.get("updated"), when))
    recreated = ((ctx.state.get("kubeapi") or {}).get("recreated") or {}).get(f"{meta.get('namespace')}/{meta.get('name')}")
    if recreated:
        when = max(when, float(recreated))
    return when


def _conditions(*, scheduled: float, initialized: bool, ready: bool, ready_since: float,
                unready_reason: str = "ContainersNotReady", container: str = "", sandbox: bool = True
                ) -> list[dict[str, Any]]:
    def condition(kind: str, ok: bool, **extra: str) -> dict[str, Any]:
        return {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
                "lastTransitionTime": iso(ready_since if kind in ("Ready", "ContainersReady") else scheduled), **extra}

    not_ready = {} if ready else {"reason": unready_reason,
                                  "message": f"containers with unready status: [{container}]"}
    if unready_reason == "PodCompleted":
        not_ready = {"reason": "PodCompleted"}
    return [
        condition("PodReadyToStartContainers", sandbox),
        condition("Initialized", initialized),
        condition("Ready", ready, **not_ready),
        condition("ContainersReady", ready, **not_ready),
        condition("PodScheduled", True),
    ]


def _daemonset_pod(ctx: _Ctx, ds: Mapping[str, Any], fate: Fate, created: float, *, salt: str = "") -> dict[str, Any]:
    meta = _meta(ds)
    namespace, ds_name = meta.get("namespace") or "default", meta.get("name", "")
    template = clone((ds.get("spec") or {}).get("template") or {})
    template_meta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    template_hash = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    # Stable across runs and reboots; a new name only when the controller really makes a new pod.
    marker = str(((ctx.state.get("kubeapi") or {}).get("recreated") or {}).get(f"{namespace}/{ds_name}") or "")
    name = f"{ds_name}-{pod_suffix(meta.get('uid', ''), template_hash, marker, *([salt] if salt else []))}"
    uid = stable_uid("pod", namespace, name, marker)
    revision = "".join(POD_NAME_ALPHABET[b % len(POD_NAME_ALPHABET)] for b in _digest(template_hash)[:10])
    labels = {**(template_meta.get("labels") or {}), "controller-revision-hash": revision,
              "pod-template-generation": str(meta.get("generation") or 1)}
    tolerations = list(spec.get("tolerations") or [])
    for default in DAEMONSET_DEFAULT_TOLERATIONS:
        if default not in tolerations:
            tolerations.append(dict(default))
    spec.update({
        "nodeName": ctx.node_name,
        "tolerations": tolerations,
        "restartPolicy": spec.get("restartPolicy") or "Always",
        "schedulerName": spec.get("schedulerName") or "default-scheduler",
        "dnsPolicy": spec.get("dnsPolicy") or "ClusterFirst",
        "enableServiceLinks": spec.get("enableServiceLinks", True),
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [ctx.node_name]}]}]}}},
    })
    if spec.get("priorityClassName") == "system-node-critical":
        spec.setdefault("priority", 2000001000)
    for container in spec.get("containers") or []:
        container.setdefault("imagePullPolicy", "IfNotPresent")
        container.setdefault("resources", {})
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "generateName": f"{ds_name}-", "namespace": namespace, "uid": uid,
            "creationTimestamp": iso(created), "labels": labels,
            **({"annotations": dict(template_meta["annotations"])} if template_meta.get("annotations") else {}),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds_name,
                                 "uid": meta.get("uid"), "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": spec,
    }
    _run_pod(ctx, pod, fate, created=created, scheduled=created, owner=ds)
    return pod


def _container_status(container: Mapping[str, Any], *, ready: bool, restarts: int, state: dict[str, Any],
                      last_state: dict[str, Any] | None = None, started: bool | None = None,
                      pod_uid: str = "") -> dict[str, Any]:
    image = container.get("image", "")
    ran = "running" in state or "terminated" in state or bool(last_state)
    status = {
        "name": container.get("name", ""), "image": image,
        "imageID": (f"{image.split(':')[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}" if ran else ""),
        "ready": ready, "restartCount": restarts, "started": bool(started) if started is not None else ("running" in state),
        "state": state, "lastState": last_state or {},
    }
    if ran:
        status["containerID"] = "containerd://" + hashlib.sha256(f"{pod_uid}{restarts}".encode()).hexdigest()
    return status


def _run_pod(ctx: _Ctx, pod: dict[str, Any], fate: Fate, *, created: float, scheduled: float,
             owner: Mapping[str, Any] | None) -> None:
    """Status, events and log of a pod bound to the Talos node (DaemonSet pods restart for ever)."""
    meta, spec, view, now = pod["metadata"], pod["spec"], ctx.view, ctx.now
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    containers = spec.get("containers") or [{"name": "main", "image": ""}]
    container = containers[0]
    cname = container.get("name", "")
    field_path = f"spec.containers{{{cname}}}"
    node_ip = next((a.get("address") for a in (ctx.node.get("status") or {}).get("addresses") or []
                    if a.get("type") == "InternalIP"), ctx.state.get("talos", {}).get("node", ""))
    pod_ip = "10.244.0." + str(2 + int(hashlib.sha1(uid.encode()).hexdigest()[:4], 16) % 250)
    # Containers (re)start when the node (re)boots after the pod was created.
    first_start = max(scheduled + TEST_POD_START_S if owner is None else scheduled + 1.0,
                      ctx.boot_time + KUBELET_START_S)
    rebooted_since = 1 if owner is not None and ctx.boot_time > scheduled + KUBELET_START_S else 0
    status: dict[str, Any] = {"phase": "Pending", "hostIP": node_ip, "hostIPs": [{"ip": node_ip}],
                              "qosClass": "BestEffort", "startTime": iso(scheduled)}
    pod["status"] = status
    if owner is not None:
        _event(ctx, involved=owner, reason="SuccessfulCreate", message=f"Created pod: {name}",
               component="daemonset-controller", first=created)
    _event(ctx, involved=pod, reason="Scheduled", component="default-scheduler",
           message=f"Successfully assigned {namespace}/{name} to {ctx.node_name}", first=scheduled + 0.01)

    if fate.kind == "sandbox":
        attempts, last_attempt, _ = backoff_schedule(scheduled, now, 0.0, base=15.0, cap=300.0)
        message = logs.NO_RUNTIME_HANDLER_MESSAGE.replace('"nvidia"', f'"{fate.handler}"')
        _event(ctx, involved=pod, reason="FailedCreatePodSandBox", message=message, component="kubelet",
               first=scheduled + 0.1, last=last_attempt, count=attempts + 1, warning=True)
        status["conditions"] = _conditions(scheduled=scheduled, initialized=True, ready=False, ready_since=scheduled,
                                           container=cname, sandbox=False)
        status["containerStatuses"] = [_container_status(
            c, ready=False, restarts=0, state={"waiting": {"reason": "ContainerCreating"}}, pod_uid=uid)
            for c in containers]
        ctx.logs[(namespace, name, cname)] = ContainerLog(waiting_reason="ContainerCreating")
        return

    if not view.kube_ready and first_start > now:
        status["conditions"] = _conditions(scheduled=scheduled, initialized=True, ready=False, ready_since=scheduled,
                                           container=cname, sandbox=False)
        status["containerStatuses"] = [_container_status(
            c, ready=False, restarts=rebooted_since, state={"waiting": {"reason": "ContainerCreating"}}, pod_uid=uid)
            for c in containers]
        ctx.logs[(namespace, name, cname)] = ContainerLog(waiting_reason="ContainerCreating")
        return

    image = container.get("image", "")
    _event(ctx, involved=pod, reason="Pulled", component="kubelet", field_path=field_path,
           message=f'Container image "{image}" already present on machine', first=first_start - 0.2)
    status["podIP"], status["podIPs"] = pod_ip, [{"ip": pod_ip}]
    inits = spec.get("initContainers") or []
    if inits:
        status["initContainerStatuses"] = _init_statuses(inits, fate.init_blocked, first_start, uid)
    if fate.init_blocked:
        # an init container waits (the operator's validations poll until what they check is there)
        status["phase"] = "Pending"
        status["conditions"] = _conditions(scheduled=scheduled, initialized=False, ready=False,
                                           ready_since=first_start, container=cname)
        status["containerStatuses"] = [_container_status(
            c, ready=False, restarts=0, state={"waiting": {"reason": "PodInitializing"}}, pod_uid=uid)
            for c in containers]
        for c in containers:
            ctx.logs[(namespace, name, c.get("name", ""))] = ContainerLog(waiting_reason="PodInitializing")
        for init in inits:
            init_name = init.get("name", "")
            waiting = init_name == fate.init_blocked
            ctx.logs[(namespace, name, init_name)] = ContainerLog(
                lines=[f"waiting for {fate.init_blocked.removesuffix('-validation')} to be ready"] if waiting else [],
                running=waiting)
            if waiting:
                break
        return

    if fate.kind in ("crash", "run-error"):
        restarts, attempt_start, backoff = backoff_schedule(first_start, now, CRASH_RUN_S)
        restarts += rebooted_since
        if fate.kind == "crash":
            lines = (logs.no_nvml_visible_log(attempt_start, _plugin_version(container)) if fate.log == "no-nvml"
                     else logs.nvml_init_failure_log(attempt_start, _plugin_version(container), fate.nvml_reason))
            _event(ctx, involved=pod, reason="Created", component="kubelet", field_path=field_path,
                   message=f"Created container: {cname}", first=first_start - 0.1, last=attempt_start - 0.1,
                   count=restarts + 1)
            _event(ctx, involved=pod, reason="Started", component="kubelet", field_path=field_path,
                   message=f"Started container {cname}", first=first_start, last=attempt_start, count=restarts + 1)
            running_now = now < attempt_start + CRASH_RUN_S
            finished = attempt_start + CRASH_RUN_S
            terminated = {"exitCode": 1, "reason": "Error", "startedAt": iso(attempt_start), "finishedAt": iso(finished),
                          "containerID": "containerd://" + hashlib.sha256(f"{uid}{restarts}".encode()).hexdigest()}
            if running_now:
                state = {"running": {"startedAt": iso(attempt_start)}}
                last_state = ({"terminated": {**terminated, "startedAt": iso(attempt_start - backoff - CRASH_RUN_S),
                                              "finishedAt": iso(attempt_start - backoff)}} if restarts else {})
            else:
                state = {"waiting": {"reason": "CrashLoopBackOff",
                                     "message": logs.crash_loop_message(cname, name, namespace, uid, int(backoff))}}
                last_state = {"terminated": terminated}
                _event(ctx, involved=pod, reason="BackOff", component="kubelet", field_path=field_path, warning=True,
                       message=f"Back-off restarting failed container {cname} in pod {name}_{namespace}({uid})",
                       first=first_start + CRASH_RUN_S, last=finished, count=restarts + 1)
            ctx.logs[(namespace, name, cname)] = ContainerLog(lines=lines, running=running_now)
        else:
            error = logs.nvidia_container_cli_error(no_cgroups=view.no_cgroups, bpf_jit_harden=view.bpf_jit_harden)
            state = {"waiting": {"reason": "RunContainerError", "message": error}}
            last_state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": error,
                                         "startedAt": "1970-01-01T00:00:00Z", "finishedAt": iso(attempt_start)}}
            _event(ctx, involved=pod, reason="Created", component="kubelet", field_path=field_path,
                   message=f"Created container: {cname}", first=first_start - 0.1, last=attempt_start - 0.1,
                   count=restarts + 1)
            _event(ctx, involved=pod, reason="Failed", component="kubelet", field_path=field_path, warning=True,
                   message=f"Error: {error}", first=first_start, last=attempt_start, count=restarts + 1)
            if restarts:
                _event(ctx, involved=pod, reason="BackOff", component="kubelet", field_path=field_path, warning=True,
                       message=f"Back-off restarting failed container {cname} in pod {name}_{namespace}({uid})",
                       first=first_start + 10, last=attempt_start, count=restarts)
            ctx.logs[(namespace, name, cname)] = ContainerLog(waiting_reason="RunContainerError")
        status["phase"] = "Running"
        status["conditions"] = _conditions(scheduled=scheduled, initialized=True, ready=False,
                                           ready_since=first_start, container=cname)
        status["containerStatuses"] = [_container_status(container, ready=False, restarts=restarts, state=state,
                                                         last_state=last_state, started=False, pod_uid=uid)]
        return

    # running: Ready while the node is
    _event(ctx, involved=pod, reason="Created", component="kubelet", field_path=field_path,
           message=f"Created container: {cname}", first=first_start - 0.1)
    _event(ctx, involved=pod, reason="Started", component="kubelet", field_path=field_path,
           message=f"Started container {cname}", first=first_start)
    ready = view.kube_ready and now >= first_start
    status["phase"] = "Running"
    status["conditions"] = _conditions(scheduled=scheduled, initialized=True, ready=ready, ready_since=first_start,
                                       container=cname)
    status["containerStatuses"] = [
        _container_status(c, ready=ready, restarts=rebooted_since, state={"running": {"startedAt": iso(first_start)}},
                          started=True, pod_uid=uid)
        for c in containers
    ]
    if fate.log == "healthy":
        sharing, resource, _replicas = release_sharing(ctx.state, owner) if owner is not None else (None, GPU_RESOURCE, 1)
        lines = logs.healthy_log(first_start, _plugin_version(container), sharing, resource)
        if ctx.node_name == str((ctx.state.get("talos") or {}).get("hostname", ctx.node_name)):
            faults = xid_faults(ctx.state, ctx.view)
            if faults:
                lines += logs.xid_unhealthy_lines(logs.KlogClock(first_start + 1.0), faults, resource)
    elif fate.log == "no-devices":
        clock = logs.KlogClock(first_start)
        lines = [*logs.startup_header(clock, _plugin_version(container)),
                 clock.line("I", "main.go:367", "No devices found. Waiting indefinitely.", step_us=30_000)]
    else:
        lines = []
    for c in containers:
        ctx.logs[(namespace, name, c.get("name", ""))] = ContainerLog(lines=lines if c is container else [],
                                                                      running=True)


def xid_faults(state: Mapping[str, Any], view: NodeView) -> list[tuple[str, int]]:
    """(GPU UUID, Xid) of the Talos node's GPUs that had a critical Xid (``talos.xid_gpus``: {pci: xid}):
    the device plugin marks them unhealthy and never recovers them without a restart."""
    talos = state.get("talos") or {}
    xids = talos.get("xid_gpus") or {}
    if not xids or view.driver_version is None:
        return []
    broken = {str(device).lower() for device in talos.get("broken_gpus") or []}
    return [(logs.gpu_uuid(logs.smi_bus_id(str(pci))), int(xid)) for pci, xid in sorted(xids.items())
            if str(pci).lower() not in broken]


def _other_node_pods(ctx: _Ctx, ds: Mapping[str, Any], runtimeclasses: Mapping[str, Mapping[str, Any]],
                     created: float) -> list[dict[str, Any]]:
    """The DaemonSet's pods on the other GPU nodes the scenario names (``state.plugin_elsewhere``:
    {node name: "healthy" | "driver-not-loaded"}); each runs as on the Talos node, with that node's
    driver. Only device plugin DaemonSets, only nodes in ``kube.nodes``."""
    elsewhere = ctx.state.get("plugin_elsewhere") or {}
    if not elsewhere or not _is_device_plugin(ds):
        return []
    import dataclasses

    template_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    pods = []
    for node in (ctx.state.get("kube") or {}).get("nodes") or []:
        name = _meta(node).get("name", "")
        how = elsewhere.get(name)
        if how is None or name == ctx.node_name or not daemonset_schedulable(ds, node):
            continue
        base = [m for m in ctx.view.modules_loaded if not m.startswith("nvidia")]
        driver = ctx.view.kmod_ext_driver or ctx.view.toolkit_ext_driver or "570.172.08"
        # another node of the same build, its driver loaded (healthy) or not
        view = dataclasses.replace(ctx.view, kmod_ext_driver=driver, toolkit_ext_driver=driver,
                                   nvidia_runtime_handler=True, container_runtime_ok=True, kube_ready=True,
                                   driver_version=driver, modules_loaded=["nvidia_uvm", "nvidia_drm",
                                                                          "nvidia_modeset", "nvidia", *base],
                                   gpus_initialised=max(1, ctx.view.gpus_total), phase="running")
        if how == "driver-not-loaded":
            view = dataclasses.replace(view, driver_version=None, modules_loaded=base, gpus_initialised=0)
        other = dataclasses.replace(ctx, node=clone(node), node_name=name, view=view)
        fate = plugin_fate(template_spec, runtimeclasses, view, device_plugin=True)
        pods.append(_daemonset_pod(other, ds, fate, created, salt=name))
    return pods


def _init_statuses(inits: list[Mapping[str, Any]], blocked: str, started: float, uid: str) -> list[dict[str, Any]]:
    """The init containers' statuses: completed in order, up to the one that waits (running), then waiting."""
    statuses, reached = [], False
    for index, init in enumerate(inits):
        name = init.get("name", "")
        at = started - 0.5 + 0.05 * index
        if reached:
            state: dict[str, Any] = {"waiting": {"reason": "PodInitializing"}}
        elif name == blocked:
            state, reached = {"running": {"startedAt": iso(at)}}, True
        else:
            state = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": iso(at),
                                    "finishedAt": iso(at + 0.04)}}
        statuses.append(_container_status(init, ready="terminated" in state, restarts=0, state=state,
                                          started="running" in state, pod_uid=f"{uid}/{name}"))
    return statuses


def release_sharing(state: Mapping[str, Any], ds: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str, int]:
    """(the sharing block of the device plugin's config, the resource it registers, replicas per GPU) for
    a chart DaemonSet, from its Helm release's ``config.map`` (time-slicing; renameByDefault gives
    ``nvidia.com/gpu.shared``). The plugin reads that config from the ConfigMap the chart renders."""
    import yaml

    from lab import chart

    release = (_meta(ds).get("annotations") or {}).get("meta.helm.sh/release-name")
    for stored in (state.get("helm") or {}).get("releases") or []:
        if stored.get("name") != release:
            continue
        text = chart.config_text(chart.merged_values(stored.get("values") or {}))
        try:
            config = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            config = None
        sharing = (config or {}).get("sharing") if isinstance(config, dict) else None
        block = (sharing or {}).get("timeSlicing") if isinstance(sharing, dict) else None
        if not isinstance(block, dict) or not block.get("resources"):
            return None, GPU_RESOURCE, 1
        entry = next((r for r in block["resources"] if isinstance(r, dict) and r.get("name") == GPU_RESOURCE), None)
        replicas = int((entry or {}).get("replicas") or 1)
        resource = GPU_RESOURCE + ".shared" if block.get("renameByDefault") and replicas > 1 else GPU_RESOURCE
        shown = {"timeSlicing": {"renameByDefault": bool(block.get("renameByDefault")),
                                 "failRequestsGreaterThanOne": bool(block.get("failRequestsGreaterThanOne")),
                                 "resources": [{"name": str(r.get("name")), "devices": "all",
                                                "replicas": int(r.get("replicas") or 1)}
                                               for r in block["resources"] if isinstance(r, dict)]}}
        return shown, resource, replicas
    return None, GPU_RESOURCE, 1


def _plugin_version(container: Mapping[str, Any]) -> str:
    return logs.plugin_version_from_image(str(container.get("image", "")))


def _reconcile_daemonset(ctx: _Ctx, ds: dict[str, Any], runtimeclasses: Mapping[str, Mapping[str, Any]],
                         pods: list[dict[str, Any]], *, init_blocked: str = "") -> bool:
    """Status + pod + events for one DaemonSet; True when it is a device plugin that registered GPUs."""
    meta = _meta(ds)
    template_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    device_plugin = _is_device_plugin(ds)
    schedulable = daemonset_schedulable(ds, ctx.node)
    generation = int(meta.get("generation") or 1)
    status: dict[str, Any] = {"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0,
                              "numberReady": 0, "observedGeneration": generation}
    ds["status"] = status
    if not schedulable:
        return False
    status["desiredNumberScheduled"] = 1
    fate = plugin_fate(template_spec, runtimeclasses, ctx.view, device_plugin=device_plugin)
    if init_blocked and fate.kind not in ("runtimeclass-missing", "sandbox"):
        fate = Fate(fate.kind, fate.log, fate.nvml_reason, fate.handler, init_blocked)
    created = _template_time(ctx, ds)
    class_name = template_spec.get("runtimeClassName")
    if class_name and class_name in runtimeclasses:
        # The DaemonSet controller could only create the pod once its RuntimeClass existed.
        created = max(created, parse_time(_meta(runtimeclasses[class_name]).get("creationTimestamp"), created))
    if fate.kind == "runtimeclass-missing":
        attempts, last, _ = backoff_schedule(created, ctx.now, 0.0, base=1.0, cap=900.0)
        _event(ctx, involved=ds, reason="FailedCreate", component="daemonset-controller", warning=True,
               message=f'Error creating: pods "{meta.get("name")}-" is forbidden: pod rejected: '
                       f'RuntimeClass "{template_spec.get("runtimeClassName")}" not found',
               first=created, last=last, count=attempts + 1)
        status["numberUnavailable"] = 1
        return False
    pod = _daemonset_pod(ctx, ds, fate, created)
    pods.append(pod)
    ready = any(c.get("ready") for c in pod["status"].get("containerStatuses") or [])
    others = _other_node_pods(ctx, ds, runtimeclasses, created)
    pods.extend(others)
    scheduled = 1 + len(others)
    ready_count = int(ready) + sum(1 for other in others
                                   if any(c.get("ready") for c in other["status"].get("containerStatuses") or []))
    status.update({"desiredNumberScheduled": scheduled, "currentNumberScheduled": scheduled,
                   "updatedNumberScheduled": scheduled, "numberReady": ready_count})
    if ready_count:
        status["numberAvailable"] = ready_count
    if scheduled - ready_count:
        status["numberUnavailable"] = scheduled - ready_count
    return device_plugin and fate.log == "healthy" and ready


# --- the GPU Operator --------------------------------------------------------------------------------

def _operator_setup(ctx: _Ctx, policy: Mapping[str, Any],
                    runtimeclasses: dict[str, Mapping[str, Any]]) -> None:
    """Before anything is scheduled: NFD and the operator label the GPU node; the operator's RuntimeClasses."""
    labels = ctx.node.setdefault("metadata", {}).setdefault("labels", {})
    if ctx.view.gpus_total > 0:
        labels.setdefault(gpu_operator.NFD_GPU_LABEL, "true")
    labels.update(gpu_operator.node_labels(policy, labels))
    runtimeclasses.update(gpu_operator.runtime_classes(policy, runtimeclasses))


def _validation_gates(view: NodeView) -> dict[str, bool]:
    """What each of the validator's init containers waits for (FACTS.md: each step gates the next)."""
    return {
        "driver-validation": view.driver_version is not None and "nvidia" in view.modules_loaded,
        "toolkit-validation": view.nvidia_runtime_handler and (view.cdi_spec if view.cdi else view.container_runtime_ok),
        "cuda-validation": view.gpus_initialised > 0,
    }


def _reconcile_operator(ctx: _Ctx, policy: Mapping[str, Any], namespace: str,
                        runtimeclasses: Mapping[str, Mapping[str, Any]], pods: list[dict[str, Any]],
                        daemonsets: list[dict[str, Any]]) -> tuple[bool, dict[str, Any]]:
    """The operands' DaemonSets and pods on the node; (the device plugin registered, the ClusterPolicy served)."""
    namespaces = {(_meta(ns).get("name") or ""): ns for ns in (ctx.state.get("kube") or {}).get("namespaces") or []}
    admitted = gpu_operator.privileged_namespace(namespaces.get(namespace))
    gates = _validation_gates(ctx.view)
    validated = next((name for name, ok in gates.items() if not ok), "")  # the first validation that waits
    operands = {(_meta(ds).get("name") or ""): ds for ds in gpu_operator.operand_daemonsets(policy, namespace)}
    order = [gpu_operator.DEVICE_PLUGIN] + [name for name in operands if name != gpu_operator.DEVICE_PLUGIN]
    registered = False
    not_ready: list[str] = []
    for name in order:
        ds = operands.get(name)
        if ds is None:
            continue
        daemonsets.append(ds)
        if not admitted:
            template = (ds["spec"]["template"]).get("spec") or {}
            privileged = [c["name"] for c in (template.get("initContainers") or []) + (template.get("containers") or [])]
            schedulable = daemonset_schedulable(ds, ctx.node)
            ds["status"] = {"currentNumberScheduled": 0, "desiredNumberScheduled": int(schedulable),
                            "numberMisscheduled": 0, "numberReady": 0, "observedGeneration": 1,
                            **({"numberUnavailable": 1} if schedulable else {})}
            if schedulable:
                created = _template_time(ctx, ds)
                attempts, last, _ = backoff_schedule(created, ctx.now, 0.0, base=1.0, cap=900.0)
                _event(ctx, involved=ds, reason="FailedCreate", component="daemonset-controller", warning=True,
                       message=gpu_operator.pod_security_message(f"{name}-", privileged), first=created, last=last,
                       count=attempts + 1)
                not_ready.append(name)
            continue
        blocked = ""
        if name == gpu_operator.VALIDATOR:
            blocked = validated or ("" if registered else "plugin-validation")
        elif validated in ("driver-validation", "toolkit-validation") and "toolkit-validation" in {
                init.get("name") for init in ds["spec"]["template"]["spec"].get("initContainers") or []}:
            blocked = "toolkit-validation"  # the operands wait for the validator's toolkit-ready file
        registered |= _reconcile_daemonset(ctx, ds, runtimeclasses, pods, init_blocked=blocked)
        status = ds.get("status") or {}
        if status.get("numberReady", 0) < status.get("desiredNumberScheduled", 0):
            not_ready.append(name)
    if registered and operands.get(gpu_operator.GFD) is not None and admitted:
        _gfd_labels(ctx)
    served = clone(policy)
    since = iso(parse_time(_meta(policy).get("creationTimestamp"), ctx.now))
    problem = f"{', '.join(not_ready)} not ready" if not_ready else ""
    served["status"] = gpu_operator.policy_status(policy, namespace, not not_ready and ctx.view.kube_ready, since,
                                                  problem)
    return registered, served


def _gfd_labels(ctx: _Ctx) -> None:
    """What GPU Feature Discovery adds to the node once it runs (a few of its labels)."""
    gpus = _smi_gpus(ctx.state, ctx.view, None)
    labels = ctx.node.setdefault("metadata", {}).setdefault("labels", {})
    labels["nvidia.com/gpu.count"] = str(ctx.view.gpus_initialised)
    if gpus:
        labels["nvidia.com/gpu.product"] = gpus[0].name.replace(" ", "-")
        labels["nvidia.com/gpu.memory"] = str(gpus[0].memory_mib)
    if ctx.view.driver_version:
        labels["nvidia.com/cuda.driver-version.full"] = ctx.view.driver_version
    labels["nvidia.com/gpu.replicas"] = "1"
    labels["nvidia.com/gpu.sharing-strategy"] = "none"


# --- pods created through the API ----------------------------------------------------------------------

def _schedule_failure(ctx: _Ctx, pod: Mapping[str, Any], free_gpus: int, node_count: int) -> str | None:
    spec = pod.get("spec") or {}
    reasons: list[str] = []
    taints = untolerated_taints(spec.get("tolerations") or [], (ctx.node.get("spec") or {}).get("taints") or [])
    if not node_affinity_matches(spec, ctx.node):
        reasons.append("1 node(s) didn't match Pod's node affinity/selector")
    elif taints:
        reasons.append(f"1 node(s) had untolerated taint {taint_text(taints[0])}")
    elif _container_requests(spec, GPU_RESOURCE) > free_gpus:
        reasons.append(f"1 Insufficient {GPU_RESOURCE}")
    if not reasons:
        return None
    others = node_count - 1
    preemption = ["1 No preemption victims found for incoming pod" if "Insufficient" in reasons[0]
                  else "1 Preemption is not helpful for scheduling"]
    if others > 0:
        # Only the Talos node is simulated: the lab's other nodes never take a pod.
        reasons.append(f"{others} node(s) didn't match Pod's node affinity/selector")
        preemption.append(f"{others} Preemption is not helpful for scheduling")
    return (f"0/{node_count} nodes are available: {', '.join(sorted(reasons))}. "
            f"preemption: 0/{node_count} nodes are available: {', '.join(sorted(preemption))}.")


def _command_of(container: Mapping[str, Any]) -> list[str]:
    argv = [str(part) for part in (container.get("command") or []) + (container.get("args") or [])]
    if len(argv) >= 3 and argv[0] in ("sh", "/bin/sh", "bash", "/bin/bash") and argv[1] == "-c":
        try:
            return shlex.split(argv[2])
        except ValueError:
            return argv[2].split()
    return argv


def _reconcile_api_pod(ctx: _Ctx, pod: dict[str, Any], runtimeclasses: Mapping[str, Mapping[str, Any]],
                       free_gpus: int, node_count: int) -> int:
    """Status/events/log of a pod created through the API; returns the GPUs it holds now."""
    meta, spec, now = pod["metadata"], pod.setdefault("spec", {}), ctx.now
    created = parse_time(meta.get("creationTimestamp"), now)
    precise = ((ctx.state.get("kubeapi") or {}).get("created_at") or {}).get(meta.get("uid"))
    if isinstance(precise, int | float) and abs(precise - created) < 2:
        created = float(precise)
    containers = spec.get("containers") or []
    container = containers[0] if containers else {"name": "main", "image": ""}
    cname = container.get("name", "")
    namespace, name, uid = meta.get("namespace") or "default", meta.get("name", ""), meta.get("uid", "")
    requested = _container_requests(spec, GPU_RESOURCE)
    bound_elsewhere = spec.get("nodeName") not in (None, "", ctx.node_name)
    pod["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    if bound_elsewhere:
        ctx.logs[(namespace, name, cname)] = ContainerLog(waiting_reason="ContainerCreating")
        return 0
    failure = None if spec.get("nodeName") else _schedule_failure(ctx, pod, free_gpus, node_count)
    if failure:
        pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                                        "lastTransitionTime": iso(created), "reason": "Unschedulable",
                                        "message": failure}]
        retries = int((now - created) // 300)
        _event(ctx, involved=pod, reason="FailedScheduling", component="default-scheduler", warning=True,
               message=failure, first=created, last=created + retries * 300, count=retries + 1)
        ctx.logs[(namespace, name, cname)] = ContainerLog(waiting_reason="ContainerCreating")
        return 0
    spec["nodeName"] = ctx.node_name
    class_name = spec.get("runtimeClassName")
    handler = str((runtimeclasses.get(class_name) or {}).get("handler") or "") if class_name else "runc"
    if handler != "runc" and not (handler == "nvidia" and ctx.view.nvidia_runtime_handler):
        _run_pod(ctx, pod, Fate("sandbox", handler=handler or str(class_name)), created=created, scheduled=created,
                 owner=None)
        return requested
    start = created + TEST_POD_START_S
    if now < start:
        pod["status"].update({"startTime": iso(created), "conditions": _conditions(
            scheduled=created, initialized=True, ready=False, ready_since=created, container=cname, sandbox=False)})
        pod["status"]["containerStatuses"] = [_container_status(
            c, ready=False, restarts=0, state={"waiting": {"reason": "ContainerCreating"}}, pod_uid=uid)
            for c in containers]
        _event(ctx, involved=pod, reason="Scheduled", component="default-scheduler",
               message=f"Successfully assigned {namespace}/{name} to {ctx.node_name}", first=created)
        ctx.logs[(namespace, name, cname)] = ContainerLog(waiting_reason="ContainerCreating")
        return requested

    argv = _command_of(container)
    gpu_visible = handler == "nvidia"
    start_error = None
    if gpu_visible and not ctx.view.container_runtime_ok:
        start_error = logs.nvidia_container_cli_error(no_cgroups=ctx.view.no_cgroups,
                                                      bpf_jit_harden=ctx.view.bpf_jit_harden)
    elif argv and argv[0].endswith("nvidia-smi") and not gpu_visible:
        start_error = logs.executable_not_found_error(argv[0])
    lines: list[str] = []
    exit_code = 0
    run_for = TEST_POD_RUN_S
    if start_error is None and argv and argv[0].endswith("nvidia-smi"):
        gpus = _smi_gpus(ctx.state, ctx.view, requested if requested > 0 else None)
        lines, exit_code = logs.nvidia_smi_output(argv[1:], gpus, ctx.view.driver_version or "", start)
    elif start_error is None and argv[:1] == ["sleep"] and len(argv) > 1:
        try:
            run_for = float(argv[1])
        except ValueError:
            run_for = TEST_POD_RUN_S
    end = start + run_for
    field_path = f"spec.containers{{{cname}}}"
    _event(ctx, involved=pod, reason="Scheduled", component="default-scheduler",
           message=f"Successfully assigned {namespace}/{name} to {ctx.node_name}", first=created)
    _event(ctx, involved=pod, reason="Pulled", component="kubelet", field_path=field_path,
           message=f'Container image "{container.get("image", "")}" already present on machine', first=start - 0.2)
    _event(ctx, involved=pod, reason="Created", component="kubelet", field_path=field_path,
           message=f"Created container: {cname}", first=start - 0.1)
    node_ip = ctx.state.get("talos", {}).get("node", "")
    status = pod["status"]
    status.update({"hostIP": node_ip, "hostIPs": [{"ip": node_ip}], "startTime": iso(created)})
    if start_error is not None:
        _event(ctx, involved=pod, reason="Failed", component="kubelet", field_path=field_path, warning=True,
               message=f"Error: {start_error}", first=start)
        status["phase"] = "Failed"
        status["conditions"] = _conditions(scheduled=created, initialized=True, ready=False, ready_since=start,
                                           container=cname, unready_reason="PodFailed")
        terminated = {"exitCode": 128, "reason": "StartError", "message": start_error,
                      "startedAt": "1970-01-01T00:00:00Z", "finishedAt": iso(start)}
        status["containerStatuses"] = [_container_status(container, ready=False, restarts=0,
                                                         state={"terminated": terminated}, started=False, pod_uid=uid)]
        ctx.logs[(namespace, name, cname)] = ContainerLog()
        return 0
    _event(ctx, involved=pod, reason="Started", component="kubelet", field_path=field_path,
           message=f"Started container {cname}", first=start)
    pod_ip = "10.244.0." + str(2 + int(hashlib.sha1(uid.encode()).hexdigest()[:4], 16) % 250)
    status.update({"podIP": pod_ip, "podIPs": [{"ip": pod_ip}]})
    if now < end:
        status["phase"] = "Running"
        status["conditions"] = _conditions(scheduled=created, initialized=True, ready=True, ready_since=start,
                                           container=cname)
        status["containerStatuses"] = [_container_status(container, ready=True, restarts=0,
                                                         state={"running": {"startedAt": iso(start)}}, pod_uid=uid)]
        ctx.logs[(namespace, name, cname)] = ContainerLog(lines=lines, running=True)
        return requested
    status["phase"] = "Succeeded" if exit_code == 0 else "Failed"
    status["conditions"] = _conditions(scheduled=created, initialized=True, ready=False, ready_since=end,
                                       container=cname, unready_reason="PodCompleted")
    terminated = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                  "startedAt": iso(start), "finishedAt": iso(end),
                  "containerID": "containerd://" + hashlib.sha256(f"{uid}0".encode()).hexdigest()}
    status["containerStatuses"] = [_container_status(container, ready=False, restarts=0,
                                                     state={"terminated": terminated}, started=False, pod_uid=uid)]
    ctx.logs[(namespace, name, cname)] = ContainerLog(lines=lines, running=False)
    return 0


def current_boot_time(state: Mapping[str, Any], now: float) -> float:
    """When the node last booted, counting a reboot in progress (lab.node's timeline)."""
    talos = state.get("talos") or {}
    boot_time = float(talos.get("boot_time") or now)
    reboot = talos.get("reboot")
    if reboot and not reboot.get("applied"):
        line = timeline(dict(reboot), reboot_seconds(dict(state)))
        if now >= line.down_at:
            boot_time = line.boot_at
    return boot_time


def clone(obj: Any) -> Any:
    """A deep copy of a JSON value (several times faster than copy.deepcopy)."""
    return json.loads(json.dumps(obj))


# --- entry point ---------------------------------------------------------------------------------------

def reconcile(state: Mapping[str, Any], view: NodeView, now: float) -> Cluster:
    """Every served object as of `now`. `state` must have been through `normalize`; it is not changed.

    Stored objects that need no change are returned as the same dict objects (callers use identity
    to skip unchanged objects cheaply); changed ones are copies.
    """
    kube = state.get("kube") or {}
    talos = state.get("talos") or {}
    nodes = list(kube.get("nodes") or [])
    runtimeclasses = {(_meta(rc).get("name") or ""): rc for rc in kube.get("runtimeclasses") or []}
    node_index = _find_talos_node(nodes, talos)
    events: list[dict[str, Any]] = []
    cluster_logs: dict[tuple[str, str, str], ContainerLog] = {}
    if node_index is None:
        return Cluster(nodes=nodes, namespaces=list(kube.get("namespaces") or []),
                       runtimeclasses=list(runtimeclasses.values()),
                       daemonsets=[dict(ds, status={"currentNumberScheduled": 0, "desiredNumberScheduled": 0,
                                                    "numberMisscheduled": 0, "numberReady": 0})
                                   for ds in kube.get("daemonsets") or []],
                       pods=list(kube.get("pods") or []), events=list(kube.get("events") or []), leases=[],
                       logs=cluster_logs, kubelet_reachable=False, node_address=str(talos.get("node", "")),
                       clusterpolicies=list(kube.get("clusterpolicies") or []))
    node = clone(nodes[node_index])
    node_name = _meta(node).get("name", "")
    boot_time = current_boot_time(state, now)
    ctx = _Ctx(state=state, view=view, now=now, node=node, node_name=node_name,
               boot_time=boot_time, events=events, logs=cluster_logs)
    daemonsets = []
    pods: list[dict[str, Any]] = []
    plugin_registered = False
    operator = gpu_operator.active_policy(state)
    if operator is not None:
        _operator_setup(ctx, operator[0], runtimeclasses)
    for stored in kube.get("daemonsets") or []:
        ds = clone(stored)
        plugin_registered |= _reconcile_daemonset(ctx, ds, runtimeclasses, pods)
        daemonsets.append(ds)
    clusterpolicies = list(kube.get("clusterpolicies") or [])
    if operator is not None:
        registered, served = _reconcile_operator(ctx, operator[0], operator[1], runtimeclasses, pods, daemonsets)
        plugin_registered |= registered
        clusterpolicies = [served] + clusterpolicies[1:]
    _node_status(ctx, plugin_registered)
    nodes[node_index] = node
    allocatable = int((node.get("status") or {}).get("allocatable", {}).get(GPU_RESOURCE) or 0)
    held = 0
    api_pods = sorted(kube.get("pods") or [], key=lambda p: (parse_time(_meta(p).get("creationTimestamp")),
                                                             _meta(p).get("name", "")))
    for stored in api_pods:
        pod = clone(stored)
        held += _reconcile_api_pod(ctx, pod, runtimeclasses, allocatable - held, len(nodes))
        pods.append(pod)
    stored_events = list(kube.get("events") or [])
    return Cluster(
        nodes=nodes, namespaces=list(kube.get("namespaces") or []), runtimeclasses=list(runtimeclasses.values()),
        daemonsets=daemonsets, pods=pods, events=stored_events + events, leases=[_lease(ctx)], logs=cluster_logs,
        clusterpolicies=clusterpolicies,
        kubelet_reachable=view.phase != "down", node_address=str(talos.get("node", "")),
    )
