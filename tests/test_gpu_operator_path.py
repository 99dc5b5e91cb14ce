"""Enablement paths as data, and the gpu-operator path's judges, files and plans (Talos ≥ 1.13: CDI and the
NVIDIA GPU Operator). Facts are parsed from the fixtures in tests/fixtures/gpu-operator (see ORIGIN.src)
and the real samples; the end-to-end walk against the lab is in tests/test_gpu_operator_e2e.py."""

from __future__ import annotations

import inspect
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks import parsers, paths
from checks.diagnosis import propagate, root_cause
from checks.judges import JudgeInput
from checks.model import Judgement, ProbeResult, Report, Status
from checks.patch_guard import guard_patch
from checks.paths.gpu_operator import infra as operator_infra
from checks.paths.gpu_operator import judges
from checks.paths.gpu_operator.probes import OperatorPods
from checks.probes import Probe
from checks.profile import Profile
from checks.releases import release_for
from checks.stages import STAGE_IDS
from tests.paths import TALOS_SAMPLES, sample

FIXTURES = Path(__file__).parent / "fixtures" / "gpu-operator"
NODE = "10.5.0.2"
UPGRADE_WORDS = "Before upgrading to Talos 1.13, uninstall the nvidia-device-plugin helm chart and delete the nvidia " \
                "runtimeclass."


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def version_text(tag: str) -> str:
    return sample("talos/version.txt").replace("v1.7.4", tag)


def fact(name: str, value: Any = None, *, missing: bool = False, error: str | None = None) -> ProbeResult:
    return ProbeResult(name, name, value=value, missing=missing, error=error)


def healthy_facts(tag: str = "v1.13.9") -> dict[str, ProbeResult]:
    kmod = parsers.Extension("1", "nvidia-open-gpu-kernel-modules-production", f"595.91.07-{tag}")
    toolkit = parsers.Extension("2", "nvidia-container-toolkit-production", "595.91.07-v1.19.1")
    pods = json.loads(fixture("pods-on-node.json"))
    facts = {
        "talos_version": fact("talos_version", parsers.parse_talos_version(version_text(tag))),
        "extensions": fact("extensions", [kmod, toolkit]),
        "machine_files": fact("machine_files", ()),
        "cri_conf": fact("cri_conf", ("10-nvidia-container-runtime.part", "cri.toml")),
        "services": fact("services", parsers.parse_services(fixture("services-1.13.txt"))),
        "cdi_specs": fact("cdi_specs", parsers.parse_ls_names(fixture("ls-run-cdi.txt"))),
        "proc_modules": fact("proc_modules", parsers.parse_proc_modules(sample("talos/read-proc-modules-nvidia.txt"))),
        "driver_version": fact("driver_version", parsers.parse_nvidia_version(
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  595.91.07  Release Build  (dvs-builder@U22)  "
            "Thu Jan  1 00:00:00 UTC 2026\n")),
        "dmesg": fact("dmesg", parsers.parse_dmesg_nvrm("")),
        "module_specs": fact("module_specs", ["nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset"]),
        "helm_releases": fact("helm_releases", parsers.parse_helm_list_json(fixture("helm-list-A.json"))),
        "operator_namespace": fact("operator_namespace", {"kind": "Namespace", "metadata": {
            "name": "gpu-operator", "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}),
        "cluster_policy": fact("cluster_policy", json.loads(fixture("clusterpolicy-ready.json"))),
        "operator_pods": fact("operator_pods", OperatorPods("gpu-node-1", pods[:1], pods[1:])),
        "runtime_class": fact("runtime_class", json.loads(fixture("runtimeclass-operator.json"))),
    }
    return facts


def judge(fn: Any, facts: dict[str, ProbeResult], profile: Profile | None = None) -> Judgement:
    return fn(JudgeInput(facts, profile or Profile(), NODE))


# ---- paths as data ------------------------------------------------------------------------------


@pytest.mark.parametrize(("tag", "path"), [("v1.11.5", "device-plugin"), ("v1.12.11", "device-plugin"),
                                           ("v1.13.0", "gpu-operator"), ("v1.13.9", "gpu-operator"),
                                           ("v1.14.0-rc.1", "gpu-operator"), (None, "device-plugin")])
def test_the_path_follows_the_node_s_talos_version(tag: str | None, path: str) -> None:
    assert paths.choose(Profile(), tag).name == path


def test_the_profile_s_path_wins_over_the_version() -> None:
    assert paths.choose(Profile(path="device-plugin"), "v1.13.9").name == "device-plugin"
    assert paths.choose(Profile(path="gpu-operator"), "v1.11.5").name == "gpu-operator"
    assert paths.candidates(Profile(path="gpu-operator")) == (paths.GPU_OPERATOR,)
    assert paths.candidates(Profile()) == paths.PATHS


def test_every_table_names_its_pieces_directly_with_the_same_stage_ids() -> None:
    for path in paths.PATHS:
        assert tuple(s.id for s in path.stages) == STAGE_IDS
        for spec in path.stages:
            assert all(isinstance(p, Probe) for p in spec.probes), spec.id
            assert callable(spec.judge) and not isinstance(spec.judge, str)
            assert spec.action is None or inspect.iscoroutinefunction(spec.action)
    operator = {s.id: s for s in paths.GPU_OPERATOR.stages}
    assert "bpf_sysctl" not in {p.name for p in operator["kernel-modules"].probes}
    assert "cdi_specs" in {p.name for p in operator["container-runtime"].probes}
    assert operator["runtimeclass"].action is None and "device-plugin" in operator["runtimeclass"].depends_on
    assert paths.GPU_OPERATOR.action_stages == ("cluster", "extensions", "kernel-modules", "container-runtime",
                                                "device-plugin", "gpu-workload")


def test_probe_order_kube_and_light_are_properties_of_the_probe() -> None:
    probes = paths.probes_of(paths.PATHS)
    assert [p.order for p in probes] == sorted(p.order for p in probes)
    kube = {p.name for p in probes if p.kube}
    assert {"kube_node", "runtime_class", "device_plugin", "gpu_allocations", "cluster_policy",
            "operator_pods", "operator_namespace"} == kube
    assert {"cluster_policy", "operator_pods"} <= paths.light_probes()
    assert "talos_version" not in paths.light_probes()


def test_the_json_names_the_path_and_the_talos_version_in_interface_order() -> None:
    report = Report(NODE, "gpu-node-1", [], None, path="gpu-operator", talos_version="v1.13.9")
    data = report.to_json()
    assert list(data)[:5] == ["schema", "node", "talos_version", "path", "kube_node"]
    assert (data["path"], data["talos_version"]) == ("gpu-operator", "v1.13.9")


# ---- the gpu-operator path's judges ----------------------------------------------------------------


def test_a_healthy_1_13_node_passes_every_stage_of_the_operator_path() -> None:
    facts = healthy_facts()
    for spec in paths.GPU_OPERATOR.stages[1:6]:
        result = judge(spec.judge, facts)
        assert result.status is Status.PASS, (spec.id, result.summary, result.evidence)
    modules = judge(judges.judge_kernel_modules_cdi, facts)
    assert "bpf_jit_harden" not in modules.summary + " ".join(modules.evidence)
    runtime = judge(judges.judge_container_runtime_cdi, facts)
    assert "ext-nvidia-cdi-gen Finished" in runtime.summary and "/run/cdi/nvidia.yaml" in runtime.summary


@pytest.mark.parametrize(("change", "words"), [
    ({"services": fact("services", parsers.parse_services(
        fixture("services-1.13.txt").replace("Finished   ?        2h10m58s ago    Service finished successfully",
                                             "Failed     ?        2h10m58s ago    Failed to start: fork/exec "
                                             "/usr/bin/nvidia-ctk: no such file or directory")))},
     "ext-nvidia-cdi-gen is Failed, not Finished"),
    ({"cdi_specs": fact("cdi_specs", missing=True)}, "/run/cdi/nvidia.yaml is missing"),
])
def test_cdi_generator_and_spec_are_the_container_runtime_s(change: dict[str, ProbeResult], words: str) -> None:
    result = judge(judges.judge_container_runtime_cdi, {**healthy_facts(), **change})
    assert result.status is Status.FAIL and words in result.summary
    assert result.remediation is not None and "logs ext-nvidia-cdi-gen" in result.remediation


def test_the_machine_files_guard_is_kept_on_the_operator_path() -> None:
    files = parsers.parse_machine_files(
        "spec: |\n    machine:\n        files:\n            - path: /etc/nvidia-container-runtime/config.toml\n"
        "              op: create\n              content: x\n")
    result = judge(judges.judge_container_runtime_cdi, {**healthy_facts(), "machine_files": fact("machine_files", files)})
    assert result.status is Status.FAIL and "writeUserFiles" in result.summary
    assert result.remediation is not None and "/machine/files/0" in result.remediation


def test_the_old_path_s_leftovers_fail_the_device_plugin_stage_in_the_upgrade_notes_words() -> None:
    releases = json.loads(fixture("helm-list-A.json")) + [
        {"name": "nvidia-device-plugin", "namespace": "kube-system", "revision": "3", "updated": "2026-10-01 10:00:00 "
         "+0000 UTC", "status": "deployed", "chart": "nvidia-device-plugin-0.17.3", "app_version": "0.17.3"}]
    hand_made = {"kind": "RuntimeClass", "metadata": {"name": "nvidia"}, "handler": "nvidia"}
    facts = {**healthy_facts(), "helm_releases": fact("helm_releases", parsers.parse_helm_list_json(json.dumps(releases))),
             "runtime_class": fact("runtime_class", hand_made)}
    result = judge(judges.judge_operator, facts)
    assert result.status is Status.FAIL and UPGRADE_WORDS in result.summary
    assert "Helm release nvidia-device-plugin in kube-system" in result.summary
    assert any("nvidia-device-plugin (kube-system) nvidia-device-plugin-0.17.3" in line and "leftover" in line
               for line in result.evidence)
    assert any("runtimeclass nvidia: no ClusterPolicy owner" in line for line in result.evidence)
    assert result.remediation == "helm uninstall nvidia-device-plugin -n kube-system && kubectl delete runtimeclass nvidia"
    runtime_class = judge(judges.judge_runtimeclass_operator, facts)
    assert runtime_class.status is Status.FAIL and "made by hand" in runtime_class.summary


@pytest.mark.parametrize(("change", "words"), [
    ({"helm_releases": fact("helm_releases", [])}, "the NVIDIA GPU Operator is not installed"),
    ({"operator_namespace": fact("operator_namespace", {"kind": "Namespace", "metadata": {"name": "gpu-operator"}})},
     "not labelled pod-security.kubernetes.io/enforce=privileged"),
    ({"cluster_policy": fact("cluster_policy", {**json.loads(fixture("clusterpolicy-ready.json")),
                                                "status": {"state": "notReady"}})},
     "ClusterPolicy cluster-policy is notReady, not ready"),
    ({"operator_pods": fact("operator_pods", OperatorPods("gpu-node-1", json.loads(fixture("pods-on-node.json"))[:1],
                                                          []))},
     "no nvidia-operator-validator pod on node gpu-node-1"),
])
def test_the_operator_s_own_facts(change: dict[str, ProbeResult], words: str) -> None:
    result = judge(judges.judge_operator, {**healthy_facts(), **change})
    assert result.status is Status.FAIL and words in result.summary, result.summary


def test_a_validator_still_validating_names_its_init_container() -> None:
    pods = json.loads(fixture("pods-on-node.json"))
    waiting = pods[1]["status"]["initContainerStatuses"][3]
    waiting["state"] = {"running": {"startedAt": "2026-12-07T06:03:00Z"}}
    pods[1]["status"]["containerStatuses"][0].update(ready=False, state={"waiting": {"reason": "PodInitializing"}})
    facts = {**healthy_facts(), "operator_pods": fact("operator_pods", OperatorPods("gpu-node-1", pods[:1], pods[1:]))}
    result = judge(judges.judge_operator, facts)
    assert result.status is Status.FAIL and "Init:plugin-validation" in result.summary


def test_not_installed_names_the_install_command_with_the_profile_s_version() -> None:
    result = judge(judges.judge_operator, {**healthy_facts(), "helm_releases": fact("helm_releases", [])})
    # the values file by its full path (no profile file: the infra repo is the directory it started in)
    assert result.remediation == ("helm upgrade --install gpu-operator nvidia/gpu-operator -n gpu-operator "
                                  f"--version v26.3.1 -f {Path.cwd() / 'k8s/gpu-operator/values.yaml'}")


def test_the_runtimeclass_waits_for_the_operator_on_this_path() -> None:
    facts = {**healthy_facts(), "helm_releases": fact("helm_releases", []), "runtime_class": fact("runtime_class",
                                                                                                   missing=True)}
    judgements = {spec.id: judge(spec.judge, facts) for spec in paths.GPU_OPERATOR.stages[1:6]}
    judgements["cluster"] = Judgement(Status.PASS, "ok")
    judgements["gpu-resources"] = Judgement(Status.FAIL, "no GPUs")
    judgements["gpu-workload"] = Judgement(Status.SKIPPED, "not run")
    results = propagate(paths.GPU_OPERATOR.stages, judgements, {})
    by_id = {r.id: r for r in results}
    assert [r.id for r in results] == list(STAGE_IDS)
    assert by_id["runtimeclass"].status is Status.BLOCKED and by_id["runtimeclass"].blocked_by == "device-plugin"
    cause = root_cause(results)
    assert cause is not None and cause.stage == "device-plugin"


def test_extensions_carry_this_release_s_versions() -> None:
    facts = healthy_facts()
    assert judge(judges.judge_extensions_release, facts).status is Status.PASS
    older = parsers.Extension("1", "nvidia-open-gpu-kernel-modules-production", "595.58.03-v1.13.9")
    kit = parsers.Extension("2", "nvidia-container-toolkit-production", "595.58.03-v1.19.0")
    result = judge(judges.judge_extensions_release, {**facts, "extensions": fact("extensions", [older, kit])})
    assert result.status is Status.WARN and "Talos v1.13.9 ships production driver 595.91.07" in result.summary
    assert release_for("v1.13.9") == (release_for("v1.13.5")[0], True)
    assert release_for("v1.13.5")[1] is False and release_for("v1.9.0") == (None, False)


# ---- the path's files -----------------------------------------------------------------------------


def test_the_modules_patch_of_this_path_has_no_sysctl_and_passes_the_guard() -> None:
    text = operator_infra.modules_patch(Profile())
    guard_patch(text, "nvidia-oss-modules.yaml")
    doc = yaml.safe_load(text)
    assert [m["name"] for m in doc["machine"]["kernel"]["modules"]] == list(Profile().modules)
    assert "sysctls" not in doc["machine"] and "bpf_jit_harden" not in text
    values = yaml.safe_load(operator_infra.operator_values(Profile()))
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                   {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]
    assert values == {"driver": {"enabled": False}, "toolkit": {"enabled": False},
                      "hostPaths": {"driverInstallDir": "/usr/local"}, "daemonsets": {"tolerations": tolerations}}


def test_drift_on_this_path_flags_the_old_sysctl(tmp_path: Path) -> None:
    patch = tmp_path / "talos" / "patches" / "nvidia-oss-modules.yaml"
    patch.parent.mkdir(parents=True)
    from checks import infra

    patch.write_text(infra.modules_patch(Profile()))  # the device-plugin path's file, with the sysctl
    profile = replace(Profile(), infra_repo=tmp_path)
    drift = operator_infra.lint(profile)
    assert any("net.core.bpf_jit_harden" in line and "remove it" in line for line in drift["kernel-modules"])
    assert "kernel-modules" not in infra.lint_infra(profile)  # the runbook's path wants it


def test_the_reconstructed_samples_are_not_read_from_outside() -> None:
    assert FIXTURES.is_dir() and TALOS_SAMPLES.is_dir()
    assert "RECONSTRUCTED" in fixture("ORIGIN.src")


@pytest.mark.parametrize(("text", "words"), [
    ("path: operator\n", "key 'path' must be one of auto, device-plugin, gpu-operator, got 'operator'"),
    ("gpu_operator: {version: v25.10.1}\n", "key 'gpu_operator.version' must be at least v26.3.1"),
    ("gpu_operator: {version: latest}\n", "key 'gpu_operator.version' must be a GPU Operator chart version"),
    ("gpu_operator: {namespce: x}\n", "unknown key 'gpu_operator.namespce' (did you mean 'gpu_operator.namespace'?)"),
    ("gpu_operator: [x]\n", "key 'gpu_operator' must be a mapping"),
])
def test_profile_path_and_gpu_operator_errors_are_one_line(tmp_path: Path, text: str, words: str) -> None:
    from checks.errors import UsageError
    from checks.profile import load_profile

    path = tmp_path / "profile.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        load_profile(path)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_profile_path_and_gpu_operator_are_read(tmp_path: Path) -> None:
    from checks.profile import load_profile

    path = tmp_path / "profile.yaml"
    path.write_text("path: gpu-operator\ngpu_operator: {namespace: gpu, version: v26.4.0}\n")
    profile = load_profile(path)
    assert profile.path == "gpu-operator"
    assert (profile.gpu_operator.namespace, profile.gpu_operator.version, profile.gpu_operator.release) == \
        ("gpu", "v26.4.0", "gpu-operator")


def test_a_wrongly_remembered_path_costs_a_second_round_never_a_wrong_answer(lab: Any, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import anyio

    from checks import node_cache
    from checks.engine import run_sweep
    from tests.test_actions_support import make_target

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    handle = lab("healthy")  # Talos v1.11.5: the device-plugin path
    target = make_target(handle, tmp_path)
    first = anyio.run(lambda: run_sweep(target, timeout=30))
    assert first.path == "device-plugin" and first.overall is Status.PASS
    assert node_cache.remembered_path(target.kube.server, target.talos.node) == "device-plugin"
    assert first.facts["cluster_policy"].missing  # first contact: both paths' facts (no CRD on this node)
    assert first.facts["cluster_policy"].value == "no ClusterPolicy CRD"
    again = anyio.run(lambda: run_sweep(target, timeout=30))
    assert "cluster_policy" not in again.facts  # the remembered path: the other one's facts are not read
    node_cache.remember(target.kube.server, target.talos.node, "gpu-node-1", enablement_path="gpu-operator")
    moved = anyio.run(lambda: run_sweep(target, timeout=30))
    assert moved.path == "device-plugin" and moved.overall is Status.PASS
    assert {"device_plugin", "bpf_sysctl", "helm_release"} <= set(moved.facts)
    assert node_cache.remembered_path(target.kube.server, target.talos.node) == "device-plugin"
