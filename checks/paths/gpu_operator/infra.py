"""The infra repo's files on the gpu-operator path: what its actions write when they are missing, and the
drift the checks point out in the ones that exist (`lint`)."""

from __future__ import annotations

from typing import Any

from checks import infra
from checks.profile import Profile


def modules_patch(profile: Profile) -> str:
    """The modules only: Talos ≥ 1.13 (CDI, the GPU Operator) needs no bpf_jit_harden sysctl."""
    return (
        "# Load the NVIDIA GPU kernel modules that the kernel-modules extension ships. On Talos 1.13 and later\n"
        "# (CDI and the GPU Operator) no sysctl is needed. Apply with:\n"
        f"#   talosctl patch mc --nodes <node> --patch @{infra.MODULES_PATCH}\n"
        f"{infra.modules_machine_config(profile)}"
    )


def operator_values(profile: Profile) -> str:
    spec = profile.gpu_operator
    return (
        "# The NVIDIA GPU Operator on Talos: the system extensions bring the driver and the container toolkit,\n"
        "# so the operator deploys neither; it finds the driver under /usr/local. Install with:\n"
        f"#   helm upgrade --install {spec.release} {spec.chart} -n {spec.namespace} --version {spec.version} "
        f"-f {spec.values}\n"
        "driver:\n"
        "  enabled: false\n"
        "toolkit:\n"
        "  enabled: false\n"
        "hostPaths:\n"
        "  driverInstallDir: /usr/local\n"
        "# The operands tolerate the control-plane taint too (a node that is both); the chart's default list\n"
        "# holds only the nvidia.com/gpu one, and this list replaces it.\n"
        "daemonsets:\n"
        "  tolerations:\n"
        "    - key: nvidia.com/gpu\n"
        "      operator: Exists\n"
        "      effect: NoSchedule\n"
        f"    - key: {infra.CONTROL_PLANE_TAINT}\n"
        "      operator: Exists\n"
        "      effect: NoSchedule\n"
    )


def sets_bpf_sysctl(docs: list[Any]) -> bool:
    return any(infra.BPF_SYSCTL in infra._mapping(machine.get("sysctls")) for machine in infra._machine_sections(docs))


def _lint_modules(rel: str, docs: list[Any], profile: Profile) -> list[str]:
    names = {entry["name"] for machine in infra._machine_sections(docs)
             for entry in infra._mapping(machine.get("kernel")).get("modules") or []
             if isinstance(entry, dict) and isinstance(entry.get("name"), str)}
    drift = []
    missing = [m for m in profile.modules if m not in names]
    if missing:
        drift.append(f"infra repo: {rel} does not load {', '.join(missing)} (machine.kernel.modules)")
    if sets_bpf_sysctl(docs):
        drift.append(f"infra repo: {rel} sets {infra.BPF_SYSCTL}, which the gpu-operator path (Talos ≥ 1.13) does not "
                     "use: remove it")
    return drift


def _lint_values(rel: str, docs: list[Any], profile: Profile) -> list[str]:
    values = infra._mapping(docs[0]) if docs else {}
    drift = []
    for section in ("driver", "toolkit"):
        if infra._mapping(values.get(section)).get("enabled") is not False:
            drift.append(f"infra repo: {rel} does not set {section}.enabled: false (the Talos extensions provide it)")
    install_dir = infra._mapping(values.get("hostPaths")).get("driverInstallDir")
    if install_dir != "/usr/local":
        drift.append(f"infra repo: {rel} sets hostPaths.driverInstallDir {install_dir or '(not set)'}, expected "
                     "/usr/local")
    return drift


def lint(profile: Profile) -> dict[str, list[str]]:
    """Stage id → drift lines, for the files that exist (missing ones are not drift). Read-only."""
    findings: dict[str, list[str]] = {}
    for stage, rel, linter in (("kernel-modules", infra.MODULES_PATCH, _lint_modules),
                               ("device-plugin", profile.gpu_operator.values, _lint_values)):
        try:
            path = infra.path_in_repo(profile.infra_repo, rel)
        except infra.OutsideRepo as exc:
            findings[stage] = [str(exc)]
            continue
        if not path.is_file():
            continue
        try:
            docs = infra._load_documents(path)
        except infra._Unreadable as exc:
            findings[stage] = [f"infra repo: {rel} {exc}"]
            continue
        drift = linter(rel, docs, profile)
        if drift:
            findings[stage] = drift
    refused = infra.lint_patches(profile)
    if refused:
        findings["container-runtime"] = refused
    return findings
