"""The `device-plugin` path (Talos ≤ 1.12, the runbook's v1.11.5): RuntimeClass `nvidia`, the
`nvdp/nvidia-device-plugin` chart, sysctl `net.core.bpf_jit_harden = 1`."""

from __future__ import annotations

from checks import infra, judges
from checks import probes as p
from checks.actions import plans
from checks.stages import StageSpec

CLUSTER = StageSpec(
    "cluster",
    "Talos and Kubernetes reachable, node Ready",
    "1",
    (),
    (p.probe_talos_version, p.probe_health, p.probe_machine_status, p.probe_boot_failure, p.probe_machine_files,
     p.probe_kube_node),
    judges.judge_cluster,
    plans.plan_cluster,  # only for a node stuck at boot on machine.files entries Talos refuses
    reboots=True,
)

EXTENSIONS = StageSpec(
    "extensions",
    "NVIDIA system extensions installed",
    "2–3",
    ("cluster",),
    (p.probe_extensions, p.probe_pci_devices),  # PCI: NVSwitch boards need Fabric Manager
    judges.judge_extensions,
    plans.plan_extensions,
    reboots=True,
)

GPU_RESOURCES = StageSpec(
    "gpu-resources",
    "Node advertises nvidia.com/gpu",
    "7",
    ("device-plugin", "kernel-modules"),
    (p.probe_kube_node, p.probe_pci_devices, p.probe_dmesg, p.probe_gpu_allocations),
    judges.judge_gpu_resources,
    None,
)

GPU_WORKLOAD = StageSpec(
    "gpu-workload",
    "A GPU pod runs nvidia-smi",
    "8",
    ("gpu-resources",),
    (p.probe_gpu_workload,),
    judges.judge_gpu_workload,
    plans.plan_gpu_workload,
)

STAGES: tuple[StageSpec, ...] = (
    CLUSTER,
    EXTENSIONS,
    StageSpec(
        "kernel-modules",
        "NVIDIA kernel modules loaded",
        "4",
        ("extensions",),
        (p.probe_proc_modules, p.probe_driver_version, p.probe_extensions, p.probe_dmesg, p.probe_bpf_sysctl,
         p.probe_module_specs),
        judges.judge_kernel_modules,
        plans.plan_kernel_modules,
    ),
    StageSpec(
        "container-runtime",
        "NVIDIA container runtime registered (toolkit extension); no boot-breaking machine.files",
        "4.1",
        ("extensions",),
        (p.probe_cri_conf, p.probe_services, p.probe_machine_files),
        judges.judge_container_runtime,
        plans.plan_container_runtime,
        reboots=True,
    ),
    StageSpec(
        "runtimeclass",
        "RuntimeClass nvidia",
        "5",
        ("cluster",),
        (p.probe_runtime_class,),
        judges.judge_runtimeclass,
        plans.plan_runtimeclass,
    ),
    StageSpec(
        "device-plugin",
        "NVIDIA device plugin running and registered",
        "6",
        ("kernel-modules", "container-runtime", "runtimeclass"),
        (p.probe_device_plugin, p.probe_helm_release),
        judges.judge_device_plugin,
        plans.plan_device_plugin,
    ),
    GPU_RESOURCES,
    GPU_WORKLOAD,
)

LINT = infra.lint_infra  # the infra repo's files this path uses, checked for drift
