"""The `gpu-operator` path (Talos ≥ 1.13): CDI (`ext-nvidia-cdi-gen` writes `/run/cdi/nvidia.yaml`) and the
NVIDIA GPU Operator (driver and toolkit disabled), which creates the RuntimeClass and its own device plugin.
Same stage ids as the device-plugin path; where a stage owns more, its judge says so."""

from __future__ import annotations

from checks import probes as p
from checks.actions import plans
from checks.paths.device_plugin import CLUSTER, GPU_RESOURCES, GPU_WORKLOAD
from checks.paths.gpu_operator import actions, judges
from checks.paths.gpu_operator import infra as operator_infra
from checks.paths.gpu_operator import probes as op
from checks.stages import StageSpec

STAGES: tuple[StageSpec, ...] = (
    CLUSTER,
    StageSpec(
        "extensions",
        "NVIDIA system extensions installed (this Talos release's versions)",
        "2–3",
        ("cluster",),
        (p.probe_extensions, p.probe_talos_version, p.probe_pci_devices),  # PCI: NVSwitch → Fabric Manager
        judges.judge_extensions_release,
        plans.plan_extensions,
        reboots=True,
    ),
    StageSpec(
        "kernel-modules",
        "NVIDIA kernel modules loaded",
        "4",
        ("extensions",),
        (p.probe_proc_modules, p.probe_driver_version, p.probe_extensions, p.probe_dmesg, p.probe_module_specs),
        judges.judge_kernel_modules_cdi,
        actions.plan_kernel_modules_cdi,
    ),
    StageSpec(
        "container-runtime",
        "NVIDIA runtime and CDI spec (ext-nvidia-cdi-gen); no boot-breaking machine.files",
        "4.1",
        ("extensions",),
        (p.probe_cri_conf, p.probe_services, op.probe_cdi_specs, p.probe_machine_files),
        judges.judge_container_runtime_cdi,
        plans.plan_container_runtime,
        reboots=True,
    ),
    StageSpec(
        "runtimeclass",
        "RuntimeClass nvidia (created by the GPU Operator)",
        "5",
        ("cluster", "device-plugin"),
        (p.probe_runtime_class,),
        judges.judge_runtimeclass_operator,
        None,  # the operator creates it
    ),
    StageSpec(
        "device-plugin",
        "NVIDIA GPU Operator ready (ClusterPolicy, device plugin, validator); no leftovers of the old path",
        "6",
        ("kernel-modules", "container-runtime"),
        (op.probe_helm_releases, op.probe_operator_namespace, op.probe_cluster_policy, op.probe_operator_pods,
         p.probe_runtime_class),
        judges.judge_operator,
        actions.plan_gpu_operator,
    ),
    GPU_RESOURCES,
    GPU_WORKLOAD,
)

LINT = operator_infra.lint
