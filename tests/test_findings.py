"""Typed findings (checks/findings.py): the judges produce them from real fixture inputs, the stage result
carries them (not the JSON), the panes render them; and a remedy's argv equals the plan step's argv."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import anyio
import pytest

from checks import findings, infra, remedies
from checks.config import KubeTarget, TalosTarget
from checks.diagnosis import propagate
from checks.judges import JudgeInput, judge_device_plugin, judge_extensions, judge_gpu_resources
from checks.model import ProbeResult, Report, Status
from checks.parsers.talos import Extension
from checks.paths.device_plugin import STAGES
from checks.probes import DevicePluginFacts
from checks.profile import Profile
from checks.target import Target
from tests.test_diagnosis_counts import NODE, NODE_NAME, fact, fixture, h100, node_object, plugin_facts
from widgets.panes import daemonset_line, extension_rows, gpu_count_rows


def ext(name: str, version: str) -> Extension:
    return Extension(id="0", name=name, version=version)


MIXED = [ext("nvidia-open-gpu-kernel-modules-production", "570.172.08-v1.11.5"),
         ext("nvidia-container-toolkit-lts", "535.247.01-v1.17.8")]


def test_the_extensions_judge_finds_mixed_tracks_and_the_pane_marks_the_wrong_track_red() -> None:
    judgement = judge_extensions(JudgeInput({"extensions": fact("extensions", MIXED)}, Profile(), NODE))
    assert judgement.status is Status.FAIL
    found = next(f for f in judgement.findings if isinstance(f, findings.ExtensionsFinding))
    assert found.mixed_tracks and found.drivers_differ and not found.missing
    assert [e.name for e in found.extensions if not e.track_ok] == ["nvidia-container-toolkit-lts"]
    rows = {row.key: row for row in extension_rows(found, MIXED)}
    toolkit_name = rows["ext-nvidia-container-toolkit-lts"].cells[0]
    assert toolkit_name.plain.startswith("✘") and any("reverse" in str(span.style) for span in toolkit_name.spans)
    assert rows["ext-nvidia-open-gpu-kernel-modules-production"].cells[0].plain.startswith("✘")  # its driver differs


def test_a_missing_toolkit_is_a_missing_row() -> None:
    only = MIXED[:1]
    judgement = judge_extensions(JudgeInput({"extensions": fact("extensions", only)}, Profile(), NODE))
    found = judgement.findings[0]
    assert found.missing == ("nvidia-container-toolkit-production",)
    keys = [row.key for row in extension_rows(found, only)]
    assert keys[0] == "missing-nvidia-container-toolkit-production"


def test_time_slicing_counts_reach_the_pane_with_the_renamed_resource_and_replicas() -> None:
    facts = {"kube_node": fact("kube_node", node_object({"nvidia.com/gpu.shared": "8"})),
             "pci_devices": fact("pci_devices", [h100("1a"), h100("1b")]),
             "dmesg": fact("dmesg", error="not read"), "gpu_allocations": fact("gpu_allocations", 0),
             "device_plugin": fact("device_plugin", plugin_facts(fixture("plugin-log-time-slicing.txt")))}
    judgement = judge_gpu_resources(JudgeInput(facts, Profile(), NODE))
    counts = judgement.findings[0]
    assert isinstance(counts, findings.GpuCounts)
    assert (counts.resource, counts.replicas, counts.expected) == ("nvidia.com/gpu.shared", 4, 8)
    report = Report(NODE, NODE_NAME, [], None, facts)
    rows = {row.key: row for row in gpu_count_rows(report, counts)}
    assert rows["capacity"].cells[0].plain == "nvidia.com/gpu.shared capacity"
    assert rows["capacity"].cells[1].plain == "8" and rows["capacity"].cells[2].plain == ""  # 8 is what is expected


def test_unhealthy_devices_are_counted_and_shown() -> None:
    facts = {"kube_node": fact("kube_node", node_object({"nvidia.com/gpu": "2"}, {"nvidia.com/gpu": "1"})),
             "pci_devices": fact("pci_devices", [h100("1a"), h100("1b")])}
    counts = judge_gpu_resources(JudgeInput(facts, Profile(), NODE)).findings[0]
    assert counts.advertised.unhealthy == 1
    rows = {row.key: row for row in gpu_count_rows(Report(NODE, NODE_NAME, [], None, facts), counts)}
    assert "1 marked unhealthy" in rows["allocatable"].cells[2].plain


def _daemonset(node_name: str, log: str, taints: list[dict[str, str]] | None = None) -> dict[str, ProbeResult]:
    base = plugin_facts(log)
    ds = {"metadata": {"name": "nvidia-device-plugin", "namespace": "kube-system"},
          "spec": {"template": {"spec": {"runtimeClassName": "nvidia", "tolerations": []}}},
          "status": {"desiredNumberScheduled": 1, "numberReady": 1}}
    pod = dict(base.pods[0], status={"phase": "Running", "containerStatuses": [
        {"name": "nvidia-device-plugin-ctr", "ready": True, "restartCount": 0, "state": {"running": {}}}]})
    node = node_object({"nvidia.com/gpu.shared": "8"})
    node["metadata"]["name"] = node_name
    if taints:
        node["spec"] = {"taints": taints}
    return {"device_plugin": fact("device_plugin", DevicePluginFacts(ds, [], [pod], [], {}, base.logs, {})),
            "kube_node": fact("kube_node", node), "helm_release": ProbeResult("helm_release", "helm", missing=True)}


def test_the_device_plugin_summary_names_the_resource_it_registered_and_the_pane_shows_this_nodes_pod() -> None:
    log = fixture("plugin-log-time-slicing.txt")
    if "Registered device plugin for 'nvidia.com/gpu.shared'" not in log:
        log += "\nI0101 00:00:00.000000 1 server.go:176] Registered device plugin for 'nvidia.com/gpu.shared' with Kubelet\n"
    facts = _daemonset(NODE_NAME, log)
    judgement = judge_device_plugin(JudgeInput(facts, Profile(), NODE))
    assert judgement.status is Status.PASS, judgement.summary
    assert "registered nvidia.com/gpu.shared with the kubelet" in judgement.summary
    plugin = judgement.findings[0]
    assert [p.name for p in plugin.pods] == ["nvidia-device-plugin-x7k2p"] and plugin.pods[0].healthy
    line = daemonset_line(facts["device_plugin"], plugin).plain
    assert "kube-system/nvidia-device-plugin" in line and "no pods" not in line


def test_an_untolerated_taint_is_a_finding_the_pane_names() -> None:
    facts = _daemonset(NODE_NAME, "", taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}])
    plugin = judge_device_plugin(JudgeInput(facts, Profile(), NODE)).findings[0]
    assert plugin.taints.untolerated == ("nvidia.com/gpu=present:NoSchedule",)
    assert "nvidia.com/gpu=present:NoSchedule" in daemonset_line(facts["device_plugin"], plugin).plain


def test_the_stage_result_carries_the_findings_but_the_json_does_not() -> None:
    facts = {"extensions": fact("extensions", MIXED)}
    spec = next(s for s in STAGES if s.id == "extensions")
    judgement = spec.judge(JudgeInput(facts, Profile(), NODE))
    results = propagate((spec,), {"extensions": judgement}, {})
    report = Report(NODE, None, results, None, facts)
    assert findings.finding(report, findings.ExtensionsFinding) is judgement.findings[0]
    assert set(results[0].to_json()) == {"id", "title", "status", "summary", "evidence", "remediation", "advice",
                                         "blocked_by", "duration_ms"}


def test_the_upgrade_remedy_runs_the_plan_steps_argv(tmp_path: Path) -> None:
    from checks.actions.plans import plan_extensions

    profile = dataclasses.replace(Profile(), talos_version="v1.11.5", infra_repo=tmp_path)
    target = Target(TalosTarget(tmp_path / "talosconfig", None, NODE), KubeTarget(tmp_path / "kubeconfig", None),
                    profile, "/usr/local/bin/talosctl", None)
    plan = anyio.run(plan_extensions, target, None, None)
    step = next(s for s in plan.steps if s.kind == "command")
    argv = list(step.argv)
    del argv[argv.index("--talosconfig"):argv.index("--talosconfig") + 2]  # the tool's own config flag
    remedy = shlex.split(remedies.upgrade(NODE, profile, "v1.11.5").command or "")
    assert remedy == ["talosctl", *argv[1:]] and argv[0].endswith("talosctl")


def test_the_helm_remedy_and_the_plan_build_the_same_install_arguments(tmp_path: Path) -> None:
    profile = dataclasses.replace(Profile(), infra_repo=tmp_path)
    spec = profile.device_plugin
    values = tmp_path / spec.values
    remedy = shlex.split(remedies.helm_install(profile).command or "")
    assert remedy == ["helm", *remedies.helm_install_args(spec.release, spec.chart, spec.namespace, values)]
    operator = shlex.split(remedies.operator_install(profile).command or "")
    assert "--version" in operator and operator[-1] == str(tmp_path / profile.gpu_operator.values)


def test_without_a_profile_file_the_remedies_name_infra_files_by_their_full_path(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The default infra repo is "." (where talos-gpu was started): a pasted command must name the same file
    from wherever the engineer's shell is."""
    monkeypatch.chdir(tmp_path)
    profile = Profile()
    (manifest,) = [word for word in shlex.split(remedies.runtimeclass_apply(profile).command or "") if "/" in word]
    assert manifest == str(tmp_path / infra.RUNTIMECLASS_MANIFEST)
    values = shlex.split(remedies.helm_install(profile).command or "")
    assert str(tmp_path / profile.device_plugin.values) in values
