"""Judges of the gpu-operator path. Where a stage owns what it owns on the device-plugin path plus more,
the runbook's judge runs first and this path's facts are judged after it."""

from __future__ import annotations

import re
import shlex
from dataclasses import replace
from typing import Any

from checks import findings as found
from checks import remedies
from checks.judges import (
    JudgeInput,
    carrying,
    judge_container_runtime,
    judge_extensions,
    judge_kernel_modules,
    judged,
    nvidia_extensions,
    quote,
    unknown,
)
from checks.lazy import parsers
from checks.model import Judgement, ProbeResult, Status
from checks.paths.gpu_operator.kube import CLUSTER_POLICY, POD_SECURITY_LABEL, POD_SECURITY_LEVEL
from checks.paths.gpu_operator.probes import CDI_DIR, CDI_SPEC, DEVICE_PLUGIN_APP, NO_CRD, VALIDATOR_APP
from checks.profile import MIN_GPU_OPERATOR, Profile
from checks.releases import release_for
from checks.remedies import Remedy

CDI_GEN = "ext-nvidia-cdi-gen"
UPGRADE_NOTES = ('Talos\'s upgrade notes: "Before upgrading to Talos 1.13, uninstall the nvidia-device-plugin helm '
                 'chart and delete the nvidia runtimeclass."')
_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)$")


def operator_install_command(profile: Profile) -> str:
    return remedies.operator_install(profile).command or ""


def _running_version(inp: JudgeInput) -> str | None:
    fact = inp.fact("talos_version")
    return str(fact.value.server_tag) if fact.ok and fact.value.server_tag else None


# ---- extensions ---------------------------------------------------------------------------------


def judge_extensions_release(inp: JudgeInput) -> Judgement:
    """The runbook's extension checks, then the versions the node's Talos release ships on the track."""
    judgement = judge_extensions(inp)
    tag = _running_version(inp)
    release, exact = release_for(tag)
    if judgement.status is not Status.PASS or release is None:
        return judgement
    track = inp.profile.track
    driver, toolkit = release.driver(track), release.toolkit
    judgement.evidence.append(f"siderolabs/extensions {release.talos}: {track} driver {driver}, toolkit {toolkit}")
    kmod, kit = nvidia_extensions(list(inp.fact("extensions").value))
    have_driver, _ = parsers.split_driver(kmod.version)
    have_toolkit = kit.version.split("-", 1)[1] if "-" in kit.version else ""
    if exact and (have_driver != driver or have_toolkit != toolkit):
        judgement.status = Status.WARN
        judgement.summary += (f"; but Talos {tag} ships {track} driver {driver} with toolkit {toolkit}, not "
                              f"{have_driver} with {have_toolkit or 'an unknown toolkit'}")
    return judgement


# ---- kernel modules -----------------------------------------------------------------------------


def judge_kernel_modules_cdi(inp: JudgeInput) -> Judgement:
    """The modules, the driver and the kernel log, as on the runbook's path; no bpf_jit_harden sysctl."""
    no_sysctl = ProbeResult("bpf_sysctl", "not read on the gpu-operator path", missing=True)
    judgement = judge_kernel_modules(replace(inp, facts={**inp.facts, "bpf_sysctl": no_sysctl}))
    judgement.summary = judgement.summary.replace("; bpf_jit_harden 1", "")
    return judgement


# ---- container runtime --------------------------------------------------------------------------


def judge_container_runtime_cdi(inp: JudgeInput) -> Judgement:
    """The runbook's checks (the machine.files guard first), then CDI: `ext-nvidia-cdi-gen` has Finished and
    its spec `/run/cdi/nvidia.yaml` exists."""
    judgement = judge_container_runtime(inp)
    if judgement.status in (Status.FAIL, Status.UNKNOWN):
        return judgement
    services, specs = inp.fact("services"), inp.fact("cdi_specs")
    evidence = judgement.evidence
    logs = remedies.logs(inp.node, CDI_GEN, f"its log says why; talosctl --nodes {inp.node} service {CDI_GEN} "
                         "shows its state")
    problems: list[str] = []
    service = services.value.get(CDI_GEN) if services.ok else None
    state = service.state if service is not None else "not registered"
    evidence.append(f"talosctl services: {CDI_GEN} {state}")
    if state != "Finished":
        problems.append(f"service {CDI_GEN} is {state}, not Finished (it writes the CDI spec)")
    if specs.ok or specs.missing:
        names = list(specs.value or []) if specs.ok else []
        evidence.append(f"talosctl ls {CDI_DIR}: {', '.join(names) or 'nothing'}")
        if CDI_SPEC not in names:
            problems.append(f"the CDI spec {CDI_DIR}/{CDI_SPEC} is missing: containerd cannot give a container the "
                            "GPUs")
    else:
        return Judgement(Status.UNKNOWN, f"could not check: {specs.error}", evidence + [f"{specs.source}: {specs.error}"])
    if problems:
        more = f" (and {len(problems) - 1} more problem)" if len(problems) > 1 else ""
        return Judgement(Status.FAIL, problems[0] + more, evidence, logs.command, logs.advice)
    judgement.summary += f"; {CDI_GEN} Finished, {CDI_DIR}/{CDI_SPEC} present"
    return judgement


# ---- RuntimeClass -------------------------------------------------------------------------------


def cluster_policy_owner(runtime_class: dict[str, Any]) -> str | None:
    for owner in (runtime_class.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == "ClusterPolicy":
            return str(owner.get("name") or "")
    return None


def judge_runtimeclass_operator(inp: JudgeInput) -> Judgement:
    fact = inp.fact("runtime_class")
    name = inp.profile.runtime_class
    if fact.missing:
        return judged(Status.FAIL, f'RuntimeClass "{name}" not found: the GPU Operator creates it',
                      [f'kubectl get runtimeclass {name}: runtimeclasses.node.k8s.io "{name}" not found'],
                      remedies.operator_install(inp.profile))
    if not fact.ok:
        return unknown(fact)
    handler = fact.value.get("handler")
    owner = cluster_policy_owner(fact.value)
    evidence = [f"kubectl get runtimeclass {name}: handler {handler}, "
                + (f"owned by ClusterPolicy {owner}" if owner is not None else "no ClusterPolicy owner (made by hand)")]
    if owner is None:
        return judged(Status.FAIL, f'RuntimeClass "{name}" was made by hand (no ClusterPolicy owner), a leftover of '
                      f"the device-plugin path; {UPGRADE_NOTES}", evidence,
                      remedies.delete_runtimeclass(name, "the GPU Operator creates its own RuntimeClass"))
    if handler != "nvidia":
        return judged(Status.FAIL, f'RuntimeClass "{name}" has handler "{handler}", expected "nvidia"', evidence,
                      Remedy(shlex.join(["kubectl", "describe", "clusterpolicy", CLUSTER_POLICY]),
                             "the ClusterPolicy's status says why the operator made it so"))
    return Judgement(Status.PASS, f'RuntimeClass "{name}" exists with handler "{handler}", owned by ClusterPolicy '
                     f"{owner}", evidence)


# ---- the GPU Operator (the device-plugin stage) -------------------------------------------------


def leftover_releases(fact: ProbeResult, profile: Profile) -> list[Any]:
    """The old path's device-plugin chart releases (`helm list -A`)."""
    if not fact.ok:
        return []
    return [r for r in fact.value if r.name == profile.device_plugin.release
            or r.chart.startswith("nvidia-device-plugin-")]


def operator_release(fact: ProbeResult, profile: Profile) -> Any | None:
    spec = profile.gpu_operator
    if not fact.ok:
        return None
    return next((r for r in fact.value if r.name == spec.release and r.namespace == spec.namespace), None)


def _chart_version(chart: str) -> tuple[int, int, int] | None:
    match = _VERSION.search(chart)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def _pod_line(pod: dict[str, Any]) -> tuple[str, bool, str]:
    """(name, ready, what it is doing in words: Running, Init:plugin-validation, CrashLoopBackOff, …)"""
    state = found.pod_finding(pod)
    return state.name, state.ready, state.word


def operator_pods_finding(fact: ProbeResult) -> found.OperatorPodsFinding | None:
    """The operator's device-plugin and validator pods on this node, in their states."""
    if not fact.ok or fact.value is None:
        return None
    pods = fact.value
    return found.OperatorPodsFinding(str(pods.node), tuple(found.pod_finding(pod) for pod in
                                                           list(pods.device_plugin) + list(pods.validator)))


def _judge_pods(fact: ProbeResult, evidence: list[str], problems: list[tuple[str, Remedy]], namespace: str) -> None:
    if not fact.ok:
        evidence.append(f"{fact.source}: {fact.error or 'not read'}")
        return
    pods = fact.value
    for app, listed, verb in ((DEVICE_PLUGIN_APP, pods.device_plugin, "is Running and ready"),
                              (VALIDATOR_APP, pods.validator, "has passed")):
        if not listed:
            evidence.append(f"pods in {namespace} on {pods.node}: no {app} pod")
            problems.append((f"the GPU Operator has no {app} pod on node {pods.node}",
                             Remedy(shlex.join(["kubectl", "-n", namespace, "describe", "ds", app]),
                                    "its events say why it has no pod on this node")))
            continue
        state = found.pod_finding(listed[0])
        evidence.append(f"pod {state.name}: {state.word}, ready {str(state.ready).lower()}")
        if not state.healthy:
            problems.append((f"the GPU Operator's pod {state.name} on node {pods.node} is {state.word}, not "
                             f"Running/ready (it {verb} when healthy)", remedies.describe_pod(namespace, state.name)))


def judge_operator(inp: JudgeInput) -> Judgement:
    return carrying(_judge_operator(inp), operator_pods_finding(inp.fact("operator_pods")))


def _judge_operator(inp: JudgeInput) -> Judgement:
    profile = inp.profile
    spec = profile.gpu_operator
    helm, namespace, policy, pods, runtime_class = (
        inp.fact(n) for n in ("helm_releases", "operator_namespace", "cluster_policy", "operator_pods", "runtime_class"))
    install = remedies.operator_install(profile)
    evidence: list[str] = []
    problems: list[tuple[str, Remedy]] = []
    unknowns: list[ProbeResult] = []
    # the old path's leftovers first: Talos's upgrade notes say to remove them before 1.13
    leftovers: list[str] = []
    fixes: list[str] = []
    for release in leftover_releases(helm, profile):
        evidence.append(f"helm list -A: {release.name} ({release.namespace}) {release.chart} {release.status} — a "
                        "leftover of the device-plugin path")
        leftovers.append(f"Helm release {release.name} in {release.namespace}")
        fixes.append(remedies.helm_uninstall(release.name, release.namespace).command or "")
    if runtime_class.ok and cluster_policy_owner(runtime_class.value) is None:
        evidence.append(f"kubectl get runtimeclass {profile.runtime_class}: no ClusterPolicy owner (made by hand) — a "
                        "leftover of the device-plugin path")
        leftovers.append(f"the hand-made RuntimeClass {profile.runtime_class}")
        fixes.append(remedies.delete_runtimeclass(profile.runtime_class).command or "")
    if leftovers:
        problems.append((f"leftovers of the device-plugin path: {' and '.join(leftovers)}; {UPGRADE_NOTES}",
                         Remedy(" && ".join(fixes), "removes them; then the device-plugin action installs the "
                                "GPU Operator")))
    # the operator's release, its namespace, its ClusterPolicy, its pods on this node
    release = operator_release(helm, profile)
    if release is not None:
        evidence.append(f"helm list -A: {release.name} ({release.namespace}) {release.chart} {release.status} "
                        f"(revision {release.revision})")
        version = _chart_version(release.chart)
        if release.status != "deployed":
            problems.append((f"the GPU Operator's Helm release {release.name} is {release.status}, not deployed", install))
        elif version is not None and version < MIN_GPU_OPERATOR:
            problems.append((f"the GPU Operator is {release.chart}, older than v26.3.1 (the first that supports "
                             "Talos 1.13's CDI setup)", install))
    elif helm.ok:
        evidence.append(f"helm list -A: no release {spec.release} in {spec.namespace}")
        problems.append((f"the NVIDIA GPU Operator is not installed (no Helm release {spec.release} in namespace "
                         f"{spec.namespace})", install))
    else:
        evidence.append(f"helm: {helm.error}")
        unknowns.append(helm)
    if namespace.ok:
        level = ((namespace.value.get("metadata") or {}).get("labels") or {}).get(POD_SECURITY_LABEL)
        evidence.append(f"kubectl get namespace {spec.namespace}: {POD_SECURITY_LABEL}={level or '(not set)'}")
        if level != POD_SECURITY_LEVEL:
            problems.append((f"namespace {spec.namespace} is not labelled {POD_SECURITY_LABEL}={POD_SECURITY_LEVEL}: "
                             "Pod Security refuses the operator's privileged pods",
                             remedies.label_namespace(spec.namespace, POD_SECURITY_LABEL, POD_SECURITY_LEVEL)))
    elif namespace.missing:
        evidence.append(f"kubectl get namespace {spec.namespace}: not found")
    else:
        unknowns.append(namespace)
    if policy.ok:
        state = (policy.value.get("status") or {}).get("state") or "(no state)"
        evidence.append(f"kubectl get clusterpolicy {CLUSTER_POLICY}: state {state}")
        if state != "ready":
            problems.append((f"ClusterPolicy {CLUSTER_POLICY} is {quote(str(state))[1:-1]}, not ready",
                             Remedy(shlex.join(["kubectl", "-n", spec.namespace, "get", "pods", "-o", "wide"]),
                                    f"its pods say which part is not ready; kubectl get clusterpolicy {CLUSTER_POLICY} "
                                    "-o yaml shows the state")))
    elif policy.missing:
        why = " (no ClusterPolicy CRD: the operator's chart installs it)" if policy.value == NO_CRD else ""
        evidence.append(f"kubectl get clusterpolicy {CLUSTER_POLICY}: not found{why}")
        if release is not None:
            problems.append((f"ClusterPolicy {CLUSTER_POLICY} not found although the operator's release is installed",
                             Remedy(shlex.join(["kubectl", "-n", spec.namespace, "logs", f"deploy/{spec.release}"]),
                                    "the operator's log says why it made none")))
    else:
        unknowns.append(policy)
    if release is not None or pods.ok and (pods.value.device_plugin or pods.value.validator):
        _judge_pods(pods, evidence, problems, spec.namespace)
    if problems:
        summary, fix = problems[0]
        return judged(Status.FAIL, summary, evidence, fix)
    if unknowns:
        first = unknowns[0]
        return Judgement(Status.UNKNOWN, f"could not check: {first.error}", evidence)
    assert release is not None
    return Judgement(Status.PASS, f"GPU Operator {release.chart} deployed; ClusterPolicy {CLUSTER_POLICY} ready; its "
                     "device plugin and validator run on this node", evidence)
