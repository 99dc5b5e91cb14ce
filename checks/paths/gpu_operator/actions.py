"""Actions of the gpu-operator path: the modules patch without a sysctl, and the GPU Operator's install
(the old path's leftovers removed first). Planned and run by the machinery in checks/actions/."""

from __future__ import annotations

import shlex

import yaml

from checks import infra, remedies
from checks.actions.files import file_change
from checks.actions.model import Plan, PlanError, Step
from checks.actions.plans import (
    PLAN_COMMAND_TIMEOUT_S,
    _file_as_used,
    _helm_repos,
    _patch_dry_run,
    _write_step,
    command_step,
)
from checks.context import make_context
from checks.model import ProbeResult, Report
from checks.paths.gpu_operator import infra as operator_infra
from checks.paths.gpu_operator import kube
from checks.paths.gpu_operator.judges import cluster_policy_owner, leftover_releases
from checks.paths.gpu_operator.probes import probe_helm_releases, probe_operator_namespace
from checks.probes import probe_runtime_class
from checks.redact import redact
from checks.target import Target


async def plan_kernel_modules_cdi(target: Target, report: Report | None, _factory: str | None) -> Plan:
    """`talos/patches/nvidia-oss-modules.yaml` with the modules only; a file there that sets the sysctl is
    refused, never applied, on this path."""
    from checks.patch_guard import PatchRefused, guard_patch

    relative = infra.MODULES_PATCH
    change = file_change(target.profile, relative, operator_infra.modules_patch(target.profile))
    used = change.path.read_text(encoding="utf-8") if change.state == "differs" else change.content
    try:
        guard_patch(used, relative)
    except PatchRefused as exc:
        raise PlanError(f"{exc} — it is not written or applied") from None
    try:
        docs = [doc for doc in yaml.safe_load_all(used) if doc is not None]
    except yaml.YAMLError:
        raise PlanError(f"{relative} is not valid YAML — it is not applied") from None
    if operator_infra.sets_bpf_sysctl(docs):
        raise PlanError(f"{relative} sets {infra.BPF_SYSCTL}, which the gpu-operator path (Talos ≥ 1.13) does not use: "
                        "remove its machine.sysctls entry (or the file, to have it written), then re-run")
    steps: list[Step] = []
    if change.state == "create":
        steps.append(_write_step(change))
    modules = ", ".join(target.profile.modules)
    argv = target.talosctl().argv(*remedies.patch_file_args(change.path))
    steps.append(command_step(f"patch the machine config: load {modules} (applies without a reboot; no sysctl on "
                              "Talos ≥ 1.13)", argv, role="patch"))
    warnings: list[str] = []
    preview = _file_as_used(change, warnings) + ["", (await _patch_dry_run(target, change)).rstrip("\n")]
    return Plan(stage="kernel-modules", title="Load the NVIDIA kernel modules (machine-config patch)",
                steps=tuple(steps), files=(change,), reboots=False, confirm_word=None, warnings=tuple(warnings),
                preview=redact("\n".join(preview)) + "\n")


async def _fact(target: Target, report: Report | None, probe: object) -> ProbeResult:
    fact = report.facts.get(probe.name) if report is not None else None  # type: ignore[attr-defined]
    if fact is None or fact.error is not None:
        fact = await make_context(target, timeout=PLAN_COMMAND_TIMEOUT_S).get(probe)  # type: ignore[arg-type]
    return fact


async def plan_gpu_operator(target: Target, report: Report | None, _factory: str | None) -> Plan:
    profile = target.profile
    spec = profile.gpu_operator
    helm = target.helm()
    if helm is None:
        raise PlanError("helm not found: install helm or set $HELM (the device-plugin action installs the GPU "
                        "Operator with helm)")
    steps: list[Step] = []
    warnings: list[str] = []
    # 1. the old path's leftovers (Talos's upgrade notes: remove both before 1.13)
    releases = await _fact(target, report, probe_helm_releases)
    if not releases.ok:
        raise PlanError(f"cannot list the Helm releases: {releases.error}")
    for release in leftover_releases(releases, profile):
        steps.append(command_step(f"uninstall the old path's Helm release {release.name} in {release.namespace}",
                                  helm.argv(*remedies.helm_uninstall_args(release.name, release.namespace)),
                                  role="helm"))
    runtime_class = await _fact(target, report, probe_runtime_class)
    name = profile.runtime_class
    if runtime_class.ok and cluster_policy_owner(runtime_class.value) is None:
        steps.append(Step("kube", f"delete the hand-made RuntimeClass {name} (the operator creates its own)",
                          display=shlex.join(["kubectl", *remedies.delete_runtimeclass_args(name)]),
                          call=lambda reader: kube.delete_runtime_class(reader, name)))
    # 2. the namespace, labelled for the operator's privileged pods
    namespace = await _fact(target, report, probe_operator_namespace)
    level = ((namespace.value or {}).get("metadata") or {}).get("labels", {}).get(kube.POD_SECURITY_LABEL) \
        if namespace.ok else None
    if level != kube.POD_SECURITY_LEVEL:
        label = {kube.POD_SECURITY_LABEL: kube.POD_SECURITY_LEVEL}
        steps.append(Step("kube", f"create namespace {spec.namespace} labelled {kube.POD_SECURITY_LABEL}="
                          f"{kube.POD_SECURITY_LEVEL} (or label the one that exists)",
                          display=f"kubectl create ns {shlex.quote(spec.namespace)}; " + shlex.join(
                              ["kubectl", *remedies.label_namespace_args(spec.namespace, kube.POD_SECURITY_LABEL,
                                                                        kube.POD_SECURITY_LEVEL)]),
                          call=lambda reader: kube.ensure_namespace(reader, spec.namespace, label)))
    # 3. the values file, the chart repository, the release
    change = file_change(profile, spec.values, operator_infra.operator_values(profile))
    if change.state == "create":
        steps.append(_write_step(change))
    repos, why = await _helm_repos(target)
    add = command_step(f"add the Helm repository {spec.repo_name} ({spec.repo_url})",
                       helm.argv(*remedies.helm_repo_add_args(spec.repo_name, spec.repo_url)), role="helm-repo-add")
    if repos is None:
        warnings.append(f"could not list the Helm repositories ({why}); adding {spec.repo_name} anyway")
        steps.append(add)
    elif spec.repo_name not in repos:
        steps.append(add)
    else:
        if repos[spec.repo_name].rstrip("/") != spec.repo_url.rstrip("/"):
            warnings.append(f"the Helm repository {spec.repo_name} points at {repos[spec.repo_name]}, not "
                            f"{spec.repo_url}: the chart comes from there")
        steps.append(command_step(f"refresh the chart index of {spec.repo_name}",
                                  helm.argv("repo", "update", spec.repo_name), role="helm"))
    steps.append(command_step(f"install or upgrade the Helm release {spec.release} ({spec.chart} {spec.version}) in "
                              f"{spec.namespace}",
                              helm.argv(*remedies.helm_install_args(spec.release, spec.chart, spec.namespace,
                                                                    change.path, spec.version)), role="helm"))
    preview = _file_as_used(change, warnings)
    return Plan(stage="device-plugin", title=f"Install the NVIDIA GPU Operator (Helm release {spec.release} in "
                f"{spec.namespace}, driver and toolkit from the Talos extensions)", steps=tuple(steps),
                files=(change,), reboots=False, confirm_word=None, warnings=tuple(warnings),
                preview=redact("\n".join(preview)) + "\n")
