"""Real-format texts the lab's containers show: device plugin logs per fate, runtime errors, nvidia-smi.

Every message here is modelled on a real one (NVIDIA/k8s-device-plugin 0.17.x sources and issue
reports, containerd / nvidia-container-cli errors, nvidia-smi 570/580 tables): the checks must
recognise the lab exactly as they would a real cluster. Log lines carry klog headers
(`I1022 18:32:39.566652       1 main.go:239] ...`) stamped in UTC from the container's start time.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_PLUGIN_VERSION = "0.17.3"

# Short commit shown in the "Starting NVIDIA Device Plugin" header, per released version.
_PLUGIN_COMMITS = {
    "0.17.3": "e0a461e1e7ad1d239d4708c954f08c3038e2654a",
    "0.18.0": "3c9ffca9491f0d2d362a7064138dfcd71bb57592",
}

# main.go line numbers of the start-up messages: 0.17.x and 0.18+ (from real logs of each).
_MAIN_LINES_017 = {"start": 235, "fs": 238, "os": 245, "plugins": 260, "load": 317, "defaults": 342,
                   "config": 353, "retrieve": 356, "error": 173}
_MAIN_LINES_018 = {"start": 239, "fs": 242, "os": 249, "plugins": 264, "load": 321, "defaults": 346,
                   "config": 357, "retrieve": 360, "error": 173}

SOCKET_PATH = "/var/lib/kubelet/device-plugins/nvidia-gpu.sock"
RESOURCE_NAME = "nvidia.com/gpu"


def plugin_version_from_image(image: str) -> str:
    """`nvcr.io/nvidia/k8s-device-plugin:v0.17.3` -> `0.17.3` (default when the tag says nothing)."""
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    match = re.match(r"v?(\d+\.\d+\.\d+)", tag)
    return match.group(1) if match else DEFAULT_PLUGIN_VERSION


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3]) or (0,)


def _commit_for(version: str) -> str:
    known = _PLUGIN_COMMITS.get(version)
    if known:
        return known
    return hashlib.sha1(f"k8s-device-plugin v{version}".encode()).hexdigest()


class KlogClock:
    """Stamps klog headers, advancing a few microseconds per line from a start time."""

    def __init__(self, start: float) -> None:
        self._now = start

    def line(self, level: str, source: str, message: str, *, step_us: int = 37) -> str:
        self._now += step_us / 1_000_000
        seconds = int(self._now)
        micros = int(round((self._now - seconds) * 1_000_000)) % 1_000_000
        stamp = time.gmtime(seconds)
        return (
            f"{level}{stamp.tm_mon:02d}{stamp.tm_mday:02d} "
            f"{stamp.tm_hour:02d}:{stamp.tm_min:02d}:{stamp.tm_sec:02d}.{micros:06d} {1:7d} {source}] {message}"
        )


def _running_config(strategy: str = "auto", sharing: dict[str, Any] | None = None) -> str:
    config = {
        "version": "v1",
        "flags": {
            "migStrategy": "none",
            "failOnInitError": True,
            "mpsRoot": "/run/nvidia/mps",
            "nvidiaDriverRoot": "/",
            "nvidiaDevRoot": "/",
            "gdsEnabled": False,
            "mofedEnabled": False,
            "useNodeFeatureAPI": None,
            "deviceDiscoveryStrategy": strategy,
            "plugin": {
                "passDeviceSpecs": False,
                "deviceListStrategy": ["envvar"],
                "deviceIDStrategy": "uuid",
                "cdiAnnotationPrefix": "cdi.k8s.io/",
                "nvidiaCTKPath": "/usr/bin/nvidia-ctk",
                "containerDriverRoot": "/driver-root",
            },
        },
        "resources": {"gpus": [{"pattern": "*", "name": RESOURCE_NAME}]},
        "sharing": copy.deepcopy(sharing) if sharing else {"timeSlicing": {}},
        "imex": {},
    }
    return json.dumps(config, indent=2)


def startup_header(clock: KlogClock, version: str, sharing: dict[str, Any] | None = None) -> list[str]:
    """The lines every plugin start prints, up to and including `Retrieving plugins.`."""
    lines_at = _MAIN_LINES_018 if _version_tuple(version) >= (0, 18) else _MAIN_LINES_017
    commit = _commit_for(version)
    header = clock.line("I", f"main.go:{lines_at['start']}", '"Starting NVIDIA Device Plugin" version=<')
    lines = [header, f"        {commit[:8]}", f"        commit: {commit}", " >"]
    lines.append(clock.line("I", f"main.go:{lines_at['fs']}", "Starting FS watcher for /var/lib/kubelet/device-plugins"))
    lines.append(clock.line("I", f"main.go:{lines_at['os']}", "Starting OS watcher."))
    lines.append(clock.line("I", f"main.go:{lines_at['plugins']}", "Starting Plugins."))
    lines.append(clock.line("I", f"main.go:{lines_at['load']}", "Loading configuration."))
    lines.append(clock.line("I", f"main.go:{lines_at['defaults']}",
                            "Updating config with default resource matching patterns."))
    lines.append(clock.line("I", f"main.go:{lines_at['config']}", ""))
    lines.extend(["Running with config:", *_running_config(sharing=sharing).splitlines()])
    lines.append(clock.line("I", f"main.go:{lines_at['retrieve']}", "Retrieving plugins."))
    return lines


def _error_exit(clock: KlogClock, version: str, cause: str) -> str:
    lines_at = _MAIN_LINES_018 if _version_tuple(version) >= (0, 18) else _MAIN_LINES_017
    return clock.line(
        "E", f"main.go:{lines_at['error']}",
        f"error starting plugins: error getting plugins: unable to create plugins: "
        f"failed to construct resource managers: {cause}",
        step_us=20_000,
    )


def healthy_log(start: float, version: str = DEFAULT_PLUGIN_VERSION, sharing: dict[str, Any] | None = None,
                resource: str = RESOURCE_NAME) -> list[str]:
    """A plugin that found NVML and registered `nvidia.com/gpu` (or, shared and renamed, `resource`) with
    the kubelet; `sharing` is the config's sharing block (time-slicing), printed in its running config."""
    clock = KlogClock(start)
    lines = startup_header(clock, version, sharing)
    lines.append(clock.line("I", "server.go:216", f"Starting GRPC server for '{resource}'", step_us=40_000))
    lines.append(clock.line("I", "server.go:147", f"Starting to serve '{resource}' on {SOCKET_PATH}",
                            step_us=5_600))
    lines.append(clock.line("I", "server.go:154", f"Registered device plugin for '{resource}' with Kubelet",
                            step_us=7_000))
    return lines


def no_nvml_visible_log(start: float, version: str = DEFAULT_PLUGIN_VERSION) -> list[str]:
    """The pod runs without the nvidia runtime: no NVML in the container, `auto` strategy fails."""
    clock = KlogClock(start)
    lines = startup_header(clock, version)
    lines.append(clock.line("E", "factory.go:112", "Incompatible strategy detected auto", step_us=100))
    lines.append(clock.line("E", "factory.go:113", "If this is a GPU node, did you configure the NVIDIA Container Toolkit?"))
    lines.append(clock.line("E", "factory.go:114",
                            "You can check the prerequisites at: https://github.com/NVIDIA/k8s-device-plugin#prerequisites"))
    lines.append(clock.line("E", "factory.go:115",
                            "You can learn how to set the runtime at: https://github.com/NVIDIA/k8s-device-plugin#quick-start"))
    lines.append(clock.line("E", "factory.go:116",
                            "If this is not a GPU node, you should set up a toleration or nodeSelector to only "
                            "deploy this plugin on GPU nodes"))
    lines.append(_error_exit(clock, version, "invalid device discovery strategy"))
    return lines


def nvml_init_failure_log(
    start: float, version: str = DEFAULT_PLUGIN_VERSION, reason: str = "ERROR_LIBRARY_NOT_FOUND"
) -> list[str]:
    """The runtime is there but the driver is not: NVML cannot be loaded or initialised."""
    clock = KlogClock(start)
    lines = startup_header(clock, version)
    lines.append(clock.line("E", "factory.go:97", f"Failed to initialize NVML: {reason}.", step_us=90))
    lines.append(clock.line("E", "factory.go:98",
                            "If this is a GPU node, did you set the docker default runtime to `nvidia`?"))
    lines.append(clock.line("E", "factory.go:99",
                            "You can check the prerequisites at: https://github.com/NVIDIA/k8s-device-plugin#prerequisites"))
    lines.append(clock.line("E", "factory.go:100",
                            "You can learn how to set the runtime at: https://github.com/NVIDIA/k8s-device-plugin#quick-start"))
    lines.append(clock.line("E", "factory.go:101",
                            "If this is not a GPU node, you should set up a toleration or nodeSelector to only "
                            "deploy this plugin on GPU nodes"))
    lines.append(_error_exit(clock, version, f"nvml init failed: {reason}"))
    return lines


# --- container runtime errors (kubelet / containerd / nvidia-container-cli) -------------------

NO_RUNTIME_HANDLER_MESSAGE = (
    'Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox runtime: '
    'no runtime for "nvidia" is configured'
)


def nvidia_container_cli_error(*, no_cgroups: bool, bpf_jit_harden: str) -> str:
    """The containerd error when the nvidia prestart hook fails to set up device cgroups.

    On Talos the lab's only cause is the hardened BPF JIT: with net.core.bpf_jit_harden=2 the kernel
    blinds runc's device filter, libnvidia-container cannot dump it back and prepends its rules to a
    buffer of zeros, which the verifier rejects (NVIDIA/libnvidia-container#176,
    bottlerocket-os/bottlerocket#2504). The text is the real one of NVIDIA/nvidia-container-toolkit#1193
    (and #117): two lines, the verifier's cause at the end of the first, ``: unknown`` after its log.
    The toolkit extension's runtime works with cgroups (no-cgroups is for rootless containers), so
    ``no_cgroups`` does not change the error; ``bpf_jit_harden`` is not in it (the kernel does not say)."""
    del no_cgroups, bpf_jit_harden
    cli = ("nvidia-container-cli: mount error: failed to add device rules: unable to generate new device "
           "filter program from existing programs: unable to create new device filters program: "
           "load program: invalid argument: last insn is not an exit or jmp\n"
           "processed 0 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0: "
           "unknown")
    return (
        "failed to create containerd task: failed to create shim task: OCI runtime create failed: "
        "runc create failed: unable to start container process: error during container init: "
        "error running prestart hook #0: exit status 1, stdout: , stderr: Auto-detected mode as 'legacy'\n"
        + cli
    )


def xid_unhealthy_lines(clock: KlogClock, faults: Sequence[tuple[str, int]], resource: str = RESOURCE_NAME) -> list[str]:
    """The health checker marking devices unhealthy after a critical Xid (health.go's
    "XidCriticalError: Xid=%d on Device=%s; marking device as unhealthy." and server.go's
    "'%s' device marked unhealthy: %s", the lines of a real log with Xid 48); ``faults`` are
    (device UUID, Xid)."""
    lines = []
    for uuid, xid in faults:
        lines.append(clock.line("I", "health.go:169", f"XidCriticalError: Xid={xid} on Device={uuid}; marking device "
                                "as unhealthy.", step_us=60_000_000))
        lines.append(clock.line("I", "server.go:278", f"'{resource}' device marked unhealthy: {uuid}", step_us=698))
    return lines


def executable_not_found_error(command: str) -> str:
    """What runc says when the image lacks the command (nvidia-smi is injected by the nvidia runtime)."""
    return (
        "failed to create containerd task: failed to create shim task: OCI runtime create failed: "
        "runc create failed: unable to start container process: error during container init: "
        f'exec: "{command}": executable file not found in $PATH: unknown'
    )


def crash_loop_message(container: str, pod: str, namespace: str, uid: str, backoff_s: int) -> str:
    minutes, seconds = divmod(backoff_s, 60)
    backoff = f"{minutes}m{seconds}s" if minutes else f"{seconds}s"
    return f"back-off {backoff} restarting failed container={container} pod={pod}_{namespace}({uid})"


# --- nvidia-smi --------------------------------------------------------------------------------

CUDA_FOR_DRIVER_MAJOR = {525: "12.0", 530: "12.1", 535: "12.2", 545: "12.3", 550: "12.4", 555: "12.5",
                         560: "12.6", 565: "12.7", 570: "12.8", 575: "12.9", 580: "13.0", 590: "13.1"}


@dataclass(frozen=True)
class SmiGpu:
    """One GPU as nvidia-smi shows it."""

    index: int
    name: str
    bus_id: str                # nvidia-smi form: 00000000:33:00.0
    memory_mib: int = 95830
    power_cap_w: int = 400
    power_draw_w: int = 59
    temperature_c: int = 43
    uuid: str = ""
    pci_device_id: str = "0x232110DE"


def cuda_version_for(driver: str) -> str:
    major = _version_tuple(driver)[0]
    eligible = [m for m in CUDA_FOR_DRIVER_MAJOR if m <= major]
    return CUDA_FOR_DRIVER_MAJOR[max(eligible)] if eligible else "12.0"


def smi_bus_id(pci_id: str) -> str:
    """`0000:33:00.0` -> `00000000:33:00.0` (upper-case hex, as nvidia-smi prints it)."""
    domain, _, rest = pci_id.partition(":")
    return f"{int(domain or '0', 16):08X}:{rest.upper()}"


def gpu_uuid(bus_id: str) -> str:
    digest = hashlib.sha1(f"lab-gpu-{bus_id}".encode()).hexdigest()
    return f"GPU-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def nvidia_smi_table(gpus: Sequence[SmiGpu], driver: str, when: float) -> list[str]:
    """The default `nvidia-smi` output: header, one block per GPU, an empty Processes table."""
    dashes = "+" + "-" * 41 + "+" + "-" * 24 + "+" + "-" * 22 + "+"
    under_header = dashes if _version_tuple(driver)[0] >= 580 else "|" + dashes[1:]
    stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(when))
    lines = [
        f"{stamp}       ",
        "+" + "-" * 89 + "+",
        f"| NVIDIA-SMI {driver:<23}Driver Version: {driver:<15}CUDA Version: {cuda_version_for(driver):<9}|",
        under_header,
        "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
        "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
        "|                                         |                        |               MIG M. |",
        "|" + "=" * 41 + "+" + "=" * 24 + "+" + "=" * 22 + "|",
    ]
    for gpu in gpus:
        lines.append(f"|{gpu.index:>4}  {gpu.name:<29}{'On':>4}  |{gpu.bus_id:>19} {'Off':>3} |{'0':>21} |")
        lines.append(
            f"| {'N/A':>3}   {str(gpu.temperature_c) + 'C':>3}    {'P0':<2}  {str(gpu.power_draw_w) + 'W':>14} / "
            f"{str(gpu.power_cap_w) + 'W':>5} |{'0MiB':>11} / {str(gpu.memory_mib) + 'MiB':>9} |"
            f"{'0%':>8}{'Default':>13} |"
        )
        lines.append("|" + " " * 41 + "|" + " " * 24 + "|" + f"{'Disabled':>21} |")
        lines.append(dashes)
    lines.extend([
        "",
        "+" + "-" * 89 + "+",
        "| Processes:" + " " * 78 + "|",
        "|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |",
        "|        ID   ID                                                               Usage      |",
        "|" + "=" * 89 + "|",
        "|  No running processes found" + " " * 61 + "|",
        "+" + "-" * 89 + "+",
    ])
    return lines


def nvidia_smi_list(gpus: Sequence[SmiGpu]) -> list[str]:
    """`nvidia-smi -L`."""
    return [f"GPU {gpu.index}: {gpu.name} (UUID: {gpu.uuid or gpu_uuid(gpu.bus_id)})" for gpu in gpus]


_QUERY_FIELDS = {
    "index": ("index", lambda g, d: str(g.index)),
    "name": ("name", lambda g, d: g.name),
    "gpu_name": ("name", lambda g, d: g.name),
    "pci.bus_id": ("pci.bus_id", lambda g, d: g.bus_id),
    "gpu_bus_id": ("pci.bus_id", lambda g, d: g.bus_id),
    "pci.device_id": ("pci.device_id", lambda g, d: g.pci_device_id),
    "uuid": ("uuid", lambda g, d: g.uuid or gpu_uuid(g.bus_id)),
    "gpu_uuid": ("uuid", lambda g, d: g.uuid or gpu_uuid(g.bus_id)),
    "driver_version": ("driver_version", lambda g, d: d),
    "memory.total": ("memory.total [MiB]", lambda g, d: f"{g.memory_mib} MiB"),
    "memory.used": ("memory.used [MiB]", lambda g, d: "0 MiB"),
    "power.limit": ("power.limit [W]", lambda g, d: f"{g.power_cap_w:.2f} W"),
    "temperature.gpu": ("temperature.gpu", lambda g, d: str(g.temperature_c)),
    "count": ("count", lambda g, d: ""),
}


def nvidia_smi_query(gpus: Sequence[SmiGpu], driver: str, fields: str, fmt: str) -> tuple[list[str], int]:
    """`nvidia-smi --query-gpu=FIELDS --format=FMT`: (lines, exit code)."""
    options = {part.strip() for part in fmt.split(",")}
    if "csv" not in options:
        return ['"--format=" switch is missing or has no "csv" option. Please run \'nvidia-smi -h\' for help.'], 2
    names = [field.strip() for field in fields.split(",") if field.strip()]
    unknown = [name for name in names if name not in _QUERY_FIELDS]
    if unknown:
        return [f'Field "{unknown[0]}" is not a valid field to query.', ""], 2
    lines = []
    if "noheader" not in options:
        lines.append(", ".join(_QUERY_FIELDS[name][0] for name in names))
    for gpu in gpus:
        values = []
        for name in names:
            value = str(len(gpus)) if name == "count" else _QUERY_FIELDS[name][1](gpu, driver)
            if "nounits" in options:
                value = re.sub(r" (MiB|W)$", "", value)
            values.append(value)
        lines.append(", ".join(values))
    return lines, 0


def nvidia_smi_output(argv: Sequence[str], gpus: Sequence[SmiGpu], driver: str, when: float) -> tuple[list[str], int]:
    """Run the lab's nvidia-smi with the container's arguments: (output lines, exit code)."""
    args = list(argv)
    if "-L" in args or "--list-gpus" in args:
        return nvidia_smi_list(gpus), 0
    query = next((a.split("=", 1)[1] for a in args if a.startswith("--query-gpu=")), None)
    if query is not None:
        fmt = next((a.split("=", 1)[1] for a in args if a.startswith("--format=")), "")
        return nvidia_smi_query(gpus, driver, query, fmt)
    return nvidia_smi_table(gpus, driver, when), 0
