"""The enablement stages: one declarative table, the single source of truth for `check`, `enable`
and the TUI. Stage ids are fixed by INTERFACE.md. A later profile (Talos ≥ 1.13, CDI, GPU Operator)
describes itself with another table of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageSpec:
    id: str
    title: str
    section: str  # the seed document's section
    depends_on: tuple[str, ...]  # stages whose failure makes this one `blocked`
    probes: tuple[str, ...]  # facts it judges (names in checks.probes.PROBES)
    judge: str  # function name in checks.judges
    action: str | None  # action id in checks.actions, None when the evidence says what to fix
    reboots: bool = False  # its action reboots the node


SEED_STAGES: tuple[StageSpec, ...] = (
    StageSpec(
        "cluster",
        "Talos and Kubernetes reachable, node Ready",
        "1",
        (),
        ("talos_version", "health", "machine_status", "boot_failure", "machine_files", "kube_node"),
        "judge_cluster",
        "cluster",  # only for a node stuck at boot on machine.files entries Talos refuses
        reboots=True,
    ),
    StageSpec(
        "extensions",
        "NVIDIA system extensions installed",
        "2–3",
        ("cluster",),
        ("extensions",),
        "judge_extensions",
        "extensions",
        reboots=True,
    ),
    StageSpec(
        "kernel-modules",
        "NVIDIA kernel modules loaded",
        "4",
        ("extensions",),
        ("proc_modules", "driver_version", "extensions", "dmesg", "bpf_sysctl", "module_specs"),
        "judge_kernel_modules",
        "kernel-modules",
    ),
    StageSpec(
        "container-runtime",
        "NVIDIA container runtime registered (toolkit extension); no boot-breaking machine.files",
        "4.1",
        ("extensions",),
        ("cri_conf", "services", "machine_files"),
        "judge_container_runtime",
        "container-runtime",
        reboots=True,
    ),
    StageSpec(
        "runtimeclass",
        "RuntimeClass nvidia",
        "5",
        ("cluster",),
        ("runtime_class",),
        "judge_runtimeclass",
        "runtimeclass",
    ),
    StageSpec(
        "device-plugin",
        "NVIDIA device plugin running and registered",
        "6",
        ("kernel-modules", "container-runtime", "runtimeclass"),
        ("device_plugin", "helm_release"),
        "judge_device_plugin",
        "device-plugin",
    ),
    StageSpec(
        "gpu-resources",
        "Node advertises nvidia.com/gpu",
        "7",
        ("device-plugin", "kernel-modules"),
        ("kube_node", "pci_devices", "dmesg", "gpu_allocations"),
        "judge_gpu_resources",
        None,
    ),
    StageSpec(
        "gpu-workload",
        "A GPU pod runs nvidia-smi",
        "8",
        ("gpu-resources",),
        ("gpu_workload",),
        "judge_gpu_workload",
        "gpu-workload",
    ),
)

STAGE_IDS: tuple[str, ...] = tuple(s.id for s in SEED_STAGES)


def stage_spec(stage_id: str, stages: tuple[StageSpec, ...] = SEED_STAGES) -> StageSpec:
    for spec in stages:
        if spec.id == stage_id:
            return spec
    raise KeyError(stage_id)
