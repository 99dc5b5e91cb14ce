"""The infra repository's files: the seed's content (single source for the actions) and a drift lint.

The seed keeps its GPU setup as four files in a Git repository (the profile's `infra_repo`):

| file | stage |
|---|---|
| `talos/patches/nvidia-oss-modules.yaml` | kernel-modules |
| `talos/patches/nvidia-no-cgroups.yaml` | container-runtime |
| `k8s/manifests/runtimeclass-nvidia.yaml` | runtimeclass |
| `k8s/nvidia-device-plugin/values.yaml` (profile `device_plugin.values`) | device-plugin |

`seed_files(profile)` renders them; the actions write them when missing. `lint_infra(profile)` reads
the ones that exist, never writes, and says where they no longer say what the seed needs.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from checks import yamlsafe
from checks.profile import Profile

MODULES_PATCH = "talos/patches/nvidia-oss-modules.yaml"
NO_CGROUPS_PATCH = "talos/patches/nvidia-no-cgroups.yaml"
RUNTIMECLASS_MANIFEST = "k8s/manifests/runtimeclass-nvidia.yaml"

CONTAINER_RUNTIME_CONFIG = "/etc/nvidia-container-runtime/config.toml"
CONTAINER_RUNTIME_TOML = "[nvidia-container-cli]\nno-cgroups = true\n"
BPF_SYSCTL = "net.core.bpf_jit_harden"
RUNTIME_HANDLER = "nvidia"  # the containerd handler the nvidia-container-toolkit extension registers

CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"


def values_relative(profile: Profile) -> str:
    return profile.device_plugin.values


def stage_files(profile: Profile) -> dict[str, str]:
    """Stage id → the relative path of the infra file its action uses."""
    return {
        "kernel-modules": MODULES_PATCH,
        "container-runtime": NO_CGROUPS_PATCH,
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


def modules_patch(profile: Profile) -> str:
    modules = "".join(f"      - name: {name}\n" for name in profile.modules)
    return (
        "# Load the NVIDIA open GPU kernel modules (shipped by the nvidia-open-gpu-kernel-modules extension)\n"
        "# and harden the BPF JIT as the NVIDIA container toolkit expects. Apply with:\n"
        f"#   talosctl patch mc --nodes <node> --patch @{MODULES_PATCH}\n"
        "machine:\n"
        "  kernel:\n"
        "    modules:\n"
        f"{modules}"
        "  sysctls:\n"
        f"    {BPF_SYSCTL}: 1\n"
    )


def no_cgroups_patch(profile: Profile) -> str:  # noqa: ARG001 - same signature as the other renderers
    content = "".join(f"        {line}\n" for line in CONTAINER_RUNTIME_TOML.splitlines())
    return (
        "# Tell nvidia-container-cli not to manage cgroups itself (the seed's setup).\n"
        "# A machine.files change reboots the node when applied with --mode auto. Apply with:\n"
        f"#   talosctl patch mc --nodes <node> --patch @{NO_CGROUPS_PATCH}\n"
        "machine:\n"
        "  files:\n"
        "    - content: |\n"
        f"{content}"
        "      permissions: 0o644\n"
        f"      path: {CONTAINER_RUNTIME_CONFIG}\n"
        "      op: create\n"
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
        NO_CGROUPS_PATCH: no_cgroups_patch(profile),
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
        drift.append(f"infra repo: {rel} sets {BPF_SYSCTL} to {sysctl}, the seed needs 1")
    return drift


def _no_cgroups_value(content: str) -> bool | None:
    try:
        data = tomllib.loads(content)
    except tomllib.TOMLDecodeError:
        return None
    value = _mapping(data.get("nvidia-container-cli")).get("no-cgroups")
    return value if isinstance(value, bool) else None


def _lint_no_cgroups_patch(rel: str, docs: list[Any], _profile: Profile) -> list[str]:
    entries = [entry for machine in _machine_sections(docs) for entry in machine.get("files") or []
               if isinstance(entry, Mapping) and entry.get("path") == CONTAINER_RUNTIME_CONFIG]
    if not entries:
        return [f"infra repo: {rel} writes no {CONTAINER_RUNTIME_CONFIG} (machine.files)"]
    content = entries[-1].get("content")
    if not isinstance(content, str) or _no_cgroups_value(content) is not True:
        return [f"infra repo: {rel} does not set no-cgroups = true under [nvidia-container-cli]"]
    return []


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
        drift.append(f"infra repo: {rel} sets an affinity; the seed sets affinity: null")
    return drift


_LINTERS = {
    "kernel-modules": _lint_modules_patch,
    "container-runtime": _lint_no_cgroups_patch,
    "runtimeclass": _lint_runtimeclass,
    "device-plugin": _lint_values,
}


def lint_infra(profile: Profile) -> dict[str, list[str]]:
    """Stage id → drift lines for the infra files that exist (missing files are not drift). Read-only."""
    findings: dict[str, list[str]] = {}
    for stage, rel in stage_files(profile).items():
        if stage == "container-runtime" and not profile.no_cgroups:
            continue
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
    return findings
