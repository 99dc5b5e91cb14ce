"""Plans: what each stage's action will run, shown before anything runs (INTERFACE.md, "Actions").

`plan_action` never changes anything. It may run read-only commands to build the preview:
`talosctl patch mc --dry-run` (against the file the action will use, or a temporary copy of the
seed's content when that file is missing) and `helm repo list`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from pathlib import Path

import yaml

from checks import infra, remedies
from checks.actions.files import file_change
from checks.actions.model import FileChange, Plan, PlanError, Step
from checks.context import make_context
from checks.model import Report
from checks.patch_guard import Violation
from checks.redact import redact
from checks.target import Target

PLAN_COMMAND_TIMEOUT_S = 30.0
DEFAULT_FOLLOW_REBOOT_S = 900.0

UPGRADE_NODE_STATE = ("the upgrade may still be running on the node; it reboots by itself — "
                      "re-check in a few minutes")
GITOPS_WARNING = ("in a GitOps setup ArgoCD (or Flux) should own the RuntimeClass: commit "
                  f"{infra.RUNTIMECLASS_MANIFEST} and let it sync; creating it by hand is for debugging")
FILES_REBOOT_WARNING = ("a machine.files change reboots the node under --mode auto: the node goes down and "
                        "its pods stop until it is back")


def show_argv(argv: tuple[str, ...] | list[str]) -> str:
    """The command as a person would type it: the program's name, then every argument (global flags kept)."""
    if not argv:
        return ""
    return redact(shlex.join([os.path.basename(argv[0]), *argv[1:]]))


def command_step(description: str, argv: list[str], **params: str) -> Step:
    return Step("command", description, tuple(argv), show_argv(argv), tuple(params.items()))


def confirm_word(target: Target, report: Report | None) -> str:
    if report is not None and report.kube_node:
        return report.kube_node
    return target.talos.node


# --------------------------------------------------------------------------- extensions


async def _talos_version(target: Target, report: Report | None) -> tuple[str, str]:
    """(version, where it came from) for the installer image tag."""
    if target.profile.talos_version:
        return target.profile.talos_version, "the profile's talos_version"
    fact = report.facts.get("talos_version") if report is not None else None
    if fact is None or not fact.ok:
        from checks.probes import probe_talos_version

        ctx = make_context(target, timeout=PLAN_COMMAND_TIMEOUT_S)
        fact = await ctx.get(probe_talos_version)
    tag = getattr(fact.value, "server_tag", None) if fact.ok else None
    if not tag:
        raise PlanError("cannot tell which Talos version the installer image should have: the node's version is "
                        f"unknown ({fact.error or 'no server version'}); set talos_version in the profile")
    return str(tag), "the node's running version"


def _installed_schematic(report: Report | None) -> str | None:
    if report is None:
        return None
    fact = report.facts.get("extensions")
    if fact is None or not fact.ok:
        return None
    for ext in fact.value or []:
        if getattr(ext, "name", None) == "schematic":
            return str(getattr(ext, "version", "") or "") or None
    return None


def _has_nvswitch(report: Report | None) -> bool:
    """Whether the last sweep saw NVSwitch bridges on the node's PCI bus (then Fabric Manager goes into the
    schematic too)."""
    fact = report.facts.get("pci_devices") if report is not None else None
    return bool(fact is not None and fact.ok and any(getattr(d, "is_nvswitch", False) for d in fact.value or []))


async def plan_extensions(target: Target, report: Report | None, factory: str | None) -> Plan:
    from checks.schematic import installer_image

    profile = target.profile
    schematic_yaml, schematic, _listed = remedies.extension_schematic(profile.track,
                                                                      fabricmanager=_has_nvswitch(report))
    version, version_source = await _talos_version(target, report)
    image = installer_image(schematic, version)
    talosctl = target.talosctl()
    argv = talosctl.argv(*remedies.upgrade_args(image))
    assert "--image" in argv and argv[argv.index("--image") + 1] == image, "talosctl upgrade without --image"
    steps: list[Step] = []
    if factory:
        url = factory.rstrip("/") + "/schematics"
        steps.append(Step("register-schematic", f"register the schematic with the Image Factory: POST {url} "
                          f"(expect id {schematic})",
                          params=(("factory", factory), ("yaml", schematic_yaml), ("id", schematic))))
    steps.append(command_step(f"upgrade node {target.talos.node} to {image} (reboots the node)", argv,
                              role="upgrade"))
    steps.append(Step("follow-reboot", "follow the node down and back up (talosctl get machinestatus, API "
                      "availability), then wait for the Kubernetes Node to be Ready",
                      params=(("after", "upgrade"), ("kube_node", report.kube_node if report and report.kube_node else ""))))
    installed = _installed_schematic(report)
    warnings = [f"talosctl upgrade reboots node {target.talos.node}: its pods stop until it is back"]
    if installed == schematic:
        warnings.append(f"the node already runs schematic {schematic}; the upgrade reinstalls the same image")
    preview_lines = [
        "Image Factory schematic:",
        schematic_yaml.rstrip("\n"),
        "",
        f"schematic id:    {schematic}" + ("  (computed offline)" if not factory else f"  (registered with {factory})"),
        f"installer image: {image}  (Talos {version}, {version_source})",
    ]
    if installed:
        preview_lines.append(f"installed now:   schematic {installed}")
    return Plan(
        stage="extensions",
        title="Install the NVIDIA extensions (Image Factory schematic + talosctl upgrade)",
        steps=tuple(steps),
        files=(),
        reboots=True,
        confirm_word=confirm_word(target, report),
        warnings=tuple(warnings),
        preview="\n".join(preview_lines) + "\n",
        schematic_id=schematic,
        installer_image=image,
    )


# --------------------------------------------------------------------------- machine-config patches


def _write_step(change: FileChange) -> Step:
    return Step("write", f"write {change.path} (missing in the infra repo)",
                params=(("path", str(change.path)), ("relative", change.relative), ("content", change.content)))


def _file_state_lines(change: FileChange) -> list[str]:
    lines = [f"# {change.summary}"]
    if change.state == "differs":
        lines += ["# difference (infra repo → what talos-gpu writes):", change.diff.rstrip("\n")]
    return lines


def _file_as_used(change: FileChange, warnings: list[str]) -> list[str]:
    """Preview lines for a file the action uses: its state and the content it will use — the
    existing file when it differs from the seed (never overwritten: `warnings` says so)."""
    if change.state == "differs":
        warnings.append(f"{change.relative} differs from what talos-gpu writes: it is used as it is, not overwritten")
        used = change.path.read_text(encoding="utf-8")
    else:
        used = change.content
    return _file_state_lines(change) + [f"# {change.relative} as the action uses it:", used.rstrip("\n")]


def _one_file_plan(stage: str, title: str, steps: list[Step], change: FileChange, warnings: list[str]) -> Plan:
    """A plan that uses one infra file and reboots nothing; its preview is the file as the action uses it."""
    preview = "\n".join(_file_as_used(change, warnings))
    return Plan(stage=stage, title=title, steps=tuple(steps), files=(change,), reboots=False, confirm_word=None,
                warnings=tuple(warnings), preview=redact(preview) + "\n")


async def _patch_dry_run(target: Target, change: FileChange) -> str:
    """`talosctl patch mc --dry-run` of the file the action will use (or of a temporary seed copy)."""
    talosctl = target.talosctl()
    temp_dir: str | None = None
    try:
        if change.state == "create":
            temp_dir = tempfile.mkdtemp(prefix="talos-gpu-preview-")
            patch_path = Path(temp_dir) / Path(change.relative).name
            patch_path.write_text(change.content, encoding="utf-8")
        else:
            patch_path = change.path
        args = ("patch", "mc", "--dry-run", "--patch", f"@{patch_path}")
        result = await talosctl.run(*args, timeout=PLAN_COMMAND_TIMEOUT_S)
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    shown = f"$ talosctl patch mc --dry-run --patch @{change.relative}"
    output = (result.stderr + result.stdout).strip("\n")
    if not result.ok:
        return f"{shown}\n(the dry run failed: {result.failure_reason()})\n" + (redact(output) + "\n" if output else "")
    return f"{shown}\n{redact(output)}\n"


async def _plan_patch(target: Target, report: Report | None, stage: str, relative: str, title: str,
                      description: str, reboots: bool, warnings: tuple[str, ...]) -> Plan:
    from checks.patch_guard import PatchRefused, guard_patch

    content = infra.seed_files(target.profile)[relative]
    change = file_change(target.profile, relative, content)
    used = change.path.read_text(encoding="utf-8") if change.state == "differs" else change.content
    try:  # before it is written, shown or applied, whoever wrote it
        guard_patch(used, relative)
    except PatchRefused as exc:
        raise PlanError(f"{exc} — it is not written or applied") from None
    steps: list[Step] = []
    if change.state == "create":
        steps.append(_write_step(change))
    argv = target.talosctl().argv(*remedies.patch_file_args(change.path))
    steps.append(command_step(description, argv, role="patch"))
    if reboots:
        steps.append(Step("follow-reboot", "follow the node's reboot (talosctl get machinestatus, API "
                          "availability), then wait for the Kubernetes Node to be Ready",
                          params=(("after", "patch"),
                                  ("kube_node", report.kube_node if report and report.kube_node else ""))))
    all_warnings = list(warnings)
    preview_lines = _file_as_used(change, all_warnings) + ["", (await _patch_dry_run(target, change)).rstrip("\n")]
    return Plan(
        stage=stage,
        title=title,
        steps=tuple(steps),
        files=(change,),
        reboots=reboots,
        confirm_word=confirm_word(target, report) if reboots else None,
        warnings=tuple(all_warnings),
        preview=redact("\n".join(preview_lines)) + "\n",
    )


async def plan_kernel_modules(target: Target, report: Report | None, _factory: str | None) -> Plan:
    modules = ", ".join(target.profile.modules)
    return await _plan_patch(
        target, report, "kernel-modules", infra.MODULES_PATCH,
        "Load the NVIDIA kernel modules (machine-config patch)",
        f"patch the machine config: load {modules}; sysctl {infra.BPF_SYSCTL}=1 (applies without a reboot)",
        reboots=False, warnings=(),
    )


RUNBOOK_STEP_NOTE = infra.RUNBOOK_STEP_NOTE


async def _refused_entries(target: Target, report: Report | None) -> list[tuple[int, Violation]]:
    """The machine config's machine.files entries Talos refuses at boot (from the report, else read now)."""
    from checks.judges import refused_files

    fact = report.facts.get("machine_files") if report is not None else None
    if fact is None or not fact.ok:
        from checks.probes import probe_machine_files

        ctx = make_context(target, timeout=PLAN_COMMAND_TIMEOUT_S)
        fact = await ctx.get(probe_machine_files)
    if not fact.ok:
        raise PlanError(f"cannot read the machine config's machine.files: {fact.error}")
    return refused_files(fact)


async def _plan_remove_refused_files(stage: str, target: Target, report: Report | None) -> Plan:
    """Remove the machine.files entries Talos refuses at boot: one JSON patch, highest index first."""
    from checks.patch_guard import guard_patch, removal_patch

    refused = await _refused_entries(target, report)
    if not refused:
        why = ("the evidence shows what to fix" if stage == "cluster" else
               "the runtime comes with the nvidia-container-toolkit extension: its absence is the extensions "
               "stage's to fix; the runbook's no-cgroups file is never written")
        raise PlanError(f"stage {stage} has no action: {why}")
    indexes = [index for index, _ in refused]
    patch = removal_patch(indexes)
    guard_patch(patch, "the removal patch")  # it only removes; checked like every other patch
    argv = target.talosctl().argv(*remedies.patch_inline_args(patch))
    listed = "; ".join(f"machine.files[{index}] ({v.op} {v.path})" for index, v in refused)
    steps = (
        command_step(f"remove {listed} from the machine config (a machine.files change: reboots the node)", argv,
                     role="patch", patch=patch),
        Step("follow-reboot", "follow the node's reboot (talosctl get machinestatus, API availability), then wait "
             "for the Kubernetes Node to be Ready",
             params=(("after", "patch"), ("kube_node", report.kube_node if report and report.kube_node else ""))),
    )
    preview = ["JSON patch (talosctl patch mc --patch):", patch, "",
               "entries Talos refuses at boot (op and path from the machine config):"]
    preview += [f"  machine.files[{index}]: op {v.op} path {v.path} — {v.talos_error}" for index, v in refused]
    preview += ["", RUNBOOK_STEP_NOTE]
    return Plan(
        stage=stage,
        title="Remove the machine.files entries Talos refuses at boot (talosctl patch mc, reboots)",
        steps=steps,
        files=(),
        reboots=True,
        confirm_word=confirm_word(target, report),
        warnings=(FILES_REBOOT_WARNING, "the node boots through once the entries are gone; the Kubernetes API of a "
                  "single node comes back with it"),
        preview=redact("\n".join(preview)) + "\n",
    )


async def plan_cluster(target: Target, report: Report | None, _factory: str | None) -> Plan:
    return await _plan_remove_refused_files("cluster", target, report)


async def plan_container_runtime(target: Target, report: Report | None, _factory: str | None) -> Plan:
    return await _plan_remove_refused_files("container-runtime", target, report)


# --------------------------------------------------------------------------- RuntimeClass


async def plan_runtimeclass(target: Target, report: Report | None, _factory: str | None) -> Plan:
    profile = target.profile
    relative = infra.RUNTIMECLASS_MANIFEST
    change = file_change(profile, relative, infra.seed_files(profile)[relative])
    steps: list[Step] = []
    if change.state == "create":
        steps.append(_write_step(change))
    steps.append(Step("api", f"create RuntimeClass {profile.runtime_class} from {change.path} through the "
                      "Kubernetes API (what kubectl create -f does)",
                      params=(("path", str(change.path)), ("name", profile.runtime_class))))
    return _one_file_plan("runtimeclass", f"Create RuntimeClass {profile.runtime_class} (handler "
                          f"{infra.RUNTIME_HANDLER})", steps, change, [GITOPS_WARNING])


# --------------------------------------------------------------------------- device plugin


async def _helm_repos(target: Target) -> tuple[dict[str, str] | None, str]:
    """Configured Helm repositories (name → URL), or None and why they could not be listed."""
    helm = target.helm()
    assert helm is not None
    result = await helm.run("repo", "list", "-o", "json", timeout=PLAN_COMMAND_TIMEOUT_S)
    if not result.ok:
        if "no repositories" in (result.stderr + result.stdout).lower():
            return {}, ""
        return None, result.failure_reason()
    from checks.parsers import (  # not before a sweep's first calls (checks/lazy.py)
        is_error,
        parse_helm_repo_list_json,
    )

    parsed = parse_helm_repo_list_json(result.stdout or "[]")
    if is_error(parsed):
        return None, f"helm repo list -o json: {parsed}"
    return dict(parsed), ""


async def plan_device_plugin(target: Target, report: Report | None, _factory: str | None) -> Plan:
    profile = target.profile
    spec = profile.device_plugin
    helm = target.helm()
    if helm is None:
        raise PlanError("helm not found: install helm or set $HELM (the device-plugin action runs helm)")
    relative = infra.values_relative(profile)
    change = file_change(profile, relative, infra.seed_files(profile)[relative])
    steps: list[Step] = []
    warnings: list[str] = []
    if change.state == "create":
        steps.append(_write_step(change))
    repos, why = await _helm_repos(target)
    chart_repo = spec.chart.split("/", 1)[0] if "/" in spec.chart and not spec.chart.startswith("oci://") else None
    if repos is None:
        warnings.append(f"could not list the Helm repositories ({why}); adding {spec.repo_name} anyway")
        steps.append(command_step(f"add the Helm repository {spec.repo_name} ({spec.repo_url})",
                                  helm.argv(*remedies.helm_repo_add_args(spec.repo_name, spec.repo_url)),
                                  role="helm-repo-add"))
    elif spec.repo_name not in repos:
        steps.append(command_step(f"add the Helm repository {spec.repo_name} ({spec.repo_url})",
                                  helm.argv(*remedies.helm_repo_add_args(spec.repo_name, spec.repo_url)),
                                  role="helm-repo-add"))
    elif repos[spec.repo_name].rstrip("/") != spec.repo_url.rstrip("/"):
        warnings.append(f"the Helm repository {spec.repo_name} points at {repos[spec.repo_name]}, not "
                        f"{spec.repo_url}: the chart comes from there")
    if chart_repo == spec.repo_name or chart_repo in (repos or {}):
        steps.append(command_step(f"refresh the chart index of {chart_repo}",
                                  helm.argv("repo", "update", chart_repo or spec.repo_name), role="helm"))
    install_argv = helm.argv(*remedies.helm_install_args(spec.release, spec.chart, spec.namespace, change.path))
    steps.append(command_step(f"install or upgrade the Helm release {spec.release} in {spec.namespace}",
                              install_argv, role="helm"))
    return _one_file_plan("device-plugin", f"Install the NVIDIA device plugin (Helm release {spec.release} in "
                          f"{spec.namespace})", steps, change, warnings)


# --------------------------------------------------------------------------- GPU test pod


async def plan_gpu_workload(target: Target, report: Report | None, _factory: str | None) -> Plan:
    from checks.workload import TEST_POD_NAMESPACE, test_pod_manifest

    profile = target.profile
    node_name = report.kube_node if report is not None else None
    manifest = test_pod_manifest("talos-gpu-test-<random>", image=profile.test_image,
                                 runtime_class=profile.runtime_class, node_name=node_name)
    description = (f"create pod {TEST_POD_NAMESPACE}/talos-gpu-test-<random> (runtimeClassName "
                   f"{profile.runtime_class}, nvidia.com/gpu: 1, image {profile.test_image}) running nvidia-smi; "
                   "stream its log; delete it, whatever happened")
    return Plan(
        stage="gpu-workload",
        title="Run the GPU test pod (nvidia-smi)",
        steps=(Step("test-pod", description),),
        files=(),
        reboots=False,
        confirm_word=None,
        warnings=(),
        preview=yaml.safe_dump(manifest, sort_keys=False),
    )
