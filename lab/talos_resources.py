"""The lab node's resources as `talosctl get` serves them (extensions, modules, machine status, PCI devices,
nodename, version, members, the machine config with its lab SECRET markers) and the real output formats:
tables aligned like Go's tabwriter, `-o yaml` documents that start with `node:`, `-o json`, jsonpath."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab import node as lab_node
from lab.goyaml import Raw, dump_talos
from lab.machineconfig import (
    CommandError,
    config_document,
)


@dataclass
class Resource:
    namespace: str
    type: str
    id: str
    owner: str
    created: float
    spec: Any  # a mapping; the machine config's is its raw YAML text, as Talos presents it
    columns: list[tuple[str, str]]
    version: int = 1


@dataclass
class NodeContext:
    state: dict[str, Any]
    talos: dict[str, Any]
    view: lab_node.NodeView
    now: float


def _extensions(ctx: NodeContext) -> list[Resource]:
    resources = []
    for entry in ctx.view.extensions:
        metadata: dict[str, Any] = {
            "name": entry["name"],
            "version": entry["version"],
            "author": entry["author"],
            "description": entry["description"],
        }
        if entry.get("compatibility"):
            metadata["compatibility"] = entry["compatibility"]
        resources.append(
            Resource("runtime", "ExtensionStatuses.runtime.talos.dev", entry["id"], "runtime.ExtensionStatusController",
                     ctx.talos["boot_time"], {"image": entry["image"], "metadata": metadata},
                     [("NAME", entry["name"]), ("VERSION", entry["version"])])
        )
    return resources


def _loaded_modules(ctx: NodeContext) -> list[Resource]:
    sizes = {name: (size, address) for name, size, address in lab_node.BASE_MODULES}
    sizes.update(lab_node.NVIDIA_MODULE_INFO)
    users: dict[str, list[str]] = {}
    for module, dependencies in lab_node.MODULE_DEPENDENCIES.items():
        if module in ctx.view.modules_loaded:
            for dependency in dependencies:
                users.setdefault(dependency, []).append(module)
    resources = []
    for module in sorted(ctx.view.modules_loaded):
        size, address = sizes[module]
        spec = {
            "name": module,
            "size": size,
            "referenceCount": len(users.get(module, [])),
            "dependencies": sorted(users.get(module, [])),
            "state": "Live",
            "address": address,
        }
        resources.append(Resource("runtime", "LoadedKernelModules.runtime.talos.dev", module,
                                  "runtime.KernelModuleStatusController", ctx.talos["boot_time"], spec,
                                  [("STATE", "Live")]))
    return resources


def _module_specs(ctx: NodeContext) -> list[Resource]:
    modules = (ctx.talos.get("config") or {}).get("kernel_modules") or []
    return [
        Resource("runtime", "KernelModuleSpecs.runtime.talos.dev", module, "runtime.KernelModuleConfigController",
                 ctx.talos["boot_time"], {"name": module}, [])
        for module in sorted(set(modules))
    ]


def _machine_status(ctx: NodeContext) -> list[Resource]:
    view = ctx.view
    unmet = []
    if view.boot_stuck:
        unmet.append({"name": "services", "reason": "some services are not running: cri, etcd, kubelet, trustd"})
    if not view.machine_ready:
        hostname = ctx.talos["hostname"]
        unmet.append({"name": "nodeReady", "reason": f'node "{hostname}" is not ready'})
    spec = {"stage": view.machine_stage, "status": {"ready": view.machine_ready, "unmetConditions": unmet}}
    return [Resource("runtime", "MachineStatuses.runtime.talos.dev", "machine", "runtime.MachineStatusController",
                     ctx.talos["boot_time"], spec,
                     [("STAGE", view.machine_stage), ("READY", "true" if view.machine_ready else "false")], version=5)]


def _pci_devices(ctx: NodeContext) -> list[Resource]:
    resources = []
    for device in sorted(ctx.talos.get("pci_devices") or [], key=lambda item: item["id"]):
        spec = {key: device.get(key, "") for key in
                ("class", "subclass", "vendor", "product", "class_id", "subclass_id", "vendor_id", "product_id", "driver")}
        if not spec["driver"]:
            del spec["driver"]
        resources.append(Resource("hardware", "PCIDevices.hardware.talos.dev", device["id"],
                                  "hardware.PCIDevicesController", ctx.talos["boot_time"], spec,
                                  [("CLASS", device.get("class", "")), ("SUBCLASS", device.get("subclass", "")),
                                   ("VENDOR", device.get("vendor", "")), ("PRODUCT", device.get("product", ""))]))
    return resources


def _nodename(ctx: NodeContext) -> list[Resource]:
    hostname = ctx.talos["hostname"]
    spec = {"nodename": hostname, "hostnameVersion": "1", "skipNodeRegistration": False}
    return [Resource("k8s", "Nodenames.kubernetes.talos.dev", "nodename", "k8s.NodenameController",
                     ctx.talos["boot_time"], spec, [("NODENAME", hostname)])]


def _version(ctx: NodeContext) -> list[Resource]:
    version = ctx.view.talos_version
    return [Resource("runtime", "Versions.runtime.talos.dev", "version", "runtime.VersionController",
                     ctx.talos["boot_time"], {"version": version}, [("VERSION", version)])]


def _members(ctx: NodeContext) -> list[Resource]:
    talos = ctx.talos
    os_name = f"Talos ({ctx.view.talos_version})"
    spec = {
        "nodeId": "6Ze5yu0Qb6GOBdm7Zb3wlrXqLVHsNNDbO5BzbB4jaCrB",
        "addresses": [talos["node"]],
        "hostname": talos["hostname"],
        "machineType": "controlplane",
        "operatingSystem": os_name,
    }
    return [Resource("cluster", "Members.cluster.talos.dev", talos["hostname"], "cluster.MemberController",
                     talos["boot_time"], spec,
                     [("HOSTNAME", talos["hostname"]), ("MACHINE TYPE", "controlplane"), ("OS", os_name),
                      ("ADDRESSES", json.dumps([talos["node"]]))])]


ResourceBuilder = Callable[[NodeContext], list[Resource]]


RESOURCE_TYPES: dict[str, tuple[tuple[str, ...], ResourceBuilder | None]] = {
    "ExtensionStatuses.runtime.talos.dev": (("extensions", "extension", "extensionstatus", "extensionstatuses"),
                                            _extensions),
    "LoadedKernelModules.runtime.talos.dev": (("modules", "module", "loadedkernelmodule", "loadedkernelmodules"),
                                              _loaded_modules),
    "KernelModuleSpecs.runtime.talos.dev": (("kernelmodulespec", "kernelmodulespecs", "kmodspec", "kmodspecs"),
                                            _module_specs),
    "MachineStatuses.runtime.talos.dev": (("machinestatus", "machinestatuses"), _machine_status),
    "PCIDevices.hardware.talos.dev": (("pcidevice", "pcidevices"), _pci_devices),
    "Nodenames.kubernetes.talos.dev": (("nodename", "nodenames"), _nodename),
    "Versions.runtime.talos.dev": (("version", "versions"), _version),
    "Members.cluster.talos.dev": (("member", "members"), _members),
    "MachineConfigs.config.talos.dev": (("machineconfig", "machineconfigs", "mc"),
                                        lambda ctx: _machine_config(ctx)),
}


def resolve_resource_type(name: str) -> tuple[str, ResourceBuilder | None] | None:
    lowered = name.lower()
    for full, (aliases, builder) in RESOURCE_TYPES.items():
        if lowered == full.lower() or lowered in aliases:
            return full, builder
    return None


def tabwrite(rows: list[list[str]], padding: int = 3) -> str:
    """Go tabwriter output (minwidth 0, padding 3, spaces): every column but the last is padded."""
    if not rows:
        return ""
    columns = max(len(row) for row in rows)
    widths = [0] * columns
    for row in rows:
        for index, cell in enumerate(row[:-1]):
            widths[index] = max(widths[index], len(cell))
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[index] + padding) for index, cell in enumerate(row[:-1])]
        lines.append("".join(cells) + (row[-1] if row else ""))
    return "\n".join(lines) + "\n"


def _short_type(full: str) -> str:
    plural = full.split(".", 1)[0]
    if plural.endswith("ses"):
        return plural[:-2]
    if plural.endswith("s"):
        return plural[:-1]
    return plural


def resource_document(resource: Resource) -> dict[str, Any]:
    stamp = lab_node.rfc3339(resource.created)
    return {
        "metadata": {
            "namespace": resource.namespace,
            "type": resource.type,
            "id": resource.id,
            "version": resource.version,
            "owner": resource.owner,
            "phase": "running",
            "created": Raw(stamp),
            "updated": Raw(stamp),
        },
        "spec": resource.spec,
    }


def go_json(value: Any) -> str:
    """``json.Encoder`` with ``SetIndent("", "    ")``: sorted keys, HTML characters escaped."""
    text = json.dumps(value, indent=4, sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n"


def _jsonpath(document: Any, expression: str) -> str:
    inner = expression.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1]
    value = document
    for part in [piece for piece in inner.split(".") if piece]:
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def render_resources(resources: list[Resource], node: str, output: str, type_name: str) -> str:
    if output in ("", "table"):
        rows = [["NODE", "NAMESPACE", "TYPE", "ID", "VERSION"] + [header for header, _ in
                                                                   (resources[0].columns if resources else [])]]
        if not resources:
            rows = [["NODE", "NAMESPACE", "TYPE", "ID", "VERSION"] + _empty_columns(type_name)]
        for resource in resources:
            rows.append([node, resource.namespace, _short_type(resource.type), resource.id, str(resource.version)]
                        + [value for _, value in resource.columns])
        return tabwrite(rows)
    if output == "yaml":
        documents = []
        for resource in resources:
            documents.append(f"node: {node}\n" + dump_talos(resource_document(resource)))
        return "---\n".join(documents)
    if output == "json":
        parts = []
        for resource in resources:
            document = json.loads(json.dumps(resource_document(resource)))
            document["node"] = node
            parts.append(go_json(document))
        return "".join(parts)
    if output.startswith("jsonpath="):
        lines = []
        for resource in resources:
            document = json.loads(json.dumps(resource_document(resource)))
            document["node"] = node
            lines.append(_jsonpath(document, output[len("jsonpath="):]))
        return "".join(line + "\n" for line in lines)
    raise CommandError(f'output format "{output}" is not supported')


def _empty_columns(type_name: str) -> list[str]:
    headers = {
        "ExtensionStatuses.runtime.talos.dev": ["NAME", "VERSION"],
        "LoadedKernelModules.runtime.talos.dev": ["STATE"],
        "MachineStatuses.runtime.talos.dev": ["STAGE", "READY"],
        "PCIDevices.hardware.talos.dev": ["CLASS", "SUBCLASS", "VENDOR", "PRODUCT"],
        "Nodenames.kubernetes.talos.dev": ["NODENAME"],
        "Versions.runtime.talos.dev": ["VERSION"],
        "Members.cluster.talos.dev": ["HOSTNAME", "MACHINE TYPE", "OS", "ADDRESSES"],
    }
    return headers.get(type_name, [])


def node_context(state: dict[str, Any], now: float) -> NodeContext:
    return NodeContext(state, lab_node.effective_talos(state, now), lab_node.node_view(state, now), now)


MACHINE_SECRETS = {
    "token": "lab-SECRET-machine-token-5b7c9d",
    "ca_key": "LS0tLS1CRUdJTiBFRDI1NTE5IFBSSVZBVEUgS0VZLS0tLS0Klab-SECRET-machine-ca-key",
    "cluster_secret": "lab-SECRET-cluster-secret-a1b2c3d4e5f6",
    "bootstrap_token": "lab-SECRET-bootstrap-token-q9w8e7",
    "aescbc": "lab-SECRET-aescbc-encryption-secret-0011",
}


def full_config_text(ctx: NodeContext) -> str:
    """The node's whole machine config as `get mc` shows it: the fields the lab models, plus the
    cluster's keys and tokens (lab SECRET markers)."""
    document = config_document(ctx.talos.get("config") or {})
    machine = document["machine"]
    full: dict[str, Any] = {
        "version": "v1alpha1",
        "debug": False,
        "persist": True,
        "machine": {
            "type": "controlplane",
            "token": MACHINE_SECRETS["token"],
            "ca": {"crt": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==", "key": MACHINE_SECRETS["ca_key"]},
            "kubelet": {"image": "ghcr.io/siderolabs/kubelet:v1.34.1", "defaultRuntimeSeccompProfileEnabled": True},
            "install": {"disk": "/dev/nvme0n1", "image": f"factory.talos.dev/installer/{ctx.talos.get('schematic')}:"
                                                          f"{ctx.view.talos_version}", "wipe": False},
            **machine,
        },
        "cluster": {
            "id": "Tk7hVb1nE0o0c6Q2mXr0yP1z7a9cGvYk3qN5sLwU8fE=",
            "secret": MACHINE_SECRETS["cluster_secret"],
            "controlPlane": {"endpoint": f"https://{ctx.talos['node']}:6443"},
            "clusterName": "lab",
            "token": MACHINE_SECRETS["bootstrap_token"],
            "secretboxEncryptionSecret": MACHINE_SECRETS["aescbc"],
        },
    }
    for entry in full["machine"].get("files", []):
        entry["permissions"] = Raw(f"0o{entry['permissions']:o}")
    return dump_talos(full)


def _machine_config(ctx: NodeContext) -> list[Resource]:
    return [Resource("config", "MachineConfigs.config.talos.dev", "v1alpha1", "", ctx.talos["boot_time"],
                     full_config_text(ctx), [], version=3)]
