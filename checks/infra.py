"""The infra repository's files: the seed's content (single source for the actions) and a drift lint.

The seed keeps its GPU setup as files in a Git repository (the profile's `infra_repo`):

| file | stage |
|---|---|
| `talos/patches/nvidia-oss-modules.yaml` | kernel-modules |
| `k8s/manifests/runtimeclass-nvidia.yaml` | runtimeclass |
| `k8s/nvidia-device-plugin/values.yaml` (profile `device_plugin.values`) | device-plugin |

The runbook's fourth file, `talos/patches/nvidia-no-cgroups.yaml` (step 4.1), is never written: its
`machine.files` entry creates `/etc/nvidia-container-runtime/config.toml`, a create outside `/var` that
Talos refuses at boot (the node stops in `writeUserFiles` and reboots in a loop), and the runtime never
reads that file. Every machine-config patch in `talos/patches/` is checked with `checks.patch_guard`;
one that Talos would refuse at boot is `container-runtime` evidence saying so.

`seed_files(profile)` renders them; the actions write them when missing. `lint_infra(profile)` reads
the ones that exist, never writes, and says where they no longer say what the seed needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from checks import yamlsafe
from checks.profile import Profile

MODULES_PATCH = "talos/patches/nvidia-oss-modules.yaml"
NO_CGROUPS_PATCH = "talos/patches/nvidia-no-cgroups.yaml"  # the runbook's step 4.1: never written or applied
PATCHES_DIR = "talos/patches"
RUNTIMECLASS_MANIFEST = "k8s/manifests/runtimeclass-nvidia.yaml"
# Why the runbook's step 4.1 is not followed (enable's plan, the TUI's details for container-runtime).
RUNBOOK_STEP_NOTE = (
    f"the runbook's step 4.1 ({NO_CGROUPS_PATCH}) is not followed: its machine.files entry creates "
    "/etc/nvidia-container-runtime/config.toml, outside /var, which Talos refuses at boot (the node stops in "
    "writeUserFiles and reboots in a loop); the runtime does not read that file anyway (the toolkit extension's "
    "runtime uses /usr/local/etc/nvidia-container-runtime/config.toml), and NVIDIA documents no-cgroups for "
    "rootless containers only")

CONTAINER_RUNTIME_CONFIG = "/etc/nvidia-container-runtime/config.toml"
BPF_SYSCTL = "net.core.bpf_jit_harden"
RUNTIME_HANDLER = "nvidia"  # the containerd handler the nvidia-container-toolkit extension registers

CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"


def values_relative(profile: Profile) -> str:
    return profile.device_plugin.values


def stage_files(profile: Profile) -> dict[str, str]:
    """Stage id → the relative path of the infra file its action uses."""
    return {
        "kernel-modules": MODULES_PATCH,
        "runtimeclass": RUNTIMECLASS_MANIFEST,
        "device-plugin": values_relative(profile),
    }


# --------------------------------------------------------------------------- paths


class OutsideRepo(ValueError):
    """An infra file's path leaves the repo (`..`, an absolute path, a symlink to elsewhere)."""


def path_in_repo(repo: Path, relative: str) -> Path:
    """`repo/relative`, checked to stay inside the repo; raises OutsideRepo with a one-line reason.

    Every component from the repo down to the file is looked at: a symlink (to a directory or to a
    file) whose target is outside the repo is refused, never followed, for reading and for writing
    alike (a `talos/patches` that points elsewhere would get the files written there; a patch that
    points at a credentials file would be shown and applied). Symlinks that stay inside are fine.
    The file itself need not exist.
    """
    root = Path(os.path.abspath(repo))
    real_root = Path(os.path.realpath(root))
    parts = Path(relative).parts
    if Path(relative).is_absolute() or ".." in parts or not parts:
        raise OutsideRepo(f"infra repo: {relative}: the path leaves the repo {root} (absolute or '..')")
    current = root
    for index, part in enumerate(parts, 1):
        current = current / part
        if current.is_symlink():
            target = Path(os.path.realpath(current))
            if not target.is_relative_to(real_root):
                raise OutsideRepo(f"infra repo: {Path(*parts[:index])} is a symlink to {target}, outside the repo "
                                  f"{root}: refusing to follow it")
    final = Path(os.path.realpath(root / relative))
    if not final.is_relative_to(real_root):
        raise OutsideRepo(f"infra repo: {relative}: resolves to {final}, outside the repo {root}: refusing it")
    return root / relative


# --------------------------------------------------------------------------- seed content


def modules_machine_config(profile: Profile) -> str:
    """`machine.kernel.modules` with the profile's modules: the body of both paths' modules patches."""
    modules = "".join(f"      - name: {name}\n" for name in profile.modules)
    return "machine:\n  kernel:\n    modules:\n" + modules


def modules_patch(profile: Profile) -> str:
    return (
        "# Load the NVIDIA open GPU kernel modules (shipped by the nvidia-open-gpu-kernel-modules extension)\n"
        "# and harden the BPF JIT as the NVIDIA container toolkit expects. Apply with:\n"
        f"#   talosctl patch mc --nodes <node> --patch @{MODULES_PATCH}\n"
        f"{modules_machine_config(profile)}"
        "  sysctls:\n"
        f"    {BPF_SYSCTL}: 1\n"
    )


def runtimeclass_manifest(profile: Profile) -> str:
    return (
        "# The RuntimeClass GPU pods ask for; in a GitOps setup ArgoCD applies this file.\n"
        "apiVersion: node.k8s.io/v1\n"
        "kind: RuntimeClass\n"
        "metadata:\n"
        f"  name: {profile.runtime_class}\n"
        f"handler: {RUNTIME_HANDLER}\n"
    )


def device_plugin_values(profile: Profile) -> str:
    spec = profile.device_plugin
    return (
        f"# Helm values for {spec.chart} (release {spec.release} in {spec.namespace}). Install with:\n"
        f"#   helm upgrade --install {spec.release} {spec.chart} -n {spec.namespace} -f {spec.values}\n"
        "# Run the plugin under the nvidia runtime, or it cannot load NVML.\n"
        f"runtimeClassName: {profile.runtime_class}\n"
        "# The chart's default node affinity needs NFD/GFD labels; without them it schedules no pod.\n"
        "affinity: null\n"
        "nodeSelector:\n"
        "  kubernetes.io/os: linux\n"
        "tolerations:\n"
        f"  - key: {CONTROL_PLANE_TAINT}\n"
        "    operator: Exists\n"
        "    effect: NoSchedule\n"
        "  - key: CriticalAddonsOnly\n"
        "    operator: Exists\n"
    )


def seed_files(profile: Profile) -> dict[str, str]:
    """Relative path (inside `profile.infra_repo`) → the seed's content for it."""
    return {
        MODULES_PATCH: modules_patch(profile),
        RUNTIMECLASS_MANIFEST: runtimeclass_manifest(profile),
        values_relative(profile): device_plugin_values(profile),
    }


# --------------------------------------------------------------------------- lint


class _Unreadable(Exception):
    pass


def _load_documents(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _Unreadable("is not UTF-8 text") from None
    except OSError as exc:
        raise _Unreadable(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        return [doc for doc in yamlsafe.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise _Unreadable(f"is not valid YAML{where}") from None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _machine_sections(docs: list[Any]) -> list[Mapping[str, Any]]:
    return [_mapping(_mapping(doc).get("machine")) for doc in docs]


def _lint_modules_patch(rel: str, docs: list[Any], profile: Profile) -> list[str]:
    names: set[str] = set()
    sysctl: Any = None
    for machine in _machine_sections(docs):
        for entry in _mapping(machine.get("kernel")).get("modules") or []:
            if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
                names.add(entry["name"])
        sysctls = _mapping(machine.get("sysctls"))
        if BPF_SYSCTL in sysctls:
            sysctl = sysctls[BPF_SYSCTL]
    drift: list[str] = []
    missing = [m for m in profile.modules if m not in names]
    if missing:
        drift.append(f"infra repo: {rel} does not load {', '.join(missing)} (machine.kernel.modules)")
    if sysctl is None:
        drift.append(f"infra repo: {rel} sets no machine.sysctls {BPF_SYSCTL}")
    elif str(sysctl).strip() != "1":
        drift.append(f"infra repo: {rel} sets {BPF_SYSCTL} to {sysctl}; it must be 1")
    return drift


def lint_patches(profile: Profile) -> list[str]:
    """Each machine-config patch in the infra repo's talos/patches/ that Talos would refuse at boot, with
    the rule and the line (`checks.patch_guard`). Such a patch is never applied by this tool."""
    from checks.patch_guard import check_patch

    directory = profile.infra_repo / PATCHES_DIR
    if not directory.is_dir():
        return []
    lines: list[str] = []
    for path in sorted(directory.iterdir()):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        relative = f"{PATCHES_DIR}/{path.name}"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            lines.append(f"infra repo: {relative} cannot be read as text")
            continue
        for violation in check_patch(text):
            where = f"{relative} line {violation.line}" if violation.line else relative
            runbook = " (the runbook's step 4.1: not followed)" if relative == NO_CGROUPS_PATCH else ""
            lines.append(f"infra repo: {where} would stop the next boot: {violation.rule}; Talos's writeUserFiles "
                         f"fails with {violation.talos_error}{runbook}; never apply it")
    return lines


def _lint_runtimeclass(rel: str, docs: list[Any], profile: Profile) -> list[str]:
    classes = [_mapping(d) for d in docs if _mapping(d).get("kind") == "RuntimeClass"]
    wanted = [c for c in classes if _mapping(c.get("metadata")).get("name") == profile.runtime_class]
    if not wanted:
        return [f"infra repo: {rel} defines no RuntimeClass {profile.runtime_class}"]
    handler = wanted[0].get("handler")
    if handler != RUNTIME_HANDLER:
        return [f"infra repo: {rel} sets handler {handler or 'none'}, expected {RUNTIME_HANDLER}"]
    return []


def _lint_values(rel: str, docs: list[Any], profile: Profile) -> list[str]:
    values = _mapping(docs[0]) if docs else {}
    drift: list[str] = []
    runtime_class = values.get("runtimeClassName")
    if not runtime_class:
        drift.append(f"infra repo: {rel} sets no runtimeClassName")
    elif runtime_class != profile.runtime_class:
        drift.append(f"infra repo: {rel} sets runtimeClassName {runtime_class}, expected {profile.runtime_class}")
    if "affinity" not in values:
        drift.append(f"infra repo: {rel} does not set affinity: null (the chart's default needs NFD/GFD labels)")
    elif values["affinity"] is not None:
        drift.append(f"infra repo: {rel} sets an affinity; the device plugin needs affinity: null")
    return drift


_LINTERS = {
    "kernel-modules": _lint_modules_patch,
    "runtimeclass": _lint_runtimeclass,
    "device-plugin": _lint_values,
}


def lint_infra(profile: Profile) -> dict[str, list[str]]:
    """Stage id → drift lines for the infra files that exist (missing files are not drift). Read-only."""
    findings: dict[str, list[str]] = {}
    for stage, rel in stage_files(profile).items():
        try:
            path = path_in_repo(profile.infra_repo, rel)
        except OutsideRepo as exc:
            findings[stage] = [str(exc)]
            continue
        if not path.is_file():
            continue
        try:
            docs = _load_documents(path)
        except _Unreadable as exc:
            findings[stage] = [f"infra repo: {rel} {exc}"]
            continue
        drift = _LINTERS[stage](rel, docs, profile)
        if drift:
            findings[stage] = drift
    refused = lint_patches(profile)
    if refused:
        findings["container-runtime"] = refused
    return findings
