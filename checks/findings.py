"""Typed findings: what a judge found, in a form a pane renders without judging again.

The judges (checks/judges.py, checks/paths/*/judges.py) compute these from the facts of a sweep and hand them
on with their judgement; the stage result carries them (never in the JSON, whose shape INTERFACE.md fixes);
the panes (widgets/panes.py) only render them. Each rule lives here once — which extensions are missing or on
the wrong track, what state a pod is in, how many GPUs to expect and how many the Node advertises, which taints
a DaemonSet does not tolerate — so that the checklist and a pane can never disagree about the same facts.
This module imports no parser and no UI: it works on the parsers' typed values and on Kubernetes objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from checks.model import ProbeResult, Report
    from checks.profile import Profile

GPU_RESOURCE = "nvidia.com/gpu"
"""The resource the NVIDIA device plugin registers with the kubelet (the lab keeps its own copy: it must not
import checks)."""
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
KMOD_BASE = "nvidia-open-gpu-kernel-modules"
NONFREE_KMOD_BASE = "nonfree-kmod-nvidia"
TOOLKIT_BASE = "nvidia-container-toolkit"
FABRICMANAGER_BASE = "nvidia-fabricmanager"
DRIVER_BASES = (KMOD_BASE, NONFREE_KMOD_BASE, TOOLKIT_BASE, FABRICMANAGER_BASE)
"""The NVIDIA extensions whose version starts with the driver version (FACTS.md): those must agree."""

F = TypeVar("F")


# ---- extensions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtensionFinding:
    """One installed NVIDIA extension, taken apart, with what is wrong with it."""

    name: str
    base: str  # the name without its track
    track: str  # "production", "lts", "" (a legacy name)
    driver: str  # the version before its first "-"
    suffix: str  # the rest of the version
    track_ok: bool  # on the profile's track
    driver_ok: bool  # its driver version agrees with the other NVIDIA extensions' (always true for others)

    @property
    def version(self) -> str:
        return f"{self.driver}-{self.suffix}" if self.suffix else self.driver


@dataclass(frozen=True)
class ExtensionsFinding:
    """The NVIDIA extensions against the profile (INTERFACE.md, stage `extensions`)."""

    track: str  # the profile's
    extensions: tuple[ExtensionFinding, ...]  # the NVIDIA extensions installed, sorted by name
    missing: tuple[str, ...]  # names of the wanted extensions not installed (with the profile's track)
    mixed_tracks: bool  # the kernel modules and the toolkit are on different tracks
    wrong_track: tuple[str, ...]  # "name (track)" of the kernel modules / toolkit not on the profile's track
    drivers_differ: bool  # the driver-carrying extensions name different driver versions
    nvswitches: int  # NVSwitch bridges on the PCI bus (HGX/DGX): Fabric Manager is needed
    kmod: str | None = None  # the kernel-modules extension's name (open or proprietary), None when absent
    toolkit: str | None = None
    fabricmanager: str | None = None
    installed_schematic: str | None = None  # the schematic id of the installed image, None when not a factory image
    wanted_schematic: str | None = None  # the schematic id carrying the profile's extensions (offline)

    def extension(self, name: str | None) -> ExtensionFinding | None:
        return next((ext for ext in self.extensions if ext.name == name), None) if name else None

    @property
    def fabricmanager_missing(self) -> bool:
        return self.nvswitches > 0 and self.fabricmanager is None

    @property
    def problems(self) -> tuple[str, ...]:
        """What is wrong, one sentence each, in the order the stage judges it (empty: nothing)."""
        out = [f"{name} is not installed" for name in self.missing]
        carrying = [ext for ext in self.extensions if ext.base in DRIVER_BASES]
        if self.mixed_tracks:
            out.append("mixed tracks: " + ", ".join(f"{ext.base} {ext.track or 'no track'}" for ext in carrying)
                       + " (never mix lts with production)")
        elif self.wrong_track:
            tracks = sorted({ext.track for ext in carrying if not ext.track_ok})
            out.append(f"track {', '.join(t or 'none' for t in tracks)}, the profile wants {self.track}")
        if self.drivers_differ:
            out.append("driver versions differ: " + ", ".join(f"{ext.base} {ext.driver}" for ext in carrying))
        if self.fabricmanager_missing:
            out.append(f"{self.nvswitches} NVSwitch bridge{'s' if self.nvswitches != 1 else ''} but "
                       f"{FABRICMANAGER_BASE}-{self.track} is not installed")
        return tuple(out)

    @property
    def ok(self) -> bool:
        return not self.problems


def extensions_finding(extensions: Iterable[Any], profile: Profile, pci: Iterable[Any] = ()) -> ExtensionsFinding:
    """From `talosctl get extensions` (parsers.Extension) and, for NVSwitch boards, `get pcidevices`."""
    from checks.parsers.talos import nvidia_extensions, schematic_id
    from checks.schematic import nvidia_schematic

    installed = list(extensions)
    nvidia = sorted(nvidia_extensions(installed), key=lambda ext: ext.name)
    track = profile.track
    kmod = next((e for e in nvidia if e.base in (KMOD_BASE, NONFREE_KMOD_BASE)), None)
    toolkit = next((e for e in nvidia if e.base == TOOLKIT_BASE), None)
    fabric = next((e for e in nvidia if e.base == FABRICMANAGER_BASE), None)
    missing = tuple(f"{base}-{track}" for base, ext in ((KMOD_BASE, kmod), (TOOLKIT_BASE, toolkit)) if ext is None)
    pair = [ext for ext in (kmod, toolkit) if ext is not None]
    mixed = len({ext.track for ext in pair}) > 1
    wrong = tuple(f"{ext.name} ({ext.track or 'no track'})" for ext in pair if ext.track != track)
    drivers = {ext.driver for ext in nvidia if ext.base in DRIVER_BASES}
    differ = len(drivers) > 1
    switches = sum(1 for device in pci if getattr(device, "is_nvswitch", False))
    _yaml, wanted = nvidia_schematic(track, fabricmanager=switches > 0)
    found = tuple(ExtensionFinding(ext.name, ext.base, ext.track, ext.driver, ext.suffix, ext.track == track,
                                   not (differ and ext.base in DRIVER_BASES)) for ext in nvidia)
    return ExtensionsFinding(track, found, missing, mixed, wrong, differ, switches,
                             kmod.name if kmod else None, toolkit.name if toolkit else None,
                             fabric.name if fabric else None, schematic_id(installed), str(wanted))


# ---- pods ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodFinding:
    """A pod as `kubectl get pods` shows it: its status word (Running, CrashLoopBackOff, Init:<name>, …)."""

    name: str
    namespace: str
    node: str | None  # spec.nodeName
    word: str
    ready: bool
    restarts: int
    message: str = ""  # the waiting/terminated container's message

    @property
    def healthy(self) -> bool:
        return self.word == "Running" and self.ready


def pod_finding(pod: dict[str, Any]) -> PodFinding:
    """The one pod-state rule: an init container not yet done names the state (``Init:<name>``); else the
    first container waiting or terminated; else the phase. Ready: every container ready."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = bool(statuses) and all(s.get("ready") for s in statuses)
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    word, message = str(status.get("phase") or "Unknown"), ""
    for init in status.get("initContainerStatuses") or []:
        state = init.get("state") or {}
        if (state.get("terminated") or {}).get("exitCode") == 0:
            continue
        waiting = state.get("waiting") or {}
        word = f"Init:{init.get('name')}" + (f" ({waiting['reason']})" if waiting.get("reason") else "")
        return PodFinding(str(meta.get("name") or "?"), str(meta.get("namespace") or ""), spec.get("nodeName"),
                          word, False, restarts, str(waiting.get("message") or ""))
    for container in statuses:
        state = container.get("state") or {}
        if state.get("waiting"):
            word = str(state["waiting"].get("reason") or word)
            message = str(state["waiting"].get("message") or "")
            break
        if state.get("terminated"):
            word = str(state["terminated"].get("reason") or "Terminated")
            message = str(state["terminated"].get("message") or "")
            break
    return PodFinding(str(meta.get("name") or "?"), str(meta.get("namespace") or ""), spec.get("nodeName"), word,
                      ready, restarts, message)


def pods_on(pods: Iterable[dict[str, Any]], node_name: str | None) -> list[dict[str, Any]]:
    """The pods on this node (not any pod of the DaemonSet); with the node unknown, the first one."""
    listed = list(pods)
    if not node_name:
        return listed[:1]
    return [pod for pod in listed if (pod.get("spec") or {}).get("nodeName") == node_name]


# ---- taints and tolerations ---------------------------------------------------------------------


def tolerated(taint: dict[str, Any], tolerations: Iterable[dict[str, Any]]) -> bool:
    """Kubernetes' rule: a toleration matches a taint by key (empty key with Exists: every key), by value
    (operator Equal) and by effect (empty: every effect)."""
    for tol in tolerations:
        operator = tol.get("operator") or "Equal"
        if tol.get("key") and tol.get("key") != taint.get("key"):
            continue
        if not tol.get("key") and operator != "Exists":
            continue
        if operator == "Equal" and (tol.get("value") or "") != (taint.get("value") or ""):
            continue
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        return True
    return False


def taint_text(taint: dict[str, Any]) -> str:
    value = taint.get("value")
    return f"{taint.get('key')}{'=' + value if value else ''}:{taint.get('effect')}"


@dataclass(frozen=True)
class TaintFinding:
    """The node's scheduling taints (NoSchedule/NoExecute) against the DaemonSet's tolerations."""

    node: str
    taints: tuple[str, ...]  # key=value:effect
    untolerated: tuple[str, ...]  # those no toleration covers: the DaemonSet schedules no pod there
    tolerations: int


def taint_finding(node: dict[str, Any], tolerations: Iterable[dict[str, Any]]) -> TaintFinding:
    tols = list(tolerations)
    scheduling = [t for t in ((node.get("spec") or {}).get("taints") or [])
                  if t.get("effect") in ("NoSchedule", "NoExecute")]
    return TaintFinding(str((node.get("metadata") or {}).get("name") or "?"),
                        tuple(taint_text(t) for t in scheduling),
                        tuple(taint_text(t) for t in scheduling if not tolerated(t, tols)), len(tols))


# ---- the device plugin --------------------------------------------------------------------------


@dataclass(frozen=True)
class DevicePluginFinding:
    """The device plugin DaemonSet as judged for this node (stage `device-plugin`, device-plugin path)."""

    namespace: str
    name: str
    desired: int
    ready: int
    runtime_class: str | None  # the pod template's runtimeClassName
    runtime_class_ok: bool
    node: str | None  # the Kubernetes Node judged
    pods: tuple[PodFinding, ...]  # the pods on this node
    pods_total: int  # the DaemonSet's pods on every node
    taints: TaintFinding | None
    resource: str | None = None  # what this node's pod registered with the kubelet (nvidia.com/gpu[.shared], …)


def daemonset_finding(ds: dict[str, Any], pods: Iterable[dict[str, Any]], node: dict[str, Any] | None,
                      runtime_class: str, resource: str | None = None) -> DevicePluginFinding:
    meta, status = ds.get("metadata") or {}, ds.get("status") or {}
    template = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    node_name = (node.get("metadata") or {}).get("name") if node else None
    listed = list(pods)
    mine = tuple(pod_finding(pod) for pod in pods_on(listed, node_name))
    rc = template.get("runtimeClassName")
    return DevicePluginFinding(str(meta.get("namespace") or ""), str(meta.get("name") or ""),
                               int(status.get("desiredNumberScheduled") or 0), int(status.get("numberReady") or 0),
                               rc, rc == runtime_class, node_name, mine, len(listed),
                               taint_finding(node, template.get("tolerations") or []) if node else None, resource)


@dataclass(frozen=True)
class OperatorPodsFinding:
    """The GPU Operator's device-plugin and validator pods on this node (gpu-operator path)."""

    node: str
    pods: tuple[PodFinding, ...]


# ---- GPU counts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceCount:
    resource: str
    capacity: int
    allocatable: int

    @property
    def unhealthy(self) -> int:
        """Devices the plugin marked unhealthy: the kubelet counts them in capacity, not in allocatable."""
        return max(0, self.capacity - self.allocatable)


@dataclass(frozen=True)
class GpuCounts:
    """How many GPUs there are and how many the Node advertises (INTERFACE.md, stage `gpu-resources`)."""

    pci_gpus: int | None  # NVIDIA display/3D controllers on the PCI bus (NVSwitch bridges are not GPUs)
    products: tuple[str, ...]
    gpus: int | None  # GPUs expected: the profile's gpu_count, else pci_gpus
    basis: str  # where `gpus` comes from ("profile gpu_count", "NVIDIA PCI devices", or why unknown)
    replicas: int  # time-slicing/MPS replicas per GPU in this node's plugin config (1: not shared)
    strategy: str | None  # "time-slicing", "mps" or None
    mig_strategy: str  # "none", "single", "mixed"
    resource: str  # the resource advertised: nvidia.com/gpu, or nvidia.com/gpu.shared when renamed
    advertised: ResourceCount | None  # the Node's capacity/allocatable of `resource`; None: Node unknown
    mig: tuple[ResourceCount, ...] = ()  # nvidia.com/mig-<profile> resources
    failed_pci: tuple[str, ...] = ()  # GPUs the driver failed to initialise (dmesg)
    driver_loaded: bool | None = None  # None: not known
    xids: tuple[str, ...] = ()  # "Xid <n> on <uuid>" the plugin on this node logged
    xid_lines: tuple[str, ...] = ()  # the logged lines themselves, in the same order

    @property
    def expected(self) -> int | None:
        """What the Node should advertise of `resource`: GPUs × replicas."""
        return self.gpus * self.replicas if self.gpus is not None else None

    @property
    def initialised(self) -> int | None:
        """GPUs the driver brought up: the PCI GPUs less the failed ones; 0 without a driver."""
        if self.driver_loaded is False:
            return 0
        if self.driver_loaded is None or self.pci_gpus is None:
            return None
        return self.pci_gpus - len(self.failed_pci)

    def matches(self, count: int) -> bool:
        return self.expected is not None and count == self.expected


_XID_RE = re.compile(r"XidCriticalError: Xid=(?P<xid>\d+) on Device=(?P<device>[^;\s]+)[^\n]*")


def logged_xids(log: str) -> tuple[tuple[str, str], ...]:
    """The plugin's ``XidCriticalError: Xid=<n> on Device=<uuid>; marking device as unhealthy.`` lines as
    ("Xid <n> on <uuid>", the logged message)."""
    out: list[tuple[str, str]] = []
    for match in _XID_RE.finditer(log or ""):
        pair = (f"Xid {match.group('xid')} on {match.group('device')}", match.group(0).strip())
        if pair not in out:
            out.append(pair)
    return tuple(out)


def resource_count(node: dict[str, Any], resource: str) -> ResourceCount:
    status = node.get("status") or {}

    def count(field: str) -> int:
        try:
            return int(str((status.get(field) or {}).get(resource, "0")))
        except ValueError:
            return 0

    return ResourceCount(resource, count("capacity"), count("allocatable"))


def plugin_log_of_node(facts: dict[str, ProbeResult]) -> str | None:
    """The log of the device plugin pod on THIS node, None when none was read."""
    plugin, node = facts.get("device_plugin"), facts.get("kube_node")
    if plugin is None or not plugin.ok or plugin.value is None or node is None or not node.ok:
        return None
    name = node.value["metadata"]["name"]
    for pod in pods_on(plugin.value.pods, name):
        log = plugin.value.logs.get(pod["metadata"]["name"])
        if log:
            return str(log)
    return None


def gpu_counts(facts: dict[str, ProbeResult], profile: Profile) -> GpuCounts:
    """From the PCI devices, the driver and dmesg, this node's device plugin log (its running config: replicas,
    renamed and MIG resources; its Xids) and the Node's capacity/allocatable."""
    from checks.parsers.kube import plugin_sharing

    pci, node, driver, dmesg = (facts.get(n) for n in ("pci_devices", "kube_node", "driver_version", "dmesg"))
    devices = [d for d in pci.value if d.is_nvidia_gpu] if pci is not None and pci.ok else None
    products = tuple(sorted({d.product for d in devices or []}))
    if profile.gpu_count is not None:
        gpus, basis = profile.gpu_count, "profile gpu_count"
    elif devices is not None:
        gpus, basis = len(devices), "NVIDIA PCI devices"
    else:
        gpus, basis = None, (pci.error if pci is not None and pci.error else "pci devices unknown")
    log = plugin_log_of_node(facts)
    sharing = plugin_sharing(log) if log else None
    resource = sharing.advertised_as(GPU_RESOURCE) if sharing is not None else GPU_RESOURCE
    replicas = sharing.replicas_of(GPU_RESOURCE) if sharing is not None else 1
    known_node = node is not None and node.ok and isinstance(node.value, dict)
    advertised = resource_count(node.value, resource) if known_node else None
    mig: tuple[ResourceCount, ...] = ()
    if known_node:
        capacity = (node.value.get("status") or {}).get("capacity") or {}
        mig = tuple(resource_count(node.value, name) for name in sorted(capacity)
                    if isinstance(name, str) and name.startswith(MIG_RESOURCE_PREFIX))
    failed: tuple[str, ...] = ()
    if dmesg is not None and dmesg.ok and devices is not None:
        ids = {d.id for d in devices}
        failed = tuple(sorted(set(dmesg.value.failed_pci_ids) & ids))
    xids = logged_xids(log or "")
    loaded = None if driver is None or (not driver.ok and not driver.missing) else driver.ok
    return GpuCounts(len(devices) if devices is not None else None, products, gpus, basis,
                     replicas,
                     sharing.strategy if sharing is not None else None,
                     sharing.mig_strategy if sharing is not None else "none", resource, advertised, mig, failed,
                     loaded, tuple(short for short, _line in xids), tuple(line for _short, line in xids))


# ---- reading them back --------------------------------------------------------------------------


def finding(report: Report | None, kind: type[F]) -> F | None:
    """The first finding of this type that a stage of the report carries (None: no judge produced one)."""
    if report is None:
        return None
    for stage in report.stages:
        for found in stage.findings:
            if isinstance(found, kind):
                return found
    return None


def smi_summary(output: list[str], reason: str) -> str:
    """One line from a test pod's output: "2× NVIDIA H100 NVL, driver 570.172.08, CUDA 12.8", else `reason`."""
    from checks.parsers import is_error, parse_nvidia_smi

    smi = parse_nvidia_smi("\n".join(output)) if output else None
    if smi is None or is_error(smi) or not smi.gpus:
        return reason
    names = sorted({gpu.name for gpu in smi.gpus})
    cuda = f", CUDA {smi.cuda_version}" if smi.cuda_version else ""
    return f"{len(smi.gpus)}× {' / '.join(names)}, driver {smi.driver_version}{cuda}"
