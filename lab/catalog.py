"""The lab's scenarios and releases by name, apart from what builds them (lab/scenarios.py, lab/releases.py),
so that the command line can list and check them without loading the lab."""

from __future__ import annotations

SCENARIOS: dict[str, str] = {
    "fresh": "Talos v1.11.5 vanilla: no NVIDIA extension, patch, RuntimeClass or device plugin (the default)",
    "healthy": "every stage passes: production extensions 570.172.08, both patches, RuntimeClass, device plugin 0.17.3",
    "extensions-missing": "vanilla image (no NVIDIA extensions) but everything else configured",
    "mixed-tracks": "kernel modules from the production track (570.172.08), container toolkit from lts (535.247.01)",
    "driver-mismatch": "both production, but kernel modules 570.172.08 and container toolkit 570.158.01",
    "modules-not-loaded": "extensions installed but the modules patch (modules + bpf sysctl) was never applied",
    "bpf-sysctl-missing": "modules loaded but net.core.bpf_jit_harden left at the Talos default 2",
    "runbook-patch-applied": "the runbook's step 4.1 (a machine.files create of /etc/nvidia-container-runtime/"
                             "config.toml) was applied: every boot stops in writeUserFiles and the node reboots in a loop",
    "runbook-patch-in-repo": "the seed's end state, but the infra repo holds the runbook's no-cgroups patch "
                             "(never applied: it would stop the next boot)",
    "runtimeclass-missing": "no RuntimeClass nvidia: the device plugin's pods are rejected",
    "nfd-affinity": "device plugin installed without affinity: null: the chart's NFD node affinity leaves DESIRED 0",
    "no-runtimeclassname": "device plugin values lack runtimeClassName: the plugin cannot find NVML",
    "plugin-missing": "everything but the device plugin Helm release (the nvdp repo is added)",
    "gpu-not-initialised": "one of the two H100 NVL fails RmInitAdapter: only 1 GPU usable",
    "node-notready": "the kubelet reports NotReady",
    "time-slicing": "healthy, the device plugin time-slices each GPU 4 ways (config map + config-manager sidecar): "
                    "2 GPUs advertise 8 nvidia.com/gpu",
    "time-slicing-renamed": "as time-slicing, with renameByDefault: the node advertises 8 nvidia.com/gpu.shared",
    "nvswitch-no-fabricmanager": "an HGX-style board: NVSwitch bridges on the PCI bus, no nvidia-fabricmanager "
                                 "extension",
    "taint-not-tolerated": "the GPU node carries the taint nvidia.com/gpu=present:NoSchedule, which the seed's "
                           "tolerations do not cover: the device plugin DaemonSet has DESIRED 0",
    "open-module-unsupported-gpu": "the second GPU is a Tesla V100 (no GSP): the open kernel module refuses it "
                                   "and only the H100 NVL is initialised",
    "ebpf-hook-rejected": "a hardening patch sets net.core.bpf_jit_harden: 2: the nvidia hook's device filter is "
                          "rejected (last insn is not an exit or jmp) and the plugin pod cannot start",
    "cni-not-initialised": "the kubelet runs but the pod network is not up (Cilium's agent on the node is not "
                           "ready): Node NotReady with \"cni plugin not initialized\"",
    "xid-unhealthy": "a critical Xid (48, double bit ECC) on one GPU: the device plugin marked it unhealthy "
                     "(capacity 2, allocatable 1)",
    "multi-gpu-nodes-one-failing": "three GPU nodes: this one and gpu-node-2 healthy, the device plugin pod on "
                                   "gpu-node-3 crashes (its driver is not loaded)",
    "multi-gpu-nodes-this-failing": "three GPU nodes: the other two healthy, this one lacks the modules patch and "
                                    "its device plugin pod crashes",
    "static-manifest": "the device plugin from k8s-device-plugin's static manifest as published (DaemonSet "
                       "kube-system/nvidia-device-plugin-daemonset, label name=nvidia-device-plugin-ds on its selector "
                       "and pod template only), no Helm release: it tolerates nvidia.com/gpu but not the control-plane "
                       "taint, and has no runtimeClassName",
    "static-manifest-adapted": "as static-manifest, with runtimeClassName nvidia and the control-plane toleration "
                               "added: every stage passes",
    "old-path-leftovers": "Talos 1.13 (GPU Operator path) with the extensions and modules right, but still the "
                          "nvidia-device-plugin release and the hand-made RuntimeClass nvidia; no operator",
    "operator-healthy": "Talos 1.13: every stage passes on the GPU Operator path (gpu-operator v26.3.1, "
                        "ClusterPolicy ready, RuntimeClass nvidia owned by it)",
}
# Scenarios of the gpu-operator path: a Talos >= 1.13 node (v1.13.9 unless another 1.13+ release is given).
OPERATOR_SCENARIOS = ("old-path-leftovers", "operator-healthy")
OPERATOR_DEFAULT_VERSION = "v1.13.9"
