"""One place for remedies: functions of (target, profile, finding) that return what a person does next.

A `Remedy` is a command that runs as pasted in a shell (`command`: the node, namespace, release and file
paths filled in from the target and the profile, never a placeholder such as ``<node>``, never a prose
suffix) or None, and `advice`: the prose around it (what it changes, that it reboots, what to look at).
JSON `remediation`/`advice`, the TUI's Fix line and its copy, `enable`'s next step and the Markdown
report all take them from here (through the judges' `Judgement`).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from checks import infra
from checks.profile import Profile
from checks.schematic import canonical_schematic_yaml, installer_image, nvidia_schematic, schematic_id

if TYPE_CHECKING:  # pragma: no cover
    from checks.signatures import Signature

PLUGIN_CONTAINER = "nvidia-device-plugin-ctr"
"""The chart's device-plugin container: a log request on a two-container pod (time-slicing's
config-manager sidecar) must name it (FACTS.md)."""
NONFREE_KMOD_BASE = "nonfree-kmod-nvidia"


@dataclass(frozen=True)
class Remedy:
    command: str | None = None
    advice: str | None = None


NONE = Remedy()


def _q(value: str | Path) -> str:
    return shlex.quote(str(value))


def infra_path(profile: Profile, relative: str) -> str:
    """A file of the infra repo as a path a shell resolves from anywhere (the profile's infra_repo; without
    a profile file, the default "." is the directory talos-gpu was started in, said in full)."""
    return os.path.abspath(Path(profile.infra_repo).expanduser() / relative)


def _talosctl(node: str, *args: str) -> str:
    return shlex.join(["talosctl", "--nodes", node, *args])


def _helm(*args: str) -> str:
    return shlex.join(["helm", *args])


def _kubectl(*args: str) -> str:
    return shlex.join(["kubectl", *args])


# ---- argv: one builder per action --------------------------------------------------------------
# A remedy here and a step of `enable`'s plan (checks/actions/, checks/paths/*/actions.py) that do the same
# thing take their arguments from the same function, so that the command a person pastes and the one the
# action runs cannot drift. The builders return what follows the program and its global flags: a plan puts
# `talosctl --talosconfig … --nodes N` (or `helm --kubeconfig …`) in front, a remedy `talosctl --nodes N`.


def upgrade_args(image: str) -> tuple[str, ...]:
    """`talosctl upgrade` always with the image: without it current talosctl installs the vanilla image."""
    return ("upgrade", "--image", image)


def patch_file_args(path: str | Path) -> tuple[str, ...]:
    return ("patch", "mc", "--patch", f"@{path}")


def patch_inline_args(patch: str) -> tuple[str, ...]:
    return ("patch", "mc", "--patch", patch)


def helm_install_args(release: str, chart: str, namespace: str, values: str | Path,
                      version: str | None = None) -> tuple[str, ...]:
    args = ("upgrade", "--install", release, chart, "-n", namespace)
    if version:
        args += ("--version", version)
    return args + ("-f", str(values))


def helm_repo_add_args(name: str, url: str) -> tuple[str, ...]:
    return ("repo", "add", name, url)


def helm_uninstall_args(release: str, namespace: str) -> tuple[str, ...]:
    return ("uninstall", release, "-n", namespace)


def delete_runtimeclass_args(name: str) -> tuple[str, ...]:
    return ("delete", "runtimeclass", name)


def label_namespace_args(namespace: str, label: str, value: str) -> tuple[str, ...]:
    return ("label", "--overwrite", "ns", namespace, f"{label}={value}")


def extension_schematic(track: str, *, nonfree: bool = False, fabricmanager: bool = False) -> tuple[str, str, str]:
    """(schematic YAML, id, the extensions listed) for the NVIDIA extensions of ``track``: the open kernel
    modules (or, with ``nonfree``, the proprietary ones) and the toolkit, plus Fabric Manager on NVSwitch
    boards. The upgrade remedy and `enable`'s extensions plan both take the schematic from here."""
    if not nonfree:
        schematic_yaml, schematic = nvidia_schematic(track, fabricmanager=fabricmanager)
        names = [f"nvidia-open-gpu-kernel-modules-{track}", f"nvidia-container-toolkit-{track}"]
        if fabricmanager:
            names.append(f"nvidia-fabricmanager-{track}")
        return schematic_yaml, schematic, ", ".join(names)
    official = [f"siderolabs/nvidia-container-toolkit-{track}", f"siderolabs/{NONFREE_KMOD_BASE}-{track}"]
    if fabricmanager:
        official.append(f"siderolabs/nvidia-fabricmanager-{track}")
    schematic_yaml = canonical_schematic_yaml(official)
    return schematic_yaml, schematic_id(schematic_yaml), ", ".join(n.split("/", 1)[1] for n in official)


# ---- extensions ---------------------------------------------------------------------------------


def upgrade(node: str, profile: Profile, talos_version: str, *, nonfree: bool = False,
            fabricmanager: bool = False) -> Remedy:
    """Install the NVIDIA extensions of the profile's track with `talosctl upgrade` (reboots)."""
    _yaml, schematic, listed = extension_schematic(profile.track, nonfree=nonfree, fabricmanager=fabricmanager)
    image = installer_image(schematic, talos_version)
    advice = (f"installs the schematic with {listed} (Talos {talos_version}); this reboots node {node}. "
              "Register the schematic with the Image Factory first (talos-gpu enable --factory does)")
    return Remedy(_talosctl(node, *upgrade_args(image)), advice)


# ---- kernel modules -----------------------------------------------------------------------------


def modules_patch(node: str, profile: Profile) -> Remedy:
    path = infra_path(profile, infra.MODULES_PATCH)
    return Remedy(_talosctl(node, *patch_file_args(path)),
                  f"{path} requests the modules {', '.join(profile.modules)} (and, on the device-plugin path, "
                  "sysctl net.core.bpf_jit_harden: 1); talos-gpu enable writes it when missing")


def reboot(node: str, why: str) -> Remedy:
    return Remedy(_talosctl(node, "reboot"), f"{why}; this reboots node {node}")


def kernel_log(node: str, advice: str) -> Remedy:
    return Remedy(_talosctl(node, "dmesg"), advice)


# ---- machine config / boot ----------------------------------------------------------------------


def remove_files(node: str, indexes: list[int]) -> Remedy:
    from checks.patch_guard import removal_patch

    return Remedy(_talosctl(node, *patch_inline_args(removal_patch(indexes))),
                  "removes the machine.files entries Talos refuses at boot; a machine.files change reboots the "
                  "node, which then boots through")


def edit_config(node: str) -> Remedy:
    return Remedy(_talosctl(node, "edit", "mc"),
                  "fix what the kernel log names while the node waits (or use apply-config); then follow the reboot")


# ---- cluster ------------------------------------------------------------------------------------


def talos_version(node: str) -> Remedy:
    return Remedy(_talosctl(node, "version"),
                  f"check that node {node} is up and that the talosconfig endpoints reach it")


def health(node: str) -> Remedy:
    return Remedy(_talosctl(node, "health"), "then fix what it reports")


def service(node: str, name: str, advice: str) -> Remedy:
    return Remedy(_talosctl(node, "service", name), advice)


def logs(node: str, name: str, advice: str) -> Remedy:
    return Remedy(_talosctl(node, "logs", name), advice)


def describe_node(kube_node: str, advice: str) -> Remedy:
    return Remedy(shlex.join(["kubectl", "describe", "node", kube_node]), advice)


def cni_not_ready(kube_node: str, namespace: str = "kube-system") -> Remedy:
    return Remedy(shlex.join(["kubectl", "-n", namespace, "get", "pods", "-o", "wide",
                              "--field-selector", f"spec.nodeName={kube_node}"]),
                  "the kubelet runs; the container network (CNI) is not up on this node: look at the CNI's pods "
                  "(Flannel, Cilium, …) on it and at the machine config's cluster.network.cni")


def get_nodes() -> Remedy:
    return Remedy("kubectl get nodes -o wide", "is the kubelet registered? is this the right kubeconfig?")


# ---- RuntimeClass -------------------------------------------------------------------------------


def runtimeclass_apply(profile: Profile) -> Remedy:
    path = infra_path(profile, infra.RUNTIMECLASS_MANIFEST)
    return Remedy(shlex.join(["kubectl", "apply", "-f", path]),
                  f"creates RuntimeClass {profile.runtime_class} with handler {profile.runtime_class}; in a GitOps "
                  "setup commit the manifest and let ArgoCD sync it")


# ---- device plugin ------------------------------------------------------------------------------


def helm_install(profile: Profile, advice: str | None = None) -> Remedy:
    spec = profile.device_plugin
    values = infra_path(profile, spec.values)
    return Remedy(_helm(*helm_install_args(spec.release, spec.chart, spec.namespace, values)),
                  advice or f"installs or updates the device plugin from {values}")


def values_fix(profile: Profile, what: str) -> Remedy:
    values = infra_path(profile, profile.device_plugin.values)
    return helm_install(profile, f"set {what} in {values}, then run this")


def tolerate_taint(profile: Profile, taints: list[str]) -> Remedy:
    values = infra_path(profile, profile.device_plugin.values)
    listed = ", ".join(taints)
    return helm_install(profile, f"the node's taint {listed} is not tolerated: add a toleration for it under "
                        f"tolerations: in {values} (e.g. key, operator: Exists, effect), then run this")


def replace_unmanaged(fix: Remedy, namespace: str, daemonset: str) -> Remedy:
    """``fix`` (the chart's install) for a device plugin DaemonSet that is not from Helm (the static manifest):
    the chart's plugin replaces it, and the old one must go, or two plugins serve each node."""
    delete = shlex.join(["kubectl", "-n", namespace, "delete", "ds", daemonset])
    return Remedy(fix.command, f"{fix.advice}; DaemonSet {namespace}/{daemonset} is not from Helm (the static "
                  f"manifest?): once the chart's plugin runs, remove it ({delete}) so that one device plugin runs "
                  "per node")


def describe_pod(namespace: str, pod: str, advice: str | None = None) -> Remedy:
    return Remedy(shlex.join(["kubectl", "-n", namespace, "describe", "pod", pod]), advice)


def pod_log(namespace: str, pod: str, advice: str | None = None) -> Remedy:
    return Remedy(shlex.join(["kubectl", "-n", namespace, "logs", pod, "-c", PLUGIN_CONTAINER]), advice)


def restart_pod(namespace: str, pod: str, advice: str) -> Remedy:
    return Remedy(shlex.join(["kubectl", "-n", namespace, "delete", "pod", pod]), advice)


def helm_repo_add(name: str, url: str, advice: str | None = None) -> Remedy:
    return Remedy(_helm(*helm_repo_add_args(name, url)), advice)


# ---- GPU Operator -------------------------------------------------------------------------------


def operator_install(profile: Profile, advice: str | None = None) -> Remedy:
    spec = profile.gpu_operator
    values = infra_path(profile, spec.values)
    return Remedy(_helm(*helm_install_args(spec.release, spec.chart, spec.namespace, values, spec.version)),
                  advice or f"installs or updates the GPU Operator {spec.version} from {values}")


def helm_uninstall(release: str, namespace: str, advice: str | None = None) -> Remedy:
    return Remedy(_helm(*helm_uninstall_args(release, namespace)), advice)


def delete_runtimeclass(name: str, advice: str | None = None) -> Remedy:
    return Remedy(_kubectl(*delete_runtimeclass_args(name)), advice)


def label_namespace(namespace: str, label: str, value: str, advice: str | None = None) -> Remedy:
    return Remedy(_kubectl(*label_namespace_args(namespace, label, value)), advice)


def describe_ds(namespace: str, name: str) -> Remedy:
    return Remedy(shlex.join(["kubectl", "-n", namespace, "describe", "ds", name]), None)


# ---- signatures ---------------------------------------------------------------------------------


def for_signature(signature: Signature, node: str, profile: Profile, talos_version: str,
                  kube_node: str | None = None, pod: tuple[str, str] | None = None) -> Remedy:
    """The remedy for a known failure message: a command from its `remedy` kind and its prose as advice."""
    kind = signature.remedy
    advice = signature.remediation
    if kind == "helm-values":
        command = helm_install(profile).command
    elif kind == "modules-patch":
        command = modules_patch(node, profile).command
    elif kind == "upgrade":
        command = upgrade(node, profile, talos_version).command
    elif kind == "upgrade-nonfree":
        command = upgrade(node, profile, talos_version, nonfree=True).command
    elif kind == "reboot":
        command = _talosctl(node, "reboot")
    elif kind == "dmesg":
        command = _talosctl(node, "dmesg")
    elif kind == "runtimeclass":
        command = runtimeclass_apply(profile).command
    elif kind == "describe-node" and kube_node:
        command = describe_node(kube_node, advice).command
    elif kind == "restart-pod" and pod:
        command = restart_pod(pod[0], pod[1], advice).command
    elif kind == "pod-log" and pod:
        command = pod_log(pod[0], pod[1]).command
    elif kind == "kubelet":
        command = _talosctl(node, "service", "kubelet")
    elif kind == "etcd":
        command = _talosctl(node, "service", "etcd")
    else:
        command = None
    return Remedy(command, advice)
