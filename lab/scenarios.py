"""Named starting points for the lab: the seed's end state with exactly one thing wrong (or ``fresh``).

``build(name)`` returns a complete ``state.json`` (schema 1, see ``lab/CONTRACT.md``), including the
``kube`` section as real Kubernetes JSON. The Node's ``nvidia.com/gpu`` capacity is left to the API
server's controller, which derives it from the node view.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

from lab import chart, releases, schematics
from lab import operator as gpu_operator
from lab.catalog import OPERATOR_DEFAULT_VERSION, OPERATOR_SCENARIOS, SCENARIOS
from lab.node import BPF_SYSCTL, NO_CGROUPS_PATH, OPEN_UNSUPPORTED
from lab.schematics import KMOD, TALOS_VERSION, TOOLKIT

NODE_ADDRESS = "10.5.0.2"
HOSTNAME = "gpu-node-1"
KUBELET_VERSION = "v1.34.1"
CONTAINERD_VERSION = "containerd://2.1.5"
PLUGIN_RELEASE = "nvidia-device-plugin"
PLUGIN_NAMESPACE = "kube-system"
NVDP_REPO = {"name": "nvdp", "url": "https://nvidia.github.io/k8s-device-plugin"}

SEED_VALUES: dict[str, Any] = {
    "runtimeClassName": "nvidia",
    "affinity": None,
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "CriticalAddonsOnly", "operator": "Exists"},
    ],
}

SEED_MODULES = ["nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset"]
NO_CGROUPS_CONTENT = "[nvidia-container-cli]\nno-cgroups = true\n"
RUNBOOK_PATCH_RELATIVE = "talos/patches/nvidia-no-cgroups.yaml"
# The runbook's step 4.1 as its infra repo holds it (a create outside /var: Talos refuses it at boot).
RUNBOOK_PATCH = (
    "machine:\n"
    "  files:\n"
    "    - content: |\n"
    "        [nvidia-container-cli]\n"
    "        no-cgroups = true\n"
    "      permissions: 0o644\n"
    f"      path: {NO_CGROUPS_PATH}\n"
    "      op: create\n"
)

PCI_DEVICES: list[dict[str, str]] = [
    {
        "id": "0000:00:00.0", "class": "Bridge", "subclass": "Host bridge", "vendor": "Intel Corporation",
        "product": "Sky Lake-E DMI3 Registers", "class_id": "0x06", "subclass_id": "0x00",
        "vendor_id": "0x8086", "product_id": "0x2020", "driver": "",
    },
    {
        "id": "0000:02:00.0", "class": "Display controller", "subclass": "VGA compatible controller",
        "vendor": "ASPEED Technology, Inc.", "product": "ASPEED Graphics Family", "class_id": "0x03",
        "subclass_id": "0x00", "vendor_id": "0x1a03", "product_id": "0x2000", "driver": "ast",
    },
    {
        "id": "0000:05:00.0", "class": "Network controller", "subclass": "Ethernet controller",
        "vendor": "Intel Corporation", "product": "I210 Gigabit Network Connection", "class_id": "0x02",
        "subclass_id": "0x00", "vendor_id": "0x8086", "product_id": "0x1533", "driver": "igb",
    },
    {
        "id": "0000:33:00.0", "class": "Display controller", "subclass": "3D controller",
        "vendor": "NVIDIA Corporation", "product": "GH100 [H100 NVL]", "class_id": "0x03",
        "subclass_id": "0x02", "vendor_id": "0x10de", "product_id": "0x2321", "driver": "nvidia",
    },
    {
        "id": "0000:8b:00.0", "class": "Display controller", "subclass": "3D controller",
        "vendor": "NVIDIA Corporation", "product": "GH100 [H100 NVL]", "class_id": "0x03",
        "subclass_id": "0x02", "vendor_id": "0x10de", "product_id": "0x2321", "driver": "nvidia",
    },
]

_CAPACITY = {
    "cpu": "64",
    "ephemeral-storage": "1873933164Ki",
    "hugepages-1Gi": "0",
    "hugepages-2Mi": "0",
    "memory": "527997004Ki",
    "pods": "110",
}
_ALLOCATABLE = {
    "cpu": "63950m",
    "ephemeral-storage": "1727027617734",
    "hugepages-1Gi": "0",
    "hugepages-2Mi": "0",
    "memory": "527370316Ki",
    "pods": "110",
}


def _stable_uid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "talos-gpu-lab/" + "/".join(parts)))


def _timestamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _conditions(ready: bool, since: float) -> list[dict[str, str]]:
    stamp = _timestamp(since)
    pressure = [
        ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ]
    conditions = [
        {"type": kind, "status": "False", "lastHeartbeatTime": stamp, "lastTransitionTime": stamp, "reason": reason,
         "message": message}
        for kind, reason, message in pressure
    ]
    if ready:
        conditions.append({"type": "Ready", "status": "True", "lastHeartbeatTime": stamp, "lastTransitionTime": stamp,
                           "reason": "KubeletReady", "message": "kubelet is posting ready status"})
    else:
        conditions.append({
            "type": "Ready", "status": "False", "lastHeartbeatTime": stamp, "lastTransitionTime": stamp,
            "reason": "KubeletNotReady",
            "message": "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
                       "message:Network plugin returns error: cni plugin not initialized",
        })
    return conditions


def gpu_node_object(now: float, *, ready: bool = True, resource_version: int = 1,
                    talos_version: str = TALOS_VERSION) -> dict[str, Any]:
    release = releases.get(talos_version)
    created = now - 12 * 86400
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": HOSTNAME,
            "uid": _stable_uid("node", HOSTNAME),
            "resourceVersion": str(resource_version),
            "creationTimestamp": _timestamp(created),
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": HOSTNAME,
                "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/control-plane": "",
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {
            "podCIDR": "10.244.0.0/24",
            "podCIDRs": ["10.244.0.0/24"],
            "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
        },
        "status": {
            "capacity": dict(_CAPACITY),
            "allocatable": dict(_ALLOCATABLE),
            "conditions": _conditions(ready, now - 3 * 86400),
            "addresses": [
                {"type": "InternalIP", "address": NODE_ADDRESS},
                {"type": "Hostname", "address": HOSTNAME},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "5c1a2e0e7d3f4b7f9b2d6a8e4f0c1d23",
                "systemUUID": "4c4c4544-0047-3010-8052-b4c04f4e4e32",
                "bootID": _stable_uid("boot", HOSTNAME),
                "kernelVersion": release.kernel,
                "osImage": f"Talos ({release.version})",
                "containerRuntimeVersion": release.containerd,
                "kubeletVersion": release.kubelet,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def worker_node_object(index: int, gpus: int, now: float, resource_version: int) -> dict[str, Any]:
    name = f"worker-{index:04d}"
    address = f"10.6.{index // 250}.{index % 250 + 1}"
    capacity = dict(_CAPACITY, **{"nvidia.com/gpu": str(gpus)})
    allocatable = dict(_ALLOCATABLE, **{"nvidia.com/gpu": str(gpus)})
    node = gpu_node_object(now, resource_version=resource_version)
    node["metadata"].update(
        name=name,
        uid=_stable_uid("node", name),
        labels={
            "beta.kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
        },
    )
    node["spec"] = {"podCIDR": f"10.245.{index % 256}.0/24", "podCIDRs": [f"10.245.{index % 256}.0/24"]}
    node["status"].update(
        capacity=capacity,
        allocatable=allocatable,
        addresses=[{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
    )
    node["status"]["nodeInfo"]["bootID"] = _stable_uid("boot", name)
    return node


def namespace_object(name: str, created: float, resource_version: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "uid": _stable_uid("namespace", name),
            "resourceVersion": str(resource_version),
            "creationTimestamp": _timestamp(created),
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def runtimeclass_object(created: float, resource_version: int) -> dict[str, Any]:
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {
            "name": "nvidia",
            "uid": _stable_uid("runtimeclass", "nvidia"),
            "resourceVersion": str(resource_version),
            "creationTimestamp": _timestamp(created),
        },
        "handler": "nvidia",
    }


def _extensions(kmod_track: str, toolkit_track: str, talos_version: str = TALOS_VERSION) -> list[dict[str, str]]:
    records = schematics.extension_records([f"{TOOLKIT}-{toolkit_track}", f"{KMOD}-{kmod_track}"], talos_version)
    assert records is not None
    return records


def default_knobs() -> dict[str, Any]:
    return {"talosctl_latency_ms": 0, "api_latency_ms": 0, "reboot_s": 6.0, "boot_fail_wait_s": 20.0}


def _healthy(now: float, talos_version: str = TALOS_VERSION) -> dict[str, Any]:
    installed = now - 3 * 86400
    created = now - 12 * 86400
    release_values = copy.deepcopy(SEED_VALUES)
    daemonset = chart.render_daemonset(
        PLUGIN_RELEASE, PLUGIN_NAMESPACE, release_values, created=installed, resource_version=40
    )
    return {
        "schema": 1,
        "scenario": "healthy",
        "knobs": default_knobs(),
        "faults": {},
        "talos": {
            "node": NODE_ADDRESS,
            "hostname": HOSTNAME,
            "version": talos_version,
            "schematic": schematics.PRODUCTION_ID,
            "extensions": _extensions("production", "production", talos_version),
            "reboot": None,
            "config": {
                "kernel_modules": list(SEED_MODULES),
                "sysctls": {} if releases.get(talos_version).cdi else {BPF_SYSCTL: "1"},
                "files": [],
            },
            "staged_config": None,
            "pci_devices": copy.deepcopy(PCI_DEVICES),
            "broken_gpus": [],
            "boot_time": now - 3 * 86400,
        },
        "kube": {
            "nodes": [gpu_node_object(now, resource_version=30, talos_version=talos_version)],
            "namespaces": [
                namespace_object(name, created, 2 + index)
                for index, name in enumerate(["default", "kube-node-lease", "kube-public", "kube-system"])
            ],
            "runtimeclasses": [runtimeclass_object(installed, 35)],
            "daemonsets": [daemonset],
            "pods": [],
            "events": [],
        },
        "helm": {
            "repos": [dict(NVDP_REPO)],
            "releases": [
                {
                    "name": PLUGIN_RELEASE,
                    "namespace": PLUGIN_NAMESPACE,
                    "revision": 1,
                    "status": "deployed",
                    "chart": f"nvidia-device-plugin-{chart.CHART_VERSION}",
                    "app_version": chart.CHART_VERSION,
                    "updated": chart.helm_time(installed),
                    "values": release_values,
                }
            ],
        },
        "factory": {},
        "talosctl_version": talos_version,
    }


OPERATOR_NAMESPACE = "gpu-operator"
OPERATOR_REPO = {"name": "nvidia", "url": "https://helm.ngc.nvidia.com/nvidia"}
# the values FACTS.md gives for Talos 1.13 (the extensions bring the driver and the toolkit)
# and, as the runbook's values do for the device plugin, the operands tolerate the control-plane taint
OPERATOR_VALUES: dict[str, Any] = {
    "driver": {"enabled": False}, "toolkit": {"enabled": False}, "hostPaths": {"driverInstallDir": "/usr/local"},
    "daemonsets": {"tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
    ]},
}


def _with_operator(state: dict[str, Any], installed: float) -> None:
    """The GPU Operator installed as FACTS.md says (namespace labelled privileged, chart v26.3.1, driver and
    toolkit disabled): its release, its CRD and ClusterPolicy; the old path's release and RuntimeClass gone."""
    _without_plugin(state)
    kube = state["kube"]
    kube["runtimeclasses"] = []
    namespace = namespace_object(OPERATOR_NAMESPACE, installed - 60, 50)
    namespace["metadata"]["labels"][gpu_operator.PRIVILEGED_LABEL] = "privileged"
    kube["namespaces"].append(namespace)
    kube["crds"] = [gpu_operator.CRD]
    kube["clusterpolicies"] = [gpu_operator.render_cluster_policy(
        OPERATOR_NAMESPACE, OPERATOR_NAMESPACE, OPERATOR_VALUES, chart_version=gpu_operator.CHART_VERSION,
        created=installed, resource_version=51)]
    state["helm"]["repos"] = [dict(OPERATOR_REPO)]
    state["helm"]["releases"] = [{
        "name": OPERATOR_NAMESPACE, "namespace": OPERATOR_NAMESPACE, "revision": 1, "status": "deployed",
        "chart": f"{gpu_operator.CHART_NAME}-{gpu_operator.CHART_VERSION}", "app_version": gpu_operator.CHART_VERSION,
        "updated": chart.helm_time(installed), "values": copy.deepcopy(OPERATOR_VALUES),
    }]


def _without_plugin(state: dict[str, Any]) -> None:
    state["kube"]["daemonsets"] = []
    state["helm"]["releases"] = []


def _reinstall_plugin(state: dict[str, Any], values: dict[str, Any]) -> None:
    release = state["helm"]["releases"][0]
    release["values"] = values
    created = state["talos"]["boot_time"]
    state["kube"]["daemonsets"] = [
        chart.render_daemonset(PLUGIN_RELEASE, PLUGIN_NAMESPACE, values, created=created, resource_version=40)
    ]


def build(name: str, *, extra_nodes: int = 0, gpus_per_extra_node: int = 8, now: float | None = None,
          talos_version: str | None = None) -> dict[str, Any]:
    """A complete initial ``state.json`` for scenario ``name`` on Talos ``talos_version`` (lab.releases; None:
    the scenario's own default, v1.11.5 except for the GPU Operator scenarios, which need 1.13)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    if talos_version is None:
        talos_version = OPERATOR_DEFAULT_VERSION if name in OPERATOR_SCENARIOS else TALOS_VERSION
    release = releases.get(releases.check_known(talos_version))
    if name in OPERATOR_SCENARIOS and not release.cdi:
        raise ValueError(f"scenario {name!r} is a Talos 1.13+ node (GPU Operator path); "
                         f"it does not run on {talos_version}")
    now = time.time() if now is None else now
    state = _healthy(now, talos_version)
    state["scenario"] = name
    talos = state["talos"]
    config = talos["config"]
    if name == "fresh":
        talos["schematic"] = schematics.VANILLA_ID
        talos["extensions"] = []
        config.update(kernel_modules=[], sysctls={}, files=[])
        state["kube"]["runtimeclasses"] = []
        _without_plugin(state)
        state["helm"]["repos"] = []
    elif name == "extensions-missing":
        talos["schematic"] = schematics.VANILLA_ID
        talos["extensions"] = []
    elif name == "mixed-tracks":
        talos["extensions"] = _extensions("production", "lts", talos_version)
        talos["schematic"] = schematics.extensions_id([f"{TOOLKIT}-lts", f"{KMOD}-production"])
    elif name == "driver-mismatch":
        for extension in talos["extensions"]:
            if extension["name"].startswith(TOOLKIT):
                extension["version"] = f"570.158.01-{release.toolkit}"
    elif name == "modules-not-loaded":
        config.update(kernel_modules=[], sysctls={})
    elif name == "bpf-sysctl-missing":
        config["sysctls"] = {}
    elif name == "runbook-patch-applied":
        # applied a moment ago: the node rebooted for it and its boot has just stopped in writeUserFiles
        config["files"] = [{"path": NO_CGROUPS_PATH, "op": "create", "content": NO_CGROUPS_CONTENT, "permissions": 420}]
        talos["boot_time"] = now - 2.0
        state["infra_files"] = {RUNBOOK_PATCH_RELATIVE: RUNBOOK_PATCH}
    elif name == "runbook-patch-in-repo":
        state["infra_files"] = {RUNBOOK_PATCH_RELATIVE: RUNBOOK_PATCH}
    elif name == "runtimeclass-missing":
        state["kube"]["runtimeclasses"] = []
    elif name == "nfd-affinity":
        values = copy.deepcopy(SEED_VALUES)
        del values["affinity"]
        _reinstall_plugin(state, values)
    elif name == "no-runtimeclassname":
        values = copy.deepcopy(SEED_VALUES)
        del values["runtimeClassName"]
        _reinstall_plugin(state, values)
    elif name == "plugin-missing":
        _without_plugin(state)
    elif name == "gpu-not-initialised":
        talos["broken_gpus"] = ["0000:8b:00.0"]
    elif name == "node-notready":
        state["faults"]["kubelet_not_ready"] = True
        state["kube"]["nodes"] = [gpu_node_object(now, ready=False, resource_version=30, talos_version=talos_version)]
    elif name in ("time-slicing", "time-slicing-renamed"):
        values = copy.deepcopy(SEED_VALUES)
        values["config"] = {"map": {"default": time_slicing_config(4, renamed=name == "time-slicing-renamed")},
                            "default": "default"}
        _reinstall_plugin(state, values)
    elif name == "operator-healthy":
        _with_operator(state, now - 3 * 86400)
    elif name == "nvswitch-no-fabricmanager":
        talos["pci_devices"] = copy.deepcopy(PCI_DEVICES) + copy.deepcopy(NVSWITCH_BRIDGES)
    elif name == "taint-not-tolerated":
        # the taint GPU node pools commonly carry (k8s-device-plugin#68, #1934); the seed's values replace the
        # chart's nvidia.com/gpu toleration with the control-plane and CriticalAddonsOnly ones only
        node = state["kube"]["nodes"][0]
        node["spec"]["taints"].append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
    elif name == "open-module-unsupported-gpu":
        talos["pci_devices"] = [dict(device) if device["id"] != "0000:8b:00.0" else dict(device, **V100_SXM2)
                                for device in PCI_DEVICES]
        talos["broken_gpus"] = ["0000:8b:00.0"]
        talos["gpu_failures"] = {"0000:8b:00.0": OPEN_UNSUPPORTED}
    elif name == "ebpf-hook-rejected":
        config["sysctls"] = {BPF_SYSCTL: "2"}
    elif name == "cni-not-initialised":
        # the seed's CNI is Cilium: its agent runs on the node but is not ready, so no CNI config is written
        state["faults"]["kubelet_not_ready"] = True
        state["kube"]["nodes"] = [gpu_node_object(now, ready=False, resource_version=30, talos_version=talos_version)]
        state["kube"]["daemonsets"].append(cilium_daemonset(talos["boot_time"]))
    elif name == "xid-unhealthy":
        talos["xid_gpus"] = {"0000:8b:00.0": 48}
    elif name in ("multi-gpu-nodes-one-failing", "multi-gpu-nodes-this-failing"):
        # the other GPU nodes live with the rest of the cluster (lab.state.STATIC_NODES_FILE)
        state["static_nodes"] = [other_gpu_node(2, 2, now),
                                 other_gpu_node(3, 0 if name.endswith("one-failing") else 2, now)]
        if name == "multi-gpu-nodes-one-failing":
            state["plugin_elsewhere"] = {"gpu-node-2": "healthy", "gpu-node-3": "driver-not-loaded"}
        else:
            state["plugin_elsewhere"] = {"gpu-node-2": "healthy", "gpu-node-3": "healthy"}
            config.update(kernel_modules=[], sysctls={})
    elif name in ("static-manifest", "static-manifest-adapted"):
        state["helm"]["releases"] = []
        state["kube"]["daemonsets"] = [static_manifest_daemonset(talos["boot_time"],
                                                                 adapted=name == "static-manifest-adapted")]
    # The rest of the cluster never changes: it lives in its own file (lab.state.STATIC_NODES_FILE),
    # read only by the API server, so that talosctl and helm do not parse 1,000 Node objects per call.
    state["static_nodes"] = list(state.get("static_nodes") or []) + [
        worker_node_object(index, gpus_per_extra_node, now, 100 + index) for index in range(1, extra_nodes + 1)]
    return state


def time_slicing_config(replicas: int, *, renamed: bool = False) -> str:
    """A device plugin config that time-slices nvidia.com/gpu (the chart's config.map entry, the shape of
    the k8s-device-plugin README's time-slicing example; renameByDefault under sharing.timeSlicing)."""
    rename = "    renameByDefault: true\n" if renamed else ""
    return ("version: v1\n"
            "sharing:\n"
            "  timeSlicing:\n"
            f"{rename}"
            "    resources:\n"
            "    - name: nvidia.com/gpu\n"
            f"      replicas: {replicas}\n")


# HGX H100 boards carry four NVSwitch bridges ("Bridge [0680]: NVIDIA Corporation GH100 [H100 NVSwitch]
# [10de:22a3]" in lspci, FACTS.md); Talos lists them with class 0x06, subclass 0x80. They are not GPUs.
NVSWITCH_BRIDGES: list[dict[str, str]] = [
    {
        "id": f"0000:{bus}:00.0", "class": "Bridge", "subclass": "Bridge", "vendor": "NVIDIA Corporation",
        "product": "GH100 [H100 NVSwitch]", "class_id": "0x06", "subclass_id": "0x80", "vendor_id": "0x10de",
        "product_id": "0x22a3", "driver": "",
    }
    for bus in ("c5", "c6", "c7", "c8")
]


# A Volta GPU has no GSP: the open kernel module refuses it (its PCI ID and the refusal in
# NVIDIA/open-gpu-kernel-modules#322: "The NVIDIA GPU 0000:af:00.0 (PCI ID: 10de:1db5)").
V100_SXM2: dict[str, str] = {"product": "GV100GL [Tesla V100 SXM2 32GB]", "product_id": "0x1db5"}


def other_gpu_node(index: int, gpus: int, now: float) -> dict[str, Any]:
    """Another GPU worker (``gpu-node-<index>``) of the cluster: a Node object only (its device plugin pod
    comes from the DaemonSet controller when ``state.plugin_elsewhere`` names it)."""
    node = worker_node_object(index, gpus, now, 60 + index)
    name = f"gpu-node-{index}"
    node["metadata"].update(name=name, uid=_stable_uid("node", name))
    node["metadata"]["labels"]["kubernetes.io/hostname"] = name
    node["status"]["addresses"] = [{"type": "InternalIP", "address": f"10.5.0.{index + 1}"},
                                   {"type": "Hostname", "address": name}]
    if gpus == 0:
        for key in ("capacity", "allocatable"):
            node["status"][key].pop("nvidia.com/gpu", None)
    node["status"]["nodeInfo"]["bootID"] = _stable_uid("boot", name)
    return node


STATIC_MANIFEST_IMAGE = f"nvcr.io/nvidia/k8s-device-plugin:v{chart.CHART_VERSION}"


def static_manifest_daemonset(created: float, *, adapted: bool = False) -> dict[str, Any]:
    """NVIDIA/k8s-device-plugin deployments/static/nvidia-device-plugin.yml as the API returns it: the label
    name=nvidia-device-plugin-ds only on the selector and the pod template (FACTS.md), toleration
    nvidia.com/gpu, FAIL_ON_INIT_ERROR false; ``adapted``: plus what the seed's Talos node needs
    (runtimeClassName nvidia, the control-plane toleration)."""
    name = "nvidia-device-plugin-daemonset"
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    adaptations: dict[str, Any] = {}
    if adapted:
        tolerations.append({"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                            "effect": "NoSchedule"})
        adaptations["runtimeClassName"] = "nvidia"
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": name,
            "namespace": PLUGIN_NAMESPACE,
            "uid": _stable_uid("daemonset", PLUGIN_NAMESPACE, name),
            "resourceVersion": "40",
            "generation": 1,
            "creationTimestamp": _timestamp(created),
            "annotations": {"deprecated.daemonset.template.generation": "1"},
        },
        "spec": {
            "selector": {"matchLabels": {"name": "nvidia-device-plugin-ds"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "revisionHistoryLimit": 10,
            "template": {
                "metadata": {"labels": {"name": "nvidia-device-plugin-ds"}},
                "spec": {
                    **adaptations,
                    "tolerations": tolerations,
                    "priorityClassName": "system-node-critical",
                    "containers": [{
                        "image": STATIC_MANIFEST_IMAGE,
                        "name": "nvidia-device-plugin-ctr",
                        "env": [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}],
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "device-plugin", "mountPath": "/var/lib/kubelet/device-plugins"}],
                    }],
                    "volumes": [{"name": "device-plugin", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}],
                },
            },
        },
        "status": {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                   "numberReady": 0},
    }


def cilium_daemonset(created: float) -> dict[str, Any]:
    """The CNI's DaemonSet (Cilium's agent, the seed's CNI) as the API returns it: the fields the lab uses."""
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": "cilium", "namespace": PLUGIN_NAMESPACE, "uid": _stable_uid("daemonset", PLUGIN_NAMESPACE, "cilium"),
            "resourceVersion": "20", "generation": 1, "creationTimestamp": _timestamp(created),
            "labels": {"k8s-app": "cilium", "app.kubernetes.io/name": "cilium-agent",
                       "app.kubernetes.io/part-of": "cilium"},
        },
        "spec": {
            "selector": {"matchLabels": {"k8s-app": "cilium"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2, "maxSurge": 0}},
            "template": {
                "metadata": {"labels": {"k8s-app": "cilium", "app.kubernetes.io/name": "cilium-agent",
                                        "app.kubernetes.io/part-of": "cilium"}},
                "spec": {
                    "hostNetwork": True,
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.18.3",
                                    "command": ["cilium-agent"], "args": ["--config-dir=/tmp/cilium/config-map"]}],
                },
            },
        },
        "status": {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                   "numberReady": 0},
    }
