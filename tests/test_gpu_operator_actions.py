"""The gpu-operator path's plans against the real lab (its talosctl, helm and Kubernetes API), the path forced
by the profile: what the device-plugin stage's action would run there, the modules patch without a sysctl,
and the Kubernetes steps (delete the hand-made RuntimeClass, create the labelled namespace) run for real."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anyio
import pytest

from checks import infra
from checks.actions import ActionEvent, Plan, PlanError, plan_action, run_action
from checks.engine import run_sweep
from checks.profile import Profile
from tests.test_actions_support import (
    lab_fixture,  # noqa: F401 - the module-scoped `lab` fixture
    make_target,
    use_scenario,
)


def _plan(stage: str, target: object, report: object = None) -> Plan:
    return anyio.run(lambda: plan_action(stage, target, report))  # type: ignore[arg-type]


def _sweep(target: object):  # type: ignore[no-untyped-def]
    return anyio.run(lambda: run_sweep(target, timeout=30.0))  # type: ignore[arg-type]


def test_the_operator_plan_removes_the_old_path_first(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    use_scenario(lab, "healthy")  # the device-plugin path's healthy node: its release and RuntimeClass are leftovers
    target = make_target(lab, tmp_path, path="gpu-operator")
    report = _sweep(target)
    assert report.path == "gpu-operator" and report.talos_version == "v1.11.5"
    stage = report.stage("device-plugin")
    # a 1.11 node has no ext-nvidia-cdi-gen: container-runtime fails there, and device-plugin is blocked by it
    assert report.stage("container-runtime").status.value == "fail"
    assert stage.status.value == "blocked" and "leftovers of the device-plugin path" in stage.summary
    assert "uninstall the nvidia-device-plugin helm chart and delete the nvidia runtimeclass" in stage.summary
    plan = _plan("device-plugin", target, report)
    shown = plan.commands()
    assert shown[0].startswith("helm ") and "uninstall nvidia-device-plugin -n kube-system" in shown[0]
    assert shown[1] == "kubectl delete runtimeclass nvidia"
    assert "pod-security.kubernetes.io/enforce=privileged" in shown[2]
    assert any(step.kind == "write" and step.param("relative") == "k8s/gpu-operator/values.yaml" for step in plan.steps)
    assert "upgrade --install gpu-operator nvidia/gpu-operator -n gpu-operator --version v26.3.1 -f " in shown[-1]
    assert shown[-1].endswith("k8s/gpu-operator/values.yaml")
    assert "driverInstallDir: /usr/local" in plan.preview
    with pytest.raises(PlanError, match="GPU Operator creates the RuntimeClass"):
        _plan("runtimeclass", target, report)


def test_the_kube_steps_run_against_the_api(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    use_scenario(lab, "healthy")
    target = make_target(lab, tmp_path, path="gpu-operator")
    plan = _plan("device-plugin", target, _sweep(target))
    kube_only = dataclasses.replace(plan, steps=tuple(step for step in plan.steps if step.kind == "kube"))
    events: list[ActionEvent] = []
    result = anyio.run(lambda: run_action(kube_only, target, events.append))
    assert result.ok, result.reason
    lines = [event.text for event in events if event.kind == "line"]
    assert 'runtimeclass.node.k8s.io "nvidia" deleted' in lines and "namespace/gpu-operator created" in lines
    after = _sweep(target)
    assert after.facts["runtime_class"].missing
    labels = after.facts["operator_namespace"].value["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    again = anyio.run(lambda: run_action(dataclasses.replace(kube_only, steps=kube_only.steps[1:]), target,
                                         events.append))
    assert again.ok and events[-1].text == "namespace/gpu-operator exists, labelled already"


def test_the_modules_patch_of_the_operator_path_has_no_sysctl(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    use_scenario(lab, "modules-not-loaded")
    target = make_target(lab, tmp_path, path="gpu-operator")
    plan = _plan("kernel-modules", target)
    assert plan.files[0].state == "create" and "bpf_jit_harden" not in plan.files[0].content
    assert "sysctls" not in plan.files[0].content and "- name: nvidia_uvm" in plan.files[0].content
    assert "patch mc --patch @" in plan.commands()[-1]
    (tmp_path / "talos" / "patches").mkdir(parents=True)
    (tmp_path / infra.MODULES_PATCH).write_text(infra.modules_patch(Profile()))  # the old path's, with the sysctl
    with pytest.raises(PlanError, match="bpf_jit_harden, which the gpu-operator path"):
        _plan("kernel-modules", target)
