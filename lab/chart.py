"""The nvidia-device-plugin Helm chart (0.15 - 0.18 layout) reduced to what the lab needs.

``render_daemonset`` returns the DaemonSet the chart's ``daemonset-device-plugin.yml`` renders for a
release and its user values, as the Kubernetes API then returns it (API defaults filled in).
Default values are the chart's: notably the required node affinity on NFD/GFD labels, which
``affinity: null`` in the user values removes (Helm deletes a default key set to null).
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

CHART_NAME = "nvidia-device-plugin"
CHART_VERSION = "0.17.3"
IMAGE_REPOSITORY = "nvcr.io/nvidia/k8s-device-plugin"
KNOWN_VERSIONS = ("0.15.0", "0.15.1", "0.16.0", "0.16.1", "0.16.2", "0.17.0", "0.17.1", "0.17.2", "0.17.3", "0.18.0")

DEFAULT_AFFINITY: dict[str, Any] = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "feature.node.kubernetes.io/pci-10de.present", "operator": "In",
                                       "values": ["true"]}]},
                {"matchExpressions": [{"key": "feature.node.kubernetes.io/cpu-model.vendor_id", "operator": "In",
                                       "values": ["NVIDIA"]}]},
                {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]},
            ]
        }
    }
}

DEFAULT_VALUES: dict[str, Any] = {
    "config": {"name": "", "map": {}, "default": "", "fallbackStrategies": ["named", "single"]},
    "compatWithCPUManager": None,
    "migStrategy": None,
    "failOnInitError": None,
    "deviceListStrategy": None,
    "deviceIDStrategy": None,
    "nvidiaDriverRoot": None,
    "gdrcopyEnabled": None,
    "gdsEnabled": None,
    "mofedEnabled": None,
    "deviceDiscoveryStrategy": None,
    "nameOverride": "",
    "fullnameOverride": "",
    "namespaceOverride": "",
    "selectorLabelsOverride": {},
    "allowDefaultNamespace": False,
    "imagePullSecrets": [],
    "image": {"repository": IMAGE_REPOSITORY, "pullPolicy": "IfNotPresent", "tag": ""},
    "updateStrategy": {"type": "RollingUpdate"},
    "podAnnotations": {},
    "podSecurityContext": {},
    "securityContext": {},
    "resources": {},
    "nodeSelector": {},
    "affinity": DEFAULT_AFFINITY,
    "tolerations": [
        {"key": "CriticalAddonsOnly", "operator": "Exists"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ],
    "priorityClassName": "system-node-critical",
    "runtimeClassName": None,
    "devicePlugin": {"enabled": True},
    "gfd": {"enabled": False},
    "mps": {"root": "/run/nvidia/mps"},
    "cdi": {"nvidiaHookPath": None, "featureFlags": None},
}


class ChartError(Exception):
    """The chart refused to render (Helm prints it as an execution error)."""


def coalesce(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Helm's value merge: maps merge recursively, lists and scalars replace, null deletes the key."""
    result = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = coalesce(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def merged_values(user_values: dict[str, Any]) -> dict[str, Any]:
    return coalesce(DEFAULT_VALUES, user_values or {})


def fullname(release: str, values: dict[str, Any]) -> str:
    """The chart's ``nvidia-device-plugin.fullname`` helper (DaemonSet name)."""
    if values.get("fullnameOverride"):
        return str(values["fullnameOverride"])[:63].rstrip("-")
    name = values.get("nameOverride") or CHART_NAME
    if name in release:
        return release[:63].rstrip("-")
    return f"{release}-{name}"[:63].rstrip("-")


def helm_time(epoch: float) -> str:
    """Go's ``time.Time.String()`` in UTC, as ``helm list`` prints UPDATED."""
    whole = int(epoch)
    micros = int(round((epoch - whole) * 1e6))
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    fraction = f"{micros:06d}".rstrip("0")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole))
    return f"{stamp}{'.' + fraction if fraction else ''} +0000 UTC"


def _timestamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _security_context(values: dict[str, Any]) -> dict[str, Any]:
    if values.get("securityContext"):
        return copy.deepcopy(values["securityContext"])
    if values.get("compatWithCPUManager") is True:
        return {"privileged": True}
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _env(values: dict[str, Any]) -> list[dict[str, str]]:
    env = [{"name": "MPS_ROOT", "value": str(values.get("mps", {}).get("root", "/run/nvidia/mps"))}]
    string_settings = [
        ("migStrategy", "MIG_STRATEGY"),
        ("deviceListStrategy", "DEVICE_LIST_STRATEGY"),
        ("deviceIDStrategy", "DEVICE_ID_STRATEGY"),
        ("nvidiaDriverRoot", "NVIDIA_DRIVER_ROOT"),
        ("deviceDiscoveryStrategy", "DEVICE_DISCOVERY_STRATEGY"),
    ]
    bool_settings = [
        ("failOnInitError", "FAIL_ON_INIT_ERROR"),
        ("compatWithCPUManager", "PASS_DEVICE_SPECS"),
        ("gdrcopyEnabled", "GDRCOPY_ENABLED"),
        ("gdsEnabled", "GDS_ENABLED"),
        ("mofedEnabled", "MOFED_ENABLED"),
    ]
    for key, variable in string_settings:
        if isinstance(values.get(key), str):
            env.append({"name": variable, "value": values[key]})
    for key, variable in bool_settings:
        if isinstance(values.get(key), bool):
            env.append({"name": variable, "value": "true" if values[key] else "false"})
    if values.get("migStrategy") not in (None, "none"):
        env.append({"name": "NVIDIA_MIG_MONITOR_DEVICES", "value": "all"})
    env.append({"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"})
    env.append({"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility"})
    return env


def validate(namespace: str, values: dict[str, Any]) -> None:
    """The chart's ``validation.yml``."""
    target = values.get("namespaceOverride") or namespace
    if target == "default" and not values.get("allowDefaultNamespace"):
        raise ChartError(
            "execution error at (nvidia-device-plugin/templates/validation.yml:20:4): Running in the 'default' "
            "namespace is not recommended. Set 'allowDefaultNamespace=true' to bypass this error."
        )


def config_text(values: dict[str, Any]) -> str | None:
    """The device plugin config a release's values give (``config.map``: its ``config.default`` entry, else
    its only one), as the chart puts it into the ConfigMap the plugin reads."""
    config = values.get("config") or {}
    entries = config.get("map") or {}
    if not isinstance(entries, dict) or not entries:
        return None
    default = config.get("default") or ""
    if default in entries:
        return str(entries[default])
    return str(next(iter(entries.values()))) if len(entries) == 1 else None


def _config_manager(values: dict[str, Any], image: str) -> list[dict[str, Any]]:
    """With a config map the chart runs config-manager beside the plugin (the sidecar that follows the
    node's nvidia.com/device-plugin.config label): the pod then has two containers."""
    if not (values.get("config") or {}).get("map") and not (values.get("config") or {}).get("name"):
        return []
    return [{
        "name": "nvidia-device-plugin-sidecar",
        "image": image,
        "command": ["config-manager"],
        "env": [{"name": "ONESHOT", "value": "false"}, {"name": "FALLBACK_STRATEGIES", "value": "named,single"}],
        "volumeMounts": [{"name": "available-configs", "mountPath": "/available-configs"},
                         {"name": "config", "mountPath": "/config"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": values.get("image", {}).get("pullPolicy", "IfNotPresent"),
    }]


def pod_template(release: str, values: dict[str, Any], chart_version: str) -> dict[str, Any]:
    name = fullname(release, values)
    tag = values.get("image", {}).get("tag") or f"v{chart_version}"
    image = f"{values.get('image', {}).get('repository', IMAGE_REPOSITORY)}:{tag}"
    mps_root = str(values.get("mps", {}).get("root", "/run/nvidia/mps"))
    container: dict[str, Any] = {
        "name": "nvidia-device-plugin-ctr",
        "image": image,
        "command": ["nvidia-device-plugin"],
        "env": _env(values),
        "resources": copy.deepcopy(values.get("resources") or {}),
        "volumeMounts": [
            {"name": "kubelet-device-plugins-dir", "mountPath": "/var/lib/kubelet/device-plugins"},
            {"name": "mps-shm", "mountPath": "/dev/shm"},
            {"name": "mps-root", "mountPath": "/mps"},
            {"name": "cdi-root", "mountPath": "/var/run/cdi"},
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": values.get("image", {}).get("pullPolicy", "IfNotPresent"),
        "securityContext": _security_context(values),
    }
    spec: dict[str, Any] = {
        "volumes": [
            {"name": "kubelet-device-plugins-dir",
             "hostPath": {"path": "/var/lib/kubelet/device-plugins", "type": "Directory"}},
            {"name": "mps-root", "hostPath": {"path": mps_root, "type": "DirectoryOrCreate"}},
            {"name": "mps-shm", "hostPath": {"path": f"{mps_root}/shm", "type": ""}},
            {"name": "cdi-root", "hostPath": {"path": "/var/run/cdi", "type": "DirectoryOrCreate"}},
        ],
        "containers": [container, *_config_manager(values, image)],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": f"{name}-service-account",
        "serviceAccount": f"{name}-service-account",
        "securityContext": copy.deepcopy(values.get("podSecurityContext") or {}),
        "schedulerName": "default-scheduler",
    }
    if values.get("nodeSelector"):
        spec["nodeSelector"] = copy.deepcopy(values["nodeSelector"])
    if values.get("affinity"):
        spec["affinity"] = copy.deepcopy(values["affinity"])
    if values.get("tolerations"):
        spec["tolerations"] = copy.deepcopy(values["tolerations"])
    if values.get("priorityClassName"):
        spec["priorityClassName"] = values["priorityClassName"]
    if values.get("runtimeClassName"):
        spec["runtimeClassName"] = values["runtimeClassName"]
    if values.get("imagePullSecrets"):
        spec["imagePullSecrets"] = copy.deepcopy(values["imagePullSecrets"])
    labels = {"app.kubernetes.io/name": CHART_NAME, "app.kubernetes.io/instance": release}
    return {"metadata": {"creationTimestamp": None, "labels": labels}, "spec": spec}


def render_daemonset(
    release: str,
    namespace: str,
    user_values: dict[str, Any],
    *,
    created: float,
    resource_version: int,
    chart_version: str = CHART_VERSION,
    generation: int = 1,
    uid: str | None = None,
) -> dict[str, Any]:
    """The DaemonSet object (as the API returns it) for ``release`` with ``user_values``."""
    values = merged_values(user_values)
    validate(namespace, values)
    name = fullname(release, values)
    target_namespace = values.get("namespaceOverride") or namespace
    selector = {"app.kubernetes.io/name": CHART_NAME, "app.kubernetes.io/instance": release}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": name,
            "namespace": target_namespace,
            "uid": uid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"talos-gpu-lab/daemonset/{target_namespace}/{name}")),
            "resourceVersion": str(resource_version),
            "generation": generation,
            "creationTimestamp": _timestamp(created),
            "labels": {
                "app.kubernetes.io/instance": release,
                "app.kubernetes.io/managed-by": "Helm",
                "app.kubernetes.io/name": CHART_NAME,
                "app.kubernetes.io/version": chart_version,
                "helm.sh/chart": f"{CHART_NAME}-{chart_version}",
            },
            "annotations": {
                "deprecated.daemonset.template.generation": str(generation),
                "meta.helm.sh/release-name": release,
                "meta.helm.sh/release-namespace": namespace,
            },
        },
        "spec": {
            "selector": {"matchLabels": selector},
            "template": pod_template(release, values, chart_version),
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "revisionHistoryLimit": 10,
        },
        "status": {
            "currentNumberScheduled": 0,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": 0,
            "numberReady": 0,
        },
    }


def manifest(daemonset: dict[str, Any]) -> str:
    """The release manifest Helm stores (the rendered template, without API-server fields)."""
    from lab.goyaml import dump_helm

    metadata = daemonset["metadata"]
    template = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": metadata["name"], "namespace": metadata["namespace"], "labels": metadata["labels"]},
        "spec": {
            "selector": daemonset["spec"]["selector"],
            "updateStrategy": {"type": "RollingUpdate"},
            "template": daemonset["spec"]["template"],
        },
    }
    return "---\n# Source: nvidia-device-plugin/templates/daemonset-device-plugin.yml\n" + dump_helm(template)
