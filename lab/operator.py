"""The lab's NVIDIA GPU Operator (Talos >= 1.13): its Helm chart ``nvidia/gpu-operator`` reduced to the
ClusterPolicy it renders, and what the operator's controller then makes of it on the cluster.

Real names and shapes: NVIDIA/gpu-operator ``deployments/gpu-operator`` (the chart, ClusterPolicy
``cluster-policy``), ``assets/`` (the operands' DaemonSets and their ``app`` labels, the validator's init
containers), ``controllers/object_controls.go`` (RuntimeClasses created with the ClusterPolicy as their
controller, an existing one updated in place), ``controllers/state_manager.go`` (the ``nvidia.com/gpu.deploy.*``
node labels), ``api/nvidia/v1/clusterpolicy_types.go`` (``status.state`` ready / notReady). FACTS.md
"Talos >= 1.13: GPU Operator and CDI".

Pure functions of the stored objects: the API server's reconcile (``lab.kubeapi.controllers``) serves what they
return. Nothing here imports the API server, and nothing in ``checks/`` imports this.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Mapping
from typing import Any

from lab.chart import coalesce

CHART_NAME = "gpu-operator"
CHART_VERSION = "v26.3.1"
KNOWN_VERSIONS = ("v25.3.4", "v25.10.1", "v26.3.0", "v26.3.1")
CRD = "clusterpolicies.nvidia.com"
CLUSTER_POLICY = "cluster-policy"
API_VERSION = "nvidia.com/v1"
NFD_GPU_LABEL = "feature.node.kubernetes.io/pci-10de.present"  # NFD (a chart dependency) labels NVIDIA PCI nodes
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
PRIVILEGED_LABEL = "pod-security.kubernetes.io/enforce"
DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.18.1"
VALIDATOR_IMAGE = "nvcr.io/nvidia/cloud-native/gpu-operator-validator:v26.3.1"
VALIDATOR_INITS = ("driver-validation", "toolkit-validation", "cuda-validation", "plugin-validation")
DEVICE_PLUGIN_INITS = ("toolkit-validation", "config-manager-init")
# The RuntimeClasses the operator creates when CDI is on (its default): name -> handler
RUNTIME_CLASSES = {"nvidia": "nvidia", "nvidia-cdi": "nvidia-cdi", "nvidia-legacy": "nvidia-legacy"}

# The chart's values the lab honours (deployments/gpu-operator/values.yaml)
DEFAULT_VALUES: dict[str, Any] = {
    "operator": {"defaultRuntime": "containerd", "runtimeClass": "nvidia"},
    "driver": {"enabled": True},
    "toolkit": {"enabled": True},
    "devicePlugin": {"enabled": True},
    "dcgmExporter": {"enabled": True},
    "gfd": {"enabled": True},
    "migManager": {"enabled": True},
    "nodeStatusExporter": {"enabled": False},
    "validator": {"plugin": {"env": [{"name": "WITH_WORKLOAD", "value": "false"}]}},
    "cdi": {"enabled": True},
    "hostPaths": {"rootFS": "/", "driverInstallDir": "/run/nvidia/driver"},
    "daemonsets": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
}

# operand (ClusterPolicy spec key) -> DaemonSet name (= its `app` label), image; in the order the operator
# deploys them (driver and toolkit first: on Talos both are disabled, the extensions provide them)
OPERANDS: tuple[tuple[str, str, str], ...] = (
    ("driver", "nvidia-driver-daemonset", "nvcr.io/nvidia/driver:595.91.07"),
    ("toolkit", "nvidia-container-toolkit-daemonset", "nvcr.io/nvidia/k8s/container-toolkit:v1.19.1-ubi8"),
    ("validator", "nvidia-operator-validator", VALIDATOR_IMAGE),
    ("devicePlugin", "nvidia-device-plugin-daemonset", DEVICE_PLUGIN_IMAGE),
    ("gfd", "gpu-feature-discovery", DEVICE_PLUGIN_IMAGE),
    ("dcgmExporter", "nvidia-dcgm-exporter", "nvcr.io/nvidia/k8s/dcgm-exporter:4.4.1-4.6.0-ubuntu22.04"),
    ("nodeStatusExporter", "nvidia-node-status-exporter", VALIDATOR_IMAGE),
)
DEVICE_PLUGIN = "nvidia-device-plugin-daemonset"
VALIDATOR = "nvidia-operator-validator"
GFD = "gpu-feature-discovery"
DCGM_EXPORTER = "nvidia-dcgm-exporter"
DRIVER = "nvidia-driver-daemonset"
TOOLKIT = "nvidia-container-toolkit-daemonset"


def _timestamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "talos-gpu-lab/gpu-operator/" + "/".join(parts)))


def merged_values(user_values: Mapping[str, Any]) -> dict[str, Any]:
    """The chart's defaults with the user's values over them (Helm's merge: lab.chart.coalesce)."""
    return coalesce(DEFAULT_VALUES, dict(user_values or {}))


def render_cluster_policy(release: str, namespace: str, user_values: Mapping[str, Any], *, chart_version: str,
                          created: float, resource_version: int) -> dict[str, Any]:
    """The ClusterPolicy the chart's ``templates/clusterpolicy.yaml`` renders, as the API stores it."""
    values = merged_values(user_values)
    spec = {key: copy.deepcopy(values[key]) for key in ("operator", "driver", "toolkit", "devicePlugin",
                                                         "dcgmExporter", "gfd", "migManager", "nodeStatusExporter",
                                                         "validator", "cdi", "hostPaths", "daemonsets")}
    return {
        "apiVersion": API_VERSION, "kind": "ClusterPolicy",
        "metadata": {
            "name": CLUSTER_POLICY, "uid": _uid("clusterpolicy", CLUSTER_POLICY),
            "resourceVersion": str(resource_version), "generation": 1, "creationTimestamp": _timestamp(created),
            "labels": {"app.kubernetes.io/component": "gpu-operator", "app.kubernetes.io/instance": release,
                       "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/name": CHART_NAME,
                       "app.kubernetes.io/version": chart_version, "helm.sh/chart": f"{CHART_NAME}-{chart_version}"},
            "annotations": {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace},
        },
        "spec": spec,
    }


def enabled(policy: Mapping[str, Any], operand: str) -> bool:
    return bool(((policy.get("spec") or {}).get(operand) or {}).get("enabled", True))


def owner_reference(policy: Mapping[str, Any]) -> dict[str, Any]:
    meta = policy.get("metadata") or {}
    return {"apiVersion": API_VERSION, "kind": "ClusterPolicy", "name": meta.get("name", CLUSTER_POLICY),
            "uid": meta.get("uid", ""), "controller": True, "blockOwnerDeletion": True}


def operator_release(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Helm release of the gpu-operator chart (the operator's Deployment runs while it is installed)."""
    for release in (state.get("helm") or {}).get("releases") or []:
        if str(release.get("chart", "")).startswith(CHART_NAME + "-"):
            return release
    return None


def active_policy(state: Mapping[str, Any]) -> tuple[dict[str, Any], str] | None:
    """(the ClusterPolicy, the operator's namespace) when an operator runs and has a ClusterPolicy to reconcile."""
    release = operator_release(state)
    policies = (state.get("kube") or {}).get("clusterpolicies") or []
    if release is None or not policies:
        return None
    return policies[0], str(release.get("namespace") or "gpu-operator")


def _container(name: str, image: str, *, privileged: bool = True) -> dict[str, Any]:
    return {"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
            "securityContext": {"privileged": privileged}, "resources": {},
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}


def operand_daemonsets(policy: Mapping[str, Any], namespace: str) -> list[dict[str, Any]]:
    """The DaemonSets the operator creates for ``policy`` (``assets/state-*``), owned by it."""
    meta = policy.get("metadata") or {}
    created = meta.get("creationTimestamp")
    runtime_class = str(((policy.get("spec") or {}).get("operator") or {}).get("runtimeClass") or "nvidia")
    daemonsets = []
    for operand, name, image in OPERANDS:
        if not enabled(policy, operand):
            continue
        inits: tuple[str, ...] = (VALIDATOR_INITS if name == VALIDATOR else
                                  DEVICE_PLUGIN_INITS if name == DEVICE_PLUGIN else
                                  ("toolkit-validation",) if name in (GFD, DCGM_EXPORTER) else ())
        main = "nvidia-device-plugin" if name == DEVICE_PLUGIN else name
        template_spec: dict[str, Any] = {
            "nodeSelector": {f"nvidia.com/gpu.deploy.{_deploy_key(operand)}": "true"},
            "tolerations": copy.deepcopy(((policy.get("spec") or {}).get("daemonsets") or {}).get("tolerations") or []),
            "priorityClassName": "system-node-critical",
            "serviceAccountName": name.removesuffix("-daemonset"),
            "containers": [_container(main, image)],
        }
        if inits:
            template_spec["initContainers"] = [_container(init, VALIDATOR_IMAGE) for init in inits]
        if operand not in ("driver", "toolkit"):
            template_spec["runtimeClassName"] = runtime_class
        daemonsets.append({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {
                "name": name, "namespace": namespace, "uid": _uid("daemonset", namespace, name), "generation": 1,
                "creationTimestamp": created, "labels": {"app": name, "app.kubernetes.io/part-of": "nvidia-gpu"},
                "annotations": {"deprecated.daemonset.template.generation": "1"},
                "ownerReferences": [owner_reference(policy)],
            },
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name, "app.kubernetes.io/part-of": "nvidia-gpu"}},
                             "spec": template_spec},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "1", "maxSurge": 0}},
                "revisionHistoryLimit": 10,
            },
        })
    return daemonsets


def _deploy_key(operand: str) -> str:
    return {"devicePlugin": "device-plugin", "gfd": "gpu-feature-discovery", "dcgmExporter": "dcgm-exporter",
            "validator": "operator-validator", "toolkit": "container-toolkit", "nodeStatusExporter":
            "node-status-exporter", "migManager": "mig-manager"}.get(operand, operand)


def node_labels(policy: Mapping[str, Any], node_labels_now: Mapping[str, str]) -> dict[str, str]:
    """The labels the operator adds to a GPU node (``state_manager.go``): where NFD found an NVIDIA PCI device,
    ``nvidia.com/gpu.present`` and one ``nvidia.com/gpu.deploy.<operand>`` per operand. NFD labels the node
    first (it comes with the chart); an empty dict for a node without NVIDIA GPUs."""
    if node_labels_now.get(NFD_GPU_LABEL) != "true":
        return {}
    labels = {GPU_PRESENT_LABEL: "true", "nvidia.com/gpu.deploy.operands": "true"}
    for operand, _name, _image in OPERANDS:
        labels[f"nvidia.com/gpu.deploy.{_deploy_key(operand)}"] = "true"
    labels["nvidia.com/gpu.deploy.dcgm"] = "true"
    return labels


def runtime_classes(policy: Mapping[str, Any], stored: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The RuntimeClasses as the operator leaves them: created, or an existing one of the same name updated with
    the ClusterPolicy as its controller (``transformRuntimeClass``: Get, then Create or Update)."""
    created = (policy.get("metadata") or {}).get("creationTimestamp")
    result: dict[str, dict[str, Any]] = {}
    for name, handler in RUNTIME_CLASSES.items():
        existing = stored.get(name)
        obj = copy.deepcopy(dict(existing)) if existing is not None else {
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": {"name": name, "uid": _uid("runtimeclass", name), "creationTimestamp": created}}
        obj["handler"] = handler
        obj["metadata"]["ownerReferences"] = [owner_reference(policy)]
        result[name] = obj
    return result


def privileged_namespace(namespace: Mapping[str, Any] | None) -> bool:
    labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    return labels.get(PRIVILEGED_LABEL) == "privileged"


def pod_security_message(pod_prefix: str, containers: list[str]) -> str:
    """What the API server's Pod Security admission (Talos: enforce baseline by default) says of an operand pod."""
    quoted = ", ".join(f'"{name}"' for name in containers)
    noun = "containers" if len(containers) > 1 else "container"
    return (f'Error creating: pods "{pod_prefix}" is forbidden: violates PodSecurity "baseline:latest": privileged '
            f"({noun} {quoted} must not set securityContext.privileged=true)")


def policy_status(policy: Mapping[str, Any], namespace: str, ready: bool, since: str, problem: str = ""
                  ) -> dict[str, Any]:
    """``status`` of the ClusterPolicy: ready once every operand is ready on the GPU nodes, else notReady."""
    generation = int((policy.get("metadata") or {}).get("generation") or 1)
    if ready:
        conditions = [
            {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "ClusterPolicy is ready as all "
             "resources have been successfully reconciled", "lastTransitionTime": since,
             "observedGeneration": generation},
            {"type": "Error", "status": "False", "reason": "Ready", "message": "", "lastTransitionTime": since,
             "observedGeneration": generation},
        ]
    else:
        conditions = [
            {"type": "Ready", "status": "False", "reason": "OperandNotReady", "message": problem,
             "lastTransitionTime": since, "observedGeneration": generation},
            {"type": "Error", "status": "True", "reason": "OperandNotReady", "message": problem,
             "lastTransitionTime": since, "observedGeneration": generation},
        ]
    return {"state": "ready" if ready else "notReady", "namespace": namespace, "conditions": conditions}
