"""What the simulated node *is* right now: stored state plus the clock -> :class:`NodeView`.

This is the single place that turns ``state.json`` into facts; ``talosctl``, ``helm`` and the
Kubernetes API server all use it (see ``lab/CONTRACT.md``, "Derived view").

Reboot timeline (``talos.reboot = {"reason", "started", "image"?, "pending"?}``, R = ``knobs.reboot_s``):

========================  ==================  ==========================================================
time since ``started``    phase               what answers
========================  ==================  ==========================================================
[0, 1 s) (upgrade only)   ``upgrading``       Talos API up, machine stage ``upgrading``, Node NotReady
next R/2                  ``down``            nothing: talosctl fails with a connection error
next R/2                  ``booting``         API up, stage ``booting``, not ready
after that                ``running``         reboot over; the Node turns Ready ``kube_grace`` later
========================  ==================  ==========================================================

``pending`` holds what the reboot changes (``schematic``/``extensions``/``version`` for an upgrade,
``config`` for a machine-config change that needs a reboot). It takes effect the moment the node
goes ``down``: :func:`effective_talos` applies it virtually for the view, :func:`settle` commits it
to the stored state (called by ``lab.state.mutate``) and drops the record once the reboot is over.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lab import releases
from lab.schematics import KMOD, TOOLKIT

UPGRADE_INSTALL_S = 1.0
NVIDIA_MODULES = ("nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset")
MODULE_DEPENDENCIES = {
    "nvidia": [],
    "nvidia_modeset": ["nvidia"],
    "nvidia_uvm": ["nvidia"],
    "nvidia_drm": ["nvidia_modeset", "nvidia"],
}
# Sizes and load addresses from samples/talos/read-proc-modules-nvidia.txt, in /proc/modules order.
NVIDIA_MODULE_INFO = {
    "nvidia_uvm": (1146880, "0xffffffffc2733000"),
    "nvidia_drm": (69632, "0xffffffffc2721000"),
    "nvidia_modeset": (1142784, "0xffffffffc25ea000"),
    "nvidia": (39047168, "0xffffffffc00ac000"),
}
# Modules any node of this hardware has loaded (the format of samples/talos/read-proc-modules-no-nvidia.txt).
BASE_MODULES = [
    ("iTCO_wdt", 12288, "0xffffffffc0636000"),
    ("iTCO_vendor_support", 12288, "0xffffffffc04e5000"),
    ("ahci", 45056, "0xffffffffc060a000"),
    ("watchdog", 40960, "0xffffffffc0606000"),
    ("i2c_i801", 36864, "0xffffffffc05f5000"),
    ("lpc_ich", 24576, "0xffffffffc05e5000"),
    ("igb", 294912, "0xffffffffc04f6000"),
    ("libahci", 49152, "0xffffffffc04d5000"),
    ("i2c_smbus", 12288, "0xffffffffc04d1000"),
    ("mfd_core", 12288, "0xffffffffc04cf000"),
    ("i2c_algo_bit", 12288, "0xffffffffc04c7000"),
]
NO_CGROUPS_PATH = "/etc/nvidia-container-runtime/config.toml"
BPF_SYSCTL = "net.core.bpf_jit_harden"
TALOS_DEFAULT_BPF_JIT_HARDEN = "2"
NVIDIA_VENDOR_ID = "0x10de"

# Build banners of the driver versions the lab installs. 570.172.08's is from the dmesg sample; the
# others follow the same builder string with lab-chosen dates.
DRIVER_BUILD_DATES = {
    "570.172.08": ("Tue Jul  8 18:08:21 UTC 2025", "Tue Jul  8 17:51:48 UTC 2025"),
    "570.158.01": ("Tue Jun  3 17:39:44 UTC 2025", "Tue Jun  3 17:23:10 UTC 2025"),
    "535.247.01": ("Thu Apr 24 17:22:58 UTC 2025", "Thu Apr 24 17:06:31 UTC 2025"),
}
DEFAULT_BUILD_DATES = ("Mon Jun  2 12:00:00 UTC 2025", "Mon Jun  2 11:45:00 UTC 2025")
DRIVER_BUILDER = "dvs-builder@U22-I3-AF01-21-3"
GCC_VERSION_LINE = "GCC version:  gcc version 14.2.0 (GCC) "


@dataclass(frozen=True)
class NodeView:
    phase: str
    api_up: bool
    machine_stage: str
    machine_ready: bool
    kube_ready: bool
    talos_version: str
    extensions: list[dict]
    kmod_ext_driver: str | None
    toolkit_ext_driver: str | None
    modules_loaded: list[str]
    driver_version: str | None
    gpus_total: int
    gpus_initialised: int
    nvidia_runtime_handler: bool
    bpf_jit_harden: str
    no_cgroups: bool
    dmesg: list[str]
    container_runtime_ok: bool
    boot_error: str | None = None  # writeUserFiles' error when this boot stops there (the node loops)
    boot_stuck: bool = False       # the boot stopped in writeUserFiles: apid answers, nothing else started
    cdi: bool = False              # Talos >= 1.13: GPUs through CDI (ext-nvidia-cdi-gen, no nvidia-container-cli)
    cdi_spec: bool = False         # ext-nvidia-cdi-gen has Finished and /run/cdi/nvidia.yaml exists


@dataclass(frozen=True)
class RebootTimeline:
    started: float
    down_at: float
    boot_at: float
    running_at: float
    kube_ready_at: float

    def phase(self, now: float) -> str:
        if now < self.down_at:
            return "upgrading"
        if now < self.boot_at:
            return "down"
        if now < self.running_at:
            return "booting"
        return "running"


@dataclass(frozen=True)
class KernelLogRecord:
    """One kernel log line: seconds since boot, syslog facility and level, message."""

    offset_s: float
    facility: str
    level: str
    message: str


def boot_fail_wait_seconds(state: dict[str, Any]) -> float:
    """How long a boot stopped in writeUserFiles waits before it reboots (5 or 35 min on a real node;
    the message always says 35). Knob ``boot_fail_wait_s``, short by default."""
    return float((state.get("knobs") or {}).get("boot_fail_wait_s", 20.0))


def reboot_seconds(state: dict[str, Any]) -> float:
    return float((state.get("knobs") or {}).get("reboot_s", 6.0))


def kube_grace_seconds(reboot_s: float) -> float:
    """How long after the node is back the kubelet takes to report Ready again."""
    return min(1.0, 0.2 * reboot_s)


def timeline(reboot: dict[str, Any], reboot_s: float) -> RebootTimeline:
    started = float(reboot["started"])
    down_at = started + (UPGRADE_INSTALL_S if reboot.get("reason") == "upgrade" else 0.0)
    boot_at = down_at + reboot_s / 2
    running_at = down_at + reboot_s
    return RebootTimeline(started, down_at, boot_at, running_at, running_at + kube_grace_seconds(reboot_s))


def _apply_pending(talos: dict[str, Any], reboot: dict[str, Any], boot_at: float) -> None:
    pending = reboot.get("pending") or {}
    for key in ("schematic", "extensions", "version"):
        if key in pending:
            talos[key] = copy.deepcopy(pending[key])
    staged = talos.get("staged_config")
    if "config" in pending:
        talos["config"] = copy.deepcopy(pending["config"])
    elif staged:
        talos["config"] = copy.deepcopy(staged)
    talos["staged_config"] = None
    talos["boot_time"] = boot_at


def effective_talos(state: dict[str, Any], now: float) -> dict[str, Any]:
    """The ``talos`` section as the node runs it at ``now`` (pending reboot changes applied once down)."""
    talos = copy.deepcopy(state["talos"])
    reboot = talos.get("reboot")
    if reboot and not reboot.get("applied"):
        line = timeline(reboot, reboot_seconds(state))
        if now >= line.down_at:
            _apply_pending(talos, reboot, line.boot_at)
            talos["reboot"] = dict(reboot, applied=True)
    return talos


def settle(state: dict[str, Any], now: float) -> bool:
    """Commit what the clock has made true; returns whether the state changed."""
    talos = state["talos"]
    reboot = talos.get("reboot")
    if not reboot:
        return False
    line = timeline(reboot, reboot_seconds(state))
    changed = False
    if not reboot.get("applied") and now >= line.down_at:
        _apply_pending(talos, reboot, line.boot_at)
        reboot["applied"] = True
        reboot.pop("pending", None)
        _sync_kube_node_info(state)
        changed = True
    if now >= line.kube_ready_at:
        talos["reboot"] = None
        changed = True
    return changed


def _sync_kube_node_info(state: dict[str, Any]) -> None:
    """After an upgrade to another Talos version, the kubelet reports the new OS image."""
    talos = state["talos"]
    for node in (state.get("kube") or {}).get("nodes", []):
        if node.get("metadata", {}).get("name") == talos.get("hostname"):
            info = node.setdefault("status", {}).setdefault("nodeInfo", {})
            info["osImage"] = f"Talos ({talos.get('version')})"


def _driver_of(extensions: list[dict[str, Any]], prefix: str) -> str | None:
    for extension in extensions:
        if str(extension.get("name", "")).startswith(prefix + "-"):
            return str(extension.get("version", "")).split("-", 1)[0] or None
    return None


def extension_listing(talos: dict[str, Any]) -> list[dict[str, Any]]:
    """The ExtensionStatus entries as ``talosctl get extensions`` lists them (sorted by id)."""
    listing: list[dict[str, Any]] = []
    installed = list(talos.get("extensions") or [])
    for index, extension in enumerate(installed):
        listing.append(
            {
                "id": str(index),
                "image": f"{index}.sqsh",
                "name": extension["name"],
                "version": extension["version"],
                "author": extension.get("author", ""),
                "description": extension.get("description", ""),
                "compatibility": {"talos": {"version": ">= v1.2.0"}},
            }
        )
    if talos.get("schematic"):
        index = len(installed)
        listing.append(
            {
                "id": str(index),
                "image": f"{index}.sqsh",
                "name": "schematic",
                "version": talos["schematic"],
                "author": "Image Factory",
                "description": "Virtual extension which specifies the schematic of the image built with Image Factory.",
                "compatibility": {"talos": {"version": ">= 1.0.0"}},
            }
        )
    if any(str(extension["name"]).startswith(KMOD) for extension in installed):
        listing.append(
            {
                "id": "modules.dep",
                "image": "modules.dep.sqsh",
                "name": "modules.dep",
                "version": releases.get(talos.get("version")).kernel,
                "author": "Talos Machinery",
                "description": "Combined modules.dep for all extensions",
            }
        )
    return sorted(listing, key=lambda entry: entry["id"])


def nvidia_pci_devices(talos: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        device
        for device in talos.get("pci_devices") or []
        if str(device.get("vendor_id", "")).lower() == NVIDIA_VENDOR_ID and device.get("class_id") == "0x03"
    ]


def loaded_nvidia_modules(talos: dict[str, Any]) -> list[str]:
    """NVIDIA modules loaded: requested in the config (plus their dependencies) and shipped by the kmod extension."""
    if _driver_of(talos.get("extensions") or [], KMOD) is None:
        return []
    requested = set((talos.get("config") or {}).get("kernel_modules") or [])
    loaded: set[str] = set()
    for module in requested:
        if module in MODULE_DEPENDENCIES:
            loaded.add(module)
            loaded.update(MODULE_DEPENDENCIES[module])
    return [module for module in NVIDIA_MODULE_INFO if module in loaded]


def no_cgroups_configured(talos: dict[str, Any]) -> bool:
    content = config_file(talos, NO_CGROUPS_PATH)
    if content is None:
        return False
    try:
        parsed = tomllib.loads(content)
    except tomllib.TOMLDecodeError:
        return False
    section = parsed.get("nvidia-container-cli")
    return isinstance(section, dict) and section.get("no-cgroups") is True


def config_file(talos: dict[str, Any], path: str) -> str | None:
    """Content of a ``machine.files`` entry as written on the node (the last entry for a path wins)."""
    content: str | None = None
    for entry in (talos.get("config") or {}).get("files") or []:
        if entry.get("path") != path:
            continue
        if entry.get("op") == "append" and content is not None:
            content += str(entry.get("content", ""))
        else:
            content = str(entry.get("content", ""))
    return content


# --- machine.files at boot (Talos's writeUserFiles, FACTS.md "The runbook's no-cgroups patch") -------------

# Files of the lab node's root filesystem that `overwrite`/`append` may target (Talos's squashfs has more).
BASE_FILES = ("/etc/hosts", "/etc/resolv.conf", "/etc/os-release", "/etc/machine-id")
TOOLKIT_CRI_PART = "/etc/cri/conf.d/10-nvidia-container-runtime.part"
CRI_CONFIG = "/etc/cri/conf.d/cri.toml"
TOOLKIT_RUNTIME_CONFIG = "/usr/local/etc/nvidia-container-runtime/config.toml"
TOOLKIT_SERVICE = "ext-nvidia-persistenced"
CDI_SERVICE = "ext-nvidia-cdi-gen"      # Talos >= 1.13: nvidia-ctk cdi generate --output /run/cdi/nvidia.yaml
CDI_SPEC = "/run/cdi/nvidia.yaml"
CRI_CDI_CONFIG = (
    '\n[plugins."io.containerd.cri.v1.runtime"]\n'
    '  enable_cdi = true\n'
    '  cdi_spec_dirs = ["/run/cdi"]\n'
)
MANIFESTS_DIRECTORY = "/etc/kubernetes/manifests"
CRI_CUSTOMIZATION_PART = "/etc/cri/conf.d/20-customization.part"

# What the toolkit extension ships (siderolabs/extensions nvidia-container-toolkit, FACTS.md).
TOOLKIT_CRI_PART_CONTENT = (
    '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nvidia]\n'
    '  runtime_type = "io.containerd.runc.v2"\n'
    '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nvidia.options]\n'
    '  BinaryName = "/usr/local/bin/nvidia-container-runtime"\n'
)
TOOLKIT_RUNTIME_CONFIG_CONTENT = (
    "#accept-nvidia-visible-devices-as-volume-mounts = false\n"
    "#accept-nvidia-visible-devices-envvar-when-unprivileged = true\n"
    "disable-require = false\n"
    "supported-driver-capabilities = \"compat32,compute,display,graphics,ngx,utility,video\"\n"
    "#swarm-resource = \"DOCKER_RESOURCE_GPU\"\n"
    "\n"
    "[nvidia-container-cli]\n"
    "#debug = \"/var/log/nvidia-container-toolkit.log\"\n"
    "environment = []\n"
    "#ldcache = \"/etc/ld.so.cache\"\n"
    "ldcache = \"/usr/local/glibc/etc/ld.so.cache\"\n"
    "ldconfig = \"@/usr/local/glibc/sbin/ldconfig\"\n"
    "load-kmods = false\n"
    "#no-cgroups = false\n"
    "#path = \"/usr/bin/nvidia-container-cli\"\n"
    "#root = \"/run/nvidia/driver\"\n"
    "#user = \"root:video\"\n"
    "\n"
    "[nvidia-container-runtime]\n"
    "#debug = \"/var/log/nvidia-container-runtime.log\"\n"
    "log-level = \"info\"\n"
    "mode = \"auto\"\n"
    "runtimes = [\"runc\"]\n"
)
BASE_CRI_CONFIG = (
    "version = 3\n\n"
    '[plugins."io.containerd.cri.v1.images"]\n'
    '  discard_unpacked_layers = true\n\n'
    '[plugins."io.containerd.cri.v1.runtime"]\n'
    '  [plugins."io.containerd.cri.v1.runtime".containerd]\n'
    '    default_runtime_name = "runc"\n'
    '    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]\n'
    '      runtime_type = "io.containerd.runc.v2"\n'
)


def _outside_var(path: str) -> bool:
    return path.lstrip("/").split("/", 1)[0] != "var"


def rootfs_files(talos: dict[str, Any]) -> dict[str, str]:
    """Files the image itself has (before machine.files): the base OS plus what the extensions install."""
    files = {path: "" for path in BASE_FILES}
    toolkit = _driver_of(talos.get("extensions") or [], TOOLKIT) is not None
    cri = BASE_CRI_CONFIG
    release = releases.get(talos.get("version"))
    if release.cdi:
        cri += CRI_CDI_CONFIG
    if toolkit:
        files[TOOLKIT_CRI_PART] = TOOLKIT_CRI_PART_CONTENT
        files[TOOLKIT_RUNTIME_CONFIG] = TOOLKIT_RUNTIME_CONFIG_CONTENT
        cri += "\n" + TOOLKIT_CRI_PART_CONTENT
    files[CRI_CONFIG] = cri
    if cdi_spec_written(talos):
        files[CDI_SPEC] = cdi_spec_text(talos)
    return files


def cdi_spec_written(talos: dict[str, Any]) -> bool:
    """ext-nvidia-cdi-gen finished: a CDI release, the toolkit extension, and the driver loaded (nvidia-ctk
    asks NVML for the devices)."""
    return (releases.get(talos.get("version")).cdi and _driver_of(talos.get("extensions") or [], TOOLKIT) is not None
            and "nvidia" in loaded_nvidia_modules(talos))


def cdi_spec_text(talos: dict[str, Any]) -> str:
    """``/run/cdi/nvidia.yaml`` as ``nvidia-ctk cdi generate`` writes it (one device per GPU, plus ``all``)."""
    broken = {str(device).lower() for device in talos.get("broken_gpus") or []}
    gpus = [device for device in nvidia_pci_devices(talos) if str(device["id"]).lower() not in broken]
    driver = _driver_of(talos.get("extensions") or [], TOOLKIT) or ""
    lines = ["---", "cdiVersion: 0.5.0", "containerEdits:", "  env:", "  - NVIDIA_VISIBLE_DEVICES=void",
             "  hooks:", "  - args:", "    - nvidia-cdi-hook", "    - update-ldcache", "    - --folder",
             "    - /usr/local/glibc/usr/lib", "    hookName: createContainer",
             "    path: /usr/local/bin/nvidia-cdi-hook", "  mounts:", "  - containerPath: /usr/local/glibc/usr/lib/"
             f"libnvidia-ml.so.{driver}", f"    hostPath: /usr/local/glibc/usr/lib/libnvidia-ml.so.{driver}",
             "    options:", "    - ro", "    - nosuid", "    - nodev", "    - rbind", "    - rprivate",
             "devices:"]
    for index, _ in enumerate(gpus):
        lines += [f"- name: \"{index}\"", "  containerEdits:", "    deviceNodes:", f"    - path: /dev/nvidia{index}"]
    lines += ["- name: all", "  containerEdits:", "    deviceNodes:"]
    lines += [f"    - path: /dev/nvidia{index}" for index, _ in enumerate(gpus)]
    lines += ["    - path: /dev/nvidiactl", "    - path: /dev/nvidia-uvm", "kind: nvidia.com/gpu"]
    return "\n".join(lines) + "\n"


def write_user_files_error(talos: dict[str, Any]) -> str | None:
    """What writeUserFiles returns for this config at boot, None when every entry is written.

    Talos's order: an unknown op, or overwrite/append of a file that does not exist, is collected and the
    task fails at its end; a create outside /var returns at once."""
    existing = rootfs_files(talos)
    collected: list[str] = []
    for entry in (talos.get("config") or {}).get("files") or []:
        op, path = str(entry.get("op", "")), str(entry.get("path", ""))
        if op not in ("create", "overwrite", "append"):
            collected.append(f'unknown operation for file "{path}": "{op}"')
            continue
        if op in ("overwrite", "append") and path not in existing:
            collected.append(f'file must exist: "{path}"')
            continue
        if path.rsplit("/", 1)[0] == MANIFESTS_DIRECTORY or path == CRI_CUSTOMIZATION_PART:
            continue
        if _outside_var(path) and op == "create":
            return f'create operation not allowed outside of /var: "{path}"'
    if not collected:
        return None
    if len(collected) == 1:
        return f"1 error occurred:\n\t* {collected[0]}\n\n"
    return f"{len(collected)} errors occurred:\n" + "".join(f"\t* {line}\n" for line in collected) + "\n"


def boot_failure_records(error: str, offset: float) -> list[KernelLogRecord]:
    """The machined lines of a boot stopped in writeUserFiles (talosctl dmesg shows them, facility user)."""
    flat = " ".join(error.split())
    return [
        KernelLogRecord(offset, "user", "warning", "[talos] phase userSetup (14/23): 1 tasks(s)"),
        KernelLogRecord(offset + 0.001, "user", "warning", "[talos] task writeUserFiles (1/1): starting"),
        KernelLogRecord(offset + 0.004, "user", "warning",
                        "[talos] writeUserFiles failed, rebooting in 35 minutes. You can use talosctl apply-config "
                        f"or talosctl edit mc to fix the issues, error: {flat}"),
        KernelLogRecord(offset + 0.005, "user", "warning", f"[talos] task writeUserFiles (1/1): failed: {flat}"),
        KernelLogRecord(offset + 0.006, "user", "warning", "[talos] phase userSetup (14/23): failed"),
        KernelLogRecord(offset + 0.007, "user", "warning", "[talos] boot sequence: failed"),
    ]


BOOT_FAIL_OFFSET_S = 9.5  # seconds after kernel start at which userSetup runs in the lab


def boot_loop(state: dict[str, Any], talos: dict[str, Any], now: float) -> tuple[bool, float]:
    """For a config whose boot fails: (down now?, start of the current boot). The node boots, stops in
    writeUserFiles, waits, reboots (down R/2) and boots into the same failure, from ``boot_time`` on."""
    wait = boot_fail_wait_seconds(state)
    cycle = wait + reboot_seconds(state) / 2
    start = float(talos.get("boot_time") or now)
    if now <= start or cycle <= 0:
        return False, start
    loops, into = divmod(now - start, cycle)
    boot = start + loops * cycle
    return into >= wait, boot


def build_banner(driver: str) -> tuple[str, str]:
    return DRIVER_BUILD_DATES.get(driver, DEFAULT_BUILD_DATES)


def nvidia_version_file(driver: str) -> str:
    """``/proc/driver/nvidia/version`` of the open kernel modules."""
    date = build_banner(driver)[0]
    return (
        f"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {driver}  Release Build  ({DRIVER_BUILDER})  {date}\n"
        f"{GCC_VERSION_LINE}\n"
    )


def kernel_log(talos: dict[str, Any], modules: list[str], toolkit_driver: str | None) -> list[KernelLogRecord]:
    """The kernel ring buffer (the lines the lab models), oldest first."""
    records = [
        KernelLogRecord(0.0, "kern", "notice", f"Linux version {releases.get(talos.get('version')).kernel} (@buildkitsandbox) #1 SMP"),
        KernelLogRecord(
            0.0,
            "kern",
            "info",
            "Command line: talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 "
            "nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng ima_appraise=fix ima_hash=sha512",
        ),
        KernelLogRecord(2.104518, "kern", "info", "ahci 0000:00:17.0: AHCI vers 0001.0301, 32 command slots, 6 Gbps, SATA mode"),
        KernelLogRecord(2.381907, "kern", "info", "igb 0000:05:00.0: Intel(R) Gigabit Ethernet Network Connection"),
    ]
    driver = _driver_of(talos.get("extensions") or [], KMOD)
    if driver is None or "nvidia" not in modules:
        return records
    kernel_date, modeset_date = build_banner(driver)
    gpus = nvidia_pci_devices(talos)
    broken = {str(device).lower() for device in talos.get("broken_gpus") or []}
    records.append(KernelLogRecord(14.101233, "kern", "warning", "nvidia: loading out-of-tree module taints kernel."))
    records.append(
        KernelLogRecord(14.298711, "kern", "info", "nvidia-nvlink: Nvlink Core is being initialized, major device number 236")
    )
    for minor, device in enumerate(gpus):
        records.append(
            KernelLogRecord(14.3 + 0.01 * minor, "kern", "info", f"nvidia {device['id']}: enabling device (0000 -> 0002)")
        )
    records.append(
        KernelLogRecord(
            14.395582,
            "kern",
            "info",
            f"NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  {driver}  Release Build  ({DRIVER_BUILDER})  {kernel_date}",
        )
    )
    if "nvidia_modeset" in modules:
        records.append(
            KernelLogRecord(
                14.512076,
                "kern",
                "info",
                "nvidia-modeset: Loading NVIDIA UNIX Open Kernel Mode Setting Driver for x86_64  "
                f"{driver}  Release Build  ({DRIVER_BUILDER})  {modeset_date}",
            )
        )
    if "nvidia_uvm" in modules:
        records.append(KernelLogRecord(14.733415, "kern", "info", "nvidia-uvm: Loaded the UVM driver, major device number 234."))
    failures = {str(device).lower(): str(kind) for device, kind in (talos.get("gpu_failures") or {}).items()}
    xids = {str(device).lower(): int(xid) for device, xid in (talos.get("xid_gpus") or {}).items()}
    for minor, device in enumerate(gpus):
        pci = str(device["id"]).lower()
        base = 18.3 + 4.0 * minor
        if pci in broken and failures.get(pci) == OPEN_UNSUPPORTED:
            records.extend(open_module_refusal_records(14.3 + 0.01 * minor + 0.002, pci,
                                                       str(device.get("product_id", ""))))
        elif pci in broken:
            records.extend(
                [
                    KernelLogRecord(
                        base,
                        "kern",
                        "err",
                        "NVRM: nvAssertOkFailedNoLog: Assertion failed: Call timed out [NV_ERR_TIMEOUT] (0x00000065) "
                        "returned from kgspWaitForRmInitDone(pGpu, pKernelGsp) @ kernel_gsp_gh100.c:928",
                    ),
                    KernelLogRecord(base + 0.016230, "kern", "err", "NVRM: RmInitAdapter: Cannot initialize GSP firmware RM"),
                    KernelLogRecord(
                        base + 0.030489, "kern", "err", "NVRM: iovaspaceDestruct_IMPL: 1 left-over mappings in IOVAS 0x100"
                    ),
                    KernelLogRecord(base + 0.037652, "kern", "err", f"NVRM: GPU {pci}: RmInitAdapter failed! (0x62:0x65:1859)"),
                    KernelLogRecord(
                        base + 0.045650, "kern", "err", f"NVRM: GPU {pci}: rm_init_adapter failed, device minor number {minor}"
                    ),
                ]
            )
        elif "nvidia_drm" in modules:
            bus = pci.split(":")[1]
            records.append(
                KernelLogRecord(base, "kern", "info", f"[drm] [nvidia-drm] [GPU ID 0x0000{bus}00] Loading driver")
            )
            records.append(
                KernelLogRecord(
                    base + 0.4, "kern", "info", f"[drm] Initialized nvidia-drm 0.0.0 for {pci} on minor {minor + 1}"
                )
            )
    refused = sum(1 for device in gpus if failures.get(str(device["id"]).lower()) == OPEN_UNSUPPORTED
                  and str(device["id"]).lower() in broken)
    if refused:
        records.append(KernelLogRecord(14.39, "kern", "err",
                                       f"NVRM: The NVIDIA probe routine failed for {refused} device(s)."))
    for pci, xid in sorted(xids.items()):
        records.append(KernelLogRecord(86400.0 * 2 + 3721.518, "kern", "err", xid_record(pci, xid)))
    if toolkit_driver and toolkit_driver != driver:
        mismatch = [
            f"NVRM: API mismatch: the client has the version {toolkit_driver}, but",
            f"NVRM: this kernel module has the version {driver}.  Please",
            "NVRM: make sure that this kernel module and all NVIDIA driver",
            "NVRM: components have the same version.",
        ]
        records.extend(KernelLogRecord(41.207733, "kern", "err", line) for line in mismatch)
    return sorted(records, key=lambda record: record.offset_s)


OPEN_UNSUPPORTED = "open-module-unsupported"
"""``talos.gpu_failures[<pci>]``: the open kernel module refuses this (pre-Turing, no GSP) GPU."""


def open_module_refusal_records(at: float, pci: str, product_id: str) -> list[KernelLogRecord]:
    """The open nvidia.ko refusing a GPU without GSP, as the kernel logs it (the lines of
    NVIDIA/open-gpu-kernel-modules#322 and #696, negativo17/nvidia-driver#158)."""
    pci_id = f"10de:{product_id.lower().removeprefix('0x') or '1db5'}"
    lines = [
        f"NVRM: The NVIDIA GPU {pci} (PCI ID: {pci_id})",
        "NVRM: installed in this system is not supported by open",
        "NVRM: nvidia.ko because it does not include the required GPU",
        "NVRM: System Processor (GSP).",
        "NVRM: Please see the 'Open Linux Kernel Modules' and 'GSP",
        "NVRM: Firmware' sections in the driver README, available on",
        "NVRM: the Linux graphics driver download page at",
        "NVRM: www.nvidia.com.",
    ]
    records = [KernelLogRecord(at + 0.000005 * index, "kern", "err" if index < 4 else "info", line)
               for index, line in enumerate(lines)]
    records.append(KernelLogRecord(at + 0.0001, "kern", "warning",
                                   f"nvidia {pci}: probe with driver nvidia failed with error -1"))
    return records


def xid_record(pci: str, xid: int) -> str:
    """A kernel Xid line (``NVRM: Xid (PCI:0000:07:00): 48, pid='<unknown>', name=<unknown>, …``, the format
    of NVIDIA/gpu-operator#1146); 48 is the double bit ECC error of that report."""
    bus = pci.rsplit(".", 1)[0]
    text = {48: "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at physAddr "
                "0x7fffa8860 partition 7, subpartition 1."}.get(xid, "Graphics Exception")
    return f"NVRM: Xid (PCI:{bus}): {xid}, pid='<unknown>', name=<unknown>, {text}"


def raw_dmesg_line(record: KernelLogRecord) -> str:
    """``dmesg`` format: ``[   14.395582] NVRM: ...``."""
    return f"[{record.offset_s:12.6f}] {record.message}"


def rfc3339_nano(epoch: float) -> str:
    """Go's time.RFC3339Nano in UTC (trailing zeros of the fraction dropped)."""
    whole = int(epoch)
    nanos = int(round((epoch - whole) * 1e9))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    stamp = datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_view(state: dict[str, Any], now: float) -> NodeView:
    """The node as it is at ``now``."""
    talos = effective_talos(state, now)
    reboot = talos.get("reboot")
    phase = "running"
    in_reboot_window = False
    if reboot:
        line = timeline(reboot, reboot_seconds(state))
        phase = line.phase(now)
        in_reboot_window = now < line.kube_ready_at
    boot_error = write_user_files_error(talos) if phase in ("booting", "running") else None
    boot_stuck = False
    if boot_error is not None:
        down, boot_start = boot_loop(state, talos, now)
        if down:
            phase = "down"
        else:
            phase, boot_stuck = "booting", True
            talos["boot_time"] = boot_start
        in_reboot_window = True
    faults = state.get("faults") or {}
    kubelet_fault = bool(faults.get("kubelet_not_ready"))
    kube_ready = not in_reboot_window and not kubelet_fault and phase == "running"
    machine_stage = {"upgrading": "upgrading", "down": "rebooting", "booting": "booting", "running": "running"}[phase]
    extensions = talos.get("extensions") or []
    kmod_driver = _driver_of(extensions, KMOD)
    toolkit_driver = _driver_of(extensions, TOOLKIT)
    nvidia_modules = loaded_nvidia_modules(talos) if phase != "down" else []
    driver_version = kmod_driver if "nvidia" in nvidia_modules else None
    gpus = nvidia_pci_devices(talos)
    broken = {str(device).lower() for device in talos.get("broken_gpus") or []}
    initialised = (
        sum(1 for device in gpus if str(device["id"]).lower() not in broken) if driver_version is not None else 0
    )
    sysctls = (talos.get("config") or {}).get("sysctls") or {}
    bpf = str(sysctls.get(BPF_SYSCTL, TALOS_DEFAULT_BPF_JIT_HARDEN))
    no_cgroups = no_cgroups_configured(talos)
    handler = toolkit_driver is not None
    cdi = releases.get(talos.get("version")).cdi
    log = kernel_log(talos, nvidia_modules, toolkit_driver) if phase != "down" else []
    if boot_stuck and boot_error is not None:
        log = sorted(log + boot_failure_records(boot_error, BOOT_FAIL_OFFSET_S), key=lambda record: record.offset_s)
    return NodeView(
        phase=phase,
        api_up=phase != "down",
        machine_stage=machine_stage,
        machine_ready=phase == "running" and kube_ready,
        kube_ready=kube_ready,
        talos_version=str(talos.get("version")),
        extensions=extension_listing(talos),
        kmod_ext_driver=kmod_driver,
        toolkit_ext_driver=toolkit_driver,
        modules_loaded=nvidia_modules + [name for name, _, _ in BASE_MODULES],
        driver_version=driver_version,
        gpus_total=len(gpus),
        gpus_initialised=initialised,
        nvidia_runtime_handler=handler,
        bpf_jit_harden=bpf,
        no_cgroups=no_cgroups,
        dmesg=[raw_dmesg_line(record) for record in log],
        # the runtime needs no no-cgroups file: the extension's own config is used (FACTS.md)
        # on 1.13+ (CDI) there is no nvidia-container-cli and no bpf_jit_harden step
        container_runtime_ok=handler and (cdi or bpf == "1"),
        boot_error=boot_error,
        boot_stuck=boot_stuck,
        cdi=cdi,
        cdi_spec=cdi and phase != "down" and not boot_stuck and cdi_spec_written(talos),
    )


def kube_api_down(state: dict[str, Any], now: float) -> bool:
    """The single node's Kubernetes API: down while its boot is stuck in writeUserFiles (or looping
    through the reboot after it): the kubelet never starts, so neither do the API server's static pods.
    A client sees the connection closed at once, as with nothing listening."""
    view = node_view(state, now)
    return view.boot_error is not None and view.phase in ("booting", "down")


def kernel_records(state: dict[str, Any], now: float) -> tuple[float, list[KernelLogRecord]]:
    """(the current boot's start, its kernel log) as ``talosctl dmesg`` shows them."""
    view = node_view(state, now)
    talos = effective_talos(state, now)
    modules = [module for module in view.modules_loaded if module in NVIDIA_MODULE_INFO]
    records = kernel_log(talos, modules, view.toolkit_ext_driver)
    boot = float(talos["boot_time"])
    if view.boot_stuck and view.boot_error is not None:
        boot = boot_loop(state, talos, now)[1]
        records = sorted(records + boot_failure_records(view.boot_error, BOOT_FAIL_OFFSET_S),
                         key=lambda record: record.offset_s)
    return boot, records


def proc_modules(view: NodeView) -> str:
    """``/proc/modules`` (most recently loaded first, as the kernel lists them)."""
    lines = []
    for module in view.modules_loaded:
        if module in NVIDIA_MODULE_INFO:
            size, address = NVIDIA_MODULE_INFO[module]
            lines.append(f"{module} {size} - - Live {address} (O)")
    for name, size, address in BASE_MODULES:
        lines.append(f"{name} {size} - - Live {address}")
    return "\n".join(lines) + "\n"
