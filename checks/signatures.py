"""The catalog of known failure messages on a Talos NVIDIA node, and a matcher for them.

Each Signature recognises one known message (by the MESSAGE, wherever it sits in a line: klog headers,
journald prefixes, timestamps, ``kubectl describe`` columns and talosctl dmesg prefixes are ignored), says
which stage owns it, what it means on the seed setup (Talos 1.11, open kernel modules + container toolkit
extensions on the production track, RuntimeClass ``nvidia``, device plugin Helm chart in kube-system) and
what to do next.

The texts come from the programs' sources and from real reports; each pattern names its sources.
This module is plain Python: no Textual, no Kubernetes client, no lab.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass

# Where a text comes from; a Signature lists the sources it makes sense in.
POD_LOG = "pod-log"  # a container's log (device plugin, test pod)
EVENT = "event"  # Kubernetes events and container status messages (kubectl describe)
DMESG = "dmesg"  # talosctl dmesg
HEALTH = "health"  # talosctl health / talosctl errors
NVIDIA_SMI = "nvidia-smi"  # what nvidia-smi printed (in the test pod or elsewhere)
ALL_SOURCES: frozenset[str] = frozenset({POD_LOG, EVENT, DMESG, HEALTH, NVIDIA_SMI})

LINE_LIMIT = 200
"""Longest ``SignatureMatch.line`` and ``SignatureMatch.quote``."""

# The seed's own commands, quoted in remediations.
_MODULES_PATCH = "talosctl patch mc --patch @talos/patches/nvidia-oss-modules.yaml"
# Never the runbook's no-cgroups patch: a machine.files create outside /var stops Talos's boot (FACTS.md).
_NOT_NO_CGROUPS = ("Do not apply the runbook's talos/patches/nvidia-no-cgroups.yaml: Talos refuses a machine.files "
                   "create of /etc/nvidia-container-runtime/config.toml at boot (the node stops in writeUserFiles "
                   "and reboots in a loop), and the extension's runtime reads /usr/local/etc/"
                   "nvidia-container-runtime/config.toml instead")
_HELM_UPGRADE = (
    "helm upgrade --install nvidia-device-plugin nvdp/nvidia-device-plugin -n kube-system "
    "-f k8s/nvidia-device-plugin/values.yaml"
)
_UPGRADE = (
    "talosctl upgrade to the Image Factory installer of the schematic with both NVIDIA extensions on the "
    "profile's track"
)


@dataclass(frozen=True)
class Signature:
    """One known failure (or, for severity "warning", a noteworthy) message."""

    id: str
    """Stable slug, e.g. "nvml-library-not-found"."""
    stage: str
    """The stage (INTERFACE.md) that owns the cause: extensions, kernel-modules, container-runtime,
    runtimeclass, device-plugin, gpu-resources, gpu-workload or cluster."""
    pattern: re.Pattern[str]
    """Matches the message (never spans a line)."""
    meaning: str
    """One sentence: what it means on Talos."""
    remediation: str
    """The advice: what to change and why (prose; the pasteable command comes from `checks.remedies`)."""
    remedy: str = ""
    """The kind of command `checks.remedies.for_signature` builds for it (from the target and profile); ""
    for none: then `remediation` is advice only."""
    severity: str = "error"
    """"error", or "warning" for messages that are worth showing but are not a failure by themselves."""
    sources: frozenset[str] = ALL_SOURCES
    """Kinds of text this message appears in (POD_LOG, EVENT, DMESG, HEALTH, NVIDIA_SMI)."""


@dataclass(frozen=True)
class SignatureMatch:
    """Where a Signature was found."""

    signature: Signature
    line: str
    """The matching line, trimmed (at most 200 characters, cut around the match when longer)."""
    quote: str
    """The matched message text."""
    captures: tuple[tuple[str, str], ...] = ()
    """Named groups of the pattern that matched, e.g. (("reason", "ERROR_LIBRARY_NOT_FOUND"),)."""
    line_number: int = 0
    """1-based number of the line in the scanned text."""

    def capture(self, name: str) -> str | None:
        """The text a named group captured (e.g. "reason", "runtime_class"), or None."""
        for key, value in self.captures:
            if key == name:
                return value
        return None


REGISTERED_RE = re.compile(r"Registered device plugin for '(?P<resource>[^'\n]+)' with Kubelet")
"""The healthy end of the device plugin's start-up (NOT a failure).

Source: NVIDIA/k8s-device-plugin internal/plugin/server.go ("Registered device plugin for '%s' with
Kubelet"); real log in samples/k8s/dp-log-healthy-registered-bottlerocket.log
(https://github.com/bottlerocket-os/bottlerocket/issues/4250)."""

_NEWLINE_RE = re.compile("\n")
_ANSI_ESCAPE_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")  # same as checks.parsers.base
_NVML_FAILED = r"(?:failed to initialize nvml|nvml init failed):[ \t]*+"  # possessive: no backtracking into blanks

SIGNATURES: tuple[Signature, ...] = (
    # ---- device plugin: the plugin's container cannot reach the driver ----------------------------
    Signature(
        # Sources: NVIDIA/k8s-device-plugin internal/rm/nvml_manager.go ("failed to initialize NVML: %v"),
        # internal/plugin/manager/factory.go ("nvml init failed: %v");
        # https://github.com/NVIDIA/k8s-device-plugin/issues/856 (0.16.x: "nvml init failed: ERROR_LIBRARY_NOT_FOUND").
        id="nvml-library-not-found",
        remedy="helm-values",
        stage="device-plugin",
        pattern=re.compile(_NVML_FAILED + r"(?P<reason>ERROR_LIBRARY_NOT_FOUND)", re.IGNORECASE),
        meaning="The device plugin container cannot find libnvidia-ml.so: it is not running under the "
        "nvidia runtime, so the container toolkit did not inject the driver libraries.",
        remediation="Set runtimeClassName: nvidia in k8s/nvidia-device-plugin/values.yaml and run "
        f"`{_HELM_UPGRADE}`; check that `kubectl get runtimeclass nvidia` shows handler nvidia.",
        sources=frozenset({POD_LOG, EVENT}),
    ),
    Signature(
        # Sources: https://github.com/NVIDIA/k8s-device-plugin/issues/182, /issues/303, /issues/444
        # ("Failed to initialize NVML: could not load NVML library."), factory.go in 0.14-0.16
        # ("Detected non-NVML platform: could not load NVML library: libnvidia-ml.so.1: cannot open ...").
        id="nvml-could-not-load-library",
        remedy="helm-values",
        stage="device-plugin",
        pattern=re.compile(r"could not load NVML library", re.IGNORECASE),
        meaning="The device plugin container has no libnvidia-ml.so: the pod runs without the nvidia "
        "runtime (runtimeClassName missing) or the toolkit extension does not provide the library.",
        remediation="Set runtimeClassName: nvidia in k8s/nvidia-device-plugin/values.yaml and run "
        f"`{_HELM_UPGRADE}`.",
        sources=frozenset({POD_LOG, EVENT}),
    ),
    Signature(
        # Sources: nvml return code NVML_ERROR_DRIVER_NOT_LOADED as printed by the plugin
        # ("failed to initialize NVML: ERROR_DRIVER_NOT_LOADED") and by nvidia-smi ("Driver Not Loaded").
        id="nvml-driver-not-loaded",
        remedy="modules-patch",
        stage="kernel-modules",
        pattern=re.compile(_NVML_FAILED + r"(?P<reason>Driver Not Loaded|ERROR_DRIVER_NOT_LOADED)", re.IGNORECASE),
        meaning="libnvidia-ml.so is there but the nvidia kernel module is not loaded on the node.",
        remediation=f"Load the modules: `{_MODULES_PATCH}`; then `talosctl read /proc/modules`.",
        sources=frozenset({POD_LOG, EVENT, NVIDIA_SMI}),
    ),
    Signature(
        # Sources: nvidia-smi "Failed to initialize NVML: Driver/library version mismatch"
        # (https://github.com/intel/llvm/issues/17614, https://github.com/mozilla/translations/issues/1167).
        id="nvml-driver-library-mismatch",
        remedy="upgrade",
        stage="extensions",
        pattern=re.compile(r"(?:" + _NVML_FAILED + r")?(?P<reason>Driver/library version mismatch)", re.IGNORECASE),
        meaning="The user-space driver libraries (from nvidia-container-toolkit) and the loaded kernel module "
        "(from nvidia-open-gpu-kernel-modules) are different driver versions.",
        remediation="Compare the driver part of both extension versions in `talosctl get "
        "extensions`; they must be equal (same track). Reinstall both from one schematic: "
        f"`{_UPGRADE}`; a pending reboot also causes this.",
        sources=frozenset({POD_LOG, EVENT, NVIDIA_SMI}),
    ),
    Signature(
        # Sources: k8s-device-plugin klog.Errorf("Failed to initialize NVML: %v.", ret) and
        # nvml_manager.go "failed to initialize NVML: %v" for any other NVML return code.
        id="nvml-init-failed",
        remedy="helm-values",
        stage="device-plugin",
        pattern=re.compile(
            _NVML_FAILED
            + r"(?!ERROR_LIBRARY_NOT_FOUND|could not load NVML library|Driver Not Loaded|ERROR_DRIVER_NOT_LOADED"
            r"|Driver/library version mismatch)(?P<reason>[^\n]*[^\s.])?",
            re.IGNORECASE,
        ),
        meaning="The device plugin could not initialise NVML, so it advertises no GPU.",
        remediation="Read the reason; check `talosctl read /proc/driver/nvidia/version` and "
        f"that the pod uses runtimeClassName: nvidia (`{_HELM_UPGRADE}`).",
        sources=frozenset({POD_LOG, EVENT, NVIDIA_SMI}),
    ),
    Signature(
        # Sources: k8s-device-plugin internal/plugin/manager/factory.go (0.17-0.19)
        # klog.Errorf("Incompatible strategy detected %v", strategy);
        # https://github.com/NVIDIA/k8s-device-plugin/issues/1220, /issues/1574.
        id="incompatible-strategy",
        remedy="helm-values",
        stage="device-plugin",
        pattern=re.compile(r"Incompatible strategy detected (?P<strategy>\S+)"),
        meaning="The device plugin found neither NVML nor Tegra inside its container: the pod does not see "
        "the driver, almost always because it runs without runtimeClassName: nvidia.",
        remediation="Set runtimeClassName: nvidia in k8s/nvidia-device-plugin/values.yaml and run "
        f"`{_HELM_UPGRADE}`; then delete the old pod so the DaemonSet recreates it.",
        sources=frozenset({POD_LOG}),
    ),
    Signature(
        # Sources: k8s-device-plugin factory.go (0.14-0.16) klog.Error("Incompatible platform detected") and
        # fmt.Errorf("platform detection failed").
        id="incompatible-platform",
        remedy="helm-values",
        stage="device-plugin",
        pattern=re.compile(r"Incompatible platform detected|platform detection failed"),
        meaning="The device plugin (0.14-0.16) found no NVML inside its container: the pod does not see the "
        "driver, usually because runtimeClassName: nvidia is missing.",
        remediation="Set runtimeClassName: nvidia in k8s/nvidia-device-plugin/values.yaml and run "
        f"`{_HELM_UPGRADE}`.",
        sources=frozenset({POD_LOG}),
    ),
    Signature(
        # Sources: k8s-device-plugin factory.go fmt.Errorf("invalid device discovery strategy");
        # https://github.com/NVIDIA/k8s-device-plugin/issues/1470, /issues/1469.
        id="invalid-discovery-strategy",
        remedy="helm-values",
        stage="device-plugin",
        pattern=re.compile(r"invalid device discovery strategy"),
        meaning="The device plugin exits because no device discovery strategy applies (failOnInitError): the "
        "container does not see the NVIDIA driver.",
        remediation="Set runtimeClassName: nvidia in k8s/nvidia-device-plugin/values.yaml and run "
        f"`{_HELM_UPGRADE}`; check the driver with `talosctl read /proc/driver/nvidia/version`.",
        sources=frozenset({POD_LOG}),
    ),
    Signature(
        # Source: FACTS.md (device plugin 0.19.3+ log line, warning level).
        id="unsupported-platform-default-nvml",
        remedy="",
        stage="device-plugin",
        pattern=re.compile(r"Unsupported platform detected; defaulting to nvml"),
        meaning="The device plugin could not identify the platform and falls back to NVML; harmless when a "
        "later line shows the plugin registered.",
        remediation="None if the log later says \"Registered device plugin for 'nvidia.com/gpu' with Kubelet\"; "
        "otherwise check runtimeClassName: nvidia in k8s/nvidia-device-plugin/values.yaml.",
        severity="warning",
        sources=frozenset({POD_LOG}),
    ),
    Signature(
        # Sources: k8s-device-plugin main.go ("No devices found. Waiting indefinitely.") after a failed
        # init with failOnInitError=false; seen with "Incompatible strategy detected auto" in public write-ups.
        id="no-devices-found",
        remedy="pod-log",
        stage="device-plugin",
        pattern=re.compile(r"No devices found\. Waiting indefinitely"),
        meaning="The device plugin started but found no GPU to advertise, so it idles and the node never "
        "gets nvidia.com/gpu.",
        remediation="Look at the earlier lines of the same log (NVML / strategy errors); usually "
        f"runtimeClassName: nvidia is missing (`{_HELM_UPGRADE}`) or the driver is not loaded.",
        sources=frozenset({POD_LOG}),
    ),
    Signature(
        # Source: k8s-device-plugin internal/plugin/server.go ("Could not register device plugin: %s").
        id="kubelet-registration-failed",
        remedy="restart-pod",
        stage="device-plugin",
        pattern=re.compile(r"Could not register device plugin: (?P<reason>[^\n]*)"),
        meaning="The device plugin could not register with the kubelet's device-plugin socket.",
        remediation="Delete the device plugin pod so it retries "
        "(`kubectl -n kube-system delete pod -l app.kubernetes.io/name=nvidia-device-plugin`); check the "
        "kubelet with `talosctl service kubelet`.",
        sources=frozenset({POD_LOG}),
    ),
    # ---- container runtime: nvidia-container-cli (libnvidia-container) hook failures ---------------
    Signature(
        # Sources: https://github.com/siderolabs/extensions/issues/101 (Talos 1.3, device plugin won't start),
        # https://github.com/NVIDIA/libnvidia-container/issues/176 and
        # https://github.com/bottlerocket-os/bottlerocket/issues/2504 (root cause: eBPF JIT constant blinding,
        # fixed by net.core.bpf_jit_harden=1), https://github.com/NVIDIA/nvidia-container-toolkit/issues/117,
        # https://github.com/NVIDIA/nvidia-container-toolkit/issues/1193, https://github.com/NVIDIA/libnvidia-container/issues/209.
        id="nvidia-container-cli-bpf-filter",
        remedy="modules-patch",
        stage="kernel-modules",
        pattern=re.compile(
            r"failed to add device rules: unable to generate new device filter program"
            r"(?=(?:[^\n]*?load program: (?P<reason>[^:\n]*))?)[^\n]*"
        ),
        meaning="nvidia-container-cli cannot rebuild the container's eBPF device filter because Talos hardens "
        "the BPF JIT (net.core.bpf_jit_harden=2 blinds programs), so every GPU container fails to start.",
        remediation="Set sysctl net.core.bpf_jit_harden: 1 with the modules patch: "
        f"`{_MODULES_PATCH}`; then `talosctl read /proc/sys/net/core/bpf_jit_harden` shows 1.",
        sources=frozenset({EVENT, POD_LOG}),
    ),
    Signature(
        # Sources: https://github.com/NVIDIA/nvidia-container-toolkit/issues/139 (fixed by
        # "no-cgroups = true" in /etc/nvidia-container-runtime/config.toml),
        # https://github.com/NVIDIA/nvidia-container-toolkit/issues/678, https://github.com/NVIDIA/nvidia-docker/issues/1688.
        id="nvidia-container-cli-bpf-prog-query",
        remedy="modules-patch",
        stage="container-runtime",
        pattern=re.compile(
            r"unable to find any existing device filters attached to the cgroup: "
            r"bpf_prog_query\(BPF_CGROUP_DEVICE\) failed: (?P<reason>[^:\n]*)"
        ),
        meaning="nvidia-container-cli cannot query the container's device cgroup filters (BPF): usually the "
        "hardened BPF JIT or a toolkit older than cgroup v2 support (libnvidia-container 1.8).",
        remediation="Set sysctl net.core.bpf_jit_harden: 1 with the seed's modules patch "
        f"(`{_MODULES_PATCH}`) and keep both NVIDIA extensions on one track. {_NOT_NO_CGROUPS}.",
        sources=frozenset({EVENT, POD_LOG}),
    ),
    Signature(
        # Sources: https://github.com/NVIDIA/libnvidia-container/issues/151 ("failed to add device rules:
        # unable to replace original device filters program ..."), the generic "mount error: failed to add
        # device rules" family of nvidia-container-cli (libnvidia-container src/nvcgo).
        id="nvidia-container-cli-device-rules",
        remedy="modules-patch",
        stage="container-runtime",
        pattern=re.compile(
            r"nvidia-container-cli(?:\.real)?: mount error: failed to add device rules: "
            r"(?!unable to generate new device filter program|unable to find any existing device filters)"
            r"(?P<reason>[^\n]*)"
        ),
        meaning="nvidia-container-cli failed to add the GPU to the container's device cgroup.",
        remediation="Check net.core.bpf_jit_harden is 1 (the seed's modules patch, "
        f"`{_MODULES_PATCH}`) and that the toolkit extension matches the driver. {_NOT_NO_CGROUPS}.",
        sources=frozenset({EVENT, POD_LOG}),
    ),
    Signature(
        # Sources: libnvidia-container src/nvc_container.c error_setx("failed to get device cgroup mount path:
        # %s") / ("failed to get device cgroup root path: %s"); the same family as
        # https://github.com/NVIDIA/nvidia-docker/issues/1660 on cgroup v2 hosts.
        id="nvidia-container-cli-cgroup-path",
        remedy="upgrade",
        stage="container-runtime",
        pattern=re.compile(r"failed to get device cgroup (?P<what>mount|root) path(?::[ \t]*(?P<reason>[^\n]*))?"),
        meaning="nvidia-container-cli looks for a devices cgroup that does not exist on Talos (cgroup v2), "
        "so the GPU container fails to start.",
        remediation="Install a toolkit extension that supports cgroup v2 (nvidia-container-toolkit on the "
        f"kernel modules' track; libnvidia-container ≥ 1.8). {_NOT_NO_CGROUPS}.",
        sources=frozenset({EVENT, POD_LOG}),
    ),
    Signature(
        # Sources: https://github.com/NVIDIA/nvidia-docker/issues/1447, https://github.com/NVIDIA/nvidia-docker/issues/1660,
        # https://github.com/NVIDIA/k8s-device-plugin/issues/324 ("nvidia-container-cli: container error:
        # cgroup subsystem devices not found").
        id="nvidia-container-cli-cgroup-devices-missing",
        remedy="upgrade",
        stage="container-runtime",
        pattern=re.compile(r"cgroup subsystem devices not found"),
        meaning="nvidia-container-cli expects a cgroup v1 devices controller that Talos (cgroup v2) does not "
        "have.",
        remediation="Install a toolkit extension that supports cgroup v2 (nvidia-container-toolkit on the "
        f"kernel modules' track; libnvidia-container ≥ 1.8). {_NOT_NO_CGROUPS}.",
        sources=frozenset({EVENT, POD_LOG}),
    ),
    Signature(
        # Sources: https://github.com/NVIDIA/libnvidia-container/issues/147 ("nvidia-container-cli: mount error:
        # mount operation failed: ..."), https://github.com/NVIDIA/libnvidia-container/issues/119,
        # https://github.com/NVIDIA/k8s-device-plugin/issues/28 ("nvidia-container-cli: ldcache error: ...").
        id="nvidia-container-cli-error",
        remedy="",
        stage="container-runtime",
        pattern=re.compile(
            r"nvidia-container-cli(?:\.real)?: (?P<kind>[a-z]+ error): "
            r"(?!failed to add device rules|failed to get device cgroup|cgroup subsystem devices not found)"
            r"(?P<reason>[^\n]*)"
        ),
        meaning="The NVIDIA container runtime hook failed while preparing a GPU container.",
        remediation="Read the reason; check /etc/nvidia-container-runtime/config.toml "
        "(`talosctl read /etc/nvidia-container-runtime/config.toml`) and that both NVIDIA "
        "extensions carry the same driver version.",
        sources=frozenset({EVENT, POD_LOG}),
    ),
    # ---- RuntimeClass and containerd handler -------------------------------------------------------
    Signature(
        # Sources: kubernetes plugin/pkg/admission/runtimeclass/admission.go
        # (fmt.Errorf("pod rejected: RuntimeClass %q not found", ...));
        # https://github.com/NVIDIA/gpu-operator/issues/575.
        id="runtimeclass-not-found",
        remedy="runtimeclass",
        stage="runtimeclass",
        pattern=re.compile(r"pod rejected: RuntimeClass \"(?P<runtime_class>[^\"\n]+)\" not found"),
        meaning="The API server refuses pods that name a RuntimeClass that does not exist; a DaemonSet then "
        "creates no pod at all (only a FailedCreate event).",
        remediation="kubectl apply -f k8s/manifests/runtimeclass-nvidia.yaml (or let ArgoCD sync it); it must "
        "have handler: nvidia.",
        sources=frozenset({EVENT, POD_LOG}),
    ),
    Signature(
        # Sources: https://github.com/NVIDIA/gpu-operator/issues/730, https://github.com/NVIDIA/gpu-operator/issues/413
        # ("Failed to create pod sandbox: ... failed to get sandbox runtime: no runtime for \"nvidia\" is configured").
        id="no-runtime-handler",
        remedy="upgrade",
        stage="extensions",
        pattern=re.compile(r"no runtime for \"(?P<handler>[^\"\n]+)\" is configured"),
        meaning="The RuntimeClass exists but containerd on the node has no such handler: on Talos the "
        "nvidia handler comes from the nvidia-container-toolkit extension, which is not installed.",
        remediation=f"Install both NVIDIA extensions: `{_UPGRADE}`; then `talosctl get "
        "extensions` lists nvidia-container-toolkit-production.",
        sources=frozenset({EVENT, POD_LOG}),
    ),
    # ---- scheduling --------------------------------------------------------------------------------
    Signature(
        # Sources: https://github.com/NVIDIA/k8s-device-plugin/issues/33, /issues/430, /issues/165
        # ("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.").
        id="insufficient-gpu",
        remedy="describe-node",
        stage="gpu-resources",
        pattern=re.compile(r"Insufficient nvidia\.com/gpu", re.IGNORECASE),
        meaning="No node has a free nvidia.com/gpu: the node does not advertise GPUs (device plugin not "
        "registered) or all of them are taken.",
        remediation="kubectl describe node | grep nvidia.com/gpu; if absent, fix the device plugin "
        "stage first.",
        sources=frozenset({EVENT}),
    ),
    Signature(
        # Sources: kube-scheduler NodeAffinity plugin ("node(s) didn't match Pod's node affinity/selector";
        # older: "node(s) didn't match node selector", https://github.com/NVIDIA/k8s-device-plugin/issues/283).
        id="node-affinity-mismatch",
        remedy="",
        stage="gpu-workload",
        pattern=re.compile(r"didn't match (?:Pod's node affinity/selector|node selector)"),
        meaning="The pod's nodeSelector or node affinity matches no node; a GPU pod pinned to NFD/GFD labels "
        "that nothing sets on Talos never schedules.",
        remediation="Remove the nodeSelector/affinity from the pod (set affinity: null in the values of the "
        "device plugin) or label the node: kubectl label node nvidia.com/gpu.present=true.",
        sources=frozenset({EVENT}),
    ),
    Signature(
        # Source: kube-scheduler TaintToleration plugin ("node(s) had untolerated taint {key: value}";
        # before Kubernetes 1.25: "node(s) had taint {...}, that the pod didn't tolerate").
        id="untolerated-taint",
        remedy="",
        stage="gpu-workload",
        pattern=re.compile(r"had (?:untolerated )?taint \{(?P<taint>[^}\n]*)\}"),
        meaning="The only node carries a taint the pod does not tolerate (on a single-node Talos cluster "
        "usually node-role.kubernetes.io/control-plane).",
        remediation="Add a toleration for the taint to the pod, or allow workloads on the control plane "
        "(cluster.allowSchedulingOnControlPlanes: true in the Talos machine config).",
        sources=frozenset({EVENT}),
    ),
    # ---- kernel log (talosctl dmesg) ---------------------------------------------------------------
    Signature(
        # Source: https://github.com/siderolabs/extensions/issues/909 (Talos 1.11.5, second GPU fails:
        # "NVRM: GPU 0000:01:00.0: RmInitAdapter failed! (0x62:0x65:1859)", "rm_init_adapter failed").
        id="nvrm-rm-init-adapter-failed",
        remedy="dmesg",
        stage="kernel-modules",
        pattern=re.compile(r"(?:RmInitAdapter|rm_init_adapter) failed(?P<detail>[^\n]*)"),
        meaning="The NVIDIA driver failed to initialise a GPU: that GPU is unusable and the node advertises "
        "fewer nvidia.com/gpu.",
        remediation="talosctl dmesg | grep NVRM; check the GPU's power, seating and firmware, "
        "then reboot the node (talosctl reboot).",
        sources=frozenset({DMESG}),
    ),
    Signature(
        # Source: https://github.com/siderolabs/extensions/issues/909 ("NVRM: RmInitAdapter: Cannot initialize
        # GSP firmware RM").
        id="nvrm-gsp-init-failed",
        remedy="reboot",
        stage="kernel-modules",
        pattern=re.compile(r"Cannot initialize GSP firmware RM"),
        meaning="The GPU's GSP firmware did not start, so the open kernel module cannot drive this GPU.",
        remediation="talosctl dmesg | grep NVRM; reboot the node; if it persists, check that "
        "the driver on the production track supports this GPU model.",
        sources=frozenset({DMESG}),
    ),
    Signature(
        # Sources: NVIDIA Xid 79 ("NVRM: Xid (PCI:0000:06:00): 79, pid=..., GPU has fallen off the bus.").
        id="nvrm-fallen-off-bus",
        remedy="reboot",
        stage="kernel-modules",
        pattern=re.compile(r"GPU has fallen off the bus"),
        meaning="A GPU disappeared from the PCIe bus (Xid 79): hardware, power or PCIe link problem.",
        remediation="Reboot the node (talosctl reboot); if it recurs, check the GPU's power and "
        "seating and the server's PCIe settings.",
        sources=frozenset({DMESG}),
    ),
    Signature(
        # Source: NVIDIA open-gpu-kernel-modules kernel-open/nvidia/nv.c ("NVRM: installed in this system is not
        # supported by open nvidia.ko because it does not include the required GPU System Processor (GSP).").
        id="nvrm-gpu-not-supported",
        remedy="upgrade-nonfree",
        stage="extensions",
        pattern=re.compile(r"installed in this system is not supported by (?P<by>[^\n]*)"),
        meaning="The loaded driver does not support this GPU (the open kernel modules need a Turing or newer "
        "GPU with GSP).",
        remediation="For pre-Turing GPUs use the proprietary nonfree-kmod-nvidia extension instead of "
        "nvidia-open-gpu-kernel-modules; H100 NVL is supported by the open modules.",
        sources=frozenset({DMESG}),
    ),
    Signature(
        # Source: NVIDIA kernel module ("NVRM: API mismatch: the client has the version %s, but / NVRM: this
        # kernel module has the version %s.").
        id="nvrm-api-mismatch",
        remedy="upgrade",
        stage="extensions",
        pattern=re.compile(r"API mismatch: the client (?:'[^'\n]*' )?(?:\(pid \d+\) )?has the version (?P<client>\S+?),"),
        meaning="User-space NVIDIA libraries and the loaded kernel module are different driver versions.",
        remediation="Both NVIDIA extensions must carry the same driver version (same track); reinstall them from "
        f"one schematic: `{_UPGRADE}`, or reboot if an upgrade is pending.",
        sources=frozenset({DMESG}),
    ),
    Signature(
        # Source: NVIDIA kernel module ("NVRM: None of the NVIDIA devices were initialized.").
        id="nvrm-no-devices-initialized",
        remedy="dmesg",
        stage="kernel-modules",
        pattern=re.compile(r"None of the NVIDIA devices were initialized"),
        meaning="The nvidia module loaded but initialised no GPU.",
        remediation="talosctl dmesg | grep NVRM to see why each GPU was refused.",
        sources=frozenset({DMESG}),
    ),
    # ---- nvidia-smi ---------------------------------------------------------------------------------
    Signature(
        # Source: nvidia-smi ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.").
        id="nvidia-smi-no-driver",
        remedy="modules-patch",
        stage="kernel-modules",
        pattern=re.compile(r"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver"),
        meaning="nvidia-smi found the libraries but no working kernel driver.",
        remediation=f"Load the modules: `{_MODULES_PATCH}`; check `talosctl read /proc/modules`.",
        sources=frozenset({NVIDIA_SMI, POD_LOG}),
    ),
    # ---- cluster ----------------------------------------------------------------------------------
    Signature(
        # Source: samples/talos/health-ok-full-with-transients.txt ("some nodes are not ready: [k8s-0]").
        id="k8s-nodes-not-ready",
        remedy="kubelet",
        stage="cluster",
        pattern=re.compile(r"some nodes are not ready: \[(?P<nodes>[^\]\n]*)\]"),
        meaning="Kubernetes reports the node NotReady.",
        remediation="kubectl describe node (conditions, CNI); talosctl service kubelet.",
        sources=frozenset({HEALTH}),
    ),
    Signature(
        # Sources: samples/talos/health-fail-etcd-preparing.txt (https://github.com/siderolabs/talos/issues/12214),
        # health-fail-timeout.txt (https://github.com/onedr0p/cluster-template/issues/1500).
        id="etcd-not-healthy",
        remedy="etcd",
        stage="cluster",
        pattern=re.compile(r"service \"etcd\" not in expected state \"Running\"[^\n]*|service is not healthy: etcd"),
        meaning="etcd on the node is not running, so the Kubernetes API cannot be healthy.",
        remediation="talosctl service etcd; talosctl logs etcd.",
        sources=frozenset({HEALTH}),
    ),
)


def _normalise_sources(sources: Iterable[str] | str | None) -> frozenset[str] | None:
    if sources is None:
        return None
    if isinstance(sources, str):
        return frozenset({sources})
    return frozenset(sources)


def _trim_around(line: str, start: int, end: int, limit: int = LINE_LIMIT) -> str:
    """The line, or a window of it around [start, end) when it is longer than ``limit``."""
    line = line.strip()
    if len(line) <= limit:
        return line
    # Recompute the span inside the stripped line (strip removed only leading/trailing blanks).
    width = limit - 2
    before = max(0, min(start - 20, len(line) - width))
    if end > before + width:  # a long match: keep its end, where Go-style errors name the cause
        before = max(0, min(end, len(line)) - width)
    window = line[before : before + width]
    prefix = "…" if before > 0 else ""
    suffix = "…" if before + width < len(line) else ""
    return prefix + window + suffix


def match_signatures(text: str, *, sources: Iterable[str] | str | None = None) -> list[SignatureMatch]:
    """Every known failure message in ``text``, in order of appearance.

    One match per (signature, distinct line): a message repeated on identical lines (restart loops) is
    reported once. ``sources`` (e.g. "pod-log", "event", "dmesg", "health", "nvidia-smi") restricts the
    catalog to signatures that make sense in that kind of text; None uses the whole catalog.
    """
    if not isinstance(text, str) or not text:
        return []
    wanted = _normalise_sources(sources)
    clean = _ANSI_ESCAPE_RE.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    found: list[tuple[int, int, SignatureMatch]] = []
    seen: set[tuple[str, str]] = set()
    newlines: list[int] | None = None  # positions of "\n", computed on the first match
    for order, signature in enumerate(SIGNATURES):
        if wanted is not None and not (signature.sources & wanted):
            continue
        for match in signature.pattern.finditer(clean):
            line_start = clean.rfind("\n", 0, match.start()) + 1
            line_end = clean.find("\n", match.start())
            if line_end < 0:
                line_end = len(clean)
            raw_line = clean[line_start:line_end]
            key = (signature.id, raw_line.strip())
            if key in seen:
                continue
            seen.add(key)
            offset = len(raw_line) - len(raw_line.lstrip())
            quote = match.group(0).strip()
            if len(quote) > LINE_LIMIT:
                quote = quote[: LINE_LIMIT - 1] + "…"
            if newlines is None:
                newlines = [m.start() for m in _NEWLINE_RE.finditer(clean)]
            captures = tuple((name, value.strip()) for name, value in match.groupdict().items() if value)
            found.append(
                (
                    match.start(),
                    order,
                    SignatureMatch(
                        signature=signature,
                        line=_trim_around(raw_line, match.start() - line_start - offset, match.end() - line_start),
                        quote=quote,
                        captures=captures,
                        line_number=bisect.bisect_left(newlines, line_start) + 1,
                    ),
                )
            )
    found.sort(key=lambda item: (item[0], item[1]))
    return [item[2] for item in found]


def signature_by_id(signature_id: str) -> Signature | None:
    """The catalog entry with this id, or None."""
    for signature in SIGNATURES:
        if signature.id == signature_id:
            return signature
    return None
